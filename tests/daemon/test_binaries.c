/* The binaries box: observations made from what registrations report,
 * windows of long-running processes, caps per domain and per binary's
 * commands, publication per (binary, command). */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "binaries.h"
#include "persist.h"
#include "persist_binaries.h"

#define MIB (1024.0 * 1024.0)

/* A process's counters after `s` seconds of a run that burns `cpu_per_s`
 * CPU seconds per second, holds `rss_mib`, and allocates `mib_per_s`. */
static hkd_proc_info proc_at(uint32_t uid, uint64_t hash, double s, double cpu_per_s, double rss_mib, double mib_per_s)
{
    hkd_proc_info p;
    memset(&p, 0, sizeof p);
    p.pid = 1234;
    p.uid = uid;
    p.binary_hash = hash;
    strcpy(p.exe, "/usr/bin/example");
    p.proc[HKSHM_PROC_CPU_NS] = (uint64_t)(s * cpu_per_s * 1e9);
    p.proc[HKSHM_PROC_WALL_NS] = (uint64_t)(s * 1e9);
    p.proc[HKSHM_PROC_RSS_BYTES] = (uint64_t)(rss_mib * MIB);
    p.proc[HKSHM_PROC_PEAK_RSS_BYTES] = (uint64_t)(rss_mib * MIB);
    p.proc[HKSHM_PROC_RSS_KIB_MS] = (uint64_t)(rss_mib * 1024.0 * s * 1000.0);
    p.proc[HKSHM_PROC_BYTES] = (uint64_t)(mib_per_s * s * MIB);
    return p;
}

/* The same run, of a process that names `command`. */
static hkd_proc_info with_command(hkd_proc_info p, const char *command)
{
    memset(p.command, 0, sizeof p.command);
    size_t n = strlen(command);
    memcpy(p.command, command, n);
    p.command_hash = hkshm_command_hash(command, n);
    return p;
}

static hkd_binary_sel every_command(uint32_t domain, uint64_t hash)
{
    return (hkd_binary_sel){ .domain = domain, .binary_hash = hash };
}

static hkd_binary_sel one_command(uint32_t domain, uint64_t hash, const char *command)
{
    return (hkd_binary_sel){ .domain = domain, .binary_hash = hash, .by_command = 1,
                             .command_hash = command[0] ? hkshm_command_hash(command, strlen(command)) : 0 };
}

static int pin(hkd_binaries *b, hkd_binary_sel sel, int arm)
{
    int changed;
    int rc = hkd_binaries_pin(b, &sel, arm, &changed);
    return rc < 0 ? rc : changed;
}

typedef struct seen {
    int n;
    hkd_binary_info last;
} seen;

static int grab(const hkd_binary_info *i, void *arg)
{
    seen *s = arg;
    s->n++;
    s->last = *i;
    return 0;
}

static hkd_binary_info only(hkd_binaries *b)
{
    seen s = { 0 };
    assert_int_equal(hkd_binaries_for_each(b, grab, &s), 0);
    assert_int_equal(s.n, 1);
    return s.last;
}

/* A process of a first registration, seen over three intervals and then
 * ended, is one observation of everything it did from its start. */
static void an_ended_process_is_one_observation(void **state)
{
    (void)state;
    hkd_binaries *b = hkd_binaries_new(NULL);
    for (int k = 1; k <= 3; k++) {
        hkd_proc_info p = proc_at(0, 0xABC, 0.5 * k, 1.0, 40, 200);
        hkd_binaries_proc(b, 7, &p, 1, HKSHM_NO_ARM, 0);
        hkd_binaries_end_interval(b);
    }
    hkd_binary_info i = only(b);
    assert_int_equal(i.observations, 0);
    assert_int_equal(i.live, 1);
    /* Its last half second was busier: 3 s of CPU in all. */
    hkd_proc_info p = proc_at(0, 0xABC, 2.0, 1.5, 40, 200);
    hkd_binaries_proc(b, 7, &p, 1, HKSHM_NO_ARM, 1);
    hkd_binaries_end_interval(b);
    i = only(b);
    assert_int_equal(i.observations, 1);
    assert_int_equal(i.live, 0);
    assert_int_equal(i.processes, 1);
    /* The default arm took it, measured from zero: 3 s of CPU for 400 MiB. */
    assert_true(i.arms[HKD_BIN_DEFAULT_ARM].n == 1.0);
    assert_true(fabs(i.arms[0].mean[HKD_BIN_CPU] - log(3.0 / 400.0)) < 1e-6);
    assert_true(fabs(i.arms[0].mean[HKD_BIN_PEAK] - log(40.0)) < 1e-6);
    hkd_binaries_free(b);
}

