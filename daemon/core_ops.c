/* The core from outside the interval: loading state at start, importing a
 * policy, forgetting and pinning sites, copying the learned state for the
 * saver and for export (all under g.lock, so they wait for an interval,
 * never the other way round), and copying sites out for readers (inside
 * rcu_read_lock, never waiting for the learner). */
#include "core_api.h"
#include "core_rec.h"
#include "persist_binaries.h"
#include "core_binaries.h"
#include "core_fleet.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "persist.h"
#include "saver.h"
#include "site_key.h"
#include "value.h"

#define COPY_PREFETCH 4              /* records ahead when copying the learned state */

/* Adds src's pulls and rewards to l's (a merge of two hosts' or two runs'
 * learning): what they learned together picks the arm. */
static void merge_learn(hkd_learn *l, const hkd_learn *src)
{
    if (l->total_pulls == 0 && l->pinned < 0) {
        *l = *src;
        return;
    }
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
    if (!l->sizes_known && src->sizes_known)
        hkd_learn_set_sizes(l, src->size_lo, src->size_hi);
    l->current = hkd_ucb_select(l, 0.0);
}

/* What is kept for a site that has no record (no room, or no process for
 * longer than the retention period): into the archive, replacing or
 * merged with what it held. */
static void keep_archived(const hkd_site_state *st, int replace)
{
    hkd_site_state merged = *st, old;
    if (!replace && hkd_archive_take(g.archive, &st->key, &old)) {
        hkd_learn a, b;
        hkd_site_state_learn(&old, &a);
        hkd_site_state_learn(st, &b);
        merge_learn(&a, &b);
        hkd_site_state_of(&merged, &st->key, &a);
        merged.last_seen = old.last_seen > st->last_seen ? old.last_seen : st->last_seen;
        merged.usage = old.usage + st->usage;
    }
    if (hkd_archive_put(g.archive, &merged) < 0)
        hkd_log(HKD_LOG_WARNING, "no memory to keep what a site learned; it is forgotten");
}

typedef struct ranked_state {
    uint64_t score;
    size_t i;
} ranked_state;

static int worthier_first(const void *a, const void *b)
{
    const ranked_state *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* Merges decoded state, the worthiest first (so the limits keep the best
 * in memory).  A site seen within the retention period gets a record (or
 * its record takes the state); the others, and those the limits refuse,
 * go to the archive.  With replace a site takes the incoming statistics;
 * otherwise pulls and rewards are added.  Returns how many sites it took. */
static int merge_policy(hkd_policy *p, int replace)
{
    ranked_state *order = malloc((p->n ? p->n : 1) * sizeof *order);
    if (!order)
        return -ENOMEM;
    for (size_t i = 0; i < p->n; i++) {
        hkd_site_state *st = &p->sites[i];
        if (!st->last_seen)
            st->last_seen = g.now_s;   /* a file from before last-seen times: seen now */
        order[i] = (ranked_state){ hkd_worth_score(st->last_seen, st->usage, st->pinned >= 0), i };
    }
    qsort(order, p->n, sizeof *order, worthier_first);
    int count = 0;
    rcu_read_lock();
    for (size_t k = 0; k < p->n; k++) {
        const hkd_site_state *st = &p->sites[order[k].i];
        int recent = st->last_seen > g.now_s || g.now_s - st->last_seen < g.cfg.retention_s;
        site_rec *r = recent ? core_get_or_add(&st->key, hkd_module_path(p->modules, p->n_modules,
                                                                         st->key.module_hash), 0, NULL)
                             : NULL;
        count++;
        if (!r) {
            keep_archived(st, replace);
            continue;
        }
        hkd_learn src;
        hkd_site_state_learn(st, &src);
        site_cold *c = cold_of(r);
        wbegin(r);
        hkd_learn *l = &r->learn;
        if (replace) {
            *l = src;
            c->usage_before = st->usage;
            r->last_seen = st->last_seen;
        } else {
            merge_learn(l, &src);
            c->usage_before += st->usage;
            r->last_seen = r->last_seen > st->last_seen ? r->last_seen : st->last_seen;
        }
        hkd_learn_resume(l, 1);
        core_set_published(r);
        wend(r);
    }
    rcu_read_unlock();
    atomic_store_explicit(&g.n_archived, hkd_archive_count(g.archive), memory_order_relaxed);
    free(order);
    g.dirty = 1;
    return count;
}

/* The most sites a decoded policy may hold: what memory and the archive
 * would ever keep. */
static size_t sites_kept_max(void)
{
    return (size_t)MAX_SITES + (size_t)(g.cfg.state_max_bytes / ARCHIVE_ENTRY_BYTES);
}

void core_load_state(void)
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
    hkd_policy pol;
    rc = hkd_policy_decode(buf, len, sites_kept_max(), &pol);
    free(buf);
    if (rc < 0) {
        hkd_state_set_aside(g.state_dir, aside, sizeof aside);
        hkd_log(HKD_LOG_WARNING, "state file in %s is not a hakmem policy; set aside as %s, starting cold",
                g.state_dir, aside);
        return;
    }
    /* A file written under a larger cap: the worthiest sites that fit. */
    size_t dropped = hkd_policy_trim(&pol, (size_t)g.cfg.state_max_bytes - HKD_STATE_HEADER_BYTES);
    if (dropped)
        hkd_log(HKD_LOG_NOTICE, "state file in %s is over its cap of %llu bytes: left out the %zu least used sites",
                g.state_dir, (unsigned long long)g.cfg.state_max_bytes, dropped);
    int n = merge_policy(&pol, 1);
    int nb = pol.n_binaries ? core_binaries_merge(pol.binaries, pol.n_binaries, 1) : 0;
    hkd_policy_free(&pol);
    if (n < 0) {
        hkd_log(HKD_LOG_WARNING, "no memory to load the learned state; starting cold");
        return;
    }
    hkd_log(HKD_LOG_INFO, "loaded learned state: %d sites (%u in memory, %u archived), %d binaries", n,
            hkd_domains_live(g.domains), hkd_archive_count(g.archive), nb);
}

