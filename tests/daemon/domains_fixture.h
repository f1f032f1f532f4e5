/* For the tests of the core with many users (test_domains.c,
 * test_domain_caps.c): a fake wall clock, simulated processes registered
 * in-process as their users (report regions), their flushes, and reading
 * back what the core holds and publishes.  Include after cmocka.h. */
#ifndef HKD_TEST_DOMAINS_FIXTURE_H
#define HKD_TEST_DOMAINS_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "collector.h"
#include "core.h"
#include "core_api.h"
#include "core_fixture.h"
#include "hakmem_shm.h"
#include "persist.h"
#include "registry.h"
#include "site_key.h"

#define ROOT_HASH 0x100000ull
#define DAEMON_UID 999u
#define FLOODER 4242u
#define MAX_PROCS 320u

static uint64_t fake_ms;

static inline uint64_t fake_clock(void)
{
    return fake_ms;
}

static inline hkd_core_cfg base_cfg(void)
{
    hkd_core_cfg cfg = { .shm_name = shm, .state_dir = dir, .interval_ms = 100, .learning = 1,
                         .learn = hkd_learn_default_cfg, .daemon_uid = DAEMON_UID,
                         .clock_ms = fake_clock };
    cfg.learn.settle_intervals = 0;
    return cfg;
}

static const hkshm_header *mapped;
static hkshm_region *procs[MAX_PROCS];
static uint32_t n_procs;

/* The core with cfg, its segment mapped (the test fails when either fails). */
static inline const hkshm_header *start(const hkd_core_cfg *cfg)
{
    fake_ms = 1700000000000ull;
    shm_unlink(shm);
    assert_int_equal(hkd_core_init(cfg), 0);
    mapped = core_fixture_map();
    assert_non_null(mapped);
    return mapped;
}

/* A new process of user uid (registration 1: counted from zero; 2: a
 * process that registered before, counted from what it shows first).  It
 * joins at the next interval. */
static inline hkshm_region *spawn(uid_t uid, uint32_t registration)
{
    assert_true(n_procs < MAX_PROCS);
    char exe[32], why[256];
    snprintf(exe, sizeof exe, "/usr/bin/proc%u", n_procs);
    hkshm_region *r = region_register(0, uid, registration, exe, why, sizeof why);
    if (!r)
        fail_msg("process %u refused: %s", n_procs, why);
    return procs[n_procs++] = r;
}

/* The process exits: its region is collected once more at the next
 * interval, then never again. */
static inline void end(const hkshm_region *r)
{
    uint32_t k = 0;
    while (k < n_procs && procs[k] != r)
        k++;
    assert_true(k < n_procs);
    char exe[32];
    snprintf(exe, sizeof exe, "/usr/bin/proc%u", k);
    for (uint32_t i = 0; i < hkd_registry_span(); i++) {
        const hkd_reg *g = hkd_registry_at(i);
        if (g && !g->ended && strcmp(g->exe, exe) == 0) {
            hkd_registry_end(i);
            return;
        }
    }
    fail_msg("process %u is not registered", k);
}

static inline void stop(const hkshm_header *h)
{
    core_fixture_stop(h, procs, n_procs);
    n_procs = 0;
    mapped = NULL;
    shm_unlink(shm);
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, HKD_STATE_FILE);
    unlink(path);
}

/* After each test, also one that failed half-way: the next starts afresh. */
static inline int teardown(void **state)
{
    (void)state;
    if (mapped)
        stop(mapped);
    hkd_core_shutdown();
    return 0;
}

static inline void interval(void)
{
    fake_ms += 100;
    assert_int_equal(hkd_core_interval(), 0);
}

/* A process's flush: n sites of one module at offsets off0, off0 + 16,
 * ..., each with `allocs` allocations so far of 2^size_log2 bytes. */
static inline void flush(hkshm_region *s, uint64_t hash, const char *path, uint64_t off0, uint32_t n, uint64_t allocs,
                  uint32_t size_log2)
{
    region_write_begin(s);
    s->n_modules = 1;
    s->modules[0].hash = hash;
    snprintf(s->modules[0].path, sizeof s->modules[0].path, "%s", path);
    for (uint32_t i = 0; i < n; i++) {
        hkshm_site *d = &s->sites[i];
        memset(d, 0, sizeof *d);
        d->module_hash = hash;
        d->offset = off0 + 16 * i;
        d->allocs = d->frees = allocs;
        d->bytes = allocs << size_log2;
        d->slow_ns = allocs * (100 + (i * 37) % 500);
        d->size_hist[size_log2] = (uint32_t)allocs;
    }
    s->n_sites = n;
    region_write_end(s);
}

/* ---- reading back ---- */

typedef struct sites {
    hkd_site_info *v;
    size_t n, cap;
} sites;

static inline int grab_site(const hkd_site_info *si, void *arg)
{
    sites *s = arg;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        assert_non_null(s->v);
    }
    s->v[s->n++] = *si;
    return 0;
}

static inline sites all_sites(void)
{
    sites s = { 0 };
    assert_int_equal(hkd_for_each_site(grab_site, &s), 0);
    return s;
}

static inline const hkd_site_info *find(const sites *s, uint32_t domain, uint64_t hash, uint64_t off)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].key.domain == domain && s->v[i].key.module_hash == hash && s->v[i].key.offset == off)
            return &s->v[i];
    return NULL;
}

static inline uint64_t total_pulls(const hkd_site_info *si)
{
    uint64_t n = 0;
    for (uint32_t a = 0; a < si->n_arms; a++)
        n += si->arms[a].pulls;
    return n;
}

static inline int grab_domain(const hkd_domain_info *d, void *arg)
{
    hkd_domain_info *want = arg;
    if (d->domain == want->domain)
        *want = *d;
    return 0;
}

static inline hkd_domain_info domain(uint32_t uid)
{
    hkd_domain_info d = { .domain = uid };
    assert_int_equal(hkd_for_each_domain(grab_domain, &d), 0);
    return d;
}

static inline const hkshm_table *table(const hkshm_header *h)
{
    return hkshm_table_at((void *)h, atomic_load(&h->active));
}

/* User domain's entry for (hash, off), as a client looks it up. */
static inline const hkshm_site_policy *entry(const hkshm_table *t, uint32_t domain, uint64_t hash, uint64_t off)
{
    uint32_t lo = 0, hi = t->n_sites;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const hkshm_site_policy *e = &t->sites[mid];
        int c = hkshm_site_cmp(e->domain, e->module_hash, e->offset, domain, hash, off);
        if (c == 0)
            return e;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static inline void table_is_sorted(const hkshm_table *t)
{
    for (uint32_t i = 1; i < t->n_sites; i++) {
        const hkshm_site_policy *a = &t->sites[i - 1], *b = &t->sites[i];
        assert_true(hkshm_site_cmp(a->domain, a->module_hash, a->offset, b->domain, b->module_hash, b->offset) < 0);
    }
}

#endif
