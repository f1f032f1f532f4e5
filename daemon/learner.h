/* UCB1 learner: which policy arm a site should run.
 *
 * Pure and deterministic: no clocks, no randomness, no globals beyond the
 * constant arm set.  The core feeds it one observation per site per
 * interval; a pull ends only at an interval boundary once it has seen
 * enough allocations, so noise cannot make it thrash. */
#ifndef HAKMEMD_LEARNER_H
#define HAKMEMD_LEARNER_H

#include <stddef.h>
#include <stdint.h>

#define HKD_N_ARMS 8
#define HKD_DEFAULT_ARM 0               /* the allocator's built-in defaults */

typedef struct hkd_arm {
    uint32_t large_threshold;
    uint16_t bigcache_slots;
    uint8_t  thp;
    const char *name;
} hkd_arm;

extern const hkd_arm hkd_arms[HKD_N_ARMS];

typedef struct hkd_learn_cfg {
    uint64_t min_allocs;                /* allocations before a pull may end */
    uint32_t settle_intervals;          /* ignored after a switch: clients lag a tick */
    uint32_t max_pull_intervals;        /* a thin site's pull ends after this many anyway */
    double   explore;                   /* UCB exploration coefficient (1.0 = UCB1) */
    uint64_t window;                    /* halve all counts past this many pulls; 0 = never */
    double   memory_weight_ns;          /* what BigCache holding 1 MiB idle for 1 s costs, in ns */
} hkd_learn_cfg;

/* The operator's default price of memory against CPU (hakmemd
 * --memory-weight), for sites and binaries alike.  On-demand prices in
 * AWS us-east-1: c6i.large (2 vCPU, 4 GiB) $0.085 an hour, r6i.large
 * (2 vCPU, 16 GiB) $0.126.  The 12 GiB between them cost $0.0034 per
 * GiB-hour, which leaves $0.0357 per vCPU-hour: a GiB-hour is worth 0.096
 * CPU-hours, so one MiB held for one second is worth 0.096 / 1024 s =
 * 94 us of CPU. */
#define HKD_MEMORY_WEIGHT_NS 94000.0

extern const hkd_learn_cfg hkd_learn_default_cfg;

/* What one interval cost a site, merged over processes. */
typedef struct hkd_obs {
    uint64_t allocs, bytes;
    uint64_t slow_ns;
    double   faults;                    /* page faults attributed to the site */
    uint64_t large_allocs;              /* allocations at or above the arm's threshold */
    double   interval_s;
} hkd_obs;

typedef struct hkd_learn {
    /* 32-bit counts and float means: the daemon walks this state for
     * every site every interval, so it is kept small (a reward is in
     * [0,1]; a float mean holds it to within 1e-7, far finer than any
     * two arms differ).  Means rather than sums: a choice then divides nothing,
     * and halving the counts (before the total would overflow, or past
     * the window) leaves them as they are. */
    uint32_t pulls[HKD_N_ARMS];
    float    mean[HKD_N_ARMS];
    uint32_t total_pulls;
    int32_t  current;                   /* arm being pulled (and published) */
    int32_t  pinned;                    /* -1: learning */
    /* the pull in progress (continued below) */
    uint32_t settle;
    uint32_t pull_intervals;
    /* log2 of the smallest and largest size the site allocates (from its
     * histogram): arms that cannot differ for these sizes share one
     * canonical arm, so the site explores only arms that matter. */
    uint8_t  sizes_known, size_lo, size_hi;
    uint8_t  canon[HKD_N_ARMS];         /* canonical arm of each arm, for those sizes */
    double   ref_cost;                  /* ns/alloc that scores 0.5; 0 until known */
    uint64_t acc_allocs, acc_bytes, acc_slow_ns, acc_large;
    double   acc_faults, acc_seconds;
} hkd_learn;

void   hkd_learn_init(hkd_learn *l);
/* Cost of one allocation in ns, from what a pull accumulated under `arm`,
 * memory priced at cfg->memory_weight_ns. */