int hkd_policy_import(const uint8_t *buf, size_t len)
{
    if (!buf && len)
        return -EINVAL;
    hkd_policy pol;
    int rc = hkd_policy_decode(buf, len, sites_kept_max(), &pol);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&g.lock);
    g.now_s = (uint32_t)(core_clock_ms() / 1000);
    int count = merge_policy(&pol, 0);
    if (pol.n_binaries)
        core_binaries_merge(pol.binaries, pol.n_binaries, 0);
    core_publish(0);
    pthread_mutex_unlock(&g.lock);
    hkd_policy_free(&pol);
    return count;
}

static void forget_record(site_rec *r)
{
    wbegin(r);
    hkd_learn_init(&r->learn);
    hkd_thin_init(&r->thin);
    core_set_published(r);
    wend(r);
}

int hkd_reset(const hkd_site_key *key)
{
    pthread_mutex_lock(&g.lock);
    int found = 0;
    rcu_read_lock();
    if (key) {
        site_rec *r = core_lookup(key);
        if (r) {
            forget_record(r);
            found++;
        }
    } else {
        for (uint32_t i = 0; i < g.n_idx; i++)
            if (!rec_at(i)->free) {
                forget_record(rec_at(i));
                found++;
            }
    }
    rcu_read_unlock();
    found += (int)hkd_archive_forget(g.archive, key);
    atomic_store_explicit(&g.n_archived, hkd_archive_count(g.archive), memory_order_relaxed);
    int rc = key && !found ? -ENOENT : 0;
    if (found) {
        g.dirty = 1;
        core_publish(0);
    }
    pthread_mutex_unlock(&g.lock);
    return rc;
}

void core_pin_record(site_rec *r, int arm)
{
    wbegin(r);
    int changed = hkd_learn_pin(&r->learn, arm);
    core_set_published(r);
    wend(r);
    /* Left out of a full table, a pinned site is chosen again soon. */
    g.set_changed |= r->excluded && arm >= 0;
    if (changed || g.set_changed) {
        g.dirty = 1;
        core_publish(0);
    }
}

int hkd_pin(const hkd_site_key *key, int arm)
{
    if (!key)
        return -EINVAL;
    if (arm >= HKD_N_ARMS)
        return -EINVAL;
    pthread_mutex_lock(&g.lock);
    rcu_read_lock();
    site_rec *r = core_lookup(key);
    rcu_read_unlock();
    int rc = -ENOENT;
    if (r) {
        core_pin_record(r, arm);
        rc = 0;
    }
    pthread_mutex_unlock(&g.lock);
    return rc;
}

