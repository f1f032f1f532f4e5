/* The fleet link's thread (fleet.h): the lease, this host's shards, the
 * other hosts' shards, and the status others read.
 *
 * What other hosts wrote is kept per key (host, shard) with the revision
 * it was read at, decoded and checked (fleet_codec.h); a key is read again
 * only when its revision moved, and a key that is gone takes its sites out
 * of the sums.  Bounds: at most FLEET_KEYS_MAX keys and FLEET_SITES_MAX
 * sites from other hosts are kept; past them the rest is left out (said
 * once), so a fleet larger than one daemon should hold cannot bloat it. */
#include "fleet.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core_api.h"
#include "core_fleet.h"
#include "fleet_codec.h"
#include "log.h"
#include "site_key.h"

#define FLEET_KEYS_MAX 8192u               /* looked up by a walk of the list: a few ms at the cap */
#define FLEET_SITES_MAX (1u << 19)
#define SHARD_TARGET (256u << 10)          /* bytes a shard aims at: a change rewrites one shard, not all */
#define SHARDS_MAX 4096u
#define KEY_MAX 256u
#define PAGE_KEYS 1000u                    /* keys per keys-only page */
#define PAGE_VALUES 8u                     /* values per page: 8 MiB at most */
#define HEALTH_EVERY 5u                    /* syncs between health checks while up */

typedef struct remote_shard {
    char host[HKD_FLEET_ID_MAX + 1];
    uint32_t shard;
    int64_t mod_revision;
    uint64_t written_unix;
    hkd_fleet_site *sites;                 /* NULL: none, or the value did not check */
    uint32_t n;
    int rejected, seen;
} remote_shard;

enum link_state { LINK_UNKNOWN, LINK_UP, LINK_DOWN, LINK_REFUSED };

/* A shard as last put: a shard whose choices (its sites, their arms and
 * sizes) changed is put at the next sync; one whose counts alone moved
 * waits for the refresh period, so a settled host writes little. */
typedef struct written {
    uint64_t hash, choices;            /* 0: nothing put */
    uint64_t at_ms;
} written;

static struct {
    pthread_t thread;
    int running;
    pthread_mutex_t lock;                  /* stop, and status: the thread's otherwise */
    pthread_cond_t wake;
    int stop;
    hkd_fleet_status st;
    hkd_fleet_host *hosts;
    size_t n_hosts;
    /* the thread's */
    hkd_etcd *etcd;
    char prefix[KEY_MAX], own[KEY_MAX];    /* /hakmem/<fleet>/hosts/ and <prefix><host>/shard/ */
    int64_t lease;
    uint64_t next_keepalive_ms;
    uint64_t refresh_ms;                   /* a shard whose counts alone moved is put this often */
    written *put;                          /* per shard, what was last put */
    uint32_t shards;
    remote_shard *remote;
    size_t n_remote, cap_remote;
    size_t n_remote_sites;                 /* their sites, together */
    int64_t read_revision;                 /* values up to here are in remote */
    hkd_fleet_sum *sums;                   /* the other hosts' sums, as last handed to the core */
    size_t n_sums;
    uint64_t core_sites;                   /* the core's records then (sites and evictions) */
    enum link_state link;
    int told_keys_cap, told_sites_cap;
    uint32_t syncs_since_health;
} fl = { .lock = PTHREAD_MUTEX_INITIALIZER };

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int valid_id(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!isalnum((unsigned char)s[n]) && s[n] != '.' && s[n] != '_' && s[n] != '-')
            return 0;
    return n >= 1 && n <= HKD_FLEET_ID_MAX && strcmp(s, ".") && strcmp(s, "..");
}

/* ---- the link's state, said once per change ---- */

static void link_is(enum link_state now, const char *why)
{
    enum link_state was = fl.link;
    fl.link = now;
    if (now == was)
        return;
    if (now == LINK_UP)
        hkd_log(was == LINK_UNKNOWN ? HKD_LOG_INFO : HKD_LOG_NOTICE,
                "fleet: %s etcd as host %s of fleet %s", was == LINK_UNKNOWN ? "joined" : "rejoined", fl.st.host_id,
                fl.st.name);
    else if (now == LINK_REFUSED)
        hkd_log(HKD_LOG_ERR, "fleet: etcd refused host %s: %s; learning locally", fl.st.host_id, why);
    else
        hkd_log(HKD_LOG_WARNING, "fleet: etcd unreachable (%s); learning locally until it answers", why);
}

