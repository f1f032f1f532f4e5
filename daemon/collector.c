/* Collector.
 *
 * The daemon only reads a slot while its owner may be writing, so it copies
 * under the slot's sequence number and retries a few times; a slot that is
 * always mid-write (its owner died inside a flush) is skipped until reaped.
 * Per process it remembers the last counters of each site to turn the
 * client's cumulative totals into per-interval differences. */
#include "collector.h"

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>

#include "segment.h"

#define VERIFY_EVERY 8              /* intervals between /proc start-time checks */
#define HIST_EVERY 8                /* intervals between size-histogram merges */
#define SITE_SCALARS (offsetof(hkshm_site, size_hist) / 8)
#define CLAIM_PATIENCE 50           /* intervals a slot may stay half-claimed */
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

typedef struct slot_track {
    uint32_t pid;
    uint64_t start_time;
    int      valid;
    uint64_t flushes;
    uint64_t faults;
    uint32_t n_prev;
    uint32_t claiming;
    uint64_t next_verify;
    site_prev *prev;                 /* HKSHM_SLOT_SITES, in the collector's arrays */
    hist_prev *hprev;
} slot_track;

struct hkd_collector {
    uint64_t passes;
    int no_history;                  /* the first pass counts too */
    uint32_t first, step;            /* the slots this collector takes */
    slot_track tracks[HKSHM_MAX_SLOTS];
    hkshm_slot scratch;
    uint64_t bytes_by_site[HKSHM_SLOT_SITES];
    site_prev *prev_all;             /* every slot's, one mapping each (see track_array) */
    hist_prev *hprev_all;
};

void hkd_collector_slots(hkd_collector *c, uint32_t first, uint32_t step)
{
    c->first = first;
    c->step = step ? step : 1;
}

void hkd_collector_no_history(hkd_collector *c)
{
    c->no_history = 1;
}

#define HUGE_PAGE ((size_t)2 << 20)
#define PREV_BYTES ((size_t)HKSHM_MAX_SLOTS * HKSHM_SLOT_SITES * sizeof(site_prev))
#define HPREV_BYTES ((size_t)HKSHM_MAX_SLOTS * HKSHM_SLOT_SITES * sizeof(hist_prev))

/* Zero pages, touched as slots fill.  At 256 processes the previous
 * counters are 14 MB streamed every interval: past the first huge page
 * (the slots a small system uses) they ask for huge pages, a TLB miss a
 * page instead of one every few dozen sites. */
