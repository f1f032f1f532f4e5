/* The daemon core: the merged site table and the interval loop body.
 *
 * The site table is a cds_lfht of site records keyed by the fleet key,
 * written by one thread (the learner, which runs the interval) and read by
 * control-server threads inside rcu_read_lock.  Records are never removed
 * while the daemon runs, so the learner updates them in place; each record
 * carries a sequence count so a reader copies a consistent view without
 * ever making the learner wait.  Operations that change learned state from
 * other threads (reset, pin, import) take `g.lock`, which the interval also
 * holds: they wait for the learner, never the other way round.
 *
 * At 65,536 keys an interval is bound by the instructions and lines it
 * spends per site, so a site is pieces allocated in chunks, in creation
 * order: the hot record (learner state and merged totals, four lines), one
 * accumulator line per collecting thread that its reports add this
 * interval's deltas into, and a cold part (key, histogram, module path,
 * hash node).  The learn pass walks records in memory order and touches
 * each once.  Published entries are kept current in place, so publishing
 * copies one array; only new keys cost a sort.
 * Saving copies the learned state under the lock; a saver thread encodes
 * and writes it.
 *
 * The process list is an RCU-protected array rebuilt each interval from
 * the registrations the collectors walk (daemon/registry.h). */
#include "core.h"
#include "core_api.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>

#include <urcu.h>
#include <urcu/rculfhash.h>

#include "collector.h"
#include "log.h"
#include "persist.h"
#include "bands.h"
#include "publisher.h"
#include "core_binaries.h"
#include "registry.h"
#include "segment.h"

#define HKD_VERSION "0.1.0"
#define MAX_SITES (1u << 20)
#define LEARN_PREFETCH 4             /* records ahead */
#define LEARN_BATCH 32               /* changed arms published together */
#define COLLECTORS 2                 /* threads that collect (each its own accumulators) */

typedef struct site_rec {
    /* Four cache lines, all of them read and written by the learn pass
     * every interval: the totals, then the learner.  Key, histogram,
     * module path and hash node are cold (cold_of()).  With 65,536 keys
     * the interval is bound by these lines. */
    _Atomic uint32_t seq;            /* odd while the learner writes */
    uint32_t processes;
    /* merged view: lifetime totals since the daemon started */
    uint64_t allocs, frees, bytes, live_bytes;
    uint64_t hits, misses, evictions, thp, slow_ns;
    uint32_t pos;                    /* index in g.entries while the order is valid */
    uint32_t idx;                    /* creation order: its accumulators, its bit in g.touched */
    float frac_256k, frac_1m;        /* shares of allocations at or above the arms' two thresholds */
    hkd_learn learn;
    hkd_thin thin;                   /* thin sites run their size band's arm */
} site_rec;

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

/* What an interval does not touch, apart so the hot records are packed:
 * the learn pass then streams through exactly the lines it uses.  A
 * histogram merge (a collector, under seq) writes the shares here; the
 * learn pass copies them to the record when a merge says they moved. */
typedef struct site_cold {
    struct cds_lfht_node node;
    site_rec *rec;
    hkd_site_key key;
    _Atomic uint32_t seq;            /* odd while a merge writes (the record's seq does not cover it) */
    uint8_t  sizes_new;              /* size_lo/size_hi not yet handed to the learner */
    uint8_t  size_lo, size_hi;
    double frac_256k, frac_1m;       /* shares at or above the two thresholds arms use */
    uint64_t n_all, n_ge256, n_ge1m; /* hist's total, and at or above the two thresholds */
    uint32_t used;                   /* bit per bucket hist has counted in */
    uint64_t hist[HKSHM_HIST];
    char module[HKD_MODULE_MAX];
} site_cold;

#define HOT_SIZE ((sizeof(site_rec) + 63) & ~(size_t)63)
#define CHUNK_RECS 8192u             /* records per allocation, never moved */
/* The published thresholds are the arm's (hkd_arms), not a copy. */
_Static_assert(sizeof(site_rec) <= 256, "hot record stays within four cache lines");
_Static_assert(sizeof(site_acc) == 64, "accumulator is one cache line");

typedef struct proc_list {
    struct rcu_head rcu;
    uint32_t n;
    hkd_proc_info procs[];
} proc_list;

static struct {
    pthread_mutex_t lock;
    pthread_mutex_t create_lock;     /* new records, while two threads collect */
    hkd_core_cfg cfg;
    char state_dir[1024];
    hkd_segment seg;
    hkd_collector *col, *col2;       /* even and odd registry entries: one per collecting thread */
    hkd_bands *bands;                /* learners of thin sites, by size band */
    struct cds_lfht *ht;
    site_rec **all;                  /* every record, sorted by key when !unsorted */
    site_rec **created;              /* the same records in creation (memory) order */
    char *hot_chunks[MAX_SITES / CHUNK_RECS];
    site_cold *cold_chunks[MAX_SITES / CHUNK_RECS];
    site_acc *acc_chunks[COLLECTORS][MAX_SITES / CHUNK_RECS];
    uint64_t *touched[COLLECTORS];   /* bit per record: the thread's accumulator is this interval's */
    uint32_t n_all, cap_all;
    uint64_t *band_todo;             /* bit per record (creation order): thin, band work pending */
    uint32_t last_records;           /* site records the last interval collected */
    int unsorted;                    /* all[] and entries[] need rebuilding */
    int dirty;                       /* republish wanted */
    hkshm_site_policy *entries;      /* kept current per record: publishing copies it */
    hkshm_binary_policy *binaries;   /* per-binary policy, HKSHM_BINARY_CAP */
    uint32_t n_binaries;
    char init_error[256];
    proc_list *procs;                /* RCU */
    proc_list *building;
    uint32_t building_cap;
    uint64_t last_ns, start_ns;
    _Atomic uint64_t intervals, last_interval_ns, generation;
    _Atomic uint64_t phase_ns[3];    /* collect, learn, publish: last interval */
    _Atomic uint32_t n_procs, n_sites, n_registrations;
    int ready;
} g = { .lock = PTHREAD_MUTEX_INITIALIZER, .create_lock = PTHREAD_MUTEX_INITIALIZER };

/* ---- site records ---- */

static unsigned long key_hash(const hkd_site_key *k)
{
    uint64_t x = k->module_hash ^ (k->offset * 0x9E3779B97F4A7C15ull);
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    return (unsigned long)x;
}