/* ---- this host's shards ---- */

static uint64_t fnv1a_from(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    return fnv1a_from(0xcbf29ce484222325ull, p, n) | 1;   /* never 0: 0 is "nothing put" */
}

/* What the other hosts act on in a shard: its sites, their arms and sizes. */
static uint64_t choices_of(const hkd_fleet_site *v, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        uint64_t x[3] = { hkd_site_key_hash(&v[i].key), (uint64_t)(uint8_t)v[i].arm,
                          (uint64_t)v[i].sizes_known << 16 | (uint64_t)v[i].size_lo << 8 | v[i].size_hi };
        h = fnv1a_from(h, (const uint8_t *)x, sizeof x);
    }
    return h | 1;
}

static int shard_key(char *out, uint32_t shard)
{
    int n = snprintf(out, KEY_MAX, "%s%04u", fl.own, shard);
    return n > 0 && n < (int)KEY_MAX ? n : -ENAMETOOLONG;
}

static uint32_t shard_of(const hkd_fleet_site *s, uint32_t shards)
{
    return (uint32_t)(hkd_site_key_hash(&s->key) >> 20) & (shards - 1);
}

/* How many shards the sites need: a power of two, each under the value cap. */
static uint32_t shards_for(const hkd_fleet_site *v, size_t n, uint32_t *bytes_out)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += hkd_fleet_site_bytes(&v[i]);
    uint32_t shards = 1;
    while (shards < SHARDS_MAX && (size_t)shards * SHARD_TARGET < total)
        shards *= 2;
    uint32_t *bytes = bytes_out;
    for (;;) {
        memset(bytes, 0, SHARDS_MAX * sizeof *bytes);
        int fits = 1;
        for (size_t i = 0; i < n && fits; i++) {
            uint32_t s = shard_of(&v[i], shards);
            bytes[s] += (uint32_t)hkd_fleet_site_bytes(&v[i]);
            fits = bytes[s] <= HKD_FLEET_VALUE_MAX - HKD_FLEET_HEADER_BYTES;
        }
        if (fits || shards == SHARDS_MAX)
            return shards;
        shards *= 2;
    }
}

static int by_shard(const void *a, const void *b, void *arg)
{
    uint32_t shards = *(const uint32_t *)arg;
    uint32_t x = shard_of(a, shards), y = shard_of(b, shards);
    if (x != y)
        return x < y ? -1 : 1;
    return hkd_site_key_cmp(&((const hkd_fleet_site *)a)->key, &((const hkd_fleet_site *)b)->key);
}

/* Puts the shards whose sites changed since they were last put; removes
 * shards past the count when it shrank. */
static int write_own(void)
{
    hkd_fleet_site *v;
    size_t n;
    int rc = hkd_fleet_snapshot(&v, &n);
    if (rc < 0)
        return rc;
    uint32_t *bytes = malloc(SHARDS_MAX * sizeof *bytes);
    uint8_t *buf = malloc(HKD_FLEET_VALUE_MAX);
    if (!bytes || !buf) {
        free(v), free(bytes), free(buf);
        return -ENOMEM;
    }
    uint32_t shards = shards_for(v, n, bytes);
    qsort_r(v, n, sizeof *v, by_shard, &shards);
    if (shards != fl.shards) {
        written *w = calloc(shards, sizeof *w);
        if (!w) {
            free(v), free(bytes), free(buf);
            return -ENOMEM;
        }
        free(fl.put);
        fl.put = w;
        if (shards < fl.shards) {
            char from[KEY_MAX];
            uint8_t end[KEY_MAX];
            size_t elen = hkd_etcd_prefix_end(fl.own, strlen(fl.own), end);
            int klen = shard_key(from, shards);
            rc = klen < 0 ? klen : hkd_etcd_delete(fl.etcd, from, (size_t)klen, end, elen);
        }
        fl.shards = shards;
    }
    uint64_t now_s = unix_ms() / 1000, now_ms = mono_ms();
    size_t at = 0;
    for (uint32_t s = 0; s < shards && rc == 0; s++) {
        size_t first = at;
        while (at < n && shard_of(&v[at], shards) == s)
            at++;
        hkd_fleet_header h = { .shard = (uint16_t)s, .shards = (uint16_t)shards, .n_sites = (uint32_t)(at - first) };
        /* The hash leaves the time out: an unchanged shard is not put again. */
        long len = hkd_fleet_encode(&h, v + first, at - first, buf, HKD_FLEET_VALUE_MAX);
        if (len < 0) {
            rc = (int)len;
            break;
        }
        uint64_t hash = fnv1a(buf, (size_t)len), choices = choices_of(v + first, at - first);
        written *w = &fl.put[s];
        if (hash == w->hash || (choices == w->choices && now_ms - w->at_ms < fl.refresh_ms))
            continue;
        h.written_unix = now_s;
        len = hkd_fleet_encode(&h, v + first, at - first, buf, HKD_FLEET_VALUE_MAX);
        char key[KEY_MAX];
        int klen = shard_key(key, s);
        rc = klen < 0 ? klen : hkd_etcd_put(fl.etcd, key, (size_t)klen, buf, (size_t)len, fl.lease);
        if (rc == 0) {
            *w = (written){ hash, choices, now_ms };
            pthread_mutex_lock(&fl.lock);
            fl.st.keys_written++;
            fl.st.bytes_written += (uint64_t)len + (uint64_t)klen;
            pthread_mutex_unlock(&fl.lock);
        }
    }
    pthread_mutex_lock(&fl.lock);
    fl.st.own_sites = (uint32_t)n;
    fl.st.own_shards = shards;
    pthread_mutex_unlock(&fl.lock);
    free(v), free(bytes), free(buf);
    return rc;
}

