/* What the daemon keeps and what it picks, box by box: the archive (a
 * model check of put/take/forget, and a full archive dropping its least
 * valuable with users taking turns), the table's pick (the heaviest, every
 * domain's first), and the domains' limits (counted refusals, root and the
 * daemon's user never limited, who makes room). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "archive.h"
#include "domains.h"
#include "log.h"
#include "pick.h"
#include "value.h"

static hkd_site_state entry_for(uint32_t domain, uint64_t offset, uint32_t last_seen, uint64_t usage)
{
    hkd_site_state s;
    memset(&s, 0, sizeof s);
    s.key = (hkd_site_key){ .module_hash = 0x5150, .offset = offset, .domain = domain };
    s.pulls[3] = (uint32_t)(offset % 97) + 1;
    s.mean[3] = 0.25f;
    s.pinned = -1;
    s.last_seen = last_seen;
    s.usage = usage;
    return s;
}

/* Random puts, takes and forgets against a plain array: the archive finds
 * exactly what the model holds, whatever deletions moved. */
static void archive_matches_a_model(void **state)
{
    (void)state;
    enum { KEYS = 3000, OPS = 200000 };
    hkd_archive *a = hkd_archive_new(KEYS);
    assert_non_null(a);
    uint8_t *held = calloc(KEYS, 1);
    uint32_t *ver = calloc(KEYS, sizeof *ver);
    uint64_t x = 88172645463325252ull;
    uint32_t n = 0;
    for (uint32_t op = 0; op < OPS; op++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint32_t k = (uint32_t)(x % KEYS);
        hkd_site_state s = entry_for(k % 3, (uint64_t)k << 20, op, op), got;
        switch ((x >> 32) % 4) {
        case 0:
        case 1:
            assert_int_equal(hkd_archive_put(a, &s), 0);
            n += !held[k];
            held[k] = 1;
            ver[k] = op;
            break;
        case 2:
            assert_int_equal(hkd_archive_take(a, &s.key, &got), held[k]);
            if (held[k]) {
                assert_int_equal(got.last_seen, ver[k]);
                n--;
            }
            held[k] = 0;
            break;
        default:
            assert_int_equal(hkd_archive_forget(a, &s.key), held[k]);
            n -= held[k];
            held[k] = 0;
        }
        assert_int_equal(hkd_archive_count(a), n);
    }
    uint32_t m;
    const hkd_site_state *e = hkd_archive_entries(a, &m);
    assert_int_equal(m, n);
    for (uint32_t i = 0; i < m; i++) {
        uint32_t k = (uint32_t)(e[i].key.offset >> 20);
        assert_true(held[k]);
        assert_int_equal(e[i].last_seen, ver[k]);
    }
    assert_int_equal(hkd_archive_forget(a, NULL), n);
    assert_int_equal(hkd_archive_count(a), 0);
    free(held);
    free(ver);
    hkd_archive_free(a);
}

/* A full archive of 1,024: root's 300 old entries, then a user's 5,000
 * newer ones.  Root keeps all of its own (the users take turns, and an
 * eighth goes at a time); the other user's newest are what stays. */
static void a_full_archive_drops_the_least_valuable_users_taking_turns(void **state)
{
    (void)state;
    hkd_archive *a = hkd_archive_new(1024);
    for (uint32_t i = 0; i < 300; i++) {
        hkd_site_state s = entry_for(0, i, 1600000000u, 5000);
        assert_int_equal(hkd_archive_put(a, &s), 0);
    }
    for (uint32_t i = 0; i < 5000; i++) {
        hkd_site_state s = entry_for(4242, i, 1700000000u + i * 86400u, 1);
        assert_int_equal(hkd_archive_put(a, &s), 0);
    }
    uint32_t n, root = 0, oldest_junk = UINT32_MAX;
    const hkd_site_state *e = hkd_archive_entries(a, &n);
    assert_true(n <= 1024 && n > 800);
    for (uint32_t i = 0; i < n; i++) {
        if (e[i].key.domain == 0)
            root++;
        else if (e[i].last_seen < oldest_junk)
            oldest_junk = e[i].last_seen;
    }
    assert_int_equal(root, 300);
    /* The junk kept is the newest: nothing older than its last 1,100 days. */
    assert_true(oldest_junk >= 1700000000u + (5000 - 1100) * 86400u);
    hkd_archive_free(a);
}

static int pick_heavier_first(const void *a, const void *b)
{
    const hkd_pick *x = a, *y = b;
    return x->weight > y->weight ? -1 : x->weight < y->weight;
}

/* Domain 0 with 10 light sites, domain 1 with 100,000 heavy ones, domain
 * 2 with 50 middling ones, a table of 1,000: every site of domains 0 and
 * 2, and domain 1's 940 heaviest. */
