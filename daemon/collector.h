/* The collector: every interval, a consistent snapshot of each live slot,
 * per-site differences since the previous snapshot of the same process,
 * and reaping of slots whose process is gone (pid + start time). */
#ifndef HAKMEMD_COLLECTOR_H
#define HAKMEMD_COLLECTOR_H

#include <stdint.h>

#include "core_api.h"
#include "hakmem_shm.h"

/* One site of one process: what changed since the last interval. */
typedef struct hkd_site_delta {
    hkd_site_key key;                /* module_hash and offset (the core reads `domain`, not key.domain) */
    uint32_t domain;                 /* the uid the reporting process runs as */
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
    /* cookie: per (process, site index), kept across intervals for the
     * callee's use (e.g. a cached pointer to its merged record); NULL at
     * first, and NULL again whenever the key at that index changes.  The
     * collector prefetches the line it points to a few sites ahead. */
    void (*site)(const hkd_site_delta *d, void **cookie, void *arg);
    void (*proc)(const hkd_proc_info *p, void *arg);
} hkd_collect_ops;

typedef struct hkd_collect_stats {
    uint32_t live, reaped, skipped_busy, site_records;
} hkd_collect_stats;

typedef struct hkd_collector hkd_collector;

hkd_collector *hkd_collector_new(void);
void hkd_collector_free(hkd_collector *c);
/* This collector takes slots first, first + step, ... only, so that two
 * threads can collect one segment at once (default: every slot).  Set
 * once, before the first pass. */
void hkd_collector_slots(hkd_collector *c, uint32_t first, uint32_t step);
/* The segment was created by this daemon: nothing in it was counted
 * before, so the first pass reports what it finds like any other. */
void hkd_collector_no_history(hkd_collector *c);
/* Clears every cookie that may still be read (processes whose slots are
 * tracked, site indexes they reported) for which stale(cookie, arg) says
 * 1: the callee is about to reuse what those cookies point at.  The next
 * report of such a site comes with a NULL cookie.  Not while a pass runs. */
void hkd_collector_drop_cookies(hkd_collector *c, int (*stale)(const void *cookie, void *arg), void *arg);
/* One pass over all slots.  The first pass after start treats what it sees
 * as history (unless hkd_collector_no_history): it records it but reports
 * no deltas for it, so counters of clients that outlived a daemon restart
 * are not counted twice. */
int  hkd_collect(hkd_collector *c, hkshm_header *h, const hkd_collect_ops *ops, void *arg,
                 hkd_collect_stats *st);

/* A consistent copy of slot s (header, modules and its used sites) into
 * out.  0, or -EBUSY when the owner kept writing through max_tries. */
int  hkd_slot_snapshot(const hkshm_slot *s, hkshm_slot *out, int max_tries);
/* The same; without with_hist the sites' size histograms are not copied. */
int  hkd_slot_snapshot_ex(const hkshm_slot *s, hkshm_slot *out, int max_tries, int with_hist);
/* Frees a slot owned by `pid` (dead or exited).  0, or -EBUSY when someone
 * else took it first. */
int  hkd_slot_reap(hkshm_slot *s, uint32_t pid);

#endif
