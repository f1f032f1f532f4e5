/* Metrics exposition.  Samples of one family must be contiguous in the text
 * format, so the sites are read once per family, a page at a time
 * (hkd_site_page), and the text goes out in pieces through a FILE whose
 * writes land in a bounded buffer: nothing grows with the number of sites.
 * Processes are few (bounded by the segment's slots) and are copied once
 * (proc_copy.h). */
#include "metrics.h"
#include "binaries.h"
#include "core_api.h"
#include "fleet.h"
#include "metrics_file.h"
#include "proc_copy.h"
#include "utf8.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SITE_PAGE 64

/* ---- bounded output ---- */

typedef struct out {
    hkd_metrics_sink sink;
    void *arg;
    char *buf;                  /* HKD_METRICS_PIECE bytes and a NUL */
    size_t len;
    int err;                    /* the sink's error, once it failed */
} out;

/* Hands out the buffer up to its last complete line (all of it when it
 * holds no newline: only a line longer than a piece is ever cut). */
static int out_flush(out *o)
{
    size_t n = o->len;
    while (n > 0 && o->buf[n - 1] != '\n')
        n--;
    if (n == 0)
        n = o->len;
    if (n == 0)
        return 0;
    char keep = o->buf[n];
    o->buf[n] = '\0';
    int r = o->sink(o->buf, n, o->arg);
    o->buf[n] = keep;
    if (r < 0)
        return r;
    memmove(o->buf, o->buf + n, o->len - n);
    o->len -= n;
    return 0;
}

static ssize_t out_write(void *cookie, const char *p, size_t n)
{
    out *o = cookie;
    size_t done = 0;
    while (done < n && !o->err) {
        size_t room = HKD_METRICS_PIECE - o->len;
        if (room == 0) {
            o->err = out_flush(o);
            continue;
        }
        size_t k = n - done < room ? n - done : room;
        memcpy(o->buf + o->len, p + done, k);
        o->len += k;
        done += k;
    }
    return o->err ? -1 : (ssize_t)n;
}

/* ---- text ---- */

/* Label values: valid UTF-8 with backslash, double quote and newline
 * escaped, as the format requires; any other control character or byte
 * that is not UTF-8 becomes U+FFFD, so one odd module path never makes a
 * scrape unparsable.  Written as name="value" into out, which holds
 * LABEL_MAX bytes (a value of HKD_MODULE_MAX bytes grows at most 3-fold);
 * returns the length. */
#define LABEL_MAX (16 + 3 * HKD_MODULE_MAX)