/* A later registration (its daemon restarted) is measured from what is
 * first seen, not from the process's start. */
static void a_later_registration_starts_from_what_is_seen(void **state)
{
    (void)state;
    hkd_binaries *b = hkd_binaries_new(NULL);
    hkd_proc_info p = proc_at(0, 0xABC, 10.0, 1.0, 40, 200);
    hkd_binaries_proc(b, 9, &p, 2, HKSHM_NO_ARM, 0);
    hkd_binaries_end_interval(b);
    p = proc_at(0, 0xABC, 11.0, 1.0, 40, 200);
    hkd_binaries_proc(b, 9, &p, 2, HKSHM_NO_ARM, 1);
    hkd_binary_info i = only(b);
    assert_int_equal(i.observations, 1);
    /* 1 s of CPU for 200 MiB, whatever came before. */
    assert_true(fabs(i.arms[0].mean[HKD_BIN_CPU] - log(1.0 / 200.0)) < 1e-6);
    hkd_binaries_free(b);
}

/* A long-running process gives one observation per window; a change of
 * arm in the middle of one spoils it (counted as ignored). */
static void windows_of_a_long_running_process(void **state)
{
    (void)state;
    hkd_binaries_cfg cfg = hkd_binaries_defaults();
    cfg.window_s = 10.0;
    hkd_binaries *b = hkd_binaries_new(&cfg);
    for (int s = 1; s <= 35; s++) {
        hkd_proc_info p = proc_at(0, 0xABC, s, 0.5, 40, 10);
        hkd_binaries_proc(b, 3, &p, 1, HKSHM_NO_ARM, 0);
        hkd_binaries_end_interval(b);
    }
    assert_int_equal(only(b).observations, 3);
    /* Arm 2 from second 36 on: the window in progress is thrown away. */
    for (int s = 36; s <= 52; s++) {
        hkd_proc_info p = proc_at(0, 0xABC, s, 0.5, 40, 10);
        hkd_binaries_proc(b, 3, &p, 1, 2, 0);
        hkd_binaries_end_interval(b);
    }
    hkd_binary_info i = only(b);
    assert_int_equal(i.ignored, 1);
    assert_int_equal(i.observations, 4);
    assert_true(i.arms[2].n == 1.0);
    hkd_binaries_free(b);
}

/* One user's flood of fake binaries stops at its cap; root's binary is
 * still taken in; registrations that vanish leave no track behind. */
static void caps_and_vanishing_registrations(void **state)
{
    (void)state;
    hkd_binaries *b = hkd_binaries_new(NULL);
    uint64_t serial = 1;
    for (uint64_t h = 1; h <= 5000; h++) {
        hkd_proc_info p = proc_at(1000, h, 1.0, 1.0, 10, 10);
        hkd_binaries_proc(b, serial++, &p, 1, HKSHM_NO_ARM, 1);
        hkd_binaries_end_interval(b);
    }
    hkd_proc_info root = proc_at(0, 0xFEED, 1.0, 1.0, 10, 10);
    hkd_binaries_proc(b, serial++, &root, 1, HKSHM_NO_ARM, 0);
    hkd_binaries_end_interval(b);
    int n = 0;
    seen s = { 0 };
    hkd_binaries_for_each(b, grab, &s);
    n = s.n;
    assert_int_equal(n, 256 + 1);
    assert_int_equal(s.last.domain, 1000);     /* sorted by domain: root's first */
    /* 20,000 short registrations that are never ended explicitly: each
     * vanishes from the next interval's view and its track goes. */
    for (int k = 0; k < 20000; k++) {
        hkd_proc_info p = proc_at(0, 0xFEED, 1.0, 1.0, 10, 10);
        hkd_binaries_proc(b, serial++, &p, 1, HKSHM_NO_ARM, 0);
        if (k % 100 == 99)
            hkd_binaries_end_interval(b);
    }
    hkd_binaries_end_interval(b);
    hkd_binaries_end_interval(b);
    /* The table would be full (8,192 slots) if any had stayed. */
    hkd_proc_info p = proc_at(0, 0xBEEF, 1.0, 1.0, 10, 10);
    hkd_binaries_proc(b, serial++, &p, 1, HKSHM_NO_ARM, 1);
    s.n = 0;
    hkd_binaries_for_each(b, grab, &s);
    assert_int_equal(s.n, 256 + 2);
    hkd_binaries_free(b);
}

