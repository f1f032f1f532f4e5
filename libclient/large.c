/* Large block box.  The user pointer is base + 64 + a multiple of 64 below
 * a page for ordinary blocks (block_offset) and base + alignment for
 * aligned ones, so the header is always at p - 64 and
 * the chunk holding p belongs to this mapping alone: free() can trust the
 * header once the chunk map says "large" and the offset has a legal shape. */
#include "large.h"
#include "bigcache.h"
#include "chunk_map.h"
#include "counters.h"
#include "internal.h"
#include "knobs.h"
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
/* What the kept slots hold, for mallinfo: pages above bit 20, blocks below
 * (a block per thread with a heap: far fewer than 2^20), so that a block
 * entering or leaving a slot costs one atomic add. */
#define KEPT_PAGE_SHIFT 20
static _Atomic uint64_t n_kept;
static _Atomic uint32_t unit_used, touch_ns;   /* move_unit(): what it chose, from what */

void hk_large_get_stats(hk_large_stats *out)
{
    out->allocs = atomic_load(&n_allocs);
    out->frees = atomic_load(&n_frees);
    out->mapped_bytes = atomic_load(&n_mapped_bytes);
    out->thp_blocks = atomic_load(&n_thp);
    uint64_t kept = atomic_load(&n_kept);
    out->kept_blocks = kept & (((uint64_t)1 << KEPT_PAGE_SHIFT) - 1);
    out->kept_bytes = (kept >> KEPT_PAGE_SHIFT) << 12;
    out->move_unit = atomic_load_explicit(&unit_used, memory_order_relaxed);
    out->moved_touch_ns = atomic_load_explicit(&touch_ns, memory_order_relaxed);
}

static inline hk_large_hdr *hdr_of(const void *p) { return (hk_large_hdr *)((uintptr_t)p - HK_LARGE_HDR); }

/* Growth by realloc rounds to quarter powers of two, so that a buffer
 * grown step by step moves its pages a logarithmic number of times. */
static size_t map_size_for(size_t need)
{
    need = (need + 4095) & ~(size_t)4095;
    if (need <= 65536) return need;
    unsigned w = 64u - (unsigned)__builtin_clzl(need - 1);
    size_t step = (size_t)1 << (w - 3);
    return (need + step - 1) & ~(step - 1);
}

static inline size_t page_round(size_t n) { return (n + 4095) & ~(size_t)4095; }

static void release(hk_large_hdr *h)
{
    hk_chunk_set((uintptr_t)h->self, HK_CHUNK_NONE);
    atomic_fetch_sub_explicit(&n_mapped_bytes, h->map_size, memory_order_relaxed);
    hk_os_unmap(h->base, h->map_size);
}

/* ---- cached memory, cut and joined ----------------------------------------
 * BigCache holds address ranges: whole freed blocks (their header still
 * there, marked freed, so a second free is caught) and pieces of them.  A
 * new block takes the cached range that best fits it: one big enough and
 * 4 MiB-aligned serves in place, its tail going back as a piece; otherwise
 * up to MAX_PIECES ranges are moved (mremap: page tables, no copy, no fault)
 * into a fresh aligned mapping, the rest of which is faulted in as usual.
 * So a block replaced by one of another size costs the faults of the
 * difference at most, and the cache drains into the blocks that need it
 * instead of holding memory beside them.
 *
 * A range moves from its start, as far as the block needs it.  Where it
 * lies at the same offset within 2 MiB as its place in the block (a whole
 * freed block, 4 MiB-aligned, at the start of a new one), the kernel moves
 * page-table pages whole; elsewhere one entry per page.  What an entry
 * moved on its own costs depends on the machine (move_unit):
 *  - where the hardware walks the guest's page tables, next to nothing:
 *    ranges are cut and moved at any page.  Moving only whole 2 MiB units
 *    and leaving the ragged ends cached cost more on such a VM:
 *    bench/suite's big-blocks ran at 0.797x glibc's time and 0.908x its
 *    peak RSS that way, at 0.655x and 0.838x at any page (the ends left
 *    behind were faulted in afresh; bash bench/before_after.sh,
 *    2026-12-04);
 *  - under shadow paging, a trap on the page's next touch (6 us a page on
 *    one VM, half a fresh fault's 12 us, against 0.13 us for a page moved
 *    with its page-table page): ranges are cut and moved in 2 MiB units.
 *    There big-blocks (400 rounds) took 1.5 s this way, 3.4 s at any page,
 *    1.6 s under tcmalloc and 2.8 s under glibc.
 *
 * A block assembled from several ranges spans several kernel mappings;
 * kernels before 6.17 move only one at a time.  The first refusal (EFAULT)
 * switches to single moves for good: one range per block, grown in the
 * same mremap, so blocks and pieces stay single mappings. */
