/* The learn pass: each record takes its interval's sums from the
 * accumulators (core_store.h), learns from them (learner.h), and thin sites
 * hand theirs to their size band (bands.h); records whose arm changed get
 * their table entry updated (core_set_published), and those no process
 * reported are handed to eviction.
 *
 * With many records it runs on two threads, each over half of them in
 * creation order (the halves split on a multiple of 64, so each thread owns
 * whole words of band_todo).  Records, accumulators and table entries are
 * per record; the size-band learners are shared per domain, so the band
 * work of thin sites is left in band_todo for the calling thread to do
 * after the join. */
#include "core_learn.h"
#include "core_store.h"

#include <errno.h>
#include <stdlib.h>

#include "worker.h"

#define LEARN_PREFETCH 4             /* records ahead */
#define LEARN_BATCH 32               /* changed arms published together */
#define HEAT_DECAY 0.98923f          /* per interval: half-life 64 intervals */

/* The learner's, under g.lock. */
static struct {
    uint64_t *band_todo;             /* bit per record: thin, band work pending */
    uint32_t *idle;                  /* unreported records that may go this interval, per learn part */
} lp;

/* ---- what a record saw ---- */

static double frac_at(const site_cold *c, uint32_t threshold)
{
    int lb = core_log2_floor(threshold);
    uint64_t all = 0, large = 0;
    for (uint32_t b = 0; b < HKSHM_HIST; b++) {
        all += c->hist[b];
        if ((int)b >= lb)
            large += c->hist[b];
    }
    return all ? (double)large / (double)all : 0.0;
}

static uint16_t share16(double f)
{
    return (uint16_t)(f * 65535.0 + 0.5);
}

/* The share of the site's allocations at or above the threshold it runs
 * now.  Every arm's threshold is one of two, whose shares the record
 * keeps; any other would be counted from the histogram (learn pass only:
 * no merge runs then). */
static double large_share(const site_rec *r)
{
    uint32_t t = hkd_arms[rec_arm(r)].large_threshold;
    return t == (256u << 10)  ? r->frac_256k * (1.0 / 65535.0)
           : t == (1u << 20) ? r->frac_1m * (1.0 / 65535.0)
                              : frac_at(cold_of(r), t);
}

/* ---- the pass ---- */

typedef struct learn_part {
    uint32_t begin, end;
    double seconds;
    int dirty;
    uint32_t *idle;                  /* unreported records that may go (lp.idle + begin) */
    uint32_t n_idle;
} learn_part;

/* The collectors' accumulators of one record, added up: those written
 * this interval only.  On a record the hist flag asks for the shares a
 * merge left in the cold part. */
typedef struct site_sum {
    uint32_t procs;
    int hist;
    uint64_t live, allocs, frees, bytes, hits, misses, evictions, thp, slow_ns;
    double faults;
} site_sum;

/* Inlined: as a call, the sum went through memory, field by field. */
static inline __attribute__((always_inline)) site_sum sum_of(uint32_t idx)
{
    site_sum s = { 0 };
    for (uint32_t t = 0; t < COLLECTORS; t++) {
        if (!core_touched(t, idx))
            continue;
        const site_acc *a = core_acc_at(t, idx);
        s.procs += a->procs;
        s.hist |= (int)a->hist;
        s.live += a->live;
        s.allocs += a->allocs;
        s.frees += a->frees;
        s.bytes += a->bytes;
        s.hits += a->hits;
        s.misses += a->misses;
        s.evictions += a->evictions;
        s.thp += a->thp;
        s.slow_ns += a->slow_ns;
        s.faults += a->faults;
    }
    return s;
}

static hkd_obs obs_of(const site_rec *r, const site_sum *s, double seconds)
{
    return (hkd_obs){ .allocs = s->allocs, .bytes = s->bytes, .slow_ns = s->slow_ns, .faults = s->faults,
                      .large_allocs = (uint64_t)((double)s->allocs * large_share(r) + 0.5),
                      .interval_s = seconds };
}