/* ---- the lease ---- */

static void forget_written(void)
{
    if (fl.put)
        memset(fl.put, 0, fl.shards * sizeof *fl.put);
}

static int keep_lease(void)
{
    uint64_t now = mono_ms();
    if (fl.lease && now >= fl.next_keepalive_ms) {
        int64_t ttl = 0;
        int rc = hkd_etcd_lease_keepalive(fl.etcd, fl.lease, &ttl);
        if (rc < 0 && rc != -ENOENT)
            return rc;
        if (ttl <= 0) {
            hkd_log(HKD_LOG_NOTICE, "fleet: lease %llx of host %s expired; taking a new one and writing again",
                    (unsigned long long)fl.lease, fl.st.host_id);
            fl.lease = 0;
        }
    }
    if (!fl.lease) {
        int rc = hkd_etcd_lease_grant(fl.etcd, fl.st.ttl_s, &fl.lease);
        if (rc < 0)
            return rc;
        forget_written();              /* the keys went with the old lease */
    }
    if (now >= fl.next_keepalive_ms || !fl.next_keepalive_ms)
        fl.next_keepalive_ms = now + fl.st.ttl_s * 1000u / 3;
    return 0;
}

/* ---- the other hosts' shards ---- */

/* host and shard of a key under the prefix: 0, or -1 for a key that is
 * not a shard (skipped). */
static int parse_key(const uint8_t *key, size_t len, char host[HKD_FLEET_ID_MAX + 1], uint32_t *shard)
{
    size_t plen = strlen(fl.prefix);
    if (len <= plen || len >= KEY_MAX || memcmp(key, fl.prefix, plen) != 0)
        return -1;
    char k[KEY_MAX];
    memcpy(k, key + plen, len - plen);
    k[len - plen] = 0;
    char *slash = strchr(k, '/');
    if (!slash || strncmp(slash, "/shard/", 7) != 0)
        return -1;
    *slash = 0;
    const char *num = slash + 7;
    if (!valid_id(k) || strlen(num) != 4 || strspn(num, "0123456789") != 4)
        return -1;
    memcpy(host, k, strlen(k) + 1);   /* valid_id: at most HKD_FLEET_ID_MAX */
    *shard = (uint32_t)atoi(num);
    return 0;
}

static remote_shard *find_remote(const char *host, uint32_t shard)
{
    for (size_t i = 0; i < fl.n_remote; i++)
        if (fl.remote[i].shard == shard && strcmp(fl.remote[i].host, host) == 0)
            return &fl.remote[i];
    return NULL;
}

/* A shard's sites, set or cleared, with the running total kept. */
static void set_sites(remote_shard *r, hkd_fleet_site *v, uint32_t n)
{
    fl.n_remote_sites -= r->n;
    free(r->sites);
    r->sites = v;
    r->n = n;
    fl.n_remote_sites += n;
}