#define MAX_PIECES 8
#define MIN_PIECE  ((size_t)64 << 10)   /* smaller remainders are unmapped */
#define RING_PER_SLOT 8                 /* ring entries per policy slot */
#define MOVE_UNIT  ((size_t)2 << 20)    /* what one page-table page maps */
#define TRAP_NS    1000u                /* a moved page's touch costing more is a trap */

/* The granule ranges are cut and moved in: the OS page, or MOVE_UNIT where
 * a page moved on its own traps when touched (hk_opt.moves_trap, else
 * measured).  There every cached range starts on a 2 MiB boundary, as
 * freed blocks do: an in-place cut leaves its rest at the next boundary
 * (the block keeps the pages between, resident either way), and a piece
 * that does not complete a block moves in whole units, the rest staying
 * cached.  Each piece then lies at its place's offset within 2 MiB, and
 * the kernel moves its page-table pages whole. */
static size_t move_unit(void)
{
    int trap = hk_opt.moves_trap;
    if (trap < 0) {
        uint32_t ns = hk_os_moved_page_touch_ns();
        atomic_store_explicit(&touch_ns, ns, memory_order_relaxed);
        trap = ns > TRAP_NS;
    }
    size_t unit = trap ? MOVE_UNIT : HK_OS_PAGE;
    atomic_store_explicit(&unit_used, (uint32_t)unit, memory_order_relaxed);
    return unit;
}

static inline size_t unit_round(size_t n, size_t unit) { return (n + unit - 1) & ~(unit - 1); }

static _Atomic int single_moves;

/* The chunk-map entries of the whole freed blocks a cached range holds go
 * when the range leaves its place (moved, unmapped or reused): a block's
 * entry is the 4 MiB chunk it starts, and no live block starts inside a
 * cached range. */
static void unmark(uint8_t *base, size_t len)
{
    uintptr_t c = ((uintptr_t)base + HK_SEGMENT_MASK) & ~(uintptr_t)HK_SEGMENT_MASK;
    for (; c < (uintptr_t)base + len; c += HK_SEGMENT_SIZE) hk_chunk_set(c + HK_LARGE_HDR, HK_CHUNK_NONE);
}

static void drop_range(uint8_t *base, size_t len)
{
    unmark(base, len);
    atomic_fetch_sub_explicit(&n_mapped_bytes, len, memory_order_relaxed);
    hk_os_unmap(base, len);
}

static void evict(void *block, size_t size, uint32_t site)
{
    hk_site_note_bigcache(site, 0, 1);
    drop_range(block, size);
}

void hk_large_init(void) { hk_bigcache_init(evict); }

/* The tail of a cached range the new block does not need goes back. */
static void keep_range(uint32_t site, uint8_t *base, size_t len, unsigned entries)
{
    int evicted;
    if (len < MIN_PIECE || !hk_bigcache_put(site, base, len, entries, &evicted)) drop_range(base, len);
}

/* A freed block goes to the cache joined with the cached ranges around it
 * (they were mapped side by side): one bigger range serves a later block
 * in place more often.  Joined ranges span several kernel mappings, so not
 * once the kernel has refused to move such ranges.  The block keeps its
 * header and chunk-map entry meanwhile: a second free is still caught. */
static void cache_block(uint32_t site, uint8_t *base, size_t len, unsigned entries)
{
    if (!atomic_load_explicit(&single_moves, memory_order_relaxed)) {
        size_t nlen;
        uint8_t *before = hk_bigcache_take_at(site, NULL, base, &nlen);
        if (before) {
            base = before;
            len += nlen;
        }
        if (hk_bigcache_take_at(site, base + len, NULL, &nlen)) len += nlen;
    }
    int evicted;
    if (!hk_bigcache_put(site, base, len, entries, &evicted)) drop_range(base, len);
}

/* Moves the first `take` bytes of the cached range at e into dest + off,
 * its rest going back to the cache; single: dest is NULL and gets a
 * mapping of `need` bytes grown from the range.  Returns 0, or -1 when the
 * kernel refused (the range is then unmapped: its layout is unknown). */
