/* The shared table: which sites it holds and their entries (core_rec.h
 * has the records).  The learner keeps each record's entry current in
 * place (core_set_published); choosing the sites and sorting them happens
 * when the set of records changed, or every few intervals while there are
 * more sites than the table holds. */
#include "core_binaries.h"
#include "core_rec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "log.h"
#include "pick.h"
#include "publisher.h"
#include "site_key.h"

#define SELECT_EVERY 16u             /* intervals between choices of a full table's sites */
#define SELECT_MIN_GAP 4u            /* at least this far apart, when records come and go */

/* The arm's part of a table entry. */
static void entry_arm(hkshm_site_policy *e, int arm)
{
    const hkd_arm *a = &hkd_arms[arm];
    e->large_threshold = a->large_threshold;
    e->bigcache_slots = a->bigcache_slots;
    e->thp = a->thp;
    e->arm = (uint32_t)arm;
}

void core_set_published(site_rec *r)
{
    if (r->in_table)
        entry_arm(&g.entries[r->pos], rec_arm(r));
}

typedef struct keyed_rec {
    hkd_site_key key;
    site_rec *r;
} keyed_rec;

static int keyed_cmp(const void *a, const void *b)
{
    return hkd_site_key_cmp(&((const keyed_rec *)a)->key, &((const keyed_rec *)b)->key);
}

/* The choice's working arrays, kept from one choice to the next: where
 * records come and go the choice runs every few intervals, and arrays
 * made afresh each time were pages faulted in afresh each time. */
static struct {
    hkd_pick *cand;
    keyed_rec *v;
    site_rec **kept;
    size_t cap_cand, cap_v, cap_kept;
} work;

void core_table_free(void)
{
    free(work.cand);
    free(work.v);
    free(work.kept);
    memset(&work, 0, sizeof work);
}

/* v holds `fresh` sorted records, room for the kept ones too: kept[],
 * indexed by entry (NULL where that entry's record left), merged in by
 * key, from the back so that nothing is overwritten before it is read. */
static void merge_kept(keyed_rec *v, size_t fresh, site_rec *const *kept, uint32_t n_kept)
{
    size_t total = fresh;
    for (uint32_t i = 0; i < n_kept; i++)
        total += kept[i] != NULL;
    size_t out = total, a = fresh;
    for (uint32_t i = n_kept; i-- > 0;) {
        if (!kept[i])
            continue;
        keyed_rec k = { cold_of(kept[i])->key, kept[i] };
        while (a > 0 && keyed_cmp(&v[a - 1], &k) > 0)
            v[--out] = v[--a];
        v[--out] = k;
    }
}

/* What a site's claim to a place in a full table is: pinned first (an
 * operator chose its arm), then bytes over the last minute or so, then
 * allocations. */
static uint64_t table_weight(const site_rec *r)
{
    if (r->learn.pinned >= 0)
        return UINT64_MAX;
    uint32_t heat = 0;
    if (r->heat > 0.0f)
        memcpy(&heat, &r->heat, sizeof heat);   /* a positive float orders as its bits */
    return (uint64_t)heat << 32 | (r->allocs < UINT32_MAX ? r->allocs : UINT32_MAX);
}

/* The shared table: which sites it holds, and their entries, sorted by
 * (domain, module_hash, offset).  All of them while they fit; else the
 * ones that matter most (hkd_pick_fair: every domain's heaviest before any
 * domain's next).  A site left out runs its client's defaults (the default
 * arm), so it does not learn until it is back; one coming back starts a
 * fresh pull.  Default-arm sites are not left out to make room: which arm
 * a site runs moves as it explores, and the choice is by weight alone.
 * Each entry carries its domain: a client looks up (its euid, module_hash,
 * offset), so every user's sites have their place. */
static int select_and_fill(void)
{
    /* One more than needed, so that none is NULL (qsort, memset). */
    if (hkd_grow((void **)&work.cand, &work.cap_cand, g.n_idx + 1, sizeof *work.cand) < 0 ||
        hkd_grow((void **)&work.v, &work.cap_v, (g.n_idx < HKSHM_SITE_CAP ? g.n_idx : HKSHM_SITE_CAP) + 1,
                 sizeof *work.v) < 0 ||
        hkd_grow((void **)&work.kept, &work.cap_kept, g.n_entries + 1, sizeof *work.kept) < 0)
        return -ENOMEM;
    hkd_pick *cand = work.cand;
    keyed_rec *v = work.v;
    site_rec **kept = work.kept;
    size_t n = 0;
    for (uint32_t i = 0; i < g.n_idx; i++) {
        site_rec *r = rec_at(i);
        if (r->free)
            continue;
        cand[n++] = (hkd_pick){ .weight = table_weight(r), .domain = r->dom, .id = i };
    }
    int64_t m = hkd_pick_fair(cand, n, HKSHM_SITE_CAP, HKD_DOMAINS_MAX);
    if (m < 0)
        return (int)m;
    g.over_cap = (size_t)m < n;
    for (size_t j = (size_t)m; j < n; j++) {
        site_rec *r = rec_at(cand[j].id);
        if (!r->excluded || r->in_table) {
            wbegin(r);
            r->excluded = 1;
            r->in_table = 0;
            wend(r);
        }
    }
    /* Those already in the table keep the order the last choice sorted
     * them in; only the newcomers are sorted, then merged in. */
    memset(kept, 0, g.n_entries * sizeof *kept);
    size_t fresh = 0;
    for (int64_t j = 0; j < m; j++) {
        site_rec *r = rec_at(cand[j].id);
        if (r->excluded) {
            /* Back in the table: what it accumulated under the defaults is not its arm's. */
            wbegin(r);
            r->excluded = 0;
            hkd_learn_resume(&r->learn, g.cfg.learn.settle_intervals);
            wend(r);
        }
        if (r->in_table)
            kept[r->pos] = r;
        else
            v[fresh++] = (keyed_rec){ cold_of(r)->key, r };
    }
    qsort(v, fresh, sizeof *v, keyed_cmp);
    merge_kept(v, fresh, kept, g.n_entries);
    for (int64_t j = 0; j < m; j++) {
        site_rec *r = v[j].r;
        hkshm_site_policy *e = &g.entries[j];
        memset(e, 0, sizeof *e);
        e->domain = v[j].key.domain;
        e->module_hash = v[j].key.module_hash;
        e->offset = v[j].key.offset;
        entry_arm(e, rec_arm(r));
        r->pos = (uint16_t)j;
        r->in_table = 1;
    }
    g.n_entries = (uint32_t)m;
    g.set_changed = 0;
    g.selected_at = atomic_load(&g.intervals);
    return 0;
}

int core_publish(int force)
{
    if (!g.cfg.learning) {
        g.dirty = 0;
        return 0;
    }
    uint64_t since = atomic_load(&g.intervals) - g.selected_at;
    if (force || (g.set_changed && (!g.over_cap || since >= SELECT_MIN_GAP)) ||
        (g.over_cap && since >= SELECT_EVERY)) {
        int rc = select_and_fill();
        if (rc < 0) {
            hkd_log(HKD_LOG_WARNING, "cannot choose the published sites: %s", strerror(-rc));
            return rc;
        }
        g.dirty = 1;
    }
    if (!g.dirty)
        return 0;
    g.n_binaries = core_binaries_fill(g.binaries, HKSHM_BINARY_CAP);
    hkd_publication pub = { .sites = g.entries, .n_sites = g.n_entries, .binaries = g.binaries,
                            .n_binaries = g.n_binaries };
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