static remote_shard *add_remote(const char *host, uint32_t shard)
{
    if (fl.n_remote >= FLEET_KEYS_MAX) {
        if (!fl.told_keys_cap++)
            hkd_log(HKD_LOG_WARNING, "fleet: more than %u keys from other hosts; the rest are left out", FLEET_KEYS_MAX);
        return NULL;
    }
    if (fl.n_remote == fl.cap_remote) {
        size_t cap = fl.cap_remote ? fl.cap_remote * 2 : 64;
        remote_shard *r = realloc(fl.remote, cap * sizeof *r);
        if (!r)
            return NULL;
        fl.remote = r;
        fl.cap_remote = cap;
    }
    remote_shard *r = &fl.remote[fl.n_remote++];
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
    if (parse_key(kv->key, kv->key_len, host, shard) < 0 || strcmp(host, fl.st.host_id) == 0)
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
    if (rc == 0 && fl.n_remote_sites + h.n_sites > FLEET_SITES_MAX) {
        if (!fl.told_sites_cap++)
            hkd_log(HKD_LOG_WARNING, "fleet: more than %u sites from other hosts; the rest are left out",
                    FLEET_SITES_MAX);
        free(v);
        return 0;
    }
    if (rc == -ENOMEM)
        return rc;
    if (rc < 0) {
        r->rejected = 1;
        pthread_mutex_lock(&fl.lock);
        fl.st.values_rejected++;
        pthread_mutex_unlock(&fl.lock);
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
    uint8_t end[KEY_MAX];
    size_t plen = strlen(fl.prefix);
    size_t elen = hkd_etcd_prefix_end(fl.prefix, plen, end);
    hkd_etcd_range r = *opt;
    r.revision = *rev;
    page_walk w = { .fn = fn, .arg = arg };
    const void *from = fl.prefix;
    size_t flen = plen;
    int rc = 0;
    for (;;) {
        int more = 0;
        int64_t got = 0;
        w.last_len = 0;
        rc = hkd_etcd_get(fl.etcd, from, flen, end, elen, &r, page_kv, &w, &got, &more);
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
    set_sites(&fl.remote[i], NULL, 0);
    fl.remote[i] = fl.remote[--fl.n_remote];
}

/* Reads which keys other hosts hold now and the values that changed;
 * *changed when the sums must be made again. */
static int read_others(int *changed)
{
    for (size_t i = 0; i < fl.n_remote; i++)
        fl.remote[i].seen = 0;
    int64_t rev = 0;
    int need = 0;
    hkd_etcd_range keys = { .keys_only = 1, .limit = PAGE_KEYS };
    int rc = walk(&keys, mark_seen, &need, &rev);
    if (rc == 0 && need) {
        hkd_etcd_range values = { .min_mod_revision = fl.read_revision + 1, .limit = PAGE_VALUES };
        rc = walk(&values, take_value, changed, &rev);
    }
    if (rc < 0)
        return rc;
    for (size_t i = fl.n_remote; i-- > 0;)
        if (!fl.remote[i].seen) {
            drop_remote(i);            /* its lease expired, or it shrank */
            *changed = 1;
        }
    fl.read_revision = rev;
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
    int rc = hkd_fleet_apply(fl.sums, fl.n_sums);
    fl.core_sites = core_sites();
    return rc;
}

/* Adds the other hosts' sites up, per site, each host once, and hands the
 * sums to the core; the hosts' list for the status. */
static int aggregate(void)
{
    size_t n = fl.n_remote_sites;
    contrib *c = malloc((n ? n : 1) * sizeof *c);
    hkd_fleet_sum *sum = malloc((n ? n : 1) * sizeof *sum);
    hkd_fleet_host *hosts = calloc(fl.n_remote ? fl.n_remote : 1, sizeof *hosts);
    if (!c || !sum || !hosts) {
        free(c), free(sum), free(hosts);
        return -ENOMEM;
    }
    qsort(fl.remote, fl.n_remote, sizeof *fl.remote, by_host);
    size_t k = 0, n_hosts = 0;
    for (size_t i = 0; i < fl.n_remote; i++) {
        const remote_shard *r = &fl.remote[i];
        if (!n_hosts || strcmp(hosts[n_hosts - 1].id, r->host) != 0)
            snprintf(hosts[n_hosts++].id, sizeof hosts->id, "%s", r->host);
        hkd_fleet_host *h = &hosts[n_hosts - 1];
        h->shards++;
        h->rejected += (uint32_t)r->rejected;
        h->sites += r->n;
        h->written_unix = r->written_unix > h->written_unix ? r->written_unix : h->written_unix;
        for (uint32_t j = 0; j < r->n; j++)
            c[k++] = (contrib){ &r->sites[j], r->host };
    }
    qsort(c, k, sizeof *c, by_key_host);
    size_t m = 0;
    uint32_t disagree = 0;
    for (size_t i = 0; i < k;) {
        hkd_fleet_sum *s = &sum[m++];
        memset(s, 0, sizeof *s);
        s->key = c[i].s->key;
        uint64_t most = 0;
        int arm = c[i].s->arm, differ = 0;
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
            differ |= x->arm != arm;
        }
        disagree += (uint32_t)differ;
        i = j;
    }
    free(fl.sums);
    fl.sums = sum;
    fl.n_sums = m;
    int rc = apply_sums();
    pthread_mutex_lock(&fl.lock);
    free(fl.hosts);
    fl.hosts = hosts;
    fl.n_hosts = n_hosts;
    fl.st.hosts = (uint32_t)n_hosts;
    fl.st.sites_shared = (uint32_t)m;
    fl.st.sites_disagree = disagree;
    pthread_mutex_unlock(&fl.lock);
    free(c);
    return rc < 0 ? rc : 0;
}

/* ---- the thread ---- */

static int sync_once(int *first)
{
    int rc = keep_lease();
    if (rc == 0) {
        rc = write_own();
        if (rc == -ENOENT) {
            /* The lease went while etcd was away from us: a new one, all again. */
            fl.lease = 0;
            rc = keep_lease();
            if (rc == 0)
                rc = write_own();
        }
    }
    int changed = 0;
    if (rc == 0)
        rc = read_others(&changed);
    if (rc == 0 && (changed || *first)) {
        rc = aggregate();
        *first = 0;
    } else if (rc == 0 && fl.n_sums && core_sites() != fl.core_sites) {
        rc = apply_sums();             /* records came: those the fleet knows take its prior */
    }
    return rc < 0 ? rc : 0;
}

static void publish_status(int rc)
{
    int check = rc < 0 || ++fl.syncs_since_health >= HEALTH_EVERY;
    if (check) {
        hkd_etcd_check_health(fl.etcd);
        fl.syncs_since_health = 0;
    }
    pthread_mutex_lock(&fl.lock);
    fl.st.up = rc == 0;
    fl.st.n_endpoints = hkd_etcd_endpoint_count(fl.etcd);
    for (size_t i = 0; i < fl.st.n_endpoints; i++)
        hkd_etcd_endpoint_get(fl.etcd, i, &fl.st.endpoints[i]);
    fl.st.lease = fl.lease;
    if (rc == 0) {
        fl.st.syncs++;
        fl.st.last_sync_unix_ms = unix_ms();
    } else {
        snprintf(fl.st.last_error, sizeof fl.st.last_error, "%s",
                 rc == -ENOMEM ? "out of memory" : hkd_etcd_error(fl.etcd));
    }
    pthread_mutex_unlock(&fl.lock);
    if (rc == 0)
        link_is(LINK_UP, NULL);
    else
        link_is(rc == -EACCES ? LINK_REFUSED : LINK_DOWN, fl.st.last_error);
}

static void *run(void *arg)
{
    (void)arg;
    hkd_reader_thread_enter();
    int first = 1;
    pthread_mutex_lock(&fl.lock);
    while (!fl.stop) {
        pthread_mutex_unlock(&fl.lock);
        uint64_t due = mono_ms() + fl.st.sync_ms;
        publish_status(sync_once(&first));
        pthread_mutex_lock(&fl.lock);
        uint64_t ka = fl.lease ? fl.next_keepalive_ms : due;
        if (ka < due)
            due = ka;
        while (!fl.stop && mono_ms() < due) {
            uint64_t left = due - mono_ms();
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += (time_t)(left / 1000);
            ts.tv_nsec += (long)(left % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&fl.wake, &fl.lock, &ts);
        }
    }
    pthread_mutex_unlock(&fl.lock);
    if (fl.lease && hkd_etcd_lease_revoke(fl.etcd, fl.lease) == 0)
        hkd_log(HKD_LOG_INFO, "fleet: host %s left fleet %s (lease revoked)", fl.st.host_id, fl.st.name);
    hkd_reader_thread_leave();
    return NULL;
}

int hkd_fleet_start(const hkd_fleet_cfg *cfg, char *why, size_t whylen)
{
    char host[256] = "";
    const char *name = cfg->name && *cfg->name ? cfg->name : "default";
    const char *id = cfg->host_id;
    if (!id || !*id) {
        if (gethostname(host, sizeof host - 1) < 0)
            host[0] = 0;
        id = host;
    }
    if (!valid_id(name)) {
        snprintf(why, whylen, "fleet name '%.80s' is not 1-64 of A-Z a-z 0-9 . _ -", name);
        return -EINVAL;
    }
    if (!valid_id(id)) {
        snprintf(why, whylen, "host id '%.80s' is not 1-64 of A-Z a-z 0-9 . _ - (set --host-id)", id);
        return -EINVAL;
    }
    hkd_etcd_cfg ec = { .endpoints = cfg->endpoints, .cacert = cfg->cacert, .cert = cfg->cert, .key = cfg->key };
    int rc = hkd_etcd_new(&ec, &fl.etcd, why, whylen);
    if (rc < 0)
        return rc;
    snprintf(fl.st.name, sizeof fl.st.name, "%s", name);
    snprintf(fl.st.host_id, sizeof fl.st.host_id, "%s", id);
    /* Both ids are at most HKD_FLEET_ID_MAX: the keys fit. */
    snprintf(fl.prefix, sizeof fl.prefix, "/hakmem/%.64s/hosts/", name);
    snprintf(fl.own, sizeof fl.own, "/hakmem/%.64s/hosts/%.64s/shard/", name, id);
    fl.st.configured = 1;
    fl.st.sync_ms = cfg->sync_ms ? cfg->sync_ms : HKD_FLEET_DEFAULT_SYNC_MS;
    fl.st.ttl_s = cfg->ttl_s ? cfg->ttl_s : HKD_FLEET_DEFAULT_TTL_S;
    fl.refresh_ms = (uint64_t)fl.st.sync_ms * HKD_FLEET_REFRESH_SYNCS;
    fl.st.n_endpoints = hkd_etcd_endpoint_count(fl.etcd);
    for (size_t i = 0; i < fl.st.n_endpoints; i++)
        hkd_etcd_endpoint_get(fl.etcd, i, &fl.st.endpoints[i]);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&fl.wake, &ca);
    pthread_condattr_destroy(&ca);
    fl.stop = 0;
    if ((rc = -pthread_create(&fl.thread, NULL, run, NULL)) < 0) {
        snprintf(why, whylen, "cannot start the fleet thread: %s", strerror(-rc));
        hkd_etcd_free(fl.etcd);
        fl.etcd = NULL;
        fl.st.configured = 0;
        return rc;
    }
    fl.running = 1;
    return 0;
}

