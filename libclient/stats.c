/* The statistics report (HAKMEM_STATS=1 at exit, or hakmem_report()).
 * Formats into a stack buffer and writes whole lines; allocates nothing, so
 * it is safe at any point of shutdown. */
#include "bigcache.h"
#include "hakmem_shm.h"
#include "region.h"
#include "knobs.h"
#include "counters.h"
#include "hakmem.h"
#include "heap.h"
#include "internal.h"
#include "large.h"
#include "lock.h"
#include "options.h"
#include "os.h"
#include "packed.h"
#include "purge_pace.h"
#include "segment.h"
#include "shm_client.h"
#include "site.h"
#include "stats.h"
#include "counters.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define TOP_SITES 20

void hakmem_get_stats(hakmem_stats *out) __attribute__((visibility("default")));
void hakmem_report(int fd) __attribute__((visibility("default")));
void hakmem_get_knobs(hakmem_knobs *out) __attribute__((visibility("default")));

void hakmem_get_knobs(hakmem_knobs *out)
{
    uint32_t arm = hk_region_binary_arm();
    out->binary_arm = arm == HKSHM_NO_ARM ? -1 : (int32_t)arm;
    _Static_assert(HK_KNOBS <= HAKMEM_KNOBS_MAX, "the public struct holds every knob");
    for (unsigned k = 0; k < HAKMEM_KNOBS_MAX; k++)
        out->value[k] = k < HK_KNOBS ? hk_knob(k) : 0;
}

void hakmem_get_stats(hakmem_stats *out)
{
    hk_bigcache_stats bc;
    hk_large_stats ls;
    hk_bigcache_get_stats(&bc);
    hk_large_get_stats(&ls);
    memset(out, 0, sizeof *out);
    out->bigcache_hits = bc.hits;
    out->bigcache_misses = bc.misses;
    out->bigcache_puts = bc.puts;
    out->bigcache_evictions = bc.evictions;
    out->large_allocs = ls.allocs;
    out->large_frees = ls.frees;
    out->large_mapped_bytes = ls.mapped_bytes;
    out->segments_mapped = hk_segment_mapped_count();
    out->segment_bytes_mapped = out->segments_mapped * HK_SEGMENT_SIZE;
    out->bytes_purged = hk_segment_purged_bytes();
    out->remote_frees_collected = hk_heap_remote_collected();
    out->sites = hk_site_count();
    out->threads_live = hk_heap_live_count();
}

void hk_stats_proc_counters(uint64_t *alloc_ns, uint64_t *syscalls, uint64_t *allocs, uint64_t *bytes)
{
    hk_counters c;
    hk_counters_read(&c);
    *alloc_ns = c.slow_ns;
    *syscalls = 0;
    for (unsigned k = 0; k < HK_SYS_KINDS; k++)
        *syscalls += c.syscalls[k];
    *allocs = c.small_allocs + c.medium_allocs + c.large_allocs;
    *bytes = c.small_bytes + c.medium_bytes + c.large_bytes;
}

typedef struct out_buf {
    int fd;
    size_t len;
    char data[4096];
} out_buf;

