/* UCB1 over a fixed arm set per site.
 *
 * A pull is a stretch of intervals during which one arm is published for a
 * site.  Its cost is what the fleet paid per allocation under that arm:
 * slow-path nanoseconds, page faults (priced at a fixed ns each) and memory
 * BigCache keeps idle (priced per MiB-second at the operator's memory
 * weight, the price the per-binary learner uses: at a cheaper one, a site
 * would keep blocks cached that raise its program's peak RSS by a tenth to
 * save a few microseconds a second).  Costs become rewards in
 * [0,1] on a log scale around the site's reference cost, so rewards are
 * comparable across sites of very different size and UCB1's bounds hold. */
#include "learner.h"

#include <math.h>
#include <string.h>

#define PAGE_FAULT_NS      500.0    /* one minor fault: trap + zeroing a page */
#define COST_FLOOR_NS      1.0

/* Arm 0 is the allocator's default (1 MiB, 4 slots, THP off): a site the
 * daemon knows nothing of runs exactly as it would without a daemon, and a
 * pull of arm 0 measures what the baseline costs.  Within each pair the THP
 * variant follows, so sizes below 2 MiB fold it onto the even arm. */
const hkd_arm hkd_arms[HKD_N_ARMS] = {
    { 1u << 20,   4, 0, "large=1M,slots=4,thp=off" },
    { 1u << 20,   4, 1, "large=1M,slots=4,thp=on" },
    { 1u << 20,   0, 0, "large=1M,slots=0,thp=off" },
    { 1u << 20,   0, 1, "large=1M,slots=0,thp=on" },
    { 256u << 10, 4, 0, "large=256K,slots=4,thp=off" },
    { 256u << 10, 4, 1, "large=256K,slots=4,thp=on" },
    { 256u << 10, 0, 0, "large=256K,slots=0,thp=off" },
    { 256u << 10, 0, 1, "large=256K,slots=0,thp=on" },
};

const hkd_learn_cfg hkd_learn_default_cfg = {
    .min_allocs = 64,
    .settle_intervals = 1,
    .max_pull_intervals = 30,
    .explore = 0.25,
    .window = 4096,
    .memory_weight_ns = HKD_MEMORY_WEIGHT_NS,
};

void hkd_learn_init(hkd_learn *l)
{
    memset(l, 0, sizeof *l);
    l->current = HKD_DEFAULT_ARM;
    l->pinned = -1;
}

static int arm_index(uint32_t threshold, uint16_t slots, uint8_t thp)
{
    for (int i = 0; i < HKD_N_ARMS; i++)
        if (hkd_arms[i].large_threshold == threshold && hkd_arms[i].bigcache_slots == slots && hkd_arms[i].thp == thp)
            return i;
    return -1;
}

int hkd_arm_canonical(int arm, int lo, int hi)
{
    if (arm < 0 || arm >= HKD_N_ARMS)
        return HKD_DEFAULT_ARM;
    const hkd_arm *a = &hkd_arms[arm];
    const hkd_arm *d = &hkd_arms[HKD_DEFAULT_ARM];
    uint32_t thr = a->large_threshold;
    uint16_t slots = a->bigcache_slots;
    uint8_t thp = a->thp;
    /* The threshold only matters for sizes between the candidates. */
    int lo_thr = 31, hi_thr = 0;
    for (int i = 0; i < HKD_N_ARMS; i++) {
        int b = 31 - __builtin_clz(hkd_arms[i].large_threshold);
        lo_thr = b < lo_thr ? b : lo_thr;
        hi_thr = b > hi_thr ? b : hi_thr;
    }
    if (lo >= hi_thr || hi < lo_thr)
        thr = d->large_threshold;
    /* Nothing reaches the large path: its knobs are moot. */
    if (hi < 31 - __builtin_clz(thr)) {
        slots = d->bigcache_slots;
        thp = d->thp;
    }
    /* Huge pages need blocks of 2 MiB. */
    if (hi < 21)
        thp = d->thp;
    int c = arm_index(thr, slots, thp);
    return c >= 0 ? c : arm;
}