static int move_in(uint32_t site, uint8_t *e, size_t len, size_t take, uint8_t **dest, size_t off, size_t need,
                   unsigned entries)
{
    unmark(e, take);
    int rc;
    if (*dest == NULL) {
        *dest = hk_os_remap_aligned(e, take, need, HK_SEGMENT_SIZE);
        rc = *dest ? 0 : -1;
    } else {
        rc = hk_os_move(e, take, *dest + off);
        if (rc == -EFAULT) atomic_store_explicit(&single_moves, 1, memory_order_relaxed);
    }
    if (rc != 0) {
        drop_range(e, len);
        return -1;
    }
    atomic_fetch_sub_explicit(&n_mapped_bytes, take, memory_order_relaxed);
    if (len > take) keep_range(site, e + take, len - take, entries);
    return 0;
}

/* A mapping of *need bytes, 4 MiB-aligned, made of cached memory as far as
 * the site's ring has it, or (others) another's when the site's is empty
 * (*reused: any), not counted as mapped yet; NULL when there is none or
 * the kernel refuses.  *need grows when a small tail stays with a block
 * reused in place. */
static uint8_t *from_cache(uint32_t site, size_t *need, unsigned entries, int others, int *reused)
{
    size_t len, want = *need;
    *reused = 0;
    uint8_t *e = hk_bigcache_take(site, want, HK_SEGMENT_MASK, others, &len);
    if (e == NULL) return NULL;
    size_t unit = move_unit();
    size_t head = (size_t)(-(uintptr_t)e & HK_SEGMENT_MASK);
    if (head <= len && len - head >= want) {
        /* In place, from the range's first 4 MiB boundary. */
        if (head) keep_range(site, e, head, entries);
        e += head;
        len -= head;
        size_t cut = unit_round(want, unit);
        if (cut <= len && len - cut >= MIN_PIECE) keep_range(site, e + cut, len - cut, entries);
        else cut = len;
        *need = want = cut;
        unmark(e, want);
        atomic_fetch_sub_explicit(&n_mapped_bytes, want, memory_order_relaxed);
        *reused = 1;
        return e;
    }
    uint8_t *dest = NULL;
    *need = want = unit_round(want, unit);
    if (!atomic_load_explicit(&single_moves, memory_order_relaxed)) {
        dest = hk_os_map_aligned(want, HK_SEGMENT_SIZE);
        if (dest == NULL) {
            keep_range(site, e, len, entries);
            return NULL;
        }
    }
    size_t off = 0;
    for (unsigned pieces = 1;; pieces++) {
        size_t take = len < want - off ? len & ~(unit - 1) : want - off;
        int single = dest == NULL;
        if (take == 0) {
            keep_range(site, e, len, entries);
            break;
        }
        if (move_in(site, e, len, take, &dest, off, want, entries) != 0) break;
        *reused = 1;
        off += take;
        if (off == want || single || pieces == MAX_PIECES) break;
        e = hk_bigcache_take(site, want - off, HK_SEGMENT_MASK, others, &len);
        if (e == NULL) break;
    }
    return dest;
}

/* ---- the block a thread freed last ---------------------------------------
 * A program that frees a large buffer and asks for one of about its size
 * again, over and over, would take a ring lock and walk a ring twice per
 * round.  So a thread with a heap keeps the block it freed last (marked
 * freed, so a second free is still caught) for its own next request, and
 * the block goes to BigCache as soon as the thread frees another, asks for
 * one it does not fit, or its heap's maintenance, idleness, exit or a trim
 * comes: a kept block is out of BigCache's budget and ageing for a
 * millisecond of the thread's allocator work at most. */
#define KEPT_SLACK 8u   /* a kept block serves a request it exceeds by at most 1/8 of itself */

static void count_kept(const hk_large_hdr *h, int in)
{
    uint64_t d = ((uint64_t)(h->map_size >> 12) << KEPT_PAGE_SHIFT) | 1;
    if (in) atomic_fetch_add_explicit(&n_kept, d, memory_order_relaxed);
    else atomic_fetch_sub_explicit(&n_kept, d, memory_order_relaxed);
}

/* Entries the site's ring may hold under its policy now (0: it caches nothing). */
static unsigned ring_entries(uint32_t site) { return hk_site_policy_get(site).bigcache_slots * RING_PER_SLOT; }

/* A freed block to BigCache, or to the OS when its site caches nothing now. */
static void stash(hk_large_hdr *h)
{
    unsigned entries = ring_entries(h->site);
    if (entries > 0) cache_block(h->site, h->base, h->map_size, entries);
    else release(h);
}

void hk_large_drop_kept(hk_heap *heap)
{
    if (atomic_load_explicit(&heap->large_kept, memory_order_relaxed) == NULL) return;
    hk_large_hdr *k = atomic_exchange_explicit(&heap->large_kept, NULL, memory_order_acquire);
    if (k == NULL) return;
    count_kept(k, 0);
    stash(k);
}

