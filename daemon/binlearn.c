/* Per-binary learner (see binlearn.h). */
#include "binlearn.h"
#include "learner.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define KNOB(k) (1u << (k))

/* Arm 0 sets nothing: a binary the daemon knows nothing of runs as it
 * would without a daemon.  Indices are what clients report the arm they
 * ran by, so a new arm is appended, never inserted. */
const hkd_bin_arm hkd_bin_arms[HKD_BIN_ARMS] = {
    { "default", 0, { 0 } },
    { "lean",
      KNOB(HKSHM_KNOB_PURGE_DELAY_MS) | KNOB(HKSHM_KNOB_RETAINED_SEGMENTS) | KNOB(HKSHM_KNOB_PARTIAL_REUSE) |
          KNOB(HKSHM_KNOB_THP) | KNOB(HKSHM_KNOB_BIGCACHE_KIB),
      { [HKSHM_KNOB_PURGE_DELAY_MS] = 0, [HKSHM_KNOB_RETAINED_SEGMENTS] = 0, [HKSHM_KNOB_PARTIAL_REUSE] = 3,
        [HKSHM_KNOB_THP] = 0, [HKSHM_KNOB_BIGCACHE_KIB] = 32u << 10 } },
    /* Huge pages for large blocks: a program replacing big buffers keeps
     * them when BigCache hands the memory on (README.md, HAKMEM_LARGE_THP);
     * one touching big blocks sparsely holds more, which the guard on peak
     * RSS catches. */
    { "fast",
      KNOB(HKSHM_KNOB_PURGE_DELAY_MS) | KNOB(HKSHM_KNOB_RETAINED_SEGMENTS) | KNOB(HKSHM_KNOB_PARTIAL_REUSE) |
          KNOB(HKSHM_KNOB_THP) | KNOB(HKSHM_KNOB_BIGCACHE_KIB),
      { [HKSHM_KNOB_PURGE_DELAY_MS] = 2000, [HKSHM_KNOB_RETAINED_SEGMENTS] = 16, [HKSHM_KNOB_PARTIAL_REUSE] = 0,
        [HKSHM_KNOB_THP] = HKSHM_THP_LARGE, [HKSHM_KNOB_BIGCACHE_KIB] = 512u << 10 } },
    { "fast-thp",
      KNOB(HKSHM_KNOB_PURGE_DELAY_MS) | KNOB(HKSHM_KNOB_RETAINED_SEGMENTS) | KNOB(HKSHM_KNOB_PARTIAL_REUSE) |
          KNOB(HKSHM_KNOB_THP) | KNOB(HKSHM_KNOB_BIGCACHE_KIB),
      { [HKSHM_KNOB_PURGE_DELAY_MS] = 2000, [HKSHM_KNOB_RETAINED_SEGMENTS] = 16, [HKSHM_KNOB_PARTIAL_REUSE] = 0,
        [HKSHM_KNOB_THP] = HKSHM_THP_SMALL | HKSHM_THP_LARGE, [HKSHM_KNOB_BIGCACHE_KIB] = 512u << 10 } },
    /* Pages of the 16-128 KiB classes are as small as their blocks allow
     * instead of holding eight, and nothing else changes: a page whose
     * blocks are all free goes back whole, to be taken by a page of any
     * class that fits its slot, so a server keeping a few medium blocks of
     * many sizes live holds less at the same speed.  Against the default
     * arm (bash bench/run.sh --filter suite --configs
     * hakmem-baseline,hakmem-arm-compact, 3 runs): larson 0.84 of its peak
     * RSS at 0.99 of its time, grow-shrink 1.01; git 1.22, whose small
     * pages come to sit on slots the medium ones left resident whole, and
     * which the guard on peak RSS keeps from it.  Two blocks a page gained
     * larson half as much. */
    { "compact", KNOB(HKSHM_KNOB_MEDIUM_PAGE_BLOCKS), { [HKSHM_KNOB_MEDIUM_PAGE_BLOCKS] = 1 } },
    /* Fresh pages of a class, after a heap's first of it, are faulted in
     * 32 KiB at a time as they are carved: one system call instead of eight
     * faults.  Where a fault costs far more than the page (this VM: 11 us
     * against 0.7), allocation-heavy programs run faster for a little more
     * RSS, while a small program holds stretches it never carves
     * (HAKMEM_POPULATE_KIB in README.md). */
    { "populate", KNOB(HKSHM_KNOB_POPULATE_KIB), { [HKSHM_KNOB_POPULATE_KIB] = 32 } },
    /* Huge pages for small objects past a thread heap's first 16 MiB and
     * for large blocks, and nothing else.  What they are worth is the
     * machine's: on a VM where a 4 KiB fault costs 11 us and memory in huge
     * pages 0.24 us a 4 KiB page once the host backs it, python
     * (bench/programs.sh, 5 interleaved runs) ran at 0.69x the default's
     * time for 5.7% more peak RSS, perl (3 runs) at 0.84x for 3.4%; where
     * the host reclaims free memory as huge pages, zeroing them cost more
     * than the faults saved (knobs.h, THP).  Threads whose heaps stay
     * under 16 MiB run as on the default. */
    { "thp", KNOB(HKSHM_KNOB_THP), { [HKSHM_KNOB_THP] = HKSHM_THP_SMALL | HKSHM_THP_LARGE } },
};

