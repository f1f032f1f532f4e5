/* hakmemctl: inspect and steer hakmemd over its control socket.
 *
 * Every command is one request and one response (watch repeats one).
 * Exit codes, for scripts: 0 ok; 1 refused or an error reply; 2 usage;
 * 3 daemon not reachable.  Failures print exactly one line on stderr. */
#include "ctl_client.h"
#include "hakmem.h"
#include "frame.h"
#include "jsonw.h"
#include "symbolize.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


enum { EXIT_ERR = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

static const char *g_socket;
static int g_json;
static int g_timeout_ms = 5000;

static const char usage_text[] =
    "usage: hakmemctl [--socket PATH] [--json] [--timeout MS] COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  status                         daemon version, uptime, segment, generation, counts\n"
    "  procs                          processes attached to the segment\n"
    "  sites [--top N] [--pid P] [--exe NAME]\n"
    "                                 sites by bytes, with thresholds and arm statistics\n"
    "                                 (--top 0: all; default 20)\n"
    "  thresholds [--top N] [--pid P] [--exe NAME]\n"
    "                                 the published thresholds per site\n"
    "  export FILE                    save the learned policy (protobuf); - for stdout\n"
    "  import FILE                    merge a saved policy into the daemon; - for stdin\n"
    "  reset [--site KEY [--user U]]  forget what was learned (everything, or one site)\n"
    "  pin [--user U] KEY ARM         force a site's arm (index or name)\n"
    "  unpin [--user U] KEY           let the learner choose again\n"
    "  metrics                        Prometheus text exposition\n"
    "  watch [--interval MS] [--count N] [--top N]\n"
    "                                 a live view, refreshed every interval\n"
    "\n"
    "KEY is a site key as printed by 'sites' (MODULEHASH:OFFSET, hex).  Policy is learned\n"
    "per user: --user (a name or uid, default root) says whose site KEY is.\n"
    "--socket defaults to $HAKMEM_SOCKET, else /run/hakmem/ctl.sock.\n"
    "exit codes: 0 ok, 1 refused or error, 2 usage, 3 daemon not reachable\n";

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "hakmemctl: %s\n", msg);
    return code;
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "hakmemctl: %s (see hakmemctl --help)\n", msg);
    return EXIT_USAGE;
}

/* ---- talking to the daemon ---- */

static const char *error_name(Hakmem__Ctl__Error__Code c)
{
    switch (c) {
    case HAKMEM__CTL__ERROR__CODE__BAD_REQUEST: return "bad request";
    case HAKMEM__CTL__ERROR__CODE__UNSUPPORTED_VERSION: return "unsupported protocol version";
    case HAKMEM__CTL__ERROR__CODE__TOO_LARGE: return "too large";
    case HAKMEM__CTL__ERROR__CODE__PERMISSION_DENIED: return "permission denied";
    case HAKMEM__CTL__ERROR__CODE__NOT_FOUND: return "not found";
    case HAKMEM__CTL__ERROR__CODE__INTERNAL: return "daemon error";
    case HAKMEM__CTL__ERROR__CODE__BUSY: return "busy";
    case HAKMEM__CTL__ERROR__CODE__INVALID_ARGUMENT: return "invalid argument";
    default: return "error";
    }
}

/* Returns 0 with *out holding a response of the expected kind, or an exit
 * code after printing why. */
static int call(Hakmem__Ctl__Request *rq, Hakmem__Ctl__Response__ResultCase want,
                Hakmem__Ctl__Response **out)
{
    *out = NULL;
    int fd = hkc_connect(g_socket, g_timeout_ms);
    if (fd == -EACCES || fd == -EPERM)
        return fail(EXIT_ERR, "permission denied on %s: join group hakmem or ask root", g_socket);
    if (fd < 0)
        return fail(EXIT_UNREACHABLE, "hakmemd not reachable at %s: %s", g_socket, strerror(-fd));
    Hakmem__Ctl__Response *resp;
    int r = hkc_call(fd, rq, &resp, g_timeout_ms);
    close(fd);
    if (r == -EBADMSG)
        return fail(EXIT_ERR, "hakmemd at %s sent an answer that does not parse", g_socket);
    if (r == -ETIMEDOUT)
        return fail(EXIT_UNREACHABLE, "hakmemd at %s did not answer within %d ms", g_socket, g_timeout_ms);
    if (r == -EMSGSIZE)
        return fail(EXIT_ERR, "request exceeds the maximum frame size (%u bytes)", HKC_FRAME_MAX);
    if (r < 0)
        return fail(EXIT_UNREACHABLE, "hakmemd at %s closed the connection: %s", g_socket,
                    r == -ENODATA ? "no answer" : strerror(-r));
    if (resp->result_case == HAKMEM__CTL__RESPONSE__RESULT_ERROR && resp->error) {
        int code = fail(EXIT_ERR, "%s: %s", error_name(resp->error->code),
                        resp->error->text ? resp->error->text : "");
        hakmem__ctl__response__free_unpacked(resp, NULL);
        return code;
    }
    if (resp->result_case != want) {
        hakmem__ctl__response__free_unpacked(resp, NULL);
        return fail(EXIT_ERR, "hakmemd sent an unexpected kind of answer");
    }
    *out = resp;
    return 0;
}

/* ---- formatting ---- */

static const char *human_bytes(uint64_t v, char *buf, size_t cap)
{
    static const char units[] = "BKMGTPE";
    double d = (double)v;
    int u = 0;
    while (d >= 1024 && u < 6)
        d /= 1024, u++;
    if (u == 0)
        snprintf(buf, cap, "%" PRIu64, v);
    else if (d == (double)(uint64_t)d)
        snprintf(buf, cap, "%" PRIu64 "%c", (uint64_t)d, units[u]);
    else
        snprintf(buf, cap, "%.1f%c", d, units[u]);
    return buf;
}

