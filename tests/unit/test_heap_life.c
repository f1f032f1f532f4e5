/* What happens to a thread heap's memory when its thread exits: the
 * pool, its release, and the take-over by a thread that frees into it. */
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
#include "heap_life.h"
#include "knobs.h"
#include "segment.h"
#include "size_class.h"
#include "unit_util.h"
#include "heap_fixture.h"

typedef struct exit_job {
    unsigned keep;              /* blocks handed back to the main thread */
    void *kept[16];
    void *small;                /* freed, as every block of its page was */
    uint64_t segments_seen;
    hk_heap *heap;              /* the thread's heap */
} exit_job;

static void *alloc_and_exit(void *arg)
{
    exit_job *j = arg;
    void *p[300];
    for (unsigned i = 0; i < 300; i++) {
        p[i] = hak_malloc(16 + (i * 37) % 3000);
        if (p[i] == NULL) abort();
    }
    void *medium = hak_malloc(300 * 1024);
    memset(medium, 2, 300 * 1024);
    j->segments_seen = hk_segment_mapped_count();
    j->heap = hk_heap_for_thread();
    for (unsigned i = 0; i < j->keep; i++) j->kept[i] = hak_malloc(4096);
    for (unsigned i = 0; i < 300; i++) hak_free(p[i]);
    hak_free(medium);
    j->small = p[1];
    return NULL;
}

static void run_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fn, arg), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
}

/* With no purge delay a thread's memory goes back when it exits: its empty
 * segments unmapped (or retained, purged: no thread may run maintenance
 * after the one that exits). */
static void test_thread_exit_without_delay_returns_memory(void **state)
{
    (void)state;
    unsigned live0 = hk_heap_live_count();
    ut_set_knob(HK_KNOB_PURGE_DELAY_MS, 0);
    ut_set_knob(HK_KNOB_RETAINED_SEGMENTS, 0);
    exit_job j = { .keep = 0 };
    run_thread(alloc_and_exit, &j);
    assert_true(j.segments_seen > baseline_segments);
    assert_int_equal(hk_segment_mapped_count(), baseline_segments);
    assert_int_equal(hk_heap_live_count(), live0);
    assert_null(j.heap->segments);

    ut_set_knob(HK_KNOB_RETAINED_SEGMENTS, 8);
    uint32_t retained0 = hk_segment_retained_count();
    run_thread(alloc_and_exit, &j);
    assert_int_equal(hk_segment_retained_count(), retained0 + (j.segments_seen - baseline_segments));
    assert_int_equal(hk_segment_mapped_count(), j.segments_seen);
    assert_int_equal(hk_segment_retained_dirty_bytes(), 0);
    hk_knobs_reset();
}

typedef struct next_job {
    hk_heap *heap;
    uint64_t segments_before, segments_after, faults;
    void *block;
} next_job;

static uint64_t minor_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return (uint64_t)ru.ru_minflt;
}

/* Allocates what alloc_and_exit did, counting the page faults. */
static void *alloc_again(void *arg)
{
    next_job *j = arg;
    j->segments_before = hk_segment_mapped_count();
    uint64_t f0 = minor_faults();
    void *p[300];
    for (unsigned i = 0; i < 300; i++) p[i] = hak_malloc(16 + (i * 37) % 3000);
    void *medium = hak_malloc(300 * 1024);
    memset(medium, 1, 300 * 1024);
    j->faults = minor_faults() - f0;
    j->block = medium;
    j->segments_after = hk_segment_mapped_count();
    j->heap = hk_heap_for_thread();
    for (unsigned i = 0; i < 300; i++) hak_free(p[i]);
    hak_free(medium);
    return NULL;
}

/* Within the purge delay, an exited thread's heap waits in the pool with
 * its memory, and the next thread that allocates gets it whole: no new
 * segment, no page fault. */
static void test_exited_heap_goes_whole_to_next_thread(void **state)
{
    (void)state;
    ut_set_knob(HK_KNOB_PURGE_DELAY_MS, 60000);
    exit_job j = { .keep = 10 };
    run_thread(alloc_and_exit, &j);
    hk_segment *seg = hk_segment_of(j.kept[0]);
    assert_ptr_equal(seg->heap, j.heap);             /* still the pooled heap's */
    assert_ptr_equal(atomic_load(&hk_page_of(j.kept[0])->heap), j.heap);
    assert_int_equal(atomic_load(&j.heap->pooled), 1);
    assert_int_equal(hk_segment_mapped_count(), j.segments_seen);

    next_job n = { 0 };
    run_thread(alloc_again, &n);
    assert_ptr_equal(n.heap, j.heap);
    assert_int_equal(n.segments_after, n.segments_before);
    print_message("page faults of the next thread's 300 blocks and 300 KiB: %llu\n",
                  (unsigned long long)n.faults);
    assert_true(n.faults < 16);                      /* its stack's */
    for (unsigned i = 0; i < j.keep; i++) hak_free(j.kept[i]);
    hk_knobs_reset();
}