static int key_match(struct cds_lfht_node *node, const void *key)
{
    const site_cold *c = caa_container_of(node, site_cold, node);
    const hkd_site_key *k = key;
    return c->key.module_hash == k->module_hash && c->key.offset == k->offset;
}

static site_rec *lookup(const hkd_site_key *k)
{
    struct cds_lfht_iter it;
    cds_lfht_lookup(g.ht, key_hash(k), key_match, k, &it);
    struct cds_lfht_node *n = cds_lfht_iter_get_node(&it);
    return n ? caa_container_of(n, site_cold, node)->rec : NULL;
}

/* The chunk tables are fixed arrays: safe while the other collector adds. */
static site_cold *cold_at(uint32_t idx)
{
    return &g.cold_chunks[idx / CHUNK_RECS][idx % CHUNK_RECS];
}

static site_cold *cold_of(const site_rec *r)
{
    return cold_at(r->idx);
}

static void wbegin(site_rec *r)
{
    atomic_store_explicit(&r->seq, r->seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

static void wend(site_rec *r)
{
    atomic_store_explicit(&r->seq, r->seq + 1, memory_order_release);
}

/* Also the writers' lock: both collecting threads may merge into one
 * record (a key shared by processes in both halves of the slots). */
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

/* The arm a site runs: pinned, else its band's while it is thin, else its own. */
static inline int rec_arm(const site_rec *r)
{
    if (r->learn.pinned >= 0)
        return r->learn.pinned;
    if (r->thin.band != HKD_NO_BAND && r->thin.arm >= 0)
        return r->thin.arm;
    return r->learn.current;
}

/* The share of the site's allocations at or above the threshold it runs
 * now.  Every arm's threshold is one of two, whose shares the record
 * keeps; any other would be counted from the histogram (learn pass only:
 * no merge runs then). */
static double large_share(const site_rec *r)
{
    uint32_t t = hkd_arms[rec_arm(r)].large_threshold;
    return t == (256u << 10) ? r->frac_256k : t == (1u << 20) ? r->frac_1m : frac_at(cold_of(r), t);
}

/* Adds a histogram delta and finds the size range and the shares at both
 * arm thresholds.  Touches the cold part only (a merge used to pull three
 * lines of the hot record in mid-collect); the learn pass takes the
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

static void set_published(site_rec *r)
{
    const hkd_arm *a = &hkd_arms[rec_arm(r)];
    if (!g.unsorted && r->pos < HKSHM_SITE_CAP) {
        hkshm_site_policy *e = &g.entries[r->pos];
        e->large_threshold = a->large_threshold;
        e->bigcache_slots = a->bigcache_slots;
        e->thp = a->thp;
        e->arm = (uint32_t)rec_arm(r);
    }
}

/* Chunk storage.  At 65,536 keys an interval walks some 50 MB of records
 * in 4 KiB pages, a TLB miss every few records; chunks after the first
 * ask for huge pages (about a tenth off both phases).  The first stays on
 * small pages, so a daemon with a few thousand sites stays small. */
#define HUGE_PAGE (2u << 20)

static void *chunk_alloc(size_t size, uint32_t ci)
{
    if (ci == 0)
        return aligned_alloc(64, (size + 63) & ~(size_t)63);
    size = (size + HUGE_PAGE - 1) & ~(size_t)(HUGE_PAGE - 1);
    void *p = aligned_alloc(HUGE_PAGE, size);
    if (p)
        madvise(p, size, MADV_HUGEPAGE);   /* advice only: fine if refused */
    return p;
}

static void free_chunk(uint32_t ci)
{
    free(g.hot_chunks[ci]);
    free(g.cold_chunks[ci]);
    g.hot_chunks[ci] = NULL;
    g.cold_chunks[ci] = NULL;
    for (uint32_t t = 0; t < COLLECTORS; t++) {
        free(g.acc_chunks[t][ci]);
        g.acc_chunks[t][ci] = NULL;
    }
}

static site_acc *acc_at(uint32_t t, uint32_t idx)
{
    return &g.acc_chunks[t][idx / CHUNK_RECS][idx % CHUNK_RECS];
}

static int touched(uint32_t t, uint32_t idx)
{
    return (int)(g.touched[t][idx / 64] >> (idx % 64)) & 1;
}

/* Under create_lock, inside rcu_read_lock. */
static site_rec *add_locked(const hkd_site_key *k, const char *module);

/* Either collecting thread, inside rcu_read_lock. */
static site_rec *get_or_add(const hkd_site_key *k, const char *module)
{
    /* Once per process and site (the caller keeps the answer): the lock
     * costs nothing, and the other thread may be adding the same key. */
    pthread_mutex_lock(&g.create_lock);
    site_rec *r = lookup(k);
    if (!r)
        r = add_locked(k, module);
    else if (!cold_of(r)->module[0] && module && module[0])
        /* A site restored from state has no module path until a client names it. */
        snprintf(cold_of(r)->module, sizeof cold_of(r)->module, "%s", module);
    pthread_mutex_unlock(&g.create_lock);
    return r;
}

static site_rec *add_locked(const hkd_site_key *k, const char *module)
{
    site_rec *r;
    if (g.n_all >= MAX_SITES)
        return NULL;
    if (g.n_all == g.cap_all) {
        uint32_t cap = g.cap_all ? g.cap_all * 2 : 1024;
        site_rec **n = realloc(g.all, cap * sizeof *n);
        if (!n)
            return NULL;
        g.all = n;
        site_rec **c = realloc(g.created, cap * sizeof *c);
        if (!c)
            return NULL;
        g.created = c;
        uint64_t *todo = realloc(g.band_todo, (cap / 64) * sizeof *todo);
        if (!todo)
            return NULL;
        memset(todo + g.cap_all / 64, 0, ((cap - g.cap_all) / 64) * sizeof *todo);
        g.band_todo = todo;
        g.cap_all = cap;
    }
    uint32_t ci = g.n_all / CHUNK_RECS, k_in = g.n_all % CHUNK_RECS;
    if (k_in == 0) {
        /* Cache-line aligned hot records back to back, in creation order. */
        g.hot_chunks[ci] = chunk_alloc(CHUNK_RECS * HOT_SIZE, ci);
        g.cold_chunks[ci] = chunk_alloc(CHUNK_RECS * sizeof(site_cold), ci);
        int ok = g.hot_chunks[ci] && g.cold_chunks[ci];
        for (uint32_t t = 0; t < COLLECTORS; t++)
            ok &= (g.acc_chunks[t][ci] = chunk_alloc(CHUNK_RECS * sizeof(site_acc), ci)) != NULL;
        if (!ok) {
            free_chunk(ci);
            return NULL;
        }
    }
    r = (site_rec *)(g.hot_chunks[ci] + (size_t)k_in * HOT_SIZE);
    site_cold *c = &g.cold_chunks[ci][k_in];
    memset(r, 0, HOT_SIZE);
    memset(c, 0, sizeof *c);
    r->idx = g.n_all;
    for (uint32_t t = 0; t < COLLECTORS; t++)
        g.acc_chunks[t][ci][k_in].rec = r->idx;   /* the other collector may use it once the lock is released */
    c->rec = r;
    c->key = *k;
    r->pos = UINT32_MAX;
    snprintf(c->module, sizeof c->module, "%s", module ? module : "");
    hkd_learn_init(&r->learn);
    hkd_thin_init(&r->thin);
    set_published(r);
    cds_lfht_node_init(&c->node);
    cds_lfht_add(g.ht, key_hash(k), &c->node);
    g.created[g.n_all] = r;
    g.all[g.n_all++] = r;
    g.unsorted = 1;
    g.dirty = 1;
    return r;
}

static int rec_cmp(const void *a, const void *b)
{
    const hkd_site_key *x = &cold_of(*(site_rec *const *)a)->key, *y = &cold_of(*(site_rec *const *)b)->key;
    return hkshm_site_cmp(0, x->module_hash, x->offset, 0, y->module_hash, y->offset);
}

typedef struct keyed_rec {
    hkd_site_key key;
    site_rec *r;
} keyed_rec;

static int keyed_cmp(const void *a, const void *b)
{
    const keyed_rec *x = a, *y = b;
    return hkshm_site_cmp(0, x->key.module_hash, x->key.offset, 0, y->key.module_hash, y->key.offset);
}

/* g.all in key order.  Keys live in the cold parts: gathered first, in
 * memory order, then sorted beside their records (a comparison that
 * chased two records was a pair of cache misses). */
static void sort_all(void)
{
    keyed_rec *v = malloc((g.n_all ? g.n_all : 1) * sizeof *v);
    if (!v) {
        qsort(g.all, g.n_all, sizeof *g.all, rec_cmp);
        return;
    }
    for (uint32_t i = 0; i < g.n_all; i++)
        v[i] = (keyed_rec){ cold_at(i)->key, g.created[i] };
    qsort(v, g.n_all, sizeof *v, keyed_cmp);
    for (uint32_t i = 0; i < g.n_all; i++)
        g.all[i] = v[i].r;
    free(v);
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
        site_rec *r = get_or_add(&d->key, d->module);
        if (!r) {
            *cookie = NULL;
            return;
        }
        a = acc_at(t, r->idx);
        *cookie = a;
    }
    uint64_t *word = &g.touched[t][a->rec / 64], bit = 1ull << (a->rec % 64);
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
    proc_list *b = g.building;
    if (b && b->n < g.building_cap)
        b->procs[b->n++] = *p;
    pthread_mutex_unlock(&g.create_lock);
}

static void free_procs(struct rcu_head *h)
{
    free(caa_container_of(h, proc_list, rcu));
}

/* ---- publishing ---- */

static int publish_locked(void)
{
    if (!g.cfg.learning) {
        g.dirty = 0;
        return 0;
    }
    uint32_t n = g.n_all < HKSHM_SITE_CAP ? g.n_all : HKSHM_SITE_CAP;
    if (g.unsorted) {
        /* New keys: sort once and rebuild; from then on set_published
         * keeps each record's entry current in place. */
        sort_all();
        for (uint32_t i = 0; i < g.n_all; i++) {
            site_rec *r = g.all[i];
            r->pos = i < n ? i : UINT32_MAX;
            if (i >= n)
                continue;
            hkshm_site_policy *e = &g.entries[i];
            memset(e, 0, sizeof *e);
            e->domain = 0;           /* every domain learns together until records are keyed by one */
            e->module_hash = cold_of(r)->key.module_hash;
            e->offset = cold_of(r)->key.offset;
            const hkd_arm *a = &hkd_arms[rec_arm(r)];
            e->large_threshold = a->large_threshold;
            e->bigcache_slots = a->bigcache_slots;
            e->thp = a->thp;
            e->arm = (uint32_t)rec_arm(r);
        }
        g.unsorted = 0;
    }
    g.n_binaries = core_binaries_fill(g.binaries, HKSHM_BINARY_CAP);
    hkd_publication pub = { .sites = g.entries, .n_sites = n, .binaries = g.binaries, .n_binaries = g.n_binaries };
    uint64_t gen = 0;
    int rc = hkd_publish(g.seg.hdr, &pub, hkd_now_ns(), &gen);
    if (rc == 0) {
        g.dirty = 0;
        atomic_store(&g.generation, gen);
    } else if (rc == -EAGAIN) {
        hkd_log(HKD_LOG_DEBUG, "publish deferred: a client is still reading the old table");
    }
    return rc;
}

/* ---- state ---- */

/* Copies every record's learned state into buf (reused when it holds
 * cap entries or more; else replaced, *cap updated).  NULL on ENOMEM. */
static hkd_site_state *snapshot_states_into(hkd_site_state *buf, size_t *cap, size_t *n)
{
    size_t need = g.n_all ? g.n_all : 1;
    if (!buf || *cap < need) {
        free(buf);
        /* Some headroom: the table grows, and a fresh buffer costs page faults. */
        *cap = need + need / 4;
        buf = malloc(*cap * sizeof *buf);
        if (!buf)
            return NULL;
    }
    for (uint32_t i = 0; i < g.n_all; i++) {
        /* Key order is not memory order: fetch a few records ahead. */
        if (i + LEARN_PREFETCH < g.n_all) {
            const site_rec *ahead = g.all[i + LEARN_PREFETCH];
            for (size_t off = offsetof(site_rec, learn); off < sizeof(site_rec); off += 64)
                __builtin_prefetch((const char *)ahead + off);
            __builtin_prefetch(cold_of(ahead));
            __builtin_prefetch(cold_of(ahead)->module);
        }
        buf[i].key = cold_of(g.all[i])->key;
        memcpy(buf[i].module, cold_of(g.all[i])->module, sizeof buf[i].module);
        buf[i].learn = g.all[i]->learn;
    }
    *n = g.n_all;
    return buf;
}

/* Merges decoded state into the table.  With replace, a site takes the
 * incoming statistics; otherwise pulls and rewards are added. */
static int merge_states(const hkd_site_state *in, size_t n, int replace)
{
    int count = 0;
    rcu_read_lock();
    for (size_t i = 0; i < n; i++) {
        site_rec *r = get_or_add(&in[i].key, in[i].module);
        if (!r)
            continue;
        wbegin(r);
        hkd_learn *l = &r->learn;
        const hkd_learn *src = &in[i].learn;
        if (replace || l->total_pulls == 0) {
            *l = *src;
        } else {
            uint64_t pulls[HKD_N_ARMS];
            double rewards[HKD_N_ARMS];
            for (int a = 0; a < HKD_N_ARMS; a++) {
                pulls[a] = (uint64_t)l->pulls[a] + src->pulls[a];
                rewards[a] = hkd_learn_reward_sum(l, a) + hkd_learn_reward_sum(src, a);
            }
            hkd_learn_set_counts(l, pulls, rewards);
            if (src->pinned >= 0)
                l->pinned = src->pinned;
            if (l->ref_cost <= 0.0)
                l->ref_cost = src->ref_cost;
            /* What the fleet learned picks the arm; the pull restarts. */
            l->current = hkd_ucb_select(l, 0.0);
        }
        l->settle = 1;
        l->pull_intervals = 0;
        l->acc_allocs = l->acc_bytes = l->acc_slow_ns = l->acc_large = 0;
        l->acc_faults = l->acc_seconds = 0.0;
        set_published(r);
        wend(r);
        count++;
    }
    rcu_read_unlock();
    g.dirty = 1;
    return count;
}

static void load_state(void)
{
    if (!g.cfg.state_dir)
        return;
    uint8_t *buf;
    size_t len;
    char aside[4200] = "";
    int rc = hkd_state_load(g.state_dir, &buf, &len, aside, sizeof aside);
    if (rc == -ENOENT) {
        hkd_log(HKD_LOG_INFO, "no learned state in %s yet: starting cold", g.state_dir);
        return;
    }
    if (rc == -EBADMSG || rc == -EMEDIUMTYPE) {
        hkd_log(HKD_LOG_WARNING, "state file in %s is %s; set aside as %s, starting cold", g.state_dir,
                rc == -EBADMSG ? "corrupt or truncated" : "not a regular file", aside);
        return;
    }
    if (rc < 0) {
        hkd_log(HKD_LOG_WARNING, "cannot read state in %s: %s; starting cold", g.state_dir, strerror(-rc));
        return;
    }
    hkd_site_state *st;
    size_t n;
    uint64_t gen;
    rc = hkd_policy_decode(buf, len, &st, &n, &gen);
    free(buf);
    if (rc < 0) {
        hkd_state_set_aside(g.state_dir, aside, sizeof aside);
        hkd_log(HKD_LOG_WARNING, "state file in %s is not a hakmem policy; set aside as %s, starting cold",
                g.state_dir, aside);
        return;
    }
    merge_states(st, n, 1);
    free(st);
    hkd_log(HKD_LOG_INFO, "loaded learned state: %zu sites", n);
}

/* Saving: the learner (or whoever asks) only copies the learned state
 * under g.lock; encoding and the temp-file + fsync + rename happen on the
 * saver thread, so a save never stretches an interval.  Snapshots carry a
 * ticket; a newer snapshot waiting replaces an older one not yet started,
 * and one thread writes, so the file never goes back in time. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    pthread_t thread;
    int started, stop;
    hkd_site_state *pending;
    size_t n_pending, cap_pending;
    hkd_site_state *spare;           /* a written snapshot's buffer, for the next */
    size_t cap_spare;
    uint64_t gen_pending;
    uint64_t ticket;                 /* of the newest snapshot handed over */
    uint64_t done_ticket;            /* of the newest snapshot written (or failed) */
    int done_rc;
} sv = { .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
         .done = PTHREAD_COND_INITIALIZER };