/* One record's own learning (either thread): 1 when the arm it runs
 * changed; *band_pending when it is thin and its band must take the
 * interval (band_pass). */
static int learn_own(site_rec *r, const hkd_obs *obs, int *band_pending)
{
    hkd_learn *l = &r->learn;
    int before = rec_arm(r);
    int was_thin = r->thin.band != HKD_NO_BAND;
    int band = hkd_thin_update(&r->thin, obs->allocs, l->sizes_known ? l->size_lo : -1, l->size_hi, &g.cfg.learn);
    if (band != HKD_NO_BAND && l->pinned < 0) {
        *band_pending = 1;
        return 0;
    }
    if (was_thin && band == HKD_NO_BAND)
        hkd_learn_resume(l, g.cfg.learn.settle_intervals);
    hkd_learn_observe_with(l, &g.cfg.learn, obs, core_fleet_prior_at(r->idx));
    return rec_arm(r) != before;
}

static void learn_range(learn_part *p)
{
    /* Creation order is memory order: the hardware prefetcher follows it,
     * and a software prefetch a few records ahead covers the learner lines.
     * Records whose arm changed are queued and published a batch at a
     * time: whether it changed is known only at the end of the learner's
     * long chain of divisions, and a branch on it there mispredicted at
     * about every other record, discarding the next record's work. */
    site_rec *changed_recs[LEARN_BATCH];
    uint32_t n_changed = 0;
    const int learning = g.cfg.learning;
    const uint32_t now_s = g.now_s;
    /* The records a few ahead, their addresses computed once (for the
     * prefetch) and used when the pass gets there. */
    site_rec *next[LEARN_PREFETCH];
    for (uint32_t k = 0; k < LEARN_PREFETCH && p->begin + k < p->end; k++)
        next[k] = rec_at(p->begin + k);
    for (uint32_t i = p->begin; i < p->end; i++) {
        site_rec *r = next[i % LEARN_PREFETCH];
        if (i + LEARN_PREFETCH < p->end) {
            /* Addresses from the chunk tables, not from the record ahead:
             * that would wait for the very line being prefetched. */
            uint32_t j = i + LEARN_PREFETCH;
            const char *ahead = (const char *)rec_at(j);
            next[i % LEARN_PREFETCH] = (site_rec *)ahead;
#pragma GCC unroll 8
            for (size_t off = 0; off < HOT_SIZE; off += 64)
                __builtin_prefetch(ahead + off, 1);
            for (uint32_t t = 0; t < COLLECTORS; t++)
                if (core_touched(t, j))
                    __builtin_prefetch(core_acc_at(t, j));
        }
        if (r->free)
            continue;
        site_sum sum = sum_of(i);
        if (sum.hist) {
            /* A merge moved the shares (the collectors are done: plain reads). */
            site_cold *c = cold_of(r);
            r->frac_256k = share16(c->frac_256k);
            r->frac_1m = share16(c->frac_1m);
            if (c->sizes_new) {
                hkd_learn_set_sizes(&r->learn, c->size_lo, c->size_hi);
                c->sizes_new = 0;
            }
        }
        hkd_obs obs = obs_of(r, &sum, p->seconds);
        int changed = 0, band_pending = 0;
        wbegin(r);
        r->allocs += sum.allocs;
        r->frees += sum.frees;
        r->bytes += sum.bytes;
        r->hits += sum.hits;
        r->misses += sum.misses;
        r->evictions += sum.evictions;
        r->thp += sum.thp;
        r->slow_ns += sum.slow_ns;
        /* A signed conversion is one instruction, an unsigned one five; a
         * count past 2^63 turns negative, and weighs nothing (table_weight). */
        r->heat = r->heat * HEAT_DECAY + (float)(int64_t)sum.bytes;
        if (learning && !r->excluded)
            changed = learn_own(r, &obs, &band_pending);
        if (!sum.procs) {
            /* Reported until the last interval: that was its last report. */
            if (r->processes)
                r->last_seen = now_s;
            /* A candidate when past the retention period, or when its
             * domain must make room. */
            if (core_aged_out(r) || core_want[r->dom])
                p->idle[p->n_idle++] = i;
        }
        r->processes = (uint16_t)(sum.procs < UINT16_MAX ? sum.procs : UINT16_MAX);
        r->live_bytes = sum.live;
        wend(r);
        changed_recs[n_changed] = r;
        n_changed += (uint32_t)changed;
        if (n_changed == LEARN_BATCH) {
            for (uint32_t k = 0; k < n_changed; k++)
                core_set_published(changed_recs[k]);
            p->dirty = 1;
            n_changed = 0;
        }
        if (band_pending)
            lp.band_todo[i / 64] |= 1ull << (i % 64);   /* band_pass takes its interval */
    }
    for (uint32_t k = 0; k < n_changed; k++)
        core_set_published(changed_recs[k]);
    p->dirty |= n_changed > 0;
}