static void *track_array(size_t size)
{
    char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    char *from = (char *)(((uintptr_t)p + 2 * HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (from < p + size)
        madvise(from, (size_t)(p + size - from), MADV_HUGEPAGE);   /* advice only */
    return p;
}

hkd_collector *hkd_collector_new(void)
{
    hkd_collector *c = calloc(1, sizeof(hkd_collector));
    if (!c)
        return NULL;
    c->step = 1;
    c->prev_all = track_array(PREV_BYTES);
    c->hprev_all = track_array(HPREV_BYTES);
    if (!c->prev_all || !c->hprev_all) {
        hkd_collector_free(c);
        return NULL;
    }
    for (uint32_t i = 0; i < HKSHM_MAX_SLOTS; i++) {
        c->tracks[i].prev = c->prev_all + (size_t)i * HKSHM_SLOT_SITES;
        c->tracks[i].hprev = c->hprev_all + (size_t)i * HKSHM_SLOT_SITES;
    }
    return c;
}

void hkd_collector_free(hkd_collector *c)
{
    if (!c)
        return;
    if (c->prev_all)
        munmap(c->prev_all, PREV_BYTES);
    if (c->hprev_all)
        munmap(c->hprev_all, HPREV_BYTES);
    free(c);
}

static uint64_t ld64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

int hkd_slot_snapshot(const hkshm_slot *s, hkshm_slot *out, int max_tries)
{
    return hkd_slot_snapshot_ex(s, out, max_tries, 1);
}

int hkd_slot_snapshot_ex(const hkshm_slot *s, hkshm_slot *out, int max_tries, int with_hist)
{
    for (int tries = 0; tries < max_tries; tries++) {
        uint64_t s1 = atomic_load_explicit(&((hkshm_slot *)s)->seq, memory_order_acquire);
        if (s1 & 1) {
            sched_yield();
            continue;
        }
        /* Word-wise relaxed loads: the copy may race with the owner, and the
         * sequence check below throws away any torn result. */
        const uint64_t *src = (const uint64_t *)s;
        uint64_t *dst = (uint64_t *)out;
        size_t head = offsetof(hkshm_slot, sites) / 8;
        for (size_t i = 0; i < head; i++)
            dst[i] = ld64(&src[i]);
        uint32_t n = out->n_sites;
        if (n > HKSHM_SLOT_SITES)
            n = HKSHM_SLOT_SITES;
        if (with_hist) {
            size_t words = (size_t)n * sizeof(hkshm_site) / 8;
#pragma GCC unroll 4
            for (size_t i = 0; i < words; i++)
                dst[head + i] = ld64(&src[head + i]);
        } else {
            /* Histograms are merged every few intervals: skip 57% of the copy.
             * The strided reads defeat the prefetcher; ask a few sites ahead. */
            for (uint32_t k = 0; k < n; k++) {
                size_t base = head + (size_t)k * (sizeof(hkshm_site) / 8);
                const char *ahead = (const char *)&s->sites[k + SNAP_PREFETCH];
                __builtin_prefetch(ahead);
                __builtin_prefetch(ahead + 64);
                /* Unrolled: as a loop the copy took eight instructions a word. */
#pragma GCC unroll 12
                for (size_t i = 0; i < SITE_SCALARS; i++)
                    dst[base + i] = ld64(&src[base + i]);
            }
        }
        atomic_thread_fence(memory_order_acquire);
        uint64_t s2 = atomic_load_explicit(&((hkshm_slot *)s)->seq, memory_order_relaxed);
        if (s1 == s2) {
            out->n_sites = n;
            if (out->n_modules > HKSHM_SLOT_MODULES)
                out->n_modules = HKSHM_SLOT_MODULES;
            out->exe[HKSHM_EXE_MAX - 1] = 0;
            /* A path that fills its field has no terminator of its own. */
            for (uint32_t m = 0; m < out->n_modules; m++)
                out->modules[m].path[HKSHM_MODULE_PATH - 1] = 0;
            return 0;
        }
    }
    return -EBUSY;
}

int hkd_slot_reap(hkshm_slot *s, uint32_t pid)
{
    uint32_t expect = pid;
    if (!atomic_compare_exchange_strong(&s->pid, &expect, HKSHM_PID_RESERVED))
        return -EBUSY;
    atomic_store(&s->state, HKSHM_SLOT_FREE);
    s->start_time = 0;
    atomic_store(&s->read_gen, 0);
    atomic_store(&s->gen_seen, 0);
    atomic_store(&s->heartbeat_ns, 0);
    atomic_store(&s->seq, 0);
    s->flushes = 0;
    s->rss_bytes = s->page_faults = 0;
    s->n_sites = s->n_modules = s->sites_applied = 0;
    s->build_id_len = 0;
    memset(s->exe, 0, sizeof s->exe);
    atomic_store_explicit(&s->pid, 0, memory_order_release);
    return 0;
}

static void forget(slot_track *t)
{
    t->valid = 0;
    t->n_prev = 0;
    t->claiming = 0;
}

static uint64_t delta32(uint64_t now, uint32_t before)
{
    uint32_t d = (uint32_t)now - before;
    return d < (1u << 31) ? d : 0;
}

/* Differences of one snapshot against the track; reports them unless quiet. */
static void diff_and_report(hkd_collector *c, slot_track *t, const hkshm_slot *snap, int quiet, int with_hist,
                            const hkd_collect_ops *ops, void *arg, hkd_collect_stats *st)
{
    uint32_t n = snap->n_sites;
    uint64_t faults_now = snap->page_faults;
    uint64_t dfaults = faults_now >= t->faults ? faults_now - t->faults : 0;
    t->faults = faults_now;
    uint64_t total_bytes = 0;
    for (uint32_t i = 0; i < n; i++) {
        const hkshm_site *s = &snap->sites[i];
        site_prev *p = &t->prev[i];
        /* The previous counters stream from memory, one slot's worth at a time. */
        __builtin_prefetch(&t->prev[i + PREV_PREFETCH], 1);
        if (i >= t->n_prev || p->module_hash != s->module_hash || p->offset != s->offset) {
            memset(p, 0, sizeof *p);
            memset(&t->hprev[i], 0, sizeof t->hprev[i]);
            p->module_hash = s->module_hash;
            p->offset = s->offset;
        }
        c->bytes_by_site[i] = s->bytes >= p->bytes ? s->bytes - p->bytes : 0;
        total_bytes += c->bytes_by_site[i];
    }
    if (n > t->n_prev)
        t->n_prev = n;
    /* Faults per byte, once per slot: a division per site was a fifth of the pass. */
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
        d.domain = 0;               /* this ABI does not say who the process runs as */
        d.module = s->module < snap->n_modules ? snap->modules[s->module].path : "";
        d.live_bytes = s->live_bytes;
        d.has_hist = 0;
        d.changed = !quiet && ((uint32_t)s->allocs != p->allocs || (uint32_t)s->frees != p->frees ||
                               s->slow_ns != p->slow_ns || (uint32_t)s->bigcache_hits != p->hits ||
                               (uint32_t)s->bigcache_misses != p->misses ||
                               (uint32_t)s->bigcache_evictions != p->evictions || (uint32_t)s->thp_blocks != p->thp);
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
        }
        if (d.changed || quiet) {
            p->allocs = (uint32_t)s->allocs;
            p->frees = (uint32_t)s->frees;
            p->bytes = s->bytes;
            p->hits = (uint32_t)s->bigcache_hits;
            p->misses = (uint32_t)s->bigcache_misses;
            p->evictions = (uint32_t)s->bigcache_evictions;
            p->thp = (uint32_t)s->thp_blocks;
            p->slow_ns = s->slow_ns;
            if (with_hist)
                memcpy(t->hprev[i].b, s->size_hist, sizeof t->hprev[i].b);
        }
        st->site_records++;
        if (ops->site)
            ops->site(&d, &p->cookie, arg);
    }
}

