/* The slot table is an array; uids find their slot through a small
 * open-addressing map rebuilt whenever a slot is given back (rare). */
#include "domains.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define MAP_SLOTS (2 * HKD_DOMAINS_MAX)  /* power of two */
#define LOG_EVERY_MS 60000u

enum refusal { REFUSED_NONE, REFUSED_RATE, REFUSED_USER_CAP, REFUSED_POOL, REFUSED_ALL };

typedef struct domain {
    int      used, trusted;
    uint32_t uid;
    uint32_t sites;
    uint32_t new_now;                /* sites added this interval */
    uint32_t waiting;                /* refused this interval for want of room */
    int      waiting_reason;         /* the last such refusal's */
    uint64_t refused, evicted;
    uint64_t refused_unlogged;
    uint64_t last_log_ms;
    int      last_reason;
    int      bands_touched;
    hkd_bands *bands;
} domain;

struct hkd_domains {
    hkd_domain_limits lim;
    domain dom[HKD_DOMAINS_MAX];
    int16_t map[MAP_SLOTS];          /* slot, or -1 */
    uint32_t live, untrusted;
    int16_t touched[HKD_DOMAINS_MAX];
    uint32_t n_touched;
    uint64_t no_slot_unlogged, no_slot_last_log_ms;
    uint32_t no_slot_uid;
    /* what readers see, renewed each interval */
    pthread_mutex_t view_lock;
    hkd_domain_info view[HKD_DOMAINS_MAX];
    uint32_t n_view;
    uint64_t refused_total, evicted_total;
};

static uint32_t map_home(uint32_t uid)
{
    return (uid * 0x9E3779B1u) >> 21 & (MAP_SLOTS - 1);
}

static void map_rebuild(hkd_domains *d)
{
    memset(d->map, 0xff, sizeof d->map);
    for (int s = 0; s < HKD_DOMAINS_MAX; s++) {
        if (!d->dom[s].used)
            continue;
        uint32_t h = map_home(d->dom[s].uid);
        while (d->map[h] >= 0)
            h = (h + 1) & (MAP_SLOTS - 1);
        d->map[h] = (int16_t)s;
    }
}

static int take_slot(hkd_domains *d, uint32_t uid, int trusted)
{
    for (int s = 0; s < HKD_DOMAINS_MAX; s++) {
        if (d->dom[s].used)
            continue;
        d->dom[s] = (domain){ .used = 1, .trusted = trusted, .uid = uid };
        map_rebuild(d);
        return s;
    }
    return -ENOSPC;
}

hkd_domains *hkd_domains_new(const hkd_domain_limits *lim)
{
    hkd_domains *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->lim = *lim;
    pthread_mutex_init(&d->view_lock, NULL);
    map_rebuild(d);
    /* The trusted domains always have their slots. */
    take_slot(d, 0, 1);
    if (lim->self_uid != 0)
        take_slot(d, lim->self_uid, 1);
    return d;
}

void hkd_domains_free(hkd_domains *d)
{
    if (!d)
        return;
    for (int s = 0; s < HKD_DOMAINS_MAX; s++)
        hkd_bands_free(d->dom[s].bands);
    pthread_mutex_destroy(&d->view_lock);
    free(d);
}

int hkd_domains_find(const hkd_domains *d, uint32_t uid)
{
    for (uint32_t h = map_home(uid);; h = (h + 1) & (MAP_SLOTS - 1)) {
        int s = d->map[h];
        if (s < 0 || d->dom[s].uid == uid)
            return s;
    }
}

int hkd_domains_slot(hkd_domains *d, uint32_t uid)
{
    int s = hkd_domains_find(d, uid);
    if (s >= 0)
        return s;
    s = take_slot(d, uid, uid == 0 || uid == d->lim.self_uid);
    if (s < 0) {
        d->no_slot_unlogged++;
        d->no_slot_uid = uid;
        __atomic_fetch_add(&d->refused_total, 1, __ATOMIC_RELAXED);
    }
    return s;
}

int hkd_domains_trusted(const hkd_domains *d, int slot)
{
    return d->dom[slot].trusted;
}