/* The calling thread, after the join: thin sites hand their interval to
 * their domain's band and run its arm (thin sites see a band's new arm the
 * interval after it changes). */
static int band_pass(double seconds)
{
    int dirty = 0;
    for (uint32_t w = 0; w < (g.n_idx + 63) / 64; w++) {
        for (uint64_t bits = lp.band_todo[w]; bits; bits &= bits - 1) {
            uint32_t i = w * 64 + (uint32_t)__builtin_ctzll(bits);
            site_rec *r = rec_at(i);
            site_sum sum = sum_of(i);
            hkd_obs obs = obs_of(r, &sum, seconds);
            int before = rec_arm(r);
            hkd_bands *bands = hkd_domains_bands(g.domains, (int)r->dom);
            wbegin(r);
            if (bands && hkd_bands_add(bands, r->thin.band, &obs) == 0) {
                r->thin.arm = (int8_t)hkd_bands_arm(bands, r->thin.band);
                const hkd_learn *bl = hkd_bands_learner(bands, r->thin.band);
                r->thin.band_settled = (uint8_t)(bl && hkd_learn_settled(bl));
            }
            wend(r);
            if (rec_arm(r) != before) {
                core_set_published(r);
                dirty = 1;
            }
        }
        lp.band_todo[w] = 0;
    }
    hkd_domains_bands_end_interval(g.domains, &g.cfg.learn);
    return dirty;
}

static void learn_job(void *arg)
{
    learn_range(arg);
}

int core_learn_pass(double seconds)
{
    learn_part mine = { .begin = 0, .end = g.n_idx, .seconds = seconds };
    learn_part theirs = { .begin = g.n_idx, .end = g.n_idx, .seconds = seconds };
    int split = g.n_idx >= SPLIT_MIN_RECS;
    if (split)
        mine.end = theirs.begin = (g.n_idx / 2) & ~63u;
    mine.idle = lp.idle + mine.begin;
    theirs.idle = lp.idle + theirs.begin;
    if (split)
        hkd_worker_post(learn_job, &theirs);   /* split: enough records to pay for the hand-off */
    learn_range(&mine);
    if (split)
        hkd_worker_wait();
    int dirty = mine.dirty | theirs.dirty;
    if (g.cfg.learning)
        dirty |= band_pass(seconds);
    const uint32_t *idle[2] = { mine.idle, theirs.idle };
    const uint32_t n_idle[2] = { mine.n_idle, theirs.n_idle };
    if (n_idle[0] || n_idle[1])
        core_evict_idle(idle, n_idle);
    return dirty;
}

int core_learn_init(void)
{
    /* Full size from the start (zero pages until used). */
    lp.band_todo = calloc(MAX_SITES / 64, sizeof(uint64_t));
    lp.idle = malloc(MAX_SITES * sizeof *lp.idle);
    return lp.band_todo && lp.idle ? 0 : -ENOMEM;
}

void core_learn_free(void)
{
    free(lp.band_todo);
    free(lp.idle);
    lp.band_todo = NULL;
    lp.idle = NULL;
}