static int write_state(const hkd_site_state *st, size_t n, uint64_t gen)
{
    uint8_t *buf;
    size_t len;
    int rc = hkd_policy_encode(st, n, gen, &buf, &len);
    if (rc == 0) {
        rc = hkd_state_save(g.state_dir, buf, len);
        free(buf);
    }
    if (rc < 0)
        hkd_log(HKD_LOG_WARNING, "saving learned state to %s failed: %s", g.state_dir, strerror(-rc));
    return rc;
}

static void *saver_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&sv.lock);
    for (;;) {
        while (!sv.pending && !sv.stop)
            pthread_cond_wait(&sv.wake, &sv.lock);
        if (!sv.pending)
            break;                   /* stop, and nothing left to write */
        hkd_site_state *st = sv.pending;
        size_t n = sv.n_pending, cap = sv.cap_pending;
        uint64_t gen = sv.gen_pending, ticket = sv.ticket;
        sv.pending = NULL;
        pthread_mutex_unlock(&sv.lock);
        int rc = write_state(st, n, gen);
        pthread_mutex_lock(&sv.lock);
        if (!sv.spare) {
            sv.spare = st;
            sv.cap_spare = cap;
        } else {
            free(st);
        }
        sv.done_ticket = ticket;
        sv.done_rc = rc;
        pthread_cond_broadcast(&sv.done);
    }
    pthread_mutex_unlock(&sv.lock);
    return NULL;
}

