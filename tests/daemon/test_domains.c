/* The core with many users, in one process: domains keep their records,
 * learners and table entries apart; a flood of keys stays bounded while
 * root's sites stay published; the limits are enforced and counted; idle
 * sites age out to the archive and come back; an evicted record is never
 * reached through an old cookie; a full table holds the heaviest sites;
 * readers by page skip the sites that went and an export holds the
 * archive; the state file keeps to its cap, root's history first; files
 * from before domains load.
 *
 * Simulated processes are report regions registered in-process, each as
 * the user it runs as.  Time is a fake wall clock. */
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

#include "collector.h"
#include "core.h"
#include "core_api.h"
#include "hakmem_shm.h"
#include "persist.h"
#include "policy.pb-c.h"
#include "core_fixture.h"
#include "proc_status.h"
#include "registry.h"
#include "site_key.h"

#define ROOT_HASH 0x100000ull
#define DAEMON_UID 999u
#define FLOODER 4242u
#define MAX_PROCS 320u

/* ---- the fixture: fake clock, processes registered as their users ---- */

static uint64_t fake_ms;

static uint64_t fake_clock(void)
{
    return fake_ms;
}

static hkd_core_cfg base_cfg(void)
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
static const hkshm_header *start(const hkd_core_cfg *cfg)
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
static hkshm_region *spawn(uid_t uid, uint32_t registration)
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
static void end(const hkshm_region *r)
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

static void stop(const hkshm_header *h)
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
static int teardown(void **state)
{
    (void)state;
    if (mapped)
        stop(mapped);
    hkd_core_shutdown();
    return 0;
}

static void interval(void)
{
    fake_ms += 100;
    assert_int_equal(hkd_core_interval(), 0);
}

/* A process's flush: n sites of one module at offsets off0, off0 + 16,
 * ..., each with `allocs` allocations so far of 2^size_log2 bytes. */
static void flush(hkshm_region *s, uint64_t hash, const char *path, uint64_t off0, uint32_t n, uint64_t allocs,
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

static int grab_site(const hkd_site_info *si, void *arg)
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

static sites all_sites(void)
{
    sites s = { 0 };
    assert_int_equal(hkd_for_each_site(grab_site, &s), 0);
    return s;
}

static const hkd_site_info *find(const sites *s, uint32_t domain, uint64_t hash, uint64_t off)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].key.domain == domain && s->v[i].key.module_hash == hash && s->v[i].key.offset == off)
            return &s->v[i];
    return NULL;
}

static uint64_t total_pulls(const hkd_site_info *si)
{
    uint64_t n = 0;
    for (uint32_t a = 0; a < si->n_arms; a++)
        n += si->arms[a].pulls;
    return n;
}

static int grab_domain(const hkd_domain_info *d, void *arg)
{
    hkd_domain_info *want = arg;
    if (d->domain == want->domain)
        *want = *d;
    return 0;
}

static hkd_domain_info domain(uint32_t uid)
{
    hkd_domain_info d = { .domain = uid };
    assert_int_equal(hkd_for_each_domain(grab_domain, &d), 0);
    return d;
}

static const hkshm_table *table(const hkshm_header *h)
{
    return hkshm_table_at((void *)h, atomic_load(&h->active));
}

/* User domain's entry for (hash, off), as a client looks it up. */
static const hkshm_site_policy *entry(const hkshm_table *t, uint32_t domain, uint64_t hash, uint64_t off)
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

static void table_is_sorted(const hkshm_table *t)
{
    for (uint32_t i = 1; i < t->n_sites; i++) {
        const hkshm_site_policy *a = &t->sites[i - 1], *b = &t->sites[i];
        assert_true(hkshm_site_cmp(a->domain, a->module_hash, a->offset, b->domain, b->module_hash, b->offset) < 0);
    }
}

/* ---- tests ---- */

/* Root and user 1000 run the same binary: one key, two records, each with
 * exactly its own process's counts, its own learner (a pin of one leaves
 * the other alone) and its own size-band learners (only user 1000's sites
 * are thin).  The table carries an entry for each user's site, each with
 * its user's arm. */
