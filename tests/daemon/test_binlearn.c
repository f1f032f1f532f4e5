/* The per-binary learner on synthetic runs: simulated binaries whose arms
 * have known true costs, with multiplicative noise like this machine's
 * run-to-run spread. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "binlearn.h"

/* One arm's truth: multipliers of a reference run's measures. */
typedef struct truth {
    double cpu, wall, rss, peak;
} truth;

typedef struct sim {
    uint64_t rng;
    double sigma;                       /* log-normal noise of CPU and wall time */
    double sigma_mem;                   /* of memory: RSS moves far less from run to run */
    double work_spread;                 /* inputs vary in size by up to this factor */
    double elasticity;                  /* time grows as work to this power (0: as work itself) */
    int dear_runs;                      /* the first runs, whatever their arm, take `dearer` times */
    double dearer;                      /* the CPU and wall time (0: as any other) */
    double stall_chance;                /* a run meets a stall of the machine with this chance */
    double stall;                       /* and takes this many times its CPU and wall time */
    int runs_done;
    truth arm[HKD_BIN_ARMS];
    uint32_t runs_on[HKD_BIN_ARMS];     /* runs counted from `count_from` on */
} sim;

static double uniform(sim *s)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return ((double)(s->rng >> 11) + 0.5) / 9007199254740992.0;
}

static double noise(sim *s, double sigma)
{
    double u = uniform(s), v = uniform(s);
    return exp(sigma * sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v));
}

/* Runs `runs` processes, each on the arm the learner publishes when it
 * starts; counts the arms of runs from `count_from` on. */
static void run(sim *s, hkd_bin_learn *l, const hkd_bin_cfg *cfg, int runs, int count_from)
{
    for (int i = 0; i < runs; i++) {
        int arm = l->current;
        const truth *t = &s->arm[arm];
        double work = 100.0 * (s->work_spread > 1.0 ? 1.0 + (s->work_spread - 1.0) * uniform(s) : 1.0);
        double scaled = s->elasticity > 0.0 ? 100.0 * pow(work / 100.0, s->elasticity) : work;
        if (s->runs_done++ < s->dear_runs)
            scaled *= s->dearer;
        if (s->stall_chance > 0.0 && uniform(s) < s->stall_chance)
            scaled *= s->stall;
        hkd_bin_obs o = {
            .arm = (uint32_t)arm,
            .cpu_s = 0.01 * scaled * t->cpu * noise(s, s->sigma),
            .wall_s = 0.01 * scaled * t->wall * noise(s, s->sigma),
            .rss_mib_s = 0.5 * work * t->rss * noise(s, s->sigma_mem),
            .peak_mib = 50.0 * t->peak * noise(s, s->sigma_mem),
            .work_mib = work,
        };
        assert_true(hkd_bin_observe(l, cfg, &o) >= 0);
        if (i >= count_from)
            s->runs_on[arm]++;
    }
}

static sim make_sim(uint64_t seed, double sigma)
{
    sim s = { .rng = seed * 0x9E3779B97F4A7C15ull + 1, .sigma = sigma, .sigma_mem = sigma / 4 };
    for (int a = 0; a < HKD_BIN_ARMS; a++)
        s.arm[a] = (truth){ 1.0, 1.0, 1.0, 1.0 };
    return s;
}

/* The learner's rules, with arms 0-4 explored (set in main): the figures
 * below were calibrated on five arms explored, with the truths of arms
 * 1-4 given by index.  The default explores six (fast left out), and
 * what the rules do depends on how many arms are explored, not on which:
 * one more gives an arm that is no better one more chance to look
 * cheaper by luck. */
static hkd_bin_cfg base_cfg;

/* Arms that cost the same: whatever the noise says, the default stays,
 * and only the recheck and race runs leave it, a minority. */
static void equal_arms_keep_the_default(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        sim s = make_sim(seed, 0.08);
        hkd_bin_learn l;
        hkd_bin_init(&l);
        run(&s, &l, &base_cfg, 200, 40);
        assert_int_equal(hkd_bin_choice(&l, &base_cfg), HKD_BIN_DEFAULT_ARM);
        uint32_t off = 160 - s.runs_on[HKD_BIN_DEFAULT_ARM], most = 0;
        /* One run in `recheck` explores (20 of 160); an arm the noise
         * makes look cheaper races until it has race_pulls runs; after
         * that it is back to one in `recheck`. */
        for (int a = 0; a < HKD_BIN_ARMS; a++)
            if (a != HKD_BIN_DEFAULT_ARM && s.runs_on[a] > most)
                most = s.runs_on[a];
        print_message("seed %d off %u most %u\n", (int)seed, off, most);
        assert_true(off <= 160 / 3);
        assert_true(most <= 2 * base_cfg.race_pulls);
    }
}

