/* The vDSO clock box: found on this kernel, and it reads what libc's
 * clock_gettime reads. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "os.h"
#include "vdso.h"

static uint64_t ns_of(const struct timespec *ts) { return (uint64_t)ts->tv_sec * 1000000000u + (uint64_t)ts->tv_nsec; }

static void test_found_and_agrees_with_libc(void **state)
{
    (void)state;
    hk_clock_fn fn = hk_vdso_clock_gettime();
    assert_non_null(fn);
    static const clockid_t clocks[] = { CLOCK_MONOTONIC, CLOCK_REALTIME, CLOCK_MONOTONIC_RAW };
    for (unsigned i = 0; i < sizeof clocks / sizeof clocks[0]; i++) {
        struct timespec before, mine, after;
        clock_gettime(clocks[i], &before);
        assert_int_equal(fn(clocks[i], &mine), 0);
        clock_gettime(clocks[i], &after);
        assert_true(ns_of(&before) <= ns_of(&mine));
        assert_true(ns_of(&mine) <= ns_of(&after));
    }
}

/* Clocks the vDSO does not serve itself go to the system call, and a bad
 * one is refused the way the system call refuses it. */
static void test_other_clocks_fall_back(void **state)
{
    (void)state;
    hk_clock_fn fn = hk_vdso_clock_gettime();
    assert_non_null(fn);
    struct timespec a, b;
    assert_int_equal(fn(CLOCK_THREAD_CPUTIME_ID, &a), 0);
    volatile uint64_t spin = 0;
    for (unsigned i = 0; i < 20000000; i++) spin += i;
    assert_int_equal(fn(CLOCK_THREAD_CPUTIME_ID, &b), 0);
    assert_true(ns_of(&b) > ns_of(&a));
    assert_int_equal(fn((clockid_t)12345, &a), -EINVAL);
}

/* The allocator's clocks read through it. */
static void test_allocator_clocks(void **state)
{
    (void)state;
    struct timespec before, after;
    clock_gettime(CLOCK_MONOTONIC, &before);
    uint64_t now = hk_now_ns();
    clock_gettime(CLOCK_MONOTONIC, &after);
    assert_true(ns_of(&before) <= now && now <= ns_of(&after));
    clock_gettime(CLOCK_MONOTONIC_COARSE, &before);
    uint64_t coarse = hk_coarse_ns();
    clock_gettime(CLOCK_MONOTONIC_COARSE, &after);
    assert_true(ns_of(&before) <= coarse && coarse <= ns_of(&after));
    uint64_t cpu = hk_thread_cpu_ns();
    volatile uint64_t spin = 0;
    for (unsigned i = 0; i < 20000000; i++) spin += i;
    assert_true(hk_thread_cpu_ns() > cpu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_found_and_agrees_with_libc),
        cmocka_unit_test(test_other_clocks_fall_back),
        cmocka_unit_test(test_allocator_clocks),
    };
    return cmocka_run_group_tests_name("vdso", tests, NULL, NULL);
}
