/* The core end to end in one process: a simulated client region, intervals,
 * the published table against the merged view (entries are kept current
 * in place between sorts), and saving off the learner thread (a queued
 * save is on disk after a synchronous save or shutdown). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "core.h"
#include "core_api.h"
#include "hakmem_shm.h"
#include "log.h"
#include "persist.h"
#include "segment.h"
#include "core_fixture.h"

#define SITES 200u


static void flush(hkshm_region *s, uint32_t n, uint64_t round)
{
    region_write_begin(s);
    s->n_modules = 1;
    s->modules[0].hash = 0xabc;
    snprintf(s->modules[0].path, sizeof s->modules[0].path, "/usr/bin/core-test");
    for (uint32_t i = 0; i < n; i++) {
        hkshm_site *d = &s->sites[i];
        /* Sites differ in volume and slow-path cost so arms move apart. */
        uint64_t a = (round + 1) * (70 + i % 13);
        d->module_hash = 0xabc;
        d->offset = 0x9000 - 16 * i;  /* reverse order: the table must sort */
        d->allocs = a;
        d->frees = a;
        d->bytes = a * (1024u << (i % 12));
        d->slow_ns = a * (100 + (i * 31 + round * 17) % 900);
        d->size_hist[10 + i % 12] = (uint32_t)a;
    }
    s->n_sites = n;
    s->proc[HKSHM_PROC_PAGE_FAULTS] = round * 10;
    region_write_end(s);
}

typedef struct seen {
    uint32_t n;
    hkd_site_key key[SITES + 8];
    hkd_thresholds th[SITES + 8];
} seen;

static int collect_site(const hkd_site_info *si, void *arg)
{
    seen *s = arg;
    if (s->n < SITES + 8) {
        s->key[s->n] = si->key;
        s->th[s->n] = si->thresholds;
    }
    s->n++;
    return 0;
}

static int add_allocs(const hkd_site_info *si, void *arg)
{
    *(uint64_t *)arg += si->allocs;
    return 0;
}

static void table_matches_view(const hkshm_header *h)
{
    const hkshm_table *t = hkshm_table_at((void *)h, atomic_load(&h->active));
    assert_int_equal(atomic_load(&t->generation), atomic_load(&h->generation));
    assert_int_equal(t->n_sites, SITES);
    assert_int_equal(t->n_binaries, 0);
    seen *v = calloc(1, sizeof *v);
    assert_non_null(v);
    assert_int_equal(hkd_for_each_site(collect_site, v), 0);
    assert_int_equal(v->n, SITES);
    for (uint32_t i = 0; i < t->n_sites; i++) {
        const hkshm_site_policy *e = &t->sites[i];
        if (i)
            assert_true(hkshm_site_cmp(t->sites[i - 1].domain, t->sites[i - 1].module_hash, t->sites[i - 1].offset,
                                       e->domain, e->module_hash, e->offset) < 0);
        uint32_t k = 0;
        while (k < v->n && hkshm_site_cmp(v->key[k].domain, v->key[k].module_hash, v->key[k].offset, e->domain,
                                          e->module_hash, e->offset) != 0)
            k++;
        assert_true(k < v->n);
        assert_int_equal(e->large_threshold, v->th[k].large_threshold);
        assert_int_equal(e->bigcache_slots, v->th[k].bigcache_slots);
        assert_int_equal(e->thp, v->th[k].thp);
    }
    free(v);
}

static void core_publishes_and_saves_off_thread(void **state)
{
    (void)state;
    hkd_core_cfg cfg = { .shm_name = shm, .state_dir = dir, .interval_ms = 100, .learning = 1,
                         .learn = hkd_learn_default_cfg };
    cfg.learn.settle_intervals = 0;
    assert_int_equal(hkd_core_init(&cfg), 0);
    const hkshm_header *h = core_fixture_map();
    assert_non_null(h);
    hkshm_region *s;
    core_fixture_clients(&s, 1, 1);

    uint64_t changes = 0, last_gen = 0;
    for (uint64_t r = 0; r < 40; r++) {
        flush(s, SITES, r);
        assert_int_equal(hkd_core_interval(), 0);
        if (r == 0) {
            /* A process's first registration has no history: the first
             * interval counts what the client flushed before it. */
            uint64_t got = 0, want = 0;
            for (uint32_t i = 0; i < SITES; i++)
                want += 70 + i % 13;
            assert_int_equal(hkd_for_each_site(add_allocs, &got), 0);
            assert_int_equal(got, want);
        }
        uint64_t gen = atomic_load(&h->generation);
        changes += gen != last_gen;
        last_gen = gen;
        if (r >= 2)
            table_matches_view(h);
    }
    /* The learner explored, so entries changed after the first sort. */
    assert_true(changes > 3);

    hkd_status st;
    assert_int_equal(hkd_get_status(&st), 0);
    assert_int_equal(st.sites, SITES);
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, HKD_STATE_FILE);

    /* A queued save is written by the saver; a synchronous one waits. */
    assert_int_equal(hkd_core_save_async(), 0);
    assert_int_equal(hkd_core_save(), 0);
    hkd_policy pol = core_fixture_read_state();
    assert_int_equal(pol.n, SITES);
    assert_int_equal(pol.generation, st.generation);
    uint64_t pulls = 0;
    for (size_t i = 0; i < pol.n; i++)
        for (int a = 0; a < HKD_N_ARMS; a++)
            pulls += pol.sites[i].pulls[a];
    assert_true(pulls > SITES);
    hkd_policy_free(&pol);

    /* Shutdown finishes a queued save. */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(hkd_core_save_async(), 0);
    hkd_core_shutdown();
    pol = core_fixture_read_state();
    assert_int_equal(pol.n, SITES);
    hkd_policy_free(&pol);
    munmap(s, HKSHM_REGION_SIZE);
    munmap((void *)h, HKSHM_SEGMENT_SIZE);
}

int main(void)
{
    if (core_fixture_begin("core") != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(core_publishes_and_saves_off_thread),
    };
    return core_fixture_end(cmocka_run_group_tests(tests, NULL, NULL));
}