/* An arm 20% cheaper on CPU and no worse elsewhere is found and run (by
 * 19 of 20 simulated binaries: at 8% noise a few runs per arm can still
 * make an equal measure look 5% worse, which keeps the default). */
static void a_cheaper_arm_is_found(void **state)
{
    (void)state;
    int found = 0;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        sim s = make_sim(seed, 0.08);
        s.arm[2] = (truth){ 0.8, 0.8, 1.0, 1.0 };
        hkd_bin_learn l;
        hkd_bin_init(&l);
        run(&s, &l, &base_cfg, 90, 50);
        assert_true(hkd_bin_settled(&l, &base_cfg));
        if (hkd_bin_choice(&l, &base_cfg) != 2)
            continue;
        found++;
        assert_true(s.runs_on[2] >= 40 - 40 / base_cfg.recheck - 1);
        assert_true(hkd_bin_ratio(&l, 2, HKD_BIN_CPU) < 0.9);
    }
    assert_true(found >= 19);
}

/* Cheaper at the price, but 10% slower in wall time (it saves memory):
 * never chosen, because no arm may be worse than the default by more
 * than max_regression on any measure. */
static void a_slower_arm_is_never_chosen(void **state)
{
    (void)state;
    hkd_bin_cfg cfg = base_cfg;
    cfg.memory_weight_ns = 1e9;         /* memory dominates the price */
    for (uint64_t seed = 1; seed <= 20; seed++) {
        sim s = make_sim(seed, 0.05);
        s.arm[1] = (truth){ 1.0, 1.10, 0.5, 0.5 };
        hkd_bin_learn l;
        hkd_bin_init(&l);
        run(&s, &l, &cfg, 120, 0);
        assert_int_equal(hkd_bin_choice(&l, &cfg), HKD_BIN_DEFAULT_ARM);
        /* Without the guard the same evidence picks it. */
        cfg.max_regression = 1.0;
        assert_int_equal(hkd_bin_choice(&l, &cfg), 1);
        cfg.max_regression = base_cfg.max_regression;
    }
}

/* The memory weight decides between an arm that saves memory and one
 * that saves CPU. */
static void the_memory_weight_sets_the_price(void **state)
{
    (void)state;
    hkd_bin_cfg cfg = base_cfg;
    cfg.max_regression = 1.0;
    sim s = make_sim(7, 0.03);
    s.arm[1] = (truth){ 1.04, 1.04, 0.6, 0.6 };   /* lean: a little CPU for much less memory */
    s.arm[2] = (truth){ 0.9, 0.9, 1.3, 1.3 };     /* fast: less CPU, more memory */
    hkd_bin_learn l;
    hkd_bin_init(&l);
    run(&s, &l, &cfg, 80, 0);
    /* Reference run: 1 s CPU per 100 MiB allocated, 50 MiB-s of RSS. */
    cfg.memory_weight_ns = 1e6;                    /* 50 ms of CPU for the memory: CPU rules */
    assert_int_equal(hkd_bin_choice(&l, &cfg), 2);
    cfg.memory_weight_ns = 1e8;                    /* 5 s for the memory: memory rules */
    /* The choice is made on the costs as observed, so re-observe under
     * the new price. */
    hkd_bin_init(&l);
    s = make_sim(7, 0.03);
    s.arm[1] = (truth){ 1.04, 1.04, 0.6, 0.6 };
    s.arm[2] = (truth){ 0.9, 0.9, 1.3, 1.3 };
    run(&s, &l, &cfg, 80, 0);
    assert_int_equal(hkd_bin_choice(&l, &cfg), 1);
}

/* A gain below min_gain (2%) is not worth a change, however sure. */
static void a_tiny_gain_keeps_the_default(void **state)
{
    (void)state;
    sim s = make_sim(3, 0.001);
    s.arm[3] = (truth){ 0.995, 0.995, 1.0, 1.0 };
    hkd_bin_learn l;
    hkd_bin_init(&l);
    run(&s, &l, &base_cfg, 100, 0);
    assert_int_equal(hkd_bin_choice(&l, &base_cfg), HKD_BIN_DEFAULT_ARM);
}

/* Inputs of very different size: the costs per MiB allocated compare,
 * so the better arm is still found. */
static void inputs_of_different_size_compare(void **state)
{
    (void)state;
    sim s = make_sim(11, 0.05);
    s.work_spread = 20.0;
    s.arm[2] = (truth){ 0.85, 0.85, 1.0, 1.0 };
    hkd_bin_learn l;
    hkd_bin_init(&l);
    run(&s, &l, &base_cfg, 80, 0);
    assert_int_equal(hkd_bin_choice(&l, &base_cfg), 2);
}