/* The memory weight prices RAM against CPU as a cloud price list does
 * (learner.h). */
const hkd_bin_cfg hkd_bin_default_cfg = {
    .memory_weight_ns = HKD_MEMORY_WEIGHT_NS,
    .min_pulls = 3,
    .recheck = 8,
    /* A registered run of a short command costs it 2-3% of its time (this
     * VM, git add); one in eight keeps the choice checked at an eighth of
     * that, and a long process registers at one second whatever its draw. */
    .settled_report_every = 8,
    .race = 2,
    .race_pulls = 16,
    .z = 2.5,
    /* At 3 a run of normal noise is cut one time in 370, and the
     * variance of what is counted is 0.995 of the runs': where the machine
     * never stalls the tests keep their level.  Where one run in ten takes
     * twice its time (tests/daemon/test_binlearn.c, 6% noise, 60 runs,
     * seeds 1-400), a 15% gain is found by 260 binaries (130 with nothing
     * cut) and an arm no cheaper chosen by 3 (1); at 2.5, by 280 and 4;
     * at 1.5, by 322 and 6. */
    .clip_z = 3.0,
    .min_gain = 0.02,
    .min_peak_gain = 0.10,
    .max_regression = 0.05,
    .ruinous = 2.0,
    .min_cpu_s = 0.02,
    .window = 256,
    /* fast only when asked for (hakmemd --arms): with each arm set by
     * hand (bash bench/arms.sh, 3 runs, 2026-12-07) fast-thp, its caches
     * and huge pages for small objects too, ran at fast's time or less on
     * 11 of 14 items (big-blocks 0.53 of the default's against 0.70,
     * mstress 0.91 against 0.98, interp-churn 0.91 against 0.95); fast
     * was the best arm of one item, remote-free, at 0.96 of the default's
     * time on three runs of a bimodal program.  Where fast-thp's small huge
     * pages hold more (larson 1.64x, git 1.52x peak RSS) the guard on peak
     * RSS keeps it out.  Each arm explored costs every binary runs before
     * its choice and adds chances for an arm that is in truth no better to
     * look cheaper by luck, so six run, not seven.  fast is arm 2. */
    .arm_mask = ((1u << HKD_BIN_ARMS) - 1) & ~(1u << 2),
};

void hkd_bin_init(hkd_bin_learn *l)
{
    memset(l, 0, sizeof *l);
    l->current = HKD_BIN_DEFAULT_ARM;
    l->pinned = -1;
}

uint32_t hkd_bin_arms_without_small_thp(uint32_t mask)
{
    for (int a = 0; a < HKD_BIN_ARMS; a++)
        if (a != HKD_BIN_DEFAULT_ARM && (hkd_bin_arms[a].set & KNOB(HKSHM_KNOB_THP)) &&
            (hkd_bin_arms[a].knob[HKSHM_KNOB_THP] & HKSHM_THP_SMALL))
            mask &= ~(1u << a);
    return mask;
}

