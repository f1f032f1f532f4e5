/* Options box: every HAKMEM_* knob parsed from the environment, valid values
 * taken (with k/M suffixes and any C base), out-of-range or malformed ones
 * ignored so the previous value stands. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "options.h"

static const char *const knobs[] = {
    "HAKMEM_STATS", "HAKMEM_VERBOSE", "HAKMEM_BIGCACHE", "HAKMEM_THP", "HAKMEM_BIGCACHE_SLOTS",
    "HAKMEM_LARGE_THRESHOLD", "HAKMEM_SAMPLE_BYTES", "HAKMEM_PURGE_DELAY_MS", "HAKMEM_MODE",
    "HAKMEM_SHM",
};

static hk_options saved, at_start;

static int group_setup(void **state)
{
    (void)state;
    at_start = hk_opt;          /* what the constructor read from the suite's environment */
    return 0;
}

static int setup(void **state)
{
    (void)state;
    saved = hk_opt;
    for (unsigned i = 0; i < sizeof knobs / sizeof knobs[0]; i++) unsetenv(knobs[i]);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (unsigned i = 0; i < sizeof knobs / sizeof knobs[0]; i++) unsetenv(knobs[i]);
    hk_opt = saved;
    return 0;
}

/* Loads with exactly one variable set. */
static void load_with(const char *name, const char *value)
{
    setenv(name, value, 1);
    hk_options_load();
    unsetenv(name);
}

/* The suite runs with none of the numeric knobs set: built-in defaults. */
static void test_defaults(void **state)
{
    (void)state;
    assert_int_equal(at_start.stats, 0);
    assert_int_equal(at_start.verbose, 0);
    assert_int_equal(at_start.bigcache, 1);
    assert_int_equal(at_start.thp, 1);
    assert_int_equal(at_start.thp_default, 0);
    assert_int_equal(at_start.large_threshold, 1 << 20);
    assert_int_equal(at_start.bigcache_slots, 4);
    assert_int_equal(at_start.sample_bytes, 256 * 1024);
    assert_int_equal(at_start.purge_delay_ms, 20);
    /* With nothing set, loading changes nothing. */
    hk_options before = hk_opt;
    hk_options_load();
    assert_memory_equal(&before, &hk_opt, sizeof before);
}

static void test_valid_values(void **state)
{
    (void)state;
    load_with("HAKMEM_STATS", "1");
    assert_int_equal(hk_opt.stats, 1);
    load_with("HAKMEM_VERBOSE", "3");
    assert_int_equal(hk_opt.verbose, 3);
    load_with("HAKMEM_BIGCACHE", "0");
    assert_int_equal(hk_opt.bigcache, 0);
    load_with("HAKMEM_BIGCACHE_SLOTS", "2");
    assert_int_equal(hk_opt.bigcache_slots, 2);
    load_with("HAKMEM_BIGCACHE_SLOTS", "0");
    assert_int_equal(hk_opt.bigcache_slots, 0);
    load_with("HAKMEM_LARGE_THRESHOLD", "524288");
    assert_int_equal(hk_opt.large_threshold, 524288);
    load_with("HAKMEM_LARGE_THRESHOLD", "256k");
    assert_int_equal(hk_opt.large_threshold, 256 * 1024);
    load_with("HAKMEM_LARGE_THRESHOLD", "1M");
    assert_int_equal(hk_opt.large_threshold, 1 << 20);
    load_with("HAKMEM_LARGE_THRESHOLD", "0x10000");
    assert_int_equal(hk_opt.large_threshold, 65536);
    load_with("HAKMEM_SAMPLE_BYTES", "8192");
    assert_int_equal(hk_opt.sample_bytes, 8192);
    load_with("HAKMEM_SAMPLE_BYTES", "1024M");
    assert_int_equal(hk_opt.sample_bytes, 1u << 30);
    load_with("HAKMEM_PURGE_DELAY_MS", "0");
    assert_int_equal(hk_opt.purge_delay_ms, 0);
    load_with("HAKMEM_PURGE_DELAY_MS", "60000");
    assert_int_equal(hk_opt.purge_delay_ms, 60000);
    load_with("HAKMEM_MODE", "baseline");
    assert_int_equal(hk_opt.baseline, 1);
    load_with("HAKMEM_MODE", "learning");
    assert_int_equal(hk_opt.baseline, 0);
    load_with("HAKMEM_SHM", "/hakmem-unit-test");
    assert_string_equal(hk_opt.shm_name, "/hakmem-unit-test");
}

/* HAKMEM_THP: 0 forbids huge pages, 1 turns them on for every site, unset
 * leaves them allowed but off until learned. */
static void test_thp_knob(void **state)
{
    (void)state;
    load_with("HAKMEM_THP", "0");
    assert_int_equal(hk_opt.thp, 0);
    assert_int_equal(hk_opt.thp_default, 0);
    load_with("HAKMEM_THP", "1");
    assert_int_equal(hk_opt.thp, 1);
    assert_int_equal(hk_opt.thp_default, 1);
}

