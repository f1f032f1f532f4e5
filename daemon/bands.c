/* Size-band learners for thin sites.
 *
 * Learners are made for the bands that occur (a fleet uses few of the
 * 32 x 32 ranges) and never freed before the daemon stops; the bands a
 * thin site touched in the current interval are listed so that ending the
 * interval costs what was used, not a walk over every band. */
#include "bands.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define THIN_BELOW_DIV 8                /* thin below min_allocs / 8 per interval */
#define THICK_ABOVE_DIV 4               /* back to its own learner above min_allocs / 4 */
#define RATE_WEIGHT 0.25f               /* weight of the newest interval in the rate */

typedef struct band {
    hkd_learn learn;
    hkd_obs   acc;                      /* this interval, summed over its thin sites */
    int       touched;
} band;

struct hkd_bands {
    band    *by_index[HKD_BAND_COUNT];
    uint32_t n_made;
    uint16_t touched[HKD_BAND_COUNT];
    uint32_t n_touched;
};

void hkd_thin_init(hkd_thin *t)
{
    t->rate = -1.0f;
    t->band = HKD_NO_BAND;
    t->arm = -1;
    t->band_settled = 0;
}

int hkd_band_index(int lo, int hi)
{
    if (lo < 0 || hi < lo || hi >= (int)HKSHM_HIST)
        return HKD_NO_BAND;
    return lo * (int)HKSHM_HIST + hi;
}

int hkd_thin_update(hkd_thin *t, uint64_t allocs, int lo, int hi, const hkd_learn_cfg *cfg)
{
    /* Idle intervals say nothing: a site that allocates in bursts (a
     * program run now and then) is thick if its bursts finish pulls. */
    if (allocs == 0)
        return t->band;
    float now = allocs > (1u << 24) ? (float)(1u << 24) : (float)allocs;
    /* The first interval a site is seen sets the rate outright: a new site
     * is not thin for having had no past. */
    t->rate = t->rate < 0.0f ? now : t->rate + RATE_WEIGHT * (now - t->rate);
    float thin_below = (float)cfg->min_allocs / THIN_BELOW_DIV;
    float thick_above = (float)cfg->min_allocs / THICK_ABOVE_DIV;
    int band = hkd_band_index(lo, hi);
    if (band == HKD_NO_BAND || t->rate > thick_above)
        t->band = HKD_NO_BAND;
    else if (t->rate < thin_below || t->band != HKD_NO_BAND)
        t->band = (int16_t)band;        /* hysteresis: thin stays thin up to thick_above */
    if (t->band == HKD_NO_BAND)
        t->arm = -1;
    return t->band;
}

hkd_bands *hkd_bands_new(void)
{
    return calloc(1, sizeof(hkd_bands));
}

void hkd_bands_free(hkd_bands *b)
{
    if (!b)
        return;
    for (int i = 0; i < HKD_BAND_COUNT; i++)
        free(b->by_index[i]);
    free(b);
}

int hkd_bands_add(hkd_bands *b, int index, const hkd_obs *obs)
{
    if (index < 0 || index >= HKD_BAND_COUNT)
        return -EINVAL;
    band *d = b->by_index[index];
    if (!d) {
        if (!(d = calloc(1, sizeof *d)))
            return -ENOMEM;
        hkd_learn_init(&d->learn);
        hkd_learn_set_sizes(&d->learn, index / (int)HKSHM_HIST, index % (int)HKSHM_HIST);
        b->by_index[index] = d;
        b->n_made++;
    }
    if (!d->touched) {
        d->touched = 1;
        b->touched[b->n_touched++] = (uint16_t)index;
    }
    d->acc.allocs += obs->allocs;
    d->acc.bytes += obs->bytes;
    d->acc.slow_ns += obs->slow_ns;
    d->acc.faults += obs->faults;
    d->acc.large_allocs += obs->large_allocs;
    /* One interval, however many sites shared it. */
    d->acc.interval_s = obs->interval_s;
    return 0;
}

uint32_t hkd_bands_end_interval(hkd_bands *b, const hkd_learn_cfg *cfg)
{
    uint32_t changed = 0;
    for (uint32_t i = 0; i < b->n_touched; i++) {
        band *d = b->by_index[b->touched[i]];
        changed += (uint32_t)hkd_learn_observe(&d->learn, cfg, &d->acc);
        memset(&d->acc, 0, sizeof d->acc);
        d->touched = 0;
    }
    b->n_touched = 0;
    return changed;
}

int hkd_bands_arm(const hkd_bands *b, int index)
{
    if (index < 0 || index >= HKD_BAND_COUNT || !b->by_index[index])
        return HKD_DEFAULT_ARM;
    return hkd_learn_arm(&b->by_index[index]->learn);
}

const hkd_learn *hkd_bands_learner(const hkd_bands *b, int index)
{
    if (index < 0 || index >= HKD_BAND_COUNT || !b->by_index[index])
        return NULL;
    return &b->by_index[index]->learn;
}

uint32_t hkd_bands_count(const hkd_bands *b)
{
    return b->n_made;
}