static void flush(out_buf *o)
{
    size_t off = 0;
    while (off < o->len) {
        ssize_t w = write(o->fd, o->data + off, o->len - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    o->len = 0;
}

__attribute__((format(printf, 2, 3))) static void say(out_buf *o, const char *fmt, ...)
{
    if (sizeof o->data - o->len < 512) flush(o);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->data + o->len, sizeof o->data - o->len, fmt, ap);
    va_end(ap);
    if (n > 0) o->len += (size_t)n < sizeof o->data - o->len ? (size_t)n : sizeof o->data - o->len - 1;
}

typedef struct top_sites {
    unsigned n;
    hk_site_view v[TOP_SITES];
} top_sites;

static void keep_top(const hk_site_view *v, void *arg)
{
    top_sites *t = arg;
    unsigned i = t->n < TOP_SITES ? t->n++ : TOP_SITES - 1;
    if (i == TOP_SITES - 1 && t->n == TOP_SITES && t->v[i].counters.bytes >= v->counters.bytes) return;
    t->v[i] = *v;
    while (i > 0 && t->v[i - 1].counters.bytes < t->v[i].counters.bytes) {
        hk_site_view tmp = t->v[i - 1];
        t->v[i - 1] = t->v[i];
        t->v[i] = tmp;
        i--;
    }
}

static const char *basename_of(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static void size_text(char *buf, size_t n, uint64_t bytes)
{
    if (bytes >= (10ull << 30)) snprintf(buf, n, "%lluG", (unsigned long long)(bytes >> 30));
    else if (bytes >= (10ull << 20)) snprintf(buf, n, "%lluM", (unsigned long long)(bytes >> 20));
    else if (bytes >= (10ull << 10)) snprintf(buf, n, "%lluK", (unsigned long long)(bytes >> 10));
    else snprintf(buf, n, "%llu", (unsigned long long)bytes);
}

static hk_lock report_lock = HK_LOCK_INIT;
static top_sites top;                 /* static: the report may run on a small stack */

void hakmem_report(int fd)
{
    hakmem_stats s;
    hk_bigcache_stats bc;
    hk_large_stats ls;
    hakmem_get_stats(&s);
    hk_bigcache_get_stats(&bc);
    hk_large_get_stats(&ls);
    out_buf o = { .fd = fd };

    char exe[128];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    say(&o, "hakmem %s report: pid %d (%s)\n", HAKMEM_VERSION, (int)getpid(), basename_of(exe));
    say(&o, "  heaps live %u, segments %llu (%llu MiB), purged %llu MiB, remote frees collected %llu\n",
        s.threads_live, (unsigned long long)s.segments_mapped,
        (unsigned long long)(s.segment_bytes_mapped >> 20), (unsigned long long)(s.bytes_purged >> 20),
        (unsigned long long)s.remote_frees_collected);
    hk_packed_figures pk;
    hk_packed_figures_get(&pk);
    say(&o, "  packed: chunks %llu (%llu MiB), in use %llu KiB, free blocks %llu (%llu KiB), purged %llu MiB\n",
        (unsigned long long)pk.chunks, (unsigned long long)(pk.chunks * HK_SEGMENT_SIZE >> 20),
        (unsigned long long)(pk.used_bytes >> 10), (unsigned long long)pk.free_blocks,
        (unsigned long long)(pk.free_bytes >> 10), (unsigned long long)(pk.purged_bytes >> 20));
    say(&o, "  large: allocs %llu, frees %llu, mapped %llu MiB, kept by their threads %llu (%llu MiB), "
        "THP blocks %llu (kernel THP mode %s)\n",
        (unsigned long long)ls.allocs, (unsigned long long)ls.frees,
        (unsigned long long)(ls.mapped_bytes >> 20), (unsigned long long)ls.kept_blocks,
        (unsigned long long)(ls.kept_bytes >> 20), (unsigned long long)ls.thp_blocks,
        hk_os_thp_mode() == 2 ? "always" : hk_os_thp_mode() == 1 ? "madvise" : "never");
    if (ls.move_unit != 0) {
        if (ls.moved_touch_ns != 0)
            say(&o, "  large moves: cached memory cut and moved by %u KiB (a page moved alone cost %u ns "
                "more to touch)\n", ls.move_unit >> 10, ls.moved_touch_ns);
        else
            say(&o, "  large moves: cached memory cut and moved by %u KiB (HAKMEM_MOVES_TRAP)\n", ls.move_unit >> 10);
    }
    uint64_t lookups = bc.hits + bc.misses;
    say(&o, "  BigCache: hits %llu, misses %llu, puts %llu, evictions %llu, hit rate %.1f%%, cached %llu MiB%s\n",
        (unsigned long long)bc.hits, (unsigned long long)bc.misses, (unsigned long long)bc.puts,
        (unsigned long long)bc.evictions, lookups ? 100.0 * (double)bc.hits / (double)lookups : 0.0,
        (unsigned long long)(bc.cached_bytes >> 20), hk_opt.bigcache ? "" : " (off)");
    char daemon[HK_SHM_DESCRIBE_MAX];
    if (hk_opt.baseline) snprintf(daemon, sizeof daemon, "baseline mode (daemon ignored)");
    else hk_shm_client_describe(daemon, sizeof daemon);
    say(&o, "  daemon: %s\n", daemon);
    if (!hk_opt.baseline) {
        uint64_t steps, ns;
        hk_shm_client_cost(&steps, &ns);
        struct rusage ru;
        double cpu = getrusage(RUSAGE_SELF, &ru) == 0
                         ? (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
                               ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6
                         : 0.0;
        say(&o, "  daemon plane: %llu steps, %.3f ms, %.3f%% of this process's CPU\n", (unsigned long long)steps,
            (double)ns / 1e6, cpu > 0 ? 100.0 * (double)ns / 1e9 / cpu : 0.0);
    }
    hakmem_knobs kn;
    hakmem_get_knobs(&kn);
    char bc_budget[16], thr[16];
    size_text(bc_budget, sizeof bc_budget, (uint64_t)kn.value[HK_KNOB_BIGCACHE_KIB] << 10);
    size_text(thr, sizeof thr, kn.value[HK_KNOB_LARGE_THRESHOLD]);
    char arm[32] = "none";
    if (kn.binary_arm >= 0) snprintf(arm, sizeof arm, "%d (daemon)", kn.binary_arm);
    say(&o, "  knobs: purge %u ms (now %u ms, raised by %llu refaults), retained segments %u, partial reuse %u, THP small %s large %s, large >= %s, "
            "BigCache %s, medium page blocks %u, populate %u KiB, packed over %u KiB; binary arm %s\n",
        kn.value[HK_KNOB_PURGE_DELAY_MS], hk_purge_delay_current_ms(), (unsigned long long)hk_purge_refaults(),
        kn.value[HK_KNOB_RETAINED_SEGMENTS], kn.value[HK_KNOB_PARTIAL_REUSE],
        kn.value[HK_KNOB_THP] & HK_THP_SMALL ? "on" : "off", kn.value[HK_KNOB_THP] & HK_THP_LARGE ? "on" : "off", thr, bc_budget, kn.value[HK_KNOB_MEDIUM_PAGE_BLOCKS],
        kn.value[HK_KNOB_POPULATE_KIB], kn.value[HK_KNOB_PACKED_KIB], arm);

    hk_lock_acquire(&report_lock);
    top.n = 0;
    hk_site_for_each(keep_top, &top);
    say(&o, "  sites: %u (top %u by bytes; small allocations sampled every %u bytes)\n",
        s.sites, top.n, hk_opt.sample_bytes);
    if (top.n) {
        say(&o, "    %-4s %-36s %10s %8s %8s %8s %7s %-24s\n", "site", "module+offset", "allocs", "bytes",
            "lg-frees", "size~", "bc-hit", "policy");
    }
    for (unsigned i = 0; i < top.n; i++) {
        const hk_site_view *v = &top.v[i];
        const hk_site_counters *c = &v->counters;
        char where[64], bytes[16], median[16], hit[16], pol[64];
        snprintf(where, sizeof where, "%.24s+0x%llx", basename_of(v->module), (unsigned long long)v->offset);
        size_text(bytes, sizeof bytes, c->bytes);
        uint64_t half = c->allocs / 2, seen = 0;
        unsigned b = 0;
        for (; b < HK_SITE_HIST; b++) { seen += c->size_hist[b]; if (seen > half) break; }
        size_text(median, sizeof median, (uint64_t)1 << (b < HK_SITE_HIST ? b : 0));
        uint64_t bl = c->bigcache_hits + c->bigcache_misses;
        if (bl) snprintf(hit, sizeof hit, "%.1f%%", 100.0 * (double)c->bigcache_hits / (double)bl);
        else snprintf(hit, sizeof hit, "-");
        char thr[16];
        size_text(thr, sizeof thr, v->policy.large_threshold);
        snprintf(pol, sizeof pol, "large>=%s slots=%u thp=%s %s", thr, v->policy.bigcache_slots,
                 v->policy.thp ? "on" : "off", v->policy.from_daemon ? "(daemon)" : "(default)");
        say(&o, "    %-4u %-36s %10llu %8s %8llu %8s %7s %s\n", v->index, where,
            (unsigned long long)c->allocs, bytes, (unsigned long long)c->frees, median, hit, pol);
    }
    hk_lock_release(&report_lock);
    flush(&o);
}
