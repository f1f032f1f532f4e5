/* Thread heap box, the lifetime of heaps: a thread gets one on its first
 * slow call (a pooled heap of an exited thread if there is one, else a new
 * one), its heap waits in the pool when it exits, a thread that frees into
 * a pooled heap may take it over, and pooled memory left unclaimed goes
 * back.  Owns the list of live heaps, the pool and what exited threads
 * counted, under heap_lock; the fork hooks keep them whole.  The page work
 * these steps need is heap.c's (heap_life.h). */
#include "heap.h"
#include "counters.h"
#include "heap_life.h"
#include "packed.h"
#include "init.h"
#include "knobs.h"
#include "large.h"
#include "lock.h"
#include "meta.h"
#include "options.h"
#include "os.h"
#include "purge_pace.h"
#include "segment.h"
#include "site.h"

#include <pthread.h>
#include <string.h>

/* Whether this thread took over a pooled heap (hk_heap_take_over): once at most. */
static __thread uint8_t tls_took_over __attribute__((tls_model("initial-exec")));

static hk_lock heap_lock = HK_LOCK_INIT;
static hk_heap *live_heaps;
/* Heaps of exited threads, most recent first.  One that still holds memory
 * (segments with live blocks, free pages, remote frees that arrived since)
 * goes whole to the next thread that starts, as if its thread had gone on
 * running: thread waves reuse warm memory without adopting, re-faulting or
 * collecting anything first.  One left unclaimed for the purge delay gives
 * its memory up as before (pool_release). */
static hk_heap *pooled_heaps;
static unsigned live_count;
/* When the longest-pooled heap that holds memory was pooled; UINT64_MAX when none. */
static _Atomic uint64_t pool_oldest_ns = UINT64_MAX;
static pthread_key_t heap_key;

unsigned hk_heap_live_count(void) { return live_count; }

static void add_collected(const hk_heap_counts *c, const hk_heap_info *info, void *arg)
{
    (void)info;
    *(uint64_t *)arg += atomic_load_explicit(&c->remote_collected, memory_order_relaxed);
}

uint64_t hk_heap_remote_collected(void)
{
    uint64_t n = 0;
    hk_heap_visit(add_collected, &n);
    return n;
}

/* A heap about to serve a new thread.  One that holds memory keeps what
 * it allocates from (its pages, queues and segments: internal.h puts them
 * before `pooled`) and starts the rest from zero.  A fresh one is zero
 * already: writing zeros over it would make every page of it resident
 * (most of it is the site cache, of which a thread may use a few
 * entries), and the pooled one clears only the entries it used. */
static void heap_reset(hk_heap *h, int fresh)
{
    if (!fresh) {
        for (uint32_t used = h->sites_used; used; used &= used - 1)
            memset(&h->sites[__builtin_ctz(used)], 0, sizeof h->sites[0]);
        memset(&h->slow_calls, 0, offsetof(hk_heap, sites) - offsetof(hk_heap, slow_calls));
    }
    if (h->segments == NULL) {
        if (!fresh)
            memset(h, 0, offsetof(hk_heap, pooled));
        for (unsigned b = 0; b <= HK_DIRECT_MAX / HK_ALIGN; b++) h->direct[b] = &hk_empty_page;
        for (unsigned c = 0; c < HK_CLASSES; c++) h->current[c] = &hk_empty_page;
    }
    h->sample_left = (int64_t)hk_opt.sample_bytes;
}

/* What exited threads counted (counters.h), folded in under heap_lock as each
 * heap leaves the live list, and again as it leaves the pool (what giving
 * up its memory cost while pooled). */
static hk_heap_counts exited_counts;

static void fold_counts(hk_heap_counts *into, const hk_heap_counts *c)
{
    _Atomic uint64_t *dst = &into->refill_ticks;
    const _Atomic uint64_t *src = &c->refill_ticks;
    for (size_t i = 0; i < sizeof *c / sizeof *src; i++)
        hk_count_own(&dst[i], atomic_load_explicit(&src[i], memory_order_relaxed));
}