/* Copies the state and hands it to the saver; its ticket in *ticket. */
static int save_enqueue(uint64_t *ticket)
{
    pthread_mutex_lock(&sv.lock);
    hkd_site_state *buf = sv.spare;
    size_t cap = sv.cap_spare;
    sv.spare = NULL;
    sv.cap_spare = 0;
    pthread_mutex_unlock(&sv.lock);
    pthread_mutex_lock(&g.lock);
    size_t n = 0;
    hkd_site_state *st = snapshot_states_into(buf, &cap, &n);
    uint64_t gen = atomic_load(&g.generation);
    pthread_mutex_unlock(&g.lock);
    if (!st)
        return -ENOMEM;
    pthread_mutex_lock(&sv.lock);
    if (!sv.started) {
        int rc = pthread_create(&sv.thread, NULL, saver_main, NULL);
        if (rc != 0) {
            pthread_mutex_unlock(&sv.lock);
            free(st);
            return -rc;
        }
        sv.started = 1;
    }
    free(sv.pending);                /* superseded before it was written */
    sv.pending = st;
    sv.n_pending = n;
    sv.cap_pending = cap;
    sv.gen_pending = gen;
    *ticket = ++sv.ticket;
    pthread_cond_signal(&sv.wake);
    pthread_mutex_unlock(&sv.lock);
    return 0;
}