/* An arm the learner explores by default, the one the tests below make
 * cheaper or equal to the default. */
static uint32_t other_arm(void)
{
    int a = hkd_bin_arm_by_name("compact");
    assert_true(a > 0 && (hkd_bin_default_cfg.arm_mask & (1u << a)));
    return (uint32_t)a;
}

/* Processes of one binary that run the arm the box publishes: when
 * other_arm() is 30% cheaper, the box learns it and publishes its knobs. */
static void the_box_learns_and_publishes(void **state)
{
    (void)state;
    hkd_binaries *b = hkd_binaries_new(NULL);
    uint64_t rng = 12345;
    hkshm_binary_policy out[4];
    const uint32_t cheap = other_arm();
    for (uint64_t serial = 1; serial <= 40; serial++) {
        uint32_t n = hkd_binaries_fill(b, out, 4);
        uint32_t arm = n ? out[0].arm : HKSHM_NO_ARM;
        double cost = (arm == cheap ? 0.7 : 1.0);
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        double noise = 1.0 + 0.05 * ((double)(rng >> 40) / (double)(1ull << 24) - 0.5);
        hkd_proc_info p = proc_at(0, 0xABC, 2.0, cost * noise, 40, 100);
        hkd_binaries_proc(b, serial, &p, 1, arm, 1);
        hkd_binaries_end_interval(b);
    }
    uint32_t n = hkd_binaries_fill(b, out, 4);
    hkd_binary_info i = only(b);
    assert_int_equal(i.choice, cheap);
    assert_true(i.settled);
    if (i.current == (int)cheap) {
        assert_int_equal(n, 1);
        assert_int_equal(out[0].arm, cheap);
        assert_int_equal(out[0].report_every, hkd_bin_default_cfg.settled_report_every);
        assert_int_equal(out[0].binary_hash, 0xABC);
        assert_int_equal(out[0].set, hkd_bin_arms[cheap].set);
        assert_memory_equal(out[0].knob, hkd_bin_arms[cheap].knob, sizeof out[0].knob);
    }
    /* Pin and reset. */
    assert_int_equal(pin(b, every_command(0, 0xABC), 1), 1);
    assert_int_equal(hkd_binaries_fill(b, out, 4), 1);
    assert_int_equal(out[0].arm, 1);
    assert_int_equal(out[0].command_hash, 0);
    assert_int_equal(out[0].report_every, 1);              /* pinned: every process reports */
    assert_int_equal(pin(b, every_command(0, 0xDEAD), 1), -ENOENT);
    assert_int_equal(pin(b, one_command(0, 0xABC, "log"), 1), -ENOENT);
    assert_int_equal(pin(b, every_command(0, 0xABC), HKD_BIN_ARMS), -EINVAL);
    hkd_binary_sel sel = every_command(0, 0xABC);
    assert_int_equal(hkd_binaries_reset(b, &sel), 1);
    assert_int_equal(hkd_binaries_fill(b, out, 4), 0);
    assert_int_equal(only(b).observations, 0);
    hkd_binaries_free(b);
}

/* Settled on the default, the binary is published all the same, with no
 * knob set and the sampling of its registrations; while it explores an
 * arm, every process registers.  Before it settles, the default is not
 * published at all.  Every change of what is published is announced (the
 * core republishes on it): settling on the default changes no arm where
 * the default is the only arm (hakmemd --arms default), only the entry's
 * sampling. */
typedef struct sampling_seen {
    int sampled, exploring, unsettled;
} sampling_seen;

