/* Packed medium blocks (packed.h).
 *
 * A chunk: a 64-byte header, then blocks end to end to its last byte.  A
 * block is a multiple of 64 bytes and starts with its header: its size,
 * the size of the block before it (to join with a free one), a tag (in
 * use, free or kept) and a check word over its size and place,
 * so that a pointer into the middle of a block, a block freed twice or a
 * header the program overwrote fails fast instead of being trusted.
 *
 * Free blocks sit in size bins: eight per power of two, a bitmap over the
 * powers and one over each power's eight, so the smallest bin sure to fit
 * a request is found with two bit scans, after a look at the first few
 * blocks of the request's own bin (where a block of the size freed before
 * waits).  A taken block's remainder goes back as a free block of its own
 * when it is 1 KiB or more.  Each thread keeps the block it freed last for
 * its next request, which it serves when that is at most an eighth
 * smaller: a buffer freed and asked for again costs no lock (the seed's
 * MIXED scenario, 70% of it ~64 KiB blocks: 155 -> 40 instructions per
 * operation more than in classes, callgrind).
 *
 * Memory goes back two ways: a chunk left wholly free is unmapped when its
 * arena already keeps one such chunk, and maintenance gives back the inner
 * pages of free blocks of 32 KiB and more once they have been idle for the
 * purge delay in force (purge_pace.h, which taking such a block back
 * raises), as maintenance counts idleness: from its first walk to see the
 * block free. */
#include "packed.h"
#include "chunk_map.h"
#include "internal.h"
#include "knobs.h"
#include "lock.h"
#include "os.h"
#include "purge_pace.h"

#include <stdatomic.h>

#define CHUNK_SIZE HK_SEGMENT_SIZE
#define GRAIN      64u                            /* block sizes and places */
#define HDR        16u                            /* header before the pointer handed out */
#define FIRST      GRAIN                          /* place of a chunk's first block */
#define WHOLE      ((uint32_t)(CHUNK_SIZE - FIRST)) /* its blocks' bytes when all are free */
#define SPLIT_MIN  1024u
#define PURGE_MIN  ((uint32_t)32 << 10)
#define ARENAS     4u
#define FL         22u                            /* 2^21 <= WHOLE < 2^22 */
_Static_assert(WHOLE < (1u << FL), "every block has a bin");
#define SL         8u

#define TAG_USED    0x55534544u
#define TAG_FREE    0x46524545u
#define TAG_KEPT    0x4B455054u                   /* freed, kept by its thread for its next request */
#define PURGED      1u                            /* idle_since's low bit */

typedef struct pk_block {
    uint32_t size;
    uint32_t prev_size;
    uint32_t tag;
    uint32_t check;
    /* free blocks only (the body of one in use is the program's) */
    struct pk_block *next, *prev;
    uint64_t idle_since;                          /* coarse ns maintenance first saw it free
                                                   * (0: not yet); bit 0: PURGED */
} pk_block;
_Static_assert(sizeof(pk_block) <= GRAIN, "a free block's links fit the smallest block");
_Static_assert(offsetof(pk_block, next) == HDR, "the header is what a block in use keeps");

typedef struct pk_arena pk_arena;

typedef struct pk_chunk {
    pk_arena *arena;
} pk_chunk;
_Static_assert(sizeof(pk_chunk) <= FIRST, "the chunk header fits before the first block");

struct pk_arena {
    hk_lock lock;
    uint32_t fl_map;
    uint32_t sl_map[FL];
    pk_block *head[FL][SL];
    uint32_t empty_chunks;                        /* chunks wholly free */
    uint32_t dirty_big;                           /* free blocks >= PURGE_MIN not purged (dirty_big_add) */
    uint64_t n_chunks, used_bytes, free_blocks, free_bytes;
    uint64_t last_walk_ns;
} __attribute__((aligned(64)));

static pk_arena arenas[ARENAS];
static _Atomic uint32_t next_arena;
static _Atomic uint64_t purged_bytes;
static __thread uint8_t my_arena_plus1 __attribute__((tls_model("initial-exec")));
/* The block this thread freed last, kept (tagged TAG_KEPT, still counted in
 * use) for its next request: a program that frees a buffer and asks for
 * one of about its size again, over and over, takes no lock and walks no
 * bin.  Only a thread with a heap keeps one: its exit gives it back
 * (hk_packed_thread_done). */