typedef struct bad_case { const char *name, *value; } bad_case;

static void test_out_of_range_ignored(void **state)
{
    (void)state;
    static const bad_case bad[] = {
        { "HAKMEM_STATS", "2" }, { "HAKMEM_STATS", "-1" }, { "HAKMEM_STATS", "yes" },
        { "HAKMEM_VERBOSE", "4" }, { "HAKMEM_VERBOSE", "-1" },
        { "HAKMEM_BIGCACHE", "2" }, { "HAKMEM_BIGCACHE", "1x" },
        { "HAKMEM_BIGCACHE_SLOTS", "5" }, { "HAKMEM_BIGCACHE_SLOTS", "64" },
        { "HAKMEM_LARGE_THRESHOLD", "65535" }, { "HAKMEM_LARGE_THRESHOLD", "1048577" },
        { "HAKMEM_LARGE_THRESHOLD", "2M" }, { "HAKMEM_LARGE_THRESHOLD", "1k" },
        { "HAKMEM_LARGE_THRESHOLD", "1G" }, { "HAKMEM_LARGE_THRESHOLD", "512kk" },
        { "HAKMEM_LARGE_THRESHOLD", "abc" }, { "HAKMEM_LARGE_THRESHOLD", "-65536" },
        { "HAKMEM_SAMPLE_BYTES", "4095" }, { "HAKMEM_SAMPLE_BYTES", "2048M" },
        { "HAKMEM_SAMPLE_BYTES", "99999999999999999999999" },
        { "HAKMEM_PURGE_DELAY_MS", "60001" }, { "HAKMEM_PURGE_DELAY_MS", "-1" },
        { "HAKMEM_PURGE_DELAY_MS", "12 " }, { "HAKMEM_PURGE_DELAY_MS", "" },
    };
    /* Distinctive values, so "ignored" cannot pass by coincidence. */
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hk_opt.stats = 1; hk_opt.verbose = 2; hk_opt.bigcache = 0; hk_opt.bigcache_slots = 3;
        hk_opt.large_threshold = 300000; hk_opt.sample_bytes = 12345; hk_opt.purge_delay_ms = 777;
        hk_options before = hk_opt;
        load_with(bad[i].name, bad[i].value);
        if (memcmp(&before, &hk_opt, sizeof before) != 0)
            fail_msg("%s=\"%s\" changed the options", bad[i].name, bad[i].value);
    }
}

/* A value set to something out of range must not change THP either way. */
static void test_thp_out_of_range_ignored(void **state)
{
    (void)state;
    hk_opt.thp = 1;
    hk_opt.thp_default = 0;
    load_with("HAKMEM_THP", "7");
    assert_int_equal(hk_opt.thp, 1);
    assert_int_equal(hk_opt.thp_default, 0);
    hk_opt.thp = 0;
    load_with("HAKMEM_THP", "on");
    assert_int_equal(hk_opt.thp, 0);
    assert_int_equal(hk_opt.thp_default, 0);
}

/* A suffix must not wrap a huge number back into range: 2^44 + 1 MiB is
 * 2^64 + 1 MiB bytes, far above the 1 GiB limit. */
static void test_suffix_overflow_ignored(void **state)
{
    (void)state;
    hk_opt.sample_bytes = 12345;
    load_with("HAKMEM_SAMPLE_BYTES", "17592186044417M");
    assert_int_equal(hk_opt.sample_bytes, 12345);
    hk_opt.large_threshold = 300000;
    load_with("HAKMEM_LARGE_THRESHOLD", "18014398509481985k");    /* 2^54 + 1 KiB */
    assert_int_equal(hk_opt.large_threshold, 300000);
}

static void test_shm_name(void **state)
{
    (void)state;
    strcpy(hk_opt.shm_name, "/before");
    char longname[80];
    memset(longname, 'x', sizeof longname - 1);
    longname[0] = '/';
    longname[sizeof longname - 1] = '\0';
    load_with("HAKMEM_SHM", longname);              /* does not fit: ignored */
    assert_string_equal(hk_opt.shm_name, "/before");
    load_with("HAKMEM_SHM", "");
    assert_string_equal(hk_opt.shm_name, "/before");
    char fits[64];
    memset(fits, 'y', sizeof fits - 1);
    fits[0] = '/';
    fits[sizeof fits - 1] = '\0';
    load_with("HAKMEM_SHM", fits);
    assert_string_equal(hk_opt.shm_name, fits);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_valid_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_thp_knob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_range_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_thp_out_of_range_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_suffix_overflow_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shm_name, setup, teardown),
    };
    return cmocka_run_group_tests_name("options", tests, group_setup, NULL);
}
