/* Thread heap box: free lists behind hk_heap_alloc_class, lazy page
 * extension, the current page's phantom use, idle pages and heaps, and
 * remote frees collected by the owner.  What happens to a heap's memory
 * when its thread exits is test_heap_life.c's. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

#include "chunk_map.h"
#include "hakmem.h"
#include "heap.h"
#include "knobs.h"
#include "segment.h"
#include "size_class.h"
#include "unit_util.h"
#include "heap_fixture.h"

/* A thread's first heap is fresh memory, zero already: the pages of its
 * site cache that the thread never uses stay untouched (writing zeros over
 * them made all three of a heap's pages resident in every thread).  Run
 * first, while no exited thread has left a heap in the pool. */
static void *small_work(void *arg)
{
    hk_heap **out = arg;
    void *p[16];
    for (int i = 0; i < 16; i++) p[i] = hak_malloc(48);
    for (int i = 0; i < 16; i++) hak_free(p[i]);
    *out = hk_heap_for_thread();
    /* The pages wholly inside its site cache, of which it used no entry
     * (no large block, no sampled allocation). */
    uintptr_t lo = ((uintptr_t)&(*out)->sites[0] + 4095) & ~(uintptr_t)4095;
    uintptr_t hi = ((uintptr_t)&(*out)->sites[HK_SITE_LOCAL]) & ~(uintptr_t)4095;
    unsigned char vec[8];
    unsigned resident = 0;
    if (hi > lo && (hi - lo) / 4096 <= sizeof vec && mincore((void *)lo, hi - lo, vec) == 0)
        for (size_t i = 0; i < (hi - lo) / 4096; i++) resident += vec[i] & 1;
    return (void *)(uintptr_t)(hi > lo ? resident : 99);
}

static void test_fresh_heap_touches_only_what_it_uses(void **state)
{
    (void)state;
    hk_heap *h = NULL;
    pthread_t t;
    void *resident;
    assert_int_equal(pthread_create(&t, NULL, small_work, &h), 0);
    assert_int_equal(pthread_join(t, &resident), 0);
    assert_non_null(h);
    print_message("pages wholly inside the thread's site cache that are resident: %u\n", (unsigned)(uintptr_t)resident);
    assert_int_equal((uintptr_t)resident, 0);
}

static void test_alloc_class_blocks(void **state)
{
    (void)state;
    unsigned cls = hk_size_class(96);
    uint32_t bs = hk_classes[cls].block_size;
    enum { N = 40 };
    void *p[N];
    for (unsigned i = 0; i < N; i++) {
        p[i] = hk_heap_alloc_class(heap, cls, 0);
        assert_non_null(p[i]);
        assert_int_equal(hk_chunk_kind((uintptr_t)p[i]), HK_CHUNK_SEGMENT);
        hk_page *pg = hk_page_of(p[i]);
        assert_int_equal(pg->cls, cls);
        assert_ptr_equal(atomic_load(&pg->heap), heap);
        assert_int_equal(((uint8_t *)p[i] - pg->start) % bs, 0);
        assert_int_equal((uintptr_t)p[i] % HK_ALIGN, 0);
        assert_int_equal(hak_malloc_usable_size(p[i]), bs);
        for (unsigned j = 0; j < i; j++) assert_ptr_not_equal(p[i], p[j]);
    }
    hk_page *pg = hk_page_of(p[0]);
    assert_ptr_equal(heap->current[cls], pg);
    /* Every direct bucket of the class serves from the current page. */
    for (unsigned b = 0; b <= HK_DIRECT_MAX / HK_ALIGN; b++) {
        if (hk_size_class(b * HK_ALIGN) == cls) assert_ptr_equal(heap->direct[b], pg);
    }
    assert_int_equal(pg->used, N + 1);                /* + the current page's phantom */
    /* The free list is LIFO: the last freed block is the next one out. */
    hak_free(p[7]);
    assert_ptr_equal(pg->free, p[7]);
    assert_ptr_equal(hk_heap_alloc_class(heap, cls, 0), p[7]);
    hak_free(p[3]);
    hak_free(p[9]);
    assert_ptr_equal(hak_malloc(90), p[9]);           /* malloc takes the same list */
    assert_ptr_equal(hk_heap_alloc_class(heap, cls, 0), p[3]);
    for (unsigned i = 0; i < N; i++) hak_free(p[i]);
    assert_int_equal(pg->used, 1);
}