static void two_domains_keep_apart(void **state)
{
    (void)state;
    hkd_core_cfg cfg = base_cfg();
    const hkshm_header *h = start(&cfg);
    hkshm_region *rootp = spawn(0, 1), *userp = spawn(1000, 1);
    enum { N = 8, ROUNDS = 30 };
    for (uint64_t r = 1; r <= ROUNDS; r++) {
        flush(rootp, 0xabc, "/usr/bin/shared", 0x100, N, 400 * r, 16);
        flush(userp, 0xabc, "/usr/bin/shared", 0x100, N, 3 * r, 12);
        interval();
    }
    sites s = all_sites();
    assert_int_equal(s.n, 2 * N);
    for (uint32_t i = 0; i < N; i++) {
        const hkd_site_info *root = find(&s, 0, 0xabc, 0x100 + 16 * i);
        const hkd_site_info *user = find(&s, 1000, 0xabc, 0x100 + 16 * i);
        assert_non_null(root);
        assert_non_null(user);
        assert_int_equal(root->allocs, 400 * ROUNDS);
        assert_int_equal(user->allocs, 3 * ROUNDS);
        assert_int_equal(root->processes, 1);
        assert_int_equal(user->processes, 1);
        assert_true(total_pulls(root) > 0);
        assert_true(user->thin);
        assert_false(root->thin);
    }
    free(s.v);
    assert_int_equal(domain(0).band_learners, 0);
    assert_true(domain(1000).band_learners >= 1);

    /* A pin of user 1000's site moves neither root's record nor root's
     * entry; the user's entry runs the pinned arm. */
    hkd_site_key k = { .module_hash = 0xabc, .offset = 0x100, .domain = 1000 };
    assert_int_equal(hkd_pin(&k, 7), 0);
    interval();
    s = all_sites();
    const hkd_site_info *root = find(&s, 0, 0xabc, 0x100), *user = find(&s, 1000, 0xabc, 0x100);
    assert_int_equal(user->pinned_arm, 7);
    assert_int_equal(root->pinned_arm, -1);
    assert_true(root->published);
    assert_true(user->published);
    const hkshm_table *t = table(h);
    table_is_sorted(t);
    assert_int_equal(t->n_sites, 2 * N);
    const hkshm_site_policy *e = entry(t, 0, 0xabc, 0x100), *ue = entry(t, 1000, 0xabc, 0x100);
    assert_non_null(e);
    assert_non_null(ue);
    assert_int_equal(e->large_threshold, root->thresholds.large_threshold);
    assert_int_equal(e->bigcache_slots, root->thresholds.bigcache_slots);
    assert_int_equal(e->thp, root->thresholds.thp);
    assert_int_equal(ue->arm, 7);
    assert_int_equal(ue->large_threshold, hkd_arms[7].large_threshold);
    /* Pinning root's key to another arm moves root's entry alone. */
    int other = hkd_arms[e->arm].large_threshold == hkd_arms[2].large_threshold ? 6 : 2;
    k.domain = 0;
    assert_int_equal(hkd_pin(&k, other), 0);
    assert_int_equal(entry(table(h), 0, 0xabc, 0x100)->arm, other);
    assert_int_equal(entry(table(h), 1000, 0xabc, 0x100)->arm, 7);
    free(s.v);
    stop(h);
}

/* 1,024,000 distinct fake keys from one user over 32 intervals (32,000
 * new ones each, from 125 processes) while root's 64 sites keep
 * reporting.  The flooder holds at most its cap; it adds at most its new
 * sites per interval; the rest are refused and counted; root's sites are
 * all there, published with their arms; and memory stops growing once the
 * flooder is at its cap: at most 8 MiB more over the last 12 intervals,
 * 64 MiB over the whole flood (a daemon that kept every key would need
 * about 1 GB). */