/* ---- saving and export: copies for the saver ---- */

/* Copies record i's state to sites[*n] and its module's name to
 * mods[*n_mods] unless the name just before is its module's (sites of one
 * module mostly come together: a name per run); room for one more each. */
static void copy_record(uint32_t i, hkd_site_state *sites, size_t *n, hkd_module_name *mods, size_t *n_mods)
{
    const site_rec *r = rec_at(i);
    core_state_of(r, &sites[(*n)++]);
    const site_cold *c = cold_of(r);
    if (c->module[0] && (!*n_mods || mods[*n_mods - 1].hash != c->key.module_hash)) {
        mods[*n_mods].hash = c->key.module_hash;
        memcpy(mods[(*n_mods)++].path, c->module, HKD_MODULE_MAX);
    }
}

static int snapshot(hkd_snapshot *s)
{
    uint32_t n_arch;
    const hkd_site_state *arch = hkd_archive_entries(g.archive, &n_arch);
    if (hkd_snapshot_reserve(s, (size_t)g.n_idx + n_arch, g.n_idx + 1) < 0)
        return -ENOMEM;
    s->n = s->n_mods = 0;
    for (uint32_t i = 0; i < g.n_idx; i++) {
        if (i + COPY_PREFETCH < g.n_idx) {
            __builtin_prefetch((const char *)rec_at(i + COPY_PREFETCH) + offsetof(site_rec, learn));
            __builtin_prefetch(cold_at(i + COPY_PREFETCH));
        }
        if (!rec_at(i)->free)
            copy_record(i, s->sites, &s->n, s->mods, &s->n_mods);
    }
    memcpy(s->sites + s->n, arch, (size_t)n_arch * sizeof *arch);
    s->n += n_arch;
    s->generation = atomic_load(&g.generation);
    free(s->binaries);
    s->binaries = core_binaries_snapshot(&s->n_binaries);
    return 0;
}

static int save_enqueue(uint64_t *ticket)
{
    hkd_snapshot *s = hkd_saver_snapshot();
    if (!s)
        return -ENOMEM;
    pthread_mutex_lock(&g.lock);
    int rc = snapshot(s);
    pthread_mutex_unlock(&g.lock);
    if (rc < 0) {
        hkd_snapshot_free(s);
        return rc;
    }
    return hkd_saver_submit(s, ticket);
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
    return rc < 0 ? rc : hkd_saver_wait(ticket);
}

/* The first piece of an export also carries every binary's learning. */
static int append_binaries(uint8_t **out, size_t *len)
{
    size_t n = 0, blen = 0;
    hkd_binary_state *v = core_binaries_snapshot(&n);
    uint8_t *b = NULL;
    int rc = hkd_binaries_encode(v, n, &b, &blen);
    free(v);
    if (rc < 0 || !blen)
        return rc;
    uint8_t *both = realloc(*out, *len + blen);
    if (!both) {
        free(b);
        return -ENOMEM;
    }
    memcpy(both + *len, b, blen);
    *out = both;
    *len += blen;
    free(b);
    return 0;
}

/* A cursor below MAX_SITES is a record's slot; from MAX_SITES on, an
 * archived site's place in the archive plus MAX_SITES.  Records go first, then the archive: both may change
 * between pages, so a site that moves between memory and the archive
 * while an export runs may be in it twice or not at all; each page is
 * consistent on its own. */
int hkd_policy_export_page(uint32_t *cursor, size_t max_sites, uint8_t **out, size_t *len)
{
    if (!cursor || !out || !len || !max_sites)
        return -EINVAL;
    hkd_site_state *st = malloc(max_sites * sizeof *st);
    hkd_module_name *mods = malloc(max_sites * sizeof *mods);
    if (!st || !mods) {
        free(st);
        free(mods);
        return -ENOMEM;
    }
    size_t n = 0, n_mods = 0;
    pthread_mutex_lock(&g.lock);
    uint32_t from = *cursor, at = from;
    for (; n < max_sites && at < g.n_idx; at++)
        if (!rec_at(at)->free)
            copy_record(at, st, &n, mods, &n_mods);
    if (n < max_sites) {
        uint32_t n_arch;
        const hkd_site_state *arch = hkd_archive_entries(g.archive, &n_arch);
        if (at < MAX_SITES)
            at = MAX_SITES;
        for (; n < max_sites && at - MAX_SITES < n_arch; at++)
            st[n++] = arch[at - MAX_SITES];
    }
    uint64_t gen = atomic_load(&g.generation);
    pthread_mutex_unlock(&g.lock);
    n_mods = hkd_module_names_unique(mods, n_mods);
    int rc = hkd_policy_encode_part(st, n, mods, n_mods, from == 0, gen, out, len);
    free(st);
    free(mods);
    if (rc == 0 && from == 0)
        rc = append_binaries(out, len);
    if (rc < 0)
        return rc;
    *cursor = at;
    return (int)n;
}