/* Time that does not grow as the work (a run's start weighs most in a
 * small one): the cost per MiB of a run on a small input is many times a
 * large one's, far beyond the gain, and only the comparison at equal
 * work finds the cheaper arm in this many runs. */
static void small_and_large_inputs_compare_at_equal_work(void **state)
{
    (void)state;
    int found = 0;
    for (uint64_t seed = 1; seed <= 10; seed++) {
        sim s = make_sim(seed, 0.05);
        s.work_spread = 30.0;
        s.elasticity = 0.3;
        s.arm[2] = (truth){ 0.9, 0.9, 1.0, 1.0 };
        hkd_bin_learn l;
        hkd_bin_init(&l);
        run(&s, &l, &base_cfg, 60, 0);
        found += hkd_bin_choice(&l, &base_cfg) == 2;
        print_message("seed %d choice %d cost ratio %.3f\n", (int)seed, hkd_bin_choice(&l, &base_cfg),
                      hkd_bin_ratio(&l, 2, HKD_BIN_COST));
        assert_true(fabs(hkd_bin_ratio(&l, 2, HKD_BIN_CPU) - 0.9) < 0.05);
    }
    assert_true(found >= 9);
}

/* One observation with the arm and work given (cost per MiB falling as
 * work^-0.5, the same for every arm). */
static void observe_at(hkd_bin_learn *l, int arm, double work)
{
    double cpu = 0.1 * sqrt(work);
    hkd_bin_obs o = { .arm = (uint32_t)arm, .cpu_s = cpu, .wall_s = cpu, .rss_mib_s = 0.5 * work,
                      .peak_mib = 50.0, .work_mib = work };
    assert_true(hkd_bin_observe(l, &base_cfg, &o) >= 0);
}

/* An arm no better than the default that happened to run on inputs ten
 * times larger looks three times cheaper per MiB; compared at equal work,
 * it is what it is, and the default stays. */
static void larger_inputs_do_not_pass_for_a_gain(void **state)
{
    (void)state;
    hkd_bin_learn l;
    hkd_bin_init(&l);
    for (int i = 0; i < 30; i++) {
        double spread = 1.0 + 0.05 * (i % 7);
        observe_at(&l, HKD_BIN_DEFAULT_ARM, 10.0 * spread);
        observe_at(&l, 2, 100.0 * spread);
    }
    assert_true(fabs(hkd_bin_ratio(&l, 2, HKD_BIN_COST) - 1.0) < 0.02);
    assert_int_equal(hkd_bin_choice(&l, &base_cfg), HKD_BIN_DEFAULT_ARM);
    /* Statistics kept without the work (a state from an older daemon) are
     * compared as they are. */
    for (int a = 0; a < HKD_BIN_ARMS; a++)
        l.arm[a].with_work = 0.0;
    double raw = exp(l.arm[2].mean[HKD_BIN_COST] - l.arm[HKD_BIN_DEFAULT_ARM].mean[HKD_BIN_COST]);
    assert_true(raw < 0.4);
    assert_true(fabs(hkd_bin_ratio(&l, 2, HKD_BIN_COST) - raw) < 1e-12);
}

/* Statistics of two sets of runs merge into those of all the runs. */
static void merged_statistics_are_the_whole(void **state)
{
    (void)state;
    hkd_bin_cfg cfg = base_cfg;
    cfg.window = 0;
    /* What a run counts for depends on the runs its learner saw before. */
    cfg.clip_z = 0.0;
    hkd_bin_learn all, first, second;
    hkd_bin_init(&all);
    hkd_bin_init(&first);
    hkd_bin_init(&second);
    sim s = make_sim(21, 0.1);
    for (int i = 0; i < 70; i++) {
        double work = 10.0 + 90.0 * uniform(&s);
        double cpu = 0.05 * sqrt(work) * noise(&s, 0.1);
        hkd_bin_obs o = { .arm = (uint32_t)(i % 3), .cpu_s = cpu, .wall_s = cpu * noise(&s, 0.1),
                          .rss_mib_s = 0.5 * work * noise(&s, 0.1), .peak_mib = 40.0 * noise(&s, 0.1),
                          .work_mib = work };
        assert_true(hkd_bin_observe(&all, &cfg, &o) >= 0);
        assert_true(hkd_bin_observe(i < 30 ? &first : &second, &cfg, &o) >= 0);
    }
    for (int a = 0; a < HKD_BIN_ARMS; a++) {
        hkd_bin_stat_merge(&first.arm[a], &second.arm[a]);
        const hkd_bin_stat *x = &first.arm[a], *y = &all.arm[a];
        assert_true(fabs(x->n - y->n) < 1e-9);
        assert_true(fabs(x->with_work - y->with_work) < 1e-9);
        assert_true(fabs(x->mean_work - y->mean_work) < 1e-9);
        assert_true(fabs(x->sxx - y->sxx) < 1e-9);
        for (int k = 0; k < HKD_BIN_MEASURES; k++) {
            assert_true(fabs(x->mean[k] - y->mean[k]) < 1e-9);
            assert_true(fabs(x->m2[k] - y->m2[k]) < 1e-9);
            assert_true(fabs(x->sxy[k] - y->sxy[k]) < 1e-9);
        }
    }
}

