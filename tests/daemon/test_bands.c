/* Size bands: when a site counts as thin, and that thin sites pooled in a
 * band find the best arm in far fewer intervals than each would alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "bands.h"
#include "learner.h"

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
    /* Without a known size range there is no band to join. */
    hkd_thin_init(&t);
    assert_int_equal(hkd_thin_update(&t, 1, -1, -1, cfg), HKD_NO_BAND);
    assert_int_equal(hkd_band_index(5, 4), HKD_NO_BAND);
    assert_int_equal(hkd_band_index(0, (int)HKSHM_HIST), HKD_NO_BAND);
}

/* Arm 5 is the cheapest, as in test_learner. */
static hkd_obs obs_for(int arm, uint64_t allocs)
{
    hkd_obs o = { 0 };
    o.allocs = allocs;
    o.bytes = allocs * (512u << 10);
    o.slow_ns = allocs * (uint64_t)(arm == 5 ? 200 : 1000 + 100 * arm);
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
    print_message("band: %u pulls, %u of arm 5; alone: %u pulls\n", l->total_pulls, l->pulls[5], alone.total_pulls);
    /* Pooled, a pull ends every interval but those that settle a switch;
     * alone, every 16th. */
    assert_true(l->total_pulls >= INTERVALS * 2 / 3);
    assert_true(alone.total_pulls <= INTERVALS / 16 + 1);
    assert_true(l->pulls[5] > l->total_pulls * 7 / 10);
    assert_true(hkd_learn_settled(l));
    /* Alone, the site has just tried each arm once by now. */
    assert_true(alone.pulls[5] <= 2);
    /* Bands never seen run the default arm and have no learner. */
    assert_int_equal(hkd_bands_arm(b, hkd_band_index(3, 9)), HKD_DEFAULT_ARM);
    assert_null(hkd_bands_learner(b, hkd_band_index(3, 9)));
    assert_int_equal(hkd_bands_add(b, HKD_BAND_COUNT, &(hkd_obs){ 0 }), -22);
    hkd_bands_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(thin_and_thick),
        cmocka_unit_test(pooled_thin_sites_learn_fast),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