void hkd_collector_drop_cookies(hkd_collector *c, int (*stale)(const void *cookie, void *arg), void *arg)
{
    /* A cookie at index i >= n_prev is never read: diff_and_report clears
     * it first (and forget() and a new process set n_prev to 0). */
    for (uint32_t s = c->first; s < HKSHM_MAX_SLOTS; s += c->step) {
        slot_track *t = &c->tracks[s];
        for (uint32_t i = 0; i < t->n_prev; i++)
            if (t->prev[i].cookie && stale(t->prev[i].cookie, arg))
                t->prev[i].cookie = NULL;
    }
}

static void report_proc(const hkshm_slot *snap, uint64_t now, const hkd_collect_ops *ops, void *arg)
{
    if (!ops->proc)
        return;
    hkd_proc_info pi;
    memset(&pi, 0, sizeof pi);
    pi.pid = (pid_t)snap->pid;
    memcpy(pi.exe, snap->exe, sizeof pi.exe < sizeof snap->exe ? sizeof pi.exe : sizeof snap->exe);
    pi.exe[sizeof pi.exe - 1] = 0;
    for (uint32_t i = 0; i < snap->n_sites; i++) {
        if (snap->sites[i].module_hash || snap->sites[i].offset) {
            pi.sites++;
            pi.bytes += snap->sites[i].bytes;
        }
    }
    pi.rss_bytes = snap->rss_bytes;
    pi.page_faults = snap->page_faults;
    uint64_t hb = snap->heartbeat_ns;
    pi.last_heartbeat_ms_ago = hb && now > hb ? (now - hb) / 1000000 : 0;
    ops->proc(&pi, arg);
}