void hkd_learn_set_sizes(hkd_learn *l, int lo, int hi)
{
    if (l->sizes_known && l->size_lo == lo && l->size_hi == hi)
        return;
    l->sizes_known = 1;
    l->size_lo = (uint8_t)lo;
    l->size_hi = (uint8_t)hi;
    /* Huge pages are never explored (an operator may pin them): what they
     * cost is zeroing 2 MiB, and at times compacting memory, at the fault;
     * what they save is TLB misses.  The cost above sees neither, only
     * that the page faults it counts become 512 times fewer, so it would
     * choose them for every big block and slow the program down (3x on a
     * program that maps 8 MiB blocks in a loop).  Small-object huge pages
     * are a per-binary arm, judged by the program's real time. */
    for (int a = 0; a < HKD_N_ARMS; a++) {
        int c = hkd_arm_canonical(a, lo, hi);
        if (hkd_arms[c].thp)
            c = hkd_arm_canonical(c - 1, lo, hi);   /* its twin without them */
        l->canon[a] = (uint8_t)c;
    }
}

static int relevant(const hkd_learn *l, int arm)
{
    return !l->sizes_known || l->canon[arm] == arm;
}

static int canonical(const hkd_learn *l, int arm)
{
    return l->sizes_known ? l->canon[arm] : arm;
}

int hkd_arm_by_name(const char *name)
{
    for (int i = 0; i < HKD_N_ARMS; i++)
        if (strcmp(hkd_arms[i].name, name) == 0)
            return i;
    return -1;
}

double hkd_learn_cost(const hkd_learn *l, const hkd_learn_cfg *cfg, int arm)
{
    if (l->acc_allocs == 0)
        return 0.0;
    double allocs = (double)l->acc_allocs;
    double idle_ns = 0.0;
    if (l->acc_large > 0 && arm >= 0 && arm < HKD_N_ARMS) {
        /* A full ring of blocks of the site's mean size sits idle between uses. */
        double mean = (double)l->acc_bytes / allocs;
        double mib = hkd_arms[arm].bigcache_slots * mean / (1024.0 * 1024.0);
        idle_ns = mib * cfg->memory_weight_ns * l->acc_seconds;
    }
    double cost = ((double)l->acc_slow_ns + l->acc_faults * PAGE_FAULT_NS + idle_ns) / allocs;
    return cost < COST_FLOOR_NS ? COST_FLOOR_NS : cost;
}

double hkd_reward_from_cost(double cost, double ref)
{
    if (!(cost > COST_FLOOR_NS))
        cost = COST_FLOOR_NS;
    if (!(ref > COST_FLOOR_NS))
        ref = COST_FLOOR_NS;
    double r = 0.5 - 0.25 * log2(cost / ref);
    return r < 0.0 ? 0.0 : r > 1.0 ? 1.0 : r;
}

/* 1/sqrt(n) and sqrt(2 ln n) for small n: the daemon selects for every
 * site every interval.  Filled at load time: a check for a table not yet
 * filled was an eighth of a choice's instructions. */
#define INV_SQRT_N 4096
static double inv_sqrt_tab[INV_SQRT_N];
static double root_log_tab[INV_SQRT_N];

__attribute__((constructor)) static void fill_tables(void)
{
    for (int i = 1; i < INV_SQRT_N; i++) {
        inv_sqrt_tab[i] = 1.0 / sqrt((double)i);
        root_log_tab[i] = sqrt(2.0 * log((double)i));
    }
}

static double inv_sqrt(uint64_t n)
{
    if (n >= INV_SQRT_N)
        return 1.0 / sqrt((double)n);
    return inv_sqrt_tab[n];
}

/* Bit i set when arm i is one the site explores (relevant()), from all
 * eight canon bytes at once: a byte equal to its index is a zero byte of
 * the XOR below; zero bytes become their top bit, gathered by the
 * multiply (every partial product lands on its own bit, so no carries). */
_Static_assert(HKD_N_ARMS == 8, "one canon byte per arm in a 64-bit word");

static unsigned relevant_mask(const hkd_learn *l)
{
    if (!l->sizes_known)
        return 0xFFu;
    const uint64_t low7 = 0x7F7F7F7F7F7F7F7Full;
    uint64_t c;
    memcpy(&c, l->canon, sizeof c);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    c = __builtin_bswap64(c);        /* canon[i] in byte i from the bottom */
#endif
    uint64_t x = c ^ 0x0706050403020100ull;
    uint64_t zero = ~(((x & low7) + low7) | x | low7);
    return (unsigned)(((zero >> 7) * 0x0102040810204080ull) >> 56);
}

