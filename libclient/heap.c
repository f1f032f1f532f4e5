/* Thread heap box, the pages: class queues, refill, retire and extend,
 * collecting remote frees, maintenance (with the reclaim of idle heaps'
 * pages), the free slow paths and the mallinfo figures.  Everything here
 * runs on the owning thread except the remote push in hk_heap_free_slow and
 * the reclaim of an idle heap's pages (under that heap's own lock).  A
 * heap's lifetime (threads, the pool, fork) is heap_life.c's. */
#include "heap.h"
#include "bigcache.h"
#include "counters.h"
#include "heap_life.h"
#include "knobs.h"
#include "large.h"
#include "lock.h"
#include "options.h"
#include "os.h"
#include "packed.h"
#include "purge_pace.h"
#include "segment.h"
#include "site.h"
#include "size_class.h"
#include "shm_client.h"

#include <errno.h>

#define EXTEND_BYTES 4096       /* carve about one OS page of blocks at a time */
#define MAINTAIN_EVERY 64       /* slow calls between looks at the clock */
#define MAINTAIN_NS 1000000ull  /* at most one maintenance pass a millisecond */

hk_page hk_empty_page;          /* never has blocks: the fast path falls through */
hk_page hk_invalid_page;        /* stands in every slot that is not a page */

#define EMPTY_PAGES(n) [0 ... (n) - 1] = &hk_empty_page
hk_heap hk_empty_heap = {
    .direct = { EMPTY_PAGES(HK_DIRECT_MAX / HK_ALIGN + 1) },
    .current = { EMPTY_PAGES(HK_CLASSES) },
    .sample_left = INT64_MAX,
};

__thread hk_heap *hk_tls_heap __attribute__((tls_model("initial-exec"))) = &hk_empty_heap;

static uint8_t direct_lo[HK_CLASSES], direct_hi[HK_CLASSES];  /* buckets per class */
static unsigned first_medium_class;  /* the class of HK_SAMPLED_MAX + 1 */
static _Atomic uint64_t info_requested;  /* mallinfo calls so far: heaps refresh when behind */

void hk_heap_process_init(void)
{
    for (unsigned c = 0; c < HK_CLASSES; c++) { direct_lo[c] = 0xff; direct_hi[c] = 0; }
    for (unsigned b = 0; b <= HK_DIRECT_MAX / HK_ALIGN; b++) {
        unsigned c = hk_size_class(b * HK_ALIGN);
        if (direct_lo[c] == 0xff) direct_lo[c] = (uint8_t)b;
        direct_hi[c] = (uint8_t)b;
    }
    first_medium_class = hk_size_class(HK_SAMPLED_MAX + 1);
    hk_heap_life_init();
}

/* ---- page queues ----------------------------------------------------
 * A class queue is a circular doubly linked list; queue[cls] is its head, the
 * page searched first.  Advancing the head rotates full pages to the back. */

static void queue_remove(hk_heap *heap, hk_page *pg)
{
    hk_page **q = &heap->queue[pg->cls];
    if (pg->next == pg) {
        *q = NULL;
    } else {
        pg->prev->next = pg->next;
        pg->next->prev = pg->prev;
        if (*q == pg) *q = pg->next;
    }
    pg->next = pg->prev = NULL;
}

/* Inserts pg before the head (at the back); as_head makes it the head. */
static void queue_insert(hk_heap *heap, hk_page *pg, int as_head)
{
    hk_page **q = &heap->queue[pg->cls];
    if (*q == NULL) {
        pg->next = pg->prev = pg;
        *q = pg;
        return;
    }
    pg->next = *q;
    pg->prev = (*q)->prev;
    (*q)->prev->next = pg;
    (*q)->prev = pg;
    if (as_head) *q = pg;
}

static void retire(hk_heap *heap, hk_page *pg);
static void collect_remote(hk_heap *heap, hk_page *pg);

/* Pages in the queue of class cls, counted before a walk that may retire
 * some of them (retiring one unlinks it, so the walk cannot stop at the
 * head it started from). */
static unsigned queue_length(const hk_heap *heap, unsigned cls)
{
    const hk_page *head = heap->queue[cls], *pg = head;
    unsigned n = 0;
    if (pg == NULL) return 0;
    do { n++; pg = pg->next; } while (pg != head);
    return n;
}

