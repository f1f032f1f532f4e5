/* Collector.
 *
 * The daemon reads a region while its owner may be writing it, so it
 * copies under the region's sequence number and retries a few times; a
 * region that is always mid-write (its owner died inside a flush, or means
 * harm) is skipped, and tried once per interval from then on.  Per
 * registration it remembers the last counters of each site to turn the
 * client's cumulative totals into per-interval differences.  Everything in
 * a region is the owner's to write: counts are clamped, indices bounded,
 * strings terminated, and a key that changes at a site index starts a new
 * baseline instead of counting its totals again. */
#include "collector.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>

#include "registry.h"
#include "segment.h"

#define HIST_EVERY 8                /* intervals between size-histogram merges */
#define SITE_SCALARS (offsetof(hkshm_site, size_hist) / 8)
#define SNAP_TRIES 4                /* tries a region gets; one after it was busy */
#define ODD_SPINS 64                /* pauses while the owner is mid-flush, per try */
#define COOKIE_PREFETCH 6           /* sites ahead */
#define PREV_PREFETCH 32            /* 2 KiB: the diff loop is fast, memory is not */
#define SNAP_PREFETCH 12

typedef uint32_t hist_vec __attribute__((vector_size(16)));

/* One line per site: the counts keep their low 32 bits (an interval's
 * difference is taken modulo 2^32, and one of 2^31 or more reads as a
 * counter that ran backwards: nothing).  Bytes and nanoseconds move too
 * fast for that and stay whole. */
typedef struct site_prev {
    uint64_t module_hash, offset;
    uint64_t bytes, slow_ns;
    uint32_t allocs, frees, hits, misses, evictions, thp;
    void *cookie;
} __attribute__((aligned(64))) site_prev;

_Static_assert(sizeof(site_prev) == 64, "previous counters of a site are one cache line");

/* Histograms apart: they are read only every HIST_EVERY intervals. */
typedef struct hist_prev {
    uint32_t b[HKSHM_HIST];
} hist_prev;

typedef struct reg_track {
    uint64_t serial;                 /* the registration these counters are of; 0: none */
    uint64_t faults;
    uint32_t n_prev;                 /* site indices with previous counters */
    int busy;                        /* the last snapshot failed */
    site_prev *prev;                 /* HKSHM_REGION_SITES, in the collector's arrays */
    hist_prev *hprev;
} reg_track;

struct hkd_collector {
    uint64_t passes;
    uint32_t first, step;            /* the registry entries this collector takes */
    uint32_t n_tracks;
    reg_track *tracks;               /* by rank: entry first + rank * step */
    hkshm_region scratch;
    uint64_t bytes_by_site[HKSHM_REGION_SITES];
    site_prev *prev_all;             /* every track's, one mapping each (see track_array) */
    hist_prev *hprev_all;
    size_t prev_bytes, hprev_bytes;
};

#define HUGE_PAGE ((size_t)2 << 20)

/* Zero pages, touched as registrations come.  At 256 processes the
 * previous counters are 14 MB streamed every interval: past the first huge
 * page (what a small system uses) they ask for huge pages, a TLB miss a
 * page instead of one every few dozen sites. */