/* Under heap_lock. */
static void pool_note_oldest(void)
{
    uint64_t oldest = UINT64_MAX;
    for (hk_heap *h = pooled_heaps; h; h = h->next_free)
        if (h->segments && h->pooled_ns < oldest) oldest = h->pooled_ns;
    atomic_store_explicit(&pool_oldest_ns, oldest, memory_order_relaxed);
}

/* Under heap_lock: takes h (pointed to by *at) out of the pool. */
static hk_heap *pool_unlink(hk_heap **at)
{
    hk_heap *h = *at;
    *at = h->next_free;
    atomic_store_explicit(&h->pooled, 0, memory_order_relaxed);
    if (h->segments) pool_note_oldest();
    fold_counts(&exited_counts, &h->counts);
    return h;
}

/* Under heap_lock: a pooled heap for a new thread, one with memory first. */
static hk_heap *pool_take(void)
{
    hk_heap **at = &pooled_heaps;
    while (*at && (*at)->segments == NULL) at = &(*at)->next_free;
    if (*at == NULL) at = &pooled_heaps;
    return *at ? pool_unlink(at) : NULL;
}

/* Under heap_lock. */
static void link_live(hk_heap *h)
{
    h->prev_heap = NULL;
    h->next_heap = live_heaps;
    if (live_heaps) live_heaps->prev_heap = h;
    live_heaps = h;
    live_count++;
}

/* Under heap_lock. */
static void unlink_live(hk_heap *h)
{
    if (h->prev_heap) h->prev_heap->next_heap = h->next_heap; else live_heaps = h->next_heap;
    if (h->next_heap) h->next_heap->prev_heap = h->prev_heap;
    h->next_heap = h->prev_heap = NULL;
    live_count--;
}

/* h becomes the calling thread's heap. */
static void serve_thread(hk_heap *h, int fresh)
{
    heap_reset(h, fresh);
    h->last_maintenance_ns = hk_coarse_ns();    /* not idle: reclaim_idle_heaps (heap.c) */
    hk_lock_acquire(&heap_lock);
    link_live(h);
    hk_lock_release(&heap_lock);
    /* Visible before pthread_setspecific, which may itself allocate. */
    hk_tls_heap = h;
    pthread_setspecific(heap_key, h);
}

hk_heap *hk_heap_for_thread(void)
{
    hk_heap *h = hk_tls_heap;
    if (h != &hk_empty_heap) return h;
    hk_process_init();
    hk_lock_acquire(&heap_lock);
    h = pool_take();
    hk_lock_release(&heap_lock);
    int fresh = h == NULL;
    if (fresh) h = hk_meta_alloc(sizeof *h);
    if (h == NULL) return NULL;
    serve_thread(h, fresh);
    return h;
}

/* Pooled heaps are visited too: their mallinfo figures are as of their
 * thread's exit (zero once they gave their memory up). */
void hk_heap_visit(hk_heap_visit_fn fn, void *arg)
{
    hk_lock_acquire(&heap_lock);
    for (hk_heap *h = live_heaps; h; h = h->next_heap) fn(&h->counts, &h->info, arg);
    for (hk_heap *h = pooled_heaps; h; h = h->next_free) fn(&h->counts, &h->info, arg);
    fn(&exited_counts, NULL, arg);
    hk_lock_release(&heap_lock);
}

void hk_heap_each_live(void (*fn)(hk_heap *heap, void *arg), void *arg)
{
    hk_lock_acquire(&heap_lock);
    for (hk_heap *h = live_heaps; h; h = h->next_heap) fn(h, arg);
    hk_lock_release(&heap_lock);
}

/* Under heap_lock. */
static void pool_push(hk_heap *h, uint64_t now)
{
    h->pooled_ns = now;
    h->next_free = pooled_heaps;
    pooled_heaps = h;
    atomic_store_explicit(&h->pooled, 1, memory_order_relaxed);
    if (h->segments) pool_note_oldest();
}

static void heap_unlink_and_pool(hk_heap *h, uint64_t now)
{
    hk_lock_acquire(&heap_lock);
    fold_counts(&exited_counts, &h->counts);
    memset(&h->counts, 0, sizeof h->counts);
    unlink_live(h);
    pool_push(h, now);
    hk_lock_release(&heap_lock);
}