static const char *human_duration(uint64_t ms, char *buf, size_t cap)
{
    uint64_t s = ms / 1000;
    if (s >= 86400)
        snprintf(buf, cap, "%" PRIu64 "d%02" PRIu64 "h%02" PRIu64 "m", s / 86400, s / 3600 % 24, s / 60 % 60);
    else if (s >= 3600)
        snprintf(buf, cap, "%" PRIu64 "h%02" PRIu64 "m%02" PRIu64 "s", s / 3600, s / 60 % 60, s % 60);
    else if (s >= 60)
        snprintf(buf, cap, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
    else
        snprintf(buf, cap, "%.1fs", (double)ms / 1000.0);
    return buf;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s && s[1] ? s + 1 : path;
}

static void key_text(const Hakmem__Ctl__SiteKey *k, char *buf, size_t cap)
{
    snprintf(buf, cap, "%016" PRIx64 ":%" PRIx64, k ? k->module_hash : 0, k ? k->offset : 0);
}

/* The user a domain (uid) is: the name when the system knows it. */
static const char *user_text(uint32_t uid, char *buf, size_t cap)
{
    struct passwd pw, *res = NULL;
    char tmp[1024];
    if (getpwuid_r((uid_t)uid, &pw, tmp, sizeof tmp, &res) == 0 && res && res->pw_name)
        snprintf(buf, cap, "%s", res->pw_name);
    else
        snprintf(buf, cap, "%" PRIu32, uid);
    return buf;
}

/* A user given as a name or a uid. */
static int parse_user(const char *s, uint32_t *uid)
{
    struct passwd pw, *res = NULL;
    char tmp[1024];
    char *end;
    if (!s || !*s)
        return -1;
    if (getpwnam_r(s, &pw, tmp, sizeof tmp, &res) == 0 && res) {
        *uid = (uint32_t)res->pw_uid;
        return 0;
    }
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || *s == '-' || v > UINT32_MAX)
        return -1;
    *uid = (uint32_t)v;
    return 0;
}

static int parse_key(const char *s, uint64_t *hash, uint64_t *off)
{
    char *end;
    const char *colon = strchr(s, ':');
    if (!colon || colon == s || colon - s > 16)
        return -1;
    errno = 0;
    *hash = strtoull(s, &end, 16);
    if (errno || end != colon)
        return -1;
    const char *o = colon + 1;
    if (!strncmp(o, "0x", 2) || !strncmp(o, "0X", 2))
        o += 2;
    if (!*o)
        return -1;
    *off = strtoull(o, &end, 16);
    return errno || *end ? -1 : 0;
}

static int parse_u64(const char *s, uint64_t *v)
{
    char *end;
    if (!s || !*s || *s == '-')
        return -1;
    errno = 0;
    *v = strtoull(s, &end, 10);
    return errno || *end ? -1 : 0;
}

/* Summary of a log2 histogram: the bucket holding the median and the
 * highest non-empty one, as their lower bounds. */
static void hist_summary(const uint64_t *h, size_t n, uint64_t *p50, uint64_t *max, uint64_t *count)
{
    uint64_t total = 0;
    *p50 = *max = 0;
    for (size_t i = 0; i < n; i++)
        total += h[i];
    *count = total;
    uint64_t run = 0;
    int got = 0;
    for (size_t i = 0; i < n && i < 64; i++) {
        run += h[i];
        if (!got && total && run * 2 >= total)
            *p50 = UINT64_C(1) << i, got = 1;
        if (h[i])
            *max = UINT64_C(1) << i;
    }
}

static double hit_rate(uint64_t hits, uint64_t misses)
{
    return hits + misses ? (double)hits / (double)(hits + misses) : -1.0;
}

static void location(const Hakmem__Ctl__Site *s, char *loc, size_t lcap, char *fn, size_t fcap, int *has_fn)
{
    const char *mod = s->module ? s->module : "";
    uint64_t off = s->key ? s->key->offset : 0;
    snprintf(loc, lcap, "%s+0x%" PRIx64, *mod ? base_name(mod) : "?", off);
    *has_fn = *mod && hkc_symbolize(mod, off, fn, fcap) == 1;
    if (!*has_fn)
        snprintf(fn, fcap, "-");
}

/* ---- status ---- */

static void status_json(jw *w, const char *key, const Hakmem__Ctl__Status *s)
{
    jw_obj(w, key);
    jw_str(w, "version", s->version);
    jw_i64(w, "pid", s->daemon_pid);
    jw_u64(w, "uptime_ms", s->uptime_ms);
    jw_str(w, "segment", s->segment);
    jw_u64(w, "generation", s->generation);
    jw_u64(w, "processes", s->processes);
    jw_u64(w, "sites", s->sites);
    jw_u64(w, "interval_ms", s->interval_ms);
    jw_u64(w, "intervals", s->intervals);
    jw_u64(w, "last_interval_ns", s->last_interval_ns);
    jw_bool(w, "learning", s->learning);
    jw_u64(w, "protocol_version", s->protocol_version);
    jw_u64(w, "domains", s->domains);
    jw_u64(w, "sites_archived", s->sites_archived);
    jw_u64(w, "sites_refused", s->sites_refused);
    jw_u64(w, "sites_evicted", s->sites_evicted);
    jw_end_obj(w);
}

static int get_status(Hakmem__Ctl__Response **out)
{
    Hakmem__Ctl__Request rq = HAKMEM__CTL__REQUEST__INIT;
    Hakmem__Ctl__StatusRequest sr = HAKMEM__CTL__STATUS_REQUEST__INIT;
    rq.command_case = HAKMEM__CTL__REQUEST__COMMAND_STATUS;
    rq.status = &sr;
    return call(&rq, HAKMEM__CTL__RESPONSE__RESULT_STATUS, out);
}