static void the_pick_gives_every_domain_its_turns(void **state)
{
    (void)state;
    size_t n = 10 + 100000 + 50;
    hkd_pick *v = malloc(n * sizeof *v);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint32_t d = i < 10 ? 0 : i < 100010 ? 1 : 2;
        v[i] = (hkd_pick){ .weight = d == 0 ? 1 : d == 1 ? 1000 + x % 1000000 : 500, .domain = d, .id = (uint32_t)i };
    }
    assert_int_equal(hkd_pick_fair(v, n, 1000, 3), 1000);
    size_t per[3] = { 0 };
    uint64_t lightest_kept = UINT64_MAX;
    for (size_t i = 0; i < 1000; i++) {
        per[v[i].domain]++;
        if (v[i].domain == 1 && v[i].weight < lightest_kept)
            lightest_kept = v[i].weight;
    }
    assert_int_equal(per[0], 10);
    assert_int_equal(per[2], 50);
    assert_int_equal(per[1], 940);
    for (size_t i = 1000; i < n; i++) {
        assert_int_equal(v[i].domain, 1);
        assert_true(v[i].weight <= lightest_kept);
    }
    /* Still a permutation. */
    uint8_t *seen = calloc(n, 1);
    for (size_t i = 0; i < n; i++)
        seen[v[i].id]++;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(seen[i], 1);
    free(seen);

    /* Three domains of 5 for 7 places: two turns each, and the seventh is
     * the heaviest of the third turn. */
    hkd_pick w[15];
    for (uint32_t i = 0; i < 15; i++)
        w[i] = (hkd_pick){ .weight = 100 * (i / 5) + (4 - i % 5), .domain = i / 5, .id = i };
    assert_int_equal(hkd_pick_fair(w, 15, 7, 3), 7);
    qsort(w, 7, sizeof *w, pick_heavier_first);
    uint32_t want[7] = { 10, 11, 12, 5, 6, 0, 1 };
    for (int i = 0; i < 7; i++)
        assert_int_equal(w[i].id, want[i]);
    free(v);
}

/* Limits: a user's new sites per interval, its cap and the pool of all
 * such users, each refusal counted; root and the daemon's user never
 * limited but by everyone's cap; who makes room when someone waits. */
static void domains_limit_users_and_never_root(void **state)
{
    (void)state;
    hkd_domain_limits lim = { .self_uid = 999, .max_sites_per_user = 30, .new_per_interval = 10,
                              .untrusted_max = 50, .max_sites = 200 };
    hkd_domains *d = hkd_domains_new(&lim);
    assert_non_null(d);
    int root = hkd_domains_slot(d, 0), self = hkd_domains_slot(d, 999);
    int u1 = hkd_domains_slot(d, 1000);
    assert_true(root >= 0 && self >= 0 && u1 >= 0);
    assert_int_equal(hkd_domains_slot(d, 1000), u1);
    assert_true(hkd_domains_trusted(d, root) && hkd_domains_trusted(d, self) && !hkd_domains_trusted(d, u1));
    uint32_t want[HKD_DOMAINS_MAX];
    int admitted = 0;
    for (int i = 0; i < 25; i++)
        admitted += hkd_domains_admit(d, u1, 1) == 0;
    assert_int_equal(admitted, 10);
    assert_int_equal(hkd_domains_admit(d, u1, 1), -EAGAIN);
    assert_int_equal(hkd_domains_room_wanted(d, want), 0);   /* refused for the rate: no room to make */
    for (int i = 0; i < 100; i++)
        assert_int_equal(hkd_domains_admit(d, root, 1), 0);
    hkd_domains_end_interval(d, 1000);
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 10; i++)
            hkd_domains_admit(d, u1, 1);
        hkd_domains_end_interval(d, 1000);
    }
    assert_int_equal(hkd_domains_sites(d, u1), 30);
    assert_int_equal(hkd_domains_admit(d, u1, 1), -EDQUOT);
    assert_true(hkd_domains_room_wanted(d, want));
    assert_int_equal(want[u1], 1);                           /* at its own cap: its own room */
    hkd_domains_end_interval(d, 1000);
    /* u2 fills the pool (50 with u1's 30), then waits: u1, the biggest,
     * makes room.  (A slot is good until its user has no sites at the end
     * of an interval: asked for again each interval until then.) */
    int u2 = hkd_domains_slot(d, 1001);
    assert_true(u2 >= 0 && u2 != u1);
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 10; i++)
            hkd_domains_admit(d, u2, 1);
        hkd_domains_end_interval(d, 1000);
    }
    assert_int_equal(hkd_domains_sites(d, u2), 20);
    assert_int_equal(hkd_domains_admit(d, u2, 1), -EDQUOT);
    assert_true(hkd_domains_room_wanted(d, want));
    assert_int_equal(want[u1], 1);
    assert_int_equal(want[u2], 0);
    /* Root and the daemon's user go on up to everyone's cap (200). */
    admitted = 0;
    for (int i = 0; i < 100; i++)
        admitted += hkd_domains_admit(d, self, 1) == 0;
    assert_int_equal(admitted, 200 - 100 - 50);
    assert_int_equal(hkd_domains_admit(d, root, 1), -EDQUOT);
    assert_int_equal(hkd_domains_live(d), 200);
    hkd_domains_evicted(d, u1);
    assert_int_equal(hkd_domains_admit(d, root, 1), 0);
    hkd_domains_end_interval(d, 1000);
    uint32_t n_dom;
    uint64_t refused, evicted;
    hkd_domains_totals(d, &n_dom, &refused, &evicted);
    assert_int_equal(n_dom, 4);
    assert_int_equal(evicted, 1);
    /* u1: 16 for the rate, 11 at its cap; u2: 11 at the pool's; the
     * daemon's user 50 and root 1 at everyone's. */
    assert_int_equal(refused, 16 + 11 + 11 + 50 + 1);
    hkd_domains_free(d);
}

int main(void)
{
    hkd_log_init("test_keep", HKD_LOG_ERR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(archive_matches_a_model),
        cmocka_unit_test(a_full_archive_drops_the_least_valuable_users_taking_turns),
        cmocka_unit_test(the_pick_gives_every_domain_its_turns),
        cmocka_unit_test(domains_limit_users_and_never_root),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