/* Every arm is tried min_pulls times before any choice, in rounds of one
 * run each, the default first; arms outside the mask never run. */
static void exploration_order_and_mask(void **state)
{
    (void)state;
    /* fast runs only when asked for; masking another arm keeps it out. */
    int fast = hkd_bin_arm_by_name("fast"), compact = hkd_bin_arm_by_name("compact");
    assert_int_equal(hkd_bin_default_cfg.arm_mask, ((1u << HKD_BIN_ARMS) - 1) & ~(1u << fast));
    hkd_bin_cfg cfg = hkd_bin_default_cfg;
    cfg.arm_mask &= ~(1u << compact);
    sim s = make_sim(5, 0.05);
    hkd_bin_learn l;
    hkd_bin_init(&l);
    assert_int_equal(l.current, HKD_BIN_DEFAULT_ARM);
    int seen[HKD_BIN_ARMS] = { 0 };
    for (int i = 0; i < (HKD_BIN_ARMS - 2) * (int)cfg.min_pulls; i++) {
        if (i % (HKD_BIN_ARMS - 2) == 0)
            assert_int_equal(l.current, HKD_BIN_DEFAULT_ARM);
        seen[l.current]++;
        assert_int_equal(seen[l.current], i / (HKD_BIN_ARMS - 2) + 1);
        run(&s, &l, &cfg, 1, 0);
    }
    for (int a = 0; a < HKD_BIN_ARMS; a++)
        assert_int_equal(seen[a], a == fast || a == compact ? 0 : (int)cfg.min_pulls);
    assert_true(hkd_bin_settled(&l, &cfg));
    run(&s, &l, &cfg, 200, 0);
    assert_int_equal(s.runs_on[fast], 0);
    assert_int_equal(s.runs_on[compact], 0);
}

/* The first runs of a binary are dearer, whatever their arm (each
 * registers, its sites try their arms, caches are cold): arms that are in
 * truth the same still look the same once explored, because the default
 * did not take those runs alone, and the default stays. */
static void dear_first_runs_favour_no_arm(void **state)
{
    (void)state;
    int arms = __builtin_popcount(base_cfg.arm_mask);
    for (uint64_t seed = 1; seed <= 20; seed++) {
        sim s = make_sim(seed, 0.02);
        s.dear_runs = arms;
        s.dearer = 1.25;
        hkd_bin_learn l;
        hkd_bin_init(&l);
        run(&s, &l, &base_cfg, arms * (int)base_cfg.min_pulls, 0);
        assert_true(hkd_bin_settled(&l, &base_cfg));
        for (int a = 0; a < HKD_BIN_ARMS; a++)
            if (base_cfg.arm_mask >> a & 1u)
                assert_true(fabs(log(hkd_bin_ratio(&l, a, HKD_BIN_COST))) < 0.05);
        run(&s, &l, &base_cfg, 100, 0);
        assert_int_equal(hkd_bin_choice(&l, &base_cfg), HKD_BIN_DEFAULT_ARM);
    }
}

/* An arm that triples the time is ruled out by its first run, against
 * the default's first, and never runs again, while one as cheap as the
 * default is explored in full. */
static void a_ruinous_arm_runs_once(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        hkd_bin_cfg cfg = base_cfg;
        sim s = make_sim(seed, 0.05);
        s.arm[1] = (truth){ 3.0, 3.0, 1.0, 1.0 };
        hkd_bin_learn l;
        hkd_bin_init(&l);
        run(&s, &l, &cfg, 2, 0);
        assert_int_equal(s.runs_on[1], 1);
        run(&s, &l, &cfg, 200, 0);
        assert_int_equal(s.runs_on[1], 1);
        assert_true(s.runs_on[2] >= cfg.min_pulls);
        assert_true(s.runs_on[3] >= cfg.min_pulls);
        assert_true(hkd_bin_settled(&l, &cfg));
    }
}

