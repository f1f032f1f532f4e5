/* Site profiler box.  The process table is open-addressed on the return
 * address and claimed with one CAS, so registering a site takes no lock and
 * survives fork.  Each thread keeps a small direct-mapped cache of the sites
 * it uses, accumulating counts locally and adding them to the table every
 * 64 events or when the entry is displaced. */
#include "site.h"
#include "internal.h"
#include "lock.h"
#include "options.h"

#include "modules.h"

#include <string.h>
#include <unistd.h>

typedef struct site_entry {
    _Atomic uintptr_t ra;
    _Atomic uint64_t policy;         /* packed hk_site_policy; 0: defaults */
    _Atomic uint64_t allocs, frees, bytes, live_bytes;
    _Atomic uint64_t hist[HK_SITE_HIST];
    _Atomic uint64_t bc_hits, bc_misses, bc_evictions, thp_blocks, slow_ns;
    _Atomic int resolved;            /* 0 no, 1 in progress, 2 done */
    uint64_t module_hash, offset;
    char module[HK_SITE_MODULE_MAX];
} site_entry;

_Static_assert(HK_SITE_MODULE_MAX == HK_MODULE_PATH_MAX, "a site keeps its module's path as resolved");

static site_entry table[HK_SITE_MAX];
static _Atomic uint32_t n_sites;
/* The claimed entries, in the order they were claimed (index + 1; 0 while
 * the claim is being written down).  Walks go through this list, not the
 * table: reading every entry of a table that is nearly all untouched .bss
 * faults in over a hundred pages, which on a VM costs more than a
 * millisecond, at registration and at the first policy read. */
static _Atomic uint16_t claimed[HK_SITE_MAX];
_Static_assert(HK_SITE_MAX < UINT16_MAX, "a claimed entry's index + 1 fits in 16 bits");
/* Starts at 1 so that a zeroed cache entry is stale. */
_Atomic uint64_t hk_site_policy_epoch = 1;

/* The k-th claimed entry and its index, or NULL while its claim is being
 * written down. */
static site_entry *claimed_entry(uint32_t k, uint32_t *index)
{
    uint16_t c = atomic_load_explicit(&claimed[k], memory_order_acquire);
    if (c == 0)
        return NULL;
    *index = (uint32_t)c - 1;
    return &table[c - 1];
}

static inline uint32_t hash_ra(uintptr_t ra)
{
    uint64_t h = (uint64_t)ra * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h >> 40);
}

static inline unsigned log2_bucket(size_t size)
{
    unsigned b = size ? 63u - (unsigned)__builtin_clzl(size) : 0;
    return b < HK_SITE_HIST ? b : HK_SITE_HIST - 1;
}

static uint32_t global_lookup(uintptr_t ra)
{
    uint32_t i = hash_ra(ra) & (HK_SITE_MAX - 1);
    for (uint32_t probe = 0; probe < HK_SITE_MAX; probe++, i = (i + 1) & (HK_SITE_MAX - 1)) {
        uintptr_t cur = atomic_load_explicit(&table[i].ra, memory_order_acquire);
        if (cur == ra) return i;
        if (cur == 0) {
            uintptr_t expected = 0;
            if (atomic_compare_exchange_strong(&table[i].ra, &expected, ra)) {
                /* Each entry is claimed once, so the count stays below HK_SITE_MAX. */
                uint32_t k = atomic_fetch_add(&n_sites, 1);
                atomic_store_explicit(&claimed[k], (uint16_t)(i + 1), memory_order_release);
                return i;
            }
            if (expected == ra) return i;
        }
    }
    return UINT32_MAX;
}

void hk_site_local_flush(hk_site_local *l)
{
    if (l->ra == 0 || l->site == UINT32_MAX || l->pending == 0) return;
    site_entry *e = &table[l->site];
    atomic_fetch_add_explicit(&e->allocs, l->allocs, memory_order_relaxed);
    atomic_fetch_add_explicit(&e->bytes, l->bytes, memory_order_relaxed);
    for (unsigned b = 0; b < HK_SITE_HIST; b++) {
        if (l->hist[b]) atomic_fetch_add_explicit(&e->hist[b], l->hist[b], memory_order_relaxed);
    }
    l->allocs = l->bytes = 0;
    memset(l->hist, 0, sizeof l->hist);
    l->pending = 0;
}

hk_site_local *hk_site_local_refill(hk_heap *heap, hk_site_local *l, uintptr_t ra)
{
    /* The epoch is read before the policy: a change in between makes the
     * entry stale at once rather than hiding it. */
    uint64_t epoch = atomic_load_explicit(&hk_site_policy_epoch, memory_order_acquire);
    if (l->ra != ra) {
        hk_site_local_flush(l);
        heap->sites_used |= 1u << (l - heap->sites);
        l->ra = ra;
        l->site = global_lookup(ra);
        uint32_t known = hk_site_count();
        if (known != heap->sites_known) {
            heap->sites_known = known;
            heap->site_added = 1;
        }
    }
    l->policy = hk_site_policy_get(l->site);
    l->policy_epoch = epoch;
    return l;
}