/* The environment variables a person sets for the knobs by hand: each
 * gives a knob's value times `scale` or, for a knob of bits, whether the
 * bit `bit` is set. */
static const struct {
    unsigned knob;
    const char *name;
    uint32_t scale;
    uint32_t bit;
} knob_env[] = {
    { HKSHM_KNOB_PURGE_DELAY_MS, "HAKMEM_PURGE_DELAY_MS", 1, 0 },
    { HKSHM_KNOB_RETAINED_SEGMENTS, "HAKMEM_RETAINED_SEGMENTS", 1, 0 },
    { HKSHM_KNOB_PARTIAL_REUSE, "HAKMEM_PARTIAL_REUSE", 1, 0 },
    { HKSHM_KNOB_THP, "HAKMEM_SMALL_THP", 1, HKSHM_THP_SMALL },
    { HKSHM_KNOB_THP, "HAKMEM_LARGE_THP", 1, HKSHM_THP_LARGE },
    { HKSHM_KNOB_LARGE_THRESHOLD, "HAKMEM_LARGE_THRESHOLD", 1, 0 },
    { HKSHM_KNOB_BIGCACHE_KIB, "HAKMEM_BIGCACHE_BYTES", 1024, 0 },
    { HKSHM_KNOB_MEDIUM_PAGE_BLOCKS, "HAKMEM_MEDIUM_PAGE_BLOCKS", 1, 0 },
    { HKSHM_KNOB_POPULATE_KIB, "HAKMEM_POPULATE_KIB", 1, 0 },
    { HKSHM_KNOB_PACKED_KIB, "HAKMEM_PACKED_KIB", 1, 0 },
};

int hkd_bin_arm_env(int arm, char *buf, size_t len)
{
    if (arm < 0 || arm >= HKD_BIN_ARMS || len == 0)
        return -1;
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof knob_env / sizeof knob_env[0]; i++) {
        unsigned k = knob_env[i].knob;
        if (!(hkd_bin_arms[arm].set >> k & 1u))
            continue;
        uint32_t v = hkd_bin_arms[arm].knob[k];
        unsigned long long shown = knob_env[i].bit ? (v & knob_env[i].bit) != 0 : (unsigned long long)v * knob_env[i].scale;
        int n = snprintf(buf + used, len - used, "%s%s=%llu", used ? " " : "", knob_env[i].name, shown);
        if (n < 0 || (size_t)n >= len - used)
            return -1;
        used += (size_t)n;
    }
    return (int)used;
}

int hkd_bin_arm_by_name(const char *name)
{
    for (int i = 0; i < HKD_BIN_ARMS; i++)
        if (strcmp(hkd_bin_arms[i].name, name) == 0)
            return i;
    return -1;
}

static int may_run(const hkd_bin_cfg *cfg, int arm)
{
    return arm == HKD_BIN_DEFAULT_ARM || (cfg->arm_mask >> arm & 1u);
}

double hkd_bin_cost(const hkd_bin_cfg *cfg, const hkd_bin_obs *o)
{
    double work = o->work_mib > 1.0 ? o->work_mib : 1.0;
    return (o->cpu_s * 1e9 + cfg->memory_weight_ns * o->rss_mib_s) / work;
}

static int finite_positive(double v)
{
    return isfinite(v) && v > 0.0;
}

static void add(hkd_bin_stat *s, double work, const double x[HKD_BIN_MEASURES])
{
    s->n += 1.0;
    s->with_work += 1.0;
    double dw = work - s->mean_work;
    s->mean_work += dw / s->n;
    s->sxx += dw * (work - s->mean_work);
    for (int k = 0; k < HKD_BIN_MEASURES; k++) {
        double d = x[k] - s->mean[k];
        s->mean[k] += d / s->n;
        double d_after = x[k] - s->mean[k];
        s->m2[k] += d * d_after;
        s->sxy[k] += dw * d_after;
    }
}

