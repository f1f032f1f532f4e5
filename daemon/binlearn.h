/* Per-binary learner: which process-level arm the processes of one binary
 * run (include/hakmem_shm.h: hkshm_binary_policy).
 *
 * The arms are points between speed and memory, made of the knobs that
 * decide small-object programs: purge delay, retained segments, partial
 * page reuse, huge pages for small objects, the default large threshold,
 * BigCache's budget.  Arm 0 sets nothing: the process runs its own
 * defaults, exactly as it would without a daemon.
 *
 * One observation is one process run, or one window of a long-running
 * process.  Its cost is the CPU it used plus the operator's memory weight
 * times the MiB-seconds of RSS it held, per MiB it allocated.  The learner
 * keeps the logarithm of each measure: run-to-run noise is multiplicative,
 * and a difference of means is a ratio.  Dividing by the MiB allocated
 * does not make runs on small and large inputs alike (a small run's cost
 * per MiB is mostly its start), so arms are compared at equal work: each
 * measure is regressed on the logarithm of the MiB allocated, within arms
 * and pooled over them, and a difference of means is taken less the slope
 * times the difference of the arms' mean work (analysis of covariance).
 * `git add` of a whole tree and of one edit, or a compiler on a long and
 * a short file, then count as evidence for the same comparison.
 *
 * It is conservative: the default arm runs until another is better by
 * `z` standard errors of the difference and by `min_gain`, or until one
 * holds `min_peak_gain` less peak RSS on the means, shown lower by `z`
 * standard errors, with a cost within
 * `min_gain` of the default's and CPU and wall time shown within
 * `max_regression` of the default's; and an arm
 * whose CPU time, wall time or peak RSS is worse than the default's by
 * more than `max_regression` is never chosen, whatever the price (the RSS
 * held over time is priced by the cost).  Until every arm has `min_pulls`
 * observations or has been ruled out (shown worse, or twice the
 * default's cost), arms run in rounds, one run each, the default first,
 * so that a drift over the first runs weighs on every arm; after that
 * one run in `recheck` goes to the arm most likely to beat the choice
 * (one in `race` while an arm looks cheaper by min_gain without the
 * evidence to show it), and the others run the choice.
 *
 * A run is counted winsorised: each measure at most `clip_z` pooled
 * standard deviations (widened by the uncertainty of the arm's mean) from
 * what its arm's mean predicts at its work.  A shared machine stalls now
 * and then, and one run at twice its usual time among an arm's first few
 * would make that arm look dearer, or, on the default, every other arm
 * cheaper, for dozens of runs, and would widen the noise every gain is
 * tested against.
 *
 * Pure and deterministic: no clocks, no randomness, no globals beyond the
 * constant arm set. */
#ifndef HAKMEMD_BINLEARN_H
#define HAKMEMD_BINLEARN_H

#include <stddef.h>
#include <stdint.h>

#include "hakmem_shm.h"

#define HKD_BIN_ARMS        7
#define HKD_BIN_DEFAULT_ARM 0

typedef struct hkd_bin_arm {
    const char *name;
    uint32_t set;                       /* bit k: knob[k] is set (enum hkshm_knob) */
    uint32_t knob[HKSHM_KNOBS];
} hkd_bin_arm;

extern const hkd_bin_arm hkd_bin_arms[HKD_BIN_ARMS];

typedef struct hkd_bin_cfg {
    double   memory_weight_ns;          /* ns of CPU one MiB held for one second is worth */
    uint32_t min_pulls;                 /* observations of every arm before any choice */
    uint32_t recheck;                   /* once settled, one run in this many explores */
    uint32_t settled_report_every;      /* once settled on the choice, 1 in this many young
                                         * processes registers (hakmem_shm.h, Sampling) */
    uint32_t race;                      /* ... or in this many while an arm looks cheaper unproven */
    uint32_t race_pulls;                /* and has fewer observations than this */
    double   z;                         /* standard errors an arm must win by */
    double   clip_z;                    /* a run's measure counts at most this many
                                         * standard deviations from its arm's mean (0: off) */
    double   min_gain;                  /* and at least this ratio (0.01: 1% cheaper) */
    double   min_peak_gain;             /* or this much less peak RSS at the same time (0.1: 10%) */
    double   max_regression;            /* never an arm this much worse on time or memory */
    double   ruinous;                   /* an arm this many times the default's cost runs no more */
    double   min_cpu_s;                 /* shorter runs are too noisy to be evidence */
    uint32_t window;                    /* past this many observations, halve the counts */
    uint32_t arm_mask;                  /* arms that may run (e.g. no THP arm where THP is off) */
} hkd_bin_cfg;

extern const hkd_bin_cfg hkd_bin_default_cfg;