static __thread pk_block *kept __attribute__((tls_model("initial-exec")));
#define KEPT_SLACK 8u   /* a kept block serves a request it exceeds by at most 1/8 of itself */

/* ---- headers ----------------------------------------------------------- */

static inline pk_chunk *chunk_of(const void *p)
{
    return (pk_chunk *)((uintptr_t)p & ~(uintptr_t)(CHUNK_SIZE - 1));
}

/* Over the size and the place, not the tag: a thread keeping a block
 * changes its tag without the arena's lock, and a neighbour's walk that
 * reads it meanwhile must not take the header for a corrupt one. */
static inline uint32_t check_of(const pk_block *b)
{
    uint32_t place = (uint32_t)((uintptr_t)b & (CHUNK_SIZE - 1));
    return (b->size * 0x9E3779B1u) ^ (place * 0x85EBCA77u) ^ 0x5A17C0DEu;
}

static inline uint32_t tag_of(const pk_block *b) { return __atomic_load_n(&b->tag, __ATOMIC_RELAXED); }
static inline void tag_set(pk_block *b, uint32_t tag) { __atomic_store_n(&b->tag, tag, __ATOMIC_RELAXED); }

static inline void set_header(pk_block *b, uint32_t size, uint32_t tag)
{
    b->size = size;
    tag_set(b, tag);
    b->check = check_of(b);
}

static inline int sound(const pk_block *b) { return b->check == check_of(b); }

/* The block after b, or NULL at the end of its chunk. */
static inline pk_block *after(pk_block *b)
{
    uintptr_t next = (uintptr_t)b + b->size;
    return (next & (CHUNK_SIZE - 1)) ? (pk_block *)next : NULL;
}

/* A neighbour the walk relies on: a sound header, else the heap around it
 * was overwritten. */
static pk_block *neighbour(pk_block *b, const void *p, const char *fn)
{
    if (unlikely(!sound(b))) hk_fatal_pointer(fn, "heap corrupted next to block", p);
    return b;
}

/* ---- size bins --------------------------------------------------------- */

/* Changed under the arena's lock; maintenance peeks at it without. */
static inline void dirty_big_add(pk_arena *a, int d)
{
    __atomic_store_n(&a->dirty_big, __atomic_load_n(&a->dirty_big, __ATOMIC_RELAXED) + (uint32_t)d, __ATOMIC_RELAXED);
}

static inline void bin_of(size_t size, unsigned *fl, unsigned *sl)
{
    unsigned f = 63u - (unsigned)__builtin_clzl(size);
    *fl = f;
    *sl = (unsigned)(size >> (f - 3)) & (SL - 1);
}

static void insert(pk_arena *a, pk_block *b)
{
    unsigned fl, sl;
    bin_of(b->size, &fl, &sl);
    pk_block *h = a->head[fl][sl];
    b->prev = NULL;
    b->next = h;
    if (h) h->prev = b;
    a->head[fl][sl] = b;
    a->fl_map |= 1u << fl;
    a->sl_map[fl] |= 1u << sl;
    a->free_blocks++;
    a->free_bytes += b->size;
    if (b->size >= PURGE_MIN && !(b->idle_since & PURGED)) dirty_big_add(a, 1);
}

static void remove_free(pk_arena *a, pk_block *b)
{
    unsigned fl, sl;
    bin_of(b->size, &fl, &sl);
    if (b->prev) b->prev->next = b->next;
    else a->head[fl][sl] = b->next;
    if (b->next) b->next->prev = b->prev;
    if (a->head[fl][sl] == NULL) {
        a->sl_map[fl] &= ~(1u << sl);
        if (a->sl_map[fl] == 0) a->fl_map &= ~(1u << fl);
    }
    a->free_blocks--;
    a->free_bytes -= b->size;
    if (b->size >= PURGE_MIN && !(b->idle_since & PURGED)) dirty_big_add(a, -1);
}

/* Blocks of need's own bin looked at for one big enough, before a bin
 * whose every block fits: a freed block of about the size asked for is
 * taken again rather than a piece of a bigger one. */
#define SAME_BIN_LOOKS 8

/* A free block of at least `need` bytes: one of need's own bin that fits,
 * else the first of the smallest bin whose every block is that big. */
