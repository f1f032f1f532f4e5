/* Hostile clients: a process writes anything into its own report region,
 * identity included once it is registered.  The daemon must come through
 * intervals over regions full of random bytes (site counts past the array,
 * module indices past the table, paths without a terminator, counters that
 * run backwards, keys that change at an index) without crashing, reading
 * out of bounds (the suite runs this test under valgrind) or publishing an
 * unusable table. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "core.h"
#include "core_api.h"
#include "hakmem_shm.h"
#include "log.h"
#include "segment.h"
#include "core_fixture.h"

#define HOSTILE_REGIONS 12u
#define ROUNDS 40u                   /* HOSTILE_ROUNDS=N overrides (fewer under valgrind) */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* splitmix64: a fixed seed makes every failure reproducible. */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void fill_random(void *p, size_t n)
{
    uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)rnd();
}

/* Every byte is the owner's to spoil, identity included; seq is mostly
 * kept even (an odd one only makes the daemon skip the region). */
static void spoil(hkshm_region *s, int keep_keys)
{
    fill_random(s, sizeof *s);
    atomic_store(&s->seq, rnd() % 8 ? rnd() & ~1ull : rnd());
    uint64_t shape = rnd() % 4;
    s->n_sites = shape == 0 ? (uint32_t)rnd() : shape == 1 ? HKSHM_REGION_SITES + 1 + (uint32_t)(rnd() % 64)
                                                            : (uint32_t)(rnd() % (HKSHM_REGION_SITES + 1));
    s->n_modules = rnd() % 2 ? (uint32_t)rnd() : (uint32_t)(rnd() % (HKSHM_REGION_MODULES + 1));
    if (keep_keys) {
        /* Keys that repeat across rounds, so counters get differenced
         * against earlier garbage (and may run backwards). */
        for (uint32_t i = 0; i < HKSHM_REGION_SITES; i++) {
            s->sites[i].module_hash = 0x4000 + i % 7;
            s->sites[i].offset = 0x100 + 16 * (i % 29);
        }
    }
    atomic_store(&s->heartbeat_ns, rnd() % 3 ? hkd_now_ns() : rnd());
}

typedef struct walk {
    uint32_t sites, procs;
    int bad;
} walk;

static int check_site(const hkd_site_info *si, void *arg)
{
    walk *w = arg;
    w->sites++;
    /* A module path is at most what one region field holds, and printable. */
    if (memchr(si->module, 0, HKSHM_MODULE_PATH) == NULL)
        w->bad++;
    for (size_t i = 0; i < HKSHM_MODULE_PATH && si->module[i]; i++)
        w->bad += (unsigned char)si->module[i] < 0x20 || (unsigned char)si->module[i] == 0x7f;
    if (si->n_arms > HKD_MAX_ARMS)
        w->bad++;
    for (uint32_t a = 0; a < si->n_arms && a < HKD_MAX_ARMS; a++)
        if (memchr(si->arms[a].name, 0, sizeof si->arms[a].name) == NULL)
            w->bad++;
    return 0;
}

static int check_proc(const hkd_proc_info *p, void *arg)
{
    walk *w = arg;
    if (memchr(p->exe, 0, sizeof p->exe) == NULL)
        w->bad++;
    w->procs++;
    return 0;
}

static void table_is_usable(const hkshm_header *h)
{
    uint64_t gen = atomic_load(&h->generation);
    if (gen == 0)
        return;
    const hkshm_table *t = hkshm_table_at((void *)h, atomic_load(&h->active));
    assert_int_equal(atomic_load(&t->generation), gen);
    assert_true(t->n_sites <= HKSHM_SITE_CAP);
    assert_true(t->n_binaries <= HKSHM_BINARY_CAP);
    for (uint32_t i = 0; i < t->n_sites; i++) {
        const hkshm_site_policy *e = &t->sites[i];
        if (i)
            assert_true(hkshm_site_cmp(t->sites[i - 1].domain, t->sites[i - 1].module_hash, t->sites[i - 1].offset,
                                       e->domain, e->module_hash, e->offset) < 0);
        assert_true(e->large_threshold >= HKSHM_THRESHOLD_MIN && e->large_threshold <= HKSHM_THRESHOLD_MAX);
        assert_true(e->bigcache_slots <= HKSHM_SLOTS_LIMIT);
        assert_true(e->thp <= 1);
    }
}

static void daemon_survives_random_regions(void **state)
{
    (void)state;
    const hkshm_header *h = core_fixture_start(1, dir);
    assert_non_null(h);
    /* Half of them first registrations, half later ones (counted from
     * their first snapshot), in three domains. */
    hkshm_region *regions[HOSTILE_REGIONS];
    char why[256];
    for (uint32_t i = 0; i < HOSTILE_REGIONS; i++) {
        regions[i] = region_register(0, 1000 + i % 3, 1 + i % 2, "/usr/bin/hostile", why, sizeof why);
        assert_non_null(regions[i]);
    }
    rng_state = 0x5eed;
    const char *env = getenv("HOSTILE_ROUNDS");
    uint32_t rounds = env && atoi(env) > 0 ? (uint32_t)atoi(env) : ROUNDS;
    for (uint32_t r = 0; r < rounds; r++) {
        for (uint32_t i = 0; i < HOSTILE_REGIONS; i++)
            spoil(regions[i], r % 3 != 0);
        assert_int_equal(hkd_core_interval(), 0);
        table_is_usable(h);
        walk w = { 0 };
        assert_int_equal(hkd_for_each_site(check_site, &w), 0);
        assert_int_equal(hkd_for_each_proc(check_proc, &w), 0);
        assert_int_equal(w.bad, 0);
        hkd_status st;
        assert_int_equal(hkd_get_status(&st), 0);
        assert_int_equal(st.sites, w.sites);
        /* Garbage never ends a registration: only its process or connection does. */
        assert_int_equal(st.registrations, HOSTILE_REGIONS);
        assert_true(w.procs <= HOSTILE_REGIONS);
    }
    /* Saving what garbage taught it is still a valid state file. */
    assert_int_equal(hkd_core_save(), 0);
    core_fixture_stop(h, regions, HOSTILE_REGIONS);
}

int main(void)
{
    if (core_fixture_begin("hostile") != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(daemon_survives_random_regions),
    };
    return core_fixture_end(cmocka_run_group_tests(tests, NULL, NULL));
}