void hkd_fleet_stop(void)
{
    if (!fl.running)
        return;
    pthread_mutex_lock(&fl.lock);
    fl.stop = 1;
    pthread_cond_signal(&fl.wake);
    pthread_mutex_unlock(&fl.lock);
    pthread_join(fl.thread, NULL);
    fl.running = 0;
    for (size_t i = 0; i < fl.n_remote; i++)
        free(fl.remote[i].sites);
    free(fl.remote);
    free(fl.put);
    free(fl.hosts);
    free(fl.sums);
    fl.sums = NULL;
    fl.n_sums = 0;
    fl.remote = NULL;
    fl.put = NULL;
    fl.hosts = NULL;
    fl.n_remote = fl.cap_remote = fl.n_hosts = fl.n_remote_sites = 0;
    fl.shards = 0;
    fl.lease = 0;
    hkd_etcd_free(fl.etcd);
    fl.etcd = NULL;
}

int hkd_fleet_status_get(hkd_fleet_status *out, hkd_fleet_host **hosts, size_t *n)
{
    pthread_mutex_lock(&fl.lock);
    *out = fl.st;
    int rc = 0;
    if (hosts) {
        *n = fl.n_hosts;
        *hosts = malloc((fl.n_hosts ? fl.n_hosts : 1) * sizeof **hosts);
        if (*hosts)
            memcpy(*hosts, fl.hosts, fl.n_hosts * sizeof **hosts);
        else
            rc = -ENOMEM;
    }
    pthread_mutex_unlock(&fl.lock);
    return rc;
}