static void flood_stays_bounded_and_root_stays_published(void **state)
{
    (void)state;
    hkd_core_cfg cfg = base_cfg();
    const hkshm_header *h = start(&cfg);
    enum { PROCS = 125, ROUNDS = 32, ROOT_SITES = 64 };
    hkshm_region *rootp = spawn(0, 1);
    for (uint32_t p = 1; p <= PROCS; p++)
        spawn(FLOODER, 1);
    uint64_t rss_start = 0, rss_mid = 0;
    for (uint64_t r = 1; r <= ROUNDS; r++) {
        flush(rootp, ROOT_HASH, "/usr/sbin/rootd", 0x40, ROOT_SITES, 500 * r, 18);
        /* New keys at the same site indexes every round: what a hostile
         * client does (a daemon takes each as a new site, counted from
         * what it shows). */
        for (uint32_t p = 1; p <= PROCS; p++)
            flush(procs[p], 0xf100d000ull + r * PROCS + p, "/tmp/flood", 0x10, HKSHM_REGION_SITES, 100, 10);
        interval();
        hkd_domain_info f = domain(FLOODER);
        assert_true(f.sites <= HKD_DEFAULT_NEW_SITES * r);
        assert_true(f.sites <= HKD_DEFAULT_SITES_PER_USER);
        if (r == 1)
            rss_start = proc_status_bytes("VmRSS");
        if (r == 20)
            rss_mid = proc_status_bytes("VmRSS");
    }
    uint64_t rss_end = proc_status_bytes("VmRSS");
    hkd_domain_info f = domain(FLOODER);
    assert_int_equal(f.sites, HKD_DEFAULT_SITES_PER_USER);
    uint64_t keys = (uint64_t)ROUNDS * PROCS * HKSHM_REGION_SITES;
    assert_true(keys >= 1000000);
    assert_int_equal(f.refused + f.sites + f.evicted, keys);
    assert_int_equal(domain(0).refused, 0);
    hkd_status st;
    assert_int_equal(hkd_get_status(&st), 0);
    assert_int_equal(st.sites_refused, f.refused);
    assert_int_equal(st.sites, ROOT_SITES + HKD_DEFAULT_SITES_PER_USER);

    sites s = all_sites();
    const hkshm_table *t = table(h);
    table_is_sorted(t);
    for (uint32_t i = 0; i < ROOT_SITES; i++) {
        const hkd_site_info *si = find(&s, 0, ROOT_HASH, 0x40 + 16 * i);
        assert_non_null(si);
        assert_true(si->published);
        assert_int_equal(si->allocs, 500 * ROUNDS);
        const hkshm_site_policy *e = entry(t, 0, ROOT_HASH, 0x40 + 16 * i);
        assert_non_null(e);
        assert_int_equal(e->large_threshold, si->thresholds.large_threshold);
        assert_int_equal(e->bigcache_slots, si->thresholds.bigcache_slots);
    }
    free(s.v);
    print_message("RSS: %.1f MiB after the first flood interval, %.1f at 20, %.1f at 32\n", rss_start / 1048576.0,
                  rss_mid / 1048576.0, rss_end / 1048576.0);
    assert_true(rss_end < rss_mid + (8u << 20));
    assert_true(rss_end < rss_start + (64u << 20));
    stop(h);
}

/* A user may add 100 new sites per interval and hold 250 (configured):
 * reports of 400 keys are refused past that, each refusal counted, while
 * root adds 400 at once.  When the user moves on to 400 other keys, its
 * own idle sites make room, least recently reported first. */
static void per_user_limits_are_enforced_and_counted(void **state)
{
    (void)state;
    hkd_core_cfg cfg = base_cfg();
    cfg.new_sites_per_interval = 100;
    cfg.max_sites_per_user = 250;
    const hkshm_header *h = start(&cfg);
    /* 400 keys: 256 in one process, 144 in another.  Collected in the
     * order of their registry entries, even ones first: big, rootapp, big2. */
    hkshm_region *big = spawn(1000, 1), *big2 = spawn(1000, 1), *rootapp = spawn(0, 1);
    uint64_t refused_want[] = { 300, 300 + 200, 500 + 150, 650 + 150 };
    uint32_t sites_want[] = { 100, 200, 250, 250 };
    for (uint64_t r = 1; r <= 4; r++) {
        flush(big, 0x51, "/bin/big", 0x1000, 256, 100 * r, 12);
        flush(big2, 0x52, "/bin/big2", 0x1000, 144, 100 * r, 12);
        flush(rootapp, 0x53, "/usr/bin/rootapp", 0x1000, 256, 100 * r, 12);
        interval();
        hkd_domain_info u = domain(1000);
        assert_int_equal(u.sites, sites_want[r - 1]);
        assert_int_equal(u.refused, refused_want[r - 1]);
        assert_int_equal(domain(0).sites, 256);
    }
    assert_int_equal(domain(0).refused, 0);
    assert_true(domain(DAEMON_UID).trusted);

    /* The first 250 sites came in the order the user's processes were
     * collected; now its processes exit and two others report only new
     * keys: every interval its 100 least recently reported sites go, and
     * 100 new ones come. */
    end(big);
    end(big2);
    hkshm_region *next = spawn(1000, 1), *next2 = spawn(1000, 1);
    interval();
    for (uint64_t r = 5; r <= 10; r++) {
        flush(next, 0x61, "/bin/next", 0x1000, 256, 100 * r, 12);
        flush(next2, 0x62, "/bin/next2", 0x1000, 144, 100 * r, 12);
        interval();
        assert_true(domain(1000).sites <= 250);
    }
    hkd_domain_info u = domain(1000);
    assert_int_equal(u.sites, 250);
    assert_int_equal(u.evicted, 250);
    sites s = all_sites();
    size_t old = 0;
    for (size_t i = 0; i < s.n; i++)
        old += s.v[i].key.domain == 1000 && (s.v[i].key.module_hash == 0x51 || s.v[i].key.module_hash == 0x52);
    assert_int_equal(old, 0);
    free(s.v);
    stop(h);
}