void hkd_bin_stat_merge(hkd_bin_stat *x, const hkd_bin_stat *y)
{
    double nx = x->n, ny = y->n, nn = nx + ny;
    if (!(ny > 0.0))
        return;
    double dw = y->mean_work - x->mean_work;
    for (int k = 0; k < HKD_BIN_MEASURES; k++) {
        double d = y->mean[k] - x->mean[k];
        x->mean[k] += d * ny / nn;
        x->m2[k] += y->m2[k] + d * d * nx * ny / nn;
        x->sxy[k] += y->sxy[k] + dw * d * nx * ny / nn;
    }
    x->mean_work += dw * ny / nn;
    x->sxx += y->sxx + dw * dw * nx * ny / nn;
    x->with_work += y->with_work;
    x->n = nn;
}

/* Counts halve, means stay: old evidence weighs half as much. */
static void halve(hkd_bin_learn *l)
{
    for (int a = 0; a < HKD_BIN_ARMS; a++) {
        hkd_bin_stat *s = &l->arm[a];
        s->n *= 0.5;
        s->with_work *= 0.5;
        s->sxx *= 0.5;
        for (int k = 0; k < HKD_BIN_MEASURES; k++) {
            s->m2[k] *= 0.5;
            s->sxy[k] *= 0.5;
        }
    }
}

/* Whether every observation of every arm carried its work. */
static int work_known(const hkd_bin_stat *s)
{
    for (int a = 0; a < HKD_BIN_ARMS; a++)
        if (s[a].n > 0.0 && s[a].with_work < s[a].n * (1.0 - 1e-9))
            return 0;
    return 1;
}

/* Measure k's noise and its slope on the work, pooled over every arm: the
 * noise of a run is the machine's and the input's, much the same whatever
 * arm runs, and a variance from three runs of one arm is itself too noisy
 * to trust.  The slope is the within-arm regression's, so that a
 * difference between arms cannot pass for one of work; it costs a degree
 * of freedom, and it is 0 where the work does not vary or is not known. */
typedef struct pooled {
    double var, dof, slope, sxx;
} pooled;

static pooled pool(const hkd_bin_stat *s, int k)
{
    pooled p = { 0 };
    double m2 = 0.0, sxy = 0.0, sxx = 0.0;
    for (int b = 0; b < HKD_BIN_ARMS; b++) {
        if (s[b].n >= 2.0) {
            m2 += s[b].m2[k];
            sxy += s[b].sxy[k];
            sxx += s[b].sxx;
            p.dof += s[b].n - 1.0;
        }
    }
    if (p.dof >= 2.0 && sxx > 1e-9 && work_known(s)) {
        p.slope = sxy / sxx;
        p.sxx = sxx;
        m2 -= p.slope * sxy;
        p.dof -= 1.0;
    }
    p.var = p.dof > 0.0 && m2 > 0.0 ? m2 / p.dof : 0.0;
    return p;
}

/* Arm a's mean of measure k less arm b's at equal work, and the standard
 * error of that difference (`known` 0: no evidence for one). */
typedef struct contrast {
    double d, se, dof;
    int known;
} contrast;

static contrast compare(const hkd_bin_stat *s, int a, int b, int k)
{
    pooled p = pool(s, k);
    double dw = s[a].mean_work - s[b].mean_work;
    contrast c = { .d = s[a].mean[k] - s[b].mean[k] - p.slope * dw, .dof = p.dof };
    c.known = s[a].n > 0.0 && s[b].n > 0.0 && p.dof >= 1.0;
    if (c.known)
        c.se = sqrt(p.var * (1.0 / s[a].n + 1.0 / s[b].n + (p.sxx > 0.0 ? dw * dw / p.sxx : 0.0)));
    return c;
}

/* Arm a's difference from the default on measure k, at equal work. */
static double from_default(const hkd_bin_learn *l, int a, int k)
{
    return compare(l->arm, a, HKD_BIN_DEFAULT_ARM, k).d;
}

