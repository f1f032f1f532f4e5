/* The other hosts of the fleet (fleet_peers.h): which shards they hold,
 * what each says, and their sums per site for the core.
 *
 * What other hosts wrote is kept per key (host, shard) with the revision
 * it was read at, decoded and checked (fleet_codec.h); a key is read again
 * only when its revision moved, and a key that is gone takes its sites out
 * of the sums.  Bounds: at most FLEET_KEYS_MAX keys and FLEET_SITES_MAX
 * sites from other hosts are kept; past them the rest is left out (said
 * once), so a fleet larger than one daemon should hold cannot bloat it. */
#include "fleet_peers.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core_api.h"
#include "core_fleet.h"
#include "fleet_codec.h"
#include "fleet_control.h"
#include "fleet_controls.h"
#include "log.h"
#include "site_key.h"

#define FLEET_KEYS_MAX 8192u               /* looked up by a walk of the list: a few ms at the cap */
#define FLEET_SITES_MAX (1u << 19)
#define PAGE_KEYS 1000u                    /* keys per keys-only page */
#define PAGE_VALUES 8u                     /* values per page: 8 MiB at most */

typedef struct remote_shard {
    char host[HKD_FLEET_ID_MAX + 1];
    uint32_t shard;
    int64_t mod_revision;
    uint64_t written_unix;
    hkd_fleet_site *sites;                 /* NULL: none, or the value did not check */
    uint32_t n;
    int rejected, seen;
} remote_shard;

/* The fleet thread's, but for the status under lock. */
static struct {
    hkd_etcd *etcd;
    char prefix[HKD_FLEET_KEY_MAX], own[HKD_FLEET_ID_MAX + 1];
    remote_shard *remote;
    size_t n_remote, cap_remote;
    size_t n_remote_sites;                 /* their sites, together */
    int64_t read_revision;                 /* values up to here are in remote */
    hkd_fleet_sum *sums;                   /* the other hosts' sums, as last handed to the core */
    size_t n_sums;
    uint64_t core_sites;                   /* the core's records then (sites and evictions) */
    int summed;                            /* sums were made at least once */
    int told_keys_cap, told_sites_cap;
    pthread_mutex_t lock;                  /* the status below */
    hkd_fleet_host *hosts;
    size_t n_hosts;
    uint32_t sites_shared, sites_disagree;
    uint32_t n_disagree;
    hkd_fleet_disagreement disagree[HKD_FLEET_DISAGREE_TOP];
    uint64_t values_rejected;
    /* this host's sites, by key: the arm it runs and its pulls */
    hkd_fleet_site *own_sites;
    size_t n_own;
} pr = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* host and shard of a key under the prefix: 0, or -1 for a key that is
 * not a shard (skipped). */
static int parse_key(const uint8_t *key, size_t len, char host[HKD_FLEET_ID_MAX + 1], uint32_t *shard)
{
    size_t plen = strlen(pr.prefix);
    if (len <= plen || len >= HKD_FLEET_KEY_MAX || memcmp(key, pr.prefix, plen) != 0)
        return -1;
    char k[HKD_FLEET_KEY_MAX];
    memcpy(k, key + plen, len - plen);
    k[len - plen] = 0;
    char *slash = strchr(k, '/');
    if (!slash || strncmp(slash, "/shard/", 7) != 0)
        return -1;
    *slash = 0;
    const char *num = slash + 7;
    if (!hkd_fleet_valid_id(k) || strlen(num) != 4 || strspn(num, "0123456789") != 4)
        return -1;
    memcpy(host, k, strlen(k) + 1);   /* valid_id: at most HKD_FLEET_ID_MAX */
    *shard = (uint32_t)atoi(num);
    return 0;
}

static remote_shard *find_remote(const char *host, uint32_t shard)
{
    for (size_t i = 0; i < pr.n_remote; i++)
        if (pr.remote[i].shard == shard && strcmp(pr.remote[i].host, host) == 0)
            return &pr.remote[i];
    return NULL;
}

/* A shard's sites, set or cleared, with the running total kept. */
static void set_sites(remote_shard *r, hkd_fleet_site *v, uint32_t n)
{
    pr.n_remote_sites -= r->n;
    free(r->sites);
    r->sites = v;
    r->n = n;
    pr.n_remote_sites += n;
}

