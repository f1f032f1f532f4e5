/* BigCache: a per-site ring of recently freed large blocks, so the next
 * large allocation from the same site reuses memory that is already mapped
 * and faulted in.  It stores opaque blocks with their size key; evicting a
 * block (ring full, idle too long, flush) hands it to the callback given at
 * init, which unmaps it.  The cache knows nothing of block headers. */
#ifndef HK_BIGCACHE_H
#define HK_BIGCACHE_H

#include <stddef.h>
#include <stdint.h>

#define HK_BIGCACHE_SITES 64
#define HK_BIGCACHE_SLOTS 4

typedef void (*hk_bigcache_evict_fn)(void *block, size_t size);

typedef struct hk_bigcache_stats {
    uint64_t hits, misses, puts, evictions;
    uint64_t cached_bytes, cached_blocks;
} hk_bigcache_stats;

void hk_bigcache_init(hk_bigcache_evict_fn evict);
/* A cached block for site whose size key is at least `size` and at most
 * twice it (the smallest such), or NULL (counted as a miss). */
void *hk_bigcache_get(uint32_t site, size_t size);
/* Offers a freed block; slots is the site's ring size (0..4).  Returns 1
 * when cached, 0 when the caller must release it (no slots, or bigger than
 * the whole budget).  May evict the oldest entry of the ring, and the
 * oldest of all rings while the cached bytes exceed the BIGCACHE_KIB knob,
 * through the callback; *evicted is set when it did. */
int  hk_bigcache_put(uint32_t site, void *block, size_t size, unsigned slots, int *evicted);
/* Evicts oldest first down to the budget (after the knob was lowered). */
void hk_bigcache_fit_budget(void);
/* Evicts blocks idle longer than max_idle_ns (all when 0). */
void hk_bigcache_trim(uint64_t now_ns, uint64_t max_idle_ns);
void hk_bigcache_get_stats(hk_bigcache_stats *out);

void hk_bigcache_fork_prepare(void);
void hk_bigcache_fork_parent(void);
void hk_bigcache_fork_child(void);

#endif
