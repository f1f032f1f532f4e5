/* Metrics exposition.  Samples of one family must be contiguous in the text
 * format, so the sites and processes are first copied out of the core (one
 * read-side pass each) and then written family by family. */
#include "metrics.h"
#include "core_api.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct vec {
    void  *items;
    size_t n, cap, size;
} vec;

static int vec_push(vec *v, const void *item)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        void *p = realloc(v->items, cap * v->size);
        if (!p)
            return -ENOMEM;
        v->items = p;
        v->cap = cap;
    }
    memcpy((char *)v->items + v->n * v->size, item, v->size);
    v->n++;
    return 0;
}

static int collect_site(const hkd_site_info *s, void *arg) { return vec_push(arg, s); }
static int collect_domain(const hkd_domain_info *d, void *arg) { return vec_push(arg, d); }
static int collect_proc(const hkd_proc_info *p, void *arg) { return vec_push(arg, p); }

/* Label values: backslash, double quote and newline must be escaped. */
static void put_label(FILE *f, const char *name, const char *v)
{
    fprintf(f, "%s=\"", name);
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fputc('\\', f), fputc(*v, f);
        else if (*v == '\n')
            fputs("\\n", f);
        else
            fputc(*v, f);
    }
    fputc('"', f);
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

static void site_labels(FILE *f, const hkd_site_info *s)
{
    char key[40], domain[16];
    snprintf(key, sizeof key, "%016" PRIx64 ":%" PRIx64, s->key.module_hash, s->key.offset);
    snprintf(domain, sizeof domain, "%" PRIu32, s->key.domain);
    fputc('{', f);
    put_label(f, "exe", base_name(s->module));
    fputc(',', f);
    put_label(f, "site", key);
    fputc(',', f);
    put_label(f, "domain", domain);
}

static void proc_labels(FILE *f, const hkd_proc_info *p)
{
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)p->pid);
    fputc('{', f);
    put_label(f, "exe", base_name(p->exe));
    fputc(',', f);
    put_label(f, "pid", pid);
    fputc('}', f);
}

/* One family over all sites, the value picked by an offset into the
 * struct so that each family is a single line here. */
static void site_family(FILE *f, const vec *sites, const char *name, const char *type,
                        const char *help, size_t off, double scale)
{
    family(f, name, type, help);
    const hkd_site_info *s = sites->items;
    for (size_t i = 0; i < sites->n; i++) {
        fputs(name, f);
        site_labels(f, &s[i]);
        fputs("} ", f);
        uint64_t v;
        memcpy(&v, (const char *)&s[i] + off, sizeof v);
        if (scale == 1.0) {
            fprintf(f, "%" PRIu64 "\n", v);
        } else {
            put_double(f, (double)v * scale);
            fputc('\n', f);
        }
    }
}

/* Gauges of small integers, one accessor each. */
static long long v_processes(const hkd_site_info *s) { return s->processes; }
static long long v_large_threshold(const hkd_site_info *s) { return s->thresholds.large_threshold; }
static long long v_bigcache_slots(const hkd_site_info *s) { return s->thresholds.bigcache_slots; }
static long long v_thp(const hkd_site_info *s) { return s->thresholds.thp != 0; }
static long long v_pinned_arm(const hkd_site_info *s) { return s->pinned_arm; }
static long long v_settled(const hkd_site_info *s) { return s->settled != 0; }
static long long v_thin(const hkd_site_info *s) { return s->thin != 0; }

static void site_int_family(FILE *f, const vec *sites, const char *name, const char *help,
                            long long (*value)(const hkd_site_info *))
{
    family(f, name, "gauge", help);
    const hkd_site_info *s = sites->items;
    for (size_t i = 0; i < sites->n; i++) {
        fputs(name, f);
        site_labels(f, &s[i]);
        fprintf(f, "} %lld\n", value(&s[i]));
    }
}