static remote_shard *add_remote(const char *host, uint32_t shard)
{
    if (pr.n_remote >= FLEET_KEYS_MAX) {
        if (!pr.told_keys_cap++)
            hkd_log(HKD_LOG_WARNING, "fleet: more than %u keys from other hosts; the rest are left out", FLEET_KEYS_MAX);
        return NULL;
    }
    if (pr.n_remote == pr.cap_remote) {
        size_t cap = pr.cap_remote ? pr.cap_remote * 2 : 64;
        remote_shard *r = realloc(pr.remote, cap * sizeof *r);
        if (!r)
            return NULL;
        pr.remote = r;
        pr.cap_remote = cap;
    }
    remote_shard *r = &pr.remote[pr.n_remote++];
    memset(r, 0, sizeof *r);
    snprintf(r->host, sizeof r->host, "%s", host);
    r->shard = shard;
    return r;
}

/* 1 when kv's key is a shard of another host: host and shard set, and *r
 * its entry (found; made when add; NULL when neither). */
static int other_shard(const hkd_etcd_kv *kv, int add, char host[HKD_FLEET_ID_MAX + 1], uint32_t *shard,
                       remote_shard **r)
{
    if (parse_key(kv->key, kv->key_len, host, shard) < 0 || strcmp(host, pr.own) == 0)
        return 0;
    *r = find_remote(host, *shard);
    if (!*r && add)
        *r = add_remote(host, *shard);
    return 1;
}

/* A value read: decoded and checked, or skipped with one line. */
static int take_value(const hkd_etcd_kv *kv, void *arg)
{
    int *changed = arg;
    char host[HKD_FLEET_ID_MAX + 1];
    uint32_t shard;
    remote_shard *r;
    if (!other_shard(kv, 1, host, &shard, &r) || !r || r->mod_revision == kv->mod_revision)
        return 0;
    set_sites(r, NULL, 0);
    r->rejected = 0;
    r->mod_revision = kv->mod_revision;
    r->seen = 1;
    *changed = 1;
    hkd_fleet_header h;
    hkd_fleet_site *v = NULL;
    char why[128];
    int rc = hkd_fleet_decode(kv->value, kv->value_len, &h, &v, why, sizeof why);
    if (rc == 0 && h.shard != shard) {
        snprintf(why, sizeof why, "it says it is shard %u", h.shard);
        free(v);
        rc = -EBADMSG;
    }
    if (rc == 0 && pr.n_remote_sites + h.n_sites > FLEET_SITES_MAX) {
        if (!pr.told_sites_cap++)
            hkd_log(HKD_LOG_WARNING, "fleet: more than %u sites from other hosts; the rest are left out",
                    FLEET_SITES_MAX);
        free(v);
        return 0;
    }
    if (rc == -ENOMEM)
        return rc;
    if (rc < 0) {
        r->rejected = 1;
        pthread_mutex_lock(&pr.lock);
        pr.values_rejected++;
        pthread_mutex_unlock(&pr.lock);
        hkd_log(HKD_LOG_WARNING, "fleet: skipped shard %u of host %s: %s", shard, host, why);
        return 0;
    }
    set_sites(r, v, h.n_sites);
    r->written_unix = h.written_unix;
    return 0;
}

static int mark_seen(const hkd_etcd_kv *kv, void *arg)
{
    int *changed = arg;
    char host[HKD_FLEET_ID_MAX + 1];
    uint32_t shard;
    remote_shard *r;
    if (!other_shard(kv, 0, host, &shard, &r))
        return 0;
    if (r && r->mod_revision == kv->mod_revision)
        r->seen = 1;
    else
        *changed = 1;                  /* new or rewritten: read below */
    return 0;
}

/* The last key of a page, so the next page starts after it. */
typedef struct page_walk {
    int (*fn)(const hkd_etcd_kv *, void *);
    void *arg;
    uint8_t *last;
    size_t last_len, last_cap;
} page_walk;

static int page_kv(const hkd_etcd_kv *kv, void *arg)
{
    page_walk *w = arg;
    if (kv->key_len + 1 > w->last_cap) {
        uint8_t *b = realloc(w->last, kv->key_len + 1);
        if (!b)
            return -ENOMEM;
        w->last = b;
        w->last_cap = kv->key_len + 1;
    }
    memcpy(w->last, kv->key, kv->key_len);
    w->last_len = kv->key_len;
    return w->fn(kv, w->arg);
}

/* Walks every key under the prefix, a page at a time, all at one
 * revision: *rev's, or the latest when it is 0 (and *rev is set to it). */
