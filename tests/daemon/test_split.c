/* The interval on two threads (collect by odd and even slots, learn by
 * halves of the records): with enough sites that the worker runs, every
 * site's merged totals are exactly what its processes reported, whether a
 * key is shared by processes on both threads or owned by one. */
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
#include "core_fixture.h"

#define PROCS 96u
#define SITES 200u                   /* 19,200 records: past the two-thread threshold */
#define ROUNDS 12u

static uint64_t allocs_at(uint32_t proc, uint32_t site, uint64_t round)
{
    return (round + 1) * (1 + (proc * 7 + site * 13) % 50);
}

static void flush(hkshm_slot *s, uint32_t proc, uint32_t binaries, uint64_t round)
{
    uint64_t seq = atomic_load(&s->seq);
    atomic_store(&s->seq, seq | 1);
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
    s->flushes++;
    atomic_store(&s->seq, (seq | 1) + 1);
    atomic_store(&s->heartbeat_ns, hkd_now_ns());
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
        want += allocs_at(p, site, e->round);
        procs++;
    }
    e->wrong += si->allocs != want || si->bytes != want * 4096 || si->slow_ns != want * 300;
    e->procs_wrong += si->processes != procs;
    return 0;
}

static void run(uint32_t binaries)
{
    hkd_core_cfg cfg = { .shm_name = shm, .state_dir = NULL, .interval_ms = 100, .learning = 1,
                         .learn = hkd_learn_default_cfg };
    assert_int_equal(hkd_core_init(&cfg), 0);
    hkshm_header *h = core_fixture_map();
    assert_non_null(h);
    uint64_t start = hkd_proc_start_time(getpid());
    for (uint32_t p = 0; p < PROCS; p++) {
        hkshm_slot *s = hkshm_slot_at(h, p);
        atomic_store(&s->pid, (uint32_t)getpid());
        s->start_time = start;
        atomic_store(&s->state, HKSHM_SLOT_LIVE);
    }
    for (uint64_t r = 0; r < ROUNDS; r++) {
        for (uint32_t p = 0; p < PROCS; p++)
            flush(hkshm_slot_at(h, p), p, binaries, r);
        assert_int_equal(hkd_core_interval(), 0);
        expect e = { .binaries = binaries, .round = r };
        assert_int_equal(hkd_for_each_site(check_site, &e), 0);
        assert_int_equal(e.sites_seen, binaries * SITES);
        assert_int_equal(e.wrong, 0);
        assert_int_equal(e.procs_wrong, 0);
    }
    hkd_core_shutdown();
    for (uint32_t p = 0; p < PROCS; p++)
        atomic_store(&hkshm_slot_at(h, p)->pid, 0);
    munmap(h, HKSHM_SEGMENT_SIZE);
    shm_unlink(shm);
}

/* 96 processes of 4 binaries: every key has processes in odd and even slots. */
static void shared_keys_add_up(void **state)
{
    (void)state;
    run(4);
}

/* Every process its own binary: 19,200 keys, the learn pass split too. */
static void distinct_keys_add_up(void **state)
{
    (void)state;
    run(PROCS);
}

int main(void)
{
    if (core_fixture_begin("split") != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shared_keys_add_up),
        cmocka_unit_test(distinct_keys_add_up),
    };
    return core_fixture_end(cmocka_run_group_tests(tests, NULL, NULL));
}