static void render_sites(FILE *f, const vec *sv)
{
    const hkd_site_info *s = sv->items;
#define SF(name, type, help, field, scale) \
    site_family(f, sv, name, type, help, offsetof(hkd_site_info, field), scale)
    SF("hakmem_site_allocs_total", "counter", "Allocations made at the site, all processes.", allocs, 1.0);
    SF("hakmem_site_frees_total", "counter", "Frees of blocks allocated at the site.", frees, 1.0);
    SF("hakmem_site_alloc_bytes_total", "counter", "Bytes allocated at the site.", bytes, 1.0);
    SF("hakmem_site_live_bytes", "gauge", "Bytes allocated at the site and not yet freed.", live_bytes, 1.0);
    SF("hakmem_site_bigcache_hits_total", "counter", "Large allocations served from BigCache.", bigcache_hits, 1.0);
    SF("hakmem_site_bigcache_misses_total", "counter", "Large allocations BigCache could not serve.", bigcache_misses, 1.0);
    SF("hakmem_site_bigcache_evictions_total", "counter", "Blocks evicted from BigCache and unmapped.", bigcache_evictions, 1.0);
    SF("hakmem_site_thp_blocks_total", "counter", "Blocks advised to use transparent huge pages.", thp_blocks, 1.0);
    SF("hakmem_site_slow_path_seconds_total", "counter", "Time spent in the allocator's slow paths for the site.", slow_ns, 1e-9);
#undef SF

    site_int_family(f, sv, "hakmem_site_processes", "Live processes reporting the site.", v_processes);
    site_int_family(f, sv, "hakmem_site_large_threshold_bytes",
                    "Published size from which the site's allocations are mapped directly.", v_large_threshold);
    site_int_family(f, sv, "hakmem_site_bigcache_slots", "Published BigCache slots for the site (0: off).",
                    v_bigcache_slots);
    site_int_family(f, sv, "hakmem_site_thp_enabled", "1 when the site's large blocks are advised to use huge pages.",
                    v_thp);
    site_int_family(f, sv, "hakmem_site_pinned_arm", "Arm forced by an operator, -1 when the learner chooses.",
                    v_pinned_arm);
    site_int_family(f, sv, "hakmem_site_settled",
                    "1 when the learner exploits: every arm that matters tried, the best one published.", v_settled);
    site_int_family(f, sv, "hakmem_site_thin",
                    "1 when the site allocates too little to learn alone and runs its size band's arm.", v_thin);

    /* Log2 buckets: bucket b holds sizes in [2^b, 2^(b+1)), so its upper
     * bound is 2^(b+1)-1 bytes.  _sum is the site's byte count. */
    family(f, "hakmem_site_alloc_size_bytes", "histogram", "Sizes of the site's allocations (log2 buckets).");
    for (size_t i = 0; i < sv->n; i++) {
        int top = -1;
        for (int b = 0; b < 32; b++)
            if (s[i].size_hist[b])
                top = b;
        uint64_t cum = 0;
        for (int b = 0; b <= top && b < 31; b++) {
            cum += s[i].size_hist[b];
            fputs("hakmem_site_alloc_size_bytes_bucket", f);
            site_labels(f, &s[i]);
            fprintf(f, ",le=\"%" PRIu64 "\"} %" PRIu64 "\n", (UINT64_C(2) << b) - 1, cum);
        }
        if (top == 31)
            cum += s[i].size_hist[31];
        fputs("hakmem_site_alloc_size_bytes_bucket", f);
        site_labels(f, &s[i]);
        fprintf(f, ",le=\"+Inf\"} %" PRIu64 "\n", cum);
        fputs("hakmem_site_alloc_size_bytes_sum", f);
        site_labels(f, &s[i]);
        fprintf(f, "} %" PRIu64 "\n", s[i].bytes);
        fputs("hakmem_site_alloc_size_bytes_count", f);
        site_labels(f, &s[i]);
        fprintf(f, "} %" PRIu64 "\n", cum);
    }

    family(f, "hakmem_site_arm_pulls_total", "counter", "Intervals in which the learner played the arm for the site.");
    for (size_t i = 0; i < sv->n; i++)
        for (uint32_t a = 0; a < s[i].n_arms && a < HKD_MAX_ARMS; a++) {
            fputs("hakmem_site_arm_pulls_total", f);
            site_labels(f, &s[i]);
            fputc(',', f);
            put_label(f, "arm", s[i].arms[a].name);
            fprintf(f, "} %" PRIu64 "\n", s[i].arms[a].pulls);
        }
    family(f, "hakmem_site_arm_mean_reward", "gauge", "Mean reward the learner measured for the arm at the site.");
    for (size_t i = 0; i < sv->n; i++)
        for (uint32_t a = 0; a < s[i].n_arms && a < HKD_MAX_ARMS; a++) {
            fputs("hakmem_site_arm_mean_reward", f);
            site_labels(f, &s[i]);
            fputc(',', f);
            put_label(f, "arm", s[i].arms[a].name);
            fputs("} ", f);
            put_double(f, s[i].arms[a].mean_reward);
            fputc('\n', f);
        }
}

