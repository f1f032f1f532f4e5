/* Large block box.  The user pointer is base + 64 for ordinary blocks and
 * base + alignment for aligned ones, so the header is always at p - 64 and
 * the chunk holding p belongs to this mapping alone: free() can trust the
 * header once the chunk map says "large" and the offset has a legal shape. */
#include "large.h"
#include "bigcache.h"
#include "chunk_map.h"
#include "counters.h"
#include "options.h"
#include "os.h"
#include "thp.h"

#include <errno.h>

typedef struct hk_large_hdr {
    _Atomic uint32_t magic;
    uint32_t site;
    uint8_t *base;
    size_t map_size;
    size_t size;                 /* as requested */
    void *self;                  /* the user pointer */
    uint32_t cacheable;          /* ordinary (unaligned) block: BigCache may keep it */
    uint32_t thp;
    uint64_t reserved[2];
} hk_large_hdr;
_Static_assert(sizeof(hk_large_hdr) == HK_LARGE_HDR, "large header is 64 bytes");

#define LARGE_MAX ((size_t)1 << 46)
static _Atomic uint64_t n_allocs, n_frees, n_mapped_bytes, n_thp;

void hk_large_get_stats(hk_large_stats *out)
{
    out->allocs = atomic_load(&n_allocs);
    out->frees = atomic_load(&n_frees);
    out->mapped_bytes = atomic_load(&n_mapped_bytes);
    out->thp_blocks = atomic_load(&n_thp);
}

static inline hk_large_hdr *hdr_of(const void *p) { return (hk_large_hdr *)((uintptr_t)p - HK_LARGE_HDR); }

/* Mapping sizes are rounded to quarter powers of two so that blocks of
 * nearly the same size share a BigCache key. */
static size_t map_size_for(size_t need)
{
    need = (need + 4095) & ~(size_t)4095;
    if (need <= 65536) return need;
    unsigned w = 64u - (unsigned)__builtin_clzl(need - 1);
    size_t step = (size_t)1 << (w - 3);
    return (need + step - 1) & ~(step - 1);
}

static void release(hk_large_hdr *h)
{
    hk_chunk_set((uintptr_t)h->self, HK_CHUNK_NONE);
    atomic_fetch_sub_explicit(&n_mapped_bytes, h->map_size, memory_order_relaxed);
    hk_os_unmap(h->base, h->map_size);
}

static void evict(void *block, size_t size)
{
    hk_large_hdr *h = block;
    (void)size;
    hk_site_note_bigcache(h->site, 0, 1);
    release(h);
}

void hk_large_init(void) { hk_bigcache_init(evict); }

static void advise_huge(hk_large_hdr *h)
{
    size_t len = hk_thp_advice((uintptr_t)h->base, h->map_size, 1);
    if (len && hk_os_advise_huge(h->base, len) == 0) {
        h->thp = 1;
        atomic_fetch_add_explicit(&n_thp, 1, memory_order_relaxed);
        hk_site_note_thp(h->site);
    }
}

static void *large_alloc(size_t size, size_t align, uint32_t site, const hk_site_policy *pol,
                         int *zeroed)
{
    *zeroed = 0;
    if (size > LARGE_MAX || align > LARGE_MAX) { errno = ENOMEM; return NULL; }
    int plain = align <= HK_LARGE_HDR;
    size_t off = plain ? HK_LARGE_HDR : align;
    size_t map_size = plain ? map_size_for(off + size) : ((off + size + 4095) & ~(size_t)4095);
    int use_cache = plain && hk_opt.bigcache && pol->bigcache_slots > 0;

    if (use_cache) {
        hk_large_hdr *h = hk_bigcache_get(site, map_size);
        hk_site_note_bigcache(site, h != NULL, 0);
        if (h) {
            /* The block may be somewhat bigger than asked: it keeps its mapping. */
            h->site = site;
            h->size = size;
            if (!h->thp && pol->thp) advise_huge(h);
            atomic_store_explicit(&h->magic, HK_LARGE_MAGIC, memory_order_release);
            atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);
            hk_site_note_large_live(site, size, 1);
            return h->self;
        }
    }
    size_t map_align = align > HK_SEGMENT_SIZE ? align : HK_SEGMENT_SIZE;
    uint8_t *base = hk_os_map_aligned(map_size, map_align);
    if (base == NULL) { errno = ENOMEM; return NULL; }
    uint8_t *p = base + off;
    /* Advise before the header write faults in the first page: once a small
     * page sits in the range, the kernel will not fault a huge one there. */
    size_t huge = pol->thp ? hk_thp_advice((uintptr_t)base, map_size, 1) : 0;
    int got_huge = huge && hk_os_advise_huge(base, huge) == 0;
    hk_large_hdr *h = hdr_of(p);
    h->site = site;
    h->base = base;
    h->map_size = map_size;
    h->size = size;
    h->self = p;
    h->cacheable = (uint32_t)plain;
    h->thp = (uint32_t)got_huge;
    if (got_huge) {
        atomic_fetch_add_explicit(&n_thp, 1, memory_order_relaxed);
        hk_site_note_thp(site);
    }
    atomic_store_explicit(&h->magic, HK_LARGE_MAGIC, memory_order_release);
    hk_chunk_set((uintptr_t)p, HK_CHUNK_LARGE);
    atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&n_mapped_bytes, map_size, memory_order_relaxed);
    hk_site_note_large_live(site, size, 1);
    *zeroed = 1;
    return p;
}