int hkd_core_save_async(void)
{
    if (!g.cfg.state_dir)
        return 0;
    uint64_t ticket;
    return save_enqueue(&ticket);
}

int hkd_core_save(void)
{
    if (!g.cfg.state_dir)
        return 0;
    uint64_t ticket;
    int rc = save_enqueue(&ticket);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&sv.lock);
    while (sv.done_ticket < ticket)
        pthread_cond_wait(&sv.done, &sv.lock);
    rc = sv.done_rc;
    pthread_mutex_unlock(&sv.lock);
    return rc;
}

/* Writes what is pending, then ends the saver. */
static void saver_stop(void)
{
    pthread_mutex_lock(&sv.lock);
    if (!sv.started) {
        pthread_mutex_unlock(&sv.lock);
        return;
    }
    sv.stop = 1;
    pthread_cond_signal(&sv.wake);
    pthread_mutex_unlock(&sv.lock);
    pthread_join(sv.thread, NULL);
    sv.started = 0;
    sv.stop = 0;
    free(sv.spare);
    sv.spare = NULL;
    sv.cap_spare = 0;
}

/* ---- lifecycle ---- */

int hkd_core_init(const hkd_core_cfg *cfg)
{
    g.cfg = *cfg;
    if (cfg->state_dir) {
        snprintf(g.state_dir, sizeof g.state_dir, "%s", cfg->state_dir);
        g.cfg.state_dir = g.state_dir;
    }
    if (g.cfg.interval_ms == 0)
        g.cfg.interval_ms = 1000;
    if (g.cfg.reader_timeout_ms == 0)
        g.cfg.reader_timeout_ms = HKD_READER_TIMEOUT_MS;
    g.init_error[0] = 0;
    g.ht = cds_lfht_new(1u << 14, 1024, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
    /* Even and odd entries: registrations take the lowest free one, so both halves fill. */
    g.col = hkd_collector_new(0, COLLECTORS);
    g.col2 = hkd_collector_new(1, COLLECTORS);
    g.bands = hkd_bands_new();
    if (core_binaries_init(g.cfg.memory_weight_ns) < 0) {
        snprintf(g.init_error, sizeof g.init_error, "out of memory setting up the core");
        return -ENOMEM;
    }
    g.entries = malloc(HKSHM_SITE_CAP * sizeof *g.entries);
    g.binaries = calloc(HKSHM_BINARY_CAP, sizeof *g.binaries);
    if (!g.ht || !g.col || !g.col2 || !g.bands || !g.entries || !g.binaries) {
        snprintf(g.init_error, sizeof g.init_error, "out of memory setting up the core");
        return -ENOMEM;
    }
    /* Full size from the start (128 KiB each, zero pages until used): a
     * collector reads its bitmap while the other may be adding records. */
    for (uint32_t t = 0; t < COLLECTORS; t++)
        if (!(g.touched[t] = calloc(MAX_SITES / 64, sizeof(uint64_t)))) {
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
    load_state();
    if (g.n_all)
        publish_locked();
    pthread_mutex_unlock(&g.lock);
    g.start_ns = g.last_ns = hkd_now_ns();
    g.ready = 1;
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
 * per record; the size-band learners are shared, so the band work of thin
 * sites is left in band_todo for the calling thread to do after the join. */
#define SPLIT_MIN_RECS 16384u        /* fewer records or sites: one thread */

typedef struct learn_part {
    uint32_t begin, end;
    double seconds;
    int dirty;
} learn_part;

/* The second thread: runs one job at a time for the interval thread (half
 * of the collection, then half of the learn pass).  Started when the fleet
 * is big enough to pay for the hand-offs; until then jobs run inline. */
typedef void (*job_fn)(void *arg);

static struct {
    pthread_t tid;
    pthread_mutex_t m;
    pthread_cond_t go, done;
    job_fn fn;                       /* set: a job to run; NULL: idle */
    void *arg;
    int started, stop, failed;
} worker = { .m = PTHREAD_MUTEX_INITIALIZER, .go = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER };

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
    for (uint32_t i = p->begin; i < p->end; i++) {
        site_rec *r = g.created[i];
        if (i + LEARN_PREFETCH < p->end) {
            /* Addresses from the chunk tables, not from the record ahead:
             * that would wait for the very line being prefetched. */
            uint32_t j = i + LEARN_PREFETCH;
            const char *ahead = g.hot_chunks[j / CHUNK_RECS] + (size_t)(j % CHUNK_RECS) * HOT_SIZE;
#pragma GCC unroll 8
            for (size_t off = 0; off < HOT_SIZE; off += 64)
                __builtin_prefetch(ahead + off, 1);
            for (uint32_t t = 0; t < COLLECTORS; t++)
                if (touched(t, j))
                    __builtin_prefetch(acc_at(t, j));
        }
        site_sum sum = sum_of(i);
        if (sum.hist) {
            /* A merge moved the shares (the collectors are done: plain reads). */
            site_cold *c = cold_of(r);
            r->frac_256k = (float)c->frac_256k;
            r->frac_1m = (float)c->frac_1m;
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
        if (g.cfg.learning)
            changed = learn_own(r, &obs, &band_pending);
        r->processes = sum.procs;
        r->live_bytes = sum.live;
        wend(r);
        changed_recs[n_changed] = r;
        n_changed += (uint32_t)changed;
        if (n_changed == LEARN_BATCH || i + 1 == p->end) {
            for (uint32_t k = 0; k < n_changed; k++)
                set_published(changed_recs[k]);
            p->dirty |= n_changed > 0;
            n_changed = 0;
        }
        if (band_pending)
            g.band_todo[i / 64] |= 1ull << (i % 64);   /* band_pass takes its interval */
    }
}

/* The calling thread, after the join: thin sites hand their interval to
 * their band and run its arm (thin sites see a band's new arm the
 * interval after it changes). */
static int band_pass(double seconds)
{
    int dirty = 0;
    for (uint32_t w = 0; w < (g.n_all + 63) / 64; w++) {
        for (uint64_t bits = g.band_todo[w]; bits; bits &= bits - 1) {
            uint32_t i = w * 64 + (uint32_t)__builtin_ctzll(bits);
            site_rec *r = g.created[i];
            site_sum sum = sum_of(i);
            hkd_obs obs = obs_of(r, &sum, seconds);
            int before = rec_arm(r);
            wbegin(r);
            if (hkd_bands_add(g.bands, r->thin.band, &obs) == 0) {
                r->thin.arm = (int8_t)hkd_bands_arm(g.bands, r->thin.band);
                const hkd_learn *bl = hkd_bands_learner(g.bands, r->thin.band);
                r->thin.band_settled = (uint8_t)(bl && hkd_learn_settled(bl));
            }
            wend(r);
            if (rec_arm(r) != before) {
                set_published(r);
                dirty = 1;
            }
        }
        g.band_todo[w] = 0;
    }
    hkd_bands_end_interval(g.bands, &g.cfg.learn);
    return dirty;
}

static void *worker_main(void *arg)
{
    (void)arg;
    rcu_register_thread();          /* jobs look records up in the hash table */
    pthread_mutex_lock(&worker.m);
    for (;;) {
        while (!worker.fn && !worker.stop)
            pthread_cond_wait(&worker.go, &worker.m);
        if (worker.stop)
            break;
        job_fn fn = worker.fn;
        void *job = worker.arg;
        pthread_mutex_unlock(&worker.m);
        fn(job);
        pthread_mutex_lock(&worker.m);
        worker.fn = NULL;
        pthread_cond_signal(&worker.done);
    }
    pthread_mutex_unlock(&worker.m);
    rcu_unregister_thread();
    return NULL;
}

/* Runs fn(arg) on the worker, or right here when there is none (a small
 * fleet, or a thread that could not be made); worker_wait() joins it. */
static void worker_post(job_fn fn, void *arg)
{
    if (!worker.started && !worker.failed && (g.n_all >= SPLIT_MIN_RECS || g.last_records >= SPLIT_MIN_RECS)) {
        int err = pthread_create(&worker.tid, NULL, worker_main, NULL);
        worker.started = err == 0;
        worker.failed = err != 0;    /* tried and said once per run of the core */
        if (err)
            hkd_log(HKD_LOG_WARNING, "the interval stays on one thread: %s", strerror(err));
    }
    if (!worker.started) {
        fn(arg);
        return;
    }
    pthread_mutex_lock(&worker.m);
    worker.fn = fn;
    worker.arg = arg;
    pthread_cond_signal(&worker.go);
    pthread_mutex_unlock(&worker.m);
}

static void worker_wait(void)
{
    if (!worker.started)
        return;
    pthread_mutex_lock(&worker.m);
    while (worker.fn)
        pthread_cond_wait(&worker.done, &worker.m);
    pthread_mutex_unlock(&worker.m);
}

static void worker_stop(void)
{
    worker.failed = 0;
    if (!worker.started)
        return;
    pthread_mutex_lock(&worker.m);
    worker.stop = 1;
    pthread_cond_signal(&worker.go);
    pthread_mutex_unlock(&worker.m);
    pthread_join(worker.tid, NULL);
    worker.started = worker.stop = 0;
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

static void collect_job(void *arg)
{
    collect_part *p = arg;
    hkd_collect_ops ops = { .site = on_site, .proc = on_proc };
    rcu_read_lock();
    p->rc = hkd_collect(p->col, &ops, (void *)(uintptr_t)1, &p->st);
    rcu_read_unlock();
}

/* Learns from every record's interval; 1 when something must be republished. */
static int learn_pass(double seconds)
{
    learn_part mine = { .begin = 0, .end = g.n_all, .seconds = seconds };
    learn_part theirs = { .begin = g.n_all, .end = g.n_all, .seconds = seconds };
    if (g.n_all >= SPLIT_MIN_RECS) {
        mine.end = theirs.begin = (g.n_all / 2) & ~63u;
        worker_post(learn_job, &theirs);
    }
    learn_range(&mine);
    worker_wait();
    int dirty = mine.dirty | theirs.dirty;
    if (g.cfg.learning)
        dirty |= band_pass(seconds);
    return dirty;
}

int hkd_core_interval(void)
{
    pthread_mutex_lock(&g.lock);
    uint64_t t0 = hkd_now_ns();
    double seconds = (double)(t0 - g.last_ns) / 1e9;
    g.last_ns = t0;

    /* Registrations queued since the last interval join; ended ones get
     * their last collection now and are dropped after it. */
    hkd_registry_begin_interval();
    uint32_t cap = hkd_registry_count();
    proc_list *b = malloc(sizeof *b + (cap ? cap : 1) * sizeof(hkd_proc_info));
    if (b) {
        b->n = 0;
        g.building = b;
        g.building_cap = cap;
    }
    /* Accumulators from earlier intervals are stale from here on. */
    for (uint32_t t = 0; t < COLLECTORS; t++)
        memset(g.touched[t], 0, ((g.n_all + 63) / 64) * sizeof(uint64_t));
    /* Half of the registrations each, on two threads once the fleet is big. */
    collect_part theirs = { .col = g.col2 };
    worker_post(collect_job, &theirs);
    hkd_collect_ops ops = { .site = on_site, .proc = on_proc };
    hkd_collect_stats st;
    rcu_read_lock();
    int rc = hkd_collect(g.col, &ops, (void *)(uintptr_t)0, &st);
    rcu_read_unlock();
    worker_wait();
    if (theirs.rc < 0)
        rc = theirs.rc;
    st.live += theirs.st.live;
    st.ended += theirs.st.ended;
    st.skipped_busy += theirs.st.skipped_busy;
    st.site_records += theirs.st.site_records;
    g.last_records = st.site_records;
    g.building = NULL;
    uint64_t t1 = hkd_now_ns();

    g.dirty |= learn_pass(seconds);
    g.dirty |= core_binaries_end_interval();
    uint64_t t2 = hkd_now_ns();
    if (g.dirty)
        publish_locked();
    uint64_t t3 = hkd_now_ns();
    atomic_store(&g.phase_ns[0], t1 - t0);
    atomic_store(&g.phase_ns[1], t2 - t1);
    atomic_store(&g.phase_ns[2], t3 - t2);
    hkd_registry_end_interval();

    if (b) {
        proc_list *old = g.procs;
        rcu_assign_pointer(g.procs, b);
        if (old)
            call_rcu(&old->rcu, free_procs);
    }
    atomic_store(&g.seg.hdr->daemon_heartbeat_ns, hkd_now_ns());
    atomic_store(&g.n_procs, st.live);
    atomic_store(&g.n_registrations, hkd_registry_count());
    atomic_store(&g.n_sites, g.n_all);
    atomic_fetch_add(&g.intervals, 1);
    atomic_store(&g.last_interval_ns, hkd_now_ns() - t0);
    pthread_mutex_unlock(&g.lock);
    if (st.ended)
        hkd_log(HKD_LOG_DEBUG, "collected the last counters of %u ended registrations", st.ended);
    return rc;
}

static int site_bytes_desc(const void *a, const void *b)
{
    const site_rec *x = *(site_rec *const *)a, *y = *(site_rec *const *)b;
    return x->bytes < y->bytes ? 1 : x->bytes > y->bytes ? -1 : rec_cmp(a, b);
}

void hkd_core_phase_ns(uint64_t out[3])
{
    for (int i = 0; i < 3; i++)
        out[i] = atomic_load(&g.phase_ns[i]);
}

void hkd_core_log_summary(int max_sites)
{
    pthread_mutex_lock(&g.lock);
    hkd_log(HKD_LOG_DEBUG,
            "interval %llu: %u processes, %u sites, generation %llu, %llu us (collect %llu, learn %llu, publish %llu)",
            (unsigned long long)atomic_load(&g.intervals), atomic_load(&g.n_procs), g.n_all,
            (unsigned long long)atomic_load(&g.generation),
            (unsigned long long)atomic_load(&g.last_interval_ns) / 1000,
            (unsigned long long)atomic_load(&g.phase_ns[0]) / 1000,
            (unsigned long long)atomic_load(&g.phase_ns[1]) / 1000,
            (unsigned long long)atomic_load(&g.phase_ns[2]) / 1000);
    site_rec **v = malloc((g.n_all ? g.n_all : 1) * sizeof *v);
    if (v) {
        memcpy(v, g.all, g.n_all * sizeof *v);
        qsort(v, g.n_all, sizeof *v, site_bytes_desc);
        for (uint32_t i = 0; i < g.n_all && (int)i < max_sites; i++) {
            const site_rec *r = v[i];
            int arm = rec_arm(r);
            hkd_log(HKD_LOG_DEBUG,
                    "site %016llx:%llx module=%s procs=%u allocs=%llu bytes=%llu arm=%d(%s) pulls=%llu",
                    (unsigned long long)cold_of(r)->key.module_hash, (unsigned long long)cold_of(r)->key.offset,
                    cold_of(r)->module, r->processes, (unsigned long long)r->allocs,
                    (unsigned long long)r->bytes, arm, hkd_arms[arm].name,
                    (unsigned long long)r->learn.total_pulls);
        }
        free(v);
    }
    pthread_mutex_unlock(&g.lock);
}

void hkd_core_shutdown(void)
{
    if (!g.ready)
        return;
    worker_stop();
    saver_stop();
    g.ready = 0;
    hkd_registry_shutdown();
    hkd_segment_close(&g.seg);
    rcu_read_lock();
    for (uint32_t i = 0; i < g.n_all; i++)
        cds_lfht_del(g.ht, &cold_at(i)->node);
    rcu_read_unlock();
    synchronize_rcu();
    for (uint32_t i = 0; i < (g.n_all + CHUNK_RECS - 1) / CHUNK_RECS; i++)
        free_chunk(i);
    for (uint32_t t = 0; t < COLLECTORS; t++) {
        free(g.touched[t]);
        g.touched[t] = NULL;
    }
    free(g.all);
    free(g.created);
    free(g.band_todo);
    g.all = NULL;
    g.created = NULL;
    g.band_todo = NULL;
    g.n_all = g.cap_all = 0;
    cds_lfht_destroy(g.ht, NULL);
    g.ht = NULL;
    proc_list *p = g.procs;
    rcu_assign_pointer(g.procs, NULL);
    synchronize_rcu();
    free(p);
    rcu_barrier();
    hkd_collector_free(g.col);
    hkd_collector_free(g.col2);
    g.col2 = NULL;
    hkd_bands_free(g.bands);
    g.bands = NULL;
    g.col = NULL;
    free(g.entries);
    g.entries = NULL;
    free(g.binaries);
    g.binaries = NULL;
    g.n_binaries = 0;
    core_binaries_shutdown();
}

/* ---- core_api.h ---- */

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
    snprintf(out->version, sizeof out->version, "%s", HKD_VERSION);
    out->uptime_ms = (hkd_now_ns() - g.start_ns) / 1000000;
    snprintf(out->shm_name, sizeof out->shm_name, "%s", g.seg.name);
    out->generation = atomic_load(&g.generation);
    out->processes = atomic_load(&g.n_procs);
    out->sites = atomic_load(&g.n_sites);
    out->interval_ms = g.cfg.interval_ms;
    out->intervals = atomic_load(&g.intervals);
    out->last_interval_ns = atomic_load(&g.last_interval_ns);
    out->learning = g.cfg.learning;
    out->registrations = atomic_load(&g.n_registrations);
    out->instance = g.seg.hdr ? atomic_load(&g.seg.hdr->instance) : 0;
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
    proc_list *p = rcu_dereference(g.procs);
    for (uint32_t i = 0; p && i < p->n && rc == 0; i++)
        rc = fn(&p->procs[i], arg);
    rcu_read_unlock();
    return rc;
}

static void read_hist(const site_cold *c, uint64_t out[HKSHM_HIST])
{
    for (int tries = 0;; tries++) {
        uint32_t s1 = atomic_load_explicit(&((site_cold *)c)->seq, memory_order_acquire);
        if (s1 & 1) {
            if (tries > 1000)
                sched_yield();
            continue;
        }
        memcpy(out, c->hist, HKSHM_HIST * sizeof *out);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&((site_cold *)c)->seq, memory_order_relaxed) == s1)
            return;
    }
}

static void read_site(site_rec *r, hkd_site_info *o)
{
    for (int tries = 0;; tries++) {
        uint32_t s1 = atomic_load_explicit(&r->seq, memory_order_acquire);
        if (s1 & 1) {
            if (tries > 1000)
                sched_yield();
            continue;
        }
        memset(o, 0, sizeof *o);
        o->key = cold_of(r)->key;
        memcpy(o->module, cold_of(r)->module, sizeof o->module);
        o->module[sizeof o->module - 1] = 0;
        o->processes = r->processes;
        o->allocs = r->allocs;
        o->frees = r->frees;
        o->bytes = r->bytes;
        o->live_bytes = r->live_bytes;
        read_hist(cold_of(r), o->size_hist);
        o->bigcache_hits = r->hits;
        o->bigcache_misses = r->misses;
        o->bigcache_evictions = r->evictions;
        o->thp_blocks = r->thp;
        o->slow_ns = r->slow_ns;
        const hkd_arm *arm = &hkd_arms[rec_arm(r)];
        o->thresholds.large_threshold = arm->large_threshold;
        o->thresholds.bigcache_slots = arm->bigcache_slots;
        o->thresholds.thp = arm->thp;
        o->pinned_arm = r->learn.pinned;
        o->thin = r->learn.pinned < 0 && r->thin.band != HKD_NO_BAND && r->thin.arm >= 0;
        o->settled = o->thin ? r->thin.band_settled : hkd_learn_settled(&r->learn);
        o->n_arms = HKD_N_ARMS;
        for (int a = 0; a < HKD_N_ARMS; a++) {
            snprintf(o->arms[a].name, sizeof o->arms[a].name, "%s", hkd_arms[a].name);
            o->arms[a].pulls = r->learn.pulls[a];
            o->arms[a].mean_reward = r->learn.mean[a];
        }
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&r->seq, memory_order_relaxed) == s1)
            return;
    }
}

