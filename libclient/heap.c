/* Thread heap box.  Everything here runs on the owning thread except the
 * remote push in hk_heap_free_slow and the heap list (under heap_lock). */
#include "heap.h"
#include "bigcache.h"
#include "init.h"
#include "lock.h"
#include "meta.h"
#include "options.h"
#include "os.h"
#include "segment.h"
#include "site.h"
#include "size_class.h"
#include "shm_client.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#define SCAN_LIMIT 8            /* pages examined before a new one is taken */
#define EXTEND_BYTES 4096       /* carve about one OS page of blocks at a time */
#define MAINTAIN_EVERY 64       /* slow calls between looks at the clock */
#define MAINTAIN_NS 1000000ull  /* at most one maintenance pass a millisecond */
#define BIGCACHE_IDLE_NS 2000000000ull  /* cached large blocks unused this long go back */

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
static hk_lock heap_lock = HK_LOCK_INIT;
static hk_heap *live_heaps, *free_heaps;
static unsigned live_count;
static pthread_key_t heap_key;
static _Atomic uint64_t remote_collected;

unsigned hk_heap_live_count(void) { return live_count; }
uint64_t hk_heap_remote_collected(void) { return atomic_load(&remote_collected); }

static void heap_thread_done(void *arg);

void hk_heap_process_init(void)
{
    for (unsigned c = 0; c < HK_CLASSES; c++) { direct_lo[c] = 0xff; direct_hi[c] = 0; }
    for (unsigned b = 0; b <= HK_DIRECT_MAX / HK_ALIGN; b++) {
        unsigned c = hk_size_class(b * HK_ALIGN);
        if (direct_lo[c] == 0xff) direct_lo[c] = (uint8_t)b;
        direct_hi[c] = (uint8_t)b;
    }
    pthread_key_create(&heap_key, heap_thread_done);
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
static void collect_remote(hk_page *pg);

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
    collect_remote(pg);
    if (pg->used == 0) {                 /* everything was freed while abandoned */
        hk_segment_page_free(heap, pg);
        return;
    }
    queue_insert(heap, pg, 0);
}

/* ---- blocks ---------------------------------------------------------- */

static void collect_remote(hk_page *pg)
{
    if (atomic_load_explicit(&pg->remote, memory_order_relaxed) == NULL) return;
    hk_block *list = atomic_exchange_explicit(&pg->remote, NULL, memory_order_acquire);
    if (list == NULL) return;
    uint32_t n = 1;
    hk_block *tail = list;
    while (tail->next) { tail = tail->next; n++; }
    tail->next = pg->free;
    pg->free = list;
    pg->used -= n;
    atomic_fetch_add_explicit(&remote_collected, n, memory_order_relaxed);
}

/* Carves the next stretch of never-used blocks onto the free list, in
 * address order, touching about one OS page. */
static void extend(hk_page *pg)
{
    uint32_t bs = pg->block_size;
    uint32_t n = bs >= EXTEND_BYTES ? 1 : EXTEND_BYTES / bs;
    if (n > pg->reserved - pg->capacity) n = pg->reserved - pg->capacity;
    uint8_t *first = pg->start + (size_t)pg->capacity * bs;
    hk_block *b = (hk_block *)first;
    for (uint32_t i = 1; i < n; i++) {
        hk_block *nx = (hk_block *)(first + (size_t)i * bs);
        b->next = nx;
        b = nx;
    }
    b->next = pg->free;
    pg->free = (hk_block *)first;
    __atomic_store_n(&pg->capacity, pg->capacity + n, __ATOMIC_RELAXED);   /* remote frees read it */
}

/* pg has no block in use and is not current: its span goes back. */
static void retire(hk_heap *heap, hk_page *pg)
{
    queue_remove(heap, pg);
    hk_segment_page_free(heap, pg);
}

/* A page of class cls with a free block, made current; NULL when out of memory. */
static hk_page *find_page(hk_heap *heap, unsigned cls)
{
    hk_page *pg = heap->queue[cls];
    for (unsigned scanned = 0; pg && scanned < SCAN_LIMIT; scanned++) {
        collect_remote(pg);
        if (pg->free == NULL && pg->capacity < pg->reserved) extend(pg);
        if (pg->free) {
            heap->queue[cls] = pg;               /* the full ones scanned go to the back */
            set_current(heap, cls, pg);
            return pg;
        }
        pg = pg->next;
        if (pg == heap->queue[cls]) break;       /* went all the way round */
    }
    if (pg) heap->queue[cls] = pg;
    pg = hk_segment_page_alloc(heap, cls);
    if (pg == NULL) return NULL;
    extend(pg);
    queue_insert(heap, pg, 1);
    set_current(heap, cls, pg);
    return pg;
}

void *hk_heap_alloc_class_slow(hk_heap *heap, unsigned cls)
{
    hk_page *pg = find_page(heap, cls);
    if (pg == NULL) return NULL;
    hk_block *b = pg->free;
    pg->free = b->next;
    pg->used++;
    return b;
}

static void maintain(hk_heap *heap)
{
    uint64_t now = hk_coarse_ns();
    if (now - heap->last_maintenance_ns < MAINTAIN_NS) return;
    heap->last_maintenance_ns = now;
    hk_segment_adopt_one(heap);          /* memory of exited threads comes back */
    hk_segment_maintain(heap, now, 0);
    hk_bigcache_trim(now, BIGCACHE_IDLE_NS);
    hk_shm_client_tick(now);
}