/* What one process run (or window) measured. */
typedef struct hkd_bin_obs {
    uint32_t arm;                       /* the arm it ran (HKD_BIN_DEFAULT_ARM if none applied) */
    double   cpu_s;                     /* user + system */
    double   wall_s;
    double   rss_mib_s;                 /* RSS integrated over the run */
    double   peak_mib;
    double   work_mib;                  /* allocated, the normaliser */
} hkd_bin_obs;

/* The measures kept per arm, as logarithms. */
enum hkd_bin_measure {
    HKD_BIN_COST = 0,                   /* (cpu + weight * rss) per MiB allocated */
    HKD_BIN_CPU,                        /* cpu per MiB allocated */
    HKD_BIN_WALL,                       /* wall per MiB allocated */
    HKD_BIN_MEM,                        /* rss MiB-seconds per MiB allocated */
    HKD_BIN_PEAK,                       /* peak RSS */
    HKD_BIN_MEASURES
};

typedef struct hkd_bin_stat {
    double   n;                         /* observations (halved past the window) */
    double   mean[HKD_BIN_MEASURES];
    double   m2[HKD_BIN_MEASURES];      /* sum of squared deviations (Welford) */
    /* The covariate, ln of the MiB allocated: how many of the n carried
     * it (fewer: statistics restored from a daemon that kept none, which
     * are then compared unadjusted), its mean, its sum of squared
     * deviations, and its sums of cross-deviations with each measure. */
    double   with_work;
    double   mean_work;
    double   sxx;
    double   sxy[HKD_BIN_MEASURES];
} hkd_bin_stat;

typedef struct hkd_bin_learn {
    hkd_bin_stat arm[HKD_BIN_ARMS];
    uint64_t observations;              /* taken, ever */
    uint64_t ignored;                   /* too short or malformed to count */
    uint32_t runs_since_choice;         /* for the recheck cadence */
    uint32_t rechecks;                  /* taken, ever: odd and even ones probe differently */
    int32_t  current;                   /* the arm published now */
    int32_t  pinned;                    /* -1: learning */
} hkd_bin_learn;

void hkd_bin_init(hkd_bin_learn *l);
/* `mask` less the arms that ask for huge pages for small objects (for a
 * kernel where asking changes nothing). */
uint32_t hkd_bin_arms_without_small_thp(uint32_t mask);
/* The cost of one observation: (cpu + weight * rss) per MiB allocated. */
double hkd_bin_cost(const hkd_bin_cfg *cfg, const hkd_bin_obs *o);
/* Takes one observation in and picks the arm to publish next.  Returns 1
 * when `current` changed, 0 when not, -1 when the observation was not
 * evidence (too short, malformed, an arm out of range): it is counted in
 * `ignored` and changes nothing else. */
int  hkd_bin_observe(hkd_bin_learn *l, const hkd_bin_cfg *cfg, const hkd_bin_obs *o);
/* The arm the evidence supports now (what runs when not exploring). */
int  hkd_bin_choice(const hkd_bin_learn *l, const hkd_bin_cfg *cfg);
/* 1 once every arm that may run has min_pulls observations or has been
 * shown to cost more than the default (it then runs no more). */
int  hkd_bin_settled(const hkd_bin_learn *l, const hkd_bin_cfg *cfg);
/* Once settled and not pinned: the arm that gets one run in `race`
 * because its mean undercuts the choice's, or (the default chosen) looks
 * leaner at the same cost, without the evidence to show it yet; or -1.
 * Until its race is run the choice may still change. */
int  hkd_bin_racing(const hkd_bin_learn *l, const hkd_bin_cfg *cfg);
/* The ratio of an arm's geometric mean of measure m to the default arm's,
 * at equal work (1.0 when either has no observation). */
double hkd_bin_ratio(const hkd_bin_learn *l, int arm, enum hkd_bin_measure m);
/* The same from a copy of the arms' statistics; NAN when either arm has
 * no observation. */
double hkd_bin_stats_ratio(const hkd_bin_stat arms[HKD_BIN_ARMS], int arm, enum hkd_bin_measure m);
/* Adds y's observations to x's (Chan's parallel update). */
void hkd_bin_stat_merge(hkd_bin_stat *x, const hkd_bin_stat *y);
/* Forces (arm >= 0) or releases (arm < 0) the arm; 1 when current changed. */
int  hkd_bin_pin(hkd_bin_learn *l, const hkd_bin_cfg *cfg, int arm);
/* The arm as the environment a person would set for it by hand
 * ("HAKMEM_PURGE_DELAY_MS=10 ..."; empty for the default arm) into buf;
 * its length, or -1 when the arm is out of range or buf too short. */
int  hkd_bin_arm_env(int arm, char *buf, size_t len);
/* Index of `name` in hkd_bin_arms, or -1. */
int  hkd_bin_arm_by_name(const char *name);

#endif
