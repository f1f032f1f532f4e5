/* The core with many users at its caps, in one process: a full table
 * holds the heaviest sites, and a site left out of it does not learn; the
 * state file keeps to its cap, root's history first, and one over the cap
 * loads the worthiest records; files from before domains load as root's.
 *
 * Simulated processes are report regions registered in-process, each as
 * the user it runs as (domains_fixture.h).  Time is a fake wall clock. */
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

#include "domains_fixture.h"
#include "policy.pb-c.h"
#include "proc_status.h"

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
    if (core_fixture_begin("domain-caps") != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(a_full_table_holds_the_heaviest_sites, teardown),
        cmocka_unit_test_teardown(a_site_left_out_of_the_table_does_not_learn, teardown),
        cmocka_unit_test_teardown(the_state_file_keeps_to_its_cap_root_first, teardown),
        cmocka_unit_test_teardown(a_state_file_over_the_cap_loads_the_worthiest, teardown),
        cmocka_unit_test_teardown(a_state_file_from_before_domains_loads_as_root, teardown),
    };
    return core_fixture_end(cmocka_run_group_tests(tests, NULL, NULL));
}