static size_t put_label(char *out, const char *name, const char *v)
{
    size_t o = (size_t)snprintf(out, 16, "%s=\"", name);
    const unsigned char *p = (const unsigned char *)v;
    size_t n = strnlen(v, HKD_MODULE_MAX);
    while (n > 0 && o + 6 <= LABEL_MAX) {   /* room for a character, the quote and the NUL */
        size_t len = hk_utf8_len(p, n);
        if (len == 1 && (*p == '\\' || *p == '"')) {
            out[o++] = '\\';
            out[o++] = (char)*p;
        } else if (len == 1 && *p == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else if (len == 0 || hk_utf8_is_control(p, len)) {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            len = len ? len : 1;
        } else {
            memcpy(out + o, p, len);
            o += len;
        }
        p += len, n -= len;
    }
    out[o++] = '"';
    out[o] = '\0';
    return o;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s && s[1] ? s + 1 : path;
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void put_double(FILE *f, double v)
{
    if (isnan(v))
        fputs("NaN", f);
    else if (isinf(v))
        fputs(v > 0 ? "+Inf" : "-Inf", f);
    else
        fprintf(f, "%.10g", v);
}

/* "{exe=...,site=...,domain=..." (left open: a family may add labels),
 * made once a site and pass; out holds SITE_LABELS_MAX bytes. */
#define SITE_LABELS_MAX (3 * LABEL_MAX)

static void site_labels(char *out, const hkd_site_info *s)
{
    char key[40], domain[16];
    snprintf(key, sizeof key, "%016" PRIx64 ":%" PRIx64, s->key.module_hash, s->key.offset);
    snprintf(domain, sizeof domain, "%" PRIu32, s->key.domain);
    size_t o = 0;
    out[o++] = '{';
    o += put_label(out + o, "exe", base_name(s->module));
    out[o++] = ',';
    o += put_label(out + o, "site", key);
    out[o++] = ',';
    put_label(out + o, "domain", domain);
}

static void proc_labels(FILE *f, const hkd_proc_info *p)
{
    char pid[16], lab[LABEL_MAX];
    snprintf(pid, sizeof pid, "%d", (int)p->pid);
    fputc('{', f);
    put_label(lab, "exe", base_name(p->exe));
    fputs(lab, f);
    fputc(',', f);
    put_label(lab, "pid", pid);
    fputs(lab, f);
    fputc('}', f);
}

/* ---- site families ---- */

typedef enum { SITE_U64, SITE_SECONDS, SITE_INT, SITE_HIST, SITE_ARM_PULLS, SITE_ARM_MEAN } site_kind;

typedef struct site_family {
    const char *name, *type, *help;
    site_kind kind;
    size_t off;                                  /* SITE_U64, SITE_SECONDS: the field */
    long long (*value)(const hkd_site_info *);   /* SITE_INT */
} site_family;

static long long v_processes(const hkd_site_info *s) { return s->processes; }
static long long v_large_threshold(const hkd_site_info *s) { return s->thresholds.large_threshold; }
static long long v_bigcache_slots(const hkd_site_info *s) { return s->thresholds.bigcache_slots; }
static long long v_thp(const hkd_site_info *s) { return s->thresholds.thp != 0; }
static long long v_pinned_arm(const hkd_site_info *s) { return s->pinned_arm; }
static long long v_settled(const hkd_site_info *s) { return s->settled != 0; }
static long long v_thin(const hkd_site_info *s) { return s->thin != 0; }

#define U64(name, type, help, field) { name, type, help, SITE_U64, offsetof(hkd_site_info, field), NULL }
#define INT(name, help, fn) { name, "gauge", help, SITE_INT, 0, fn }

static const site_family site_families[] = {
    U64("hakmem_site_allocs_total", "counter", "Allocations made at the site, all processes.", allocs),
    U64("hakmem_site_frees_total", "counter", "Frees of the site's blocks on the large path (only those carry their site).", frees),
    U64("hakmem_site_alloc_bytes_total", "counter", "Bytes allocated at the site.", bytes),
    U64("hakmem_site_live_bytes", "gauge", "Bytes allocated at the site and not yet freed.", live_bytes),
    U64("hakmem_site_bigcache_hits_total", "counter", "Large allocations served from BigCache.", bigcache_hits),
    U64("hakmem_site_bigcache_misses_total", "counter", "Large allocations BigCache could not serve.",
        bigcache_misses),
    U64("hakmem_site_bigcache_evictions_total", "counter", "Blocks evicted from BigCache and unmapped.",
        bigcache_evictions),
    U64("hakmem_site_thp_blocks_total", "counter", "Blocks advised to use transparent huge pages.", thp_blocks),
    { "hakmem_site_slow_path_seconds_total", "counter", "Time spent in the allocator's slow paths for the site.",
      SITE_SECONDS, offsetof(hkd_site_info, slow_ns), NULL },
    INT("hakmem_site_processes", "Live processes reporting the site.", v_processes),
    INT("hakmem_site_large_threshold_bytes", "Published size from which the site's allocations are mapped directly.",
        v_large_threshold),
    INT("hakmem_site_bigcache_slots", "Published BigCache slots for the site (0: off).", v_bigcache_slots),
    INT("hakmem_site_thp_enabled", "1 when the site's large blocks are advised to use huge pages.", v_thp),
    INT("hakmem_site_pinned_arm", "Arm forced by an operator, -1 when the learner chooses.", v_pinned_arm),
    INT("hakmem_site_settled", "1 when the learner exploits: every arm that matters tried, the best one published.",
        v_settled),
    INT("hakmem_site_thin", "1 when the site allocates too little to learn alone and runs its size band's arm.",
        v_thin),
    { "hakmem_site_alloc_size_bytes", "histogram", "Sizes of the site's allocations (log2 buckets).", SITE_HIST, 0,
      NULL },
    { "hakmem_site_arm_pulls_total", "counter", "Intervals in which the learner played the arm for the site.",
      SITE_ARM_PULLS, 0, NULL },
    { "hakmem_site_arm_mean_reward", "gauge", "Mean reward the learner measured for the arm at the site.",
      SITE_ARM_MEAN, 0, NULL },
};

/* Log2 buckets: bucket b holds sizes in [2^b, 2^(b+1)), so its upper bound
 * is 2^(b+1)-1 bytes.  _sum is the site's byte count. */
static void site_hist(FILE *f, const hkd_site_info *s, const char *labels)
{
    int top = -1;
    for (int b = 0; b < 32; b++)
        if (s->size_hist[b])
            top = b;
    uint64_t cum = 0;
    for (int b = 0; b <= top && b < 31; b++) {
        cum += s->size_hist[b];
        fprintf(f, "hakmem_site_alloc_size_bytes_bucket%s,le=\"%" PRIu64 "\"} %" PRIu64 "\n", labels,
                (UINT64_C(2) << b) - 1, cum);
    }
    if (top == 31)
        cum += s->size_hist[31];
    fprintf(f, "hakmem_site_alloc_size_bytes_bucket%s,le=\"+Inf\"} %" PRIu64 "\n", labels, cum);
    fprintf(f, "hakmem_site_alloc_size_bytes_sum%s} %" PRIu64 "\n", labels, s->bytes);
    fprintf(f, "hakmem_site_alloc_size_bytes_count%s} %" PRIu64 "\n", labels, cum);
}

static void site_sample(FILE *f, const site_family *fam, const hkd_site_info *s, const char *labels)
{
    uint64_t v;
    switch (fam->kind) {
    case SITE_U64:
        memcpy(&v, (const char *)s + fam->off, sizeof v);
        fprintf(f, "%s%s} %" PRIu64 "\n", fam->name, labels, v);
        break;
    case SITE_SECONDS:
        memcpy(&v, (const char *)s + fam->off, sizeof v);
        fprintf(f, "%s%s} ", fam->name, labels);
        put_double(f, (double)v * 1e-9);
        fputc('\n', f);
        break;
    case SITE_INT:
        fprintf(f, "%s%s} %lld\n", fam->name, labels, fam->value(s));
        break;
    case SITE_HIST:
        site_hist(f, s, labels);
        break;
    case SITE_ARM_PULLS:
    case SITE_ARM_MEAN:
        for (uint32_t a = 0; a < s->n_arms && a < HKD_MAX_ARMS; a++) {
            char arm[LABEL_MAX];
            put_label(arm, "arm", s->arms[a].name);
            fprintf(f, "%s%s,%s} ", fam->name, labels, arm);
            if (fam->kind == SITE_ARM_PULLS)
                fprintf(f, "%" PRIu64, s->arms[a].pulls);
            else
                put_double(f, s->arms[a].mean_reward);
            fputc('\n', f);
        }
        break;
    }
}

/* One family: a pass over every site, a page at a time. */
static int render_site_family(FILE *f, const out *o, const site_family *fam, hkd_site_info *page)
{
    family(f, fam->name, fam->type, fam->help);
    uint32_t cursor = 0;
    for (;;) {
        int k = hkd_site_page(&cursor, page, NULL, SITE_PAGE);
        if (k <= 0)
            return k;
        for (int i = 0; i < k; i++) {
            hkd_site_info *s = &page[i];
            char labels[SITE_LABELS_MAX];
            s->module[HKD_MODULE_MAX - 1] = '\0';
            for (uint32_t a = 0; a < s->n_arms && a < HKD_MAX_ARMS; a++)
                s->arms[a].name[HKD_ARM_NAME_MAX - 1] = '\0';
            site_labels(labels, s);
            site_sample(f, fam, s, labels);
        }
        if (ferror(f))
            return o->err ? o->err : -EIO;
    }
}

/* ---- process families ---- */

/* Values are exact integers; per_unit > 1 turns one into a fraction
 * (milliseconds into seconds). */
typedef struct proc_family {
    const char *name, *type, *help;
    uint64_t (*value)(const hkd_proc_info *);
    unsigned per_unit;
} proc_family;

static uint64_t proc_bytes(const hkd_proc_info *p) { return p->bytes; }
static uint64_t proc_rss(const hkd_proc_info *p) { return p->rss_bytes; }
static uint64_t proc_faults(const hkd_proc_info *p) { return p->page_faults; }
static uint64_t proc_sites(const hkd_proc_info *p) { return p->sites; }
static uint64_t proc_age_ms(const hkd_proc_info *p) { return p->last_heartbeat_ms_ago; }

static const proc_family proc_families[] = {
    { "hakmem_process_alloc_bytes_total", "counter", "Bytes the process allocated, all sites.", proc_bytes, 1 },
    { "hakmem_process_resident_memory_bytes", "gauge", "Resident set size the process last reported.", proc_rss, 1 },
    { "hakmem_process_page_faults_total", "counter", "Page faults the process last reported.", proc_faults, 1 },
    { "hakmem_process_sites", "gauge", "Distinct sites the process reports.", proc_sites, 1 },
    { "hakmem_process_heartbeat_age_seconds", "gauge", "Time since the process's last heartbeat.", proc_age_ms, 1000 },
};

static void render_procs(FILE *f, const hkd_proc_info *ps, size_t n)
{
    for (size_t k = 0; k < sizeof proc_families / sizeof proc_families[0]; k++) {
        const proc_family *pf = &proc_families[k];
        family(f, pf->name, pf->type, pf->help);
        for (size_t i = 0; i < n; i++) {
            uint64_t v = pf->value(&ps[i]);
            fputs(pf->name, f);
            proc_labels(f, &ps[i]);
            fputc(' ', f);
            if (pf->per_unit > 1)
                put_double(f, (double)v / pf->per_unit);
            else
                fprintf(f, "%" PRIu64, v);
            fputc('\n', f);
        }
    }
}

/* ---- domain families: per user (domain = uid), what the limits did ---- */

typedef struct domain_family {
    const char *name, *type, *help;
    uint64_t (*value)(const hkd_domain_info *);
} domain_family;

static uint64_t domain_sites(const hkd_domain_info *d) { return d->sites; }
static uint64_t domain_refused(const hkd_domain_info *d) { return d->refused; }
static uint64_t domain_evicted(const hkd_domain_info *d) { return d->evicted; }

static const domain_family domain_families[] = {
    { "hakmem_domain_sites", "gauge", "Sites of the user (uid) in the daemon's memory.", domain_sites },
    { "hakmem_domain_sites_refused_total", "counter",
      "Reports of new sites refused by the user's limits (per-user cap, new sites per interval).", domain_refused },
    { "hakmem_domain_sites_evicted_total", "counter",
      "Sites of the user that aged out of memory or made room (their learning archived).", domain_evicted },
};

typedef struct domain_pass {
    FILE *f;
    const domain_family *fam;
} domain_pass;

static int domain_sample(const hkd_domain_info *d, void *arg)
{
    const domain_pass *dp = arg;
    fprintf(dp->f, "%s{domain=\"%" PRIu32 "\"} %" PRIu64 "\n", dp->fam->name, d->domain, dp->fam->value(d));
    return 0;
}

/* A pass over the domains per family (they are few, copied each time). */
static int render_domains(FILE *f)
{
    int r = 0;
    for (size_t k = 0; r == 0 && k < sizeof domain_families / sizeof domain_families[0]; k++) {
        domain_pass dp = { f, &domain_families[k] };
        family(f, dp.fam->name, dp.fam->type, dp.fam->help);
        r = hkd_for_each_domain(domain_sample, &dp);
    }
    return r;
}

/* ---- binary families: the per-binary learner ---- */

typedef struct binary_family {
    const char *name, *type, *help;
    double (*value)(const hkd_binary_info *b, int arm);   /* arm < 0: one sample per binary */
    int per_arm;
} binary_family;

static double bin_processes(const hkd_binary_info *b, int arm) { (void)arm; return (double)b->processes; }
static double bin_live(const hkd_binary_info *b, int arm) { (void)arm; return b->live; }
static double bin_observations(const hkd_binary_info *b, int arm) { (void)arm; return (double)b->observations; }
static double bin_ignored(const hkd_binary_info *b, int arm) { (void)arm; return (double)b->ignored; }
static double bin_settled(const hkd_binary_info *b, int arm) { (void)arm; return b->settled != 0; }
static double bin_current(const hkd_binary_info *b, int arm) { return b->current == arm; }
static double bin_arm_runs(const hkd_binary_info *b, int arm) { return b->arms[arm].n; }
static double bin_arm_cost(const hkd_binary_info *b, int arm)
{
    return hkd_bin_stats_ratio(b->arms, arm, HKD_BIN_COST);
}

static const binary_family binary_families[] = {
    { "hakmem_binary_processes_total", "counter", "Processes of the binary seen since the daemon started.",
      bin_processes, 0 },
    { "hakmem_binary_processes", "gauge", "Processes of the binary running now.", bin_live, 0 },
    { "hakmem_binary_runs_total", "counter", "Runs (and windows of long runs) the learner took as evidence.",
      bin_observations, 0 },
    { "hakmem_binary_runs_ignored_total", "counter", "Runs too short to judge, or that changed arm midway.",
      bin_ignored, 0 },
    { "hakmem_binary_settled", "gauge", "1 once every arm of the binary has been tried enough to choose.",
      bin_settled, 0 },
    { "hakmem_binary_arm_current", "gauge", "1 for the arm published for the binary now.", bin_current, 1 },
    { "hakmem_binary_arm_runs", "gauge", "Runs of the binary on the arm (halved past the learner's window).",
      bin_arm_runs, 1 },
    { "hakmem_binary_arm_cost_ratio", "gauge",
      "The arm's geometric-mean cost against the default arm's at equal work (CPU plus priced memory per MiB allocated).",
      bin_arm_cost, 1 },
};

typedef struct binary_pass {
    FILE *f;
    const binary_family *fam;
} binary_pass;

static int binary_sample(const hkd_binary_info *b, void *arg)
{
    const binary_pass *bp = arg;
    char exe[LABEL_MAX], command[LABEL_MAX];
    put_label(exe, "exe", base_name(b->exe));
    put_label(command, "command", b->command);
    for (int a = bp->fam->per_arm ? 0 : -1; a < (bp->fam->per_arm ? HKD_BIN_ARMS : 0); a++) {
        fprintf(bp->f, "%s{%s,binary=\"%016" PRIx64 "\",%s,domain=\"%" PRIu32 "\"", bp->fam->name, exe,
                b->binary_hash, command, b->domain);
        if (a >= 0)
            fprintf(bp->f, ",arm=\"%s\"", hkd_bin_arms[a].name);
        fputs("} ", bp->f);
        put_double(bp->f, bp->fam->value(b, a));
        fputc('\n', bp->f);
    }
    return 0;
}

static int render_binaries(FILE *f)
{
    int r = 0;
    for (size_t k = 0; r == 0 && k < sizeof binary_families / sizeof binary_families[0]; k++) {
        binary_pass bp = { f, &binary_families[k] };
        family(f, bp.fam->name, bp.fam->type, bp.fam->help);
        r = hkd_for_each_binary(binary_sample, &bp);
    }
    return r;
}

/* ---- the fleet link (only when one is configured) ---- */

static void render_fleet(FILE *f)
{
    hkd_fleet_status fs;
    if (hkd_fleet_status_get(&fs, NULL, NULL) < 0 || !fs.configured)
        return;
    family(f, "hakmem_fleet_up", "gauge", "1 when the last sync with etcd succeeded.");
    fprintf(f, "hakmem_fleet_up %d\n", fs.up ? 1 : 0);
    if (fs.last_sync_unix_ms) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9, then = (double)fs.last_sync_unix_ms / 1000.0;
        family(f, "hakmem_fleet_last_sync_age_seconds", "gauge", "Time since the last successful sync with etcd.");
        fputs("hakmem_fleet_last_sync_age_seconds ", f);
        put_double(f, now > then ? now - then : 0.0);
        fputc('\n', f);
    }
    family(f, "hakmem_fleet_written_bytes_total", "counter", "Bytes of keys and values this host put into etcd.");
    fprintf(f, "hakmem_fleet_written_bytes_total %" PRIu64 "\n", fs.bytes_written);
    family(f, "hakmem_fleet_written_keys_total", "counter", "Keys this host put into etcd.");
    fprintf(f, "hakmem_fleet_written_keys_total %" PRIu64 "\n", fs.keys_written);
    family(f, "hakmem_fleet_rejected_values_total", "counter", "Values of other hosts that did not check, skipped.");
    fprintf(f, "hakmem_fleet_rejected_values_total %" PRIu64 "\n", fs.values_rejected);
    family(f, "hakmem_fleet_hosts", "gauge", "Other hosts whose learning this host counts.");
    fprintf(f, "hakmem_fleet_hosts %" PRIu32 "\n", fs.hosts);
    family(f, "hakmem_fleet_sites_shared", "gauge", "Sites the other hosts write.");
    fprintf(f, "hakmem_fleet_sites_shared %" PRIu32 "\n", fs.sites_shared);
}

/* ---- the daemon ---- */

static void render_daemon(FILE *f, hkd_status *st)
{
    st->version[sizeof st->version - 1] = '\0';
    st->shm_name[sizeof st->shm_name - 1] = '\0';
    family(f, "hakmem_build_info", "gauge", "Always 1; labels name the daemon's version and segment.");
    char version[LABEL_MAX], segment[LABEL_MAX];
    put_label(version, "version", st->version);
    put_label(segment, "segment", st->shm_name);
    fprintf(f, "hakmem_build_info{%s,%s} 1\n", version, segment);
    family(f, "hakmem_daemon_uptime_seconds", "gauge", "Time since hakmemd started.");
    fputs("hakmem_daemon_uptime_seconds ", f);
    put_double(f, (double)st->uptime_ms / 1000.0);
    fputc('\n', f);
    family(f, "hakmem_learning_enabled", "gauge", "1 when the learner runs, 0 in baseline mode.");
    fprintf(f, "hakmem_learning_enabled %d\n", st->learning ? 1 : 0);
    family(f, "hakmem_policy_generation", "gauge", "Generation of the published threshold table.");
    fprintf(f, "hakmem_policy_generation %" PRIu64 "\n", st->generation);
    family(f, "hakmem_processes", "gauge", "Live processes attached to the segment.");
    fprintf(f, "hakmem_processes %" PRIu32 "\n", st->processes);
    family(f, "hakmem_sites", "gauge", "Sites known to the daemon.");
    fprintf(f, "hakmem_sites %" PRIu32 "\n", st->sites);
    family(f, "hakmem_sites_archived", "gauge", "Learned state kept of sites no process reports.");
    fprintf(f, "hakmem_sites_archived %" PRIu32 "\n", st->sites_archived);
    family(f, "hakmem_learning_interval_seconds", "gauge", "Configured learning interval.");
    fputs("hakmem_learning_interval_seconds ", f);
    put_double(f, (double)st->interval_ms / 1000.0);
    fputc('\n', f);
    family(f, "hakmem_learning_intervals_total", "counter", "Learning intervals completed.");
    fprintf(f, "hakmem_learning_intervals_total %" PRIu64 "\n", st->intervals);
    family(f, "hakmem_learning_last_interval_duration_seconds", "gauge",
           "Collect, learn and publish time of the last interval.");
    fputs("hakmem_learning_last_interval_duration_seconds ", f);
    put_double(f, (double)st->last_interval_ns / 1e9);
    fputc('\n', f);

    hkd_metrics_file_stats fs;
    if (hkd_metrics_file_get_stats(&fs) == 0) {
        family(f, "hakmem_metrics_file_writes_total", "counter",
               "Writes of --metrics-file by result; skipped: the previous write still ran when the next was due.");
        fprintf(f, "hakmem_metrics_file_writes_total{result=\"ok\"} %" PRIu64 "\n", fs.written);
        fprintf(f, "hakmem_metrics_file_writes_total{result=\"failed\"} %" PRIu64 "\n", fs.failed);
        fprintf(f, "hakmem_metrics_file_writes_total{result=\"skipped\"} %" PRIu64 "\n", fs.skipped);
        family(f, "hakmem_metrics_file_last_write_duration_seconds", "gauge",
               "Time the last completed write of --metrics-file took.");
        fputs("hakmem_metrics_file_last_write_duration_seconds ", f);
        put_double(f, (double)fs.last_ns / 1e9);
        fputc('\n', f);
    }
    render_fleet(f);
}

int hkd_metrics_stream(hkd_metrics_sink sink, void *arg)
{
    hkd_status st;
    int r = hkd_get_status(&st);
    if (r < 0)
        return r;
    out o = { .sink = sink, .arg = arg };
    hkd_proc_info *procs = NULL;
    size_t nprocs = 0;
    o.buf = malloc(HKD_METRICS_PIECE + 1);
    hkd_site_info *page = malloc(SITE_PAGE * sizeof *page);
    FILE *f = NULL;
    r = -ENOMEM;
    if (!o.buf || !page)
        goto done;
    r = hkd_procs_copy(&procs, &nprocs);
    if (r < 0)
        goto done;
    cookie_io_functions_t io = { .write = out_write };
    f = fopencookie(&o, "w", io);
    if (!f) {
        r = -ENOMEM;
        goto done;
    }
    __fsetlocking(f, FSETLOCKING_BYCALLER);     /* one thread writes it */
    render_daemon(f, &st);
    for (size_t k = 0; r == 0 && k < sizeof site_families / sizeof site_families[0]; k++)
        r = render_site_family(f, &o, &site_families[k], page);
    if (r == 0)
        render_procs(f, procs, nprocs);
    if (r == 0)
        r = render_domains(f);
    if (r == 0)
        r = render_binaries(f);
    if (fflush(f) != 0 && r == 0)
        r = o.err ? o.err : -EIO;
    while (r == 0 && o.len > 0)
        r = out_flush(&o);
done:
    if (f)
        fclose(f);
    free(o.buf);
    free(page);
    free(procs);
    return r;
}