static void copy_pulls(const hkd_site_info *si, uint64_t out[HKD_N_ARMS], double mean[HKD_N_ARMS])
{
    for (int a = 0; a < HKD_N_ARMS; a++) {
        out[a] = si->arms[a].pulls;
        mean[a] = si->arms[a].mean_reward;
    }
}

/* Sites nobody reports leave memory after the retention period, their
 * learning archived; when a process reports them again they come back
 * with exactly the pulls and means they had. */
static void idle_sites_age_out_and_come_back(void **state)
{
    (void)state;
    hkd_core_cfg cfg = base_cfg();
    cfg.retention_s = 600;
    const hkshm_header *h = start(&cfg);
    enum { N = 20 };
    hkshm_region *daily = spawn(0, 1);
    for (uint64_t r = 1; r <= 40; r++) {
        flush(daily, 0x77, "/usr/bin/daily", 0x500, N, 300 * r, 14);
        interval();
    }
    sites before = all_sites();
    assert_int_equal(before.n, N);
    uint64_t pulls[N][HKD_N_ARMS];
    double mean[N][HKD_N_ARMS];
    for (uint32_t i = 0; i < N; i++) {
        const hkd_site_info *si = find(&before, 0, 0x77, 0x500 + 16 * i);
        assert_true(total_pulls(si) > 0);
        copy_pulls(si, pulls[i], mean[i]);
    }
    /* The process exits (its last report is collected at the next
     * interval); nobody reports the sites any more. */
    end(daily);
    interval();
    interval();
    fake_ms += 598000;
    interval();
    sites still = all_sites();
    assert_int_equal(still.n, N);
    free(still.v);
    hkd_status st;
    assert_int_equal(hkd_get_status(&st), 0);
    assert_int_equal(st.sites_archived, 0);
    fake_ms += 2000;
    interval();
    sites gone = all_sites();
    assert_int_equal(gone.n, 0);
    free(gone.v);
    assert_int_equal(hkd_get_status(&st), 0);
    assert_int_equal(st.sites_archived, N);
    assert_int_equal(st.sites, 0);
    assert_int_equal(domain(0).evicted, N);

    /* Back: the same pulls and means, from the archive. */
    flush(spawn(0, 1), 0x77, "/usr/bin/daily", 0x500, N, 1, 14);
    interval();
    sites after = all_sites();
    assert_int_equal(after.n, N);
    for (uint32_t i = 0; i < N; i++) {
        const hkd_site_info *si = find(&after, 0, 0x77, 0x500 + 16 * i);
        assert_non_null(si);
        for (int a = 0; a < HKD_N_ARMS; a++) {
            assert_int_equal(si->arms[a].pulls, pulls[i][a]);
            assert_true(si->arms[a].mean_reward == mean[i][a]);
        }
    }
    assert_int_equal(hkd_get_status(&st), 0);
    assert_int_equal(st.sites_archived, 0);
    free(before.v);
    free(after.v);
    stop(h);
}

/* A process whose region the collector skips (held mid-write) keeps its
 * cookies while its site ages out and the record's place goes to another
 * site.  When it reports again, what it reports must go to its own site
 * (made anew), not to the site now in the reused place. */
static void an_evicted_record_is_never_reached_through_an_old_cookie(void **state)
{
    (void)state;
    hkd_core_cfg cfg = base_cfg();
    cfg.retention_s = 60;
    const hkshm_header *h = start(&cfg);
    hkshm_region *a = spawn(0, 1), *b = spawn(0, 1);
    for (uint64_t r = 1; r <= 3; r++) {
        flush(a, 0xa1, "/usr/bin/a", 0x10, 1, 10 * r, 12);
        interval();
    }
    /* A stays mid-write: skipped, its site unreported, until it ages out. */
    region_write_begin(a);
    interval();
    fake_ms += 61000;
    interval();
    sites none = all_sites();
    assert_int_equal(none.n, 0);
    free(none.v);
    /* B's new site takes the freed place. */
    flush(b, 0xb2, "/usr/bin/b", 0x20, 1, 7, 12);
    interval();
    /* A finishes its write: 1,000 more allocations. */
    a->sites[0].allocs = a->sites[0].frees = 30 + 1000;
    region_write_end(a);
    interval();
    sites s = all_sites();
    assert_int_equal(s.n, 2);
    const hkd_site_info *sb = find(&s, 0, 0xb2, 0x20), *sa = find(&s, 0, 0xa1, 0x10);
    assert_non_null(sb);
    assert_non_null(sa);
    assert_int_equal(sb->allocs, 7);
    assert_int_equal(sa->allocs, 1000);
    free(s.v);
    stop(h);
}