/* Blocks are carved lazily, about an OS page at a time, in address order;
 * a page never carves past its reservation, and a full page hands over to
 * a new current page. */
static void test_page_extension(void **state)
{
    (void)state;
    unsigned cls = hk_size_class(1024);
    uint32_t bs = hk_classes[cls].block_size, reserved = hk_classes[cls].blocks;
    assert_true(reserved * bs > 4096);
    void **p = calloc(reserved + 1, sizeof *p);
    p[0] = hk_heap_alloc_class(heap, cls, 0);
    hk_page *pg = hk_page_of(p[0]);
    assert_ptr_equal(p[0], pg->start);
    assert_true(pg->capacity >= 1 && pg->capacity < reserved);
    assert_true((size_t)(pg->capacity - 1) * bs < 4096);
    uint32_t grows = 0, last_cap = pg->capacity;
    for (uint32_t i = 1; i < reserved; i++) {
        p[i] = hk_heap_alloc_class(heap, cls, 0);
        assert_ptr_equal(p[i], pg->start + (size_t)i * bs);
        assert_true(pg->capacity >= i + 1 && pg->capacity <= reserved);
        if (pg->capacity != last_cap) { grows++; last_cap = pg->capacity; }
    }
    assert_true(grows >= 1);
    assert_int_equal(pg->capacity, reserved);
    assert_null(pg->free);
    assert_int_equal(pg->used, reserved + 1);

    p[reserved] = hk_heap_alloc_class(heap, cls, 0);
    hk_page *pg2 = hk_page_of(p[reserved]);
    assert_ptr_not_equal(pg2, pg);
    assert_ptr_equal(heap->current[cls], pg2);
    assert_ptr_equal(heap->direct[1024 / HK_ALIGN], pg2);
    assert_int_equal(pg->used, reserved);             /* the phantom moved on */
    assert_int_equal(pg2->used, 2);
    for (uint32_t i = 0; i <= reserved; i++) hak_free(p[i]);
    free(p);
}

/* Each stretch of carved blocks ends within a block of an OS page
 * boundary, wherever the page begins (coloured starts) and whether or not
 * the block size divides 4 KiB: the next stretch starts a fresh OS page
 * instead of finishing one the last left half carved. */
static void test_stretches_end_on_os_pages(void **state)
{
    (void)state;
    static const uint32_t sizes[] = { 16, 48, 80, 112, 176, 320, 448, 1536 };
    for (unsigned k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        unsigned cls = hk_size_class(sizes[k]);
        uint32_t bs = hk_classes[cls].block_size;
        void **p = calloc(hk_classes[cls].blocks, sizeof *p);
        unsigned n = 0, stretches = 0;
        hk_page *pg = NULL;
        uint32_t last_cap = 0;
        while (stretches < 3) {
            p[n] = hk_heap_alloc_class(heap, cls, 1);
            if (pg == NULL) pg = hk_page_of(p[n]);
            assert_ptr_equal(hk_page_of(p[n]), pg);
            n++;
            if (pg->capacity == last_cap) continue;
            last_cap = pg->capacity;
            stretches++;
            uintptr_t end = (uintptr_t)pg->start + (size_t)pg->capacity * bs;
            uintptr_t short_of = (HK_OS_PAGE - end % HK_OS_PAGE) % HK_OS_PAGE;
            if (short_of >= bs) fail_msg("%u-byte blocks: stretch %u ends %lu bytes short of an OS page", bs,
                                         stretches, (unsigned long)short_of);
        }
        for (unsigned i = 0; i < n; i++) hak_free(p[i]);
        free(p);
    }
}