static int cmd_status(int argc, char **argv)
{
    if (argc > 0)
        return usage_error("status takes no arguments");
    (void)argv;
    Hakmem__Ctl__Response *resp;
    int r = get_status(&resp);
    if (r)
        return r;
    const Hakmem__Ctl__Status *s = resp->status;
    if (g_json) {
        jw w;
        jw_init(&w, stdout);
        status_json(&w, NULL, s);
        jw_done(&w);
    } else {
        char up[32];
        printf("hakmemd %s (pid %d), up %s\n", s->version, s->daemon_pid,
               human_duration(s->uptime_ms, up, sizeof up));
        printf("segment     %s\n", s->segment);
        printf("generation  %" PRIu64 "\n", s->generation);
        printf("processes   %u\n", s->processes);
        printf("sites       %u (users %u; archived %u, refused %" PRIu64 ", evicted %" PRIu64 ")\n", s->sites,
               s->domains, s->sites_archived, s->sites_refused, s->sites_evicted);
        printf("interval    %u ms (%" PRIu64 " intervals, last took %.3f ms)\n", s->interval_ms,
               s->intervals, (double)s->last_interval_ns / 1e6);
        printf("learning    %s\n", s->learning ? "on" : "off (baseline mode)");
    }
    hakmem__ctl__response__free_unpacked(resp, NULL);
    return 0;
}

/* ---- procs ---- */

static int get_procs(Hakmem__Ctl__Response **out)
{
    Hakmem__Ctl__Request rq = HAKMEM__CTL__REQUEST__INIT;
    Hakmem__Ctl__ProcsRequest pr = HAKMEM__CTL__PROCS_REQUEST__INIT;
    rq.command_case = HAKMEM__CTL__REQUEST__COMMAND_PROCS;
    rq.procs = &pr;
    return call(&rq, HAKMEM__CTL__RESPONSE__RESULT_PROCS, out);
}

static int cmd_procs(int argc, char **argv)
{
    if (argc > 0)
        return usage_error("procs takes no arguments");
    (void)argv;
    Hakmem__Ctl__Response *resp;
    int r = get_procs(&resp);
    if (r)
        return r;
    const Hakmem__Ctl__Procs *p = resp->procs;
    if (g_json) {
        jw w;
        jw_init(&w, stdout);
        jw_arr(&w, NULL);
        for (size_t i = 0; i < p->n_procs; i++) {
            const Hakmem__Ctl__Proc *q = p->procs[i];
            jw_obj(&w, NULL);
            jw_i64(&w, "pid", q->pid);
            jw_str(&w, "exe", q->exe);
            jw_u64(&w, "sites", q->sites);
            jw_u64(&w, "bytes", q->bytes);
            jw_u64(&w, "rss_bytes", q->rss_bytes);
            jw_u64(&w, "page_faults", q->page_faults);
            jw_u64(&w, "last_heartbeat_ms_ago", q->last_heartbeat_ms_ago);
            jw_end_obj(&w);
        }
        jw_end_arr(&w);
        jw_done(&w);
    } else {
        printf("%-8s %6s %10s %10s %10s %10s  %s\n", "PID", "SITES", "BYTES", "RSS", "FAULTS", "HEARTBEAT", "EXE");
        for (size_t i = 0; i < p->n_procs; i++) {
            const Hakmem__Ctl__Proc *q = p->procs[i];
            char b1[16], b2[16], hb[32];
            human_duration(q->last_heartbeat_ms_ago, hb, sizeof hb);
            strncat(hb, " ago", sizeof hb - strlen(hb) - 1);
            printf("%-8d %6u %10s %10s %10" PRIu64 " %10s  %s\n", q->pid, q->sites,
                   human_bytes(q->bytes, b1, sizeof b1), human_bytes(q->rss_bytes, b2, sizeof b2),
                   q->page_faults, hb, q->exe);
        }
        if (p->n_procs == 0)
            printf("(no process is attached to the segment)\n");
    }
    hakmem__ctl__response__free_unpacked(resp, NULL);
    return 0;
}

/* ---- sites and thresholds ---- */

typedef struct site_filter {
    uint64_t top;
    int has_pid;
    uint64_t pid;
    const char *exe;
} site_filter;

static int parse_site_filter(int argc, char **argv, site_filter *f, const char *cmd)
{
    f->top = 20;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--top")) {
            if (parse_u64(v, &f->top) < 0)
                return usage_error("%s --top needs a number", cmd);
            i++;
        } else if (!strcmp(a, "--pid")) {
            if (parse_u64(v, &f->pid) < 0 || f->pid == 0 || f->pid > INT32_MAX)
                return usage_error("%s --pid needs a process id", cmd);
            f->has_pid = 1;
            i++;
        } else if (!strcmp(a, "--exe")) {
            if (!v || !*v)
                return usage_error("%s --exe needs a name", cmd);
            f->exe = v;
            i++;
        } else {
            return usage_error("%s: unexpected argument '%s'", cmd, a);
        }
    }
    if (f->has_pid && f->exe)
        return usage_error("%s: give --pid or --exe, not both", cmd);
    return 0;
}

/* Fetches sites; --pid becomes the process's executable, because sites are
 * keyed fleet-wide by module, not by process. */
