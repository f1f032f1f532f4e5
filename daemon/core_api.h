/* The daemon core as the control server sees it.
 *
 * hakmemd's core (segment owner, collector, learner, publisher, persistence)
 * implements these; the control server (ctl_*.c) and metrics writer use
 * only these.  Readers may run on other threads than the learner: every
 * function here is safe to call concurrently with a learning interval (the
 * core reads its RCU-protected tables inside rcu_read_lock; callers must have
 * registered their thread with liburcu: hkd_reader_thread_enter/leave).
 *
 * Errors are negative errno values. */
#ifndef HAKMEMD_CORE_API_H
#define HAKMEMD_CORE_API_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "hakmem_shm.h"

#define HKD_ARM_NAME_MAX 32
#define HKD_MAX_ARMS 16
#define HKD_MODULE_MAX 64
#define HKD_EXE_MAX 64

/* Policy is learned per domain: the uid the reporting processes run as.
 * One user's processes never move another user's policy or counters.
 * Ordered and hashed by common/site_key.h (domain first). */
typedef struct hkd_site_key {
    uint64_t module_hash;          /* hash of build-id (or path when none) */
    uint64_t offset;               /* return address minus module load base */
    uint32_t domain;               /* the uid whose processes learn this site */
} hkd_site_key;

typedef struct hkd_thresholds {
    uint32_t large_threshold;      /* bytes; allocations >= go to mmap + BigCache */
    uint16_t bigcache_slots;       /* 0 disables BigCache for the site */
    uint8_t  thp;                  /* 1: madvise(MADV_HUGEPAGE) on 2 MiB-aligned blocks */
} hkd_thresholds;

typedef struct hkd_arm_stats {
    char     name[HKD_ARM_NAME_MAX];   /* e.g. "large=256K,slots=4,thp=on" */
    uint64_t pulls;                    /* this host's own */
    double   mean_reward;
    uint64_t fleet_pulls;              /* the other hosts' of a fleet, added up */
    double   fleet_mean_reward;
} hkd_arm_stats;

typedef struct hkd_site_info {
    hkd_site_key key;
    char     module[HKD_MODULE_MAX];   /* module path as a client reported it */
    uint32_t processes;                /* live processes reporting the site */
    uint64_t allocs, frees, bytes, live_bytes;
    uint64_t size_hist[32];            /* log2 size histogram, merged */
    uint64_t bigcache_hits, bigcache_misses, bigcache_evictions;
    uint64_t thp_blocks, slow_ns;
    hkd_thresholds thresholds;         /* as last published */
    int      pinned_arm;               /* -1 when not pinned */
    int      fleet_pinned;             /* the pin is the fleet's (fleet_control.h), not this host's */
    int      settled;                  /* exploiting: hkd_learn_settled() (its band's when thin) */
    int      thin;                     /* runs its size band's arm (daemon/bands.h) */
    int      published;                /* the shared table holds its entry */
    uint64_t own_pulls, fleet_pulls;   /* pulls this host made, pulls the fleet's other hosts made */
    uint32_t n_arms;
    hkd_arm_stats arms[HKD_MAX_ARMS];
} hkd_site_info;

typedef struct hkd_proc_info {
    pid_t    pid;                      /* 0: outside the daemon's PID namespace */
    char     exe[HKD_EXE_MAX];
    uint32_t sites;
    uint64_t bytes;                    /* bytes allocated, all sites */
    uint64_t rss_bytes, page_faults;
    uint64_t last_heartbeat_ms_ago;
    uid_t    uid;                      /* the process's domain */
    uint64_t binary_hash;              /* build-id hash of its executable (0: none) */
    uint64_t command_hash;             /* the command it runs (0: none), checked at registration */
    char     command[HKSHM_COMMAND_MAX];
    uint64_t proc[HKSHM_PROC_COUNTERS];/* as it reported them (enum hkshm_proc_counter) */
    uint64_t serial;                   /* the registration's, unique for the daemon's lifetime */
    uint32_t registration;             /* 1: the process's first (counted from its start) */
    uint32_t binary_arm;               /* the binary arm it runs (HKSHM_NO_ARM: defaults) */
    int      ended;                    /* its final counters: the process is gone */
} hkd_proc_info;

