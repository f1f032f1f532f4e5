/* The interval on two threads (collect by odd and even registrations, learn by
 * halves of the records): with enough sites that the worker runs, every
 * site's merged totals are exactly what its processes reported, whether a
 * key is shared by processes on both threads or owned by one.  Processes
 * run as three users: a key is (user, binary, site), so a binary's site
 * sums only its own user's processes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core.h"
#include "core_api.h"
#include "hakmem_shm.h"
#include "segment.h"
#include "worker.h"
#include "core_fixture.h"

#define PROCS 96u
#define SITES 200u                   /* 19,200 records: past the two-thread threshold */
#define ROUNDS 12u
#define USERS 3u                     /* process p runs as uid 1000 + p % USERS */

static uint64_t allocs_at(uint32_t proc, uint32_t site, uint64_t round)
{
    return (round + 1) * (1 + (proc * 7 + site * 13) % 50);
}

static hkshm_region *regions[PROCS];

static void flush(hkshm_region *s, uint32_t proc, uint32_t binaries, uint64_t round)
{
    region_write_begin(s);
    s->n_modules = 1;
    s->modules[0].hash = 0x7000 + proc % binaries;
    snprintf(s->modules[0].path, sizeof s->modules[0].path, "/usr/bin/split%u", proc % binaries);
    for (uint32_t i = 0; i < SITES; i++) {
        hkshm_site *d = &s->sites[i];
        uint64_t a = allocs_at(proc, i, round);
        d->module_hash = 0x7000 + proc % binaries;
        d->offset = 0x40 + 16 * i;
        d->allocs = d->frees = a;
        d->bytes = a * 4096;
        d->slow_ns = a * 300;
        d->size_hist[12] = (uint32_t)a;
    }
    s->n_sites = SITES;
    region_write_end(s);
}

typedef struct expect {
    uint32_t binaries, sites_seen, wrong, procs_wrong;
    uint64_t round;
} expect;

static int check_site(const hkd_site_info *si, void *arg)
{
    expect *e = arg;
    e->sites_seen++;
    uint32_t bin = (uint32_t)(si->key.module_hash - 0x7000), site = (uint32_t)((si->key.offset - 0x40) / 16);
    uint64_t want = 0;
    uint32_t procs = 0;
    for (uint32_t p = bin; p < PROCS; p += e->binaries) {
        if (1000 + p % USERS != si->key.domain)
            continue;
        want += allocs_at(p, site, e->round);
        procs++;
    }
    e->wrong += procs == 0;
    e->wrong += si->allocs != want || si->bytes != want * 4096 || si->slow_ns != want * 300;
    e->procs_wrong += si->processes != procs;
    return 0;
}

/* The (binary, user) pairs the processes make. */
static uint32_t pairs(uint32_t binaries)
{
    uint32_t n = 0;
    for (uint32_t p = 0; p < PROCS; p++) {
        uint32_t q = 0;
        while (q < p && (q % binaries != p % binaries || q % USERS != p % USERS))
            q++;
        n += q == p;
    }
    return n;
}

/* Runs ROUNDS intervals; returns the jobs the second thread ran meanwhile. */
static unsigned long run(uint32_t binaries)
{
    unsigned long jobs0 = hkd_worker_jobs();
    const hkshm_header *h = core_fixture_start(1, NULL);
    assert_non_null(h);
    core_fixture_clients(regions, PROCS, USERS);
    for (uint64_t r = 0; r < ROUNDS; r++) {
        for (uint32_t p = 0; p < PROCS; p++)
            flush(regions[p], p, binaries, r);
        assert_int_equal(hkd_core_interval(), 0);
        expect e = { .binaries = binaries, .round = r };
        assert_int_equal(hkd_for_each_site(check_site, &e), 0);
        assert_int_equal(e.sites_seen, pairs(binaries) * SITES);
        assert_int_equal(e.wrong, 0);
        assert_int_equal(e.procs_wrong, 0);
    }
    core_fixture_stop(h, regions, PROCS);
    shm_unlink(shm);
    return hkd_worker_jobs() - jobs0;
}