int hkd_for_each_site(int (*fn)(const hkd_site_info *, void *), void *arg)
{
    if (!fn)
        return -EINVAL;
    if (!g.ht)
        return 0;
    hkd_site_info *info = malloc(sizeof *info);
    if (!info)
        return -ENOMEM;
    int rc = 0;
    struct cds_lfht_iter it;
    site_cold *c;
    rcu_read_lock();
    cds_lfht_for_each_entry(g.ht, &it, c, node) {
        read_site(c->rec, info);
        if ((rc = fn(info, arg)) != 0)
            break;
    }
    rcu_read_unlock();
    free(info);
    return rc;
}

/* Records are created in index order and never removed while the daemon
 * runs, and their chunks never move: an index is a cursor that stays valid,
 * and reading by index needs no read-side section (create_lock orders the
 * count after the records it counts). */
int hkd_site_page(uint32_t *cursor, hkd_site_info *out, size_t max)
{
    if (!cursor || (max && !out))
        return -EINVAL;
    pthread_mutex_lock(&g.create_lock);
    uint32_t n = g.ready ? g.n_all : 0;
    pthread_mutex_unlock(&g.create_lock);
    size_t k = 0;
    for (; k < max && *cursor < n; k++, (*cursor)++)
        read_site(cold_at(*cursor)->rec, &out[k]);
    return (int)k;
}

