/* The core with many users, in one process: domains keep their records,
 * learners and table entries apart; a flood of keys stays bounded while
 * root's sites stay published; the limits are enforced and counted; idle
 * sites age out to the archive and come back; an evicted record is never
 * reached through an old cookie; readers by page skip the sites that went
 * and an export holds the archive.  The core at its caps:
 * test_domain_caps.c.
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
    };
    return core_fixture_end(cmocka_run_group_tests(tests, NULL, NULL));
}