static pk_block *find_fit(pk_arena *a, uint32_t need)
{
    unsigned fl, sl;
    bin_of(need, &fl, &sl);
    unsigned looks = 0;
    for (pk_block *b = a->head[fl][sl]; b && looks < SAME_BIN_LOOKS; b = b->next, looks++)
        if (b->size >= need) return b;
    unsigned f = 63u - (unsigned)__builtin_clzl(need);
    bin_of((size_t)need + ((size_t)1 << (f - 3)) - 1, &fl, &sl);
    if (fl >= FL) return NULL;
    uint32_t m = a->sl_map[fl] & (~0u << sl);
    if (m == 0) {
        uint32_t fm = fl + 1 < FL ? a->fl_map & (~0u << (fl + 1)) : 0;
        if (fm == 0) return NULL;
        fl = (unsigned)__builtin_ctz(fm);
        m = a->sl_map[fl];
    }
    return a->head[fl][__builtin_ctz(m)];
}

/* ---- chunks ------------------------------------------------------------ */

static pk_block *chunk_new(pk_arena *a)
{
    uint8_t *c = hk_os_map_aligned(CHUNK_SIZE, CHUNK_SIZE);
    if (c == NULL) return NULL;
    pk_chunk *ch = (pk_chunk *)c;
    ch->arena = a;
    pk_block *b = (pk_block *)(c + FIRST);
    b->prev_size = 0;
    set_header(b, WHOLE, TAG_FREE);
    b->idle_since = PURGED;                       /* never touched: nothing to give back */
    a->n_chunks++;
    a->empty_chunks++;
    insert(a, b);
    hk_chunk_set((uintptr_t)c, HK_CHUNK_PACKED);
    return b;
}

static void chunk_release(pk_arena *a, pk_chunk *ch)
{
    a->n_chunks--;
    hk_chunk_set((uintptr_t)ch, HK_CHUNK_NONE);
    hk_os_unmap(ch, CHUNK_SIZE);
}

/* ---- allocation and free ----------------------------------------------- */

static pk_arena *my_arena(void)
{
    unsigned i = my_arena_plus1;
    if (unlikely(i == 0)) {
        i = atomic_fetch_add_explicit(&next_arena, 1, memory_order_relaxed) % ARENAS + 1;
        my_arena_plus1 = (uint8_t)i;
    }
    return &arenas[i - 1];
}

static void release(pk_block *b, const void *p, const char *fn);

/* Bytes a block holding `size` request bytes spans, header included. */
static uint32_t span_for(size_t size) { return (uint32_t)((size + HDR + GRAIN - 1) & ~(size_t)(GRAIN - 1)); }

/* b, out of the bins, becomes a block in use of `need` of its `total`
 * bytes; the rest goes back as a free block (idle as `idle`) when it is
 * SPLIT_MIN or more, else stays with b. */
static void carve(pk_arena *a, pk_block *b, uint32_t total, uint32_t need, uint64_t idle)
{
    uint32_t rest = total - need;
    pk_block *last = b;                           /* the block whose successor learns its size */
    if (rest >= SPLIT_MIN) {
        pk_block *r = (pk_block *)((uint8_t *)b + need);
        r->prev_size = need;
        set_header(r, rest, TAG_FREE);
        r->idle_since = idle;
        insert(a, r);
        last = r;
        total = need;
    }
    set_header(b, total, TAG_USED);
    pk_block *n = after(last);
    if (n) n->prev_size = last->size;
}

void *hk_packed_alloc(size_t size)
{
    uint32_t need = span_for(size);
    pk_block *k = kept;
    if (k != NULL) {
        kept = NULL;
        tag_set(k, TAG_USED);
        if (k->size >= need && k->size - need <= k->size / KEPT_SLACK) return (uint8_t *)k + HDR;
        release(k, (uint8_t *)k + HDR, "malloc()");
    }
    pk_arena *a = my_arena();
    hk_lock_acquire(&a->lock);
    pk_block *b = find_fit(a, need);
    if (b == NULL && (b = chunk_new(a)) == NULL) {
        hk_lock_release(&a->lock);
        return NULL;
    }
    remove_free(a, b);
    if (b->size == WHOLE) a->empty_chunks--;
    /* Pages given back too soon come back as faults: the pace says so. */
    if ((b->idle_since & PURGED) && b->idle_since > PURGED)
        hk_purge_refaulted(hk_coarse_ns(), b->idle_since & ~(uint64_t)PURGED);
    carve(a, b, b->size, need, b->idle_since);   /* the rest as resident as the block was */
    a->used_bytes += b->size;
    hk_lock_release(&a->lock);
    return (uint8_t *)b + HDR;
}