/* Gives up everything a heap of an exited thread owns: its empty memory to
 * the OS, the rest to whichever thread adopts its segments (whose blocks
 * count there for mallinfo from then on). */
static void heap_abandon(hk_heap *h)
{
    hk_lock_acquire(&h->own);
    hk_heap_collect_pages(h, 1);
    hk_segment_abandon_all(h);
    for (unsigned c = 0; c < HK_CLASSES; c++) h->queue[c] = NULL;
    hk_lock_release(&h->own);
    atomic_store_explicit(&h->info.used_bytes, 0, memory_order_relaxed);
    atomic_store_explicit(&h->info.free_blocks, 0, memory_order_relaxed);
    atomic_store_explicit(&h->info.dirty_bytes, 0, memory_order_relaxed);
}

/* Pooled heaps holding memory, pooled at least `delay` ago (all of them:
 * every one), give it up; they stay pooled, empty.  They leave the pool
 * meanwhile so that no thread takes one halfway. */
static void pool_release(uint64_t now, uint64_t delay, int all)
{
    hk_heap *stale = NULL;
    hk_lock_acquire(&heap_lock);
    for (hk_heap **at = &pooled_heaps; *at;) {
        hk_heap *h = *at;
        if (h->segments && (all || now - h->pooled_ns >= delay)) {
            *at = h->next_free;
            atomic_store_explicit(&h->pooled, 0, memory_order_relaxed);
            h->next_free = stale;
            stale = h;
        } else {
            at = &h->next_free;
        }
    }
    pool_note_oldest();
    hk_lock_release(&heap_lock);
    hk_heap *last = NULL;
    for (hk_heap *h = stale; h; h = h->next_free) {
        uint64_t t0 = hk_ticks();
        heap_abandon(h);
        hk_count_own(&h->counts.maintain_ticks, hk_ticks() - t0);
        last = h;
    }
    if (last == NULL) return;
    hk_lock_acquire(&heap_lock);
    for (hk_heap *h = stale; h; h = h->next_free) atomic_store_explicit(&h->pooled, 1, memory_order_relaxed);
    last->next_free = pooled_heaps;
    pooled_heaps = stale;
    hk_lock_release(&heap_lock);
}

void hk_heap_release_pooled(void)
{
    pool_release(0, 0, 1);
}

/* What a pooled heap's thread would have done by now: remote frees
 * collected, pages with no block in use retired, spans idle for the purge
 * delay purged, empty segments retained; idle: the heap has waited the
 * purge delay unclaimed, and its current pages retire too if they hold no
 * block (a next thread would fault them in again).  Under h->own. */
static void settle_pooled(hk_heap *h, uint64_t now, int idle)
{
    if (idle) hk_heap_drop_idle_current(h);
    hk_heap_collect_pages(h, 0);
    hk_segment_maintain(h, now, 0);
    hk_heap_info_publish_locked(h);
}

/* Pooled heaps' idle spans go back after the purge delay, as a live
 * heap's do, while the heaps keep their segments for a next thread.  One
 * whose lock another thread holds (taking it over) is left to that one. */
static void pool_purge_idle(uint64_t now)
{
    hk_lock_acquire(&heap_lock);
    for (hk_heap *h = pooled_heaps; h; h = h->next_free) {
        if (h->segments == NULL || !hk_lock_try(&h->own)) continue;
        uint64_t t0 = hk_ticks();
        settle_pooled(h, now, 1);
        hk_count_own(&h->counts.maintain_ticks, hk_ticks() - t0);
        hk_lock_release(&h->own);
    }
    hk_lock_release(&heap_lock);
}

/* A pooled heap waits HK_POOL_HOLD_NS (or the purge delay, if longer) for
 * a next thread before it gives its segments up.  The threads of a wave
 * end over tens of milliseconds, and the next wave starts when the last
 * has: released after the purge delay (20 ms), the heaps of the first to
 * end went to the abandoned list, their free spans purged, and the next
 * wave's threads started on empty heaps, faulting memory in beside them
 * and adopting them a segment at a time (mstress, 9 alternating runs:
 * median 2.76 s and 80.0 MB peak RSS, against 1.40 s and 78.2 MB with the
 * hold; larson, whose threads start their successors before they exit,
 * the same within noise). */
