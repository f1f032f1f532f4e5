/* The fleet link's thread (fleet.h): the lease, this host's shards, the
 * sync loop, and the status others read.  The other hosts' shards are
 * fleet_peers.c's. */
#include "fleet.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core_api.h"
#include "core_fleet.h"
#include "etcd_password.h"
#include "fleet_codec.h"
#include "fleet_controls.h"
#include "fleet_peers.h"
#include "log.h"
#include "site_key.h"

#define SHARD_TARGET (256u << 10)          /* bytes a shard aims at: a change rewrites one shard, not all */
#define SHARDS_MAX 4096u
#define HEALTH_EVERY 5u                    /* syncs between health checks while up */

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
    /* the thread's */
    hkd_etcd *etcd;
    char prefix[HKD_FLEET_KEY_MAX], own[HKD_FLEET_KEY_MAX];   /* /hakmem/<fleet>/hosts/, <prefix><host>/shard/ */
    int64_t lease;
    uint64_t next_keepalive_ms;
    uint64_t refresh_ms;                   /* a shard whose counts alone moved is put this often */
    written *put;                          /* per shard, what was last put */
    uint32_t shards;
    enum link_state link;
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
    int n = snprintf(out, HKD_FLEET_KEY_MAX, "%s%04u", fl.own, shard);
    return n > 0 && n < (int)HKD_FLEET_KEY_MAX ? n : -ENAMETOOLONG;
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
            char from[HKD_FLEET_KEY_MAX];
            uint8_t end[HKD_FLEET_KEY_MAX];
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
        char key[HKD_FLEET_KEY_MAX];
        int klen = shard_key(key, s);
        rc = klen < 0 ? klen : hkd_etcd_put(fl.etcd, key, (size_t)klen, buf, (size_t)len, fl.lease);
        if (rc == 0) {
            hkd_log(HKD_LOG_DEBUG, "fleet: put shard %u of %u: %zu sites, %ld bytes", s, shards, at - first, len);
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
    int own = hkd_fleet_peers_own(v, n);
    free(v), free(bytes), free(buf);
    return rc < 0 ? rc : own;
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

/* ---- the thread ---- */

static int sync_once(void)
{
    int rc = keep_lease();
    /* The controls first: what a reset cleared is written as cleared now. */
    if (rc == 0)
        rc = hkd_fleet_controls_sync();
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
    return rc < 0 ? rc : hkd_fleet_peers_sync();
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
    pthread_mutex_lock(&fl.lock);
    while (!fl.stop) {
        pthread_mutex_unlock(&fl.lock);
        uint64_t due = mono_ms() + fl.st.sync_ms;
        publish_status(sync_once());
        pthread_mutex_lock(&fl.lock);
        /* A keepalive due before the next sync brings it forward; one
         * already past is one that failed, and waits for the sync like
         * everything else (etcd down must not make this loop spin). */
        uint64_t ka = fl.next_keepalive_ms;
        if (fl.lease && ka > mono_ms() && ka < due)
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
    if (!hkd_fleet_valid_id(name)) {
        snprintf(why, whylen, "fleet name '%.80s' is not 1-64 of A-Z a-z 0-9 . _ -", name);
        return -EINVAL;
    }
    if (!hkd_fleet_valid_id(id)) {
        snprintf(why, whylen, "host id '%.80s' is not 1-64 of A-Z a-z 0-9 . _ - (set --host-id)", id);
        return -EINVAL;
    }
    char password[HKD_ETCD_PASSWORD_MAX + 2] = "";
    int rc = cfg->user ? hkd_etcd_password(cfg->user, cfg->password_file, password, sizeof password, why, whylen) : 0;
    if (rc < 0)
        return rc;
    hkd_etcd_cfg ec = { .endpoints = cfg->endpoints, .cacert = cfg->cacert, .cert = cfg->cert, .key = cfg->key,
                        .user = cfg->user, .password = cfg->user ? password : NULL };
    rc = hkd_etcd_new(&ec, &fl.etcd, why, whylen);
    explicit_bzero(password, sizeof password);
    if (rc < 0)
        return rc;
    snprintf(fl.st.name, sizeof fl.st.name, "%s", name);
    snprintf(fl.st.host_id, sizeof fl.st.host_id, "%s", id);
    /* Both ids are at most HKD_FLEET_ID_MAX: the keys fit. */
    snprintf(fl.prefix, sizeof fl.prefix, "/hakmem/%.64s/hosts/", name);
    snprintf(fl.own, sizeof fl.own, "/hakmem/%.64s/hosts/%.64s/shard/", name, id);
    hkd_fleet_peers_init(fl.etcd, fl.prefix, id);
    hkd_fleet_controls_init(fl.etcd, name, cfg->state_dir);
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
    hkd_fleet_peers_free();
    hkd_fleet_controls_free();
    free(fl.put);
    fl.put = NULL;
    fl.shards = 0;
    fl.lease = 0;
    hkd_etcd_free(fl.etcd);
    fl.etcd = NULL;
}

int hkd_fleet_status_get(hkd_fleet_status *out, hkd_fleet_host **hosts, size_t *n)
{
    pthread_mutex_lock(&fl.lock);
    *out = fl.st;
    pthread_mutex_unlock(&fl.lock);
    if (hosts) {
        *hosts = NULL;
        *n = 0;
    }
    return out->configured ? hkd_fleet_peers_status(out, hosts, n) : 0;
}