typedef struct hkd_status {
    char     version[16];
    uint64_t uptime_ms;
    char     shm_name[64];
    uint64_t generation;
    uint32_t processes, sites;         /* processes: live registrations that reported */
    uint32_t interval_ms;
    uint64_t intervals;
    uint64_t last_interval_ns;         /* collect+learn+publish, last interval */
    int      learning;                 /* 0 in baseline mode */
    uint32_t registrations;            /* registered processes, whether they reported or not */
    uint64_t instance;                 /* the segment header's */
    uint32_t domains;                  /* users with sites */
    uint32_t sites_archived;           /* learned state of sites no process reports, kept */
    uint64_t sites_refused;            /* new sites refused (a domain's limits), reports counted */
    uint64_t sites_evicted;            /* sites that aged out or made room, since start */
} hkd_status;

/* One domain (user) as the limits see it. */
typedef struct hkd_domain_info {
    uint32_t domain;                   /* uid */
    uint32_t sites;                    /* sites in memory */
    uint32_t band_learners;            /* size-band learners of its thin sites */
    int      trusted;                  /* root or the daemon's user: never limited by others */
    uint64_t refused;                  /* reports of new sites refused, since start */
    uint64_t evicted;                  /* sites aged out or evicted for room, since start */
} hkd_domain_info;

void hkd_reader_thread_enter(void);
void hkd_reader_thread_leave(void);

int  hkd_get_status(hkd_status *out);
/* Calls fn once per live process / known site, inside one read-side section. */
int  hkd_for_each_proc(int (*fn)(const hkd_proc_info *, void *), void *arg);
int  hkd_for_each_site(int (*fn)(const hkd_site_info *, void *), void *arg);
/* Calls fn once per domain, from a copy made at the end of the last interval. */
int  hkd_for_each_domain(int (*fn)(const hkd_domain_info *, void *), void *arg);

/* Sites a page at a time, for readers that must not hold anything for
 * long: up to max sites from *cursor on (0 starts) into out, in the order
 * of their places, and *cursor moves past them.  A cursor stays valid
 * across calls.  A site that goes (aged out, or evicted for room) frees
 * its place for a later one, so a page holds the sites known when it is
 * read.  at (NULL: not wanted) gets each site's place: cursor = at[k],
 * max = 1 reads it again while it is known, or else a later site (compare
 * the key).  How many were read (0: none left) or -errno. */
int  hkd_site_page(uint32_t *cursor, hkd_site_info *out, uint32_t *at, size_t max);

/* The learned policy (proto/policy.proto).  import: merges a serialized
 * policy into the learner and republishes; returns the number of sites
 * imported or -errno. */
int  hkd_policy_import(const uint8_t *buf, size_t len);
/* The policy in pieces, so that no one holds all of it: the sites from
 * *cursor on (at most max_sites; the sites in memory, then the archived
 * ones) as bytes in *out (malloc'd, caller frees), *cursor moved past
 * them.  The piece from cursor 0 begins with the policy's header; all
 * pieces in order, concatenated, are one policy that hkd_policy_import
 * takes.  Sites in the piece (0: none left) or -errno. */
int  hkd_policy_export_page(uint32_t *cursor, size_t max_sites, uint8_t **out, size_t *len);

/* A client's registration (proto/control.proto RegisterRequest): its
 * connection, the region descriptor that came with it and SO_PEERCRED.
 * The core keeps its own duplicate of conn_fd; the caller keeps and closes
 * both of its descriptors.  0 and the segment's instance in *instance, or
 * -errno with a one-line reason in `why`. */
int  hkd_register_client(int conn_fd, int region_fd, const struct ucred *cred, uint64_t *instance, char *why,
                         size_t whylen);

/* Per-binary learning, per (binary, command) (daemon/binaries.h has
 * hkd_binary_info and hkd_binary_sel).  fn runs once per (binary,
 * command), sorted by (domain, hash, command hash), outside any lock; its
 * first nonzero return ends the walk and is returned. */
typedef struct hkd_binary_info hkd_binary_info;
typedef struct hkd_binary_sel hkd_binary_sel;
int  hkd_for_each_binary(int (*fn)(const hkd_binary_info *, void *), void *arg);
/* Forces (arm >= 0) or releases (arm < 0) the arm of the binary's
 * commands `sel` picks: how many, -ENOENT, -EINVAL. */
int  hkd_binary_pin(const hkd_binary_sel *sel, int arm);
/* Forgets the learning of what `sel` picks (a zero binary hash: every
 * binary): how many, or -ENOENT. */
int  hkd_binary_reset(const hkd_binary_sel *sel);
/* The price the per-binary learner judges by: ns of CPU per MiB-second. */
double hkd_memory_weight_ns(void);

/* Forgets what was learned: one site (live or archived), or all when key
 * is NULL. */
int  hkd_reset(const hkd_site_key *key);
/* Forces (arm >= 0) or releases (arm < 0) a site's arm. */
int  hkd_pin(const hkd_site_key *key, int arm);

#endif
