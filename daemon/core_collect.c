/* Collection: what the two collecting threads do with the reports of one
 * interval.  Each adds a record's reports into its own accumulator line
 * (core_store.h) and merges size histograms into the record's cold part;
 * the learn pass takes the sums over after the join.
 *
 * The process list is an RCU-protected array rebuilt each interval from
 * the registrations the collectors walk (daemon/registry.h). */
#include "core_collect.h"
#include "core_store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core_binaries.h"
#include "registry.h"
#include "worker.h"

typedef struct proc_list {
    struct rcu_head rcu;
    uint32_t n;
    hkd_proc_info procs[];
} proc_list;

/* The learner's, under g.lock; the list being built also create_lock's
 * while both threads collect. */
static struct {
    proc_list *procs;                /* RCU: what readers see */
    proc_list *building;             /* this interval's, while collecting */
    uint32_t building_cap;
    proc_list *built;                /* this interval's, until core_procs_publish */
    uint32_t last_records;           /* site records the last interval collected */
} cl;

/* ---- histograms ---- */

/* Also the writers' lock: both collecting threads may merge into one
 * record (a key shared by processes in both halves of the registrations). */
static void hist_wbegin(site_cold *c)
{
    for (;;) {
        uint32_t s = atomic_load_explicit(&c->seq, memory_order_relaxed);
        if (!(s & 1) && atomic_compare_exchange_weak_explicit(&c->seq, &s, s + 1, memory_order_acquire,
                                                              memory_order_relaxed))
            break;
        __builtin_ia32_pause();
    }
    atomic_thread_fence(memory_order_release);
}

static void hist_wend(site_cold *c)
{
    atomic_store_explicit(&c->seq, c->seq + 1, memory_order_release);
}

/* Adds a histogram delta and finds the size range and the shares at both
 * arm thresholds.  Touches the cold part only; the learn pass takes the
 * results over when this returns 1. */
static int merge_hist(site_cold *c, const uint32_t delta[HKSHM_HIST])
{
    const int b256 = core_log2_floor(256u << 10), b1m = core_log2_floor(1u << 20);
    /* A delta moves a bucket or three: found a pair of buckets at a time,
     * and only those are added (the totals the shares need run along). */
    uint32_t moved = 0;
    for (int b = 0; b < (int)HKSHM_HIST; b += 2) {
        uint64_t pair;
        memcpy(&pair, &delta[b], sizeof pair);
        if (pair)
            moved |= (uint32_t)(delta[b] != 0) << b | (uint32_t)(delta[b + 1] != 0) << (b + 1);
    }
    if (!moved)
        return 0;                    /* sizes did not move: shares stay */
    hist_wbegin(c);
    for (uint32_t m = moved; m; m &= m - 1) {
        int b = __builtin_ctz(m);
        c->hist[b] += delta[b];
        c->n_all += delta[b];
        c->n_ge256 += b >= b256 ? delta[b] : 0;
        c->n_ge1m += b >= b1m ? delta[b] : 0;
    }
    c->used |= moved;
    /* Still under the lock: the other collector may merge into this
     * record too, and these shares must come from one histogram. */
    uint64_t all = c->n_all;
    c->frac_256k = all ? (double)c->n_ge256 / (double)all : 0.0;
    c->frac_1m = all ? (double)c->n_ge1m / (double)all : 0.0;
    c->sizes_new = 1;
    c->size_lo = (uint8_t)__builtin_ctz(c->used);
    c->size_hi = (uint8_t)(31 - __builtin_clz(c->used));
    hist_wend(c);
    return 1;
}

/* ---- collection callbacks ---- */