/* Standard errors a difference must exceed: z, widened for few degrees of
 * freedom as Student's t is (the first terms of its expansion in 1/dof). */
static double critical(double z, double dof)
{
    if (dof < 1.0)
        return INFINITY;
    return z + (z * z * z + z) / (4.0 * dof) + (5 * pow(z, 5) + 16 * z * z * z + 3 * z) / (96.0 * dof * dof);
}

/* How many standard errors arm a's mean of measure k lies below arm b's. */
static double t_below(const hkd_bin_learn *l, int a, int b, int k)
{
    contrast c = compare(l->arm, a, b, k);
    if (!c.known)
        return 0.0;
    return c.se > 0.0 ? -c.d / c.se : (c.d < 0.0 ? INFINITY : 0.0);
}

/* The measures no chosen arm may worsen by more than max_regression: what
 * a person sees of a run (its CPU and wall time, its peak RSS).  The RSS
 * held over time is not one of them: trading it for CPU time is what the
 * cost, at the operator's price, decides. */
static int guarded(int k)
{
    return k == HKD_BIN_CPU || k == HKD_BIN_WALL || k == HKD_BIN_PEAK;
}

/* No worse than the default by more than max_regression on a guarded
 * measure, by the geometric means.  (Asking for proof here, as for the
 * gain, would take dozens of runs per arm at this machine's 5-10% noise
 * before any arm could be shown not to be 5% worse.) */
static int eligible(const hkd_bin_learn *l, const hkd_bin_cfg *cfg, int a)
{
    double limit = log1p(cfg->max_regression);
    for (int k = HKD_BIN_CPU; k < HKD_BIN_MEASURES; k++)
        if (guarded(k) && from_default(l, a, k) > limit)
            return 0;
    return 1;
}

/* Whether arm a's mean of measure k is shown to exceed the default's by no
 * more than `margin` (logs): the upper confidence bound of the difference,
 * by the test a gain must pass, lies within it. */
static int shown_within(const hkd_bin_learn *l, const hkd_bin_cfg *cfg, int a, int k, double margin)
{
    contrast c = compare(l->arm, a, HKD_BIN_DEFAULT_ARM, k);
    return c.known && c.d + critical(cfg->z, c.dof) * c.se <= margin;
}

/* Peak RSS lower than the default's by min_peak_gain on the means: an arm
 * worth the runs that could show it leaner at the same time. */
static int looks_leaner(const hkd_bin_learn *l, const hkd_bin_cfg *cfg, int a)
{
    return cfg->min_peak_gain > 0.0 && cfg->min_peak_gain < 1.0 && l->arm[a].n > 0.0 &&
           from_default(l, a, HKD_BIN_PEAK) <= log1p(-cfg->min_peak_gain) &&
           from_default(l, a, HKD_BIN_COST) <= log1p(cfg->min_gain);
}

/* The same time and less memory: peak RSS lower than the default's by
 * min_peak_gain on the means and shown lower, a cost within min_gain of
 * the default's, and CPU and wall time shown (not merely assumed) to be
 * within max_regression of the default's.  The gain is judged as a cost
 * gain is (hkd_bin_choice): large enough on the means to matter, and
 * beyond the noise in sign; asking the noise to stay clear of the 10%
 * itself would leave an arm truly 12% leaner on the default after a
 * hundred runs.  Where memory is priced at what a cloud charges, a
 * CPU-bound run's RSS is a fraction of a percent of its cost, too little
 * for the cost to tell such an arm from the default through run-to-run
 * noise.  Showing that the time is the same takes many more runs than
 * showing a loss (at 5% noise, some twenty of the arm's): until then the
 * default stays, so a lean arm that is in truth slower is never chosen on
 * a lucky handful of runs. */
