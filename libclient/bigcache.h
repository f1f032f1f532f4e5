/* BigCache: a per-site ring of recently freed large blocks (or pieces of
 * them), so the next large allocation from the same site (or from a site
 * whose ring is empty) reuses memory that is already mapped and faulted
 * in.  It stores opaque ranges with their
 * size; evicting one (ring full, idle too long, over the byte budget,
 * flush) hands it to the callback given at init, which unmaps it.  The
 * cache knows nothing of block headers: large.c cuts and joins ranges. */
#ifndef HK_BIGCACHE_H
#define HK_BIGCACHE_H

#include <stddef.h>
#include <stdint.h>

#define HK_BIGCACHE_SITES 64
#define HK_BIGCACHE_SLOTS 32

typedef void (*hk_bigcache_evict_fn)(void *block, size_t size, uint32_t site);

typedef struct hk_bigcache_stats {
    uint64_t hits, misses, puts, evictions;
    uint64_t cached_bytes, cached_blocks;
} hk_bigcache_stats;

void hk_bigcache_init(hk_bigcache_evict_fn evict);
/* Takes the site's cached block that best serves a request of `want`
 * bytes: of those at least that big, one that holds want bytes from an
 * address with no bit of align_mask set if any (the caller can use it
 * where it is), then the smallest; else the biggest (which the caller
 * joins with others).  When the site's ring holds nothing and `others` is
 * set, the best such block of any other ring: memory another site left
 * idle serves this one before fresh memory is mapped and faulted in beside
 * it.  Its size in *size; NULL when there is none.  Counts nothing: the
 * caller tells hk_bigcache_count what it served. */
void *hk_bigcache_take(uint32_t site, size_t want, uintptr_t align_mask, int others, size_t *size);
/* Takes the cached block of the site's ring that begins at start (when
 * start is not NULL) or else ends at end; its size in *size; or NULL. */
void *hk_bigcache_take_at(uint32_t site, const void *start, const void *end, size_t *size);
/* One allocation served from cached memory (hit) or not (miss). */
void hk_bigcache_count(int hit);
/* Offers a freed block; slots is the number of entries the site's ring may
 * hold (0..HK_BIGCACHE_SLOTS).  Returns 1 when cached, 0 when the caller
 * must release it (no slots, or bigger than the whole budget).  May evict
 * the oldest entry of the ring, and the oldest of all rings while the
 * cached bytes exceed the BIGCACHE_KIB knob, through the callback;
 * *evicted is set when it did. */
int  hk_bigcache_put(uint32_t site, void *block, size_t size, unsigned slots, int *evicted);
/* Evicts oldest first down to the budget (after the knob was lowered). */
void hk_bigcache_fit_budget(void);
/* Evicts blocks idle longer than max_idle_ns (all when 0). */
void hk_bigcache_trim(uint64_t now_ns, uint64_t max_idle_ns);
void hk_bigcache_get_stats(hk_bigcache_stats *out);
/* For tests: where the rings lie (what a walk must not touch in full). */
void hk_bigcache_memory(const void **start, size_t *bytes);

void hk_bigcache_fork_prepare(void);
void hk_bigcache_fork_parent(void);
void hk_bigcache_fork_child(void);

#endif