static int get_sites(const site_filter *f, Hakmem__Ctl__Response **out)
{
    char exe[256] = "";
    if (f->has_pid) {
        Hakmem__Ctl__Response *pr;
        int r = get_procs(&pr);
        if (r)
            return r;
        for (size_t i = 0; i < pr->procs->n_procs; i++)
            if ((uint64_t)pr->procs->procs[i]->pid == f->pid)
                snprintf(exe, sizeof exe, "%s", pr->procs->procs[i]->exe);
        hakmem__ctl__response__free_unpacked(pr, NULL);
        if (!*exe)
            return fail(EXIT_ERR, "not found: no process %" PRIu64 " is attached to hakmemd", f->pid);
    } else if (f->exe) {
        snprintf(exe, sizeof exe, "%s", f->exe);
    }
    Hakmem__Ctl__Request rq = HAKMEM__CTL__REQUEST__INIT;
    Hakmem__Ctl__SitesRequest sr = HAKMEM__CTL__SITES_REQUEST__INIT;
    sr.top = f->top > UINT32_MAX ? UINT32_MAX : (uint32_t)f->top;
    sr.module = exe;
    rq.command_case = HAKMEM__CTL__REQUEST__COMMAND_SITES;
    rq.sites = &sr;
    return call(&rq, HAKMEM__CTL__RESPONSE__RESULT_SITES, out);
}

static int best_arm(const Hakmem__Ctl__Site *s)
{
    int best = -1;
    for (size_t a = 0; a < s->n_arms; a++)
        if (s->arms[a]->pulls && (best < 0 || s->arms[a]->mean_reward > s->arms[best]->mean_reward))
            best = (int)a;
    return best;
}

static void site_json(jw *w, const Hakmem__Ctl__Site *s, int full)
{
    char key[48], loc[160], fn[256];
    int has_fn;
    key_text(s->key, key, sizeof key);
    location(s, loc, sizeof loc, fn, sizeof fn, &has_fn);
    jw_obj(w, NULL);
    jw_str(w, "site", key);
    jw_u64(w, "module_hash", s->key ? s->key->module_hash : 0);
    jw_u64(w, "offset", s->key ? s->key->offset : 0);
    jw_u64(w, "domain", s->key ? s->key->domain : 0);
    jw_str(w, "module", s->module);
    jw_str(w, "exe", base_name(s->module ? s->module : ""));
    jw_str(w, "location", loc);
    jw_str(w, "function", has_fn ? fn : NULL);
    if (full) {
        uint64_t p50, max, count;
        hist_summary(s->size_hist, s->n_size_hist, &p50, &max, &count);
        jw_u64(w, "processes", s->processes);
        jw_u64(w, "allocs", s->allocs);
        jw_u64(w, "frees", s->frees);
        jw_u64(w, "bytes", s->bytes);
        jw_u64(w, "live_bytes", s->live_bytes);
        jw_arr(w, "size_hist");
        for (size_t i = 0; i < s->n_size_hist; i++)
            jw_u64(w, NULL, s->size_hist[i]);
        jw_end_arr(w);
        jw_obj(w, "sizes");
        jw_u64(w, "sampled", count);
        jw_u64(w, "p50_bucket", p50);
        jw_u64(w, "max_bucket", max);
        jw_end_obj(w);
        jw_obj(w, "bigcache");
        jw_u64(w, "hits", s->bigcache_hits);
        jw_u64(w, "misses", s->bigcache_misses);
        jw_u64(w, "evictions", s->bigcache_evictions);
        double hr = hit_rate(s->bigcache_hits, s->bigcache_misses);
        if (hr < 0)
            jw_str(w, "hit_rate", NULL);
        else
            jw_dbl(w, "hit_rate", hr);
        jw_end_obj(w);
        jw_u64(w, "thp_blocks", s->thp_blocks);
        jw_u64(w, "slow_ns", s->slow_ns);
    }
    jw_obj(w, "thresholds");
    jw_u64(w, "large_threshold", s->thresholds ? s->thresholds->large_threshold : 0);
    jw_u64(w, "bigcache_slots", s->thresholds ? s->thresholds->bigcache_slots : 0);
    jw_bool(w, "thp", s->thresholds && s->thresholds->thp);
    jw_end_obj(w);
    jw_i64(w, "pinned_arm", s->pinned_arm);
    jw_bool(w, "settled", s->settled);
    jw_bool(w, "thin", s->thin);
    if (full) {
        jw_arr(w, "arms");
        for (size_t a = 0; a < s->n_arms; a++) {
            jw_obj(w, NULL);
            jw_u64(w, "index", a);
            jw_str(w, "name", s->arms[a]->name);
            jw_u64(w, "pulls", s->arms[a]->pulls);
            jw_dbl(w, "mean_reward", s->arms[a]->mean_reward);
            jw_end_obj(w);
        }
        jw_end_arr(w);
    }
    jw_end_obj(w);
}

