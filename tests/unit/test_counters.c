/* Process counters (counters.h): system calls counted where they happen,
 * slow-path time taken when refills and maintenance run, allocations exact
 * for medium and large blocks and estimated for small ones from the
 * sampling countdown (within one period per thread). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>

#include "counters.h"
#include "hakmem.h"
#include "knobs.h"
#include "options.h"
#include "unit_util.h"

#define MiB ((size_t)1 << 20)

static hk_counters read_counters(void)
{
    hk_counters c;
    hk_counters_read(&c);
    return c;
}

static void test_system_calls_counted(void **state)
{
    (void)state;
    hakmem_collect();
    hk_counters a = read_counters();
    void *big = hak_malloc(3 * MiB);               /* a mapping of its own */
    hk_counters b = read_counters();
    assert_true(b.syscalls[HK_SYS_MMAP] >= a.syscalls[HK_SYS_MMAP] + 1);
    hak_free(big);
    hakmem_collect();                               /* BigCache flushed: unmapped */
    hk_counters c = read_counters();
    assert_true(c.syscalls[HK_SYS_MUNMAP] >= b.syscalls[HK_SYS_MUNMAP] + 1);

    /* A freed span purged: one madvise. */
    void *keep = hak_malloc(64);
    void *span = hak_malloc(32 * 1024);
    hak_free(span);
    uint32_t zero[HK_KNOBS] = { 0 };
    hk_knobs_apply(1u << HK_KNOB_PURGE_DELAY_MS, zero);
    hk_counters d = read_counters();
    hakmem_collect();
    hk_counters e = read_counters();
    assert_true(e.syscalls[HK_SYS_MADVISE] > d.syscalls[HK_SYS_MADVISE]);
    assert_true(e.syscall_ns >= d.syscall_ns);
    hak_free(keep);
    hk_knobs_reset();
}

static void test_large_and_medium_exact(void **state)
{
    (void)state;
    hk_counters a = read_counters();
    void *big[3], *mid[5];
    for (int i = 0; i < 3; i++) big[i] = hak_malloc(2 * MiB + (size_t)i);
    for (int i = 0; i < 5; i++) mid[i] = hak_malloc(100 * 1024);
    hk_counters b = read_counters();
    assert_int_equal(b.large_allocs - a.large_allocs, 3);
    assert_int_equal(b.large_bytes - a.large_bytes, 3 * 2 * MiB + 3);
    assert_int_equal(b.medium_allocs - a.medium_allocs, 5);
    assert_int_equal(b.medium_bytes - a.medium_bytes, 5 * 100 * 1024);
    assert_true(b.large_ns > a.large_ns);
    for (int i = 0; i < 3; i++) hak_free(big[i]);
    for (int i = 0; i < 5; i++) hak_free(mid[i]);
}

/* 16 MiB of 64-byte blocks: bytes within one sampling period, count
 * within one period's worth of blocks; refills counted and timed. */
static void test_small_estimated(void **state)
{
    (void)state;
    enum { SIZE = 64, N = 16 * 1024 * 1024 / SIZE };
    void **p = malloc(N * sizeof *p);
    hk_counters a = read_counters();
    for (int i = 0; i < N; i++) p[i] = hak_malloc(SIZE);
    hk_counters b = read_counters();
    uint64_t period = hk_opt.sample_bytes;
    uint64_t bytes = b.small_bytes - a.small_bytes, allocs = b.small_allocs - a.small_allocs;
    print_message("16 MiB in %d blocks: estimated %llu bytes, %llu allocations; %llu refills, %llu ns\n", N,
                  (unsigned long long)bytes, (unsigned long long)allocs, (unsigned long long)(b.refills - a.refills),
                  (unsigned long long)(b.refill_ns - a.refill_ns));
    assert_true(bytes + period >= (uint64_t)N * SIZE && bytes <= (uint64_t)N * SIZE + period);
    assert_true(allocs + period / SIZE >= (uint64_t)N && allocs <= (uint64_t)N + period / SIZE);
    assert_true(b.refills - a.refills >= (uint64_t)N * SIZE / 4096);   /* one per carved stretch at least */
    assert_true(b.refill_ns > a.refill_ns);
    assert_int_equal(b.slow_ns, b.refill_ns + b.retire_ns + b.maintain_ns + b.large_ns);
    for (int i = 0; i < N; i++) hak_free(p[i]);
    free(p);
}

/* Blocks bigger than the sampling period: each sample stands for several
 * periods (bytes) but one allocation.  The period is read when a heap
 * starts, so a new thread runs with it. */
enum { BIG_SMALL = 60000, BIG_SMALL_N = 1000 };

static void *allocate_big_small(void *arg)
{
    void **p = arg;
    for (int i = 0; i < BIG_SMALL_N; i++) p[i] = hak_malloc(BIG_SMALL);
    for (int i = 0; i < BIG_SMALL_N; i++) hak_free(p[i]);
    return NULL;
}

static void test_small_estimated_beyond_one_period(void **state)
{
    (void)state;
    uint32_t saved = hk_opt.sample_bytes;
    hk_opt.sample_bytes = 4096;
    static void *p[BIG_SMALL_N];
    hk_counters a = read_counters();
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, allocate_big_small, p), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    hk_counters b = read_counters();
    hk_opt.sample_bytes = saved;
    uint64_t bytes = b.small_bytes - a.small_bytes, want = (uint64_t)BIG_SMALL_N * BIG_SMALL;
    print_message("%d x %d bytes at period 4096: %llu bytes, %llu allocations estimated\n", BIG_SMALL_N, BIG_SMALL,
                  (unsigned long long)bytes, (unsigned long long)(b.small_allocs - a.small_allocs));
    assert_true(bytes + 4096 >= want && bytes <= want + 4096);
    assert_int_equal(b.small_allocs - a.small_allocs, BIG_SMALL_N);
}

/* What a thread counted stays counted after it exits. */
static void *allocate_medium(void *arg)
{
    (void)arg;
    for (int i = 0; i < 10; i++) hak_free(hak_malloc(200 * 1024));
    return NULL;
}

static void test_exited_threads_still_count(void **state)
{
    (void)state;
    hk_counters a = read_counters();
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, allocate_medium, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    hk_counters b = read_counters();
    assert_int_equal(b.medium_allocs - a.medium_allocs, 10);
    assert_true(b.maintain_ns > a.maintain_ns);     /* its exit was timed too */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_system_calls_counted),
        cmocka_unit_test(test_large_and_medium_exact),
        cmocka_unit_test(test_small_estimated),
        cmocka_unit_test(test_small_estimated_beyond_one_period),
        cmocka_unit_test(test_exited_threads_still_count),
    };
    return cmocka_run_group_tests_name("counters", tests, NULL, NULL);
}
