/* The collector: every interval, a consistent snapshot of each registered
 * client's report region (daemon/registry.h) and per-site differences
 * since the previous snapshot of the same registration. */
#ifndef HAKMEMD_COLLECTOR_H
#define HAKMEMD_COLLECTOR_H

#include <stdint.h>

#include "core_api.h"
#include "hakmem_shm.h"

/* One site of one process: what changed since the last interval. */
typedef struct hkd_site_delta {
    hkd_site_key key;                /* key.domain: the registration's uid */
    int changed;                     /* 0: only key, module and live_bytes are set */
    int has_hist;                    /* hist holds the change since the last merge */
    const char *module;              /* path, "" when unknown */
    uint64_t allocs, frees, bytes;
    uint64_t bigcache_hits, bigcache_misses, bigcache_evictions;
    uint64_t thp_blocks, slow_ns;
    uint32_t hist[HKSHM_HIST];
    uint64_t live_bytes;             /* a level, not a difference */
    double   faults;                 /* the process's faults, pro rata of bytes */
} hkd_site_delta;

typedef struct hkd_collect_ops {
    /* cookie: per (registration, site index), kept across intervals for
     * the callee's use (e.g. a cached pointer to its merged record); NULL
     * at first, and NULL again whenever the key at that index changes.
     * The collector prefetches the line it points to a few sites ahead. */
    void (*site)(const hkd_site_delta *d, void **cookie, void *arg);
    void (*proc)(const hkd_proc_info *p, void *arg);
} hkd_collect_ops;

typedef struct hkd_collect_stats {
    uint32_t live, ended, skipped_busy, site_records;
} hkd_collect_stats;

typedef struct hkd_collector hkd_collector;

/* A collector of registry entries first, first + step, ... (so that two
 * threads can collect at once; step 1: every entry). */
hkd_collector *hkd_collector_new(uint32_t first, uint32_t step);
void hkd_collector_free(hkd_collector *c);
/* One pass over the registry's entries (the interval thread, between
 * hkd_registry_begin_interval and hkd_registry_end_interval).  A
 * registration's first snapshot counts from zero when it is the process's
 * first registration, else it is taken as the baseline; an ended one is
 * collected one last time and not reported as a live process. */
int  hkd_collect(hkd_collector *c, const hkd_collect_ops *ops, void *arg, hkd_collect_stats *st);
/* Clears every cookie that may still be read (every registration this
 * collector tracks, live, ended or skipped, and the site indexes it
 * reported) for which stale(cookie, arg) says 1: the callee is about to
 * reuse what those cookies point at.  The next report of such a site
 * comes with a NULL cookie.  Not while a pass runs. */
void hkd_collector_drop_cookies(hkd_collector *c, int (*stale)(const void *cookie, void *arg), void *arg);

/* A consistent copy of region r (header, modules and its used sites) into
 * out, counts bounded and strings terminated.  0, or -EBUSY when the owner
 * kept writing through max_tries.  Without with_hist the sites' size
 * histograms are not copied. */
int  hkd_region_snapshot(const hkshm_region *r, hkshm_region *out, int max_tries, int with_hist);

#endif
