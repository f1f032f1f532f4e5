/* Call-site profiler: which line of code allocates what.
 *
 * A site is the return address of the public entry point.  Medium and large
 * allocations are always attributed; small ones are sampled by a per-thread
 * byte countdown (the fast path pays one subtraction).  Counters are kept per
 * thread and merged into the process-wide table on the slow path.  Each site
 * resolves once, lazily, to a fleet-wide key (module build-id hash, offset in
 * module) that is the same in every process of one binary despite ASLR
 * (modules.h; safe in a fork child: it never enters the dynamic loader).
 *
 * The per-site policy (large threshold, BigCache slots, THP) starts from the
 * process defaults (options.h) and may be replaced by what the daemon
 * publishes (hk_site_set_policy). */
#ifndef HK_SITE_H
#define HK_SITE_H

#include "internal.h"

#include <stdint.h>
#include <stddef.h>

#define HK_SITE_MAX 1024            /* process-wide distinct sites */
#define HK_SITE_HIST 32             /* log2 size buckets */
#define HK_SITE_MODULE_MAX 64

/* hk_site_policy (internal.h): large_threshold, bigcache_slots, thp,
 * from_daemon. */

typedef struct hk_site_counters {
    uint64_t allocs, frees, bytes, live_bytes;
    uint64_t size_hist[HK_SITE_HIST];
    uint64_t bigcache_hits, bigcache_misses, bigcache_evictions;
    uint64_t thp_blocks;
    uint64_t slow_ns;               /* nanoseconds spent in large/medium slow paths */
} hk_site_counters;

typedef struct hk_site_view {
    uint32_t index;                 /* stable for the process's lifetime */
    uintptr_t address;              /* return address in this process */
    uint64_t module_hash, offset;   /* fleet-wide key */
    char     module[HK_SITE_MODULE_MAX];
    hk_site_counters counters;      /* merged so far (sampled counts scaled) */
    hk_site_policy policy;
} hk_site_view;

/* Site index for a return address; registers it on first sight. Returns
 * UINT32_MAX when the table is full (then nothing is attributed). */
uint32_t hk_site_of(hk_heap *heap, uintptr_t ra);

/* The medium path's view: the calling thread's cache entry for ra (heap must
 * be a real heap), with the site's policy current. */
extern _Atomic uint64_t hk_site_policy_epoch;   /* bumped when any policy changes */
hk_site_local *hk_site_local_refill(hk_heap *heap, hk_site_local *l, uintptr_t ra);
void hk_site_local_flush(hk_site_local *l);

static inline hk_site_local *hk_site_local_of(hk_heap *heap, uintptr_t ra)
{
    uint64_t h = (uint64_t)ra * 0x9E3779B97F4A7C15ull;
    hk_site_local *l = &heap->sites[(h >> 40) & (HK_SITE_LOCAL - 1)];
    if (likely(l->ra == ra &&
               l->policy_epoch == atomic_load_explicit(&hk_site_policy_epoch, memory_order_relaxed)))
        return l;
    return hk_site_local_refill(heap, l, ra);
}

/* Counts one allocation of size at the entry's site. */
static inline void hk_site_local_count(hk_site_local *l, size_t size)
{
    unsigned b = 63u - (unsigned)__builtin_clzl(size | 1);
    l->allocs++;
    l->bytes += size;
    l->hist[b < HK_SITE_HIST ? b : HK_SITE_HIST - 1]++;
    if (unlikely(++l->pending >= 64)) hk_site_local_flush(l);
}
/* The policy of a site (the process defaults until one is published). */
hk_site_policy hk_site_policy_get(uint32_t site);

/* Counting, all on slow paths.  weight scales sampled small allocations. */
void hk_site_note_alloc(hk_heap *heap, uint32_t site, size_t size, uint64_t weight);
void hk_site_note_free(uint32_t site, size_t size);
/* Live bytes are tracked for large blocks, whose frees are attributed. */
void hk_site_note_large_live(uint32_t site, size_t size, int alloc);
void hk_site_note_bigcache(uint32_t site, int hit, int evicted);
void hk_site_note_thp(uint32_t site);
void hk_site_note_slow_ns(uint32_t site, uint64_t ns);
/* Sample taken by the small-allocation countdown. */
void hk_site_sample(hk_heap *heap, uintptr_t ra, size_t size);

/* Merges a thread's pending counters into the process table. */
void hk_site_flush_thread(hk_heap *heap);
/* In a fork child (one thread, `heap` its own): counters restart from zero,
 * live bytes stay; resolutions the parent had under way start over. */
void hk_site_fork_child(hk_heap *heap);

uint32_t hk_site_count(void);
/* Snapshot of each site (keys resolved on first call for a new site). */
void hk_site_for_each(void (*fn)(const hk_site_view *, void *), void *arg);
/* Applies a published policy to a site; bumps the policy epoch. */
void hk_site_set_policy(uint32_t site, const hk_site_policy *policy);
/* Forgets published policies: every site back to the process defaults. */
void hk_site_reset_policies(void);

#endif