static int walk(const hkd_etcd_range *opt, int (*fn)(const hkd_etcd_kv *, void *), void *arg, int64_t *rev)
{
    uint8_t end[HKD_FLEET_KEY_MAX];
    size_t plen = strlen(pr.prefix);
    size_t elen = hkd_etcd_prefix_end(pr.prefix, plen, end);
    hkd_etcd_range r = *opt;
    r.revision = *rev;
    page_walk w = { .fn = fn, .arg = arg };
    const void *from = pr.prefix;
    size_t flen = plen;
    int rc = 0;
    for (;;) {
        int more = 0;
        int64_t got = 0;
        w.last_len = 0;
        rc = hkd_etcd_get(pr.etcd, from, flen, end, elen, &r, page_kv, &w, &got, &more);
        if (rc < 0)
            break;
        if (!r.revision)
            r.revision = got;
        if (!more || !w.last_len)
            break;
        w.last[w.last_len] = 0;        /* the next key after it */
        from = w.last;
        flen = w.last_len + 1;
    }
    free(w.last);
    *rev = r.revision;
    return rc;
}

static void drop_remote(size_t i)
{
    set_sites(&pr.remote[i], NULL, 0);
    pr.remote[i] = pr.remote[--pr.n_remote];
}

/* Reads which keys other hosts hold now and the values that changed;
 * *changed when the sums must be made again. */
static int read_others(int *changed)
{
    for (size_t i = 0; i < pr.n_remote; i++)
        pr.remote[i].seen = 0;
    int64_t rev = 0;
    int need = 0;
    hkd_etcd_range keys = { .keys_only = 1, .limit = PAGE_KEYS };
    int rc = walk(&keys, mark_seen, &need, &rev);
    if (rc == 0 && need) {
        hkd_etcd_range values = { .min_mod_revision = pr.read_revision + 1, .limit = PAGE_VALUES };
        rc = walk(&values, take_value, changed, &rev);
    }
    if (rc < 0)
        return rc;
    for (size_t i = pr.n_remote; i-- > 0;)
        if (!pr.remote[i].seen) {
            drop_remote(i);            /* its lease expired, or it shrank */
            *changed = 1;
        }
    pr.read_revision = rev;
    return 0;
}

/* ---- the sums ---- */

typedef struct contrib {
    const hkd_fleet_site *s;
    const char *host;
} contrib;

static int by_key_host(const void *a, const void *b)
{
    const contrib *x = a, *y = b;
    int c = hkd_site_key_cmp(&x->s->key, &y->s->key);
    return c ? c : strcmp(x->host, y->host);
}

static int by_host(const void *a, const void *b)
{
    return strcmp(((const remote_shard *)a)->host, ((const remote_shard *)b)->host);
}

static uint64_t pulls_of(const hkd_fleet_site *s)
{
    uint64_t n = 0;
    for (int a = 0; a < HKD_N_ARMS; a++)
        n += s->pulls[a];
    return n;
}

/* How many records the core has made and evicted: when it moves, sites
 * of this host may have come that the fleet knows. */
static uint64_t core_sites(void)
{
    hkd_status st;
    return hkd_get_status(&st) == 0 ? (uint64_t)st.sites << 32 ^ st.sites_evicted : 0;
}

static int apply_sums(void)
{
    int rc = hkd_fleet_apply(pr.sums, pr.n_sums);
    pr.core_sites = core_sites();
    return rc;
}

static int by_site_key(const void *a, const void *b)
{
    return hkd_site_key_cmp(&((const hkd_fleet_site *)a)->key, &((const hkd_fleet_site *)b)->key);
}

int hkd_fleet_peers_own(const hkd_fleet_site *v, size_t n)
{
    hkd_fleet_site *c = malloc((n ? n : 1) * sizeof *c);
    if (!c)
        return -ENOMEM;
    memcpy(c, v, n * sizeof *c);
    qsort(c, n, sizeof *c, by_site_key);
    /* Only a change of arm (or of the sites) changes who disagrees. */
    int moved = n != pr.n_own;
    for (size_t i = 0; i < n && !moved; i++)
        moved = !hkd_site_key_eq(&c[i].key, &pr.own_sites[i].key) || c[i].arm != pr.own_sites[i].arm;
    free(pr.own_sites);
    pr.own_sites = c;
    pr.n_own = n;
    if (moved)
        pr.summed = 0;
    return 0;
}