/* Readers by page (hakmemctl, metrics) after sites went: a page holds the
 * sites known, never a freed place; a place read again gives the site
 * there, or a later one, whose key says which; a place another site took
 * gives that site.  An export in pages holds the sites in memory and then
 * the archived ones, each once, the header in the first piece alone. */
static void pages_skip_the_sites_that_went_and_export_the_archive(void **state)
{
    (void)state;
    hkd_core_cfg cfg = base_cfg();
    cfg.retention_s = 60;
    const hkshm_header *h = start(&cfg);
    hkshm_region *a = spawn(0, 1), *b = spawn(0, 1);
    for (uint64_t r = 1; r <= 10; r++) {
        flush(a, 0xa0, "/usr/bin/a", 0x10, 4, 100 * r, 14);
        flush(b, 0xb0, "/usr/bin/b", 0x10, 4, 100 * r, 14);
        interval();
    }
    /* a's places, then a goes and its sites age out. */
    hkd_site_info page[16];
    uint32_t at[16], a_at[4], n_a = 0, cursor = 0;
    assert_int_equal(hkd_site_page(&cursor, page, at, 16), 8);
    for (int k = 0; k < 8; k++)
        if (page[k].key.module_hash == 0xa0)
            a_at[n_a++] = at[k];
    assert_int_equal(n_a, 4);
    end(a);
    interval();
    interval();
    fake_ms += 61000;
    interval();
    hkd_status st;
    assert_int_equal(hkd_get_status(&st), 0);
    assert_int_equal(st.sites, 4);
    assert_int_equal(st.sites_archived, 4);

    cursor = 0;
    assert_int_equal(hkd_site_page(&cursor, page, at, 16), 4);
    for (int k = 0; k < 4; k++) {
        assert_int_equal(page[k].key.module_hash, 0xb0);
        assert_true(k == 0 || at[k] > at[k - 1]);
        for (uint32_t i = 0; i < n_a; i++)
            assert_int_not_equal(at[k], a_at[i]);
    }
    assert_int_equal(hkd_site_page(&cursor, page, at, 16), 0);
    /* A freed place read again: a later site (b's), or none. */
    for (uint32_t i = 0; i < n_a; i++) {
        uint32_t place = a_at[i];
        int got = hkd_site_page(&place, page, at, 1);
        assert_true(got == 0 || (got == 1 && page[0].key.module_hash == 0xb0 && at[0] > a_at[i]));
    }

    /* New sites take freed places; every place read again is its site. */
    flush(spawn(0, 1), 0xc0, "/usr/bin/c", 0x10, 2, 100, 14);
    interval();
    cursor = 0;
    assert_int_equal(hkd_site_page(&cursor, page, at, 16), 6);
    uint32_t c_in_a_places = 0;
    for (int k = 0; k < 6; k++) {
        hkd_site_info one;
        uint32_t place = at[k];
        assert_int_equal(hkd_site_page(&place, &one, NULL, 1), 1);
        assert_true(hkd_site_key_eq(&one.key, &page[k].key));
        for (uint32_t i = 0; i < n_a; i++)
            c_in_a_places += page[k].key.module_hash == 0xc0 && at[k] == a_at[i];
    }
    assert_int_equal(c_in_a_places, 2);

    /* The export, three sites a piece. */
    uint8_t *all = NULL;
    size_t all_len = 0;
    uint32_t pieces = 0;
    int n;
    cursor = 0;
    do {
        uint8_t *buf;
        size_t len;
        n = hkd_policy_export_page(&cursor, 3, &buf, &len);
        assert_true(n >= 0);
        all = realloc(all, all_len + len + 1);
        assert_non_null(all);
        memcpy(all + all_len, buf, len);
        all_len += len;
        free(buf);
        pieces += n > 0;
    } while (n > 0);
    assert_int_equal(pieces, 4);
    hkd_policy pol;
    assert_int_equal(hkd_policy_decode(all, all_len, 0, &pol), 0);
    assert_int_equal(pol.n, 10);
    uint32_t from[3] = { 0 };
    for (size_t i = 0; i < pol.n; i++) {
        uint64_t m = pol.sites[i].key.module_hash;
        from[m == 0xa0 ? 0 : m == 0xb0 ? 1 : 2]++;
        for (size_t j = 0; j < i; j++)
            assert_false(hkd_site_key_eq(&pol.sites[i].key, &pol.sites[j].key));
    }
    assert_int_equal(from[0], 4);
    assert_int_equal(from[1], 4);
    assert_int_equal(from[2], 2);
    hkd_policy_free(&pol);
    free(all);
    stop(h);
}

