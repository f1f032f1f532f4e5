/* Packed medium blocks: requests of more than PACKED_KIB KiB (knobs.h; 4
 * by default) up to 64 KiB that are not page multiples, laid end to end in
 * 4 MiB chunks, each block exactly as big as asked (to 64 bytes) behind a
 * 16-byte header, freed blocks joined with their free neighbours and
 * found again by good fit (two-level size bins).  Where the size classes
 * give a 33 KiB request a 40 KiB block and a page of its own, whose last
 * partial page no neighbour shares, packing holds what the program asked
 * for.  The knob moves only new requests: a block freed is always freed
 * where it lives.
 *
 * A few arenas, each under its own lock, serve every thread: a thread
 * keeps to one, and a block goes back to the arena of its chunk from any
 * thread, so no block waits for an owner to collect it. */
#ifndef HK_PACKED_H
#define HK_PACKED_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "knobs.h"

#define HK_PACKED_MAX ((size_t)64 * 1024 - 1)  /* the largest request packed (HK_SAMPLED_MAX) */

/* Whether a request of `size` bytes is packed now (the knob, the range).
 * Inline: every malloc of the packed classes asks it on its way in. */
static inline int hk_packed_wanted(size_t size)
{
    uint32_t kib = hk_knob(HK_KNOB_PACKED_KIB);
    return kib != 0 && size > (size_t)kib << 10 && size <= HK_PACKED_MAX && (size & (HK_OS_PAGE - 1));
}

/* What a packed block that realloc grows to `size` bytes is given, moved or
 * in place: an eighth more, as the next class would have, since a packed
 * block has no class's slack; a buffer appended to a little at a time then
 * grows a logarithmic number of times. */
static inline size_t hk_packed_roomy(size_t size) { return size + size / 8; }

/* A block of at least `size` bytes, 16-aligned; NULL when out of memory. */
void *hk_packed_alloc(size_t size);
/* p, a block of a packed chunk (chunk map), back to its arena: fails fast
 * on a pointer that is no block's start or a block already free. */
void hk_packed_free(void *p, const char *fn);
/* The calling thread's kept block (packed.c) back to its arena: at the
 * thread's exit, and before a trim. */
void hk_packed_thread_done(void);
/* realloc's first try for p, a packed block: 1 when it holds `size` bytes
 * where it is (kept when it would waste no more than half, or grown into
 * the free block after it), 0 when it must move.  *usable: its usable size
 * either way. */
int hk_packed_resize(void *p, size_t size, size_t *usable, const char *fn);
/* Bytes p may use (checked as free checks it). */
size_t hk_packed_usable(const void *p, const char *fn);

/* Gives back the pages of free blocks idle past the purge delay, and
 * chunks left wholly free beyond one per arena.  Any thread, now and then;
 * an arena in use is skipped. */
void hk_packed_maintain(uint64_t now_ns);
/* Gives back every free block's inner pages and every wholly free chunk
 * now (hakmem_collect, malloc_trim). */
void hk_packed_collect(void);

typedef struct hk_packed_figures {
    uint64_t chunks;       /* 4 MiB chunks mapped */
    uint64_t used_bytes;   /* blocks handed out, headers included */
    uint64_t free_blocks;  /* free blocks */
    uint64_t free_bytes;   /* their bytes */
    uint64_t purged_bytes; /* bytes given back since start */
} hk_packed_figures;
void hk_packed_figures_get(hk_packed_figures *out);

void hk_packed_fork_prepare(void);
void hk_packed_fork_parent(void);
void hk_packed_fork_child(void);

#endif