static const hkd_fleet_site *own_site(const hkd_site_key *k)
{
    hkd_fleet_site x = { .key = *k };
    return pr.n_own ? bsearch(&x, pr.own_sites, pr.n_own, sizeof x, by_site_key) : NULL;
}

/* Keeps the HKD_FLEET_DISAGREE_TOP sites with the most pulls, most first:
 * where d goes (NULL: not among them), the ones after it moved down. */
static hkd_fleet_disagreement *top_slot(hkd_fleet_disagreement *top, uint32_t *n, uint64_t pulls)
{
    uint32_t at = *n;
    while (at > 0 && top[at - 1].pulls < pulls)
        at--;
    if (at >= HKD_FLEET_DISAGREE_TOP)
        return NULL;
    uint32_t last = *n < HKD_FLEET_DISAGREE_TOP ? *n : HKD_FLEET_DISAGREE_TOP - 1;
    memmove(&top[at + 1], &top[at], (last - at) * sizeof *top);
    *n = last + 1;
    return &top[at];
}

static void host_arm(hkd_fleet_disagreement *d, const char *id, const hkd_fleet_site *s)
{
    d->hosts++;
    if (d->n == HKD_FLEET_DISAGREE_HOSTS)
        return;
    snprintf(d->host[d->n].id, sizeof d->host[d->n].id, "%s", id);
    d->host[d->n].arm = s->arm;
    d->host[d->n++].pulls = pulls_of(s);
}

/* Whether the hosts of the site c[i..end) (and this host) run different
 * arms; listed among the top ones when so. */
static int disagreement(const contrib *c, size_t i, size_t end, hkd_fleet_disagreement *top, uint32_t *n_top)
{
    const hkd_fleet_site *own = own_site(&c[i].s->key);
    int arm = own ? own->arm : c[i].s->arm, differ = 0;
    uint64_t pulls = own ? pulls_of(own) : 0;
    for (size_t j = i; j < end; j++) {
        if (j > i && strcmp(c[j].host, c[j - 1].host) == 0)
            continue;                  /* a host that sent a site twice counts once */
        differ |= c[j].s->arm != arm;
        pulls += pulls_of(c[j].s);
    }
    hkd_fleet_disagreement *d = differ ? top_slot(top, n_top, pulls) : NULL;
    if (!d)
        return differ;
    memset(d, 0, sizeof *d);
    d->key = c[i].s->key;
    d->pulls = pulls;
    if (own)
        host_arm(d, pr.own, own);
    for (size_t j = i; j < end; j++)
        if (j == i || strcmp(c[j].host, c[j - 1].host) != 0)
            host_arm(d, c[j].host, c[j].s);
    return 1;
}

/* Adds the other hosts' sites up, per site, each host once, and hands the
 * sums to the core; the hosts' list and the sites where the hosts
 * disagree for the status. */
