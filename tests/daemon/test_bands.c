/* Size bands: when a site counts as thin, and that thin sites pooled in a
 * band find the best arm in far fewer intervals than each would alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "bands.h"
#include "core.h"
#include "learner.h"
#include "segment.h"
#include "core_fixture.h"

static void thin_and_thick(void **state)
{
    (void)state;
    const hkd_learn_cfg *cfg = &hkd_learn_default_cfg;   /* min_allocs 64: thin below 8, thick above 16 */
    hkd_thin t;
    hkd_thin_init(&t);
    /* A new site is judged by its first interval, not by an empty past. */
    assert_int_equal(hkd_thin_update(&t, 100, 18, 21, cfg), HKD_NO_BAND);
    hkd_thin_init(&t);
    int band = hkd_thin_update(&t, 2, 18, 21, cfg);
    assert_int_equal(band, hkd_band_index(18, 21));
    /* Hysteresis: between 8 and 16 per interval a thin site stays thin... */
    for (int i = 0; i < 40; i++)
        assert_int_equal(hkd_thin_update(&t, 12, 18, 21, cfg), band);
    /* ...and leaves its band above 16. */
    int own = 0;
    for (int i = 0; i < 40 && !own; i++)
        own = hkd_thin_update(&t, 40, 18, 21, cfg) == HKD_NO_BAND;
    assert_true(own);
    assert_int_equal(t.arm, -1);
    /* A busy site that goes quiet (a program run now and then) stays with
     * its own learner: idle intervals do not make it thin. */
    for (int i = 0; i < 100; i++)
        assert_int_equal(hkd_thin_update(&t, 0, 18, 21, cfg), HKD_NO_BAND);
    assert_int_equal(hkd_thin_update(&t, 100, 18, 21, cfg), HKD_NO_BAND);
    /* Without a known size range there is no band to join. */
    hkd_thin_init(&t);
    assert_int_equal(hkd_thin_update(&t, 1, -1, -1, cfg), HKD_NO_BAND);
    assert_int_equal(hkd_band_index(5, 4), HKD_NO_BAND);
    assert_int_equal(hkd_band_index(0, (int)HKSHM_HIST), HKD_NO_BAND);
}

/* Arm 4 is the cheapest (the learner explores no huge-page arm). */
static hkd_obs obs_for(int arm, uint64_t allocs)
{
    hkd_obs o = { 0 };
    o.allocs = allocs;
    o.bytes = allocs * (512u << 10);
    o.slow_ns = allocs * (uint64_t)(arm == 4 ? 200 : 1000 + 100 * arm);
    o.interval_s = 1.0;
    return o;
}

static void pooled_thin_sites_learn_fast(void **state)
{
    (void)state;
    enum { SITES = 24, ALLOCS = 4, INTERVALS = 150 };
    hkd_learn_cfg cfg = hkd_learn_default_cfg;
    hkd_bands *b = hkd_bands_new();
    assert_non_null(b);
    int band = hkd_band_index(18, 21);            /* 256 KiB .. 4 MiB: all eight arms differ */
    /* One of the same sites on its own learner, for comparison. */
    hkd_learn alone;
    hkd_learn_init(&alone);
    hkd_learn_set_sizes(&alone, 18, 21);
    for (int i = 0; i < INTERVALS; i++) {
        int arm = hkd_bands_arm(b, band);
        for (int s = 0; s < SITES; s++) {
            hkd_obs o = obs_for(arm, ALLOCS);
            assert_int_equal(hkd_bands_add(b, band, &o), 0);
        }
        hkd_bands_end_interval(b, &cfg);
        hkd_obs o = obs_for(hkd_learn_arm(&alone), ALLOCS);
        hkd_learn_observe(&alone, &cfg, &o);
    }
    const hkd_learn *l = hkd_bands_learner(b, band);
    assert_non_null(l);
    print_message("band: %u pulls, %u of arm 4; alone: %u pulls\n", l->total_pulls, l->pulls[4], alone.total_pulls);
    /* Pooled, a pull ends every interval but those that settle a switch;
     * alone, every 16th. */
    assert_true(l->total_pulls >= INTERVALS * 2 / 3);
    assert_true(alone.total_pulls <= INTERVALS / 16 + 1);
    assert_true(l->pulls[4] > l->total_pulls * 7 / 10);
    assert_true(hkd_learn_settled(l));
    /* Alone, the site has only begun: a few pulls of each arm. */
    assert_true(alone.pulls[4] * 10 < l->pulls[4]);
    /* Bands never seen run the default arm and have no learner. */
    assert_int_equal(hkd_bands_arm(b, hkd_band_index(3, 9)), HKD_DEFAULT_ARM);
    assert_null(hkd_bands_learner(b, hkd_band_index(3, 9)));
    assert_int_equal(hkd_bands_add(b, HKD_BAND_COUNT, &(hkd_obs){ 0 }), -22);
    hkd_bands_free(b);
}