static void site_human(const Hakmem__Ctl__Site *s, size_t rank)
{
    char key[48], loc[160], fn[256], b1[16], b2[16], b3[16], b4[16], b5[16], user[64];
    int has_fn;
    key_text(s->key, key, sizeof key);
    location(s, loc, sizeof loc, fn, sizeof fn, &has_fn);
    uint64_t p50, max, count;
    hist_summary(s->size_hist, s->n_size_hist, &p50, &max, &count);
    printf("#%zu site %s  user %s  %s  %s\n", rank, key, user_text(s->key ? s->key->domain : 0, user, sizeof user),
           loc, has_fn ? fn : "(no symbol)");
    printf("   procs %u  allocs %" PRIu64 "  frees %" PRIu64 "  bytes %s  live %s\n", s->processes,
           s->allocs, s->frees, human_bytes(s->bytes, b1, sizeof b1),
           human_bytes(s->live_bytes, b2, sizeof b2));
    double hr = hit_rate(s->bigcache_hits, s->bigcache_misses);
    char hrs[64];
    if (hr < 0)
        snprintf(hrs, sizeof hrs, "-");
    else
        snprintf(hrs, sizeof hrs, "%.1f%% (%" PRIu64 "/%" PRIu64 ")", hr * 100, s->bigcache_hits,
                 s->bigcache_hits + s->bigcache_misses);
    if (count)
        printf("   sizes p50 %s max %s  bigcache hit %s  evictions %" PRIu64 "  thp blocks %" PRIu64 "\n",
               human_bytes(p50, b3, sizeof b3), human_bytes(max, b4, sizeof b4), hrs,
               s->bigcache_evictions, s->thp_blocks);
    else
        printf("   sizes -  bigcache hit %s  evictions %" PRIu64 "  thp blocks %" PRIu64 "\n", hrs,
               s->bigcache_evictions, s->thp_blocks);
    const Hakmem__Ctl__Thresholds *t = s->thresholds;
    printf("   thresholds large>=%s slots=%u thp=%s  pinned: ",
           human_bytes(t ? t->large_threshold : 0, b5, sizeof b5), t ? t->bigcache_slots : 0,
           t && t->thp ? "on" : "off");
    if (s->pinned_arm >= 0)
        printf("arm %d\n", s->pinned_arm);
    else
        printf("no  (%s%s)\n", s->settled ? "settled" : "exploring", s->thin ? ", with its size band" : "");
    if (s->n_arms) {
        int best = s->pinned_arm >= 0 ? s->pinned_arm : best_arm(s);
        printf("     %3s  %-32s %10s  %s\n", "ARM", "NAME", "PULLS", "MEAN REWARD");
        for (size_t a = 0; a < s->n_arms; a++)
            printf("   %c %3zu  %-32s %10" PRIu64 "  %.4f\n", (int)a == best ? '*' : ' ', a,
                   s->arms[a]->name, s->arms[a]->pulls, s->arms[a]->mean_reward);
    }
}

static int cmd_sites(int argc, char **argv, int thresholds_only)
{
    const char *cmd = thresholds_only ? "thresholds" : "sites";
    site_filter f = { 0 };
    int r = parse_site_filter(argc, argv, &f, cmd);
    if (r)
        return r;
    Hakmem__Ctl__Response *resp;
    r = get_sites(&f, &resp);
    if (r)
        return r;
    const Hakmem__Ctl__Sites *ss = resp->sites;
    if (g_json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj(&w, NULL);
        jw_u64(&w, "total", ss->total);
        jw_arr(&w, "sites");
        for (size_t i = 0; i < ss->n_sites; i++)
            site_json(&w, ss->sites[i], !thresholds_only);
        jw_end_arr(&w);
        jw_end_obj(&w);
        jw_done(&w);
    } else if (thresholds_only) {
        printf("%-34s %-12s %-28s %-28s %8s %5s %4s %s\n", "SITE", "USER", "LOCATION", "FUNCTION", "LARGE", "SLOTS",
               "THP", "PINNED");
        for (size_t i = 0; i < ss->n_sites; i++) {
            const Hakmem__Ctl__Site *s = ss->sites[i];
            char key[48], loc[160], fn[256], b[16], user[64];
            int has_fn;
            key_text(s->key, key, sizeof key);
            location(s, loc, sizeof loc, fn, sizeof fn, &has_fn);
            const Hakmem__Ctl__Thresholds *t = s->thresholds;
            char pin[16];
            snprintf(pin, sizeof pin, s->pinned_arm >= 0 ? "arm %d" : "-", s->pinned_arm);
            printf("%-34s %-12s %-28s %-28s %8s %5u %4s %s\n", key,
                   user_text(s->key ? s->key->domain : 0, user, sizeof user), loc, fn,
                   human_bytes(t ? t->large_threshold : 0, b, sizeof b), t ? t->bigcache_slots : 0,
                   t && t->thp ? "on" : "off", pin);
        }
        printf("(%zu of %u sites)\n", ss->n_sites, ss->total);
    } else {
        for (size_t i = 0; i < ss->n_sites; i++)
            site_human(ss->sites[i], i + 1);
        printf("(%zu of %u sites, by bytes)\n", ss->n_sites, ss->total);
    }
    hakmem__ctl__response__free_unpacked(resp, NULL);
    return 0;
}

/* ---- export / import ---- */

static int write_file_atomic(const char *path, const uint8_t *data, size_t len)
{
    if (!strcmp(path, "-")) {
        size_t w = fwrite(data, 1, len, stdout);
        return fflush(stdout) == 0 && w == len ? 0 : -EIO;
    }
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int r = 0;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            r = -errno;
            break;
        }
        off += (size_t)w;
    }
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0)
        unlink(tmp);
    return r;
}