/* The current page of a class holds one phantom use, so that freeing its
 * last real block does not make it look empty: a malloc/free pair on an
 * otherwise idle class stays entirely on the fast path.  The phantom moves
 * with the current page; dropping it may retire the old page. */
static void set_current(hk_heap *heap, unsigned cls, hk_page *pg)
{
    hk_page *old = heap->current[cls];
    if (old == pg) return;
    if (pg != &hk_empty_page) pg->used++;
    heap->current[cls] = pg;
    if (direct_lo[cls] != 0xff) {
        for (unsigned b = direct_lo[cls]; b <= direct_hi[cls]; b++) heap->direct[b] = pg;
    }
    if (old != &hk_empty_page && --old->used == 0) retire(heap, old);
}

void hk_heap_adopt_page(hk_heap *heap, hk_page *pg)
{
    atomic_store_explicit(&pg->heap, heap, memory_order_release);
    collect_remote(heap, pg);
    if (pg->used == 0) {                 /* everything was freed while abandoned */
        hk_segment_page_free(heap, pg);
        return;
    }
    queue_insert(heap, pg, 0);
}

/* ---- blocks ---------------------------------------------------------- */

/* The blocks other threads freed into pg go on its free list.  A page
 * whose list ran dry (the usual case: the owner is refilling) takes them as
 * they are; only one that still has blocks walks them to find the tail. */
static void collect_remote(hk_heap *heap, hk_page *pg)
{
    if (atomic_load_explicit(&pg->remote, memory_order_relaxed) == 0) return;
    uintptr_t word = atomic_exchange_explicit(&pg->remote, 0, memory_order_acquire);
    hk_block *list = hk_remote_head((uintptr_t)hk_segment_of(pg), word);
    if (list == NULL) return;
    if (pg->free != NULL) {
        uint32_t carved = pg->capacity;
        hk_block *tail = list, *next;
        while ((next = hk_block_next_checked(pg, tail, carved)) != NULL) tail = next;
        hk_block_link(tail, pg->free);
    }
    pg->free = list;
    uint32_t n = hk_remote_count(word);
    pg->used -= n;
    hk_count_own(&heap->counts.remote_collected, n);
}

/* b goes on pg's remote list (any thread but the owner). */
static void remote_push(hk_page *pg, hk_block *b)
{
    uintptr_t segment = (uintptr_t)hk_segment_of(b);
    uintptr_t word = atomic_load_explicit(&pg->remote, memory_order_relaxed);
    do {
        hk_block_link(b, hk_remote_head(segment, word));
    } while (!atomic_compare_exchange_weak_explicit(&pg->remote, &word, hk_remote_word_with(segment, b, word),
                                                    memory_order_release, memory_order_relaxed));
}

/* POPULATE_KIB (knobs.h): carving touches a page's memory one OS page at a
 * time, a fault each; instead, the next stretch is faulted in with one
 * system call when the carving first reaches it.  Not in the first page a
 * heap takes of a class (find_page): a class with a single page may never
 * fill it, and a small program would hold stretches it never uses. */
static void populate_ahead(hk_page *pg, size_t from, size_t to)
{
    size_t ahead = (size_t)hk_knob(HK_KNOB_POPULATE_KIB) << 10;
    if (ahead == 0 || to <= pg->populated)
        return;
    size_t lo = (from > pg->populated ? from : pg->populated) & ~(size_t)(HK_OS_PAGE - 1);
    size_t hi = (lo + ahead + HK_OS_PAGE - 1) & ~(size_t)(HK_OS_PAGE - 1);
    size_t end = (size_t)pg->span * HK_SLOT_SIZE - hk_page_color(pg);
    if (hi > end)
        hi = end;
    hk_os_populate(pg->start + lo, hi - lo);
    pg->populated = (uint32_t)hi;
}

/* Blocks of size bs from `from` up to the OS page boundary that about
 * EXTEND_BYTES later falls on (at least one block): a stretch ends where
 * an OS page does, so that the next one faults in no page this one left
 * partly carved, wherever the page began (segment.c colours page starts)
 * and whether or not bs divides a page. */