/* A class of 1 KiB or more whose next block would be fresh memory takes a
 * spare block of the class above, already carved, instead; a class below
 * 1 KiB and the aligned path (exact) take their own. */
static void test_borrows_spare_block_of_class_above(void **state)
{
    (void)state;
    unsigned cls = hk_size_class(3000), up = cls + 1;
    assert_true(hk_classes[cls].block_size >= 1024 && hk_classes[up].block_size > hk_classes[cls].block_size);
    void *u1 = hk_heap_alloc_class(heap, up, 0), *u2 = hk_heap_alloc_class(heap, up, 0);
    hk_page *pu = hk_page_of(u1);
    assert_ptr_equal(hk_page_of(u2), pu);
    hak_free(u2);                                     /* a spare block of the class above */
    uint32_t used = pu->used;

    void *exact = hk_heap_alloc_class(heap, cls, 1);  /* a page of its own, one block carved */
    hk_page *pc = hk_page_of(exact);
    assert_ptr_not_equal(pc, pu);
    assert_int_equal(pu->used, used);
    assert_null(pc->free);

    void *b = hk_heap_alloc_class(heap, cls, 0);      /* pc would carve: u2 instead */
    assert_ptr_equal(b, u2);
    assert_int_equal(pu->used, used + 1);
    assert_null(pc->free);
    hak_free(b);
    assert_int_equal(pu->used, used);
    hak_free(exact);

    unsigned small = hk_size_class(700);
    assert_true(hk_classes[small].block_size < 1024);
    void *s1 = hk_heap_alloc_class(heap, small + 1, 0), *s2 = hk_heap_alloc_class(heap, small + 1, 0);
    hak_free(s2);
    void *s = hk_heap_alloc_class(heap, small, 0);
    assert_ptr_not_equal(hk_page_of(s), hk_page_of(s1));
    hak_free(s);
    hak_free(s1);
    hak_free(u1);
}

/* A borrowed block goes back to its lender when freed, so a malloc/free
 * loop of one size would borrow on the slow path forever: after a short run
 * of borrows the class uses its own page, and the loop's block cycles there. */
static void test_malloc_free_loop_stops_borrowing(void **state)
{
    (void)state;
    unsigned cls = hk_size_class(3000), up = cls + 1;
    void *u1 = hk_heap_alloc_class(heap, up, 0), *u2 = hk_heap_alloc_class(heap, up, 0);
    hk_page *pu = hk_page_of(u1);
    hak_free(u2);
    void *exact = hk_heap_alloc_class(heap, cls, 1);
    hk_page *pc = hk_page_of(exact);
    assert_null(pc->free);

    unsigned borrowed = 0, own_at_end = 0;
    for (unsigned i = 0; i < 100; i++) {
        void *b = hk_heap_alloc_class(heap, cls, 0);
        if (hk_page_of(b) == pu) borrowed++;
        else if (i >= 50 && hk_page_of(b) == pc) own_at_end++;
        hak_free(b);
    }
    assert_true(borrowed >= 1);
    assert_int_equal(own_at_end, 50);
    hak_free(exact);
    hak_free(u1);
}

/* The current page keeps one phantom use: freeing its last block leaves it
 * in place (the next malloc needs no slow path); a page that is no longer
 * current goes back to its segment as soon as its last block is freed. */