static int read_file(const char *path, uint8_t **out, size_t *len, size_t max)
{
    int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : STDIN_FILENO;
    if (fd < 0)
        return -errno;
    size_t cap = 65536, n = 0;
    uint8_t *buf = malloc(cap);
    int r = buf ? 0 : -ENOMEM;
    while (r == 0) {
        if (n == cap) {
            if (cap > max) {
                r = -EFBIG;
                break;
            }
            uint8_t *p = realloc(buf, cap * 2);
            if (!p) {
                r = -ENOMEM;
                break;
            }
            buf = p, cap *= 2;
        }
        ssize_t k = read(fd, buf + n, cap - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            r = -errno;
        else if (k == 0)
            break;
        else
            n += (size_t)k;
    }
    if (fd != STDIN_FILENO)
        close(fd);
    if (r == 0 && n > max)
        r = -EFBIG;
    if (r < 0) {
        free(buf);
        return r;
    }
    *out = buf;
    *len = n;
    return 0;
}

static int cmd_export(int argc, char **argv)
{
    if (argc != 1)
        return usage_error("export needs exactly one FILE (- for stdout)");
    Hakmem__Ctl__Request rq = HAKMEM__CTL__REQUEST__INIT;
    Hakmem__Ctl__ExportRequest er = HAKMEM__CTL__EXPORT_REQUEST__INIT;
    rq.command_case = HAKMEM__CTL__REQUEST__COMMAND_EXPORT_POLICY;
    rq.export_policy = &er;
    Hakmem__Ctl__Response *resp;
    int r = call(&rq, HAKMEM__CTL__RESPONSE__RESULT_POLICY, &resp);
    if (r)
        return r;
    size_t len = resp->policy->policy.len;
    r = write_file_atomic(argv[0], resp->policy->policy.data, len);
    hakmem__ctl__response__free_unpacked(resp, NULL);
    if (r < 0)
        return fail(EXIT_ERR, "cannot write %s: %s", argv[0], strerror(-r));
    if (strcmp(argv[0], "-")) {
        if (g_json)
            printf("{\"file\":\"%s\",\"bytes\":%zu}\n", argv[0], len);
        else
            printf("exported the learned policy (%zu bytes) to %s\n", len, argv[0]);
    }
    return 0;
}

static int cmd_import(int argc, char **argv)
{
    if (argc != 1)
        return usage_error("import needs exactly one FILE (- for stdin)");
    uint8_t *data = NULL;
    size_t len = 0;
    int r = read_file(argv[0], &data, &len, HKC_FRAME_MAX - 64);
    if (r == -EFBIG)
        return fail(EXIT_ERR, "%s is larger than the %u-byte frame limit", argv[0], HKC_FRAME_MAX - 64);
    if (r < 0)
        return fail(EXIT_ERR, "cannot read %s: %s", argv[0], strerror(-r));
    Hakmem__Ctl__Request rq = HAKMEM__CTL__REQUEST__INIT;
    Hakmem__Ctl__ImportRequest ir = HAKMEM__CTL__IMPORT_REQUEST__INIT;
    ir.policy.data = data;
    ir.policy.len = len;
    rq.command_case = HAKMEM__CTL__REQUEST__COMMAND_IMPORT_POLICY;
    rq.import_policy = &ir;
    Hakmem__Ctl__Response *resp;
    r = call(&rq, HAKMEM__CTL__RESPONSE__RESULT_DONE, &resp);
    free(data);
    if (r)
        return r;
    if (g_json)
        printf("{\"imported_sites\":%d}\n", resp->done->count);
    else
        printf("imported the policy of %d sites\n", resp->done->count);
    hakmem__ctl__response__free_unpacked(resp, NULL);
    return 0;
}

/* ---- reset / pin ---- */

static int cmd_reset(int argc, char **argv)
{
    Hakmem__Ctl__Request rq = HAKMEM__CTL__REQUEST__INIT;
    Hakmem__Ctl__ResetRequest rr = HAKMEM__CTL__RESET_REQUEST__INIT;
    Hakmem__Ctl__SiteKey key = HAKMEM__CTL__SITE_KEY__INIT;
    const char *text = NULL, *user = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--site") && i + 1 < argc && !text) {
            text = argv[++i];
            if (parse_key(text, &key.module_hash, &key.offset) < 0)
                return usage_error("reset: '%s' is not a site key (MODULEHASH:OFFSET)", text);
            rr.site = &key;
        } else if (!strcmp(argv[i], "--user") && i + 1 < argc && !user) {
            user = argv[++i];
            if (parse_user(user, &key.domain) < 0)
                return usage_error("reset: no user '%s'", user);
        } else {
            return usage_error("reset: unexpected argument '%s'", argv[i]);
        }
    }
    if (user && !text)
        return usage_error("reset: --user goes with --site");
    rq.command_case = HAKMEM__CTL__REQUEST__COMMAND_RESET;
    rq.reset = &rr;
    Hakmem__Ctl__Response *resp;
    int r = call(&rq, HAKMEM__CTL__RESPONSE__RESULT_DONE, &resp);
    if (r)
        return r;
    if (g_json)
        printf("{\"reset\":%s%s%s}\n", text ? "\"" : "", text ? text : "\"all\"", text ? "\"" : "");
    else
        printf(text ? "reset site %s\n" : "reset all learned state%s\n", text ? text : "");
    hakmem__ctl__response__free_unpacked(resp, NULL);
    return 0;
}

/* An arm given by name is looked up in the site's arm list. */
static int resolve_arm(const Hakmem__Ctl__SiteKey *key, const char *arm, int32_t *out)
{
    uint64_t v;
    if (parse_u64(arm, &v) == 0) {
        if (v > INT32_MAX)
            return usage_error("pin: arm %s out of range", arm);
        *out = (int32_t)v;
        return 0;
    }
    site_filter f = { .top = 0 };
    Hakmem__Ctl__Response *resp;
    int r = get_sites(&f, &resp);
    if (r)
        return r;
    int found = -1, site_seen = 0;
    for (size_t i = 0; i < resp->sites->n_sites && found < 0; i++) {
        const Hakmem__Ctl__Site *s = resp->sites->sites[i];
        if (!s->key || s->key->module_hash != key->module_hash || s->key->offset != key->offset ||
            s->key->domain != key->domain)
            continue;
        site_seen = 1;
        for (size_t a = 0; a < s->n_arms; a++)
            if (!strcmp(s->arms[a]->name, arm))
                found = (int)a;
    }
    hakmem__ctl__response__free_unpacked(resp, NULL);
    if (!site_seen)
        return fail(EXIT_ERR, "not found: hakmemd knows no such site");
    if (found < 0)
        return fail(EXIT_ERR, "not found: the site has no arm named '%s'", arm);
    *out = found;
    return 0;
}

