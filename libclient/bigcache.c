/* BigCache box.  64 rings of 32 slots; a site maps to ring site % 64.  Each
 * ring has its own lock (large allocations are rare enough that one
 * uncontended lock costs nothing next to the mmap it saves).  The bytes
 * cached are bounded by the BIGCACHE_KIB knob: beyond it the oldest blocks
 * of all rings go first.
 *
 * The rings take 84 KiB, of which a program uses a ring or two: what walks
 * them (trim, eviction) visits only the rings that hold a block, and the
 * locks sit together, apart from the rings, so that locking them all at
 * fork touches one page.  A page of the rings that is never read stays out
 * of the resident set (some kernels give even a read of untouched memory a
 * page of its own). */
#include "bigcache.h"
#include "internal.h"
#include "knobs.h"
#include "lock.h"
#include "os.h"

typedef struct cache_slot {
    void *block;                  /* written under the ring lock, peeked without */
    size_t size;                  /* written under the ring lock, peeked without */
    uint64_t freed_ns;
    uint64_t seq;                 /* put order, process-wide: the smallest is the oldest;
                                   * written under the ring lock, peeked without */
    uint32_t site;                /* whose block it was */
} cache_slot;

typedef struct ring {
    uint32_t held;                /* bit k: slot k holds a block; written under the
                                   * ring's lock, peeked without */
    cache_slot slot[HK_BIGCACHE_SLOTS];
} __attribute__((aligned(64))) ring;
_Static_assert(HK_BIGCACHE_SLOTS <= 32, "a bit of `held` per slot");

static ring rings[HK_BIGCACHE_SITES];
static hk_lock ring_lock[HK_BIGCACHE_SITES];
/* Bit s: ring s holds a block.  Set and cleared under the ring's lock, read
 * without it (a stale bit costs a walker one ring, or a take one miss). */
static _Atomic uint64_t occupied;
_Static_assert(HK_BIGCACHE_SITES <= 64, "a bit of `occupied` per ring");
static hk_bigcache_evict_fn evict_cb;
static _Atomic uint64_t n_hits, n_misses, n_puts, n_evictions, n_cached_bytes, n_cached_blocks;
static _Atomic uint64_t put_seq;

static uint64_t budget_bytes(void) { return (uint64_t)hk_knob(HK_KNOB_BIGCACHE_KIB) << 10; }

/* A block has left its slot (taken out under the ring lock): the counts follow. */
static void left_cache(size_t size)
{
    atomic_fetch_sub_explicit(&n_cached_bytes, size, memory_order_relaxed);
    atomic_fetch_sub_explicit(&n_cached_blocks, 1, memory_order_relaxed);
}

static void evicted(const cache_slot *old)
{
    atomic_fetch_add_explicit(&n_evictions, 1, memory_order_relaxed);
    left_cache(old->size);
    evict_cb(old->block, old->size, old->site);
}

void hk_bigcache_init(hk_bigcache_evict_fn evict) { evict_cb = evict; }

static unsigned ring_of(uint32_t site) { return site % HK_BIGCACHE_SITES; }

/* Under ring s's lock: slot k gives its block up. */
static void slot_emptied(unsigned s, unsigned k)
{
    __atomic_store_n(&rings[s].slot[k].block, NULL, __ATOMIC_RELAXED);
    uint32_t held = rings[s].held & ~(1u << k);
    __atomic_store_n(&rings[s].held, held, __ATOMIC_RELAXED);
    if (held == 0)
        atomic_fetch_and_explicit(&occupied, ~(1ull << s), memory_order_relaxed);
}

/* The slots of a ring that hold a block, for walking with next_slot
 * (a peek when not under the ring's lock). */
static uint32_t held_slots(const ring *r) { return __atomic_load_n(&r->held, __ATOMIC_RELAXED); }

static unsigned next_slot(uint32_t *m)
{
    unsigned k = (unsigned)__builtin_ctz(*m);
    *m &= *m - 1;
    return k;
}

/* Rings that hold a block, for walking with next_ring. */
static uint64_t occupied_rings(void) { return atomic_load_explicit(&occupied, memory_order_relaxed); }

static unsigned next_ring(uint64_t *m)
{
    unsigned s = (unsigned)__builtin_ctzll(*m);
    *m &= *m - 1;
    return s;
}

/* Whether slot c holds want bytes from its first address with no bit of
 * align_mask set. */
static int holds_aligned(const cache_slot *c, size_t want, uintptr_t align_mask)
{
    uintptr_t b = (uintptr_t)c->block, a = (b + align_mask) & ~align_mask;
    return a - b <= c->size && c->size - (a - b) >= want;
}

/* How well slot c serves want: holding it beats not; of two that hold it,
 * one that holds it aligned, then the smaller; of two that do not, the
 * bigger. */