static void test_phantom_use_of_current_page(void **state)
{
    (void)state;
    unsigned cls = hk_size_class(256 * 1024);
    assert_int_equal(hk_classes[cls].blocks, 1);
    void *a = hk_heap_alloc_class(heap, cls, 0);
    hk_page *pa = hk_page_of(a);
    hk_segment *seg = hk_segment_of(a);
    unsigned slot = (unsigned)(((uintptr_t)pa->start & HK_SEGMENT_MASK) >> HK_SLOT_SHIFT);
    assert_int_equal(pa->used, 2);
    hak_free(a);
    assert_int_equal(pa->used, 1);
    assert_int_equal(pa->in_use, 1);
    assert_ptr_equal(heap->current[cls], pa);
    assert_true((seg->free_slots >> slot & 1) == 0);
    assert_ptr_equal(hk_heap_alloc_class(heap, cls, 0), a);   /* same block again */

    void *b = hk_heap_alloc_class(heap, cls, 0);        /* pa is full: a second page */
    hk_page *pb = hk_page_of(b);
    assert_ptr_not_equal(pb, pa);
    assert_ptr_equal(heap->current[cls], pb);
    assert_int_equal(pa->used, 1);
    assert_int_equal(pb->used, 2);
    hak_free(a);                                      /* last block of a non-current page */
    assert_int_equal(pa->in_use, 0);
    assert_ptr_equal(seg->slot_page[slot], &hk_invalid_page);
    assert_true((seg->free_slots >> slot & 1) == 1);
    hak_free(b);
    assert_int_equal(pb->in_use, 1);
    assert_int_equal(pb->used, 1);
    assert_ptr_equal(heap->current[cls], pb);
    /* A forced collection drops the phantom, retires the page and, the
     * segment now being empty, unmaps it. */
    hakmem_collect();
    assert_ptr_equal(heap->current[cls], &hk_empty_page);
    assert_null(heap->segments);
    assert_int_equal(hk_chunk_kind((uintptr_t)b), HK_CHUNK_NONE);
}

/* Whether p's page is in memory; one no longer mapped (its segment went
 * back whole) is not. */
static int resident(const void *p)
{
    unsigned char v = 0;
    void *page = (void *)((uintptr_t)p & ~(uintptr_t)4095);
    if (mincore(page, 4096, &v) != 0) {
        assert_int_equal(errno, ENOMEM);
        return 0;
    }
    return v & 1;
}

/* A buffer shrunk by realloc through medium sizes (each step a class of its
 * own, each page the current one of its class) leaves no resident copy
 * behind: every page it moved out of retires and is purged at once.  (One
 * grown past 64 KiB takes a mapping of its own instead: test_large.c.) */
static void test_realloc_shrink_leaves_no_resident_trail(void **state)
{
    (void)state;
    static const size_t sizes[] = { 1000 * 1024, 400 * 1024, 160 * 1024, 70 * 1024 };
    unsigned char *p = hak_malloc(sizes[0]);
    assert_non_null(p);
    memset(p, 0xa5, sizes[0]);
    for (unsigned step = 1; step < sizeof sizes / sizeof sizes[0]; step++) {
        hk_page *old_page = hk_page_of(p);
        unsigned char *old = p;
        p = hak_realloc(p, sizes[step]);
        assert_non_null(p);
        assert_ptr_not_equal(p, old);
        assert_int_equal(p[0], 0xa5);
        assert_int_equal(p[sizes[step] - 1], 0xa5);
        assert_int_equal(old_page->in_use, 0);
        assert_false(resident(old + 8192));
        assert_ptr_not_equal(heap->current[old_page->cls], old_page);
    }
    hak_free(p);
}

/* A medium class's current page left with no block gives its memory up at
 * the next maintenance, without a forced collection. */
static void test_idle_medium_page_released_at_maintenance(void **state)
{
    (void)state;
    ut_set_knob(HK_KNOB_PURGE_DELAY_MS, 1);
    unsigned cls = hk_size_class(256 * 1024);
    void *a = hk_heap_alloc_class(heap, cls, 0);
    memset(a, 1, 256 * 1024);
    hk_page *pa = hk_page_of(a);
    hak_free(a);
    assert_ptr_equal(heap->current[cls], pa);        /* the phantom keeps it */
    heap->last_maintenance_ns = 0;
    hk_heap_tick(heap);
    assert_ptr_equal(heap->current[cls], &hk_empty_page);
    assert_int_equal(pa->in_use, 0);
    struct timespec nap = { 0, 5 * 1000 * 1000 };
    nanosleep(&nap, NULL);
    heap->last_maintenance_ns = 0;
    hk_heap_tick(heap);
    assert_false(resident((char *)a + 8192));        /* purged after the delay */
    hk_knobs_reset();
}