/* ---- reading sites ---- */

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

/* A consistent copy of the record: 0, or -ENOENT when its slot is free.
 * Every write a reader sees is under the record's seq, a slot's reuse
 * included (core_store.c: add_locked), and seq never goes back: a copy that saw
 * the same even seq before and after is of one site. */
static int read_site(site_rec *r, hkd_site_info *o)
{
    hkd_prior prior;
    int fleet = 0;
    for (int tries = 0;; tries++) {
        uint32_t s1 = atomic_load_explicit(&r->seq, memory_order_acquire);
        if (s1 & 1) {
            if (tries > 1000)
                sched_yield();
            continue;
        }
        /* Out of range only in a torn copy, which the seq check discards. */
        int arm = rec_arm(r);
        if (arm < 0 || arm >= HKD_N_ARMS)
            arm = HKD_DEFAULT_ARM;
        if (r->free) {
            atomic_thread_fence(memory_order_acquire);
            if (atomic_load_explicit(&r->seq, memory_order_relaxed) == s1)
                return -ENOENT;
            continue;
        }
        memset(o, 0, sizeof *o);
        o->key = cold_of(r)->key;
        fleet = hkd_fleet_read_prior(r->idx, &o->key, &prior);
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
        o->thresholds.large_threshold = hkd_arms[arm].large_threshold;
        o->thresholds.bigcache_slots = hkd_arms[arm].bigcache_slots;
        o->thresholds.thp = hkd_arms[arm].thp;
        o->pinned_arm = r->learn.pinned;
        o->fleet_pinned = r->learn.pinned >= 0 && core_fleet_pinned(r->idx);
        o->thin = r->learn.pinned < 0 && r->thin.band != HKD_NO_BAND && r->thin.arm >= 0;
        o->settled = o->thin ? r->thin.band_settled : hkd_learn_settled_with(&r->learn, fleet ? &prior : NULL);
        o->published = r->in_table;
        o->own_pulls = r->learn.total_pulls;
        o->n_arms = HKD_N_ARMS;
        for (int a = 0; a < HKD_N_ARMS; a++) {
            hkd_arm_stats *x = &o->arms[a];
            snprintf(x->name, sizeof x->name, "%s", hkd_arms[a].name);
            x->pulls = r->learn.pulls[a];
            x->mean_reward = r->learn.mean[a];
            if (fleet && prior.pulls[a] > 0) {
                x->fleet_pulls = (uint64_t)prior.pulls[a];
                x->fleet_mean_reward = prior.reward_sum[a] / prior.pulls[a];
                o->fleet_pulls += x->fleet_pulls;
            }
        }
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&r->seq, memory_order_relaxed) == s1)
            return 0;
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
        if (read_site(c->rec, info) == 0 && (rc = fn(info, arg)) != 0)
            break;
    }
    rcu_read_unlock();
    free(info);
    return rc;
}

/* A cursor is a creation slot.  Slots below n_idx hold complete records
 * (create_lock orders the count after them) and their chunks never move
 * or go while the core runs: a slot is read without a read-side section,
 * and a free one is skipped. */
int hkd_site_page(uint32_t *cursor, hkd_site_info *out, uint32_t *at, size_t max)
{
    if (!cursor || (max && !out))
        return -EINVAL;
    pthread_mutex_lock(&g.create_lock);
    uint32_t n = g.ht ? g.n_idx : 0;
    pthread_mutex_unlock(&g.create_lock);
    size_t k = 0;
    for (; k < max && *cursor < n; (*cursor)++) {
        if (read_site(rec_at(*cursor), &out[k]) < 0)
            continue;
        if (at)
            at[k] = *cursor;
        k++;
    }
    return (int)k;
}