static int serves_better(const cache_slot *c, const cache_slot *than, size_t want, uintptr_t align_mask)
{
    int holds = c->size >= want, than_holds = than->size >= want;
    if (holds != than_holds) return holds;
    if (!holds) return c->size > than->size;
    int aligned = holds_aligned(c, want, align_mask), than_aligned = holds_aligned(than, want, align_mask);
    if (aligned != than_aligned) return aligned;
    return c->size < than->size;
}

/* Takes ring s's slot that serves want best (see hk_bigcache_take). */
static void *take_from_ring(unsigned s, size_t want, uintptr_t align_mask, size_t *size)
{
    ring *r = &rings[s];
    void *found = NULL;
    hk_lock_acquire(&ring_lock[s]);
    int best = -1;
    for (uint32_t m = r->held; m;) {
        unsigned k = next_slot(&m);
        if (best < 0 || serves_better(&r->slot[k], &r->slot[best], want, align_mask)) best = (int)k;
    }
    if (best >= 0) {
        found = r->slot[best].block;
        *size = r->slot[best].size;
        slot_emptied(s, (unsigned)best);
    }
    hk_lock_release(&ring_lock[s]);
    if (found) left_cache(*size);
    return found;
}

/* The ring other than `own` whose best slot serves want best, by a peek
 * without the locks (the taker looks again under its lock); -1: none. */
static int best_other_ring(unsigned own, size_t want, uintptr_t align_mask)
{
    int best_ring = -1;
    cache_slot best = { 0 };
    for (uint64_t m = occupied_rings() & ~(1ull << own); m;) {
        unsigned s = next_ring(&m);
        for (uint32_t h = held_slots(&rings[s]); h;) {
            unsigned k = next_slot(&h);
            cache_slot c = { 0 };
            c.block = __atomic_load_n(&rings[s].slot[k].block, __ATOMIC_RELAXED);
            c.size = __atomic_load_n(&rings[s].slot[k].size, __ATOMIC_RELAXED);
            if (c.block == NULL) continue;
            if (best_ring < 0 || serves_better(&c, &best, want, align_mask)) {
                best = c;
                best_ring = (int)s;
            }
        }
    }
    return best_ring;
}

void *hk_bigcache_take(uint32_t site, size_t want, uintptr_t align_mask, int others, size_t *size)
{
    unsigned s = ring_of(site);
    if (occupied_rings() >> s & 1) {
        void *found = take_from_ring(s, want, align_mask, size);
        if (found) return found;
    }
    if (!others) return NULL;
    int other = best_other_ring(s, want, align_mask);
    return other < 0 ? NULL : take_from_ring((unsigned)other, want, align_mask, size);
}

void *hk_bigcache_take_at(uint32_t site, const void *start, const void *end, size_t *size)
{
    unsigned s = ring_of(site);
    if (!(occupied_rings() >> s & 1))
        return NULL;
    ring *r = &rings[s];
    void *found = NULL;
    hk_lock_acquire(&ring_lock[s]);
    for (uint32_t m = r->held; m && found == NULL;) {
        unsigned k = next_slot(&m);
        uint8_t *b = r->slot[k].block;
        if (!(start ? b == start : b + r->slot[k].size == end)) continue;
        found = b;
        *size = r->slot[k].size;
        slot_emptied(s, k);
    }
    hk_lock_release(&ring_lock[s]);
    if (found) left_cache(*size);
    return found;
}

void hk_bigcache_count(int hit)
{
    atomic_fetch_add_explicit(hit ? &n_hits : &n_misses, 1, memory_order_relaxed);
}

/* Evicts the oldest block of all rings.  Returns 0 when there is none. */
static int evict_oldest(void)
{
    int oldest_ring = -1;
    unsigned oldest_k = 0;
    uint64_t oldest_seq = UINT64_MAX;
    for (uint64_t m = occupied_rings(); m;) {
        unsigned s = next_ring(&m);
        for (uint32_t h = held_slots(&rings[s]); h;) {
            unsigned k = next_slot(&h);
            const cache_slot *c = &rings[s].slot[k];
            if (__atomic_load_n(&c->block, __ATOMIC_RELAXED) == NULL) continue;
            uint64_t seq = __atomic_load_n(&c->seq, __ATOMIC_RELAXED);
            if (seq < oldest_seq) { oldest_seq = seq; oldest_ring = (int)s; oldest_k = k; }
        }
    }
    if (oldest_ring < 0) return 0;
    cache_slot old = { 0 };
    hk_lock_acquire(&ring_lock[oldest_ring]);
    cache_slot *c = &rings[oldest_ring].slot[oldest_k];
    if (c->block && c->seq == oldest_seq) {      /* still the block the peek saw */
        old = *c;
        slot_emptied((unsigned)oldest_ring, oldest_k);
    }
    hk_lock_release(&ring_lock[oldest_ring]);
    if (old.block) evicted(&old);
    return 1;
}

