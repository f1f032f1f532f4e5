/* The site store: the merged site records, found by key and by creation
 * slot, and what makes and evicts them.
 *
 * The records (core_rec.h) are found through a cds_lfht keyed by the site
 * key (domain, module_hash, offset), written by the learner and the two
 * collecting threads, read by control-server threads inside rcu_read_lock.
 * The learner updates records in place; each carries a sequence count so
 * a reader copies a consistent view without ever making the learner wait.
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
 * interval, on the learner, while no collection runs. */
#include "core_store.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "log.h"
#include "site_key.h"

#define EVICT_MAX 8192u              /* records evicted per interval at most */

core_accs core_acc;
uint32_t core_want[HKD_DOMAINS_MAX];
static int any_want;                 /* some domain wants room this interval */

/* ---- lookup ---- */

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

void core_state_of(const site_rec *r, hkd_site_state *s)
{
    const site_cold *c = cold_of(r);
    hkd_site_state_of(s, &c->key, &r->learn);
    /* The fleet's pin is etcd's to keep: a restart reads it again, and
     * one removed meanwhile must not stay as a local pin. */
    if (core_fleet_pinned(r->idx))
        s->pinned = -1;
    s->last_seen = r->processes ? g.now_s : r->last_seen;
    s->usage = c->usage_before + r->allocs;
}

/* ---- creation ---- */

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
        core_acc.chunks[t][ci] = NULL;
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
            core_acc.chunks[t][ci] = (site_acc *)(block + CHUNK_HOT + CHUNK_COLD + t * CHUNK_ACC);
        for (uint32_t t = 0; t < COLLECTORS; t++)
            for (uint32_t k = 0; k < CHUNK_RECS; k++)
                core_acc.chunks[t][ci][k].rec = ci * CHUNK_RECS + k;
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

site_rec *core_get_or_add(const hkd_site_key *k, const char *module, int by_report, core_spent *spent)
{
    /* Once per process and site (the caller keeps the answer), or once an
     * interval while refused.  The lookup needs no lock (readers of the
     * table never do), and a user refused once for a limit is refused
     * again on the caller's note, so a flood of keys takes the lock once
     * an interval. */
    site_rec *r = core_lookup(k);
    if (r && (cold_of(r)->module[0] || !module || !module[0]))
        return r;
    if (!r && spent && spent->slot >= 0 && spent->uid == k->domain) {
        spent->refused++;
        return NULL;
    }
    pthread_mutex_lock(&g.create_lock);
    if (r) {
        /* A site restored from state has no module path until a client names it. */
        if (!cold_of(r)->module[0])
            snprintf(cold_of(r)->module, sizeof cold_of(r)->module, "%s", module);
    } else {
        int dom = hkd_domains_slot(g.domains, k->domain);
        int rc = dom >= 0 ? hkd_domains_admit(g.domains, dom, by_report) : dom;
        if (rc == 0) {
            /* The other collecting thread may have added it meanwhile. */
            if ((r = core_lookup(k)) || !(r = add_locked(k, module, dom)))
                hkd_domains_unadmit(g.domains, dom, by_report);
        } else if (dom >= 0 && by_report && spent) {
            /* Refused for a limit, which holds until the interval ends
             * (the note's count settled first should it name another user). */
            if (spent->slot >= 0)
                hkd_domains_refused_again(g.domains, spent->slot, spent->refused);
            *spent = (core_spent){ .slot = dom, .uid = k->domain };
        }
    }
    pthread_mutex_unlock(&g.create_lock);
    return r;
}

void core_spent_settle(core_spent *spent)
{
    if (spent->slot >= 0 && spent->refused) {
        pthread_mutex_lock(&g.create_lock);
        hkd_domains_refused_again(g.domains, spent->slot, spent->refused);
        pthread_mutex_unlock(&g.create_lock);
    }
    *spent = CORE_SPENT_NONE;
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
        core_fleet_forget(e->idx[k]);
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
                e->acc[e->n_acc++] = core_acc_at(t, e->idx[k]);
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

void core_evict_plan(void)
{
    any_want = hkd_domains_room_wanted(g.domains, core_want);
}

/* From the records no process reported this interval that may go
 * (idle[] of both learn parts): those past the retention period, then
 * for each domain that wants room its least recently reported ones. */
void core_evict_idle(const uint32_t *const idle[2], const uint32_t n_idle[2])
{
    evict_set e = { .idx = malloc(EVICT_MAX * sizeof(uint32_t)) };
    idle_rec *wanted = any_want ? malloc(((size_t)n_idle[0] + n_idle[1] + 1) * sizeof *wanted) : NULL;
    uint32_t n_wanted = 0;
    if (!e.idx) {
        free(wanted);
        return;
    }
    for (int p = 0; p < 2; p++)
        for (uint32_t k = 0; k < n_idle[p]; k++) {
            site_rec *r = rec_at(idle[p][k]);
            if (core_aged_out(r)) {
                if (e.n < EVICT_MAX)
                    e.idx[e.n++] = idle[p][k];
            } else if (wanted && core_want[r->dom]) {
                wanted[n_wanted++] = (idle_rec){ r->dom, r->last_seen, idle[p][k] };
            }
        }
    if (n_wanted) {
        qsort(wanted, n_wanted, sizeof *wanted, idle_cmp);
        for (uint32_t k = 0; k < n_wanted && e.n < EVICT_MAX; k++)
            if (core_want[wanted[k].dom]) {
                core_want[wanted[k].dom]--;
                e.idx[e.n++] = wanted[k].idx;
            }
    }
    evict(&e);
    free(wanted);
    free(e.idx);
}

/* ---- setting up and tearing down ---- */

int core_store_init(void)
{
    g.ht = cds_lfht_new(1u << 14, 1024, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
    /* Full size from the start (zero pages until used): a collector reads
     * its bitmap while the other may be adding records. */
    g.free_idx = malloc(MAX_SITES * sizeof *g.free_idx);
    int ok = g.ht && g.free_idx;
    for (uint32_t t = 0; ok && t < COLLECTORS; t++)
        ok = (core_acc.touched[t] = calloc(MAX_SITES / 64, sizeof(uint64_t))) != NULL;
    return ok ? 0 : -ENOMEM;
}

void core_store_free(void)
{
    rcu_read_lock();
    for (uint32_t i = 0; i < g.n_idx; i++)
        if (!rec_at(i)->free)
            cds_lfht_del(g.ht, &cold_at(i)->node);
    rcu_read_unlock();
    synchronize_rcu();
    for (uint32_t i = 0; i < (g.n_idx + CHUNK_RECS - 1) / CHUNK_RECS; i++)
        free_chunk(i);
    for (uint32_t t = 0; t < COLLECTORS; t++) {
        free(core_acc.touched[t]);
        core_acc.touched[t] = NULL;
    }
    free(g.free_idx);
    g.free_idx = NULL;
    g.n_idx = g.n_free = 0;
    cds_lfht_destroy(g.ht, NULL);
    g.ht = NULL;
}