static void *track_array(size_t size)
{
    char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    char *from = (char *)(((uintptr_t)p + 2 * HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (from < p + size)
        madvise(from, (size_t)(p + size - from), MADV_HUGEPAGE);   /* advice only */
    return p;
}

hkd_collector *hkd_collector_new(uint32_t first, uint32_t step)
{
    if (step == 0)
        step = 1;
    if (first >= HKD_REG_MAX)
        return NULL;
    hkd_collector *c = calloc(1, sizeof(hkd_collector));
    if (!c)
        return NULL;
    c->first = first;
    c->step = step;
    c->n_tracks = (HKD_REG_MAX - first + step - 1) / step;
    c->prev_bytes = (size_t)c->n_tracks * HKSHM_REGION_SITES * sizeof(site_prev);
    c->hprev_bytes = (size_t)c->n_tracks * HKSHM_REGION_SITES * sizeof(hist_prev);
    c->tracks = calloc(c->n_tracks, sizeof *c->tracks);
    c->prev_all = track_array(c->prev_bytes);
    c->hprev_all = track_array(c->hprev_bytes);
    if (!c->tracks || !c->prev_all || !c->hprev_all) {
        hkd_collector_free(c);
        return NULL;
    }
    for (uint32_t i = 0; i < c->n_tracks; i++) {
        c->tracks[i].prev = c->prev_all + (size_t)i * HKSHM_REGION_SITES;
        c->tracks[i].hprev = c->hprev_all + (size_t)i * HKSHM_REGION_SITES;
    }
    return c;
}

void hkd_collector_free(hkd_collector *c)
{
    if (!c)
        return;
    if (c->prev_all)
        munmap(c->prev_all, c->prev_bytes);
    if (c->hprev_all)
        munmap(c->hprev_all, c->hprev_bytes);
    free(c->tracks);
    free(c);
}

static uint64_t ld64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* Terminated, and free of bytes a terminal or a log line would act on. */
static void clean_string(char *s, size_t n)
{
    s[n - 1] = 0;
    for (size_t i = 0; s[i]; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
            s[i] = '?';
}

int hkd_region_snapshot(const hkshm_region *r, hkshm_region *out, int max_tries, int with_hist)
{
    const uint64_t *seqp = (const uint64_t *)&r->seq;
    for (int tries = 0; tries < max_tries; tries++) {
        uint64_t s1 = __atomic_load_n(seqp, __ATOMIC_ACQUIRE);
        if (s1 & 1) {
            /* Mid-flush: a flush takes microseconds; a region left odd is
             * skipped after a few tries rather than waited for. */
            for (int k = 0; k < ODD_SPINS; k++)
                __builtin_ia32_pause();
            continue;
        }
        /* Word-wise relaxed loads: the copy may race with the owner, and the
         * sequence check below throws away any torn result. */
        const uint64_t *src = (const uint64_t *)r;
        uint64_t *dst = (uint64_t *)out;
        size_t head = offsetof(hkshm_region, sites) / 8;
        for (size_t i = 0; i < head; i++)
            dst[i] = ld64(&src[i]);
        uint32_t n = out->n_sites;
        if (n > HKSHM_REGION_SITES)
            n = HKSHM_REGION_SITES;
        if (with_hist) {
            size_t words = (size_t)n * sizeof(hkshm_site) / 8;
#pragma GCC unroll 4
            for (size_t i = 0; i < words; i++)
                dst[head + i] = ld64(&src[head + i]);
        } else {
            /* Histograms are merged every few intervals: skip 57% of the copy.
             * The strided reads defeat the prefetcher; ask a few sites ahead
             * (never past the region: the mapping ends there). */
            for (uint32_t k = 0; k < n; k++) {
                size_t base = head + (size_t)k * (sizeof(hkshm_site) / 8);
                if (k + SNAP_PREFETCH < HKSHM_REGION_SITES) {
                    const char *ahead = (const char *)&r->sites[k + SNAP_PREFETCH];
                    __builtin_prefetch(ahead);
                    __builtin_prefetch(ahead + 64);
                }
                /* Unrolled: as a loop the copy took eight instructions a word. */
#pragma GCC unroll 12
                for (size_t i = 0; i < SITE_SCALARS; i++)
                    dst[base + i] = ld64(&src[base + i]);
            }
        }
        atomic_thread_fence(memory_order_acquire);
        uint64_t s2 = __atomic_load_n(seqp, __ATOMIC_RELAXED);
        if (s1 == s2) {
            out->n_sites = n;
            if (out->n_modules > HKSHM_REGION_MODULES)
                out->n_modules = HKSHM_REGION_MODULES;
            for (uint32_t m = 0; m < out->n_modules; m++)
                clean_string(out->modules[m].path, HKSHM_MODULE_PATH);
            clean_string(out->exe, HKSHM_EXE_MAX);
            return 0;
        }
    }
    return -EBUSY;
}

static uint64_t delta32(uint64_t now, uint32_t before)
{
    uint32_t d = (uint32_t)now - before;
    return d < (1u << 31) ? d : 0;
}

/* The site's counters as they are now (its histogram too, with_hist):
 * the next differences start from here. */
static void take_baseline(site_prev *p, hist_prev *hp, const hkshm_site *s, int with_hist)
{
    p->allocs = (uint32_t)s->allocs;
    p->frees = (uint32_t)s->frees;
    p->bytes = s->bytes;
    p->hits = (uint32_t)s->bigcache_hits;
    p->misses = (uint32_t)s->bigcache_misses;
    p->evictions = (uint32_t)s->bigcache_evictions;
    p->thp = (uint32_t)s->thp_blocks;
    p->slow_ns = s->slow_ns;
    if (with_hist)
        memcpy(hp->b, s->size_hist, sizeof hp->b);
}

/* Differences of one snapshot against the track, reported.  quiet: the
 * snapshot is the baseline (nothing counted).  -EAGAIN before anything is
 * reported when a key changed and the snapshot lacks the histograms its
 * new baseline needs. */
static int diff_and_report(hkd_collector *c, reg_track *t, const hkshm_region *snap, uint32_t domain, int quiet,
                           int with_hist, const hkd_collect_ops *ops, void *arg, hkd_collect_stats *st)
{
    uint32_t n = snap->n_sites;
    uint64_t total_bytes = 0;
    for (uint32_t i = 0; i < n; i++) {
        const hkshm_site *s = &snap->sites[i];
        site_prev *p = &t->prev[i];
        /* The previous counters stream from memory, one region's worth at a time. */
        if (i + PREV_PREFETCH < HKSHM_REGION_SITES)
            __builtin_prefetch(&t->prev[i + PREV_PREFETCH], 1);
        int seen = i < t->n_prev && (p->module_hash || p->offset);
        if (!seen || p->module_hash != s->module_hash || p->offset != s->offset) {
            /* A key never changes at an index: one that does is counted
             * from what it shows now, never its whole total again. */
            int rebase = seen || quiet;
            if (rebase && !with_hist)
                return -EAGAIN;
            memset(p, 0, sizeof *p);
            memset(&t->hprev[i], 0, sizeof t->hprev[i]);
            p->module_hash = s->module_hash;
            p->offset = s->offset;
            if (rebase)
                take_baseline(p, &t->hprev[i], s, 1);
        }
        c->bytes_by_site[i] = s->bytes >= p->bytes ? s->bytes - p->bytes : 0;
        total_bytes += c->bytes_by_site[i];
    }
    if (n > t->n_prev)
        t->n_prev = n;
    uint64_t faults_now = snap->proc[HKSHM_PROC_PAGE_FAULTS];
    uint64_t dfaults = quiet || faults_now < t->faults ? 0 : faults_now - t->faults;
    t->faults = faults_now;
    /* Faults per byte, once per region: a division per site was a fifth of the pass. */
    double fault_share = total_bytes && dfaults ? (double)dfaults / (double)total_bytes : 0.0;

    for (uint32_t i = 0; i < n; i++) {
        const hkshm_site *s = &snap->sites[i];
        site_prev *p = &t->prev[i];
        /* Cookies are the callee's records, usually far apart in memory:
         * fetching a few ahead hides most of the miss (a prefetch of a
         * stale or NULL cookie is harmless). */
        if (i + COOKIE_PREFETCH < n) {
            const char *ahead = t->prev[i + COOKIE_PREFETCH].cookie;
            __builtin_prefetch(ahead, 1);
        }
        if (s->module_hash == 0 && s->offset == 0)
            continue;               /* not resolved yet */
        hkd_site_delta d;
        d.key.module_hash = s->module_hash;
        d.key.offset = s->offset;
        d.key.domain = domain;
        d.module = s->module < snap->n_modules ? snap->modules[s->module].path : "";
        d.live_bytes = s->live_bytes;
        d.has_hist = 0;
        d.changed = (uint32_t)s->allocs != p->allocs || (uint32_t)s->frees != p->frees ||
                    s->slow_ns != p->slow_ns || (uint32_t)s->bigcache_hits != p->hits ||
                    (uint32_t)s->bigcache_misses != p->misses || (uint32_t)s->bigcache_evictions != p->evictions ||
                    (uint32_t)s->thp_blocks != p->thp;
        if (d.changed) {
            d.allocs = delta32(s->allocs, p->allocs);
            d.frees = delta32(s->frees, p->frees);
            d.bigcache_hits = delta32(s->bigcache_hits, p->hits);
            d.bigcache_misses = delta32(s->bigcache_misses, p->misses);
            d.bigcache_evictions = delta32(s->bigcache_evictions, p->evictions);
            d.thp_blocks = delta32(s->thp_blocks, p->thp);
            d.bytes = s->bytes >= p->bytes ? s->bytes - p->bytes : 0;
            d.slow_ns = s->slow_ns >= p->slow_ns ? s->slow_ns - p->slow_ns : 0;
            d.has_hist = with_hist;
            /* Eight 4-lane subtractions; modulo 2^32 by design. */
            for (uint32_t b = 0; with_hist && b < HKSHM_HIST / 4; b++) {
                hist_vec cur, old;
                memcpy(&cur, &s->size_hist[4 * b], sizeof cur);
                memcpy(&old, &t->hprev[i].b[4 * b], sizeof old);
                cur -= old;
                memcpy(&d.hist[4 * b], &cur, sizeof cur);
            }
            d.faults = fault_share * (double)c->bytes_by_site[i];
            take_baseline(p, &t->hprev[i], s, with_hist);
        }
        st->site_records++;
        if (ops->site)
            ops->site(&d, &p->cookie, arg);
    }
    return 0;
}

void hkd_collector_drop_cookies(hkd_collector *c, int (*stale)(const void *cookie, void *arg), void *arg)
{
    /* A cookie at index i >= n_prev is never read: diff_and_report clears
     * it first (and a new registration at an entry sets n_prev to 0).
     * Every track, whether its registration is live, ended or busy: one
     * skipped this pass reports again later with its old cookies. */
    for (uint32_t k = 0; k < c->n_tracks; k++) {
        reg_track *t = &c->tracks[k];
        for (uint32_t i = 0; i < t->n_prev; i++)
            if (t->prev[i].cookie && stale(t->prev[i].cookie, arg))
                t->prev[i].cookie = NULL;
    }
}

static void report_proc(const hkd_reg *r, const hkshm_region *snap, uint64_t now, const hkd_collect_ops *ops,
                        void *arg)
{
    if (!ops->proc)
        return;
    hkd_proc_info pi;
    memset(&pi, 0, sizeof pi);
    pi.pid = r->pid;
    pi.uid = r->uid;
    pi.binary_hash = r->binary_hash;
    pi.command_hash = r->command_hash;
    memcpy(pi.command, r->command, sizeof pi.command);
    memcpy(pi.exe, r->exe, sizeof pi.exe < sizeof r->exe ? sizeof pi.exe : sizeof r->exe);
    pi.exe[sizeof pi.exe - 1] = 0;
    for (uint32_t i = 0; i < snap->n_sites; i++) {
        if (snap->sites[i].module_hash || snap->sites[i].offset) {
            pi.sites++;
            pi.bytes += snap->sites[i].bytes;
        }
    }
    memcpy(pi.proc, snap->proc, sizeof pi.proc);
    pi.serial = r->serial;
    pi.registration = r->registration;
    pi.binary_arm = snap->binary_arm;
    pi.ended = r->ended;
    pi.rss_bytes = snap->proc[HKSHM_PROC_RSS_BYTES];
    pi.page_faults = snap->proc[HKSHM_PROC_PAGE_FAULTS];
    uint64_t hb = snap->heartbeat_ns;
    pi.last_heartbeat_ms_ago = hb && now > hb ? (now - hb) / 1000000 : 0;
    ops->proc(&pi, arg);
}

int hkd_collect(hkd_collector *c, const hkd_collect_ops *ops, void *arg, hkd_collect_stats *st)
{
    hkd_collect_stats local;
    if (!st)
        st = &local;
    memset(st, 0, sizeof *st);
    uint64_t now = hkd_now_ns();
    c->passes++;
    uint32_t span = hkd_registry_span();
    for (uint32_t i = c->first; i < span; i += c->step) {
        const hkd_reg *r = hkd_registry_at(i);
        if (!r)
            continue;
        uint32_t rank = (i - c->first) / c->step;
        reg_track *t = &c->tracks[rank];
        int fresh = t->serial != r->serial;
        if (fresh) {
            t->serial = r->serial;
            t->n_prev = 0;
            t->faults = 0;
            t->busy = 0;
        }
        /* A later registration's counters were partly counted by another
         * daemon: its first snapshot is only the baseline. */
        int quiet = fresh && r->registration > 1;
        /* Each registration merges its histograms every HIST_EVERY passes,
         * staggered by its rank among this collector's: every interval
         * carries an eighth of the merge instead of every eighth interval
         * all of it, and so does each collector.  Its first snapshot and
         * its last merge theirs whole. */
        int with_hist = fresh || r->ended || (c->passes + rank) % HIST_EVERY == 0;
        int rc = hkd_region_snapshot(r->region, &c->scratch, t->busy ? 1 : SNAP_TRIES, with_hist);
        if (rc == 0 && diff_and_report(c, t, &c->scratch, r->uid, quiet, with_hist, ops, arg, st) == -EAGAIN) {
            with_hist = 1;
            rc = hkd_region_snapshot(r->region, &c->scratch, SNAP_TRIES, 1);
            if (rc == 0)
                diff_and_report(c, t, &c->scratch, r->uid, quiet, 1, ops, arg, st);
        }
        t->busy = rc < 0;
        if (rc < 0) {
            /* Its first snapshot is still to come: the next one is new too. */
            if (fresh)
                t->serial = 0;
            st->skipped_busy++;
            continue;
        }
        if (r->ended)
            st->ended++;
        else
            st->live++;
        report_proc(r, &c->scratch, now, ops, arg);
    }
    return 0;
}