static int cmd_pin(int argc, char **argv, int unpin)
{
    Hakmem__Ctl__SiteKey key = HAKMEM__CTL__SITE_KEY__INIT;
    if (argc >= 2 && !strcmp(argv[0], "--user")) {
        if (parse_user(argv[1], &key.domain) < 0)
            return usage_error("%s: no user '%s'", unpin ? "unpin" : "pin", argv[1]);
        argc -= 2;
        argv += 2;
    }
    if (argc != (unpin ? 1 : 2))
        return usage_error(unpin ? "unpin needs a site KEY" : "pin needs a site KEY and an ARM");
    if (parse_key(argv[0], &key.module_hash, &key.offset) < 0)
        return usage_error("'%s' is not a site key (MODULEHASH:OFFSET)", argv[0]);
    Hakmem__Ctl__PinRequest pr = HAKMEM__CTL__PIN_REQUEST__INIT;
    pr.site = &key;
    pr.arm = -1;
    if (!unpin) {
        int r = resolve_arm(&key, argv[1], &pr.arm);
        if (r)
            return r;
    }
    Hakmem__Ctl__Request rq = HAKMEM__CTL__REQUEST__INIT;
    rq.command_case = HAKMEM__CTL__REQUEST__COMMAND_PIN;
    rq.pin = &pr;
    Hakmem__Ctl__Response *resp;
    int r = call(&rq, HAKMEM__CTL__RESPONSE__RESULT_DONE, &resp);
    if (r)
        return r;
    if (g_json)
        printf("{\"site\":\"%s\",\"pinned_arm\":%d}\n", argv[0], unpin ? -1 : pr.arm);
    else if (unpin)
        printf("site %s unpinned: the learner chooses again\n", argv[0]);
    else
        printf("site %s pinned to arm %d\n", argv[0], pr.arm);
    hakmem__ctl__response__free_unpacked(resp, NULL);
    return 0;
}

/* ---- metrics ---- */

static int cmd_metrics(int argc, char **argv)
{
    if (argc > 0)
        return usage_error("metrics takes no arguments");
    (void)argv;
    Hakmem__Ctl__Request rq = HAKMEM__CTL__REQUEST__INIT;
    Hakmem__Ctl__MetricsRequest mr = HAKMEM__CTL__METRICS_REQUEST__INIT;
    rq.command_case = HAKMEM__CTL__REQUEST__COMMAND_METRICS;
    rq.metrics = &mr;
    Hakmem__Ctl__Response *resp;
    int r = call(&rq, HAKMEM__CTL__RESPONSE__RESULT_METRICS, &resp);
    if (r)
        return r;
    if (g_json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj(&w, NULL);
        jw_str(&w, "content_type", "text/plain; version=0.0.4");
        jw_str(&w, "text", resp->metrics->text);
        jw_end_obj(&w);
        jw_done(&w);
    } else {
        fputs(resp->metrics->text, stdout);
    }
    hakmem__ctl__response__free_unpacked(resp, NULL);
    return 0;
}

/* ---- watch ---- */

static volatile sig_atomic_t g_quit;
static void on_signal(int sig) { (void)sig; g_quit = 1; }

typedef struct prev_site {
    uint64_t hash, off, allocs, bytes;
    uint32_t domain;
} prev_site;