static _Atomic uint64_t pool_purged_ns;

void hk_heap_release_stale_pool(uint64_t now)
{
    uint64_t oldest = atomic_load_explicit(&pool_oldest_ns, memory_order_relaxed);
    uint64_t delay = hk_purge_delay_ns(now);
    if (oldest == UINT64_MAX || now - oldest < delay) return;
    uint64_t last = atomic_load_explicit(&pool_purged_ns, memory_order_relaxed);
    if (now - last >= delay / 2 &&
        atomic_compare_exchange_strong_explicit(&pool_purged_ns, &last, now, memory_order_relaxed,
                                                memory_order_relaxed))
        pool_purge_idle(now);
    uint64_t hold = delay > HK_POOL_HOLD_NS ? delay : HK_POOL_HOLD_NS;
    if (now - oldest >= hold) pool_release(now, hold, 0);
}

/* A heap whose thread is done with it waits in the pool for the next
 * thread, as it is: remote frees collected, empty pages retired, spans idle
 * for the purge delay purged and empty segments retained.  With no purge
 * delay it gives up its memory at once. */
static void pool_heap(hk_heap *h)
{
    uint64_t t0 = hk_ticks();
    hk_site_flush_thread(h);
    uint64_t now = hk_coarse_ns();
    if (hk_knob(HK_KNOB_PURGE_DELAY_MS) == 0) {
        heap_abandon(h);
    } else {
        hk_lock_acquire(&h->own);
        settle_pooled(h, now, 0);
        hk_lock_release(&h->own);
    }
    hk_count_own(&h->counts.maintain_ticks, hk_ticks() - t0);
    heap_unlink_and_pool(h, now);
}

static void heap_thread_done(void *arg)
{
    hk_heap *h = arg;
    if (h == NULL || h == &hk_empty_heap) return;
    if (hk_tls_heap == h) hk_tls_heap = &hk_empty_heap;
    hk_packed_thread_done();             /* keeps no block from now on: it has no heap */
    hk_large_drop_kept(h);
    pool_heap(h);
}

void hk_heap_life_init(void)
{
    pthread_key_create(&heap_key, heap_thread_done);
}

/* The calling thread frees into a pooled heap: that heap becomes the
 * thread's own, its previous one (if any) going to the pool.  A thread that
 * carries on an exited one's work (its data, its blocks) frees locally from
 * then on and allocates from warm memory.  Once per thread, so that one
 * freeing into several pooled heaps does not hop between them.  Returns 0
 * when the thread took one over before, or another thread took it first. */
int hk_heap_take_over(hk_heap *target)
{
    if (tls_took_over) return 0;
    tls_took_over = 1;
    hk_lock_acquire(&heap_lock);
    hk_heap **at = &pooled_heaps;
    while (*at && *at != target) at = &(*at)->next_free;
    int found = *at != NULL;
    if (found) pool_unlink(at);
    hk_lock_release(&heap_lock);
    if (!found) return 0;
    hk_heap *me = hk_tls_heap;
    if (me != &hk_empty_heap) pool_heap(me);
    serve_thread(target, 0);
    return 1;
}

void hk_heap_fork_prepare(void) { hk_lock_acquire(&heap_lock); }
void hk_heap_fork_parent(void)  { hk_lock_release(&heap_lock); }

/* The child has one thread.  The heaps of the parent's other threads may have
 * been caught halfway through an update, so they are not walked: they are
 * dropped from the list and their memory stays with them (frees of their
 * blocks are pushed remotely and never collected).  Their structs are not
 * reused, since their pages still name them as owner. */
void hk_heap_fork_child(void)
{
    hk_lock_reinit(&heap_lock);
    hk_heap *me = hk_tls_heap;
    live_heaps = NULL;
    live_count = 0;
    memset(&exited_counts, 0, sizeof exited_counts);    /* the child counts from zero */
    if (me != &hk_empty_heap) {
        hk_lock_reinit(&me->own);
        memset(&me->counts, 0, sizeof me->counts);
        me->next_heap = me->prev_heap = NULL;
        live_heaps = me;
        live_count = 1;
    }
}