static sampling_seen run_until_sampled(const hkd_binaries_cfg *cfg)
{
    hkd_binaries *b = hkd_binaries_new(cfg);
    hkshm_binary_policy out[4], before[4];
    uint32_t n_before = 0;
    int announced = 0;
    sampling_seen seen = { 0 };
    uint64_t rng = 99;
    for (uint64_t serial = 1; serial <= 200; serial++) {
        uint32_t n = hkd_binaries_fill(b, out, 4);
        if (n != n_before || memcmp(out, before, n * sizeof out[0]) != 0)
            assert_true(announced);
        n_before = n;
        memcpy(before, out, sizeof out);
        hkd_binary_info i = serial > 1 ? only(b) : (hkd_binary_info){ 0 };
        if (serial > 1 && !i.settled && i.current == HKD_BIN_DEFAULT_ARM) {
            assert_int_equal(n, 0);
            seen.unsettled = 1;
        } else if (serial > 1 && i.settled && i.current == i.choice) {
            assert_int_equal(n, 1);
            assert_int_equal(out[0].arm, (uint32_t)i.choice);
            assert_int_equal(out[0].report_every, hkd_bin_default_cfg.settled_report_every);
            if (i.choice == HKD_BIN_DEFAULT_ARM)
                assert_int_equal(out[0].set, 0);
            seen.sampled = 1;
        } else if (n == 1) {
            assert_int_equal(out[0].report_every, 1);
            seen.exploring |= i.settled;
        }
        uint32_t arm = n ? out[0].arm : HKSHM_NO_ARM;
        /* other_arm() costs the same as the default (so rechecks still try it), the others more. */
        double cost = arm == HKSHM_NO_ARM || arm == HKD_BIN_DEFAULT_ARM || arm == other_arm() ? 1.0 : 1.3;
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        double noise = 1.0 + 0.05 * ((double)(rng >> 40) / (double)(1ull << 24) - 0.5);
        hkd_proc_info p = proc_at(0, 0xD0, 2.0, cost * noise, 40, 100);
        announced = hkd_binaries_proc(b, serial, &p, 1, arm, 1);
        hkd_binaries_end_interval(b);
    }
    assert_int_equal(only(b).choice, HKD_BIN_DEFAULT_ARM);
    hkd_binaries_free(b);
    return seen;
}

static void settled_default_is_published_for_sampling(void **state)
{
    (void)state;
    sampling_seen all = run_until_sampled(NULL);
    assert_true(all.unsettled && all.sampled && all.exploring);
    hkd_binaries_cfg alone = hkd_binaries_defaults();
    alone.learn.arm_mask = 0;
    sampling_seen only_default = run_until_sampled(&alone);
    assert_true(only_default.unsettled && only_default.sampled && !only_default.exploring);
}

/* What taking part cost: a run drawn to register stands for
 * report_every runs, of which only it paid more than attaching. */
static void taking_part_weighs_drawn_runs(void **state)
{
    (void)state;
    hkd_binaries *b = hkd_binaries_new(NULL);
    hkd_proc_info p = proc_at(0, 0xE0, 0.1, 1.0, 10, 10);
    p.proc[HKSHM_PROC_PLANE_NS] = 1000000;
    p.proc[HKSHM_PROC_ATTACH_NS] = 100000;
    p.proc[HKSHM_PROC_REPORT_EVERY] = 4;
    hkd_binaries_proc(b, 1, &p, 1, HKSHM_NO_ARM, 1);
    /* (0.1 ms x 4 + 0.9 ms) over 4 x 100 ms. */
    assert_true(fabs(only(b).plane_share - 1.3e-3 / 0.4) < 1e-9);
    /* A run that says it stands for itself, or lies beyond the bound. */
    p.proc[HKSHM_PROC_REPORT_EVERY] = 1;
    hkd_binaries_proc(b, 2, &p, 1, HKSHM_NO_ARM, 1);
    assert_true(fabs(only(b).plane_share - (1.3e-3 + 1e-3) / 0.5) < 1e-9);
    p.proc[HKSHM_PROC_REPORT_EVERY] = 1u << 30;
    p.proc[HKSHM_PROC_ATTACH_NS] = 2000000;          /* more than the whole: not counted */
    hkd_binaries_proc(b, 3, &p, 1, HKSHM_NO_ARM, 1);
    assert_true(fabs(only(b).plane_share - (1.3e-3 + 1e-3) / 0.5) < 1e-9);
    hkd_binaries_free(b);
}