/* An arm that saves a fifth of the CPU time by holding 15% more RSS over
 * time (at the same peak) is chosen at the default price, where memory is
 * cheap; at a price that makes memory dominate, the default stays. */
static void rss_over_time_is_priced_not_guarded(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 10; seed++) {
        hkd_bin_cfg cfg = base_cfg;
        cfg.arm_mask = 1u << 0 | 1u << 2;
        sim s = make_sim(seed, 0.05);
        s.arm[2] = (truth){ 0.8, 0.8, 1.15, 1.0 };
        hkd_bin_learn l;
        hkd_bin_init(&l);
        run(&s, &l, &cfg, 60, 0);
        assert_int_equal(hkd_bin_choice(&l, &cfg), 2);
        cfg.memory_weight_ns = 1e9;
        s = make_sim(seed, 0.05);
        s.arm[2] = (truth){ 0.8, 0.8, 1.15, 1.0 };
        hkd_bin_init(&l);
        run(&s, &l, &cfg, 60, 0);
        assert_int_equal(hkd_bin_choice(&l, &cfg), HKD_BIN_DEFAULT_ARM);
    }
}

/* On runs so noisy that three default runs cannot prove anything, an arm
 * that costs five times the default is still ruled out by its first run. */
static void a_ruinous_arm_runs_once_in_noise(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        hkd_bin_cfg cfg = base_cfg;
        sim s = make_sim(seed, 0.25);
        s.arm[1] = (truth){ 5.0, 5.0, 1.0, 1.0 };
        hkd_bin_learn l;
        hkd_bin_init(&l);
        run(&s, &l, &cfg, 12, 0);
        assert_int_equal(s.runs_on[1], 1);
    }
}

/* An arm that is cheap by the cost but doubles the peak RSS can never be
 * chosen (no measure may be more than max_regression worse): it is ruled
 * out by its first run too. */
static void an_arm_that_doubles_the_peak_runs_once(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        hkd_bin_cfg cfg = base_cfg;
        sim s = make_sim(seed, 0.05);
        s.arm[3] = (truth){ 1.0, 1.0, 1.0, 2.0 };
        hkd_bin_learn l;
        hkd_bin_init(&l);
        run(&s, &l, &cfg, 200, 0);
        assert_int_equal(s.runs_on[3], 1);
        assert_int_not_equal(hkd_bin_choice(&l, &cfg), 3);
    }
}

/* Where asking for huge pages changes nothing, the arms that ask for them
 * for small objects leave the mask, and nothing else does. */
static void no_small_thp_arm_where_it_is_a_no_op(void **state)
{
    (void)state;
    uint32_t all = (1u << HKD_BIN_ARMS) - 1;
    uint32_t m = hkd_bin_arms_without_small_thp(all);
    int fast_thp = hkd_bin_arm_by_name("fast-thp"), thp = hkd_bin_arm_by_name("thp");
    assert_true(fast_thp > 0 && thp > 0);
    assert_int_equal(m, all & ~(1u << fast_thp) & ~(1u << thp));
}

/* The choice after `runs` runs of a binary whose arm `arm` has truth t
 * and whose other arms are the default's, at 5% noise. */
static int choice_with(uint64_t seed, int arm, truth t, int runs)
{
    sim s = make_sim(seed, 0.05);
    s.arm[arm] = t;
    hkd_bin_learn l;
    hkd_bin_init(&l);
    run(&s, &l, &base_cfg, runs, 0);
    return hkd_bin_choice(&l, &base_cfg);
}

/* An arm that holds a fifth less peak RSS at the same time is chosen at
 * the default price, where the cost alone cannot tell it from the
 * default, once enough runs show that its time is the same; never on the
 * few runs of exploring, which cannot tell the same time from 10% more.
 * One 10% slower, or only 5% leaner, is never chosen, and one 4% slower
 * (within the guard) seldom is: its mean cost is out of the band. */
static void a_leaner_arm_at_equal_time_is_chosen(void **state)
{
    (void)state;
    int compact = hkd_bin_arm_by_name("compact");
    assert_true(compact > 0);
    int same_time = 0, early = 0, slower = 0;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        same_time += choice_with(seed, compact, (truth){ 1.0, 1.0, 0.8, 0.8 }, 400) == compact;
        early += choice_with(seed, compact, (truth){ 1.0, 1.0, 0.8, 0.8 }, 25) == compact;
        slower += choice_with(seed, compact, (truth){ 1.04, 1.04, 0.8, 0.8 }, 400) == compact;
        assert_int_not_equal(choice_with(seed, compact, (truth){ 1.10, 1.10, 0.8, 0.8 }, 400), compact);
        assert_int_not_equal(choice_with(seed, compact, (truth){ 1.0, 1.0, 0.95, 0.95 }, 400), compact);
    }
    assert_true(same_time >= 16);
    assert_int_equal(early, 0);
    assert_true(slower <= 4);
}