uint32_t hk_site_of(hk_heap *heap, uintptr_t ra)
{
    if (heap == NULL || heap == &hk_empty_heap) return global_lookup(ra);
    hk_site_local *l = hk_site_local_of(heap, ra);
    heap->last_site = l;
    return l->site;
}

static hk_site_policy defaults(void)
{
    return (hk_site_policy){
        .large_threshold = hk_opt.large_threshold,
        .bigcache_slots = (uint16_t)(hk_opt.bigcache ? hk_opt.bigcache_slots : 0),
        .thp = (uint8_t)hk_opt.thp_default,
        .from_daemon = 0,
    };
}

hk_site_policy hk_site_policy_get(uint32_t site)
{
    if (site >= HK_SITE_MAX) return defaults();
    uint64_t w = atomic_load_explicit(&table[site].policy, memory_order_relaxed);
    if (w == 0) return defaults();
    return (hk_site_policy){
        .large_threshold = (uint32_t)w,
        .bigcache_slots = (uint16_t)(w >> 32),
        .thp = (uint8_t)(w >> 48),
        .from_daemon = 1,
    };
}

void hk_site_set_policy(uint32_t site, const hk_site_policy *p)
{
    if (site >= HK_SITE_MAX) return;
    uint32_t thr = p->large_threshold;
    if (thr < 64 * 1024) thr = 64 * 1024;
    if (thr > HK_CLASS_MAX) thr = HK_CLASS_MAX;
    uint64_t slots = p->bigcache_slots > 4 ? 4 : p->bigcache_slots;
    uint64_t w = (uint64_t)thr | slots << 32 | (uint64_t)(p->thp ? 1 : 0) << 48 | (uint64_t)1 << 56;
    if (atomic_exchange_explicit(&table[site].policy, w, memory_order_relaxed) != w)
        atomic_fetch_add_explicit(&hk_site_policy_epoch, 1, memory_order_release);
}

void hk_site_reset_policies(void)
{
    for (uint32_t i = 0; i < HK_SITE_MAX; i++)
        if (atomic_load_explicit(&table[i].policy, memory_order_relaxed) != 0)
            atomic_store_explicit(&table[i].policy, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&hk_site_policy_epoch, 1, memory_order_release);
}


void hk_site_note_alloc(hk_heap *heap, uint32_t site, size_t size, uint64_t weight)
{
    if (site >= HK_SITE_MAX) return;
    hk_site_local *l = heap ? heap->last_site : NULL;
    if (l && l->site == site) {
        l->allocs += weight;
        l->bytes += (uint64_t)size * weight;
        l->hist[log2_bucket(size)] += weight;
        if (++l->pending >= 64) hk_site_local_flush(l);
        return;
    }
    site_entry *e = &table[site];
    atomic_fetch_add_explicit(&e->allocs, weight, memory_order_relaxed);
    atomic_fetch_add_explicit(&e->bytes, (uint64_t)size * weight, memory_order_relaxed);
    atomic_fetch_add_explicit(&e->hist[log2_bucket(size)], weight, memory_order_relaxed);
}

void hk_site_note_large_live(uint32_t site, size_t size, int alloc)
{
    if (site >= HK_SITE_MAX) return;
    if (alloc) atomic_fetch_add_explicit(&table[site].live_bytes, size, memory_order_relaxed);
    else atomic_fetch_sub_explicit(&table[site].live_bytes, size, memory_order_relaxed);
}

void hk_site_note_free(uint32_t site, size_t size)
{
    if (site >= HK_SITE_MAX) return;
    atomic_fetch_add_explicit(&table[site].frees, 1, memory_order_relaxed);
    hk_site_note_large_live(site, size, 0);
}

void hk_site_note_bigcache(uint32_t site, int hit, int evicted)
{
    if (site >= HK_SITE_MAX) return;
    site_entry *e = &table[site];
    if (evicted) atomic_fetch_add_explicit(&e->bc_evictions, 1, memory_order_relaxed);
    else if (hit) atomic_fetch_add_explicit(&e->bc_hits, 1, memory_order_relaxed);
    else atomic_fetch_add_explicit(&e->bc_misses, 1, memory_order_relaxed);
}

void hk_site_note_thp(uint32_t site)
{
    if (site < HK_SITE_MAX) atomic_fetch_add_explicit(&table[site].thp_blocks, 1, memory_order_relaxed);
}

void hk_site_note_slow_ns(uint32_t site, uint64_t ns)
{
    if (site < HK_SITE_MAX) atomic_fetch_add_explicit(&table[site].slow_ns, ns, memory_order_relaxed);
}