static int leaner_at_equal_time(const hkd_bin_learn *l, const hkd_bin_cfg *cfg, int a)
{
    if (!looks_leaner(l, cfg, a))
        return 0;
    double limit = log1p(cfg->max_regression);
    if (!shown_within(l, cfg, a, HKD_BIN_CPU, limit) || !shown_within(l, cfg, a, HKD_BIN_WALL, limit))
        return 0;
    return t_below(l, a, HKD_BIN_DEFAULT_ARM, HKD_BIN_PEAK) >=
           critical(cfg->z, pool(l->arm, HKD_BIN_PEAK).dof);
}

/* The arm shown cheapest by at least min_gain; failing that, the leanest
 * of those with the same time and less memory; failing both, the default. */
int hkd_bin_choice(const hkd_bin_learn *l, const hkd_bin_cfg *cfg)
{
    const int d = HKD_BIN_DEFAULT_ARM;
    if (l->arm[d].n < cfg->min_pulls)
        return d;
    double need = critical(cfg->z, pool(l->arm, HKD_BIN_COST).dof);
    int best = d, leanest = d;
    double best_gain = 0.0;
    for (int a = 0; a < HKD_BIN_ARMS; a++) {
        if (a == d || !may_run(cfg, a) || l->arm[a].n < cfg->min_pulls || !eligible(l, cfg, a))
            continue;
        if (leaner_at_equal_time(l, cfg, a) &&
            (leanest == d || compare(l->arm, a, leanest, HKD_BIN_PEAK).d < 0.0))
            leanest = a;
        double gain = -from_default(l, a, HKD_BIN_COST);
        if (gain < log1p(cfg->min_gain) || t_below(l, a, d, HKD_BIN_COST) < need)
            continue;
        if (gain > best_gain) {
            best = a;
            best_gain = gain;
        }
    }
    return best != d ? best : leanest;
}

/* Whether arm a's mean of measure k exceeds the default's by more than
 * `margin` (logs), by the same test a gain must pass. */
static int shown_worse(const hkd_bin_learn *l, const hkd_bin_cfg *cfg, int a, int k, double margin)
{
    contrast c = compare(l->arm, a, HKD_BIN_DEFAULT_ARM, k);
    double excess = c.d - margin;
    return c.known && excess > 0.0 && (c.se <= 0.0 || excess / c.se >= critical(cfg->z, c.dof));
}

/* An arm already shown to cost more than the default, or to be more than
 * max_regression worse on a guarded measure (so that it could never be
 * chosen), runs no more: exploring it again would only cost the programs
 * that run on it.  One run is enough when the loss is large, which is
 * what matters (an arm that triples a program's time). */
static int ruled_out(const hkd_bin_learn *l, const hkd_bin_cfg *cfg, int a)
{
    const int d = HKD_BIN_DEFAULT_ARM;
    if (a == d || l->arm[d].n <= 0.0 || l->arm[a].n <= 0.0)
        return 0;
    /* Twice the default's cost is beyond any noise of this kind of
     * measure, even while the variance is still unknown or too poorly
     * known for the test below: against one default run, so that an arm
     * tried in the first round of exploration runs once. */
    if (cfg->ruinous > 1.0 && from_default(l, a, HKD_BIN_COST) > log(cfg->ruinous))
        return 1;
    if (shown_worse(l, cfg, a, HKD_BIN_COST, 0.0))
        return 1;
    for (int k = HKD_BIN_CPU; k < HKD_BIN_MEASURES; k++)
        if (guarded(k) && shown_worse(l, cfg, a, k, log1p(cfg->max_regression)))
            return 1;
    return 0;
}

static int explored(const hkd_bin_learn *l, const hkd_bin_cfg *cfg, int a)
{
    return !may_run(cfg, a) || l->arm[a].n >= cfg->min_pulls || ruled_out(l, cfg, a);
}

int hkd_bin_settled(const hkd_bin_learn *l, const hkd_bin_cfg *cfg)
{
    for (int a = 0; a < HKD_BIN_ARMS; a++)
        if (!explored(l, cfg, a))
            return 0;
    return 1;
}