static void nap_ms(long ms)
{
    struct timespec nap = { ms / 1000, (ms % 1000) * 1000 * 1000 };
    nanosleep(&nap, NULL);
}

/* A pooled heap nobody claims gives its idle spans back after the purge
 * delay, at another thread's maintenance, and keeps its segments for a
 * next thread; unclaimed for HK_POOL_HOLD_NS, it gives them up: they are
 * abandoned, then adopted, live pages and all. */
static void test_unclaimed_heap_purged_then_released(void **state)
{
    (void)state;
    ut_set_knob(HK_KNOB_PURGE_DELAY_MS, 1);
    exit_job j = { .keep = 10 };
    run_thread(alloc_and_exit, &j);
    hk_segment *seg = hk_segment_of(j.kept[0]);
    hk_page *pg = hk_page_of(j.kept[0]);
    assert_ptr_equal(seg->heap, j.heap);
    uint8_t *small_page = (uint8_t *)((uintptr_t)j.small & ~(uintptr_t)4095);
    assert_int_equal(ut_resident_pages(small_page, 4096), 1);

    /* The first pass retires the current page the small blocks left, the
     * next purges its span, idle for the delay by then. */
    for (int pass = 0; pass < 2; pass++) {
        nap_ms(20);
        heap->last_maintenance_ns = 0;
        hk_heap_tick(heap);
    }
    assert_int_equal(ut_resident_pages(small_page, 4096), 0);          /* purged */
    assert_ptr_equal(seg->heap, j.heap);                               /* still pooled, whole */
    assert_int_equal(atomic_load(&j.heap->pooled), 1);

    nap_ms(HK_POOL_HOLD_NS / 1000000 + 10);
    heap->last_maintenance_ns = 0;
    hk_heap_tick(heap);
    assert_null(j.heap->segments);
    assert_ptr_equal(seg->heap, heap);                /* adopted by this thread's maintenance */
    assert_ptr_equal(atomic_load(&pg->heap), heap);
    assert_int_equal(pg->used, j.keep);               /* no phantom on a page it did not own */
    for (unsigned i = 0; i < j.keep; i++) hak_free(j.kept[i]);
    hk_knobs_reset();
}

/* malloc_trim gives back what pooled heaps hold at once. */
static void test_collect_releases_pooled_heaps(void **state)
{
    (void)state;
    ut_set_knob(HK_KNOB_PURGE_DELAY_MS, 60000);
    exit_job j = { .keep = 0 };
    run_thread(alloc_and_exit, &j);
    assert_non_null(j.heap->segments);
    assert_true(hk_segment_mapped_count() > baseline_segments);
    hakmem_collect();
    assert_null(j.heap->segments);
    assert_int_equal(hk_segment_mapped_count(), baseline_segments);
    hk_knobs_reset();
}

/* A thread frees all but one 16 KiB block of each page and exits: when its
 * pooled heap gives its memory up, the pages the kept blocks pin keep only
 * the OS page holding each free block's list link, and the kept blocks are
 * intact. */
enum { PINNED_BLOCKS = 32, PINNED_SIZE = 16 * 1024 };
typedef struct pinned_job {
    void *p[PINNED_BLOCKS];
    int kept[PINNED_BLOCKS];
} pinned_job;

static void *pin_pages_and_exit(void *arg)
{
    pinned_job *j = arg;
    for (unsigned i = 0; i < PINNED_BLOCKS; i++) {
        j->p[i] = hak_malloc(PINNED_SIZE);
        memset(j->p[i], 0x33, PINNED_SIZE);
        j->kept[i] = i == 0 || hk_page_of(j->p[i]) != hk_page_of(j->p[i - 1]);
    }
    for (unsigned i = 0; i < PINNED_BLOCKS; i++)
        if (!j->kept[i]) hak_free(j->p[i]);
    return NULL;
}

static void test_released_heap_hollows_pinned_pages(void **state)
{
    (void)state;
    ut_set_knob(HK_KNOB_PURGE_DELAY_MS, 60000);
    pinned_job j;
    memset(&j, 0, sizeof j);
    run_thread(pin_pages_and_exit, &j);
    unsigned freed = 0;
    for (unsigned i = 0; i < PINNED_BLOCKS; i++)
        if (!j.kept[i]) freed++, assert_int_equal(ut_resident_pages(j.p[i], PINNED_SIZE), PINNED_SIZE / 4096);
    assert_true(freed >= PINNED_BLOCKS / 2);
    hk_heap_release_pooled();
    for (unsigned i = 0; i < PINNED_BLOCKS; i++) {
        const unsigned char *b = j.p[i];
        if (j.kept[i]) {
            assert_int_equal(ut_resident_pages(b, PINNED_SIZE), PINNED_SIZE / 4096);
            for (size_t k = 0; k < PINNED_SIZE; k += 512) assert_int_equal(b[k], 0x33);
            hak_free(j.p[i]);
        } else {
            assert_int_equal(ut_resident_pages(b, PINNED_SIZE), 1);
        }
    }
    hk_knobs_reset();
}