/* Saved state comes back whole; merged state adds its counts. */
static void snapshot_and_merge(void **state)
{
    (void)state;
    hkd_binaries *b = hkd_binaries_new(NULL);
    for (uint64_t serial = 1; serial <= 6; serial++) {
        hkd_proc_info p = proc_at(0, 0xABC, 2.0, 1.0 + 0.1 * (double)serial, 40, 100);
        hkd_binaries_proc(b, serial, &p, 1, HKSHM_NO_ARM, 1);
        hkd_binaries_end_interval(b);
    }
    size_t n = 0;
    hkd_binary_state *st = hkd_binaries_snapshot(b, &n);
    assert_non_null(st);
    assert_int_equal(n, 1);
    hkd_binaries *c = hkd_binaries_new(NULL);
    assert_int_equal(hkd_binaries_merge(c, st, n, 1), 1);
    hkd_binary_info x = only(b), y = only(c);
    assert_memory_equal(x.arms, y.arms, sizeof x.arms);
    /* Twice the same evidence: counts double, means stay, variance grows by the count. */
    assert_int_equal(hkd_binaries_merge(c, st, n, 0), 1);
    y = only(c);
    assert_true(y.arms[0].n == 2 * x.arms[0].n);
    assert_true(fabs(y.arms[0].mean[HKD_BIN_COST] - x.arms[0].mean[HKD_BIN_COST]) < 1e-12);
    assert_true(fabs(y.arms[0].m2[HKD_BIN_COST] - 2 * x.arms[0].m2[HKD_BIN_COST]) < 1e-9);
    free(st);
    hkd_binaries_free(b);
    hkd_binaries_free(c);
}

/* Decodes the encoded sites `sites` with `st` appended, as a state file
 * holds them: 0 or the decoder's error. */
static int decode_after(const uint8_t *sites, size_t slen, const hkd_binary_state *st, size_t n)
{
    uint8_t *bins;
    size_t blen;
    assert_int_equal(hkd_binaries_encode(st, n, &bins, &blen), 0);
    uint8_t *all = malloc(slen + blen);
    assert_non_null(all);
    memcpy(all, sites, slen);
    memcpy(all + slen, bins, blen);
    hkd_policy pol;
    int rc = hkd_policy_decode(all, slen + blen, 0, &pol);
    if (rc == 0)
        hkd_policy_free(&pol);
    free(all), free(bins);
    return rc;
}

/* Binaries survive a state file: appended to an encoded policy, they come
 * back whole from the same decoder that reads the sites; a hostile entry
 * (not a number where a mean should be) makes the policy invalid. */