/* ---- in the core: one client, thin sites and thick ones of one size band ---- */

#define THIN 30u
#define THICK 2u

static void flush_mixed(hkshm_region *s, uint64_t round)
{
    region_write_begin(s);
    s->n_modules = 1;
    s->modules[0].hash = 0xbad;
    snprintf(s->modules[0].path, sizeof s->modules[0].path, "/usr/bin/bands-test");
    for (uint32_t i = 0; i < THIN + THICK; i++) {
        hkshm_site *d = &s->sites[i];
        uint64_t a = (round + 1) * (i < THIN ? 3 : 500);
        d->module_hash = 0xbad;
        d->offset = 0x100 + 16 * i;
        d->allocs = d->frees = a;
        d->bytes = a * (1u << 20);
        d->slow_ns = a * (400 + 37 * (i % 5));
        d->size_hist[19] = (uint32_t)(a / 2);         /* 512 KiB .. 4 MiB: every arm differs */
        d->size_hist[21] = (uint32_t)(a - a / 2);
    }
    s->n_sites = THIN + THICK;
    region_write_end(s);
}

typedef struct band_view {
    uint32_t thin, thick, thin_own_pulls, thick_own_pulls;
    int thin_arm_differs;
    hkd_thresholds first;
    int have_first;
} band_view;

static int view_site(const hkd_site_info *si, void *arg)
{
    band_view *v = arg;
    uint64_t pulls = 0;
    for (uint32_t a = 0; a < si->n_arms; a++)
        pulls += si->arms[a].pulls;
    if (si->key.offset < 0x100 + 16 * THIN) {
        v->thin += si->thin != 0;
        v->thin_own_pulls += (uint32_t)pulls;
        if (!v->have_first) {
            v->first = si->thresholds;
            v->have_first = 1;
        }
        v->thin_arm_differs |= si->thresholds.large_threshold != v->first.large_threshold ||
                               si->thresholds.bigcache_slots != v->first.bigcache_slots ||
                               si->thresholds.thp != v->first.thp;
    } else {
        v->thick += si->thin == 0;
        v->thick_own_pulls += (uint32_t)pulls;
    }
    return 0;
}

static void thin_sites_share_their_band(void **state)
{
    (void)state;
    const hkshm_header *h = core_fixture_start(1, NULL);
    assert_non_null(h);
    hkshm_region *s;
    core_fixture_clients(&s, 1, 1);
    int arms_moved = 0;
    hkd_thresholds last = { 0 };
    for (uint64_t r = 0; r < 60; r++) {
        flush_mixed(s, r);
        assert_int_equal(hkd_core_interval(), 0);
        band_view v = { 0 };
        assert_int_equal(hkd_for_each_site(view_site, &v), 0);
        /* Every thin site runs its band's arm: all the same, every interval. */
        assert_int_equal(v.thin, THIN);
        assert_int_equal(v.thick, THICK);
        assert_false(v.thin_arm_differs);
        assert_int_equal(v.thin_own_pulls, 0);
        arms_moved += r > 0 && (v.first.large_threshold != last.large_threshold ||
                                v.first.bigcache_slots != last.bigcache_slots || v.first.thp != last.thp);
        last = v.first;
        if (r == 59)
            assert_true(v.thick_own_pulls > 20);       /* the thick ones learn alone */
    }
    /* 90 allocations an interval between them: the band completes pulls
     * and explores, where each site alone would need 22 intervals a pull. */
    assert_true(arms_moved >= 4);
    core_fixture_stop(h, &s, 1);
}

int main(void)
{
    if (core_fixture_begin("bands") != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(thin_and_thick),
        cmocka_unit_test(pooled_thin_sites_learn_fast),
        cmocka_unit_test(thin_sites_share_their_band),
    };
    return core_fixture_end(cmocka_run_group_tests(tests, NULL, NULL));
}