/* n of m's new sites refused by report, for reason. */
static void count_refused(hkd_domains *d, domain *m, int reason, uint64_t n)
{
    m->refused += n;
    m->refused_unlogged += n;
    m->last_reason = reason;
    __atomic_fetch_add(&d->refused_total, n, __ATOMIC_RELAXED);
    if (reason != REFUSED_RATE) {
        m->waiting += (uint32_t)n;
        m->waiting_reason = reason;
    }
}

static int refuse(hkd_domains *d, domain *m, int reason, int by_report)
{
    if (by_report)
        count_refused(d, m, reason, 1);
    return reason == REFUSED_RATE ? -EAGAIN : -EDQUOT;
}

int hkd_domains_admit(hkd_domains *d, int slot, int by_report)
{
    domain *m = &d->dom[slot];
    if (!m->trusted) {
        if (by_report && m->new_now >= d->lim.new_per_interval)
            return refuse(d, m, REFUSED_RATE, by_report);
        if (m->sites >= d->lim.max_sites_per_user)
            return refuse(d, m, REFUSED_USER_CAP, by_report);
        if (d->untrusted >= d->lim.untrusted_max)
            return refuse(d, m, REFUSED_POOL, by_report);
    }
    if (d->live >= d->lim.max_sites)
        return refuse(d, m, REFUSED_ALL, by_report);
    m->sites++;
    m->new_now += by_report;
    d->live++;
    d->untrusted += !m->trusted;
    return 0;
}

void hkd_domains_refused_again(hkd_domains *d, int slot, uint64_t n)
{
    domain *m = &d->dom[slot];
    if (n && m->last_reason != REFUSED_NONE)
        count_refused(d, m, m->last_reason, n);
}

void hkd_domains_unadmit(hkd_domains *d, int slot, int by_report)
{
    domain *m = &d->dom[slot];
    m->sites--;
    m->new_now -= by_report;
    d->live--;
    d->untrusted -= !m->trusted;
}

void hkd_domains_evicted(hkd_domains *d, int slot)
{
    domain *m = &d->dom[slot];
    m->sites--;
    m->evicted++;
    d->live--;
    d->untrusted -= !m->trusted;
    __atomic_fetch_add(&d->evicted_total, 1, __ATOMIC_RELAXED);
}

/* The slot holding most sites (of the untrusted users only, or of all). */
static int biggest(const hkd_domains *d, int untrusted_only)
{
    int best = -1;
    for (int s = 0; s < HKD_DOMAINS_MAX; s++) {
        const domain *m = &d->dom[s];
        if (m->used && !(untrusted_only && m->trusted) && (best < 0 || m->sites > d->dom[best].sites))
            best = s;
    }
    return best;
}

int hkd_domains_room_wanted(const hkd_domains *d, uint32_t *want)
{
    int any = 0;
    memset(want, 0, HKD_DOMAINS_MAX * sizeof *want);
    for (int s = 0; s < HKD_DOMAINS_MAX; s++) {
        const domain *m = &d->dom[s];
        if (!m->used || !m->waiting)
            continue;
        int from = m->waiting_reason == REFUSED_USER_CAP ? s : biggest(d, m->waiting_reason == REFUSED_POOL);
        if (from < 0)
            continue;
        /* No more than it could add in one interval anyway. */
        uint32_t n = m->trusted || m->waiting < d->lim.new_per_interval ? m->waiting : d->lim.new_per_interval;
        want[from] = want[from] + n < d->dom[from].sites ? want[from] + n : d->dom[from].sites;
        any = 1;
    }
    return any;
}

uint32_t hkd_domains_sites(const hkd_domains *d, int slot)
{
    return d->dom[slot].sites;
}

uint32_t hkd_domains_live(const hkd_domains *d)
{
    return d->live;
}

hkd_bands *hkd_domains_bands(hkd_domains *d, int slot)
{
    domain *m = &d->dom[slot];
    if (!m->bands && !(m->bands = hkd_bands_new()))
        return NULL;
    if (!m->bands_touched) {
        m->bands_touched = 1;
        d->touched[d->n_touched++] = (int16_t)slot;
    }
    return m->bands;
}

void hkd_domains_bands_end_interval(hkd_domains *d, const hkd_learn_cfg *cfg)
{
    for (uint32_t i = 0; i < d->n_touched; i++) {
        domain *m = &d->dom[d->touched[i]];
        hkd_bands_end_interval(m->bands, cfg);
        m->bands_touched = 0;
    }
    d->n_touched = 0;
}