/* An arm 12% leaner at the same time, the compact arm on the larson
 * workload, where peak RSS varies from run to run as much as time does
 * (5%): about two binaries in three choose it within 150 runs (70 of these
 * hundred; 263 of seeds 1-400).  Showing the time the same takes many
 * runs of the arm: it races the default, one run in two, until it has
 * race_pulls, then gets one in sixteen (with one in sixteen throughout,
 * 44 of these hundred and 173 of 400 chose it).  The lean gain must be 10%
 * on the means and beyond the noise in sign, as a cost gain must; to ask
 * the noise to stay clear of 10% itself would keep such an arm off for
 * hundreds of runs.  One 8% leaner is chosen by hardly any (1 of these
 * hundred, 3 of 400). */
static void a_lean_gain_just_past_the_bar_is_chosen(void **state)
{
    (void)state;
    int compact = hkd_bin_arm_by_name("compact");
    int chosen = 0, short_of_bar = 0;
    for (uint64_t seed = 1; seed <= 100; seed++) {
        for (int k = 0; k < 2; k++) {
            sim s = make_sim(seed, 0.05);
            s.sigma_mem = 0.05;
            s.arm[compact] = k == 0 ? (truth){ 1.0, 1.0, 0.88, 0.88 } : (truth){ 1.0, 1.0, 0.92, 0.92 };
            hkd_bin_learn l;
            hkd_bin_init(&l);
            run(&s, &l, &base_cfg, 150, 0);
            int picked = hkd_bin_choice(&l, &base_cfg) == compact;
            if (k == 0)
                chosen += picked;
            else
                short_of_bar += picked;
        }
    }
    print_message("12%% leaner chosen by %d of 100 binaries, 8%% leaner by %d\n", chosen, short_of_bar);
    assert_true(chosen >= 55);
    assert_true(short_of_bar <= 4);
}

/* How many of 100 simulated binaries like `model` (its rng aside) choose
 * arm 2 after `runs` runs under cfg. */
static int arm_2_chosen_by(const hkd_bin_cfg *cfg, const sim *model, int runs)
{
    int found = 0;
    for (uint64_t seed = 1; seed <= 100; seed++) {
        sim s = *model;
        s.rng = make_sim(seed, 0.0).rng;
        hkd_bin_learn l;
        hkd_bin_init(&l);
        run(&s, &l, cfg, runs, 0);
        found += hkd_bin_choice(&l, cfg) == 2;
    }
    return found;
}

/* Binaries whose arm 2 has truth t, at 6% noise, and whose other arms are
 * like the real ones on a CPU-bound program: one far slower and leaner,
 * one slower and fatter, one about the same. */
static int found_in(const hkd_bin_cfg *cfg, truth t, int runs)
{
    sim model = make_sim(0, 0.06);
    model.arm[1] = (truth){ 1.3, 1.3, 0.7, 0.7 };
    model.arm[2] = t;
    model.arm[3] = (truth){ 1.1, 1.1, 1.3, 1.3 };
    model.arm[4] = (truth){ 1.02, 1.02, 0.97, 0.97 };
    return arm_2_chosen_by(cfg, &model, runs);
}

/* A 6% gain at 6% noise, the size of what the arms do for a program
 * (bench/arms.sh), takes some fifteen runs of the arm to show.  Racing a
 * contender that looks cheaper (one run in two for it until it has
 * race_pulls) finds it within 50 runs for three binaries in four (76 of
 * these hundred; 297 of seeds 1-400), one run in eight for half (52;
 * 204), and never picks an arm 3% worse. */
static void a_close_gain_is_raced(void **state)
{
    (void)state;
    hkd_bin_cfg slow = base_cfg;
    slow.race = 0;
    int raced = found_in(&base_cfg, (truth){ 0.94, 0.94, 1.0, 1.0 }, 50);
    int not_raced = found_in(&slow, (truth){ 0.94, 0.94, 1.0, 1.0 }, 50);
    print_message("a 6%% gain found by %d of 100 binaries raced, %d not\n", raced, not_raced);
    assert_true(raced >= 65);
    assert_true(raced >= not_raced + 15);
    assert_int_equal(found_in(&base_cfg, (truth){ 1.03, 1.03, 1.0, 1.0 }, 200), 0);
}

/* The arm shown as racing (hakmemctl binaries, and the bench's wait for
 * races to end) is the one the next runs race: it is not the choice, it
 * has fewer than race_pulls runs, and one of the next `race` runs goes to
 * it unless the race ends first.  Nothing races before a binary settles,
 * or while it is pinned. */