static uint32_t add_sat32(uint32_t a, uint64_t d)
{
    uint64_t v = a + d;
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* Each collecting thread's note of a user refused for this interval. */
static core_spent spent[COLLECTORS];

/* Either collecting thread; arg is its index, which picks its accumulator. */
static void on_site(const hkd_site_delta *d, void **cookie, void *arg)
{
    uint32_t t = (uint32_t)(uintptr_t)arg;
    site_acc *a = *cookie;
    if (!a) {
        site_rec *r = core_get_or_add(&d->key, d->module, 1, &spent[t]);
        if (!r)
            return;                  /* refused: asked again next interval */
        a = core_acc_at(t, r->idx);
        *cookie = a;
    }
    uint64_t *word = &core_acc.touched[t][a->rec / 64], bit = 1ull << (a->rec % 64);
    if (!(*word & bit)) {
        /* The thread's first report of the record this interval: what the
         * line holds is an earlier interval's. */
        *word |= bit;
        *a = (site_acc){ .rec = a->rec };
    }
    a->procs++;
    a->live += d->live_bytes;
    if (!d->changed)
        return;
    a->allocs = add_sat32(a->allocs, d->allocs);
    a->frees = add_sat32(a->frees, d->frees);
    a->hits = add_sat32(a->hits, d->bigcache_hits);
    a->misses = add_sat32(a->misses, d->bigcache_misses);
    a->evictions = add_sat32(a->evictions, d->bigcache_evictions);
    a->thp = add_sat32(a->thp, d->thp_blocks);
    a->bytes += d->bytes;
    a->slow_ns += d->slow_ns;
    a->faults += (float)d->faults;
    /* Every few intervals; the shares live in the cold part. */
    if (d->has_hist && merge_hist(cold_at(a->rec), d->hist))
        a->hist = 1;
}

static void on_proc(const hkd_proc_info *p, void *arg)
{
    (void)arg;
    core_binaries_proc(p);
    if (p->ended)
        return;                      /* gone: not in the list of processes */
    pthread_mutex_lock(&g.create_lock);
    proc_list *b = cl.building;
    if (b && b->n < cl.building_cap)
        b->procs[b->n++] = *p;
    pthread_mutex_unlock(&g.create_lock);
}

static void free_procs(struct rcu_head *h)
{
    free(caa_container_of(h, proc_list, rcu));
}

/* ---- one interval ---- */

typedef struct collect_part {
    hkd_collector *col;
    hkd_collect_stats st;
    int rc;
} collect_part;

static int collect(hkd_collector *c, hkd_collect_stats *st, void *arg)
{
    hkd_collect_ops ops = { .site = on_site, .proc = on_proc };
    rcu_read_lock();
    int rc = hkd_collect(c, &ops, arg, st);
    rcu_read_unlock();
    return rc;
}

static void collect_job(void *arg)
{
    collect_part *p = arg;
    p->rc = collect(p->col, &p->st, (void *)(uintptr_t)1);
}

/* Runs the job on the second thread once the fleet is big enough to pay
 * for the hand-off; inline before that. */
static void post(hkd_job_fn fn, void *arg)
{
    if (hkd_worker_started() || g.n_idx >= SPLIT_MIN_RECS || cl.last_records >= SPLIT_MIN_RECS)
        hkd_worker_post(fn, arg);
    else
        fn(arg);
}

int core_collect(hkd_collect_stats *st)
{
    uint32_t cap = hkd_registry_count();
    proc_list *b = malloc(sizeof *b + (cap ? cap : 1) * sizeof(hkd_proc_info));
    if (b) {
        b->n = 0;
        cl.building = b;
        cl.building_cap = cap;
    }
    /* Accumulators from earlier intervals are stale from here on. */
    for (uint32_t t = 0; t < COLLECTORS; t++) {
        memset(core_acc.touched[t], 0, ((g.n_idx + 63) / 64) * sizeof(uint64_t));
        spent[t] = CORE_SPENT_NONE;
    }
    /* Half of the registrations each, on two threads once the fleet is big. */
    collect_part theirs = { .col = g.col2 };
    post(collect_job, &theirs);
    int rc = collect(g.col, st, (void *)(uintptr_t)0);
    hkd_worker_wait();
    for (uint32_t t = 0; t < COLLECTORS; t++)
        core_spent_settle(&spent[t]);
    if (theirs.rc < 0)
        rc = theirs.rc;
    st->live += theirs.st.live;
    st->ended += theirs.st.ended;
    st->skipped_busy += theirs.st.skipped_busy;
    st->site_records += theirs.st.site_records;
    cl.last_records = st->site_records;
    cl.building = NULL;
    cl.built = b;
    return rc;
}

void core_procs_publish(void)
{
    proc_list *b = cl.built;
    cl.built = NULL;
    if (b) {
        proc_list *old = cl.procs;
        rcu_assign_pointer(cl.procs, b);
        if (old)
            call_rcu(&old->rcu, free_procs);
    }
}

void core_collect_free(void)
{
    cl.last_records = 0;
    proc_list *p = cl.procs;
    rcu_assign_pointer(cl.procs, NULL);
    synchronize_rcu();
    free(p);
    rcu_barrier();
}

/* ---- what readers see (core_api.h) ---- */

int hkd_for_each_proc(int (*fn)(const hkd_proc_info *, void *), void *arg)
{
    if (!fn)
        return -EINVAL;
    int rc = 0;
    rcu_read_lock();
    proc_list *p = rcu_dereference(cl.procs);
    for (uint32_t i = 0; p && i < p->n && rc == 0; i++)
        rc = fn(&p->procs[i], arg);
    rcu_read_unlock();
    return rc;
}