int hkd_policy_export_page(uint32_t *cursor, size_t max_sites, uint8_t **out, size_t *len)
{
    if (!cursor || !out || !len || !max_sites)
        return -EINVAL;
    hkd_site_state *st = malloc(max_sites * sizeof *st);
    if (!st)
        return -ENOMEM;
    pthread_mutex_lock(&g.lock);
    uint32_t from = *cursor, n = 0;
    for (; n < max_sites && from + n < g.n_all; n++) {
        const site_cold *c = cold_at(from + n);
        st[n].key = c->key;
        memcpy(st[n].module, c->module, sizeof st[n].module);
        st[n].learn = c->rec->learn;
    }
    uint64_t gen = atomic_load(&g.generation);
    pthread_mutex_unlock(&g.lock);
    int rc = hkd_policy_encode_part(st, n, from == 0, gen, out, len);
    free(st);
    if (rc < 0)
        return rc;
    *cursor = from + n;
    return (int)n;
}

int hkd_policy_import(const uint8_t *buf, size_t len)
{
    if (!buf && len)
        return -EINVAL;
    hkd_site_state *st;
    size_t n;
    int rc = hkd_policy_decode(buf, len, &st, &n, NULL);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&g.lock);
    int count = merge_states(st, n, 0);
    publish_locked();
    pthread_mutex_unlock(&g.lock);
    free(st);
    return count;
}