static void the_raced_arm_is_shown(void **state)
{
    (void)state;
    int raced = 0;
    for (uint64_t seed = 1; seed <= 50; seed++) {
        sim s = make_sim(seed, 0.06);
        s.arm[2] = (truth){ 0.94, 0.94, 1.0, 1.0 };
        hkd_bin_learn l;
        hkd_bin_init(&l);
        while (!hkd_bin_settled(&l, &base_cfg)) {
            assert_int_equal(hkd_bin_racing(&l, &base_cfg), -1);
            run(&s, &l, &base_cfg, 1, 0);
        }
        for (int i = 0; i < 60; i++) {
            int r = hkd_bin_racing(&l, &base_cfg);
            if (r < 0) {
                run(&s, &l, &base_cfg, 1, 0);
                continue;
            }
            raced++;
            assert_int_not_equal(r, hkd_bin_choice(&l, &base_cfg));
            assert_true(l.arm[r].n < base_cfg.race_pulls);
            int ran = 0;
            for (uint32_t k = 0; k < base_cfg.race && !ran && hkd_bin_racing(&l, &base_cfg) == r; k++) {
                ran = l.current == r;
                run(&s, &l, &base_cfg, 1, 0);
            }
            assert_true(ran || hkd_bin_racing(&l, &base_cfg) != r);
        }
        hkd_bin_pin(&l, &base_cfg, 1);
        assert_int_equal(hkd_bin_racing(&l, &base_cfg), -1);
    }
    print_message("%d runs began with an arm racing\n", raced);
    assert_true(raced >= 100);
}

/* Runs too short to measure, and garbage, change nothing. */
static void bad_observations_are_ignored(void **state)
{
    (void)state;
    hkd_bin_learn l, before;
    hkd_bin_init(&l);
    hkd_bin_obs good = { .arm = 0, .cpu_s = 1, .wall_s = 1, .rss_mib_s = 10, .peak_mib = 10, .work_mib = 100 };
    hkd_bin_obs bad[] = {
        { .arm = HKD_BIN_ARMS, .cpu_s = 1, .wall_s = 1, .rss_mib_s = 1, .peak_mib = 1, .work_mib = 1 },
        { .arm = 0, .cpu_s = 0.001, .wall_s = 1, .rss_mib_s = 1, .peak_mib = 1, .work_mib = 1 },
        { .arm = 0, .cpu_s = NAN, .wall_s = 1, .rss_mib_s = 1, .peak_mib = 1, .work_mib = 1 },
        { .arm = 0, .cpu_s = 1, .wall_s = INFINITY, .rss_mib_s = 1, .peak_mib = 1, .work_mib = 1 },
        { .arm = 0, .cpu_s = 1, .wall_s = 1, .rss_mib_s = 0, .peak_mib = 1, .work_mib = 1 },
        { .arm = 0, .cpu_s = 1, .wall_s = 1, .rss_mib_s = 1, .peak_mib = -1, .work_mib = 1 },
        { .arm = 0, .cpu_s = 1, .wall_s = 1, .rss_mib_s = 1, .peak_mib = 1, .work_mib = NAN },
    };
    assert_true(hkd_bin_observe(&l, &base_cfg, &good) >= 0);
    before = l;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(hkd_bin_observe(&l, &base_cfg, &bad[i]), -1);
    assert_int_equal(l.ignored, sizeof bad / sizeof bad[0]);
    l.ignored = 0;
    assert_memory_equal(&l, &before, sizeof l);
}

/* A pin holds whatever the evidence; releasing it returns to the choice. */
static void pin_and_release(void **state)
{
    (void)state;
    sim s = make_sim(9, 0.05);
    s.arm[2] = (truth){ 0.7, 0.7, 1.0, 1.0 };
    hkd_bin_learn l;
    hkd_bin_init(&l);
    assert_int_equal(hkd_bin_pin(&l, &base_cfg, 1), 1);
    run(&s, &l, &base_cfg, 50, 0);
    assert_int_equal(s.runs_on[1], 50);
    assert_int_equal(hkd_bin_pin(&l, &base_cfg, HKD_BIN_ARMS), -1);
    hkd_bin_pin(&l, &base_cfg, -1);
    run(&s, &l, &base_cfg, 60, 0);
    assert_int_equal(hkd_bin_choice(&l, &base_cfg), 2);
}