/* An arm that could be chosen (no guarded measure worse on the means,
 * not ruled out) and costs less than the choice by min_gain on the means,
 * without the evidence to show it yet: the cheapest such arm with fewer
 * than race_pulls runs; failing one, while the default is the choice, the
 * leanest arm with fewer that looks leaner at the same cost; or -1.  It
 * gets one run in `race` instead of one in `recheck`: at this machine's
 * noise a 6% gain takes some fifteen runs of the arm to show, and showing
 * a leaner arm's time the same about as many, which one run in eight (in
 * sixteen for a leaner arm) would spread over a hundred and twenty (two
 * hundred and forty), while a contender this close costs little to run
 * if it turns out no better. */
static int racing_contender(const hkd_bin_learn *l, const hkd_bin_cfg *cfg, int choice)
{
    if (cfg->race == 0 || cfg->race >= cfg->recheck)
        return -1;
    int best = -1, leanest = -1;
    for (int a = 0; a < HKD_BIN_ARMS; a++) {
        if (a == choice || !may_run(cfg, a) || !(l->arm[a].n > 0.0) || l->arm[a].n >= cfg->race_pulls ||
            ruled_out(l, cfg, a) || !eligible(l, cfg, a))
            continue;
        if (compare(l->arm, a, choice, HKD_BIN_COST).d < -log1p(cfg->min_gain) &&
            (best < 0 || compare(l->arm, a, best, HKD_BIN_COST).d < 0.0))
            best = a;
        if (choice == HKD_BIN_DEFAULT_ARM && looks_leaner(l, cfg, a) &&
            (leanest < 0 || compare(l->arm, a, leanest, HKD_BIN_PEAK).d < 0.0))
            leanest = a;
    }
    return best >= 0 ? best : leanest;
}

int hkd_bin_racing(const hkd_bin_learn *l, const hkd_bin_cfg *cfg)
{
    if (l->pinned >= 0 || !hkd_bin_settled(l, cfg))
        return -1;
    return racing_contender(l, cfg, hkd_bin_choice(l, cfg));
}

/* Before settling: rounds of one run of each arm not yet explored, the
 * default first, the least observed arm next.  Every arm is judged
 * against the default, so the default's runs are spread over the same
 * stretch of time as theirs: the first runs of a binary are dearer than
 * later ones (each registers, its sites try their own arms, caches are
 * cold), and a default that took them all would make every other arm
 * look cheaper than it is.  After: the choice, except one run in `race` that goes to a racing
 * contender while there is one, else one run in `recheck`, which goes to
 * the arm whose lower confidence bound on cost is lowest (the most likely
 * to beat it) among those not ruled out; every other such run goes
 * instead to the least observed arm that looks leaner at the same cost,
 * if there is one, so that the evidence the memory rule needs can build
 * up. */
static int next_arm(hkd_bin_learn *l, const hkd_bin_cfg *cfg)
{
    if (l->pinned >= 0)
        return l->pinned;
    int least = -1;
    for (int a = 0; a < HKD_BIN_ARMS; a++)
        if (!explored(l, cfg, a) && (least < 0 || l->arm[a].n < l->arm[least].n))
            least = a;
    if (least >= 0)
        return least;
    int choice = hkd_bin_choice(l, cfg);
    int racer = racing_contender(l, cfg, choice);
    uint32_t cadence = racer >= 0 ? cfg->race : cfg->recheck;
    if (cadence == 0 || ++l->runs_since_choice < cadence)
        return choice;
    l->runs_since_choice = 0;
    if (racer >= 0)
        return racer;
    int probe = choice;
    if (++l->rechecks % 2 == 0) {
        for (int a = 0; a < HKD_BIN_ARMS; a++)
            if (a != choice && may_run(cfg, a) && !ruled_out(l, cfg, a) && looks_leaner(l, cfg, a) &&
                (probe == choice || l->arm[a].n < l->arm[probe].n))
                probe = a;
        if (probe != choice)
            return probe;
    }
    /* Each arm's cost against the choice's at equal work, less z of its
     * own standard errors. */
    double lowest = INFINITY;
    pooled p = pool(l->arm, HKD_BIN_COST);
    for (int a = 0; a < HKD_BIN_ARMS; a++) {
        if (a == choice || !may_run(cfg, a) || ruled_out(l, cfg, a))
            continue;
        double bound = compare(l->arm, a, choice, HKD_BIN_COST).d - cfg->z * sqrt(p.var / l->arm[a].n);
        if (bound < lowest) {
            lowest = bound;
            probe = a;
        }
    }
    return probe;
}

