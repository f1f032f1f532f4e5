/* The fleet's pieces that need no etcd: the value format against hostile
 * bytes, UCB1 with a prior, the core taking other hosts' sums without
 * ever writing them back as its own, the control keys, and the core
 * taking the fleet's pins and resets. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core_fixture.h"
#include "core_fleet.h"
#include "fleet_codec.h"
#include "fleet_control.h"
#include "learner.h"

/* ---- the value format ---- */

static hkd_fleet_site site_n(uint32_t i)
{
    hkd_fleet_site s;
    memset(&s, 0, sizeof s);
    s.key = (hkd_site_key){ .module_hash = 0x1234567890abcdefull + i, .offset = 0x4000 + 16 * i, .domain = 1000 + i % 3 };
    s.sizes_known = 1;
    s.size_lo = (uint8_t)(10 + i % 5);
    s.size_hi = (uint8_t)(s.size_lo + i % 7);
    s.arm = (int8_t)(i % HKD_N_ARMS);
    s.ref_cost = 100.0 + i;
    for (int a = 0; a < HKD_N_ARMS; a++)
        if ((i + (uint32_t)a) % 3) {
            s.pulls[a] = 1 + i * 7 + (uint32_t)a;
            s.reward_sum[a] = s.pulls[a] * (0.1 * (a + 1));
        }
    return s;
}

static long encode_n(uint8_t *buf, size_t cap, hkd_fleet_site *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        v[i] = site_n((uint32_t)i);
    hkd_fleet_header h = { .shard = 1, .shards = 4, .written_unix = 1700000000 };
    return hkd_fleet_encode(&h, v, n, buf, cap);
}

static void codec_round_trip(void **state)
{
    (void)state;
    enum { N = 50 };
    hkd_fleet_site v[N];
    uint8_t buf[16384];
    long len = encode_n(buf, sizeof buf, v, N);
    assert_true(len > 0);
    size_t want = HKD_FLEET_HEADER_BYTES;
    for (int i = 0; i < N; i++)
        want += hkd_fleet_site_bytes(&v[i]);
    assert_int_equal((size_t)len, want);
    hkd_fleet_header h;
    hkd_fleet_site *out;
    char why[128];
    assert_int_equal(hkd_fleet_decode(buf, (size_t)len, &h, &out, why, sizeof why), 0);
    assert_int_equal(h.shard, 1);
    assert_int_equal(h.shards, 4);
    assert_int_equal(h.n_sites, N);
    assert_int_equal(h.written_unix, 1700000000);
    assert_memory_equal(out, v, sizeof v);
    free(out);
    /* Too small a buffer: refused, not overrun. */
    assert_int_equal(hkd_fleet_encode(&h, v, N, buf, want - 1), -ENOSPC);
}

static void codec_rejects_every_truncation(void **state)
{
    (void)state;
    hkd_fleet_site v[5];
    uint8_t buf[4096];
    long len = encode_n(buf, sizeof buf, v, 5);
    hkd_fleet_header h;
    hkd_fleet_site *out;
    char why[128];
    for (long n = 0; n < len; n++) {
        uint8_t *copy = malloc((size_t)n + 1);   /* exactly n bytes for valgrind and ASan to watch */
        memcpy(copy, buf, (size_t)n);
        assert_int_equal(hkd_fleet_decode(copy, (size_t)n, &h, &out, why, sizeof why), -EBADMSG);
        assert_null(out);
        free(copy);
    }
    uint8_t longer[4097];
    memcpy(longer, buf, (size_t)len);
    longer[len] = 0;
    assert_int_equal(hkd_fleet_decode(longer, (size_t)len + 1, &h, &out, why, sizeof why), -EBADMSG);
    assert_string_equal(why, "bytes after the last site");
}

