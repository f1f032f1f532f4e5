/* Thin sites learn by size band.
 *
 * A site that makes fewer than min_allocs / 8 allocations in the intervals
 * it allocates at all would take many intervals for each pull of its own,
 * and a fleet has many such sites.  While a site is thin, its observations
 * go to the learner of its size band (the log2 range [lo, hi] of what it
 * allocates, which is also what decides the arms that can differ for it)
 * and it runs that learner's arm.  Its own learner keeps what it knew and
 * takes over again once the site allocates more than min_allocs / 4 per
 * active interval.  Band learners start cold with the daemon: pooled, they
 * relearn in a few pulls. */
#ifndef HAKMEMD_BANDS_H
#define HAKMEMD_BANDS_H

#include <stdint.h>

#include "hakmem_shm.h"
#include "learner.h"

#define HKD_BAND_COUNT ((int)(HKSHM_HIST * HKSHM_HIST))
#define HKD_NO_BAND    (-1)

/* A site's thinness, kept by the core next to its learner. */
typedef struct hkd_thin {
    float   rate;                       /* allocations per interval, smoothed; < 0 until seen */
    int16_t band;                       /* the band it learns with, or HKD_NO_BAND */
    int8_t  arm;                        /* the band's arm it runs; -1: none yet */
    uint8_t band_settled;               /* the band's learner exploits (hkd_learn_settled) */
} hkd_thin;

void hkd_thin_init(hkd_thin *t);
/* Takes in one interval's allocations of a site whose sizes are
 * [2^lo, 2^(hi+1)) (lo < 0: not known yet) and says which band it learns
 * with now: a band index, or HKD_NO_BAND for its own learner.  The rate
 * is per interval with allocations: idle intervals leave it as it is. */
int  hkd_thin_update(hkd_thin *t, uint64_t allocs, int lo, int hi, const hkd_learn_cfg *cfg);

typedef struct hkd_bands hkd_bands;

hkd_bands *hkd_bands_new(void);
void hkd_bands_free(hkd_bands *b);
int  hkd_band_index(int lo, int hi);
/* Adds one thin site's interval to its band's; 0, or -ENOMEM. */
int  hkd_bands_add(hkd_bands *b, int band, const hkd_obs *obs);
/* Ends the interval: every band that saw a thin site feeds its learner
 * once.  Returns how many bands changed arm. */
uint32_t hkd_bands_end_interval(hkd_bands *b, const hkd_learn_cfg *cfg);
/* The arm a band runs (the default arm for a band never seen). */
int  hkd_bands_arm(const hkd_bands *b, int band);
/* How many bands have a learner (have seen a thin site). */
uint32_t hkd_bands_count(const hkd_bands *b);
/* The band's learner, or NULL for a band never seen (read-only). */
const hkd_learn *hkd_bands_learner(const hkd_bands *b, int band);

#endif