int hkd_reset(const hkd_site_key *key)
{
    pthread_mutex_lock(&g.lock);
    int found = 0;
    rcu_read_lock();
    for (uint32_t i = 0; i < g.n_all; i++) {
        site_rec *r = g.all[i];
        const hkd_site_key *k = &cold_of(r)->key;
        if (key && (k->module_hash != key->module_hash || k->offset != key->offset))
            continue;
        wbegin(r);
        hkd_learn_init(&r->learn);
    hkd_thin_init(&r->thin);
        set_published(r);
        wend(r);
        found++;
    }
    rcu_read_unlock();
    int rc = key && !found ? -ENOENT : 0;
    if (found) {
        g.dirty = 1;
        publish_locked();
    }
    pthread_mutex_unlock(&g.lock);
    return rc;
}

int hkd_pin(const hkd_site_key *key, int arm)
{
    if (!key)
        return -EINVAL;
    if (arm >= HKD_N_ARMS)
        return -EINVAL;
    pthread_mutex_lock(&g.lock);
    rcu_read_lock();
    site_rec *r = lookup(key);
    rcu_read_unlock();
    int rc = -ENOENT;
    if (r) {
        wbegin(r);
        int changed = hkd_learn_pin(&r->learn, arm);
        set_published(r);
        wend(r);
        if (changed) {
            g.dirty = 1;
            publish_locked();
        }
        rc = 0;
    }
    pthread_mutex_unlock(&g.lock);
    return rc;
}