static uint32_t stretch_blocks(uintptr_t from, uint32_t bs)
{
    if (bs >= EXTEND_BYTES) return 1;
    uintptr_t end = (from + EXTEND_BYTES) & ~(uintptr_t)(HK_OS_PAGE - 1);
    if (end - from < bs) end += HK_OS_PAGE;
    return (uint32_t)((end - from) / bs);
}

/* Carves the next stretch of never-used blocks onto the free list, in
 * address order, touching about one OS page. */
static void extend(hk_page *pg)
{
    uint32_t bs = pg->block_size;
    uint32_t n = stretch_blocks((uintptr_t)pg->start + (size_t)pg->capacity * bs, bs);
    if (n > pg->reserved - pg->capacity) n = pg->reserved - pg->capacity;
    populate_ahead(pg, (size_t)pg->capacity * bs, (size_t)(pg->capacity + n) * bs);
    uint8_t *first = pg->start + (size_t)pg->capacity * bs;
    hk_block *b = (hk_block *)first;
    for (uint32_t i = 1; i < n; i++) {
        hk_block *nx = (hk_block *)(first + (size_t)i * bs);
        hk_block_link(b, nx);
        b = nx;
    }
    hk_block_link(b, pg->free);
    pg->free = (hk_block *)first;
    __atomic_store_n(&pg->capacity, pg->capacity + n, __ATOMIC_RELAXED);   /* remote frees read it */
}

/* pg has no block in use and is not current: its span goes back. */
static void retire(hk_heap *heap, hk_page *pg)
{
    queue_remove(heap, pg);
    hk_segment_page_free(heap, pg);
}

/* PARTIAL_REUSE (knobs.h): pages of the class examined before a fresh one is
 * taken, and whether the fullest of them wins over the first with room. */
static const struct { uint8_t scan, fullest; } reuse_level[4] = {
    { 2, 0 }, { 8, 0 }, { 32, 0 }, { 64, 1 },
};

/* Blocks one extend() carves for block size bs. */
static uint32_t carve_blocks(uint32_t bs) { return bs >= EXTEND_BYTES ? 1 : EXTEND_BYTES / bs; }

/* Blocks of 1 KiB and more whose class above is not a medium one (1 to
 * 48 KiB) may come from the class above: see lender_above. */
#define BORROW_MIN_BYTES 1024u
/* Borrows in a row before a class uses its own page again.  A borrowed
 * block goes back to the lender when freed, so a loop of malloc and free
 * of one size would borrow on the slow path every time; after this many
 * the class carves, and the loop stays on the fast path. */
#define BORROW_RUN_MAX 16u

/* The current page of the class above cls when it has a spare block and a
 * page of cls would otherwise touch fresh memory; NULL when there is none.
 * Each class otherwise keeps as many blocks as it ever had in flight at
 * once, and where blocks come back late (remote frees, threads handing
 * work on) the classes' peaks add up; a neighbour's spare block, already
 * resident, costs its rounding (an eighth or a quarter) instead of fresh
 * pages.  Smaller blocks are left out: a fresh stretch of them refills many
 * mallocs, a borrowed block one, and taking them from other classes' pages
 * kept those pages from retiring (mstress held 8% more at 256 B and up).
 * Not for the aligned path: only its own class is sure to keep the
 * alignment. */
static hk_page *lender_above(hk_heap *heap, unsigned cls)
{
    if (cls + 1 >= first_medium_class || hk_classes[cls].block_size < BORROW_MIN_BYTES) return NULL;
    hk_page *lender = heap->current[cls + 1];
    return lender->free != NULL ? lender : NULL;
}

/* A page with a free block: one of class cls, made current, or (may_borrow)
 * the class above's current page instead of room that would touch fresh
 * memory; NULL when out of memory.  A page holding at least half an
 * extend's worth of freed blocks (remote frees collected on the way) is
 * taken before never-touched room is carved: memory already resident is
 * used first (a heap taken over from an exited thread, or one whose blocks
 * other threads free, stays small), but a refill is not spent on a block
 * or two. */
