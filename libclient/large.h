/* Large blocks: one mapping each, 4 MiB-aligned, with a 64-byte header just
 * below the user pointer (magic "HAKM", mapping, size, site), which lies in
 * the mapping's first page.  Freed blocks
 * go to BigCache when the site's policy allows; huge pages are requested
 * for 2 MiB-aligned blocks when the THP box says so. */
#ifndef HK_LARGE_H
#define HK_LARGE_H

#include "site.h"
#include <stddef.h>
#include <stdint.h>

void  hk_large_init(void);
/* align: 0 or a power of two.  NULL (errno ENOMEM) when the OS refuses.
 * *zeroed tells whether the block is known to be all zero (fresh mapping). */
void *hk_large_alloc(size_t size, size_t align, uint32_t site, const hk_site_policy *pol,
                     int *zeroed);
/* Validates p (aborting with a message naming fn for a foreign pointer or a
 * double free), then caches or unmaps the block. */
void  hk_large_free(void *p, const char *fn);
size_t hk_large_usable(const void *p, const char *fn);
/* Resizes in place or by moving the pages (no copy); NULL when the caller
 * must allocate, copy and free instead. */
void *hk_large_try_realloc(void *p, size_t size, const char *fn);

/* The large block the heap's thread freed last, kept for that thread's next
 * request of about its size, to BigCache (any thread may call it): at the
 * heap's maintenance, while it is idle, at its thread's exit and before a
 * trim. */
struct hk_heap;
void hk_large_drop_kept(struct hk_heap *heap);

typedef struct hk_large_stats {
    uint64_t allocs, frees, mapped_bytes, thp_blocks;
    uint64_t kept_blocks, kept_bytes;    /* freed, in their threads' kept slots (mapped) */
    uint32_t move_unit;                  /* bytes cached ranges are cut and moved in; 0: none moved yet */
    uint32_t moved_touch_ns;             /* the probe's figure (os.h); 0: not measured */
} hk_large_stats;
void hk_large_get_stats(hk_large_stats *out);

#endif