/* Past the window the counts halve and the means stay. */
static void the_window_halves_counts(void **state)
{
    (void)state;
    hkd_bin_cfg cfg = base_cfg;
    cfg.window = 40;
    sim s = make_sim(13, 0.0);
    s.arm[2] = (truth){ 0.5, 0.5, 1.0, 1.0 };
    hkd_bin_learn l;
    hkd_bin_init(&l);
    run(&s, &l, &cfg, 41, 0);
    double total = 0;
    for (int a = 0; a < HKD_BIN_ARMS; a++)
        total += l.arm[a].n;
    assert_true(total <= 21.0);
    assert_true(fabs(hkd_bin_ratio(&l, 2, HKD_BIN_CPU) - 0.5) < 1e-9);
}

/* Binaries whose arm 2 has truth t and whose other arms are the
 * default's, at 6% noise, where one run in ten meets a stall of the
 * machine and takes `stall` times its time. */
static int found_through_stalls(const hkd_bin_cfg *cfg, truth t, double stall, int runs)
{
    sim model = make_sim(0, 0.06);
    model.stall_chance = 0.1;
    model.stall = stall;
    model.arm[2] = t;
    return arm_2_chosen_by(cfg, &model, runs);
}

/* A shared machine stalls: one run in ten takes twice its time.  Counted
 * whole, such runs widen the noise every gain is tested against and, among
 * the default's first runs, make every other arm look cheaper; counted
 * winsorised, a 15% gain is found after 60 runs by most binaries (60 of
 * these hundred, 260 of seeds 1-400; 33 and 130 with clip_z 0), and an
 * arm no cheaper still almost never (0 of these, 3 of 400). */
static void a_gain_is_found_through_stalls(void **state)
{
    (void)state;
    int found = found_through_stalls(&base_cfg, (truth){ 0.85, 0.85, 1.0, 1.0 }, 2.0, 60);
    int mistaken = found_through_stalls(&base_cfg, (truth){ 1.0, 1.0, 1.0, 1.0 }, 2.0, 60);
    print_message("15%% gain through stalls found by %d of 100, an equal arm by %d\n", found, mistaken);
    assert_true(found >= 50);
    assert_true(mistaken <= 2);
}

/* The other way: one run in ten at 0.4 of its time (a program of two
 * threads whose runs are bimodal, as remote-free's are: some runs find the
 * threads on one core).  Runs that count winsorised must not let an arm no
 * cheaper pass for a gain on its lucky runs: 1 of these hundred (2 of seeds
 * 1-400, as many as with nothing cut); cutting at 1 standard deviation
 * instead of 3, 8 (28). */
static void lucky_runs_pass_for_no_gain(void **state)
{
    (void)state;
    int mistaken = found_through_stalls(&base_cfg, (truth){ 1.0, 1.0, 1.0, 1.0 }, 0.4, 60);
    print_message("an equal arm among lucky runs chosen by %d of 100\n", mistaken);
    assert_true(mistaken <= 2);
}

int main(void)
{
    base_cfg = hkd_bin_default_cfg;
    base_cfg.arm_mask = (1u << 5) - 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(equal_arms_keep_the_default),
        cmocka_unit_test(a_cheaper_arm_is_found),
        cmocka_unit_test(a_close_gain_is_raced),
        cmocka_unit_test(the_raced_arm_is_shown),
        cmocka_unit_test(a_slower_arm_is_never_chosen),
        cmocka_unit_test(the_memory_weight_sets_the_price),
        cmocka_unit_test(a_tiny_gain_keeps_the_default),
        cmocka_unit_test(inputs_of_different_size_compare),
        cmocka_unit_test(small_and_large_inputs_compare_at_equal_work),
        cmocka_unit_test(larger_inputs_do_not_pass_for_a_gain),
        cmocka_unit_test(merged_statistics_are_the_whole),
        cmocka_unit_test(exploration_order_and_mask),
        cmocka_unit_test(no_small_thp_arm_where_it_is_a_no_op),
        cmocka_unit_test(dear_first_runs_favour_no_arm),
        cmocka_unit_test(a_ruinous_arm_runs_once),
        cmocka_unit_test(rss_over_time_is_priced_not_guarded),
        cmocka_unit_test(a_ruinous_arm_runs_once_in_noise),
        cmocka_unit_test(an_arm_that_doubles_the_peak_runs_once),
        cmocka_unit_test(a_leaner_arm_at_equal_time_is_chosen),
        cmocka_unit_test(a_lean_gain_just_past_the_bar_is_chosen),
        cmocka_unit_test(bad_observations_are_ignored),
        cmocka_unit_test(pin_and_release),
        cmocka_unit_test(the_window_halves_counts),
        cmocka_unit_test(a_gain_is_found_through_stalls),
        cmocka_unit_test(lucky_runs_pass_for_no_gain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