int hkd_ucb_select(const hkd_learn *l, double explore)
{
    /* Masks instead of a test per arm: which arms a site explores differs
     * from site to site, so per-arm branches mispredicted at every site. */
    unsigned arms = relevant_mask(l);
    for (unsigned m = arms; m; m &= m - 1)
        if (l->pulls[__builtin_ctz(m)] == 0)
            return __builtin_ctz(m);
    double rl;
    if (l->total_pulls < INV_SQRT_N) {
        rl = root_log_tab[l->total_pulls];
    } else {
        rl = sqrt(2.0 * log((double)l->total_pulls));
    }
    double bonus = explore * rl;
    int best = 0;
    double best_score = -1.0;
    /* Every relevant arm has been pulled here; lowest index first. */
    for (unsigned m = arms; m; m &= m - 1) {
        int i = __builtin_ctz(m);
        double score = (double)l->mean[i] + bonus * inv_sqrt(l->pulls[i]);
        if (score > best_score) {
            best_score = score;
            best = i;
        }
    }
    return best;
}

int hkd_learn_settled(const hkd_learn *l)
{
    if (l->pinned >= 0)
        return 1;
    int best = -1;
    for (int i = 0; i < HKD_N_ARMS; i++) {
        if (!relevant(l, i))
            continue;
        if (l->pulls[i] == 0)
            return 0;
        if (best < 0 || l->mean[i] > l->mean[best])
            best = i;
    }
    return best == canonical(l, l->current);
}

/* An arm's pulls and mean reward, the fleet's added to the site's own. */
static void combined(const hkd_learn *l, const hkd_prior *p, int arm, double *pulls, double *mean)
{
    double n = l->pulls[arm], sum = hkd_learn_reward_sum(l, arm);
    if (p) {
        n += p->pulls[arm];
        sum += p->reward_sum[arm];
    }
    *pulls = n;
    *mean = n > 0 ? sum / n : 0.0;
}

int hkd_learn_best_with(const hkd_learn *l, const hkd_prior *p)
{
    int best = -1;
    double best_mean = 0.0;
    for (int i = 0; i < HKD_N_ARMS; i++) {
        if (!relevant(l, i))
            continue;
        double n, mean;
        combined(l, p, i, &n, &mean);
        if (n <= 0)
            return -1;
        /* Compared as floats, as the learner keeps means: with an empty
         * prior the answer is hkd_learn_settled's. */
        if (best < 0 || (float)mean > (float)best_mean) {
            best = i;
            best_mean = mean;
        }
    }
    return best;
}

int hkd_learn_settled_with(const hkd_learn *l, const hkd_prior *p)
{
    if (!p)
        return hkd_learn_settled(l);   /* the interval's path (size bands): float compares only */
    if (l->pinned >= 0)
        return 1;
    int best = hkd_learn_best_with(l, p);
    return best >= 0 && best == canonical(l, l->current);
}

int hkd_ucb_select_with(const hkd_learn *l, const hkd_prior *p, double explore)
{
    if (!p)
        return hkd_ucb_select(l, explore);
    unsigned arms = relevant_mask(l);
    double n[HKD_N_ARMS], mean[HKD_N_ARMS], total = 0.0;
    for (int i = 0; i < HKD_N_ARMS; i++) {
        combined(l, p, i, &n[i], &mean[i]);
        total += n[i];
    }
    for (unsigned m = arms; m; m &= m - 1)
        if (n[__builtin_ctz(m)] <= 0)
            return __builtin_ctz(m);
    double bonus = explore * (total > 1.0 ? sqrt(2.0 * log(total)) : 0.0);
    int best = 0;
    double best_score = -1.0;
    for (unsigned m = arms; m; m &= m - 1) {
        int i = __builtin_ctz(m);
        double score = mean[i] + bonus / sqrt(n[i]);
        if (score > best_score) {
            best_score = score;
            best = i;
        }
    }
    return best;
}

/* A host that joins a site the fleet has measured confirms the fleet's
 * choice before it explores: for its first pulls it runs the arm of the
 * best combined mean.  One costly pull (a first process's cold faults, a
 * loaded machine) then cannot send it exploring arms other hosts already
 * measured; if its own pulls disagree, they move that best arm too. */
#define FLEET_CONFIRM_PULLS 4

static int prior_has_pulls(const hkd_prior *p)
{
    double n = 0.0;
    for (int i = 0; i < HKD_N_ARMS; i++)
        n += p->pulls[i];
    return n > 0.0;
}

int hkd_learn_next_with(const hkd_learn *l, const hkd_prior *p, double explore)
{
    if (p && l->total_pulls < FLEET_CONFIRM_PULLS && prior_has_pulls(p)) {
        int best = hkd_learn_best_with(l, p);
        if (best >= 0)
            return best;
    }
    return hkd_ucb_select_with(l, p, explore);
}