/* The header of p, a block's start in a packed chunk, or a fatal error
 * (freeing: a block already free is freed twice; else it is used after
 * its free).  The chunk map said p's chunk is a packed one, so the chunk's
 * own header is not read: a free that keeps its block touches no line but
 * the block's. */
static pk_block *block_of(const void *p, const char *fn, int freeing)
{
    pk_chunk *ch = chunk_of(p);
    uintptr_t place = (uintptr_t)p - HDR - (uintptr_t)ch;
    if (unlikely(((uintptr_t)p & (HK_ALIGN - 1)) || place < FIRST || place >= CHUNK_SIZE || place % GRAIN))
        hk_fatal_pointer(fn, "invalid pointer", p);
    pk_block *b = (pk_block *)((uint8_t *)ch + place);
    uint32_t tag = tag_of(b);
    if (unlikely(!sound(b) || tag != TAG_USED))
        hk_fatal_pointer(fn, !sound(b) || (tag != TAG_FREE && tag != TAG_KEPT) ? "invalid pointer"
                             : freeing ? "double free" : "use after free", p);
    return b;
}

void hk_packed_free(void *p, const char *fn)
{
    pk_block *b = block_of(p, fn, 1);
    if (kept == NULL && hk_tls_heap != &hk_empty_heap) {
        tag_set(b, TAG_KEPT);
        kept = b;
        return;
    }
    release(b, p, fn);
}

/* b (p's header) back to its arena, joined with its free neighbours. */
static void release(pk_block *b, const void *p, const char *fn)
{
    pk_arena *a = chunk_of(p)->arena;
    hk_lock_acquire(&a->lock);
    /* Again under the lock: another thread may have freed it meanwhile. */
    uint32_t tag = tag_of(b);
    if (unlikely(tag != TAG_USED || !sound(b))) {
        hk_lock_release(&a->lock);
        hk_fatal_pointer(fn, tag == TAG_FREE || tag == TAG_KEPT ? "double free" : "invalid pointer", p);
    }
    uint32_t size = b->size;
    a->used_bytes -= size;
    pk_block *next = after(b);
    if (next && tag_of(neighbour(next, p, fn)) == TAG_FREE) {
        remove_free(a, next);
        size += next->size;
    }
    if (b->prev_size) {
        pk_block *prev = neighbour((pk_block *)((uint8_t *)b - b->prev_size), p, fn);
        if (tag_of(prev) == TAG_FREE) {
            remove_free(a, prev);
            size += prev->size;
            b = prev;
        }
    }
    set_header(b, size, TAG_FREE);
    b->idle_since = 0;                            /* dirty; maintenance stamps when it sees it */
    if ((next = after(b)) != NULL) next->prev_size = size;
    if (size == WHOLE) {
        if (a->empty_chunks > 0) {
            chunk_release(a, chunk_of(b));
            hk_lock_release(&a->lock);
            return;
        }
        a->empty_chunks++;
    }
    insert(a, b);
    hk_lock_release(&a->lock);
}

int hk_packed_resize(void *p, size_t size, size_t *usable, const char *fn)
{
    pk_block *b = block_of(p, fn, 0);
    size_t old = b->size - HDR;
    *usable = old;
    if (size <= old) return size >= old / 2;
    if (size > HK_PACKED_MAX) return 0;
    /* The slack when the room is there, else what was asked. */
    size_t roomy = hk_packed_roomy(size) < HK_PACKED_MAX ? hk_packed_roomy(size) : HK_PACKED_MAX;
    uint32_t need = span_for(size), want = span_for(roomy);
    pk_arena *a = chunk_of(p)->arena;
    hk_lock_acquire(&a->lock);
    pk_block *next = after(b);
    uint32_t have = b->size;
    if (tag_of(b) != TAG_USED || next == NULL || tag_of(neighbour(next, p, fn)) != TAG_FREE ||
        have + next->size < need) {
        hk_lock_release(&a->lock);
        return 0;
    }
    remove_free(a, next);
    carve(a, b, have + next->size, have + next->size >= want ? want : need, next->idle_since);
    a->used_bytes += b->size - have;
    hk_lock_release(&a->lock);
    *usable = b->size - HDR;
    return 1;
}

