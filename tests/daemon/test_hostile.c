/* A hostile segment: any process that can open the segment can write
 * anything into its slot.  The daemon must come through intervals over
 * slots full of random bytes (site counts past the array, module indices
 * past the table, paths without a terminator, counters that run backwards,
 * states that do not exist) without crashing, reading out of bounds (the
 * suite runs this test under valgrind) or publishing an unusable table. */
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

#define HOSTILE_SLOTS 12u
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

/* Everything after the ownership words is the writer's to spoil; seq is
 * kept even (an odd one only makes the daemon skip the slot). */
static void spoil(hkshm_slot *s, uint32_t pid, uint64_t start, int keep_keys)
{
    static const uint32_t states[] = { HKSHM_SLOT_LIVE, HKSHM_SLOT_LIVE, HKSHM_SLOT_EXITED,
                                       HKSHM_SLOT_CLAIMING, 7, 0xFFFFFFFFu };
    size_t from = offsetof(hkshm_slot, start_time);
    fill_random((char *)s + from, sizeof *s - from);
    s->start_time = rnd() % 4 ? start : rnd();
    atomic_store(&s->seq, rnd() & ~1ull);
    uint64_t shape = rnd() % 4;
    s->n_sites = shape == 0 ? (uint32_t)rnd() : shape == 1 ? HKSHM_SLOT_SITES + 1 + (uint32_t)(rnd() % 64)
                                                            : (uint32_t)(rnd() % (HKSHM_SLOT_SITES + 1));
    s->n_modules = rnd() % 2 ? (uint32_t)rnd() : (uint32_t)(rnd() % (HKSHM_SLOT_MODULES + 1));
    if (keep_keys) {
        /* Keys that repeat across rounds, so counters get differenced
         * against earlier garbage (and may run backwards). */
        for (uint32_t i = 0; i < HKSHM_SLOT_SITES; i++) {
            s->sites[i].module_hash = 0x4000 + i % 7;
            s->sites[i].offset = 0x100 + 16 * (i % 29);
        }
    }
    atomic_store(&s->heartbeat_ns, rnd() % 3 ? hkd_now_ns() : rnd());
    atomic_store(&s->state, states[rnd() % (sizeof states / sizeof states[0])]);
    atomic_store(&s->pid, pid);
}

typedef struct walk {
    uint32_t sites;
    int bad;
} walk;

static int check_site(const hkd_site_info *si, void *arg)
{
    walk *w = arg;
    w->sites++;
    /* A module path is at most what one slot field holds. */
    if (memchr(si->module, 0, HKSHM_MODULE_PATH) == NULL)
        w->bad++;
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
    return 0;
}

static void table_is_usable(hkshm_header *h)
{
    uint64_t gen = atomic_load(&h->generation);
    if (gen == 0)
        return;
    hkshm_table *t = hkshm_table_at(h, atomic_load(&h->active));
    assert_int_equal(atomic_load(&t->generation), gen);
    assert_true(t->n_entries <= HKSHM_TABLE_CAP);
    for (uint32_t i = 0; i < t->n_entries; i++) {
        const hkshm_policy *e = &t->entries[i];
        if (i)
            assert_true(hkshm_key_cmp(t->entries[i - 1].module_hash, t->entries[i - 1].offset, e->module_hash,
                                      e->offset) < 0);
        assert_true(e->large_threshold >= HKSHM_THRESHOLD_MIN && e->large_threshold <= HKSHM_THRESHOLD_MAX);
        assert_true(e->bigcache_slots <= HKSHM_SLOTS_LIMIT);
        assert_true(e->thp <= 1);
    }
}

static void daemon_survives_random_slots(void **state)
{
    (void)state;
    hkshm_header *h = core_fixture_start(1, dir);
    assert_non_null(h);
    uint32_t me = (uint32_t)getpid();
    uint64_t start = hkd_proc_start_time(getpid());
    rng_state = 0x5eed;
    const char *env = getenv("HOSTILE_ROUNDS");
    uint32_t rounds = env && atoi(env) > 0 ? (uint32_t)atoi(env) : ROUNDS;
    for (uint32_t r = 0; r < rounds; r++) {
        for (uint32_t i = 0; i < HOSTILE_SLOTS; i++) {
            hkshm_slot *s = hkshm_slot_at(h, i);
            /* Half the slots claim to be this (live) process, the others a
             * pid that is certainly gone or one the daemon cannot check. */
            uint32_t pid = i % 2 ? me : (uint32_t)(rnd() % 3 ? 0x7FFFFFF0u + i : rnd());
            if (pid == 0 || pid == HKSHM_PID_RESERVED)
                pid = me;
            spoil(s, pid, start, r % 3 != 0);
        }
        assert_int_equal(hkd_core_interval(), 0);
        table_is_usable(h);
        walk w = { 0 };
        assert_int_equal(hkd_for_each_site(check_site, &w), 0);
        assert_int_equal(hkd_for_each_proc(check_proc, &w), 0);
        assert_int_equal(w.bad, 0);
        hkd_status st;
        assert_int_equal(hkd_get_status(&st), 0);
        assert_int_equal(st.sites, w.sites);
    }
    /* Saving what garbage taught it is still a valid state file. */
    assert_int_equal(hkd_core_save(), 0);
    core_fixture_stop(h, 0);
}

int main(void)
{
    if (core_fixture_begin("hostile") != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(daemon_survives_random_slots),
    };
    return core_fixture_end(cmocka_run_group_tests(tests, NULL, NULL));
}