static int aggregate(void)
{
    size_t n = pr.n_remote_sites;
    contrib *c = malloc((n ? n : 1) * sizeof *c);
    hkd_fleet_sum *sum = malloc((n ? n : 1) * sizeof *sum);
    hkd_fleet_host *hosts = calloc(pr.n_remote ? pr.n_remote : 1, sizeof *hosts);
    if (!c || !sum || !hosts) {
        free(c), free(sum), free(hosts);
        return -ENOMEM;
    }
    qsort(pr.remote, pr.n_remote, sizeof *pr.remote, by_host);
    size_t k = 0, n_hosts = 0;
    for (size_t i = 0; i < pr.n_remote; i++) {
        const remote_shard *r = &pr.remote[i];
        if (!n_hosts || strcmp(hosts[n_hosts - 1].id, r->host) != 0)
            snprintf(hosts[n_hosts++].id, sizeof hosts->id, "%s", r->host);
        hkd_fleet_host *h = &hosts[n_hosts - 1];
        h->shards++;
        h->rejected += (uint32_t)r->rejected;
        h->sites += r->n;
        h->written_unix = r->written_unix > h->written_unix ? r->written_unix : h->written_unix;
        /* What a host wrote before a fleet reset of a site counts no more. */
        for (uint32_t j = 0; j < r->n; j++)
            if (r->mod_revision >= hkd_fleet_controls_reset_revision(&r->sites[j].key))
                c[k++] = (contrib){ &r->sites[j], r->host };
    }
    qsort(c, k, sizeof *c, by_key_host);
    size_t m = 0;
    uint32_t disagree = 0, n_top = 0;
    hkd_fleet_disagreement *top = calloc(HKD_FLEET_DISAGREE_TOP, sizeof *top);
    if (!top) {
        free(c), free(sum), free(hosts);
        return -ENOMEM;
    }
    for (size_t i = 0; i < k;) {
        hkd_fleet_sum *s = &sum[m++];
        memset(s, 0, sizeof *s);
        s->key = c[i].s->key;
        uint64_t most = 0;
        size_t j = i;
        for (; j < k && hkd_site_key_eq(&c[j].s->key, &s->key); j++) {
            if (j > i && strcmp(c[j].host, c[j - 1].host) == 0)
                continue;              /* a host that sent a site twice counts once */
            const hkd_fleet_site *x = c[j].s;
            s->hosts++;
            for (int a = 0; a < HKD_N_ARMS; a++) {
                s->prior.pulls[a] += x->pulls[a];
                s->prior.reward_sum[a] += x->reward_sum[a];
            }
            if (!s->sizes_known && x->sizes_known) {
                s->sizes_known = 1;
                s->size_lo = x->size_lo;
                s->size_hi = x->size_hi;
            }
            if (x->ref_cost > 0 && pulls_of(x) > most) {
                most = pulls_of(x);
                s->ref_cost = x->ref_cost;
            }
        }
        disagree += (uint32_t)disagreement(c, i, j, top, &n_top);
        i = j;
    }
    free(pr.sums);
    pr.sums = sum;
    pr.n_sums = m;
    int rc = apply_sums();
    pthread_mutex_lock(&pr.lock);
    free(pr.hosts);
    pr.hosts = hosts;
    pr.n_hosts = n_hosts;
    pr.sites_shared = (uint32_t)m;
    pr.sites_disagree = disagree;
    pr.n_disagree = n_top;
    memcpy(pr.disagree, top, n_top * sizeof *top);
    pthread_mutex_unlock(&pr.lock);
    free(c), free(top);
    return rc < 0 ? rc : 0;
}

int hkd_fleet_peers_init(hkd_etcd *e, const char *prefix, const char *own_id)
{
    pr.etcd = e;
    snprintf(pr.prefix, sizeof pr.prefix, "%s", prefix);
    snprintf(pr.own, sizeof pr.own, "%s", own_id);
    return 0;
}

int hkd_fleet_peers_sync(void)
{
    int changed = 0;
    int rc = read_others(&changed);
    if (rc == 0 && (changed || !pr.summed)) {
        rc = aggregate();
        pr.summed = rc == 0;
    } else if (rc == 0 && pr.n_sums && core_sites() != pr.core_sites) {
        rc = apply_sums();             /* records came: those the fleet knows take its prior */
    }
    return rc < 0 ? rc : 0;
}

int hkd_fleet_peers_status(hkd_fleet_status *st, hkd_fleet_host **hosts, size_t *n)
{
    int rc = 0;
    pthread_mutex_lock(&pr.lock);
    st->hosts = (uint32_t)pr.n_hosts;
    st->sites_shared = pr.sites_shared;
    st->sites_disagree = pr.sites_disagree;
    st->n_disagree = pr.n_disagree;
    memcpy(st->disagree, pr.disagree, pr.n_disagree * sizeof *pr.disagree);
    st->values_rejected = pr.values_rejected;
    if (hosts) {
        *n = pr.n_hosts;
        *hosts = malloc((pr.n_hosts ? pr.n_hosts : 1) * sizeof **hosts);
        if (*hosts)
            memcpy(*hosts, pr.hosts, pr.n_hosts * sizeof **hosts);
        else
            rc = -ENOMEM;
    }
    pthread_mutex_unlock(&pr.lock);
    return rc;
}

void hkd_fleet_peers_resum(void)
{
    pr.summed = 0;
}

void hkd_fleet_peers_free(void)
{
    for (size_t i = 0; i < pr.n_remote; i++)
        free(pr.remote[i].sites);
    free(pr.remote);
    free(pr.sums);
    free(pr.own_sites);
    pr.own_sites = NULL;
    pr.n_own = 0;
    pthread_mutex_lock(&pr.lock);
    pr.n_disagree = 0;
    free(pr.hosts);
    pr.hosts = NULL;
    pr.n_hosts = 0;
    pthread_mutex_unlock(&pr.lock);
    pr.remote = NULL;
    pr.sums = NULL;
    pr.n_remote = pr.cap_remote = pr.n_remote_sites = pr.n_sums = 0;
    pr.read_revision = 0;
    pr.summed = 0;
}
