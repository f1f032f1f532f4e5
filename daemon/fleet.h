/* The fleet link: daemons of many hosts share what they learn through an
 * etcd cluster (etcd.h), so a site learned on one host is settled on the
 * others before their processes spend a pull exploring it.
 *
 * Keys, under /hakmem/<fleet>/hosts/<host-id>/: shard/NNNN, each a
 * fleet_codec.h value holding some of the host's learned sites (its own
 * pulls and reward sums), all attached to a lease the host keeps alive.
 * A host that stops (or dies) loses its lease, its keys vanish, and the
 * others stop counting it.
 *
 * Everything here runs on the fleet's own thread: requests to etcd never
 * hold g.lock, so a slow or missing etcd delays no interval, publication
 * or watchdog ping.  The thread syncs every sync interval: keeps the lease
 * alive, writes the shards that changed, reads what other hosts changed,
 * and hands their sums to the core (core_fleet.h).  A shard is put again
 * at the next sync when its sites' choices (arm, sizes, the sites
 * themselves) changed, else at most every HKD_FLEET_REFRESH_SYNCS syncs.  Up and down are logged
 * once per change.  The status is copied out under a mutex for the
 * control server and metrics. */
#ifndef HAKMEMD_FLEET_H
#define HAKMEMD_FLEET_H

#include <stddef.h>
#include <stdint.h>

#include "etcd.h"
#include "fleet_control.h"

#define HKD_FLEET_KEY_MAX 256u             /* the longest key of ours: /hakmem/<fleet>/hosts/<host>/shard/NNNN */
#define HKD_FLEET_DEFAULT_SYNC_MS 5000u
#define HKD_FLEET_DEFAULT_TTL_S 15u
#define HKD_FLEET_REFRESH_SYNCS 12u        /* a shard whose counts alone moved is put every this many syncs */

typedef struct hkd_fleet_cfg {
    const char *endpoints;                 /* URL[,URL...] */
    const char *name, *host_id;            /* NULL: "default", the host name */
    const char *cacert, *cert, *key;
    const char *user, *password_file;      /* an etcd user (NULL: none); its password (etcd_password.h) */
    const char *state_dir;                 /* where the resets applied are kept (NULL: nowhere) */
    uint32_t sync_ms;                      /* 0: the default */
    uint32_t ttl_s;                        /* 0: the default */
} hkd_fleet_cfg;

/* One other host as this one last read it. */
typedef struct hkd_fleet_host {
    char id[HKD_FLEET_ID_MAX + 1];
    uint64_t written_unix;                 /* newest of its shards */
    uint32_t sites, shards, rejected;      /* rejected: shards whose value did not check */
} hkd_fleet_host;

#define HKD_FLEET_DISAGREE_TOP 10u         /* disagreeing sites listed, those with the most pulls */
#define HKD_FLEET_DISAGREE_HOSTS 16u       /* hosts listed per site */

/* A site whose hosts (this one among them) run different arms. */
typedef struct hkd_fleet_disagreement {
    hkd_site_key key;
    uint64_t pulls;                        /* every host's together */
    uint32_t hosts, n;                     /* hosts that run it; of them, listed in host[] */
    struct {
        char id[HKD_FLEET_ID_MAX + 1];
        int arm;
        uint64_t pulls;
    } host[HKD_FLEET_DISAGREE_HOSTS];
} hkd_fleet_disagreement;

typedef struct hkd_fleet_status {
    int configured, up;
    char name[HKD_FLEET_ID_MAX + 1], host_id[HKD_FLEET_ID_MAX + 1];
    char last_error[256];
    size_t n_endpoints;
    hkd_etcd_endpoint endpoints[HKD_ETCD_ENDPOINTS_MAX];
    int64_t lease;
    uint32_t ttl_s, sync_ms;
    uint64_t last_sync_unix_ms;            /* 0: never */
    uint64_t syncs, bytes_written, keys_written, values_rejected;
    uint32_t own_sites, own_shards;
    uint32_t hosts, sites_shared, sites_disagree;
    uint32_t n_disagree;                   /* sites in disagree[], most pulls first */
    hkd_fleet_disagreement disagree[HKD_FLEET_DISAGREE_TOP];
} hkd_fleet_status;

/* Checks the configuration and starts the thread: 0, or -errno with why
 * in one line (a bad URL or id, an unreadable file). */
int  hkd_fleet_start(const hkd_fleet_cfg *cfg, char *why, size_t whylen);
/* Ends the thread and gives the lease back (so the others stop counting
 * this host at once); nothing when no fleet runs. */
void hkd_fleet_stop(void);
/* The link's status; with hosts, *hosts (malloc'd) and *n the other hosts. */
int  hkd_fleet_status_get(hkd_fleet_status *out, hkd_fleet_host **hosts, size_t *n);

#endif