static void binaries_in_a_state_file(void **state)
{
    (void)state;
    hkd_binaries *b = hkd_binaries_new(NULL);
    for (uint64_t serial = 1; serial <= 9; serial++) {
        hkd_proc_info p = proc_at(serial % 2 ? 0 : 1000, 0xABC + serial % 2, 2.0, 1.0 + 0.1 * (double)serial, 40, 100);
        hkd_binaries_proc(b, serial, &p, 1, (uint32_t)(serial % 3), 1);
        hkd_binaries_end_interval(b);
    }
    assert_int_equal(pin(b, every_command(0, 0xABD), 2), 1);
    hkd_proc_info named = with_command(proc_at(0, 0xABD, 2.0, 1.0, 40, 100), "rev-list");
    hkd_binaries_proc(b, 100, &named, 1, HKSHM_NO_ARM, 1);
    hkd_binaries_end_interval(b);
    size_t n = 0;
    hkd_binary_state *st = hkd_binaries_snapshot(b, &n);
    assert_int_equal(n, 3);
    uint8_t *sites, *bins;
    size_t slen, blen;
    assert_int_equal(hkd_policy_encode(NULL, 0, NULL, 0, 7, 0, &sites, &slen, NULL), 0);
    assert_int_equal(hkd_binaries_encode(st, n, &bins, &blen), 0);
    uint8_t *all = malloc(slen + blen);
    memcpy(all, sites, slen);
    memcpy(all + slen, bins, blen);
    hkd_policy pol;
    assert_int_equal(hkd_policy_decode(all, slen + blen, 0, &pol), 0);
    assert_int_equal(pol.n_binaries, 3);
    int commands = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(pol.binaries[i].domain, st[i].domain);
        assert_int_equal(pol.binaries[i].binary_hash, st[i].binary_hash);
        assert_int_equal(pol.binaries[i].command_hash, st[i].command_hash);
        assert_memory_equal(pol.binaries[i].command, st[i].command, HKSHM_COMMAND_MAX);
        commands += st[i].command_hash == hkshm_command_hash("rev-list", 8);
        assert_string_equal(pol.binaries[i].exe, st[i].exe);
        assert_int_equal(pol.binaries[i].learn.pinned, st[i].learn.pinned);
        assert_int_equal(pol.binaries[i].learn.observations, st[i].learn.observations);
        assert_memory_equal(pol.binaries[i].learn.arm, st[i].learn.arm, sizeof st[i].learn.arm);
    }
    assert_int_equal(commands, 1);
    hkd_binaries *c = hkd_binaries_new(NULL);
    assert_int_equal(hkd_binaries_merge(c, pol.binaries, pol.n_binaries, 1), 3);
    hkshm_binary_policy out[4];
    assert_int_equal(hkd_binaries_fill(c, out, 4), 1);      /* the pinned one publishes its arm */
    assert_int_equal(out[0].arm, 2);
    hkd_policy_free(&pol);
    free(all), free(bins);
    /* A command that is not one (a path): the whole policy is refused. */
    for (size_t i = 0; i < n; i++)
        if (st[i].command_hash)
            memcpy(st[i].command, "a/b", 4);
    assert_int_equal(decode_after(sites, slen, st, n), -EBADMSG);
    /* Made whole again, it is read. */
    for (size_t i = 0; i < n; i++)
        if (st[i].command_hash)
            memcpy(st[i].command, "rev-list", 9);
    assert_int_equal(decode_after(sites, slen, st, n), 0);
    /* A mean that is not a number: refused. */
    hkd_bin_stat whole = st[0].learn.arm[0];
    assert_true(whole.n > 0);
    st[0].learn.arm[0].mean[HKD_BIN_COST] = NAN;
    assert_int_equal(decode_after(sites, slen, st, n), -EBADMSG);
    /* A sum of cross-deviations with the work that is not a number: the
     * same. */
    st[0].learn.arm[0] = whole;
    st[0].learn.arm[0].sxy[HKD_BIN_WALL] = NAN;
    assert_int_equal(decode_after(sites, slen, st, n), -EBADMSG);
    free(sites), free(st);
    hkd_binaries_free(b);
    hkd_binaries_free(c);
}

/* One binary, two commands whose runs cost differently per unit and
 * whose best arms differ: "add" is 30% cheaper on other_arm(), "log"
 * costs four times as much and is best on the default.  Each run takes
 * what is published for its own command: each is learned apart, "add"
 * publishes its cheaper arm and "log" nothing (the default). */