static void halve_counts(hkd_learn *l)
{
    /* Halving keeps every mean and lets the site follow a changed workload. */
    l->total_pulls = 0;
    for (int i = 0; i < HKD_N_ARMS; i++) {
        l->pulls[i] = (uint32_t)(((uint64_t)l->pulls[i] + 1) / 2);
        l->total_pulls += l->pulls[i];
    }
}

void hkd_learn_set_counts(hkd_learn *l, const uint64_t pulls[HKD_N_ARMS], const double reward_sum[HKD_N_ARMS])
{
    uint64_t p[HKD_N_ARMS];
    uint64_t total;
    memcpy(p, pulls, sizeof p);
    for (;;) {
        total = 0;
        int fits = 1;
        for (int i = 0; i < HKD_N_ARMS; i++) {
            total += p[i];
            fits &= p[i] <= UINT32_MAX / HKD_N_ARMS;
        }
        if (fits)
            break;
        for (int i = 0; i < HKD_N_ARMS; i++)
            p[i] = p[i] / 2 + (p[i] & 1);
    }
    for (int i = 0; i < HKD_N_ARMS; i++) {
        l->pulls[i] = (uint32_t)p[i];
        l->mean[i] = pulls[i] ? (float)(reward_sum[i] / (double)pulls[i]) : 0.0f;
    }
    l->total_pulls = (uint32_t)total;
}

void hkd_ucb_update(hkd_learn *l, int arm, double reward, uint64_t window)
{
    if (arm < 0 || arm >= HKD_N_ARMS)
        return;
    /* Without a window, the 32-bit total is one (every pull is an interval:
     * decades away, but it must not wrap). */
    if (l->total_pulls == UINT32_MAX || l->pulls[arm] == UINT32_MAX)
        halve_counts(l);
    l->pulls[arm]++;
    l->mean[arm] += (float)((reward - (double)l->mean[arm]) / (double)l->pulls[arm]);
    l->total_pulls++;
    if (window && l->total_pulls > window)
        halve_counts(l);
}

static void reset_pull(hkd_learn *l, uint32_t settle)
{
    l->settle = settle;
    l->pull_intervals = 0;
    l->acc_allocs = l->acc_bytes = l->acc_slow_ns = l->acc_large = 0;
    l->acc_faults = l->acc_seconds = 0.0;
}

int hkd_learn_observe_with(hkd_learn *l, const hkd_learn_cfg *cfg, const hkd_obs *obs, const hkd_prior *prior)
{
    if (l->settle > 0) {
        l->settle--;
        return 0;
    }
    if (obs->allocs == 0 && l->acc_allocs == 0)
        return 0;                       /* an idle site teaches nothing */
    l->pull_intervals++;
    l->acc_allocs += obs->allocs;
    l->acc_bytes += obs->bytes;
    l->acc_slow_ns += obs->slow_ns;
    l->acc_large += obs->large_allocs;
    l->acc_faults += obs->faults;
    /* Cached blocks are priced only over intervals in which the site
     * allocated: a pull that outlives its processes holds nothing after
     * them, and counting those seconds would make caching look costly in
     * short-lived programs. */
    if (obs->allocs > 0)
        l->acc_seconds += obs->interval_s;
    if (l->acc_allocs < cfg->min_allocs && l->pull_intervals < cfg->max_pull_intervals)
        return 0;
    if (l->acc_allocs == 0)
        return 0;

    int arm = hkd_learn_arm(l);
    double cost = hkd_learn_cost(l, cfg, arm);
    arm = canonical(l, arm);
    if (l->ref_cost <= 0.0)
        l->ref_cost = cost;
    hkd_ucb_update(l, arm, hkd_reward_from_cost(cost, l->ref_cost), cfg->window);

    int next = l->pinned >= 0 ? l->pinned : hkd_learn_next_with(l, prior, cfg->explore);
    int changed = next != l->current;
    l->current = next;
    reset_pull(l, changed ? cfg->settle_intervals : 0);
    return changed;
}

void hkd_learn_resume(hkd_learn *l, uint32_t settle)
{
    reset_pull(l, settle);
}

int hkd_learn_pin(hkd_learn *l, int arm)
{
    int before = hkd_learn_arm(l);
    l->pinned = arm >= 0 && arm < HKD_N_ARMS ? arm : -1;
    if (l->pinned >= 0)
        l->current = l->pinned;
    int changed = hkd_learn_arm(l) != before;
    if (changed)
        reset_pull(l, 1);
    return changed;
}