enum { FLEET = 256, MOVED = 20 };

/* The full-table tests' processes: 256 of root, each with 256 light sites
 * (64 B blocks); the first MOVED of them may instead be processes of a
 * heavy binary (1 MiB blocks, keys that sort after every light one).  Each
 * round every process flushes, 100 allocations a site.  The counters a
 * process reports for a site count the rounds it reported it, and one
 * that comes back to its light sites has registered before (counted from
 * what it shows first): coming back does not look like a burst. */
typedef struct fleet {
    hkshm_region *light[FLEET], *heavy[MOVED];
    uint64_t light_rounds[FLEET], heavy_rounds[MOVED];
    int heavy_runs;                   /* the first MOVED are the heavy processes */
} fleet;

static void fleet_start(fleet *f)
{
    for (uint32_t p = 0; p < FLEET; p++)
        f->light[p] = spawn(0, 1);
}

/* The first MOVED light processes exit and heavy ones start (heavy), or
 * the other way round. */
static void fleet_move(fleet *f, int heavy)
{
    for (uint32_t p = 0; p < MOVED; p++) {
        end(heavy ? f->light[p] : f->heavy[p]);
        if (heavy)
            f->heavy[p] = spawn(0, 1);
        else
            f->light[p] = spawn(0, 2);
    }
    f->heavy_runs = heavy;
}

static void table_round(fleet *f)
{
    for (uint32_t p = 0; p < FLEET; p++) {
        if (f->heavy_runs && p < MOVED)
            flush(f->heavy[p], 0xfff00 + p, "/usr/bin/heavy", 0x10, HKSHM_REGION_SITES, 100 * ++f->heavy_rounds[p],
                  20);
        else
            flush(f->light[p], 0x100 + p, "/usr/bin/light", 0x10, HKSHM_REGION_SITES, 100 * ++f->light_rounds[p], 6);
    }
    interval();
}

/* Rounds 1 .. rounds, the heavy processes running from round 2. */
static void fleet_rounds(fleet *f, uint64_t rounds)
{
    fleet_start(f);
    for (uint64_t r = 1; r <= rounds; r++) {
        if (r == 2)
            fleet_move(f, 1);
        table_round(f);
    }
}

/* 70,656 sites of root for a table of 65,536: 65,536 light ones, then 20
 * processes exit and 20 of a heavy binary report 5,120 heavy ones.  The
 * table holds every site still reported, the heavy ones among them, and
 * leaves out the light sites nobody reports any more. */
static void a_full_table_holds_the_heaviest_sites(void **state)
{
    (void)state;
    hkd_core_cfg cfg = base_cfg();
    const hkshm_header *h = start(&cfg);
    static fleet f;
    memset(&f, 0, sizeof f);
    fleet_rounds(&f, 24);
    hkd_status st;
    assert_int_equal(hkd_get_status(&st), 0);
    assert_int_equal(st.sites, HKSHM_SITE_CAP + MOVED * HKSHM_REGION_SITES);
    const hkshm_table *t = table(h);
    assert_int_equal(t->n_sites, HKSHM_SITE_CAP);
    table_is_sorted(t);
    sites s = all_sites();
    uint32_t published = 0;
    for (size_t i = 0; i < s.n; i++) {
        const hkd_site_info *si = &s.v[i];
        int reported = si->processes > 0;
        assert_int_equal(si->published, reported);
        const hkshm_site_policy *e = entry(t, si->key.domain, si->key.module_hash, si->key.offset);
        assert_int_equal(e != NULL, reported);
        if (e) {
            assert_int_equal(e->large_threshold, si->thresholds.large_threshold);
            published++;
        }
    }
    assert_int_equal(published, HKSHM_SITE_CAP);
    free(s.v);
    stop(h);
}

/* The 20 light processes come back to their sites while the heavy ones,
 * idle, still weigh more: those light sites are reported but left out of
 * the table, so their clients run the defaults, and they do not learn
 * (their pulls stay where they were) while the others do. */