/* 96 processes of 4 binaries and 3 users: every key has processes in odd
 * and even entries.  19,200 records: from the second interval on (when
 * the first has counted them) half of the collection runs on the second
 * thread; 2,400 keys are too few to split the learn pass. */
static void shared_keys_add_up(void **state)
{
    (void)state;
    assert_int_equal(run(4), ROUNDS - 1);
}

/* Every process its own binary: 19,200 keys, so every interval's learn
 * pass is split too. */
static void distinct_keys_add_up(void **state)
{
    (void)state;
    assert_int_equal(run(PROCS), (ROUNDS - 1) + ROUNDS);
}

static int site_allocs(const hkd_site_info *si, void *arg)
{
    uint64_t *out = arg;
    out[0]++;
    out[1] = si->allocs;
    out[2] = si->frees;
    out[3] = si->bytes;
    return 0;
}

/* Per-interval counts are 32 bits: each collecting thread's sum over its
 * processes stops at 2^32 - 1 instead of wrapping, a counter that runs
 * backwards (or leaps by 2^31 or more) counts nothing, and bytes are whole
 * 64-bit differences.  The totals read back are lifetime sums. */
static void interval_counts_saturate_and_never_run_backwards(void **state)
{
    (void)state;
    const hkshm_header *h = core_fixture_start(0, NULL);
    assert_non_null(h);
    enum { N = 6 };                  /* three processes on each collecting thread */
    core_fixture_clients(regions, N, 1);
    const uint64_t big = (1ull << 31) - 1, bytes = 3ull << 40;
    const uint64_t frees_at[3] = { 1000, 1500, 1 };   /* backwards in the last round */
    uint64_t allocs[N] = { 0 };
    /* Lifetime totals after each round (a first registration's first
     * interval counts from zero). */
    const uint64_t want_allocs[3] = { 0, 2ull * UINT32_MAX, 2ull * UINT32_MAX + 5 * 5 };
    const uint64_t want_frees[3] = { N * 1000, N * 1500, N * 1500 };
    const uint64_t want_bytes[3] = { 0, N * bytes, 2 * N * bytes };
    for (uint32_t r = 0; r < 3; r++) {
        for (uint32_t p = 0; p < N; p++) {
            hkshm_region *s = regions[p];
            region_write_begin(s);
            s->n_sites = 1;
            s->sites[0].module_hash = 0x5a7;
            s->sites[0].offset = 0x10;
            s->sites[0].allocs = allocs[p];
            s->sites[0].frees = frees_at[r];
            s->sites[0].bytes = bytes * r;
            region_write_end(s);
        }
        assert_int_equal(hkd_core_interval(), 0);
        uint64_t got[4] = { 0 };
        assert_int_equal(hkd_for_each_site(site_allocs, got), 0);
        assert_int_equal(got[0], 1);
        assert_int_equal(got[1], want_allocs[r]);
        assert_int_equal(got[2], want_frees[r]);
        assert_int_equal(got[3], want_bytes[r]);
        /* Round 1: 2^31 - 1 each, 3 x that per thread.  Round 2: process 0
         * leaps by 2^31, the others move by 5. */
        for (uint32_t p = 0; p < N; p++)
            allocs[p] += r == 0 ? big : p == 0 ? big + 1 : 5;
    }
    core_fixture_stop(h, regions, N);
    shm_unlink(shm);
}

int main(void)
{
    if (core_fixture_begin("split") != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shared_keys_add_up),
        cmocka_unit_test(distinct_keys_add_up),
        cmocka_unit_test(interval_counts_saturate_and_never_run_backwards),
    };
    return core_fixture_end(cmocka_run_group_tests(tests, NULL, NULL));
}