static hk_page *find_page(hk_heap *heap, unsigned cls, int may_borrow)
{
    unsigned level = hk_knob(HK_KNOB_PARTIAL_REUSE) & 3;
    hk_page *head = heap->queue[cls], *pg = head, *best = NULL, *fallback = NULL;
    for (unsigned scanned = 0; pg && scanned < reuse_level[level].scan; scanned++) {
        collect_remote(heap, pg);
        uint32_t freed = pg->capacity > pg->used ? pg->capacity - pg->used : 0;
        if (pg->free != NULL && freed * 2 >= carve_blocks(pg->block_size)) {
            if (!reuse_level[level].fullest) { best = pg; break; }
            if (best == NULL || pg->used > best->used) best = pg;
        } else if (fallback == NULL && (pg->free != NULL || pg->capacity < pg->reserved)) {
            fallback = pg;
        }
        pg = pg->next;
        if (pg == head) break;                   /* went all the way round */
    }
    if (best == NULL) best = fallback;
    if (may_borrow && (best == NULL || best->free == NULL) && heap->borrow_run[cls] < BORROW_RUN_MAX) {
        hk_page *lender = lender_above(heap, cls);
        if (lender) {
            heap->borrow_run[cls]++;
            return lender;
        }
    }
    heap->borrow_run[cls] = 0;
    if (best) {
        if (best->free == NULL) extend(best);
        heap->queue[cls] = best;                 /* the pages scanned before it go to the back */
        set_current(heap, cls, best);
        return best;
    }
    if (pg) heap->queue[cls] = pg;
    pg = hk_segment_page_alloc(heap, cls);
    if (pg == NULL) return NULL;
    if (!heap->classes_paged[cls]) {
        heap->classes_paged[cls] = 1;
        pg->populated = UINT32_MAX;
    }
    extend(pg);
    queue_insert(heap, pg, 1);
    set_current(heap, cls, pg);
    return pg;
}

void *hk_heap_alloc_class_slow(hk_heap *heap, unsigned cls, int exact)
{
    uint64_t t0 = hk_ticks();
    hk_lock_acquire(&heap->own);
    hk_block *b = NULL;
    hk_page *pg = find_page(heap, cls, !exact);
    if (pg != NULL) {
        b = pg->free;
        hk_block_pop(pg, b);
        pg->used++;
    }
    hk_lock_release(&heap->own);
    hk_count_own(&heap->counts.refill_ticks, hk_ticks() - t0);
    hk_count_own(&heap->counts.refills, 1);
    return b;
}

/* The current page of cls gives its phantom up if that is its only use,
 * and so retires; 1 if it did. */
static int drop_idle_current(hk_heap *heap, unsigned cls)
{
    hk_page *pg = heap->current[cls];
    if (pg == &hk_empty_page || pg->used != 1) return 0;
    set_current(heap, cls, &hk_empty_page);
    return 1;
}

/* A medium class's current page whose blocks are all free would keep them
 * resident for good: its phantom use stops it from retiring (a buffer grown
 * by realloc leaves one such page in every class it passed through).  At
 * maintenance it gives the phantom up, so the page retires and its span is
 * purged after the delay like any other.  A small class's page stays: it
 * is small, and its malloc/free pairs stay on the fast path. */
static void drop_idle_currents_from(hk_heap *heap, unsigned first)
{
    for (unsigned c = first; c < HK_CLASSES; c++) drop_idle_current(heap, c);
}

static void release_idle_medium(hk_heap *heap) { drop_idle_currents_from(heap, first_medium_class); }

void hk_heap_drop_idle_current(hk_heap *heap) { drop_idle_currents_from(heap, 0); }

/* A heap whose thread has done no allocator work for IDLE_HEAP_NS (blocked:
 * a main thread in pthread_join while its workers free everything it
 * allocated) would keep every block other threads free into it, as only its
 * own slow paths collect them.  Other threads' maintenance takes such
 * pages back for it, at most once every IDLE_HEAP_NS: under the heap list
 * lock (so no fork, exit or pooling runs meanwhile) and the heap's own
 * lock, taken only if free (so the owner's slow paths are excluded, and a
 * busy heap is simply skipped), it retires and purges each page that is not
 * current and whose blocks handed out are all on its remote list.  Such a
 * page is safe from the owner's fast paths: they allocate only from
 * current pages, and free only blocks that are in use, of which it has
 * none; its use count, read first, can then only have been lowered by a
 * free that is already complete.  (larson: the main thread's heap held a
 * fifth of the peak in blocks its workers had freed.) */
#define IDLE_HEAP_NS 40000000ull
static _Atomic uint64_t last_reclaim_ns;
static _Atomic uint64_t pages_reclaimed;