/* 1 when h, just freed, is now the calling thread's kept block. */
static int keep(hk_large_hdr *h)
{
    hk_heap *heap = hk_tls_heap;
    if (heap == &hk_empty_heap || h->map_size > (size_t)hk_knob(HK_KNOB_BIGCACHE_KIB) << 10) return 0;
    count_kept(h, 1);
    hk_large_hdr *old = atomic_exchange_explicit(&heap->large_kept, h, memory_order_acq_rel);
    if (old != NULL) {
        count_kept(old, 0);
        stash(old);
    }
    return 1;
}

/* The calling thread's kept block when it serves a block of *need bytes
 * for site (*need becomes its size; it is still counted as mapped); else
 * NULL, the kept block (if any) gone to BigCache, where the caller looks
 * next. */
static uint8_t *take_kept(uint32_t site, size_t *need)
{
    hk_heap *heap = hk_tls_heap;
    if (atomic_load_explicit(&heap->large_kept, memory_order_relaxed) == NULL) return NULL;
    hk_large_hdr *k = atomic_exchange_explicit(&heap->large_kept, NULL, memory_order_acquire);
    if (k == NULL) return NULL;
    count_kept(k, 0);
    if (k->site != site || k->map_size < *need || k->map_size - *need > k->map_size / KEPT_SLACK) {
        stash(k);
        return NULL;
    }
    *need = k->map_size;
    return k->base;
}

/* The site's policy, or the THP knob for every site, unless HAKMEM_THP=0
 * forbids them. */
static int wants_huge(const hk_site_policy *pol)
{
    return hk_opt.thp && (pol->thp || (hk_knob(HK_KNOB_THP) & HK_THP_LARGE));
}

static void advise_huge(hk_large_hdr *h)
{
    size_t len = hk_thp_advice((uintptr_t)h->base, h->map_size, 1);
    if (len && hk_os_advise_huge(h->base, len) == 0) {
        h->thp = 1;
        atomic_fetch_add_explicit(&n_thp, 1, memory_order_relaxed);
        hk_site_note_thp(h->site);
    }
}

/* Where in its first page an ordinary block starts: 64 bytes (its header)
 * past a cache line chosen by the mapping's address, within the room its
 * last page leaves (so it costs no page).  A program that walks a block a
 * page at a time (a column of rows 4 KiB long, a byte per page) touches
 * one cache set per offset in the page; at a fixed offset of 64 that was
 * the set of every page-aligned structure's second line, and such a walk
 * ran about 10% slower than at glibc's offset (bench/scenarios VM).  By
 * the address, so that a block reused where it was keeps its offset and
 * its lines stay cached; the first line (offset 64) only when nothing else
 * fits. */
static size_t block_offset(size_t size, const uint8_t *base)
{
    size_t room = page_round(HK_LARGE_HDR + size) - (HK_LARGE_HDR + size);
    size_t colors = (room < 4096 - 2 * 64 ? room : 4096 - 2 * 64) / 64;   /* p stays in page 0 */
    if (colors == 0) return HK_LARGE_HDR;
    uint64_t h = ((uint64_t)(uintptr_t)base >> 22) * 0x9E3779B97F4A7C15ull;
    return HK_LARGE_HDR + 64 * (1 + (size_t)((h >> 32) % colors));
}