void *hk_heap_malloc_slow(size_t size, uintptr_t ra)
{
    hk_heap *heap = hk_tls_heap;
    if (unlikely(heap == &hk_empty_heap)) {
        heap = hk_heap_for_thread();
        if (heap == NULL) { errno = ENOMEM; return NULL; }
    }
    void *p = hk_heap_alloc_class(heap, hk_size_class(size));
    if (p == NULL) { errno = ENOMEM; return NULL; }
    if ((heap->sample_left -= (int64_t)size) < 0) hk_site_sample(heap, ra, size);
    if ((++heap->slow_calls % MAINTAIN_EVERY) == 0) maintain(heap);
    return p;
}

void hk_heap_tick(hk_heap *heap)
{
    maintain(heap);
}

void hk_heap_page_emptied(hk_heap *heap, hk_page *pg)
{
    retire(heap, pg);                            /* never current: see set_current */
    if ((++heap->slow_calls % 16) == 0) maintain(heap);
}

void hk_heap_check_block(const hk_page *pg, const void *p, const char *fn)
{
    if (pg == &hk_invalid_page || !pg->in_use || pg->block_size == 0)
        hk_fatal_pointer(fn, "invalid pointer", p);
    uint64_t off = (uint64_t)((uintptr_t)p - (uintptr_t)pg->start);
    uint64_t idx = (off * pg->block_inv) >> HK_INV_SHIFT;
    uint32_t carved = __atomic_load_n(&pg->capacity, __ATOMIC_RELAXED);
    if ((uintptr_t)p < (uintptr_t)pg->start || idx >= carved || idx * pg->block_size != off)
        hk_fatal_pointer(fn, "invalid pointer", p);
}

void hk_heap_free_slow(hk_page *pg, void *p, const char *fn)
{
    hk_heap_check_block(pg, p, fn);
    hk_heap *me = hk_tls_heap;
    if (atomic_load_explicit(&pg->heap, memory_order_acquire) == me) {
        hk_block *b = p;
        b->next = pg->free;
        pg->free = b;
        if (--pg->used == 0) hk_heap_page_emptied(me, pg);
        return;
    }
    hk_block *b = p;
    hk_block *head = atomic_load_explicit(&pg->remote, memory_order_relaxed);
    do {
        b->next = head;
    } while (!atomic_compare_exchange_weak_explicit(&pg->remote, &head, b,
                                                    memory_order_release, memory_order_relaxed));
}

void hk_heap_collect(hk_heap *heap, int force)
{
    for (unsigned c = 0; c < HK_CLASSES; c++) {
        if (force) set_current(heap, c, &hk_empty_page);
        unsigned n = 0;
        hk_page *pg = heap->queue[c];
        if (pg == NULL) continue;
        do { n++; pg = pg->next; } while (pg != heap->queue[c]);
        for (; n > 0; n--) {
            hk_page *next = pg->next;
            collect_remote(pg);
            if (pg->used == 0) retire(heap, pg);
            pg = next;
        }
    }
    hk_segment_maintain(heap, hk_coarse_ns(), force);
}

/* ---- heap lifetime ---------------------------------------------------- */

static void heap_reset(hk_heap *h)
{
    memset(h, 0, sizeof *h);
    for (unsigned b = 0; b <= HK_DIRECT_MAX / HK_ALIGN; b++) h->direct[b] = &hk_empty_page;
    for (unsigned c = 0; c < HK_CLASSES; c++) h->current[c] = &hk_empty_page;
    h->sample_left = (int64_t)hk_opt.sample_bytes;
}

hk_heap *hk_heap_for_thread(void)
{
    hk_heap *h = hk_tls_heap;
    if (h != &hk_empty_heap) return h;
    hk_process_init();
    hk_lock_acquire(&heap_lock);
    h = free_heaps;
    if (h) free_heaps = h->next_free;
    hk_lock_release(&heap_lock);
    if (h == NULL) h = hk_meta_alloc(sizeof *h);
    if (h == NULL) return NULL;
    heap_reset(h);
    hk_lock_acquire(&heap_lock);
    h->next_heap = live_heaps;
    if (live_heaps) live_heaps->prev_heap = h;
    live_heaps = h;
    live_count++;
    hk_lock_release(&heap_lock);
    /* Visible before pthread_setspecific, which may itself allocate. */
    hk_tls_heap = h;
    pthread_setspecific(heap_key, h);
    return h;
}

static void heap_unlink_and_pool(hk_heap *h)
{
    hk_lock_acquire(&heap_lock);
    if (h->prev_heap) h->prev_heap->next_heap = h->next_heap; else live_heaps = h->next_heap;
    if (h->next_heap) h->next_heap->prev_heap = h->prev_heap;
    live_count--;
    h->next_free = free_heaps;
    free_heaps = h;
    hk_lock_release(&heap_lock);
}

/* Gives up everything a heap owns: its empty memory to the OS, the rest to
 * whichever thread adopts its segments. */
static void heap_abandon(hk_heap *h)
{
    hk_site_flush_thread(h);
    hk_heap_collect(h, 1);
    hk_segment_abandon_all(h);
}

static void heap_thread_done(void *arg)
{
    hk_heap *h = arg;
    if (h == NULL || h == &hk_empty_heap) return;
    if (hk_tls_heap == h) hk_tls_heap = &hk_empty_heap;
    heap_abandon(h);
    heap_unlink_and_pool(h);
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
    if (me != &hk_empty_heap) {
        me->next_heap = me->prev_heap = NULL;
        live_heaps = me;
        live_count = 1;
    }
}