/* A thread that allocated blocks and then blocks (a main thread in
 * pthread_join) while another frees them all: another thread's maintenance
 * retires and purges the idle heap's pages that are not current, and the
 * idle thread carries on allocating afterwards as if nothing happened. */
enum { IDLE_BLOCKS = 24, IDLE_SIZE = 16 * 1024 };

typedef struct idle_job {
    void *p[IDLE_BLOCKS];
    hk_page *pages[IDLE_BLOCKS];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stage;                          /* 1: allocated; 2: may go on; 3: done */
    int ok_after;
} idle_job;

static void idle_stage(idle_job *j, int stage)
{
    pthread_mutex_lock(&j->mu);
    j->stage = stage;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static void idle_wait(idle_job *j, int stage)
{
    pthread_mutex_lock(&j->mu);
    while (j->stage < stage) pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
}

static void *alloc_then_idle(void *arg)
{
    idle_job *j = arg;
    for (unsigned i = 0; i < IDLE_BLOCKS; i++) {
        j->p[i] = hak_malloc(IDLE_SIZE);
        memset(j->p[i], 0x5a, IDLE_SIZE);
        j->pages[i] = hk_page_of(j->p[i]);
    }
    idle_stage(j, 1);
    idle_wait(j, 2);
    /* Its heap lost pages while it slept: it allocates and frees as before. */
    void *q[IDLE_BLOCKS];
    int ok = 1;
    for (unsigned i = 0; i < IDLE_BLOCKS; i++) {
        q[i] = hak_malloc(IDLE_SIZE);
        memset(q[i], (int)i, IDLE_SIZE);
    }
    for (unsigned i = 0; i < IDLE_BLOCKS; i++) {
        ok &= ((unsigned char *)q[i])[IDLE_SIZE - 1] == (unsigned char)i;
        hak_free(q[i]);
    }
    j->ok_after = ok;
    idle_stage(j, 3);
    return NULL;
}

/* A thread that has allocated j's blocks and waits, idle, for stage 2. */
static pthread_t idle_job_start(idle_job *j)
{
    memset(j, 0, sizeof *j);
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, alloc_then_idle, j), 0);
    idle_wait(j, 1);
    return t;
}

static void test_idle_heap_pages_reclaimed(void **state)
{
    (void)state;
    idle_job j;
    pthread_t t = idle_job_start(&j);
    hk_page *last = j.pages[IDLE_BLOCKS - 1];           /* its class's current page */
    unsigned earlier = 0;                               /* blocks on pages before it */
    while (j.pages[earlier] != last) earlier++;
    assert_true(earlier >= 8);
    for (unsigned i = 0; i < IDLE_BLOCKS; i++) hak_free(j.p[i]);    /* all remote */
    assert_true(resident((char *)j.p[0] + 8192));
    uint64_t before = hk_heap_pages_reclaimed();
    struct timespec nap = { 0, 100 * 1000 * 1000 };   /* past the idle time and the last reclaim */
    nanosleep(&nap, NULL);
    heap->last_maintenance_ns = 0;
    hk_heap_tick(heap);
    assert_true(hk_heap_pages_reclaimed() >= before + 1);
    for (unsigned i = 0; i < earlier; i++) {
        assert_int_equal(j.pages[i]->in_use, 0);
        assert_false(resident((char *)j.p[i] + 8192));
    }
    assert_int_equal(last->in_use, 1);                  /* the current page stays */
    idle_stage(&j, 2);
    idle_wait(&j, 3);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(j.ok_after);
}