static void a_site_left_out_of_the_table_does_not_learn(void **state)
{
    (void)state;
    hkd_core_cfg cfg = base_cfg();
    const hkshm_header *h = start(&cfg);
    static fleet f;
    memset(&f, 0, sizeof f);
    fleet_rounds(&f, 12);
    sites before = all_sites();
    fleet_move(&f, 0);
    for (uint64_t r = 13; r <= 36; r++)
        table_round(&f);
    sites after = all_sites();
    uint32_t left_out = 0, others_learned = 0;
    for (size_t i = 0; i < after.n; i++) {
        const hkd_site_info *si = &after.v[i];
        if (si->key.module_hash >= 0xfff00)
            continue;
        const hkd_site_info *was = find(&before, 0, si->key.module_hash, si->key.offset);
        assert_non_null(was);
        assert_true(si->processes > 0);
        if (si->key.module_hash < 0x100 + MOVED) {
            assert_false(si->published);
            assert_int_equal(total_pulls(si), total_pulls(was));
            left_out++;
        } else {
            assert_true(si->published);
            others_learned += total_pulls(si) > total_pulls(was);
        }
    }
    assert_int_equal(left_out, MOVED * HKSHM_REGION_SITES);
    assert_true(others_learned > HKSHM_SITE_CAP / 2);
    free(before.v);
    free(after.v);
    stop(h);
}

static size_t state_file_size(void)
{
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, HKD_STATE_FILE);
    struct stat sb;
    return stat(path, &sb) == 0 ? (size_t)sb.st_size : 0;
}

/* A 64 KiB state file for root's 50 learned sites and another user's
 * 3,000 busier ones: saving succeeds, the file keeps to its cap, and
 * every one of root's sites is in it (the users take turns). */
static void the_state_file_keeps_to_its_cap_root_first(void **state)
{
    (void)state;
    hkd_core_cfg cfg = base_cfg();
    cfg.state_max_bytes = 64 << 10;
    const hkshm_header *h = start(&cfg);
    hkshm_region *rootp = spawn(0, 1);
    for (uint32_t p = 1; p <= 12; p++)
        spawn(FLOODER, 1);
    for (uint64_t r = 1; r <= 12; r++) {
        flush(rootp, ROOT_HASH, "/usr/sbin/rootd", 0x40, 50, 100 * r, 16);
        for (uint32_t p = 1; p <= 12; p++)
            flush(procs[p], 0x9000 + p, "/bin/busy", 0x40, 250, 5000 * r, 16);
        interval();
    }
    assert_int_equal(domain(FLOODER).sites, 3000);
    assert_int_equal(hkd_core_save(), 0);
    size_t size = state_file_size();
    assert_true(size > (32 << 10) && size <= (64 << 10));
    hkd_policy pol = core_fixture_read_state();
    size_t root = 0, other = 0;
    for (size_t i = 0; i < pol.n; i++) {
        root += pol.sites[i].key.domain == 0;
        other += pol.sites[i].key.domain == FLOODER;
    }
    assert_int_equal(root, 50);
    assert_true(other > 0 && other < 3000);
    hkd_policy_free(&pol);
    stop(h);
}

/* A state file written under a larger cap (root's 100 sites, another
 * user's 20,000): a daemon with a 64 KiB cap loads the worthiest that fit,
 * root's among them, and saves a file within its cap. */
static void a_state_file_over_the_cap_loads_the_worthiest(void **state)
{
    (void)state;
    enum { ROOT = 100, JUNK = 20000 };
    hkd_site_state *s = calloc(ROOT + JUNK, sizeof *s);
    assert_non_null(s);
    for (size_t i = 0; i < ROOT + JUNK; i++) {
        int root = i < ROOT;
        s[i].key = (hkd_site_key){ .module_hash = root ? ROOT_HASH : 0x3000, .offset = 16 * i,
                                   .domain = root ? 0 : FLOODER };
        s[i].pulls[4] = 5;
        s[i].mean[4] = 0.75f;
        s[i].current = 4;
        s[i].pinned = -1;
        s[i].last_seen = 1700000000u - (root ? 3600 : 0);
        s[i].usage = root ? 1000 : 1000000 + i;
    }
    uint8_t *buf;
    size_t len;
    assert_int_equal(hkd_policy_encode(s, ROOT + JUNK, NULL, 0, 3, 0, &buf, &len, NULL), 0);
    assert_true(len > (256 << 10));
    assert_int_equal(hkd_state_save(dir, buf, len), 0);
    free(buf);
    free(s);
    hkd_core_cfg cfg = base_cfg();
    cfg.state_max_bytes = 64 << 10;
    const hkshm_header *h = start(&cfg);
    sites got = all_sites();
    size_t root = 0;
    for (size_t i = 0; i < got.n; i++) {
        if (got.v[i].key.domain == 0) {
            root++;
            assert_int_equal(got.v[i].arms[4].pulls, 5);
            assert_true(got.v[i].published);
        }
    }
    assert_int_equal(root, ROOT);
    /* What fits in 64 KiB: some 500 of these sites (100 bytes or more each). */
    hkd_status st;
    assert_int_equal(hkd_get_status(&st), 0);
    assert_true(st.sites + st.sites_archived > ROOT && st.sites + st.sites_archived < 700);
    free(got.v);
    assert_int_equal(hkd_core_save(), 0);
    assert_true(state_file_size() <= (64 << 10));
    stop(h);
}