static void *large_alloc(size_t size, size_t align, uint32_t site, const hk_site_policy *pol,
                         int *zeroed)
{
    *zeroed = 0;
    if (size > LARGE_MAX || align > LARGE_MAX) { errno = ENOMEM; return NULL; }
    int plain = align <= HK_LARGE_HDR;
    size_t off = plain ? HK_LARGE_HDR : align;
    size_t map_size = page_round(off + size);     /* block_offset keeps it */
    unsigned entries = pol->bigcache_slots * RING_PER_SLOT;
    int use_cache = plain && hk_opt.bigcache && entries > 0;

    uint8_t *base = use_cache ? take_kept(site, &map_size) : NULL;
    int was_kept = base != NULL, reused = was_kept;
    if (use_cache) {
        if (!was_kept) {
            /* Another site's cached memory may carry huge-page advice this
             * site's policy does not want: not once any block was advised. */
            int others = wants_huge(pol) || atomic_load_explicit(&n_thp, memory_order_relaxed) == 0;
            base = from_cache(site, &map_size, entries, others, &reused);
        }
        hk_bigcache_count(reused);
        hk_site_note_bigcache(site, reused, 0);
    }
    int fresh = !reused;
    if (base == NULL) {
        size_t map_align = align > HK_SEGMENT_SIZE ? align : HK_SEGMENT_SIZE;
        base = hk_os_map_aligned(map_size, map_align);
        if (base == NULL) { errno = ENOMEM; return NULL; }
    }
    if (plain) off = block_offset(size, base);
    uint8_t *p = base + off;
    /* Advise before the header write faults in the first page of a fresh
     * mapping: once a small page sits in the range, the kernel will not
     * fault a huge one there. */
    size_t huge = fresh && wants_huge(pol) ? hk_thp_advice((uintptr_t)base, map_size, 1) : 0;
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
    if (!fresh && wants_huge(pol)) advise_huge(h);
    atomic_store_explicit(&h->magic, HK_LARGE_MAGIC, memory_order_release);
    hk_chunk_set((uintptr_t)p, HK_CHUNK_LARGE);
    atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);
    if (!was_kept) atomic_fetch_add_explicit(&n_mapped_bytes, map_size, memory_order_relaxed);
    hk_site_note_large_live(site, size, 1);
    *zeroed = fresh;
    return p;
}

/* The header of a pointer the chunk map calls large, or an abort. */
static hk_large_hdr *checked(const void *p, const char *fn)
{
    uintptr_t off = (uintptr_t)p & HK_SEGMENT_MASK;
    int legal = (off >= HK_LARGE_HDR && off < 4096 && off % 64 == 0) || off == 0 ||
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
    unsigned entries = h->cacheable && hk_opt.bigcache ? ring_entries(h->site) : 0;
    if (entries == 0) release(h);
    else if (!keep(h)) cache_block(h->site, h->base, h->map_size, entries);
}

size_t hk_large_usable(const void *p, const char *fn)
{
    hk_large_hdr *h = checked(p, fn);
    return (size_t)(h->base + h->map_size - (uint8_t *)p);
}

/* Growth into the cached range right after the block (often the rest of
 * the range the block was cut from, still resident): no system call.  The
 * part it does not need stays cached.  0 when there is no such range or it
 * is too short. */
static int grow_in_place(hk_large_hdr *h, size_t need)
{
    size_t len, more = need - h->map_size;
    uint8_t *t = hk_bigcache_take_at(h->site, h->base + h->map_size, NULL, &len);
    if (t == NULL) return 0;
    unsigned entries = ring_entries(h->site);
    if (len < more) {
        keep_range(h->site, t, len, entries);
        return 0;
    }
    if (len - more >= MIN_PIECE) keep_range(h->site, t + more, len - more, entries);
    else more = len;
    unmark(t, more);
    h->map_size += more;
    return 1;
}

static void *large_try_realloc(void *p, size_t size, const char *fn)
{
    hk_large_hdr *h = checked(p, fn);
    size_t usable = (size_t)(h->base + h->map_size - (uint8_t *)p);
    /* Growth within the mapping stays put (a block cut in 2 MiB units
     * holds room to grow); a shrink does while it wastes at most half. */
    if (size <= usable && (size >= h->size || size >= usable / 2)) {
        h->size = size;
        return p;
    }
    if (!h->cacheable || size < usable || size > LARGE_MAX) return NULL;
    size_t off = (size_t)((uint8_t *)p - h->base);
    if (grow_in_place(h, page_round(off + size))) {
        h->size = size;
        return p;
    }
    /* Growth: move the pages to a bigger aligned mapping, no copying. */
    size_t new_map = map_size_for(off + size);
    uint8_t *old_base = h->base;
    size_t old_map = h->map_size;
    /* Into a fresh aligned mapping, the old pages moved to its start: a
     * block assembled from cached pieces spans several kernel mappings,
     * which a resizing mremap would refuse. */
    uint8_t *base = hk_os_map_aligned(new_map, HK_SEGMENT_SIZE);
    if (base == NULL) return NULL;
    hk_chunk_set((uintptr_t)p, HK_CHUNK_NONE);
    if (hk_os_move(old_base, old_map, base) != 0) {
        hk_chunk_set((uintptr_t)p, HK_CHUNK_LARGE);
        hk_os_unmap(base, new_map);
        return NULL;
    }
    uint8_t *np = base + off;
    hk_large_hdr *nh = hdr_of(np);
    nh->base = base;
    nh->map_size = new_map;
    nh->size = size;
    nh->self = np;
    nh->thp = 0;
    hk_site_policy pol = hk_site_policy_get(nh->site);
    if (wants_huge(&pol)) advise_huge(nh);
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