/* Pages of an idle heap that a live block keeps (larson's main thread: its
 * slot arrays): another thread's maintenance gives back every OS page of
 * the blocks freed into them but the first of each, which holds the list
 * link, current page included, and touches neither the kept blocks nor
 * what the idle thread does next. */
static void test_idle_heap_pinned_pages_hollowed(void **state)
{
    (void)state;
    idle_job j;
    pthread_t t = idle_job_start(&j);
    int kept[IDLE_BLOCKS] = { 0 };
    unsigned pages = 0;
    for (unsigned i = 0; i < IDLE_BLOCKS; i++) {
        kept[i] = i == 0 || j.pages[i] != j.pages[i - 1];   /* the first block of each page */
        pages += (unsigned)kept[i];
        if (!kept[i]) hak_free(j.p[i]);                    /* remote */
    }
    assert_true(pages >= 2);
    assert_true(resident((char *)j.p[1] + 8192));
    struct timespec nap = { 0, 100 * 1000 * 1000 };       /* past the idle time and the last reclaim */
    nanosleep(&nap, NULL);
    heap->last_maintenance_ns = 0;
    hk_heap_tick(heap);
    for (unsigned i = 0; i < IDLE_BLOCKS; i++) {
        const unsigned char *b = j.p[i];
        if (kept[i]) {
            assert_int_equal(ut_resident_pages(b, IDLE_SIZE), IDLE_SIZE / 4096);
            for (size_t k = 0; k < IDLE_SIZE; k += 512) assert_int_equal(b[k], 0x5a);
        } else {
            assert_true(resident(b));                      /* the link stays */
            assert_int_equal(ut_resident_pages(b + 4096, IDLE_SIZE - 4096), 0);
        }
    }
    idle_stage(&j, 2);
    idle_wait(&j, 3);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(j.ok_after);
    for (unsigned i = 0; i < IDLE_BLOCKS; i++)
        if (kept[i]) hak_free(j.p[i]);
}

typedef struct free_job { void **p; unsigned n; } free_job;

static void *free_all(void *arg)
{
    free_job *j = arg;
    for (unsigned i = 0; i < j->n; i++) hak_free(j->p[i]);
    return NULL;
}