uint64_t hk_heap_pages_reclaimed(void) { return atomic_load_explicit(&pages_reclaimed, memory_order_relaxed); }

/* A page that some live block keeps (larson's main thread: its slot arrays
 * pin pages whose other blocks its workers freed long ago) cannot retire,
 * and its owner's fast paths may touch its local list and use count at any
 * time.  Its remote list, though, is the reclaim's alone while it holds the
 * owner's lock: only a slow path collects it, and pushes only put blocks in
 * front of the head read here.  So each block on it of two OS pages or more
 * gives back the OS pages past the one holding its list link; the owner
 * faults them in again if it ever reuses the block.  The walk stops at the
 * head the previous one started from, unless the list was collected in
 * between (its count fell): blocks past it were hollowed then. */
static int hollowable(const hk_page *pg)
{
    return pg->block_size >= 2 * HK_OS_PAGE && !hk_segment_of(pg->start)->huge;
}

/* The free blocks of pg from b on, up to stop, give back every OS page but
 * the one holding their list link. */
static void hollow_list(const hk_page *pg, hk_block *b, const hk_block *stop)
{
    uint32_t bs = pg->block_size, carved = pg->capacity;
    for (; b != NULL && b != stop; b = hk_block_next_checked(pg, b, carved)) {
        uintptr_t lo = ((uintptr_t)b + sizeof *b + HK_OS_PAGE - 1) & ~(uintptr_t)(HK_OS_PAGE - 1);
        uintptr_t hi = ((uintptr_t)b + bs) & ~(uintptr_t)(HK_OS_PAGE - 1);
        if (hi > lo) hk_os_purge((void *)lo, hi - lo);
    }
}

static void hollow_remote_blocks(hk_page *pg)
{
    uintptr_t word = atomic_load_explicit(&pg->remote, memory_order_acquire);
    uintptr_t before = pg->remote_hollowed;
    if (word == 0 || word == before || !hollowable(pg)) return;
    pg->remote_hollowed = word;
    uintptr_t segment = (uintptr_t)hk_segment_of(pg->start);
    hk_block *stop = hk_remote_count(word) > hk_remote_count(before) ? hk_remote_head(segment, before) : NULL;
    hollow_list(pg, hk_remote_head(segment, word), stop);
}

static void reclaim_pages_of(hk_heap *h)
{
    for (unsigned c = 0; c < HK_CLASSES; c++) {
        hk_page *pg = h->queue[c];
        for (unsigned n = queue_length(h, c); n > 0; n--) {
            hk_page *next = pg->next;
            if (pg == h->current[c]) {       /* its owner may be allocating from it */
                hollow_remote_blocks(pg);
                pg = next;
                continue;
            }
            uint32_t used = __atomic_load_n(&pg->used, __ATOMIC_ACQUIRE);
            uint32_t remote = hk_remote_count(atomic_load_explicit(&pg->remote, memory_order_acquire));
            if (remote != 0 && remote == used) {
                atomic_store_explicit(&pg->remote, 0, memory_order_relaxed);   /* its blocks are all free */
                retire(h, pg);
                hk_segment_purge_span(pg);
                atomic_fetch_add_explicit(&pages_reclaimed, 1, memory_order_relaxed);
            } else {
                hollow_remote_blocks(pg);
            }
            pg = next;
        }
    }
}

struct idle_reclaim { hk_heap *me; uint64_t now; };

static void reclaim_if_idle(hk_heap *h, void *arg)
{
    const struct idle_reclaim *r = arg;
    if (h == r->me || r->now - __atomic_load_n(&h->last_maintenance_ns, __ATOMIC_RELAXED) < IDLE_HEAP_NS)
        return;
    hk_large_drop_kept(h);
    if (!hk_lock_try(&h->own)) return;
    reclaim_pages_of(h);
    hk_lock_release(&h->own);
}

static void reclaim_idle_heaps(hk_heap *me, uint64_t now)
{
    uint64_t last = atomic_load_explicit(&last_reclaim_ns, memory_order_relaxed);
    if (now - last < IDLE_HEAP_NS ||
        !atomic_compare_exchange_strong_explicit(&last_reclaim_ns, &last, now, memory_order_relaxed,
                                                 memory_order_relaxed))
        return;
    struct idle_reclaim r = { me, now };
    hk_heap_each_live(reclaim_if_idle, &r);
}