typedef struct handover_job {
    void **blocks;              /* the exited thread's blocks, freed here */
    void **other;               /* freed instead if blocks are in the heap this thread got */
    unsigned n;
    int allocate_first;         /* the thread has a heap of its own before it frees */
    hk_heap *before, *after;
    unsigned remote_frees;      /* frees that found the page owned by another heap */
} handover_job;

static void *free_handed_over(void *arg)
{
    handover_job *j = arg;
    void *mine = NULL;
    if (j->allocate_first) mine = hak_malloc(64);
    j->before = hk_tls_heap;
    if (j->other && atomic_load(&hk_page_of(j->blocks[0])->heap) == j->before) {
        void **t = j->blocks;
        j->blocks = j->other;
        j->other = t;
    }
    for (unsigned i = 0; i < j->n; i++) {
        if (atomic_load(&hk_page_of(j->blocks[i])->heap) != hk_tls_heap) j->remote_frees++;
        hak_free(j->blocks[i]);
    }
    j->after = hk_tls_heap;
    hak_free(mine);
    return NULL;
}

typedef struct maker_job { void *blocks[200]; hk_heap *heap; pthread_barrier_t *together; } maker_job;

static void *make_and_exit(void *arg)
{
    maker_job *m = arg;
    for (unsigned i = 0; i < 200; i++) m->blocks[i] = hak_malloc(64 + i);
    m->heap = hk_heap_for_thread();
    if (m->together) pthread_barrier_wait(m->together);
    return NULL;
}

/* Two threads alive at once, so that they have heaps of their own. */
static void make_two(maker_job *a, maker_job *b)
{
    pthread_barrier_t together;
    pthread_barrier_init(&together, NULL, 2);
    a->together = b->together = &together;
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, make_and_exit, a), 0);
    assert_int_equal(pthread_create(&tb, NULL, make_and_exit, b), 0);
    assert_int_equal(pthread_join(ta, NULL), 0);
    assert_int_equal(pthread_join(tb, NULL), 0);
    pthread_barrier_destroy(&together);
}

/* A thread that frees what an exited thread left takes that thread's pooled
 * heap over: one remote free, the rest local.  One that has a heap already
 * swaps it for the pooled one (its own goes to the pool); only once. */
static void test_free_into_pooled_heap_takes_it_over(void **state)
{
    (void)state;
    ut_set_knob(HK_KNOB_PURGE_DELAY_MS, 60000);
    maker_job m = { .together = NULL };
    run_thread(make_and_exit, &m);
    assert_int_equal(atomic_load(&m.heap->pooled), 1);
    handover_job h = { .blocks = m.blocks, .n = 200 };
    run_thread(free_handed_over, &h);
    assert_ptr_equal(h.before, &hk_empty_heap);
    assert_ptr_equal(h.after, m.heap);
    assert_int_equal(h.remote_frees, 1);

    maker_job m2, m3;
    make_two(&m2, &m3);
    assert_ptr_not_equal(m2.heap, m3.heap);
    handover_job h2 = { .blocks = m2.blocks, .other = m3.blocks, .n = 200, .allocate_first = 1 };
    run_thread(free_handed_over, &h2);
    hk_heap *target = h2.blocks == m2.blocks ? m2.heap : m3.heap;
    assert_ptr_not_equal(h2.before, target);
    assert_ptr_not_equal(h2.before, &hk_empty_heap);
    assert_ptr_equal(h2.after, target);
    assert_int_equal(h2.remote_frees, 1);
    assert_int_equal(atomic_load(&h2.before->pooled), 1);   /* its own heap went to the pool */

    /* Once per thread: freeing into another pooled heap afterwards stays remote. */
    maker_job m4, m5;
    make_two(&m4, &m5);
    void *both[400];
    for (unsigned i = 0; i < 200; i++) {
        both[i] = m4.blocks[i];
        both[200 + i] = m5.blocks[i];
    }
    handover_job h3 = { .blocks = both, .n = 400 };
    run_thread(free_handed_over, &h3);
    assert_ptr_equal(h3.after, m4.heap);
    assert_int_equal(h3.remote_frees, 201);
    assert_int_equal(atomic_load(&m5.heap->pooled), 1);
    for (unsigned i = 0; i < 200; i++) hak_free(h2.other[i]);
    hk_knobs_reset();
}


int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_thread_exit_without_delay_returns_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exited_heap_goes_whole_to_next_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unclaimed_heap_purged_then_released, setup, teardown),
        cmocka_unit_test_setup_teardown(test_collect_releases_pooled_heaps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_released_heap_hollows_pinned_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_into_pooled_heap_takes_it_over, setup, teardown),
    };
    return cmocka_run_group_tests_name("heap_life", tests, NULL, NULL);
}