int hkd_collect(hkd_collector *c, hkshm_header *h, const hkd_collect_ops *ops, void *arg,
                hkd_collect_stats *st)
{
    hkd_collect_stats local;
    if (!st)
        st = &local;
    memset(st, 0, sizeof *st);
    uint64_t now = hkd_now_ns();
    uint64_t stale_ns = 2000000000ull + 2ull * atomic_load(&h->flush_interval_ms) * 1000000ull;
    int first = c->passes == 0 && !c->no_history;
    c->passes++;

    for (uint32_t i = c->first; i < HKSHM_MAX_SLOTS; i += c->step) {
        hkshm_slot *s = hkshm_slot_at(h, i);
        slot_track *t = &c->tracks[i];
        uint32_t pid = atomic_load_explicit(&s->pid, memory_order_acquire);
        if (pid == 0 || pid == HKSHM_PID_RESERVED) {
            forget(t);
            continue;
        }
        uint32_t state = atomic_load_explicit(&s->state, memory_order_acquire);
        if (state == HKSHM_SLOT_CLAIMING || state == HKSHM_SLOT_FREE) {
            /* Identity not written yet, or the claimer died before writing it. */
            if (!hkd_proc_alive((pid_t)pid, 0) || ++t->claiming > CLAIM_PATIENCE) {
                if (hkd_slot_reap(s, pid) == 0)
                    st->reaped++;
                forget(t);
            }
            continue;
        }
        /* Each slot merges its histograms every HIST_EVERY passes, the slots
         * staggered by their rank among this collector's: every interval
         * carries an eighth of the merge instead of every eighth interval
         * all of it, and so does each collector (staggered by slot index,
         * the even-odd split put every interval's merges on one thread). */
        uint32_t rank = (i - c->first) / c->step;
        int with_hist = first || (c->passes + rank) % HIST_EVERY == 0 || state == HKSHM_SLOT_EXITED || !t->valid ||
                        t->pid != pid;
        if (hkd_slot_snapshot_ex(s, &c->scratch, 8, with_hist) < 0) {
            st->skipped_busy++;
            if (!hkd_proc_alive((pid_t)pid, s->start_time) && hkd_slot_reap(s, pid) == 0) {
                st->reaped++;
                forget(t);
            }
            continue;
        }
        hkshm_slot *snap = &c->scratch;
        if (snap->pid != pid) {       /* changed hands during the copy */
            forget(t);
            continue;
        }
        int newproc = !t->valid || t->pid != pid || t->start_time != snap->start_time;
        if (newproc) {
            t->valid = 1;
            t->pid = pid;
            t->start_time = snap->start_time;
            t->flushes = UINT64_MAX;
            t->n_prev = 0;
            t->faults = 0;
            t->claiming = 0;
            t->next_verify = c->passes + VERIFY_EVERY;
        }

        /* Liveness: exited by its own word, or gone (possibly with its pid reused). */
        int dead = state == HKSHM_SLOT_EXITED;
        if (!dead) {
            uint64_t hb = snap->heartbeat_ns;
            int stale = hb == 0 || now < hb || now - hb > stale_ns;
            int verify = stale && c->passes >= t->next_verify;
            if (verify)
                t->next_verify = c->passes + VERIFY_EVERY;
            dead = !hkd_proc_alive((pid_t)pid, verify ? snap->start_time : 0);
        }

        /* Unchanged processes still report their sites (zero deltas) so
         * the merged view knows who uses a site. */
        diff_and_report(c, t, snap, first, with_hist, ops, arg, st);
        t->flushes = snap->flushes;
        if (dead) {
            if (hkd_slot_reap(s, pid) == 0)
                st->reaped++;
            forget(t);
            continue;
        }
        st->live++;
        report_proc(snap, now, ops, arg);
    }
    return 0;
}