static void maintain(hk_heap *heap)
{
    uint64_t now = hk_coarse_ns();
    if (now - heap->last_maintenance_ns < MAINTAIN_NS) return;
    __atomic_store_n(&heap->last_maintenance_ns, now, __ATOMIC_RELAXED);   /* read by reclaim_idle_heaps */
    uint64_t t0 = hk_ticks();
    hk_heap_release_stale_pool(now);
    reclaim_idle_heaps(heap, now);
    hk_lock_acquire(&heap->own);
    hk_segment_adopt_one(heap);          /* memory of exited threads comes back */
    release_idle_medium(heap);
    hk_segment_maintain(heap, now, 0);
    if (atomic_load_explicit(&heap->info.epoch, memory_order_relaxed) !=
        atomic_load_explicit(&info_requested, memory_order_relaxed))
        hk_heap_info_publish_locked(heap);
    hk_lock_release(&heap->own);
    hk_large_drop_kept(heap);
    /* Cached large blocks are freed memory kept for reuse, as free spans
     * are: unused for as long as the purge delay can grow, they go back. */
    hk_bigcache_trim(now, hk_purge_ceiling_ns());
    hk_packed_maintain(now);
    hk_count_own(&heap->counts.maintain_ticks, hk_ticks() - t0);
    hk_shm_client_tick(now);
}

void *hk_heap_malloc_slow(size_t size, uintptr_t ra)
{
    hk_heap *heap = hk_tls_heap;
    if (unlikely(heap == &hk_empty_heap)) {
        heap = hk_heap_for_thread();
        if (heap == NULL) { errno = ENOMEM; return NULL; }
    }
    void *p = hk_packed_wanted(size) ? hk_packed_alloc(size) : hk_heap_alloc_class(heap, hk_size_class(size), 0);
    if (p == NULL) { errno = ENOMEM; return NULL; }
    if ((heap->sample_left -= (int64_t)size) < 0) hk_heap_sample(heap, ra, size);
    if ((++heap->slow_calls % MAINTAIN_EVERY) == 0) maintain(heap);
    return p;
}

void hk_heap_sample(hk_heap *heap, uintptr_t ra, size_t size)
{
    /* The countdown was >= 0 before this allocation, so a size within one
     * period crosses exactly one, which stands for period / size
     * allocations of this size; a bigger one is one allocation that crosses
     * as many periods as the profiler then adds to get back to >= 0. */
    uint64_t period = hk_opt.sample_bytes;
    uint64_t bytes = period, allocs;
    if (likely(size <= period)) {
        allocs = period / size;
    } else {
        bytes = ((uint64_t)-heap->sample_left + period - 1) / period * period;
        allocs = 1;
    }
    hk_count_own(&heap->counts.small_bytes, bytes);
    hk_count_own(&heap->counts.small_allocs, allocs);
    hk_site_sample(heap, ra, size);
}

void hk_heap_tick(hk_heap *heap)
{
    maintain(heap);
}

void hk_heap_page_emptied(hk_heap *heap, hk_page *pg)
{
    uint64_t t0 = hk_ticks();
    hk_lock_acquire(&heap->own);
    retire(heap, pg);                            /* never current: see set_current */
    hk_lock_release(&heap->own);
    hk_count_own(&heap->counts.retire_ticks, hk_ticks() - t0);
    if ((++heap->slow_calls % 16) == 0) maintain(heap);
}

void hk_heap_check_block(const hk_page *pg, const void *p, const char *fn)
{
    if (pg == &hk_invalid_page || !pg->in_use || pg->block_size == 0)
        hk_fatal_pointer(fn, "invalid pointer", p);
    uint32_t carved = __atomic_load_n(&pg->capacity, __ATOMIC_RELAXED);
    if (!hk_page_has_block(pg, (uintptr_t)p, carved)) hk_fatal_pointer(fn, "invalid pointer", p);
}

/* What every free off the fast path checks before it touches p. */
static void check_free(const hk_page *pg, void *p, const char *fn)
{
    hk_heap_check_block(pg, p, fn);
#ifdef HAKMEM_HARDENED
    if (hk_block_is_free(p)) hk_fatal_pointer(fn, "double free", p);
#endif
}

