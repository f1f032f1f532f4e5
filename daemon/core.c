/* The daemon core: the merged site records and the interval loop body.
 *
 * The records (core_rec.h) are found through a cds_lfht keyed by the site
 * key (domain, module_hash, offset), written by the learner and the two
 * collecting threads, read by control-server threads inside rcu_read_lock.
 * The learner updates records in place; each carries a sequence count so
 * a reader copies a consistent view without ever making the learner wait.
 * Operations that change learned state from other threads (reset, pin,
 * import) take g.lock, which the interval also holds: they wait for the
 * learner, never the other way round.
 *
 * Who may add records, and how many, is the domains' to say (domains.h):
 * a flood of keys from one user is refused past its limits, counted and
 * logged.  Records no process reports age out after the retention period,
 * and a user short of room gives up its own least recently reported ones;
 * what an evicted record learned goes to the archive (archive.h) and comes
 * back with the key.
 *
 * Eviction never leaves a way to an evicted record.  Readers reach records
 * through the hash table or by creation slot (hkd_site_page): nodes are
 * deleted and slots marked free first, and the storage is reused only
 * after an RCU grace period; a reused slot is odd while it is rebuilt and
 * its sequence count never goes back, so a copy by slot is always of one
 * site.  Collectors reach records through
 * per-(process, site index) cookies, which point at a record's accumulator
 * line; before the slot is reused every cookie a collector may still read
 * that points at it is cleared (hkd_collector_drop_cookies), whether or not
 * its process is alive, busy or silent: only records no process reported
 * this interval are evicted at all, but that alone would not cover a
 * process whose region was skipped (held mid-write) and that reports again
 * later with its old cookies.  All of it happens at the end of an
 * interval, on the learner, while no collection runs.
 *
 * At 65,536 keys an interval is bound by the instructions and lines it
 * spends per site: the learn pass walks records in memory order and
 * touches each once.  Published entries are kept current in place, so
 * publishing copies one array; choosing which sites the table holds (and
 * sorting them) happens only when the set of records changed, or every few
 * intervals while there are more sites than the table holds.
 *
 * The process list is an RCU-protected array rebuilt each interval from
 * the registrations the collectors walk (daemon/registry.h). */
#include "core.h"
#include "core_api.h"
#include "core_rec.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>

#include "collector.h"
#include "hakmem.h"
#include "log.h"
#include "core_binaries.h"
#include "registry.h"
#include "saver.h"
#include "site_key.h"
#include "worker.h"

#define LEARN_PREFETCH 4             /* records ahead */
#define LEARN_BATCH 32               /* changed arms published together */
#define UNTRUSTED_MAX (MAX_SITES / 2)  /* users other than root and the daemon's, together */
#define HEAT_DECAY 0.98923f          /* per interval: half-life 64 intervals */
#define EVICT_MAX 8192u              /* records evicted per interval at most */

/* This interval's sums over one collecting thread's processes: one line,
 * in a dense array per thread, so the two threads never share a line.
 * The first report of an interval overwrites it (the thread's bit in
 * g.touched says whether it has one), so nothing clears it and the learn
 * pass reads only the accumulators that were written.  Counts are 32 bits,
 * saturating: a per-interval sum past four billion is not a real site. */
typedef struct site_acc {
    uint32_t rec;                    /* the record's idx */
    uint32_t procs;
    uint32_t allocs, frees, hits, misses, evictions, thp;
    uint64_t bytes, slow_ns, live;
    float faults;
    uint32_t hist;                   /* a histogram merge moved the shares in the cold part */
} __attribute__((aligned(64))) site_acc;

_Static_assert(sizeof(site_acc) == 64, "accumulator is one cache line");

typedef struct proc_list {
    struct rcu_head rcu;
    uint32_t n;
    hkd_proc_info procs[];
} proc_list;

core_state g = { .lock = PTHREAD_MUTEX_INITIALIZER, .create_lock = PTHREAD_MUTEX_INITIALIZER };

/* The interval's own state (the learner's, under g.lock). */
static struct {
    site_acc *acc_chunks[COLLECTORS][N_CHUNKS];
    uint64_t *touched[COLLECTORS];   /* bit per record: the thread's accumulator is this interval's */
    uint64_t *band_todo;             /* bit per record: thin, band work pending */
    uint32_t *idle;                  /* unreported records that may go this interval, per learn part */
    uint32_t want[HKD_DOMAINS_MAX];  /* idle records each domain gives up for room */
    int any_want;
    uint32_t last_records;           /* site records the last interval collected */
    proc_list *procs;                /* RCU */
    proc_list *building;
    uint32_t building_cap;
    uint64_t last_ns, start_ns;
    _Atomic uint64_t last_interval_ns;
    _Atomic uint64_t phase_ns[3];    /* collect, learn, publish: last interval */
    _Atomic uint32_t n_procs, n_sites, n_registrations;
    int ready;
} iv;