double hkd_learn_cost(const hkd_learn *l, const hkd_learn_cfg *cfg, int arm);
/* Cost -> reward in [0,1]: 0.5 at ref, +0.25 per halving, -0.25 per doubling. */
double hkd_reward_from_cost(double cost, double ref);
/* UCB1 choice given the statistics so far (lowest index wins ties). */
int    hkd_ucb_select(const hkd_learn *l, double explore);

/* What other hosts of a fleet learned of a site (daemon/fleet.h): per arm,
 * their pulls and reward sums.  It is kept beside the site's own learner,
 * never in it, so that what a host tells the fleet is only what it saw
 * itself; a choice adds the two.  All zeros: nothing from the fleet. */
typedef struct hkd_prior {
    double pulls[HKD_N_ARMS];
    double reward_sum[HKD_N_ARMS];
} hkd_prior;

/* UCB1 over the site's own statistics plus the fleet's (p may be NULL). */
int    hkd_ucb_select_with(const hkd_learn *l, const hkd_prior *p, double explore);
/* The arm a site pulls next: UCB1 over both, except that while the site
 * has fewer than four pulls of its own and the fleet has some, the best
 * arm of both (a host confirms the fleet's choice before it explores). */
int    hkd_learn_next_with(const hkd_learn *l, const hkd_prior *p, double explore);
/* hkd_learn_settled over the own statistics plus the fleet's. */
int    hkd_learn_settled_with(const hkd_learn *l, const hkd_prior *p);
/* The arm a site settles on given both: the relevant arm of the best mean
 * reward (lowest index wins ties), or -1 while a relevant arm has no pull. */
int    hkd_learn_best_with(const hkd_learn *l, const hkd_prior *p);
/* Replaces the arm statistics with 64-bit counts and reward sums (a state
 * file, a merge), halving every count (means kept) until the total fits. */
void   hkd_learn_set_counts(hkd_learn *l, const uint64_t pulls[HKD_N_ARMS], const double reward_sum[HKD_N_ARMS]);
/* An arm's reward sum (mean times pulls), as state files keep it. */
static inline double hkd_learn_reward_sum(const hkd_learn *l, int arm) { return (double)l->mean[arm] * l->pulls[arm]; }
/* Records a finished pull of `arm`. */
void   hkd_ucb_update(hkd_learn *l, int arm, double reward, uint64_t window);
/* Feeds one interval; returns 1 when the current arm changed (republish).
 * A pull that ends chooses the next arm with the fleet's statistics too
 * (prior; NULL: none). */
int    hkd_learn_observe_with(hkd_learn *l, const hkd_learn_cfg *cfg, const hkd_obs *obs, const hkd_prior *prior);
static inline int hkd_learn_observe(hkd_learn *l, const hkd_learn_cfg *cfg, const hkd_obs *obs)
{
    return hkd_learn_observe_with(l, cfg, obs, NULL);
}
/* Starts a fresh pull of the current arm after `settle` intervals (a site
 * back from learning with its size band: what it accumulated before is
 * stale). */
void   hkd_learn_resume(hkd_learn *l, uint32_t settle);
/* Pins (arm >= 0) or releases (arm < 0).  Returns 1 when the arm changed. */
int    hkd_learn_pin(hkd_learn *l, int arm);
/* The arm to publish now. */
static inline int hkd_learn_arm(const hkd_learn *l) { return l->pinned >= 0 ? l->pinned : l->current; }
/* 1 when the site exploits: pinned, or every arm that matters for its
 * sizes has completed a pull and the arm published has the best mean
 * reward of them.  Exploration may still revisit an arm later. */
int    hkd_learn_settled(const hkd_learn *l);
/* The arm that behaves like `arm` for sizes in [2^lo, 2^(hi+1)). */
int    hkd_arm_canonical(int arm, int lo, int hi);
/* Records the site's size range (log2 buckets). */
void   hkd_learn_set_sizes(hkd_learn *l, int lo, int hi);
/* Index of `name` in hkd_arms, or -1. */
int    hkd_arm_by_name(const char *name);

#endif