static void free_from_other_thread(void **p, unsigned n)
{
    pthread_t t;
    free_job j = { p, n };
    assert_int_equal(pthread_create(&t, NULL, free_all, &j), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
}

static int contains(void *const *set, unsigned n, const void *p)
{
    for (unsigned i = 0; i < n; i++) if (set[i] == p) return 1;
    return 0;
}

static void test_remote_free_collected(void **state)
{
    (void)state;
    unsigned cls = hk_size_class(48);
    enum { N = 50 };
    void *p[N];
    for (unsigned i = 0; i < N; i++) p[i] = hk_heap_alloc_class(heap, cls, 0);
    hk_page *pg = hk_page_of(p[0]);
    for (unsigned i = 0; i < N; i++) assert_ptr_equal(hk_page_of(p[i]), pg);
    uint64_t collected0 = hk_heap_remote_collected();
    unsigned live0 = hk_heap_live_count();

    free_from_other_thread(p, N);
    /* Pushed onto the page's remote list, not yet the owner's business. */
    assert_non_null(atomic_load(&pg->remote));
    assert_int_equal(pg->used, N + 1);
    assert_int_equal(hk_heap_remote_collected(), collected0);
    assert_int_equal(hk_heap_live_count(), live0);   /* freeing made no heap */

    hk_heap_collect(heap, 0);
    assert_null(atomic_load(&pg->remote));
    assert_int_equal(pg->used, 1);
    assert_int_equal(hk_heap_remote_collected(), collected0 + N);
    /* The collected blocks are the next ones handed out. */
    void *q[N];
    for (unsigned i = 0; i < N; i++) {
        q[i] = hk_heap_alloc_class(heap, cls, 0);
        assert_true(contains(p, N, q[i]));
        for (unsigned j = 0; j < i; j++) assert_ptr_not_equal(q[i], q[j]);
    }
    for (unsigned i = 0; i < N; i++) hak_free(q[i]);
}

/* The owner also finds remote frees by itself when its page runs dry. */
static void test_remote_free_on_slow_path(void **state)
{
    (void)state;
    unsigned cls = hk_size_class(8192);
    uint32_t n = hk_classes[cls].blocks;
    void *p[64];
    assert_true(n <= 64);
    for (uint32_t i = 0; i < n; i++) p[i] = hk_heap_alloc_class(heap, cls, 0);
    hk_page *pg = hk_page_of(p[0]);
    assert_null(pg->free);
    assert_int_equal(pg->capacity, pg->reserved);
    uint64_t collected0 = hk_heap_remote_collected();
    free_from_other_thread(p, n);
    void *again = hk_heap_alloc_class(heap, cls, 0);
    assert_ptr_equal(hk_page_of(again), pg);             /* no new page was needed */
    assert_true(contains(p, n, again));
    assert_int_equal(hk_heap_remote_collected(), collected0 + n);
    assert_int_equal(segments_of_heap(heap), 1);
    hak_free(again);
}

/* When the current page has no free block left but room never carved, a
 * refill takes the blocks other threads freed into a page further on
 * before it touches new memory, if there are at least half an extend's
 * worth; a block or two is not worth a refill: it carves. */
static void test_refill_reuses_freed_blocks_before_carving(void **state)
{
    (void)state;
    unsigned cls = hk_size_class(1024);
    uint32_t reserved = hk_classes[cls].blocks;
    void **full = calloc(reserved, sizeof *full);
    for (uint32_t i = 0; i < reserved; i++) full[i] = hk_heap_alloc_class(heap, cls, 0);
    hk_page *p1 = hk_page_of(full[0]);
    void *taken[64];
    unsigned n_taken = 0;
    taken[n_taken++] = hk_heap_alloc_class(heap, cls, 0);   /* p1 is full: a new current page */
    hk_page *p2 = hk_page_of(taken[0]);
    assert_ptr_not_equal(p2, p1);
    while (p2->free != NULL && n_taken < 64) taken[n_taken++] = hk_heap_alloc_class(heap, cls, 0);
    assert_null(p2->free);                            /* its carved blocks, all taken */
    assert_true(p2->capacity < p2->reserved);

    free_from_other_thread(full, 1);                  /* one block: not worth it */
    uint32_t carved = p2->capacity;
    taken[n_taken++] = hk_heap_alloc_class(heap, cls, 0);
    assert_ptr_equal(hk_page_of(taken[n_taken - 1]), p2);
    assert_true(p2->capacity > carved);
    while (p2->free != NULL && n_taken < 64) taken[n_taken++] = hk_heap_alloc_class(heap, cls, 0);
    assert_true(p2->capacity < p2->reserved);

    free_from_other_thread(full + 1, 8);              /* eight: taken before carving */
    carved = p2->capacity;
    void *next = hk_heap_alloc_class(heap, cls, 0);
    assert_ptr_equal(hk_page_of(next), p1);
    assert_true(contains(full, 9, next));
    assert_int_equal(p2->capacity, carved);           /* nothing new carved */
    hak_free(next);
    for (uint32_t i = 9; i < reserved; i++) hak_free(full[i]);
    for (unsigned i = 0; i < n_taken; i++) hak_free(taken[i]);
    free(full);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fresh_heap_touches_only_what_it_uses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alloc_class_blocks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page_extension, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stretches_end_on_os_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_borrows_spare_block_of_class_above, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malloc_free_loop_stops_borrowing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_phantom_use_of_current_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_realloc_shrink_leaves_no_resident_trail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_medium_page_released_at_maintenance, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_heap_pages_reclaimed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_heap_pinned_pages_hollowed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remote_free_collected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remote_free_on_slow_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refill_reuses_freed_blocks_before_carving, setup, teardown),
    };
    return cmocka_run_group_tests_name("heap", tests, NULL, NULL);
}