/* Per user (domain = uid): what the limits did. */
static void render_domains(FILE *f, const vec *dv)
{
    static const struct {
        const char *name, *type, *help;
        size_t off;
        int wide;
    } fams[] = {
        { "hakmem_domain_sites", "gauge", "Sites of the user (uid) in the daemon's memory.",
          offsetof(hkd_domain_info, sites), 0 },
        { "hakmem_domain_sites_refused_total", "counter",
          "Reports of new sites refused by the user's limits (per-user cap, new sites per interval).",
          offsetof(hkd_domain_info, refused), 1 },
        { "hakmem_domain_sites_evicted_total", "counter",
          "Sites of the user that aged out of memory or made room (their learning archived).",
          offsetof(hkd_domain_info, evicted), 1 },
    };
    const hkd_domain_info *d = dv->items;
    for (size_t k = 0; k < sizeof fams / sizeof fams[0]; k++) {
        family(f, fams[k].name, fams[k].type, fams[k].help);
        for (size_t i = 0; i < dv->n; i++) {
            uint64_t v = 0;
            uint32_t v32;
            if (fams[k].wide) {
                memcpy(&v, (const char *)&d[i] + fams[k].off, sizeof v);
            } else {
                memcpy(&v32, (const char *)&d[i] + fams[k].off, sizeof v32);
                v = v32;
            }
            fprintf(f, "%s{domain=\"%" PRIu32 "\"} %" PRIu64 "\n", fams[k].name, d[i].domain, v);
        }
    }
}

/* One family per process field.  Values are exact integers; per_unit > 1
 * turns one into a fraction (milliseconds into seconds). */
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

static void render_procs(FILE *f, const vec *pv)
{
    const hkd_proc_info *p = pv->items;
    for (size_t k = 0; k < sizeof proc_families / sizeof proc_families[0]; k++) {
        const proc_family *pf = &proc_families[k];
        family(f, pf->name, pf->type, pf->help);
        for (size_t i = 0; i < pv->n; i++) {
            uint64_t v = pf->value(&p[i]);
            fputs(pf->name, f);
            proc_labels(f, &p[i]);
            fputc(' ', f);
            if (pf->per_unit > 1)
                put_double(f, (double)v / pf->per_unit);
            else
                fprintf(f, "%" PRIu64, v);
            fputc('\n', f);
        }
    }
}