void hk_site_sample(hk_heap *heap, uintptr_t ra, size_t size)
{
    int64_t period = (int64_t)hk_opt.sample_bytes;
    /* Each sample stands for `period` bytes of this size: count accordingly. */
    uint64_t weight = size >= (size_t)period ? 1 : (uint64_t)period / (size ? size : 1);
    while (heap->sample_left < 0) heap->sample_left += period;
    uint32_t site = hk_site_of(heap, ra);
    hk_site_note_alloc(heap, site, size, weight);
}

void hk_site_flush_thread(hk_heap *heap)
{
    for (uint32_t used = heap->sites_used; used; used &= used - 1)
        hk_site_local_flush(&heap->sites[__builtin_ctz(used)]);
}

uint32_t hk_site_count(void) { return atomic_load(&n_sites); }

void hk_site_fork_child(hk_heap *heap)
{
    /* The parent reports what it allocated before the fork; the child
     * starts from zero or the daemon would count those allocations twice.
     * live_bytes is a level and the child does hold those blocks. */
    if (heap != NULL && heap != &hk_empty_heap) {
        for (uint32_t used = heap->sites_used; used; used &= used - 1) {
            hk_site_local *l = &heap->sites[__builtin_ctz(used)];
            l->allocs = l->bytes = 0;
            memset(l->hist, 0, sizeof l->hist);
            l->pending = 0;
        }
    }
    for (uint32_t k = 0, n = hk_site_count(); k < n; k++) {
        uint32_t i;
        site_entry *e = claimed_entry(k, &i);
        if (e == NULL) continue;
        atomic_store_explicit(&e->allocs, 0, memory_order_relaxed);
        atomic_store_explicit(&e->frees, 0, memory_order_relaxed);
        atomic_store_explicit(&e->bytes, 0, memory_order_relaxed);
        for (unsigned b = 0; b < HK_SITE_HIST; b++) atomic_store_explicit(&e->hist[b], 0, memory_order_relaxed);
        atomic_store_explicit(&e->bc_hits, 0, memory_order_relaxed);
        atomic_store_explicit(&e->bc_misses, 0, memory_order_relaxed);
        atomic_store_explicit(&e->bc_evictions, 0, memory_order_relaxed);
        atomic_store_explicit(&e->thp_blocks, 0, memory_order_relaxed);
        atomic_store_explicit(&e->slow_ns, 0, memory_order_relaxed);
        /* A resolution another thread had under way never finishes here. */
        int busy = 1;
        atomic_compare_exchange_strong(&e->resolved, &busy, 0);
    }
}

/* ---- resolving a site to its fleet-wide key ---------------------------- */

static void resolve(site_entry *e)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&e->resolved, &expected, 1)) return;
    hk_module_key key;
    if (hk_module_resolve(atomic_load(&e->ra), &key) < 0) {
        atomic_store_explicit(&e->resolved, 0, memory_order_release);   /* busy: next time */
        return;
    }
    e->module_hash = key.hash;
    e->offset = key.offset;
    memcpy(e->module, key.path, sizeof e->module);
    atomic_store_explicit(&e->resolved, 2, memory_order_release);
}

void hk_site_for_each(void (*fn)(const hk_site_view *, void *), void *arg)
{
    hk_heap *heap = hk_tls_heap;
    if (heap != &hk_empty_heap) hk_site_flush_thread(heap);
    for (uint32_t k = 0, n = hk_site_count(); k < n; k++) {
        uint32_t i;
        site_entry *e = claimed_entry(k, &i);
        if (e == NULL) continue;
        uintptr_t ra = atomic_load_explicit(&e->ra, memory_order_acquire);
        if (atomic_load_explicit(&e->resolved, memory_order_acquire) != 2) resolve(e);
        if (atomic_load_explicit(&e->resolved, memory_order_acquire) != 2) continue;
        hk_site_view v;
        v.index = i;
        v.address = ra;
        v.module_hash = e->module_hash;
        v.offset = e->offset;
        memcpy(v.module, e->module, sizeof v.module);
        v.counters.allocs = atomic_load_explicit(&e->allocs, memory_order_relaxed);
        v.counters.frees = atomic_load_explicit(&e->frees, memory_order_relaxed);
        v.counters.bytes = atomic_load_explicit(&e->bytes, memory_order_relaxed);
        v.counters.live_bytes = atomic_load_explicit(&e->live_bytes, memory_order_relaxed);
        for (unsigned b = 0; b < HK_SITE_HIST; b++)
            v.counters.size_hist[b] = atomic_load_explicit(&e->hist[b], memory_order_relaxed);
        v.counters.bigcache_hits = atomic_load_explicit(&e->bc_hits, memory_order_relaxed);
        v.counters.bigcache_misses = atomic_load_explicit(&e->bc_misses, memory_order_relaxed);
        v.counters.bigcache_evictions = atomic_load_explicit(&e->bc_evictions, memory_order_relaxed);
        v.counters.thp_blocks = atomic_load_explicit(&e->thp_blocks, memory_order_relaxed);
        v.counters.slow_ns = atomic_load_explicit(&e->slow_ns, memory_order_relaxed);
        v.policy = hk_site_policy_get(i);
        fn(&v, arg);
    }
}