/* A state file as a daemon from before domains wrote it (every arm
 * listed; no domain, last-seen time, usage or sizes): its sites load as
 * root's, learned as they were, and are published. */
static void a_state_file_from_before_domains_loads_as_root(void **state)
{
    (void)state;
    enum { N = 4 };
    Hakmem__Policy__Policy pol = HAKMEM__POLICY__POLICY__INIT;
    Hakmem__Policy__SiteState ss[N], *sp[N];
    Hakmem__Policy__ArmState as[N][HKD_N_ARMS], *ap[N][HKD_N_ARMS];
    pol.format = (char *)HKD_POLICY_FORMAT;
    pol.generation = 9;
    pol.n_sites = N;
    pol.sites = sp;
    for (int i = 0; i < N; i++) {
        hakmem__policy__site_state__init(&ss[i]);
        ss[i].module_hash = 0xabc;
        ss[i].offset = 0x10 * (uint64_t)(i + 1);
        ss[i].module = (char *)"/usr/bin/old";
        ss[i].current_arm = (char *)hkd_arms[2 * i].name;
        ss[i].pinned_arm = (char *)"";
        ss[i].ref_cost_ns = 50.0;
        ss[i].n_arms = HKD_N_ARMS;
        ss[i].arms = ap[i];
        for (int a = 0; a < HKD_N_ARMS; a++) {
            hakmem__policy__arm_state__init(&as[i][a]);
            as[i][a].name = (char *)hkd_arms[a].name;
            as[i][a].pulls = a == 2 * i ? 6 : 0;
            as[i][a].reward_sum = a == 2 * i ? 3.0 : 0.0;
            ap[i][a] = &as[i][a];
        }
        sp[i] = &ss[i];
    }
    size_t len = hakmem__policy__policy__get_packed_size(&pol);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    hakmem__policy__policy__pack(&pol, buf);
    assert_int_equal(hkd_state_save(dir, buf, len), 0);
    free(buf);
    hkd_core_cfg cfg = base_cfg();
    const hkshm_header *h = start(&cfg);
    sites s = all_sites();
    assert_int_equal(s.n, N);
    const hkshm_table *t = table(h);
    assert_int_equal(t->n_sites, N);
    for (int i = 0; i < N; i++) {
        const hkd_site_info *si = find(&s, 0, 0xabc, 0x10 * (uint64_t)(i + 1));
        assert_non_null(si);
        assert_string_equal(si->module, "/usr/bin/old");
        assert_int_equal(si->arms[2 * i].pulls, 6);
        assert_true(si->arms[2 * i].mean_reward == 0.5);
        assert_true(si->published);
        assert_int_equal(entry(t, 0, 0xabc, 0x10 * (uint64_t)(i + 1))->arm, 2 * i);
    }
    free(s.v);
    stop(h);
}

int main(void)
{
    if (core_fixture_begin("domains") != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(two_domains_keep_apart, teardown),
        cmocka_unit_test_teardown(flood_stays_bounded_and_root_stays_published, teardown),
        cmocka_unit_test_teardown(per_user_limits_are_enforced_and_counted, teardown),
        cmocka_unit_test_teardown(idle_sites_age_out_and_come_back, teardown),
        cmocka_unit_test_teardown(an_evicted_record_is_never_reached_through_an_old_cookie, teardown),
        cmocka_unit_test_teardown(pages_skip_the_sites_that_went_and_export_the_archive, teardown),
        cmocka_unit_test_teardown(a_full_table_holds_the_heaviest_sites, teardown),
        cmocka_unit_test_teardown(a_site_left_out_of_the_table_does_not_learn, teardown),
        cmocka_unit_test_teardown(the_state_file_keeps_to_its_cap_root_first, teardown),
        cmocka_unit_test_teardown(a_state_file_over_the_cap_loads_the_worthiest, teardown),
        cmocka_unit_test_teardown(a_state_file_from_before_domains_loads_as_root, teardown),
    };
    return core_fixture_end(cmocka_run_group_tests(tests, NULL, NULL));
}