static int cmd_watch(int argc, char **argv)
{
    uint64_t interval = 1000, count = 0, top = 10;
    for (int i = 0; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t *dst = !strcmp(argv[i], "--interval") ? &interval
                      : !strcmp(argv[i], "--count")    ? &count
                      : !strcmp(argv[i], "--top")      ? &top : NULL;
        if (!dst)
            return usage_error("watch: unexpected argument '%s'", argv[i]);
        if (parse_u64(v, dst) < 0)
            return usage_error("watch %s needs a number", argv[i]);
        i++;
    }
    if (interval < 100)
        return usage_error("watch --interval must be at least 100 ms");
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int tty = isatty(STDOUT_FILENO);
    prev_site *prev = NULL;
    size_t nprev = 0;
    struct timespec last = { 0 };
    for (uint64_t round = 0; !g_quit && (count == 0 || round < count); round++) {
        if (round > 0) {
            struct timespec ts = { .tv_sec = (time_t)(interval / 1000),
                                   .tv_nsec = (long)(interval % 1000) * 1000000 };
            while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !g_quit)
                ;
            if (g_quit)
                break;
        }
        Hakmem__Ctl__Response *st, *si;
        int r = get_status(&st);
        if (r) {
            free(prev);
            return r;
        }
        site_filter f = { .top = top };
        r = get_sites(&f, &si);
        if (r) {
            hakmem__ctl__response__free_unpacked(st, NULL);
            free(prev);
            return r;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double dt = round ? (double)(now.tv_sec - last.tv_sec) + (double)(now.tv_nsec - last.tv_nsec) / 1e9 : 0;
        last = now;
        const Hakmem__Ctl__Sites *ss = si->sites;
        if (g_json) {
            jw w;
            jw_init(&w, stdout);
            jw_obj(&w, NULL);
            jw_u64(&w, "round", round);
            status_json(&w, "status", st->status);
            jw_arr(&w, "sites");
            for (size_t i = 0; i < ss->n_sites; i++)
                site_json(&w, ss->sites[i], 1);
            jw_end_arr(&w);
            jw_end_obj(&w);
            jw_done(&w);
        } else {
            const Hakmem__Ctl__Status *s = st->status;
            char up[32];
            if (tty)
                fputs("\033[H\033[2J", stdout);
            printf("hakmemd %s  up %s  generation %" PRIu64 "  processes %u  sites %u  interval %u ms  learning %s\n",
                   s->version, human_duration(s->uptime_ms, up, sizeof up), s->generation, s->processes,
                   s->sites, s->interval_ms, s->learning ? "on" : "off");
            printf("%-34s %-26s %10s %10s %9s %7s %8s %5s %4s %s\n", "SITE", "FUNCTION", "ALLOCS/s",
                   "BYTES/s", "LIVE", "BC-HIT", "LARGE", "SLOTS", "THP", "ARM");
            for (size_t i = 0; i < ss->n_sites; i++) {
                const Hakmem__Ctl__Site *x = ss->sites[i];
                char key[48], loc[160], fn[256], b1[16], b2[16], b3[16], hr[16], arm[16], ar[24];
                int has_fn;
                key_text(x->key, key, sizeof key);
                location(x, loc, sizeof loc, fn, sizeof fn, &has_fn);
                double ra = -1, rb = -1;
                for (size_t p = 0; p < nprev && dt > 0; p++)
                    if (x->key && prev[p].hash == x->key->module_hash && prev[p].off == x->key->offset &&
                        prev[p].domain == x->key->domain) {
                        ra = (double)(x->allocs - prev[p].allocs) / dt;
                        rb = (double)(x->bytes - prev[p].bytes) / dt;
                    }
                if (ra >= 0)
                    snprintf(ar, sizeof ar, "%.0f", ra);
                else
                    snprintf(ar, sizeof ar, "-");
                double h = hit_rate(x->bigcache_hits, x->bigcache_misses);
                snprintf(hr, sizeof hr, h < 0 ? "-" : "%.1f%%", h * 100);
                int b = x->pinned_arm >= 0 ? x->pinned_arm : best_arm(x);
                snprintf(arm, sizeof arm, b < 0 ? "-" : x->pinned_arm >= 0 ? "%d (pin)" : "%d", b);
                const Hakmem__Ctl__Thresholds *t = x->thresholds;
                printf("%-34s %-26.26s %10s %10s %9s %7s %8s %5u %4s %s\n", key, has_fn ? fn : loc, ar,
                       rb >= 0 ? human_bytes((uint64_t)rb, b1, sizeof b1) : "-",
                       human_bytes(x->live_bytes, b2, sizeof b2), hr,
                       human_bytes(t ? t->large_threshold : 0, b3, sizeof b3), t ? t->bigcache_slots : 0,
                       t && t->thp ? "on" : "off", arm);
            }
            if (tty)
                printf("(every %.1f s; Ctrl-C quits)\n", (double)interval / 1000.0);
            fflush(stdout);
        }
        prev_site *np = calloc(ss->n_sites ? ss->n_sites : 1, sizeof *np);
        if (np) {
            for (size_t i = 0; i < ss->n_sites; i++)
                if (ss->sites[i]->key)
                    np[i] = (prev_site){ ss->sites[i]->key->module_hash, ss->sites[i]->key->offset,
                                         ss->sites[i]->allocs, ss->sites[i]->bytes, ss->sites[i]->key->domain };
            free(prev);
            prev = np;
            nprev = ss->n_sites;
        }
        hakmem__ctl__response__free_unpacked(st, NULL);
        hakmem__ctl__response__free_unpacked(si, NULL);
    }
    free(prev);
    return 0;
}

/* ---- main ---- */

int main(int argc, char **argv)
{
    /* Global options may stand anywhere; what is left is the command and
     * its own arguments, in order. */
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int nrest = 0;
    if (!rest)
        return fail(EXIT_ERR, "out of memory");
    g_socket = getenv("HAKMEM_SOCKET");
    if (!g_socket || !*g_socket)
        g_socket = "/run/hakmem/ctl.sock";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) {
            g_json = 1;
        } else if (!strcmp(a, "--socket") || !strncmp(a, "--socket=", 9)) {
            const char *v = a[8] == '=' ? a + 9 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v || !*v)
                return usage_error("--socket needs a path");
            g_socket = v;
        } else if (!strcmp(a, "--timeout")) {
            uint64_t t;
            if (i + 1 >= argc || parse_u64(argv[++i], &t) < 0 || t == 0 || t > 3600000)
                return usage_error("--timeout needs milliseconds");
            g_timeout_ms = (int)t;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help") || (nrest == 0 && !strcmp(a, "help"))) {
            fputs(usage_text, stdout);
            return 0;
        } else if (!strcmp(a, "--version")) {
            printf("hakmemctl %s (control protocol %d)\n", HAKMEM_VERSION, HKC_PROTOCOL_VERSION);
            return 0;
        } else {
            rest[nrest++] = argv[i];
        }
    }
    if (nrest == 0)
        return usage_error("no command given");
    const char *cmd = rest[0];
    int n = nrest - 1;
    char **args = rest + 1;
    int r;
    if (!strcmp(cmd, "status"))
        r = cmd_status(n, args);
    else if (!strcmp(cmd, "procs"))
        r = cmd_procs(n, args);
    else if (!strcmp(cmd, "sites"))
        r = cmd_sites(n, args, 0);
    else if (!strcmp(cmd, "thresholds"))
        r = cmd_sites(n, args, 1);
    else if (!strcmp(cmd, "export"))
        r = cmd_export(n, args);
    else if (!strcmp(cmd, "import"))
        r = cmd_import(n, args);
    else if (!strcmp(cmd, "reset"))
        r = cmd_reset(n, args);
    else if (!strcmp(cmd, "pin"))
        r = cmd_pin(n, args, 0);
    else if (!strcmp(cmd, "unpin"))
        r = cmd_pin(n, args, 1);
    else if (!strcmp(cmd, "metrics"))
        r = cmd_metrics(n, args);
    else if (!strcmp(cmd, "watch"))
        r = cmd_watch(n, args);
    else
        r = usage_error("unknown command '%s'", cmd);
    free(rest);
    if (r == 0 && (fflush(stdout) != 0 || ferror(stdout)))
        r = fail(EXIT_ERR, "cannot write the output: %s", strerror(errno));
    return r;
}