/* Evicts oldest first until the cached bytes fit the budget; 1 if any went. */
static int fit_budget(void)
{
    int any = 0;
    while (atomic_load_explicit(&n_cached_bytes, memory_order_relaxed) > budget_bytes() && evict_oldest())
        any = 1;
    return any;
}

void hk_bigcache_fit_budget(void) { fit_budget(); }

int hk_bigcache_put(uint32_t site, void *block, size_t size, unsigned slots, int *evicted_out)
{
    *evicted_out = 0;
    if (slots == 0 || size > budget_bytes()) return 0;
    if (slots > HK_BIGCACHE_SLOTS) slots = HK_BIGCACHE_SLOTS;
    unsigned s = ring_of(site);
    ring *r = &rings[s];
    cache_slot old = { 0 };
    uint64_t seq = atomic_fetch_add_explicit(&put_seq, 1, memory_order_relaxed) + 1;
    hk_lock_acquire(&ring_lock[s]);
    /* An empty slot among the site's first `slots` if any, else the one
     * holding the oldest block (circular eviction). */
    uint32_t mine = slots >= 32 ? ~0u : (1u << slots) - 1, empty = mine & ~r->held;
    unsigned k = 0;
    if (empty) {
        k = (unsigned)__builtin_ctz(empty);
    } else {
        for (unsigned i = 1; i < slots; i++)
            if (r->slot[i].seq < r->slot[k].seq) k = i;
    }
    old = r->slot[k];
    __atomic_store_n(&r->slot[k].size, size, __ATOMIC_RELAXED);      /* other sites' takers peek */
    r->slot[k].site = site;
    r->slot[k].freed_ns = hk_coarse_ns();
    __atomic_store_n(&r->slot[k].seq, seq, __ATOMIC_RELAXED);
    __atomic_store_n(&r->slot[k].block, block, __ATOMIC_RELAXED);   /* trim peeks at it */
    if (old.block == NULL) {
        if (r->held == 0) atomic_fetch_or_explicit(&occupied, 1ull << s, memory_order_relaxed);
        __atomic_store_n(&r->held, r->held | 1u << k, __ATOMIC_RELAXED);
    }
    hk_lock_release(&ring_lock[s]);
    atomic_fetch_add_explicit(&n_puts, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&n_cached_bytes, size, memory_order_relaxed);
    atomic_fetch_add_explicit(&n_cached_blocks, 1, memory_order_relaxed);
    if (old.block) {
        evicted(&old);
        *evicted_out = 1;
    }
    if (fit_budget()) *evicted_out = 1;
    return 1;
}

void hk_bigcache_trim(uint64_t now_ns, uint64_t max_idle_ns)
{
    /* Every thread's maintenance calls this: with nothing cached there is
     * no ring to visit. */
    for (uint64_t m = occupied_rings(); m;) {
        unsigned s = next_ring(&m);
        ring *r = &rings[s];
        for (uint32_t h = held_slots(r); h;) {
            /* a racy peek, rechecked under the lock */
            unsigned i = next_slot(&h);
            cache_slot old = { 0 };
            hk_lock_acquire(&ring_lock[s]);
            if (r->slot[i].block && (max_idle_ns == 0 || now_ns - r->slot[i].freed_ns > max_idle_ns)) {
                old = r->slot[i];
                slot_emptied(s, i);
            }
            hk_lock_release(&ring_lock[s]);
            if (old.block) evicted(&old);
        }
    }
}

void hk_bigcache_memory(const void **start, size_t *bytes)
{
    *start = rings;
    *bytes = sizeof rings;
}

void hk_bigcache_get_stats(hk_bigcache_stats *out)
{
    out->hits = atomic_load(&n_hits);
    out->misses = atomic_load(&n_misses);
    out->puts = atomic_load(&n_puts);
    out->evictions = atomic_load(&n_evictions);
    out->cached_bytes = atomic_load(&n_cached_bytes);
    out->cached_blocks = atomic_load(&n_cached_blocks);
}

void hk_bigcache_fork_prepare(void)
{
    for (unsigned s = 0; s < HK_BIGCACHE_SITES; s++) hk_lock_acquire(&ring_lock[s]);
}
void hk_bigcache_fork_parent(void)
{
    for (unsigned s = 0; s < HK_BIGCACHE_SITES; s++) hk_lock_release(&ring_lock[s]);
}
void hk_bigcache_fork_child(void)
{
    for (unsigned s = 0; s < HK_BIGCACHE_SITES; s++) hk_lock_reinit(&ring_lock[s]);
}