void hk_heap_free_moved(hk_page *pg, void *p, const char *fn)
{
    hk_heap *heap = hk_tls_heap;
    check_free(pg, p, fn);
    hk_lock_acquire(&heap->own);
    hk_block_push(pg, p);
    pg->used--;
    int retired = 1;
    if (heap->current[pg->cls] == pg)
        retired = drop_idle_current(heap, pg->cls);
    else if (pg->used == 0)
        retire(heap, pg);
    else
        retired = 0;
    /* No maintenance ran since: the span is still this heap's, and free. */
    if (retired) hk_segment_purge_span(pg);
    hk_lock_release(&heap->own);
}

void hk_heap_free_slow(hk_page *pg, void *p, const char *fn)
{
    check_free(pg, p, fn);
    hk_block *b = p;
    hk_heap *me = hk_tls_heap;
    hk_heap *owner = atomic_load_explicit(&pg->heap, memory_order_acquire);
    if (owner != me && owner != NULL && atomic_load_explicit(&owner->pooled, memory_order_relaxed) &&
        hk_heap_take_over(owner)) {
        me = hk_tls_heap;                        /* the page is the thread's own now */
        owner = atomic_load_explicit(&pg->heap, memory_order_acquire);
    }
    if (owner == me) {
        hk_block_push(pg, b);
        if (hk_page_unuse(pg) == 0) hk_heap_page_emptied(me, pg);
        return;
    }
    remote_push(pg, b);
}

void hk_heap_collect_pages(hk_heap *heap, int drop_current)
{
    for (unsigned c = 0; c < HK_CLASSES; c++) {
        if (drop_current) set_current(heap, c, &hk_empty_page);
        hk_page *pg = heap->queue[c];
        for (unsigned n = queue_length(heap, c); n > 0; n--) {
            hk_page *next = pg->next;
            collect_remote(heap, pg);
            if (pg->used == 0) retire(heap, pg);
            else if (drop_current && hollowable(pg)) hollow_list(pg, pg->free, NULL);
            pg = next;
        }
    }
}

void hk_heap_collect(hk_heap *heap, int force)
{
    uint64_t t0 = hk_ticks();
    hk_lock_acquire(&heap->own);
    if (force)
        while (hk_segment_adopt_one(heap)) {}   /* what exited threads left behind */
    hk_heap_collect_pages(heap, force);
    hk_segment_maintain(heap, hk_coarse_ns(), force);
    hk_lock_release(&heap->own);
    hk_count_own(&heap->counts.maintain_ticks, hk_ticks() - t0);
}

/* ---- mallinfo figures ------------------------------------------------- */

void hk_heap_info_request(void)
{
    atomic_fetch_add_explicit(&info_requested, 1, memory_order_relaxed);
}

void hk_heap_info_publish_locked(hk_heap *heap)
{
    uint64_t used = 0, free_blocks = 0, dirty_slots = 0;
    for (unsigned c = 0; c < HK_CLASSES; c++) {
        hk_page *pg = heap->queue[c];
        if (pg == NULL) continue;
        do {
            uint32_t in_use = pg->used - (pg == heap->current[c]);    /* less the phantom use */
            used += (uint64_t)in_use * pg->block_size;
            free_blocks += pg->capacity - in_use;
            pg = pg->next;
        } while (pg != heap->queue[c]);
    }
    for (const hk_segment *s = heap->segments; s; s = s->next)
        dirty_slots += (uint64_t)__builtin_popcountll(s->dirty_slots & s->free_slots);
    atomic_store_explicit(&heap->info.used_bytes, used, memory_order_relaxed);
    atomic_store_explicit(&heap->info.free_blocks, free_blocks, memory_order_relaxed);
    atomic_store_explicit(&heap->info.dirty_bytes, dirty_slots * HK_SLOT_SIZE, memory_order_relaxed);
    atomic_store_explicit(&heap->info.epoch, atomic_load_explicit(&info_requested, memory_order_relaxed),
                          memory_order_relaxed);
}

void hk_heap_info_publish(hk_heap *heap)
{
    hk_lock_acquire(&heap->own);
    hk_heap_info_publish_locked(heap);
    hk_lock_release(&heap->own);
}