void hk_packed_thread_done(void)
{
    pk_block *k = kept;
    if (k != NULL) {
        kept = NULL;
        tag_set(k, TAG_USED);
        release(k, (uint8_t *)k + HDR, "free()");
    }
}

size_t hk_packed_usable(const void *p, const char *fn)
{
    return block_of(p, fn, 0)->size - HDR;
}

/* ---- giving memory back -------------------------------------------------- */

static void purge_block(pk_arena *a, pk_block *b)
{
    uintptr_t start = ((uintptr_t)b + sizeof *b + HK_OS_PAGE - 1) & ~(uintptr_t)(HK_OS_PAGE - 1);
    uintptr_t end = ((uintptr_t)b + b->size) & ~(uintptr_t)(HK_OS_PAGE - 1);
    if (end > start) {
        hk_os_purge((void *)start, end - start);
        atomic_fetch_add_explicit(&purged_bytes, end - start, memory_order_relaxed);
    }
    b->idle_since |= PURGED;
    dirty_big_add(a, -1);
}

/* Gives back what of arena a's free blocks has been idle for `delay` at
 * `now`; with release_empty, its wholly free chunks too (under its lock). */
static void give_back(pk_arena *a, uint64_t now, uint64_t delay, int release_empty)
{
    unsigned fl0, sl0;
    bin_of(PURGE_MIN, &fl0, &sl0);
    for (unsigned fl = fl0; fl < FL; fl++) {
        if (!(a->fl_map >> fl & 1)) continue;
        for (unsigned sl = 0; sl < SL; sl++) {
            pk_block *next;
            for (pk_block *b = a->head[fl][sl]; b; b = next) {
                next = b->next;
                if (release_empty && b->size == WHOLE) {
                    remove_free(a, b);
                    a->empty_chunks--;
                    chunk_release(a, chunk_of(b));
                } else if (b->size >= PURGE_MIN && !(b->idle_since & PURGED)) {
                    /* A free reads no clock: the first walk to see a block
                     * stamps it, so it goes back one to two delays after. */
                    if (b->idle_since == 0 && delay > 0) b->idle_since = now & ~(uint64_t)PURGED;
                    else if (now - b->idle_since >= delay) purge_block(a, b);
                }
            }
        }
    }
}

void hk_packed_maintain(uint64_t now)
{
    uint64_t delay = hk_purge_delay_ns(now);
    for (unsigned i = 0; i < ARENAS; i++) {
        pk_arena *a = &arenas[i];
        /* Unlocked peeks: a stale answer only delays the walk. */
        if (__atomic_load_n(&a->dirty_big, __ATOMIC_RELAXED) == 0) continue;
        if (now - __atomic_load_n(&a->last_walk_ns, __ATOMIC_RELAXED) < delay / 2) continue;
        if (!hk_lock_try(&a->lock)) continue;
        __atomic_store_n(&a->last_walk_ns, now, __ATOMIC_RELAXED);
        give_back(a, now, delay, 0);
        hk_lock_release(&a->lock);
    }
}

void hk_packed_collect(void)
{
    hk_packed_thread_done();
    for (unsigned i = 0; i < ARENAS; i++) {
        hk_lock_acquire(&arenas[i].lock);
        give_back(&arenas[i], hk_coarse_ns(), 0, 1);
        hk_lock_release(&arenas[i].lock);
    }
}

/* ---- figures and fork ---------------------------------------------------- */

void hk_packed_figures_get(hk_packed_figures *out)
{
    *out = (hk_packed_figures){ .purged_bytes = atomic_load_explicit(&purged_bytes, memory_order_relaxed) };
    for (unsigned i = 0; i < ARENAS; i++) {
        pk_arena *a = &arenas[i];
        hk_lock_acquire(&a->lock);
        out->chunks += a->n_chunks;
        out->used_bytes += a->used_bytes;
        out->free_blocks += a->free_blocks;
        out->free_bytes += a->free_bytes;
        hk_lock_release(&a->lock);
    }
}

void hk_packed_fork_prepare(void)
{
    for (unsigned i = 0; i < ARENAS; i++) hk_lock_acquire(&arenas[i].lock);
}

void hk_packed_fork_parent(void)
{
    for (unsigned i = ARENAS; i-- > 0;) hk_lock_release(&arenas[i].lock);
}

void hk_packed_fork_child(void)
{
    for (unsigned i = 0; i < ARENAS; i++) hk_lock_reinit(&arenas[i].lock);
}