/* ---- clocks ---- */

static uint64_t realtime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t core_clock_ms(void)
{
    return g.cfg.clock_ms ? g.cfg.clock_ms() : realtime_ms();
}

/* ---- site records ---- */

static unsigned long key_hash(const hkd_site_key *k)
{
    return (unsigned long)hkd_site_key_hash(k);
}

static int key_match(struct cds_lfht_node *node, const void *key)
{
    const site_cold *c = caa_container_of(node, site_cold, node);
    return hkd_site_key_eq(&c->key, key);
}

site_rec *core_lookup(const hkd_site_key *k)
{
    struct cds_lfht_iter it;
    cds_lfht_lookup(g.ht, key_hash(k), key_match, k, &it);
    struct cds_lfht_node *n = cds_lfht_iter_get_node(&it);
    return n ? caa_container_of(n, site_cold, node)->rec : NULL;
}

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

static int log2_floor(uint32_t v)
{
    return v ? 31 - __builtin_clz(v) : 0;
}

static double frac_at(const site_cold *c, uint32_t threshold)
{
    int lb = log2_floor(threshold);
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

/* Adds a histogram delta and finds the size range and the shares at both
 * arm thresholds.  Touches the cold part only; the learn pass takes the
 * results over when this returns 1. */
static int merge_hist(site_cold *c, const uint32_t delta[HKSHM_HIST])
{
    const int b256 = log2_floor(256u << 10), b1m = log2_floor(1u << 20);
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

void core_state_of(const site_rec *r, hkd_site_state *s)
{
    const site_cold *c = cold_of(r);
    hkd_site_state_of(s, &c->key, &r->learn);
    s->last_seen = r->processes ? g.now_s : r->last_seen;
    s->usage = c->usage_before + r->allocs;
}

/* Chunk storage: one allocation per chunk, the hot records, the cold
 * parts and each collecting thread's accumulators one after another (so
 * that rounding to huge pages costs a chunk once, not each part: 1 KiB a
 * record instead of 1.25).  At 65,536 keys an interval walks some 50 MB of
 * records in 4 KiB pages, a TLB miss every few records; chunks after the
 * first ask for huge pages (about a tenth off both phases).  The first
 * stays on small pages, so a daemon with a few thousand sites stays small. */
#define HUGE_PAGE (2u << 20)
#define CHUNK_HOT ((size_t)CHUNK_RECS * HOT_SIZE)
#define CHUNK_COLD ((size_t)CHUNK_RECS * sizeof(site_cold))
#define CHUNK_ACC ((size_t)CHUNK_RECS * sizeof(site_acc))
#define CHUNK_BYTES (CHUNK_HOT + CHUNK_COLD + COLLECTORS * CHUNK_ACC)
_Static_assert(CHUNK_HOT % 64 == 0 && CHUNK_COLD % 64 == 0, "each part of a chunk starts on a line");

static void *chunk_alloc(uint32_t ci)
{
    if (ci == 0)
        return aligned_alloc(64, CHUNK_BYTES);
    size_t size = (CHUNK_BYTES + HUGE_PAGE - 1) & ~(size_t)(HUGE_PAGE - 1);
    void *p = aligned_alloc(HUGE_PAGE, size);
    if (p)
        madvise(p, size, MADV_HUGEPAGE);   /* advice only: fine if refused */
    return p;
}

static void free_chunk(uint32_t ci)
{
    free(g.hot_chunks[ci]);
    g.hot_chunks[ci] = NULL;
    g.cold_chunks[ci] = NULL;
    for (uint32_t t = 0; t < COLLECTORS; t++)
        iv.acc_chunks[t][ci] = NULL;
}

static site_acc *acc_at(uint32_t t, uint32_t idx)
{
    return &iv.acc_chunks[t][idx / CHUNK_RECS][idx % CHUNK_RECS];
}

static int touched(uint32_t t, uint32_t idx)
{
    return (int)(iv.touched[t][idx / 64] >> (idx % 64)) & 1;
}

/* A creation slot for a new record: an evicted one, or the next (its
 * chunk made when it is the first).  Under create_lock. */
static int new_slot(uint32_t *idx)
{
    if (g.n_free) {
        *idx = g.free_idx[--g.n_free];
        return 0;
    }
    if (g.n_idx >= MAX_SITES)
        return -ENOSPC;
    uint32_t ci = g.n_idx / CHUNK_RECS;
    if (g.n_idx % CHUNK_RECS == 0) {
        /* Cache-line aligned hot records back to back, in creation order. */
        char *block = chunk_alloc(ci);
        if (!block)
            return -ENOMEM;
        g.hot_chunks[ci] = block;
        g.cold_chunks[ci] = (site_cold *)(block + CHUNK_HOT);
        for (uint32_t t = 0; t < COLLECTORS; t++)
            iv.acc_chunks[t][ci] = (site_acc *)(block + CHUNK_HOT + CHUNK_COLD + t * CHUNK_ACC);
        for (uint32_t t = 0; t < COLLECTORS; t++)
            for (uint32_t k = 0; k < CHUNK_RECS; k++)
                iv.acc_chunks[t][ci][k].rec = ci * CHUNK_RECS + k;
    }
    *idx = g.n_idx++;
    return 0;
}

/* Under create_lock, inside rcu_read_lock: a record for k in domain slot
 * dom, learning from what the archive kept of k. */
static site_rec *add_locked(const hkd_site_key *k, const char *module, int dom)
{
    uint32_t idx;
    int reused = g.n_free > 0;
    if (new_slot(&idx) < 0)
        return NULL;
    site_rec *r = rec_at(idx);
    site_cold *c = cold_at(idx);
    /* A reader may be copying a reused slot (hkd_site_page): it stays odd
     * while it is rebuilt, and its count goes on, never back, so no copy
     * passes for a site it is not.  A new slot is not read before n_idx
     * covers it. */
    uint32_t seq = reused ? atomic_load_explicit(&r->seq, memory_order_relaxed) : 0;
    atomic_store_explicit(&r->seq, seq | 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    memset((char *)r + sizeof r->seq, 0, HOT_SIZE - sizeof r->seq);
    memset(c, 0, sizeof *c);
    r->idx = idx;
    r->dom = (uint32_t)dom;
    c->rec = r;
    c->key = *k;
    snprintf(c->module, sizeof c->module, "%s", module ? module : "");
    hkd_learn_init(&r->learn);
    hkd_thin_init(&r->thin);
    hkd_site_state kept;
    if (hkd_archive_take(g.archive, k, &kept)) {
        hkd_site_state_learn(&kept, &r->learn);
        c->usage_before = kept.usage;
        atomic_store_explicit(&g.n_archived, hkd_archive_count(g.archive), memory_order_relaxed);
    }
    r->last_seen = g.now_s;
    /* With a full table it waits for the next choice of sites to learn. */
    r->excluded = (uint32_t)g.over_cap;
    wend(r);
    cds_lfht_node_init(&c->node);
    cds_lfht_add(g.ht, key_hash(k), &c->node);
    g.set_changed = 1;
    g.dirty = 1;
    return r;
}

site_rec *core_get_or_add(const hkd_site_key *k, const char *module, int by_report)
{
    /* Once per process and site (the caller keeps the answer), or once an
     * interval while refused.  The lookup needs no lock (readers of the
     * table never do), so a flood of keys holds the lock only to be
     * refused, one at a time. */
    site_rec *r = core_lookup(k);
    if (r && (cold_of(r)->module[0] || !module || !module[0]))
        return r;
    pthread_mutex_lock(&g.create_lock);
    if (r) {
        /* A site restored from state has no module path until a client names it. */
        if (!cold_of(r)->module[0])
            snprintf(cold_of(r)->module, sizeof cold_of(r)->module, "%s", module);
    } else {
        int dom = hkd_domains_slot(g.domains, k->domain);
        if (dom >= 0 && hkd_domains_admit(g.domains, dom, by_report) == 0) {
            /* The other collecting thread may have added it meanwhile. */
            if ((r = core_lookup(k)) || !(r = add_locked(k, module, dom)))
                hkd_domains_unadmit(g.domains, dom, by_report);
        }
    }
    pthread_mutex_unlock(&g.create_lock);
    return r;
}

/* ---- collection callbacks ---- */

static uint32_t add_sat32(uint32_t a, uint64_t d)
{
    uint64_t v = a + d;
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* Either collecting thread; arg is its index, which picks its accumulator. */
static void on_site(const hkd_site_delta *d, void **cookie, void *arg)
{
    uint32_t t = (uint32_t)(uintptr_t)arg;
    site_acc *a = *cookie;
    if (!a) {
        site_rec *r = core_get_or_add(&d->key, d->module, 1);
        if (!r)
            return;                  /* refused: asked again next interval */
        a = acc_at(t, r->idx);
        *cookie = a;
    }
    uint64_t *word = &iv.touched[t][a->rec / 64], bit = 1ull << (a->rec % 64);
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
    proc_list *b = iv.building;
    if (b && b->n < iv.building_cap)
        b->procs[b->n++] = *p;
    pthread_mutex_unlock(&g.create_lock);
}

static void free_procs(struct rcu_head *h)
{
    free(caa_container_of(h, proc_list, rcu));
}

/* ---- eviction ---- */

typedef struct evict_set {
    uint32_t *idx;
    uint32_t n;
    const site_acc **acc;            /* their accumulator lines, sorted: what cookies point at */
    uint32_t n_acc;
} evict_set;

static int ptr_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)*(const void *const *)a, y = (uintptr_t)*(const void *const *)b;
    return x < y ? -1 : x > y;
}

static int any_cookie(const void *cookie, void *arg)
{
    (void)cookie;
    (void)arg;
    return 1;
}

static int cookie_stale(const void *cookie, void *arg)
{
    const evict_set *e = arg;
    return bsearch(&cookie, e->acc, e->n_acc, sizeof *e->acc, ptr_cmp) != NULL;
}

/* Evicts the records e->idx[]: their learning to the archive, their nodes
 * out of the hash table, a grace period, every cookie at them cleared,
 * and their slots to the free list.  The learner, outside any read-side
 * section, while no collection runs. */
static void evict(evict_set *e)
{
    if (!e->n)
        return;
    rcu_read_lock();
    for (uint32_t k = 0; k < e->n; k++) {
        site_rec *r = rec_at(e->idx[k]);
        hkd_site_state st;
        core_state_of(r, &st);
        if (hkd_site_state_learned(&st) && hkd_archive_put(g.archive, &st) < 0)
            hkd_log(HKD_LOG_WARNING, "no memory to archive what a site learned; it is forgotten");
        hkd_domains_evicted(g.domains, (int)r->dom);
        cds_lfht_del(g.ht, &cold_of(r)->node);
        /* Before the grace period: readers by slot (hkd_site_page) see
         * it gone from here on, and any that saw it live end before the
         * slot can be reused. */
        wbegin(r);
        r->free = 1;
        r->in_table = 0;
        wend(r);
    }
    rcu_read_unlock();
    synchronize_rcu();
    e->acc = malloc((size_t)e->n * COLLECTORS * sizeof *e->acc);
    if (e->acc) {
        for (uint32_t k = 0; k < e->n; k++)
            for (uint32_t t = 0; t < COLLECTORS; t++)
                e->acc[e->n_acc++] = acc_at(t, e->idx[k]);
        qsort(e->acc, e->n_acc, sizeof *e->acc, ptr_cmp);
        hkd_collector_drop_cookies(g.col, cookie_stale, e);
        hkd_collector_drop_cookies(g.col2, cookie_stale, e);
    } else {
        /* Without the list every cookie goes: they are looked up again. */
        hkd_collector_drop_cookies(g.col, any_cookie, NULL);
        hkd_collector_drop_cookies(g.col2, any_cookie, NULL);
    }
    free(e->acc);
    for (uint32_t k = 0; k < e->n; k++)
        g.free_idx[g.n_free++] = e->idx[k];
    atomic_store_explicit(&g.n_archived, hkd_archive_count(g.archive), memory_order_relaxed);
    g.set_changed = 1;
    g.dirty = 1;
}

typedef struct idle_rec {
    uint32_t dom, last_seen, idx;
} idle_rec;

static int idle_cmp(const void *a, const void *b)
{
    const idle_rec *x = a, *y = b;
    if (x->dom != y->dom)
        return x->dom < y->dom ? -1 : 1;
    if (x->last_seen != y->last_seen)
        return x->last_seen < y->last_seen ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int aged_out(const site_rec *r)
{
    return g.now_s >= r->last_seen && g.now_s - r->last_seen >= g.cfg.retention_s;
}

/* From the records no process reported this interval that may go
 * (idle[] of both learn parts): those past the retention period, then
 * for each domain that wants room its least recently reported ones. */
static void evict_idle(const uint32_t *const idle[2], const uint32_t n_idle[2])
{
    evict_set e = { .idx = malloc(EVICT_MAX * sizeof(uint32_t)) };
    idle_rec *wanted = iv.any_want ? malloc(((size_t)n_idle[0] + n_idle[1] + 1) * sizeof *wanted) : NULL;
    uint32_t n_wanted = 0;
    if (!e.idx) {
        free(wanted);
        return;
    }
    for (int p = 0; p < 2; p++)
        for (uint32_t k = 0; k < n_idle[p]; k++) {
            site_rec *r = rec_at(idle[p][k]);
            if (aged_out(r)) {
                if (e.n < EVICT_MAX)
                    e.idx[e.n++] = idle[p][k];
            } else if (wanted && iv.want[r->dom]) {
                wanted[n_wanted++] = (idle_rec){ r->dom, r->last_seen, idle[p][k] };
            }
        }
    if (n_wanted) {
        qsort(wanted, n_wanted, sizeof *wanted, idle_cmp);
        for (uint32_t k = 0; k < n_wanted && e.n < EVICT_MAX; k++)
            if (iv.want[wanted[k].dom]) {
                iv.want[wanted[k].dom]--;
                e.idx[e.n++] = wanted[k].idx;
            }
    }
    evict(&e);
    free(wanted);
    free(e.idx);
}

/* ---- lifecycle ---- */

static void default_limits(hkd_core_cfg *c)
{
    if (c->interval_ms == 0)
        c->interval_ms = 1000;
    if (c->reader_timeout_ms == 0)
        c->reader_timeout_ms = HKD_READER_TIMEOUT_MS;
    if (!c->max_sites_per_user)
        c->max_sites_per_user = HKD_DEFAULT_SITES_PER_USER;
    if (!c->new_sites_per_interval)
        c->new_sites_per_interval = HKD_DEFAULT_NEW_SITES;
    if (!c->retention_s)
        c->retention_s = HKD_DEFAULT_RETENTION_S;
    if (!c->state_max_bytes)
        c->state_max_bytes = HKD_DEFAULT_STATE_MAX;
    c->state_max_bytes = c->state_max_bytes < HKD_STATE_MIN         ? HKD_STATE_MIN
                         : c->state_max_bytes > HKD_STATE_MAX_BYTES ? HKD_STATE_MAX_BYTES
                                                                    : c->state_max_bytes;
}

int hkd_core_init(const hkd_core_cfg *cfg)
{
    g.cfg = *cfg;
    default_limits(&g.cfg);
    g.init_error[0] = 0;
    if (cfg->state_dir) {
        snprintf(g.state_dir, sizeof g.state_dir, "%s", cfg->state_dir);
        g.cfg.state_dir = g.state_dir;
        hkd_saver_config(g.state_dir, (size_t)g.cfg.state_max_bytes);
    }
    hkd_domain_limits lim = { .self_uid = g.cfg.daemon_uid, .max_sites_per_user = g.cfg.max_sites_per_user,
                              .new_per_interval = g.cfg.new_sites_per_interval, .untrusted_max = UNTRUSTED_MAX,
                              .max_sites = MAX_SITES };
    /* The archive holds about what the state file can. */
    uint64_t arch = g.cfg.state_max_bytes / ARCHIVE_ENTRY_BYTES;
    g.ht = cds_lfht_new(1u << 14, 1024, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
    /* Even and odd entries: registrations take the lowest free one, so both halves fill. */
    g.col = hkd_collector_new(0, COLLECTORS);
    g.col2 = hkd_collector_new(1, COLLECTORS);
    g.domains = hkd_domains_new(&lim);
    g.archive = hkd_archive_new(arch > MAX_SITES ? MAX_SITES : (uint32_t)arch);
    if (core_binaries_init(g.cfg.memory_weight_ns) < 0)
        return -ENOMEM;
    g.entries = malloc(HKSHM_SITE_CAP * sizeof *g.entries);
    g.binaries = calloc(HKSHM_BINARY_CAP, sizeof *g.binaries);
    /* Full size from the start (zero pages until used): a collector reads
     * its bitmap while the other may be adding records. */
    g.free_idx = malloc(MAX_SITES * sizeof *g.free_idx);
    iv.band_todo = calloc(MAX_SITES / 64, sizeof(uint64_t));
    iv.idle = malloc(MAX_SITES * sizeof *iv.idle);
    int ok = g.ht && g.col && g.col2 && g.domains && g.archive && g.entries && g.binaries && g.free_idx &&
             iv.band_todo && iv.idle;
    for (uint32_t t = 0; ok && t < COLLECTORS; t++)
        ok = (iv.touched[t] = calloc(MAX_SITES / 64, sizeof(uint64_t))) != NULL;
    if (!ok) {
        snprintf(g.init_error, sizeof g.init_error, "out of memory setting up the core");
        return -ENOMEM;
    }
    int rc = hkd_segment_open(&g.seg, cfg->shm_name, cfg->socket_path, g.cfg.reader_timeout_ms, g.init_error,
                              sizeof g.init_error);
    if (rc < 0)
        return rc;
    rc = hkd_registry_init(HKD_REG_MAX, HKD_REG_PER_UID, geteuid());
    if (rc < 0) {
        snprintf(g.init_error, sizeof g.init_error, "cannot set up the registry: %s", strerror(-rc));
        hkd_segment_close(&g.seg);
        return rc;
    }
    hkshm_header *h = g.seg.hdr;
    if (g.seg.adopted)
        hkd_log(HKD_LOG_INFO, "adopted segment %s (generation %llu, instance %016llx)", cfg->shm_name,
                (unsigned long long)atomic_load(&h->generation), (unsigned long long)atomic_load(&h->instance));
    else if (g.seg.why_recreated[0])
        hkd_log(HKD_LOG_NOTICE, "replaced incompatible segment %s (%s)", cfg->shm_name, g.seg.why_recreated);
    else
        hkd_log(HKD_LOG_INFO, "created segment %s (%llu bytes)", cfg->shm_name,
                (unsigned long long)HKSHM_SEGMENT_SIZE);
    uint32_t flush = g.cfg.interval_ms / 4;
    atomic_store(&h->flush_interval_ms, flush < 1 ? 1 : flush > 1000 ? 1000 : flush);
    atomic_store(&h->learning, g.cfg.learning ? 1u : 0u);
    atomic_store(&g.generation, atomic_load(&h->generation));
    pthread_mutex_lock(&g.lock);
    g.now_s = (uint32_t)(core_clock_ms() / 1000);
    core_load_state();
    if (hkd_domains_live(g.domains))
        core_publish(1);
    hkd_domains_end_interval(g.domains, core_clock_ms());
    atomic_store(&iv.n_sites, hkd_domains_live(g.domains));
    pthread_mutex_unlock(&g.lock);
    iv.start_ns = iv.last_ns = hkd_now_ns();
    iv.ready = 1;
    return 0;
}

const char *hkd_core_init_error(void)
{
    return g.init_error;
}

/* ---- the learn pass ----
 *
 * With many records it runs on two threads, each over half of them in
 * creation order (the halves split on a multiple of 64, so each thread owns
 * whole words of band_todo).  Records, accumulators and table entries are
 * per record; the size-band learners are shared per domain, so the band
 * work of thin sites is left in band_todo for the calling thread to do
 * after the join. */
#define SPLIT_MIN_RECS 16384u        /* fewer records or sites: one thread */

typedef struct learn_part {
    uint32_t begin, end;
    double seconds;
    int dirty;
    uint32_t *idle;                  /* unreported records that may go (iv.idle + begin) */
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
        if (!touched(t, idx))
            continue;
        const site_acc *a = acc_at(t, idx);
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
    hkd_learn_observe(l, &g.cfg.learn, obs);
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
                if (touched(t, j))
                    __builtin_prefetch(acc_at(t, j));
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
            if (aged_out(r) || iv.want[r->dom])
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
            iv.band_todo[i / 64] |= 1ull << (i % 64);   /* band_pass takes its interval */
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
        for (uint64_t bits = iv.band_todo[w]; bits; bits &= bits - 1) {
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
        iv.band_todo[w] = 0;
    }
    hkd_domains_bands_end_interval(g.domains, &g.cfg.learn);
    return dirty;
}

static void learn_job(void *arg)
{
    learn_range(arg);
}

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
    if (hkd_worker_started() || g.n_idx >= SPLIT_MIN_RECS || iv.last_records >= SPLIT_MIN_RECS)
        hkd_worker_post(fn, arg);
    else
        fn(arg);
}

/* Learns from every record's interval and evicts what has to go; 1 when
 * something must be republished. */
static int learn_pass(double seconds)
{
    learn_part mine = { .begin = 0, .end = g.n_idx, .seconds = seconds };
    learn_part theirs = { .begin = g.n_idx, .end = g.n_idx, .seconds = seconds };
    int split = g.n_idx >= SPLIT_MIN_RECS;
    if (split)
        mine.end = theirs.begin = (g.n_idx / 2) & ~63u;
    mine.idle = iv.idle + mine.begin;
    theirs.idle = iv.idle + theirs.begin;
    if (split)
        post(learn_job, &theirs);
    learn_range(&mine);
    if (split)
        hkd_worker_wait();
    int dirty = mine.dirty | theirs.dirty;
    if (g.cfg.learning)
        dirty |= band_pass(seconds);
    const uint32_t *idle[2] = { mine.idle, theirs.idle };
    const uint32_t n_idle[2] = { mine.n_idle, theirs.n_idle };
    if (n_idle[0] || n_idle[1])
        evict_idle(idle, n_idle);
    return dirty;
}

int hkd_core_interval(void)
{
    pthread_mutex_lock(&g.lock);
    uint64_t t0 = hkd_now_ns();
    double seconds = (double)(t0 - iv.last_ns) / 1e9;
    iv.last_ns = t0;
    uint64_t wall_ms = core_clock_ms();
    g.now_s = (uint32_t)(wall_ms / 1000);

    /* Registrations queued since the last interval join; ended ones get
     * their last collection now and are dropped after it. */
    hkd_registry_begin_interval();
    uint32_t cap = hkd_registry_count();
    proc_list *b = malloc(sizeof *b + (cap ? cap : 1) * sizeof(hkd_proc_info));
    if (b) {
        b->n = 0;
        iv.building = b;
        iv.building_cap = cap;
    }
    /* Accumulators from earlier intervals are stale from here on. */
    for (uint32_t t = 0; t < COLLECTORS; t++)
        memset(iv.touched[t], 0, ((g.n_idx + 63) / 64) * sizeof(uint64_t));
    /* Half of the registrations each, on two threads once the fleet is big. */
    collect_part theirs = { .col = g.col2 };
    post(collect_job, &theirs);
    hkd_collect_stats st;
    int rc = collect(g.col, &st, (void *)(uintptr_t)0);
    hkd_worker_wait();
    if (theirs.rc < 0)
        rc = theirs.rc;
    st.live += theirs.st.live;
    st.ended += theirs.st.ended;
    st.skipped_busy += theirs.st.skipped_busy;
    st.site_records += theirs.st.site_records;
    iv.last_records = st.site_records;
    iv.building = NULL;
    uint64_t t1 = hkd_now_ns();

    iv.any_want = hkd_domains_room_wanted(g.domains, iv.want);
    g.dirty |= learn_pass(seconds);
    hkd_domains_end_interval(g.domains, wall_ms);
    g.dirty |= core_binaries_end_interval();
    uint64_t t2 = hkd_now_ns();
    core_publish(0);
    uint64_t t3 = hkd_now_ns();
    atomic_store(&iv.phase_ns[0], t1 - t0);
    atomic_store(&iv.phase_ns[1], t2 - t1);
    atomic_store(&iv.phase_ns[2], t3 - t2);
    hkd_registry_end_interval();

    if (b) {
        proc_list *old = iv.procs;
        rcu_assign_pointer(iv.procs, b);
        if (old)
            call_rcu(&old->rcu, free_procs);
    }
    atomic_store(&g.seg.hdr->daemon_heartbeat_ns, hkd_now_ns());
    atomic_store(&iv.n_procs, st.live);
    atomic_store(&iv.n_registrations, hkd_registry_count());
    atomic_store(&iv.n_sites, hkd_domains_live(g.domains));
    atomic_fetch_add(&g.intervals, 1);
    atomic_store(&iv.last_interval_ns, hkd_now_ns() - t0);
    pthread_mutex_unlock(&g.lock);
    if (st.ended)
        hkd_log(HKD_LOG_DEBUG, "collected the last counters of %u ended registrations", st.ended);
    return rc;
}

static int site_bytes_desc(const void *a, const void *b)
{
    const site_rec *x = *(site_rec *const *)a, *y = *(site_rec *const *)b;
    if (x->bytes != y->bytes)
        return x->bytes < y->bytes ? 1 : -1;
    return hkd_site_key_cmp(&cold_of(x)->key, &cold_of(y)->key);
}

void hkd_core_phase_ns(uint64_t out[3])
{
    for (int i = 0; i < 3; i++)
        out[i] = atomic_load(&iv.phase_ns[i]);
}

void hkd_core_log_summary(int max_sites)
{
    pthread_mutex_lock(&g.lock);
    hkd_log(HKD_LOG_DEBUG,
            "interval %llu: %u processes, %u sites, generation %llu, %llu us (collect %llu, learn %llu, publish %llu)",
            (unsigned long long)atomic_load(&g.intervals), atomic_load(&iv.n_procs), hkd_domains_live(g.domains),
            (unsigned long long)atomic_load(&g.generation),
            (unsigned long long)atomic_load(&iv.last_interval_ns) / 1000,
            (unsigned long long)atomic_load(&iv.phase_ns[0]) / 1000,
            (unsigned long long)atomic_load(&iv.phase_ns[1]) / 1000,
            (unsigned long long)atomic_load(&iv.phase_ns[2]) / 1000);
    site_rec **v = malloc((g.n_idx ? g.n_idx : 1) * sizeof *v);
    if (v) {
        uint32_t n = 0;
        for (uint32_t i = 0; i < g.n_idx; i++)
            if (!rec_at(i)->free)
                v[n++] = rec_at(i);
        qsort(v, n, sizeof *v, site_bytes_desc);
        for (uint32_t i = 0; i < n && (int)i < max_sites; i++) {
            const site_rec *r = v[i];
            int arm = rec_arm(r);
            hkd_log(HKD_LOG_DEBUG,
                    "site %016llx:%llx module=%s procs=%u allocs=%llu bytes=%llu arm=%d(%s) pulls=%llu uid=%u",
                    (unsigned long long)cold_of(r)->key.module_hash, (unsigned long long)cold_of(r)->key.offset,
                    cold_of(r)->module, r->processes, (unsigned long long)r->allocs,
                    (unsigned long long)r->bytes, arm, hkd_arms[arm].name,
                    (unsigned long long)r->learn.total_pulls, cold_of(r)->key.domain);
        }
        free(v);
    }
    pthread_mutex_unlock(&g.lock);
}

void hkd_core_shutdown(void)
{
    if (!iv.ready)
        return;
    hkd_worker_stop();
    hkd_saver_stop();
    iv.ready = 0;
    hkd_registry_shutdown();
    hkd_segment_close(&g.seg);
    rcu_read_lock();
    for (uint32_t i = 0; i < g.n_idx; i++)
        if (!rec_at(i)->free)
            cds_lfht_del(g.ht, &cold_at(i)->node);
    rcu_read_unlock();
    synchronize_rcu();
    for (uint32_t i = 0; i < (g.n_idx + CHUNK_RECS - 1) / CHUNK_RECS; i++)
        free_chunk(i);
    for (uint32_t t = 0; t < COLLECTORS; t++) {
        free(iv.touched[t]);
        iv.touched[t] = NULL;
    }
    free(iv.band_todo);
    free(iv.idle);
    free(g.free_idx);
    iv.band_todo = NULL;
    iv.idle = NULL;
    g.free_idx = NULL;
    g.n_idx = g.n_free = 0;
    g.n_entries = 0;
    g.over_cap = g.set_changed = g.dirty = 0;
    g.selected_at = 0;
    iv.last_records = 0;
    cds_lfht_destroy(g.ht, NULL);
    g.ht = NULL;
    proc_list *p = iv.procs;
    rcu_assign_pointer(iv.procs, NULL);
    synchronize_rcu();
    free(p);
    rcu_barrier();
    hkd_collector_free(g.col);
    hkd_collector_free(g.col2);
    g.col = g.col2 = NULL;
    hkd_domains_free(g.domains);
    g.domains = NULL;
    hkd_archive_free(g.archive);
    g.archive = NULL;
    atomic_store(&g.n_archived, 0);
    free(g.entries);
    g.entries = NULL;
    free(g.binaries);
    g.binaries = NULL;
    g.n_binaries = 0;
    core_binaries_shutdown();
    atomic_store(&g.intervals, 0);
    atomic_store(&iv.n_sites, 0);
}

/* ---- what readers see (core_api.h) ---- */

void hkd_reader_thread_enter(void)
{
    rcu_register_thread();
}

void hkd_reader_thread_leave(void)
{
    rcu_unregister_thread();
}

int hkd_get_status(hkd_status *out)
{
    if (!out)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    snprintf(out->version, sizeof out->version, "%s", HAKMEM_VERSION);
    out->uptime_ms = (hkd_now_ns() - iv.start_ns) / 1000000;
    snprintf(out->shm_name, sizeof out->shm_name, "%s", g.seg.name);
    out->generation = atomic_load(&g.generation);
    out->processes = atomic_load(&iv.n_procs);
    out->sites = atomic_load(&iv.n_sites);
    out->interval_ms = g.cfg.interval_ms;
    out->intervals = atomic_load(&g.intervals);
    out->last_interval_ns = atomic_load(&iv.last_interval_ns);
    out->learning = g.cfg.learning;
    out->registrations = atomic_load(&iv.n_registrations);
    out->instance = g.seg.hdr ? atomic_load(&g.seg.hdr->instance) : 0;
    out->sites_archived = atomic_load_explicit(&g.n_archived, memory_order_relaxed);
    if (g.domains)
        hkd_domains_totals(g.domains, &out->domains, &out->sites_refused, &out->sites_evicted);
    return 0;
}

int hkd_register_client(int conn_fd, int region_fd, const struct ucred *cred, uint64_t *instance, char *why,
                        size_t whylen)
{
    int rc = hkd_registry_add(conn_fd, region_fd, cred, why, whylen);
    if (rc == 0 && instance)
        *instance = atomic_load(&g.seg.hdr->instance);
    return rc;
}

int hkd_for_each_proc(int (*fn)(const hkd_proc_info *, void *), void *arg)
{
    if (!fn)
        return -EINVAL;
    int rc = 0;
    rcu_read_lock();
    proc_list *p = rcu_dereference(iv.procs);
    for (uint32_t i = 0; p && i < p->n && rc == 0; i++)
        rc = fn(&p->procs[i], arg);
    rcu_read_unlock();
    return rc;
}

int hkd_for_each_domain(int (*fn)(const hkd_domain_info *, void *), void *arg)
{
    if (!fn)
        return -EINVAL;
    return g.domains ? hkd_domains_for_each(g.domains, fn, arg) : 0;
}