int hkd_metrics_render(char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    hkd_status st;
    int r = hkd_get_status(&st);
    if (r < 0)
        return r;
    vec sites = { .size = sizeof(hkd_site_info) };
    vec procs = { .size = sizeof(hkd_proc_info) };
    vec domains = { .size = sizeof(hkd_domain_info) };
    r = hkd_for_each_site(collect_site, &sites);
    if (r >= 0)
        r = hkd_for_each_proc(collect_proc, &procs);
    if (r >= 0)
        r = hkd_for_each_domain(collect_domain, &domains);
    if (r < 0) {
        free(sites.items);
        free(procs.items);
        free(domains.items);
        return r;
    }

    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) {
        free(sites.items);
        free(procs.items);
        free(domains.items);
        return -ENOMEM;
    }
    st.version[sizeof st.version - 1] = '\0';
    st.shm_name[sizeof st.shm_name - 1] = '\0';
    family(f, "hakmem_build_info", "gauge", "Always 1; labels name the daemon's version and segment.");
    fputs("hakmem_build_info{", f);
    put_label(f, "version", st.version);
    fputc(',', f);
    put_label(f, "segment", st.shm_name);
    fputs("} 1\n", f);
    family(f, "hakmem_daemon_uptime_seconds", "gauge", "Time since hakmemd started.");
    fputs("hakmem_daemon_uptime_seconds ", f);
    put_double(f, (double)st.uptime_ms / 1000.0);
    fputc('\n', f);
    family(f, "hakmem_learning_enabled", "gauge", "1 when the learner runs, 0 in baseline mode.");
    fprintf(f, "hakmem_learning_enabled %d\n", st.learning ? 1 : 0);
    family(f, "hakmem_policy_generation", "gauge", "Generation of the published threshold table.");
    fprintf(f, "hakmem_policy_generation %" PRIu64 "\n", st.generation);
    family(f, "hakmem_processes", "gauge", "Live processes attached to the segment.");
    fprintf(f, "hakmem_processes %" PRIu32 "\n", st.processes);
    family(f, "hakmem_sites", "gauge", "Sites known to the daemon.");
    fprintf(f, "hakmem_sites %" PRIu32 "\n", st.sites);
    family(f, "hakmem_sites_archived", "gauge", "Learned state kept of sites no process reports.");
    fprintf(f, "hakmem_sites_archived %" PRIu32 "\n", st.sites_archived);
    family(f, "hakmem_learning_interval_seconds", "gauge", "Configured learning interval.");
    fputs("hakmem_learning_interval_seconds ", f);
    put_double(f, (double)st.interval_ms / 1000.0);
    fputc('\n', f);
    family(f, "hakmem_learning_intervals_total", "counter", "Learning intervals completed.");
    fprintf(f, "hakmem_learning_intervals_total %" PRIu64 "\n", st.intervals);
    family(f, "hakmem_learning_last_interval_duration_seconds", "gauge", "Collect, learn and publish time of the last interval.");
    fputs("hakmem_learning_last_interval_duration_seconds ", f);
    put_double(f, (double)st.last_interval_ns / 1e9);
    fputc('\n', f);

    hkd_site_info *s = sites.items;
    for (size_t i = 0; i < sites.n; i++) {
        s[i].module[HKD_MODULE_MAX - 1] = '\0';
        for (uint32_t a = 0; a < s[i].n_arms && a < HKD_MAX_ARMS; a++)
            s[i].arms[a].name[HKD_ARM_NAME_MAX - 1] = '\0';
    }
    hkd_proc_info *p = procs.items;
    for (size_t i = 0; i < procs.n; i++)
        p[i].exe[HKD_EXE_MAX - 1] = '\0';
    render_sites(f, &sites);
    render_procs(f, &procs);
    render_domains(f, &domains);
    int bad = ferror(f);
    fclose(f);
    free(sites.items);
    free(procs.items);
    free(domains.items);
    if (bad || !buf) {
        free(buf);
        return -ENOMEM;
    }
    *out = buf;
    *len = n;
    return 0;
}

int hkd_metrics_write_file(const char *path)
{
    char *text;
    size_t len;
    int r = hkd_metrics_render(&text, &len);
    if (r < 0)
        return r;
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp) {
        free(text);
        return -ENAMETOOLONG;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        r = -errno;
        free(text);
        return r;
    }
    /* The daemon runs with UMask=0007; the collector may run as another
     * user, so the file is made world-readable explicitly. */
    fchmod(fd, 0644);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        off += (size_t)w;
    }
    free(text);
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0)
        unlink(tmp);
    return r;
}