/* The header of a pointer the chunk map calls large, or an abort. */
static hk_large_hdr *checked(const void *p, const char *fn)
{
    uintptr_t off = (uintptr_t)p & HK_SEGMENT_MASK;
    int legal = off == HK_LARGE_HDR || off == 0 ||
                (off >= 2 * HK_LARGE_HDR && (off & (off - 1)) == 0);
    if (!legal) hk_fatal_pointer(fn, "invalid pointer", p);
    hk_large_hdr *h = hdr_of(p);
    uint32_t m = atomic_load_explicit(&h->magic, memory_order_acquire);
    if (m == HK_LARGE_FREED && h->self == p) hk_fatal_pointer(fn, "double free", p);
    if (m != HK_LARGE_MAGIC || h->self != p) hk_fatal_pointer(fn, "invalid pointer", p);
    return h;
}

static void large_free(void *p, const char *fn)
{
    hk_large_hdr *h = checked(p, fn);
    uint32_t live = HK_LARGE_MAGIC;
    if (!atomic_compare_exchange_strong(&h->magic, &live, HK_LARGE_FREED))
        hk_fatal_pointer(fn, "double free", p);     /* lost a race with another free */
    atomic_fetch_add_explicit(&n_frees, 1, memory_order_relaxed);
    hk_site_note_free(h->site, h->size);
    if (h->cacheable && hk_opt.bigcache) {
        hk_site_policy pol = hk_site_policy_get(h->site);
        int evicted;
        if (hk_bigcache_put(h->site, h, h->map_size, pol.bigcache_slots, &evicted)) return;
    }
    release(h);
}

size_t hk_large_usable(const void *p, const char *fn)
{
    hk_large_hdr *h = checked(p, fn);
    return (size_t)(h->base + h->map_size - (uint8_t *)p);
}

static void *large_try_realloc(void *p, size_t size, const char *fn)
{
    hk_large_hdr *h = checked(p, fn);
    size_t usable = (size_t)(h->base + h->map_size - (uint8_t *)p);
    if (size <= usable && size >= usable / 2) {
        h->size = size;
        return p;
    }
    if (!h->cacheable || size < usable || size > LARGE_MAX) return NULL;
    /* Growth: move the pages to a bigger aligned mapping, no copying. */
    size_t new_map = map_size_for(HK_LARGE_HDR + size);
    uint8_t *old_base = h->base;
    size_t old_map = h->map_size;
    hk_chunk_set((uintptr_t)p, HK_CHUNK_NONE);
    uint8_t *base = hk_os_remap_aligned(old_base, old_map, new_map, HK_SEGMENT_SIZE);
    if (base == NULL) {
        hk_chunk_set((uintptr_t)p, HK_CHUNK_LARGE);
        return NULL;
    }
    uint8_t *np = base + HK_LARGE_HDR;
    hk_large_hdr *nh = hdr_of(np);
    nh->base = base;
    nh->map_size = new_map;
    nh->size = size;
    nh->self = np;
    nh->thp = 0;
    hk_site_policy pol = hk_site_policy_get(nh->site);
    if (pol.thp) advise_huge(nh);
    hk_chunk_set((uintptr_t)np, HK_CHUNK_LARGE);
    atomic_fetch_add_explicit(&n_mapped_bytes, new_map - old_map, memory_order_relaxed);
    return np;
}

/* ---- the entry points, timed for counters.h ----------------------------- */

void *hk_large_alloc(size_t size, size_t align, uint32_t site, const hk_site_policy *pol,
                     int *zeroed)
{
    uint64_t t0 = hk_ticks();
    void *p = large_alloc(size, align, site, pol, zeroed);
    hk_counters_large(hk_ticks() - t0, p ? size : 0);
    return p;
}

void hk_large_free(void *p, const char *fn)
{
    uint64_t t0 = hk_ticks();
    large_free(p, fn);
    hk_counters_large(hk_ticks() - t0, 0);
}

void *hk_large_try_realloc(void *p, size_t size, const char *fn)
{
    uint64_t t0 = hk_ticks();
    void *q = large_try_realloc(p, size, fn);
    hk_counters_large(hk_ticks() - t0, 0);
    return q;
}