/* Offsets into a value of one site encoded by site_n(1). */
enum {
    AT_SHARD = 4, AT_SHARDS = 6, AT_N = 8, AT_SITE = HKD_FLEET_HEADER_BYTES,
    AT_FLAGS = AT_SITE + 20, AT_LO = AT_FLAGS + 1, AT_HI = AT_FLAGS + 2, AT_ARM = AT_FLAGS + 3,
    AT_REF = AT_FLAGS + 4, AT_MASK = AT_REF + 8, AT_ARM0 = AT_MASK + 1,
};

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_f64(uint8_t *p, double d)
{
    uint64_t v;
    memcpy(&v, &d, sizeof v);
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void expect_bad(const uint8_t *good, size_t len, void (*spoil)(uint8_t *), const char *why_part)
{
    uint8_t b[512];
    memcpy(b, good, len);
    spoil(b);
    hkd_fleet_header h;
    hkd_fleet_site *out;
    char why[128] = "";
    assert_int_equal(hkd_fleet_decode(b, len, &h, &out, why, sizeof why), -EBADMSG);
    assert_null(out);
    if (!strstr(why, why_part))
        fail_msg("why '%s' does not say '%s'", why, why_part);
}

static void bad_magic(uint8_t *b) { b[0] = 'X'; }
static void bad_shard(uint8_t *b) { b[AT_SHARD] = 9; }
static void no_shards(uint8_t *b) { b[AT_SHARDS] = 0; b[AT_SHARDS + 1] = 0; }
static void huge_count(uint8_t *b) { put_u32(b + AT_N, 0xffffffffu); }
static void bad_flags(uint8_t *b) { b[AT_FLAGS] = 2; }
static void lo_over_hi(uint8_t *b) { b[AT_LO] = 20; b[AT_HI] = 19; }
static void size_past_31(uint8_t *b) { b[AT_HI] = 32; }
static void arm_past_last(uint8_t *b) { b[AT_ARM] = HKD_N_ARMS; }
static void arm_negative(uint8_t *b) { b[AT_ARM] = (uint8_t)-2; }
static void ref_nan(uint8_t *b) { put_f64(b + AT_REF, NAN); }
static void ref_negative(uint8_t *b) { put_f64(b + AT_REF, -1.0); }
static void zero_pulls(uint8_t *b) { put_u32(b + AT_ARM0, 0); }
static void too_many_pulls(uint8_t *b) { put_u32(b + AT_ARM0, HKD_FLEET_PULLS_MAX + 1); }
static void sum_nan(uint8_t *b) { put_f64(b + AT_ARM0 + 4, NAN); }
static void sum_infinite(uint8_t *b) { put_f64(b + AT_ARM0 + 4, INFINITY); }
static void sum_negative(uint8_t *b) { put_f64(b + AT_ARM0 + 4, -0.5); }
static void sum_over_pulls(uint8_t *b) { put_f64(b + AT_ARM0 + 4, 1e9); }

static void codec_rejects_what_does_not_check(void **state)
{
    (void)state;
    hkd_fleet_site s = site_n(1);
    hkd_fleet_header h = { .shard = 0, .shards = 1 };
    uint8_t good[512];
    long len = hkd_fleet_encode(&h, &s, 1, good, sizeof good);
    assert_true(len > AT_ARM0 + 12);
    assert_true(s.pulls[0] > 0);         /* arm 0 is the first arm encoded */
    hkd_fleet_site *out;
    char why[128];
    assert_int_equal(hkd_fleet_decode(good, (size_t)len, &h, &out, why, sizeof why), 0);
    free(out);
    expect_bad(good, (size_t)len, bad_magic, "not a hakmem fleet value");
    expect_bad(good, (size_t)len, bad_shard, "shard 9 of 1");
    expect_bad(good, (size_t)len, no_shards, "shard 0 of 0");
    expect_bad(good, (size_t)len, huge_count, "4294967295 sites in");
    expect_bad(good, (size_t)len, bad_flags, "flags");
    expect_bad(good, (size_t)len, lo_over_hi, "size range 20..19");
    expect_bad(good, (size_t)len, size_past_31, "size range");
    expect_bad(good, (size_t)len, arm_past_last, "arm 8");
    expect_bad(good, (size_t)len, arm_negative, "arm -2");
    expect_bad(good, (size_t)len, ref_nan, "reference cost");
    expect_bad(good, (size_t)len, ref_negative, "reference cost");
    expect_bad(good, (size_t)len, zero_pulls, "0 pulls");
    expect_bad(good, (size_t)len, too_many_pulls, "pulls");
    expect_bad(good, (size_t)len, sum_nan, "reward sum");
    expect_bad(good, (size_t)len, sum_infinite, "reward sum");
    expect_bad(good, (size_t)len, sum_negative, "reward sum");
    expect_bad(good, (size_t)len, sum_over_pulls, "reward sum");
    /* More than a value may hold is refused before a byte is read. */
    assert_int_equal(hkd_fleet_decode(good, HKD_FLEET_VALUE_MAX + 1, &h, &out, why, sizeof why), -EBADMSG);
}

/* ---- UCB1 with a prior ---- */

/* A 2 MiB site: arms 0 (BigCache on) and 2 (off) are the ones that differ. */
static void learner_2m(hkd_learn *l)
{
    hkd_learn_init(l);
    hkd_learn_set_sizes(l, 21, 21);
}

static hkd_prior prior_best(int best, double pulls)
{
    hkd_prior p;
    memset(&p, 0, sizeof p);
    for (int a = 0; a < HKD_N_ARMS; a += 2) {
        p.pulls[a] = pulls;
        p.reward_sum[a] = pulls * (a == best ? 0.9 : 0.2);
    }
    return p;
}

static void prior_chooses_without_exploring(void **state)
{
    (void)state;
    hkd_learn l;
    learner_2m(&l);
    /* Alone, a site with no pulls explores its first arm. */
    assert_int_equal(hkd_ucb_select(&l, 0.25), 0);
    assert_false(hkd_learn_settled(&l));
    hkd_prior p = prior_best(2, 40);
    assert_int_equal(hkd_ucb_select_with(&l, &p, 0.25), 2);
    assert_int_equal(hkd_learn_best_with(&l, &p), 2);
    l.current = 2;
    assert_true(hkd_learn_settled_with(&l, &p));
    assert_false(hkd_learn_settled(&l));
    /* A pull ending on this host chooses with the prior too. */
    hkd_learn_cfg cfg = hkd_learn_default_cfg;
    cfg.settle_intervals = 0;
    l.ref_cost = 100;
    hkd_obs o = { .allocs = 100, .bytes = 100u << 21, .slow_ns = 100 * 100, .interval_s = 1 };
    for (int i = 0; i < 20; i++)
        hkd_learn_observe_with(&l, &cfg, &o, &p);
    assert_int_equal(l.pulls[0], 0);
    assert_int_equal(l.pulls[2], 20);
    assert_int_equal(l.current, 2);
}

/* A fleet that settled arm 0 but pulled arm 2 only twice: UCB1 over the
 * sums would explore arm 2 at a joining host's first choice. */
static void joining_host_confirms_before_exploring(void **state)
{
    (void)state;
    hkd_learn l;
    learner_2m(&l);
    hkd_prior p;
    memset(&p, 0, sizeof p);
    p.pulls[0] = 20;
    p.reward_sum[0] = 20 * 0.55;
    p.pulls[2] = 2;
    p.reward_sum[2] = 2 * 0.45;
    assert_int_equal(hkd_ucb_select_with(&l, &p, 0.25), 2);
    assert_int_equal(hkd_learn_next_with(&l, &p, 0.25), 0);
    hkd_learn_cfg cfg = hkd_learn_default_cfg;
    cfg.settle_intervals = 0;
    l.ref_cost = 100;
    /* Each pull of its own costs a little more than the fleet's mean. */
    hkd_obs o = { .allocs = 100, .bytes = 100u << 21, .slow_ns = 100 * 110, .interval_s = 1 };
    for (int i = 0; i < 3; i++) {
        hkd_learn_observe_with(&l, &cfg, &o, &p);
        assert_int_equal(l.current, 0);
    }
    /* The fourth pull of the fleet's arm; then UCB1 explores as it would. */
    hkd_learn_observe_with(&l, &cfg, &o, &p);
    assert_int_equal(l.pulls[0], 4);
    assert_int_equal(l.pulls[2], 0);
    assert_int_equal(l.current, 2);
    /* Without a prior's pulls the rule is moot: a lone site explores. */
    hkd_prior none;
    memset(&none, 0, sizeof none);
    hkd_learn alone;
    learner_2m(&alone);
    alone.pulls[0] = 1;
    alone.mean[0] = 0.5f;
    alone.total_pulls = 1;
    assert_int_equal(hkd_learn_next_with(&alone, &none, 0.25), 2);
}

static void no_prior_is_the_plain_learner(void **state)
{
    (void)state;
    uint64_t x = 7;
    for (int round = 0; round < 2000; round++) {
        hkd_learn l;
        hkd_learn_init(&l);
        if (round % 3)
            hkd_learn_set_sizes(&l, round % 25, round % 25 + round % 7);
        for (int a = 0; a < HKD_N_ARMS; a++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            l.pulls[a] = (uint32_t)(x >> 60);
            l.mean[a] = (float)((x >> 20) % 1000) / 1000.0f;
            l.total_pulls += l.pulls[a];
        }
        l.current = (int32_t)(x >> 61);
        hkd_prior zero;
        memset(&zero, 0, sizeof zero);
        assert_int_equal(hkd_ucb_select_with(&l, NULL, 0.25), hkd_ucb_select(&l, 0.25));
        assert_int_equal(hkd_learn_settled_with(&l, NULL), hkd_learn_settled(&l));
        assert_int_equal(hkd_learn_settled_with(&l, &zero), hkd_learn_settled(&l));
    }
}

/* ---- the core ---- */

#define MODULE 0xf1ee7ull
#define OFFSET 0x5a0ull
#define UID 0u                          /* root: the fleet may add its sites on any host */

static int find_site(const hkd_site_info *si, void *arg)
{
    hkd_site_info *out = arg;
    if (si->key.module_hash == MODULE && si->key.offset == OFFSET && si->key.domain == UID) {
        *out = *si;
        out->processes++;                /* marks it found (a copy's count is never read) */
    }
    return 0;
}

static int count_sites(const hkd_site_info *si, void *arg)
{
    (void)si;
    ++*(int *)arg;
    return 0;
}

static void flush_2m(hkshm_region *s, uint64_t round)
{
    region_write_begin(s);
    s->n_modules = 1;
    s->modules[0].hash = MODULE;
    snprintf(s->modules[0].path, sizeof s->modules[0].path, "/usr/bin/fleet-test");
    hkshm_site *d = &s->sites[0];
    uint64_t a = (round + 1) * 200;
    d->module_hash = MODULE;
    d->offset = OFFSET;
    d->allocs = a;
    d->frees = a;
    d->bytes = a << 21;
    d->slow_ns = a * 300;
    d->size_hist[21] = (uint32_t)a;
    s->n_sites = 1;
    region_write_end(s);
}

/* A process of the fleet test's binary on this host, that ran the 2 MiB
 * site for that many intervals. */
static hkshm_region *run_2m(uint64_t rounds)
{
    char why[256];
    hkshm_region *r = region_register(0, UID, 1, "/usr/bin/fleet-test", why, sizeof why);
    if (!r)
        fail_msg("simulated client refused: %s", why);
    for (uint64_t round = 0; round < rounds; round++) {
        flush_2m(r, round);
        hkd_core_interval();
    }
    return r;
}

/* A core of its own (settle: intervals a new arm waits), and what the
 * fleet's other hosts say of the 2 MiB site: arm 2 wins. */
static void core_begin(uint32_t settle)
{
    hkd_core_cfg cfg = { .shm_name = shm, .state_dir = dir, .interval_ms = 100, .learning = 1,
                         .learn = hkd_learn_default_cfg };
    cfg.learn.settle_intervals = settle;
    assert_int_equal(hkd_core_init(&cfg), 0);
}

static hkd_fleet_sum arm2_sum(void)
{
    hkd_fleet_sum sum;
    memset(&sum, 0, sizeof sum);
    sum.key = (hkd_site_key){ .module_hash = MODULE, .offset = OFFSET, .domain = UID };
    sum.prior = prior_best(2, 30);
    sum.sizes_known = 1;
    sum.size_lo = sum.size_hi = 21;
    sum.ref_cost = 300;
    sum.hosts = 1;
    return sum;
}

/* Host B: the fleet says arm 2 wins a 2 MiB site no process of B has run.
 * B makes the record, publishes arm 2 before any process reports, and its
 * own learner pulls only arm 2 once a process runs the site; what B would
 * write holds its own pulls only, never the fleet's. */
static void core_takes_the_fleet_without_writing_it_back(void **state)
{
    (void)state;
    core_begin(0);
    hkd_fleet_sum sum = arm2_sum();
    /* A user with no site on this host gets none from the fleet. */
    hkd_fleet_sum stranger = sum;
    stranger.key.domain = 4321;
    assert_int_equal(hkd_fleet_apply(&stranger, 1), 0);
    assert_int_equal(hkd_fleet_apply(&sum, 1), 1);

    hkd_site_info si = { 0 };
    hkd_for_each_site(find_site, &si);
    assert_int_equal(si.processes, 1);
    assert_int_equal(si.thresholds.bigcache_slots, hkd_arms[2].bigcache_slots);
    assert_int_equal(si.own_pulls, 0);
    assert_int_equal(si.fleet_pulls, 120);   /* four arms of 30 */
    assert_int_equal(si.arms[2].fleet_pulls, 30);
    assert_true(si.settled);
    hkd_fleet_site *mine;
    size_t n;
    assert_int_equal(hkd_fleet_snapshot(&mine, &n), 0);
    assert_int_equal(n, 0);              /* nothing of its own yet: nothing to write */
    free(mine);

    run_2m(12);
    int sites = 0;
    hkd_for_each_site(count_sites, &sites);
    assert_int_equal(sites, 1);          /* the process's site is the record the fleet made, and no stranger's */
    memset(&si, 0, sizeof si);
    hkd_for_each_site(find_site, &si);
    assert_int_equal(si.arms[0].pulls, 0);
    assert_true(si.arms[2].pulls >= 5);
    assert_int_equal(si.fleet_pulls, 120);   /* four arms of 30 */
    assert_int_equal(hkd_fleet_snapshot(&mine, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(mine[0].pulls[0], 0);
    assert_int_equal(mine[0].pulls[2], si.arms[2].pulls);
    assert_true(mine[0].reward_sum[2] <= mine[0].pulls[2]);
    free(mine);

    /* The host that sent it left: its pulls stop counting, B's stay. */
    assert_int_equal(hkd_fleet_apply(NULL, 0), 0);
    memset(&si, 0, sizeof si);
    hkd_for_each_site(find_site, &si);
    assert_int_equal(si.fleet_pulls, 0);
    assert_true(si.own_pulls >= 5);
    hkd_core_shutdown();
}

/* ---- the controls ---- */

static int parse_control(const char *key, const char *value, hkd_fleet_control *c)
{
    char why[96];
    return hkd_control_parse("/hakmem/web/controls/", (const uint8_t *)key, strlen(key), (const uint8_t *)value,
                             strlen(value), c, why, sizeof why);
}

static void control_keys_round_trip_and_reject_the_rest(void **state)
{
    (void)state;
    hkd_site_key k = { .module_hash = 0xbf0cab7b82bb4dc1ull, .offset = 0x1484, .domain = 1000 };
    char key[HKD_CONTROL_KEY_MAX], value[HKD_CONTROL_VALUE_MAX];
    assert_true(hkd_control_key("web", HKD_CONTROL_PIN, &k, key, sizeof key) > 0);
    assert_string_equal(key, "/hakmem/web/controls/pin/1000:bf0cab7b82bb4dc1:1484");
    assert_true(hkd_control_value(5, "ops@example", 1700000000, value, sizeof value) > 0);
    hkd_fleet_control c;
    assert_int_equal(parse_control(key, value, &c), 0);
    assert_int_equal(c.kind, HKD_CONTROL_PIN);
    assert_int_equal(c.arm, 5);
    assert_int_equal(c.key.module_hash, k.module_hash);
    assert_int_equal(c.key.offset, k.offset);
    assert_int_equal(c.key.domain, 1000);
    assert_true(hkd_control_key("web", HKD_CONTROL_RESET, NULL, key, sizeof key) > 0);
    assert_int_equal(parse_control(key, "by=ops at=1", &c), 0);
    assert_true(c.kind == HKD_CONTROL_RESET && c.all);
    assert_int_equal(parse_control("/hakmem/web/controls/pin/0:1:2", "arm=7", &c), 0);
    assert_int_equal(hkd_control_key("web", HKD_CONTROL_PIN, NULL, key, sizeof key), -EINVAL);
    assert_int_equal(hkd_control_value(1, "two words", 1, value, sizeof value), -EINVAL);

    static const char *const bad[][2] = {
        { "/hakmem/web/controls/pin/1000:bf0cab7b82bb4dc1:1484", "arm=8" },         /* no such arm */
        { "/hakmem/web/controls/pin/1000:bf0cab7b82bb4dc1:1484", "arm=" },
        { "/hakmem/web/controls/pin/1000:bf0cab7b82bb4dc1:1484", "arm=1x" },
        { "/hakmem/web/controls/pin/1000:bf0cab7b82bb4dc1:1484", "arm=0001" },     /* more digits than an arm has */
        { "/hakmem/web/controls/pin/1000:bf0cab7b82bb4dc1:1484", "arm=1 \x01" },   /* not printable */
        { "/hakmem/web/controls/pin/1000:bf0cab7b82bb4dc1:1484", "" },
        { "/hakmem/web/controls/pin/all", "arm=1" },                                /* a pin names a site */
        { "/hakmem/web/controls/pin/4294967296:1:2", "arm=1" },                     /* uid over 32 bits */
        { "/hakmem/web/controls/pin/1:10000000000000000:2", "arm=1" },              /* hash over 64 bits */
        { "/hakmem/web/controls/pin/1:1:2:3", "arm=1" },
        { "/hakmem/web/controls/pin/1:xyz:2", "arm=1" },
        { "/hakmem/web/controls/pin/", "arm=1" },
        { "/hakmem/web/controls/stop/1:1:2", "arm=1" },
        { "/hakmem/other/controls/pin/1:1:2", "arm=1" },
        { "/hakmem/web/controls/reset/-1:1:2", "" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (parse_control(bad[i][0], bad[i][1], &c) != -EBADMSG)
            fail_msg("took %s = '%s'", bad[i][0], bad[i][1]);
    char big[HKD_CONTROL_VALUE_MAX + 2];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    memcpy(big, "arm=1 ", 6);
    assert_int_equal(parse_control("/hakmem/web/controls/pin/1:1:2", big, &c), -EBADMSG);
}

/* The fleet pins a site: it runs that arm whatever it learned, readers
 * see the pin as the fleet's, and the state kept does not hold it; when
 * the fleet unpins it, it learns again.  A fleet reset forgets its pulls,
 * the host's and the fleet's. */
static void core_takes_the_fleets_pins_and_resets(void **state)
{
    (void)state;
    core_begin(hkd_learn_default_cfg.settle_intervals);
    hkd_fleet_sum sum = arm2_sum();
    assert_int_equal(hkd_fleet_apply(&sum, 1), 1);
    hkd_fleet_pin pin = { sum.key, 5 };
    assert_int_equal(hkd_fleet_pins(&pin, 1), 1);
    assert_int_equal(hkd_fleet_pins(&pin, 1), 0);       /* the same pins again change nothing */
    hkd_site_info si = { 0 };
    hkd_for_each_site(find_site, &si);
    assert_int_equal(si.pinned_arm, 5);
    assert_true(si.fleet_pinned);
    assert_int_equal(si.thresholds.large_threshold, hkd_arms[5].large_threshold);
    assert_int_equal(si.thresholds.thp, hkd_arms[5].thp);
    /* A local pin is not the fleet's. */
    assert_int_equal(hkd_fleet_pins(NULL, 0), 1);
    memset(&si, 0, sizeof si);
    hkd_for_each_site(find_site, &si);
    assert_int_equal(si.pinned_arm, -1);
    assert_false(si.fleet_pinned);
    assert_int_equal(hkd_pin(&sum.key, 3), 0);
    memset(&si, 0, sizeof si);
    hkd_for_each_site(find_site, &si);
    assert_int_equal(si.pinned_arm, 3);
    assert_false(si.fleet_pinned);
    assert_int_equal(hkd_pin(&sum.key, -1), 0);

    assert_int_equal(si.fleet_pulls, 120);
    hkd_fleet_reset(&sum.key);
    memset(&si, 0, sizeof si);
    hkd_for_each_site(find_site, &si);
    assert_int_equal(si.fleet_pulls, 0);
    assert_int_equal(si.own_pulls, 0);
    hkd_core_shutdown();
}

/* The arm a site runs and publishes (hkd_fleet_snapshot), as the core has it. */
static int snapshot_arm(void)
{
    hkd_fleet_site *mine;
    size_t n;
    assert_int_equal(hkd_fleet_snapshot(&mine, &n), 0);
    assert_int_equal(n, 1);
    int arm = mine[0].arm;
    free(mine);
    return arm;
}

/* Host A pulled a 2 MiB site itself and settled on arm 0; now none of its
 * processes runs it.  Other hosts pull on, and their sums move: over them
 * UCB1 would explore arm 2, as it would on every idle host of the fleet at
 * once.  A keeps the arm its own pulls chose until a pull of its own ends;
 * only a site it never pulled takes the fleet's choice.  A site pinned
 * here keeps its pin through the fleet's sums and the fleet's pins. */
static void idle_site_keeps_its_arm_as_the_fleet_moves(void **state)
{
    (void)state;
    core_begin(0);
    hkd_fleet_sum sum = arm2_sum();
    sum.prior = prior_best(0, 30);
    assert_int_equal(hkd_fleet_apply(&sum, 1), 1);
    hkshm_region *r = run_2m(8);
    for (int i = 0; i < 3; i++)
        hkd_core_interval();         /* the process is idle: its last pull ends */
    hkd_site_info si = { 0 };
    hkd_for_each_site(find_site, &si);
    assert_true(si.arms[0].pulls >= 4);
    assert_int_equal(si.arms[2].pulls, 0);
    assert_int_equal(snapshot_arm(), 0);

    /* Another host explored arm 2 once; arm 0 still has the best mean. */
    hkd_fleet_sum moved = sum;
    memset(&moved.prior, 0, sizeof moved.prior);
    moved.prior.pulls[0] = 40;
    moved.prior.reward_sum[0] = 40 * 0.55;
    moved.prior.pulls[2] = 1;
    moved.prior.reward_sum[2] = 0.45;
    moved.hosts = 2;
    assert_int_equal(hkd_fleet_apply(&moved, 1), 0);
    assert_int_equal(snapshot_arm(), 0);
    memset(&si, 0, sizeof si);
    hkd_for_each_site(find_site, &si);
    assert_int_equal(si.thresholds.bigcache_slots, hkd_arms[0].bigcache_slots);
    for (int i = 0; i < 3; i++)
        hkd_core_interval();
    assert_int_equal(snapshot_arm(), 0);

    /* Pinned here to arm 2: the fleet's sums, either way, and a sync of
     * the fleet's pins that names none leave the pin as it is. */
    assert_int_equal(hkd_pin(&sum.key, 2), 0);
    assert_int_equal(snapshot_arm(), 2);
    assert_int_equal(hkd_fleet_apply(&sum, 1), 0);
    assert_int_equal(hkd_fleet_pins(NULL, 0), 0);
    assert_int_equal(hkd_fleet_apply(&moved, 1), 0);
    assert_int_equal(hkd_fleet_pins(NULL, 0), 0);
    for (int i = 0; i < 3; i++)
        hkd_core_interval();
    assert_int_equal(snapshot_arm(), 2);
    memset(&si, 0, sizeof si);
    hkd_for_each_site(find_site, &si);
    assert_int_equal(si.pinned_arm, 2);
    assert_false(si.fleet_pinned);
    hkd_core_shutdown();
    munmap(r, HKSHM_REGION_SIZE);
}

int main(void)
{
    if (core_fixture_begin("fleet") != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(codec_round_trip),
        cmocka_unit_test(codec_rejects_every_truncation),
        cmocka_unit_test(codec_rejects_what_does_not_check),
        cmocka_unit_test(prior_chooses_without_exploring),
        cmocka_unit_test(joining_host_confirms_before_exploring),
        cmocka_unit_test(no_prior_is_the_plain_learner),
        cmocka_unit_test(core_takes_the_fleet_without_writing_it_back),
        cmocka_unit_test(control_keys_round_trip_and_reject_the_rest),
        cmocka_unit_test(core_takes_the_fleets_pins_and_resets),
        cmocka_unit_test(idle_site_keeps_its_arm_as_the_fleet_moves),
    };
    return core_fixture_end(cmocka_run_group_tests(tests, NULL, NULL));
}