/* Measure k of a run on arm a with log work w, moved to within clip_z
 * standard deviations of what the arm's mean predicts at that work: the
 * bound of a prediction interval, so an arm with one run cuts less than
 * one with many.  Nothing is cut before the pooled noise rests on a few
 * degrees of freedom (an arm's first runs across the arms set it). */
static double winsorised(const hkd_bin_learn *l, const hkd_bin_cfg *cfg, int a, int k, double w, double x)
{
    const hkd_bin_stat *s = &l->arm[a];
    if (!(cfg->clip_z > 0.0) || !(s->n >= 1.0))
        return x;
    pooled p = pool(l->arm, k);
    if (p.dof < 4.0 || !(p.var > 0.0))
        return x;
    double at = s->mean[k] + p.slope * (w - s->mean_work);
    double reach = cfg->clip_z * sqrt(p.var * (1.0 + 1.0 / s->n));
    return fmin(fmax(x, at - reach), at + reach);
}

int hkd_bin_observe(hkd_bin_learn *l, const hkd_bin_cfg *cfg, const hkd_bin_obs *o)
{
    if (o->arm >= HKD_BIN_ARMS || !(o->cpu_s >= cfg->min_cpu_s) || !finite_positive(o->cpu_s) ||
        !finite_positive(o->wall_s) || !finite_positive(o->rss_mib_s) || !finite_positive(o->peak_mib) ||
        !(o->work_mib >= 0.0) || !isfinite(o->work_mib)) {
        l->ignored++;
        return -1;
    }
    double work = o->work_mib > 1.0 ? o->work_mib : 1.0;
    double x[HKD_BIN_MEASURES] = {
        [HKD_BIN_COST] = log(hkd_bin_cost(cfg, o)),
        [HKD_BIN_CPU] = log(o->cpu_s / work),
        [HKD_BIN_WALL] = log(o->wall_s / work),
        [HKD_BIN_MEM] = log(o->rss_mib_s / work),
        [HKD_BIN_PEAK] = log(o->peak_mib),
    };
    for (int k = 0; k < HKD_BIN_MEASURES; k++)
        x[k] = winsorised(l, cfg, (int)o->arm, k, log(work), x[k]);
    add(&l->arm[o->arm], log(work), x);
    l->observations++;
    double total = 0.0;
    for (int a = 0; a < HKD_BIN_ARMS; a++)
        total += l->arm[a].n;
    if (cfg->window && total > cfg->window)
        halve(l);
    int next = next_arm(l, cfg);
    int changed = next != l->current;
    l->current = next;
    return changed;
}

double hkd_bin_stats_ratio(const hkd_bin_stat arms[HKD_BIN_ARMS], int arm, enum hkd_bin_measure m)
{
    if (arm < 0 || arm >= HKD_BIN_ARMS || m >= HKD_BIN_MEASURES || !(arms[arm].n > 0.0) ||
        !(arms[HKD_BIN_DEFAULT_ARM].n > 0.0))
        return NAN;
    return exp(compare(arms, arm, HKD_BIN_DEFAULT_ARM, (int)m).d);
}

double hkd_bin_ratio(const hkd_bin_learn *l, int arm, enum hkd_bin_measure m)
{
    double r = hkd_bin_stats_ratio(l->arm, arm, m);
    return isnan(r) ? 1.0 : r;
}

int hkd_bin_pin(hkd_bin_learn *l, const hkd_bin_cfg *cfg, int arm)
{
    if (arm >= HKD_BIN_ARMS)
        return -1;
    l->pinned = arm < 0 ? -1 : arm;
    int next = l->pinned >= 0 ? l->pinned : hkd_bin_choice(l, cfg);
    int changed = next != l->current;
    l->current = next;
    return changed;
}