static void two_commands_are_learned_apart(void **state)
{
    (void)state;
    hkd_binaries *b = hkd_binaries_new(NULL);
    uint64_t rng = 777;
    const char *names[2] = { "add", "log" };
    uint64_t hashes[2] = { hkshm_command_hash("add", 3), hkshm_command_hash("log", 3) };
    hkshm_binary_policy out[8];
    for (uint64_t serial = 1; serial <= 120; serial++) {
        int c = (int)(serial % 2);
        uint32_t n = hkd_binaries_fill(b, out, 8);
        uint32_t arm = HKSHM_NO_ARM;
        for (uint32_t k = 0; k < n; k++)
            if (out[k].binary_hash == 0xABC && out[k].command_hash == hashes[c])
                arm = out[k].arm;
        double cost = c == 0 ? (arm == other_arm() ? 0.7 : 1.0) : (arm == HKSHM_NO_ARM || arm == 0 ? 4.0 : 5.0);
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        double noise = 1.0 + 0.05 * ((double)(rng >> 40) / (double)(1ull << 24) - 0.5);
        hkd_proc_info p = with_command(proc_at(0, 0xABC, 2.0, cost * noise, 40, 100), names[c]);
        hkd_binaries_proc(b, serial, &p, 1, arm, 1);
        hkd_binaries_end_interval(b);
    }
    seen s = { 0 };
    hkd_binaries_for_each(b, grab, &s);
    assert_int_equal(s.n, 2);
    /* "add" on its cheaper arm; "log", settled on the default, is there only for
     * sampling: no knob, its default arm. */
    uint32_t n = hkd_binaries_fill(b, out, 8);
    assert_true(n >= 1 && n <= 2);
    assert_int_equal(out[0].binary_hash, 0xABC);
    int add = out[0].command_hash == hashes[0] ? 0 : 1;
    assert_int_equal(out[add].command_hash, hashes[0]);
    assert_int_equal(out[add].arm, other_arm());
    if (n == 2) {
        assert_int_equal(out[1 - add].command_hash, hashes[1]);
        assert_int_equal(out[1 - add].arm, HKD_BIN_DEFAULT_ARM);
        assert_int_equal(out[1 - add].set, 0);
        assert_int_equal(out[1 - add].report_every, hkd_bin_default_cfg.settled_report_every);
    }
    /* A third command of the binary starts on the default: no entry of its own. */
    hkd_proc_info p = with_command(proc_at(0, 0xABC, 2.0, 1.0, 40, 100), "gc");
    hkd_binaries_proc(b, 1000, &p, 1, HKSHM_NO_ARM, 0);
    hkd_binaries_end_interval(b);
    assert_int_equal(hkd_binaries_fill(b, out, 8), n);
    /* Pins: one command, or every command of the binary. */
    assert_int_equal(pin(b, one_command(0, 0xABC, "log"), 1), 1);
    assert_int_equal(hkd_binaries_fill(b, out, 8), 2);
    assert_int_equal(out[0].command_hash < out[1].command_hash, 1);   /* sorted by command */
    int changed;
    hkd_binary_sel all = every_command(0, 0xABC);
    assert_int_equal(hkd_binaries_pin(b, &all, 3, &changed), 3);
    assert_int_equal(hkd_binaries_fill(b, out, 8), 3);
    hkd_binary_sel one = one_command(0, 0xABC, "add");
    assert_int_equal(hkd_binaries_reset(b, &one), 1);
    assert_int_equal(hkd_binaries_fill(b, out, 8), 2);
    hkd_binaries_free(b);
}

/* A binary run with 10,000 distinct commands holds HKD_BINARY_COMMANDS
 * keys and the one of its runs without a command; the rest are not
 * learned, and other binaries still get their keys. */
static void a_flood_of_commands_is_bounded(void **state)
{
    (void)state;
    hkd_binaries *b = hkd_binaries_new(NULL);
    uint64_t serial = 1;
    hkd_proc_info plain = proc_at(0, 0xF100D, 1.0, 1.0, 10, 10);
    hkd_binaries_proc(b, serial++, &plain, 1, HKSHM_NO_ARM, 1);
    for (int k = 0; k < 10000; k++) {
        char word[16];
        snprintf(word, sizeof word, "cmd%d", k);
        hkd_proc_info p = with_command(proc_at(0, 0xF100D, 1.0, 1.0, 10, 10), word);
        hkd_binaries_proc(b, serial++, &p, 1, HKSHM_NO_ARM, 1);
        if (k % 100 == 99)
            hkd_binaries_end_interval(b);
    }
    hkd_proc_info other = with_command(proc_at(0, 0xBEEF, 1.0, 1.0, 10, 10), "serve");
    hkd_binaries_proc(b, serial++, &other, 1, HKSHM_NO_ARM, 1);
    hkd_binaries_end_interval(b);
    seen s = { 0 };
    hkd_binaries_for_each(b, grab, &s);
    assert_int_equal(s.n, 1 + HKD_BINARY_COMMANDS + 1);
    assert_int_equal(hkd_binaries_refused(b), 10000 - HKD_BINARY_COMMANDS);
    hkd_binaries_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(an_ended_process_is_one_observation),
        cmocka_unit_test(a_later_registration_starts_from_what_is_seen),
        cmocka_unit_test(windows_of_a_long_running_process),
        cmocka_unit_test(caps_and_vanishing_registrations),
        cmocka_unit_test(the_box_learns_and_publishes),
        cmocka_unit_test(settled_default_is_published_for_sampling),
        cmocka_unit_test(taking_part_weighs_drawn_runs),
        cmocka_unit_test(snapshot_and_merge),
        cmocka_unit_test(binaries_in_a_state_file),
        cmocka_unit_test(two_commands_are_learned_apart),
        cmocka_unit_test(a_flood_of_commands_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