static const char *reason_text(const hkd_domains *d, int reason, char *buf, size_t cap)
{
    switch (reason) {
    case REFUSED_RATE:
        snprintf(buf, cap, "more than %u new sites in one interval", d->lim.new_per_interval);
        break;
    case REFUSED_USER_CAP:
        snprintf(buf, cap, "at its cap of %u sites (--max-sites-per-user)", d->lim.max_sites_per_user);
        break;
    case REFUSED_POOL:
        snprintf(buf, cap, "users other than root and the daemon's hold all %u sites they may", d->lim.untrusted_max);
        break;
    default:
        snprintf(buf, cap, "the daemon holds all %u sites it may", d->lim.max_sites);
    }
    return buf;
}

static void log_refusals(hkd_domains *d, domain *m, uint64_t now_ms)
{
    if (!m->refused_unlogged || (m->last_log_ms && now_ms - m->last_log_ms < LOG_EVERY_MS))
        return;
    char why[128];
    hkd_log(HKD_LOG_WARNING, "refused %llu new sites of uid %u%s: %s; it has %u sites",
            (unsigned long long)m->refused_unlogged, m->uid, m->last_log_ms ? " in the last minute" : "",
            reason_text(d, m->last_reason, why, sizeof why), m->sites);
    m->refused_unlogged = 0;
    m->last_log_ms = now_ms;
}

void hkd_domains_end_interval(hkd_domains *d, uint64_t now_ms)
{
    int freed = 0;
    pthread_mutex_lock(&d->view_lock);
    d->n_view = 0;
    for (int s = 0; s < HKD_DOMAINS_MAX; s++) {
        domain *m = &d->dom[s];
        if (!m->used)
            continue;
        log_refusals(d, m, now_ms);
        m->new_now = 0;
        m->waiting = 0;
        /* A user with no sites left gives its slot back, once what it was
         * refused has been said (its band learners relearn quickly). */
        if (!m->trusted && !m->sites && !m->refused_unlogged) {
            hkd_bands_free(m->bands);
            memset(m, 0, sizeof *m);
            freed = 1;
            continue;
        }
        d->view[d->n_view++] = (hkd_domain_info){
            .domain = m->uid, .sites = m->sites, .band_learners = m->bands ? hkd_bands_count(m->bands) : 0,
            .trusted = m->trusted, .refused = m->refused, .evicted = m->evicted };
    }
    pthread_mutex_unlock(&d->view_lock);
    if (freed)
        map_rebuild(d);
    if (d->no_slot_unlogged && (!d->no_slot_last_log_ms || now_ms - d->no_slot_last_log_ms >= LOG_EVERY_MS)) {
        hkd_log(HKD_LOG_WARNING, "refused %llu new sites of users without room (last uid %u): %d users have sites",
                (unsigned long long)d->no_slot_unlogged, d->no_slot_uid, HKD_DOMAINS_MAX);
        d->no_slot_unlogged = 0;
        d->no_slot_last_log_ms = now_ms;
    }
}

int hkd_domains_for_each(hkd_domains *d, int (*fn)(const hkd_domain_info *, void *), void *arg)
{
    hkd_domain_info *v = malloc(sizeof d->view);
    if (!v)
        return -ENOMEM;
    pthread_mutex_lock(&d->view_lock);
    uint32_t n = d->n_view;
    memcpy(v, d->view, n * sizeof *v);
    pthread_mutex_unlock(&d->view_lock);
    int rc = 0;
    for (uint32_t i = 0; i < n && rc == 0; i++)
        rc = fn(&v[i], arg);
    free(v);
    return rc;
}

void hkd_domains_totals(hkd_domains *d, uint32_t *domains, uint64_t *refused, uint64_t *evicted)
{
    pthread_mutex_lock(&d->view_lock);
    *domains = d->n_view;
    pthread_mutex_unlock(&d->view_lock);
    *refused = __atomic_load_n(&d->refused_total, __ATOMIC_RELAXED);
    *evicted = __atomic_load_n(&d->evicted_total, __ATOMIC_RELAXED);
}
