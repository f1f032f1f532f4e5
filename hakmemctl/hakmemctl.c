/* hakmemctl: inspect and steer hakmemd over its control socket.
 *
 * Every command is one request and one response (watch repeats one),
 * except the answers that grow with the number of sites (sites, metrics,
 * export), which arrive in parts and are shown or written as they come,
 * and a large import, which goes in parts on one connection.
 * Exit codes, for scripts: 0 ok; 1 refused or an error reply; 2 usage;
 * 3 daemon not reachable.  Failures print exactly one line on stderr. */
#include "ctl_client.h"
#include "hakmem.h"
#include "hkctl.h"
#include "frame.h"
#include "jsonw.h"
#include "utf8.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *g_socket;
int g_json;
int g_timeout_ms = 5000;

static const char usage_text[] =
    "usage: hakmemctl [--socket PATH] [--json] [--timeout MS] COMMAND [ARGS]\n"
    "       hakmemctl --version | --help\n"
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
    "  binaries [--exe NAME]          binaries, per command, and their learned process-level arms\n"
    "  pin-binary HASH ARM [--user U] [--command WORD]\n"
    "                                 force a binary's arm (index or name), every command's or one's\n"
    "  unpin-binary HASH [--user U] [--command WORD]\n"
    "                                 let the learner choose the binary's arm again\n"
    "  reset-binary [HASH] [--user U] [--command WORD]\n"
    "                                 forget a binary's learning (or every binary's)\n"
    "  metrics                        Prometheus text exposition\n"
    "  fleet                          the fleet link: etcd endpoints, other hosts, sites shared,\n"
    "                                 the sites where the hosts run different arms\n"
    "  fleet pin [--user U] KEY ARM ETCD   pin a site's arm on every host of the fleet\n"
    "  fleet unpin [--user U] KEY ETCD     remove the fleet's pin: every host learns it again\n"
    "  fleet reset [--user U] KEY|all ETCD forget a site (or every site) on every host, once\n"
    "     ETCD: --fleet-endpoints URL[,URL...] (or $HAKMEM_FLEET_ENDPOINTS) [--fleet-name NAME]\n"
    "           [--fleet-cacert FILE] [--fleet-cert FILE --fleet-key FILE]\n"
    "           [--fleet-user USER [--fleet-password-file FILE]]  (else $HAKMEM_FLEET_PASSWORD)\n"
    "           written to etcd with these credentials, no daemon asked: etcd decides who may\n"
    "  watch [--interval MS] [--count N] [--top N]\n"
    "                                 a live view, refreshed every interval\n"
    "\n"
    "KEY is a site key as printed by 'sites' (MODULEHASH:OFFSET, hex).  Policy is learned\n"
    "per user: --user (a name or uid, default root) says whose site KEY is.\n"
    "--socket defaults to $HAKMEM_SOCKET, else /run/hakmem/ctl.sock.\n"
    "exit codes: 0 ok, 1 refused or error, 2 usage, 3 daemon (or etcd) not reachable\n";

int fail(int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "hakmemctl: %s\n", msg);
    return code;
}

int usage_error(const char *fmt, ...)
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

const char *safe(const char *s, char buf[SAFE_MAX])
{
    return hk_text_for_terminal(s, buf, SAFE_MAX);
}

int connect_daemon(void)
{
    int fd = hkc_connect(g_socket, g_timeout_ms);
    if (fd == -EACCES || fd == -EPERM)
        return -fail(EXIT_ERR, "permission denied on %s: join group hakmem or ask root", g_socket);
    if (fd < 0)
        return -fail(EXIT_UNREACHABLE, "hakmemd not reachable at %s: %s", g_socket, strerror(-fd));
    return fd;
}

/* Why an exchange failed (r < 0), in msg; returns the exit code. */
static int explain_failure(int r, char *msg, size_t cap)
{
    if (r == -EBADMSG) {
        snprintf(msg, cap, "hakmemd at %s sent an answer that does not parse", g_socket);
        return EXIT_ERR;
    }
    if (r == -EMSGSIZE) {
        snprintf(msg, cap, "request exceeds the maximum frame size (%u bytes)", HKC_FRAME_MAX);
        return EXIT_ERR;
    }
    if (r == -ETIMEDOUT)
        snprintf(msg, cap, "hakmemd at %s did not answer within %d ms", g_socket, g_timeout_ms);
    else
        snprintf(msg, cap, "hakmemd at %s closed the connection: %s", g_socket,
                 r == -ENODATA ? "no answer" : strerror(-r));
    return EXIT_UNREACHABLE;
}

/* 0 when resp is of the kind wanted; else why not in msg, and the exit code. */
static int explain_reply(const Hakmem__Ctl__Response *resp, Hakmem__Ctl__Response__ResultCase want, char *msg,
                         size_t cap)
{
    char b[SAFE_MAX];
    if (resp->result_case == HAKMEM__CTL__RESPONSE__RESULT_ERROR && resp->error) {
        snprintf(msg, cap, "%s: %s", error_name(resp->error->code),
                 safe(resp->error->text ? resp->error->text : "", b));
        return EXIT_ERR;
    }
    if (resp->result_case != want) {
        snprintf(msg, cap, "hakmemd sent an unexpected kind of answer");
        return EXIT_ERR;
    }
    return 0;
}

int exchange(int fd, Hakmem__Ctl__Request *rq, Hakmem__Ctl__Response__ResultCase want,
             Hakmem__Ctl__Response **out, char *msg, size_t cap)
{
    *out = NULL;
    Hakmem__Ctl__Response *resp;
    int r = hkc_call(fd, rq, &resp, g_timeout_ms);
    if (r < 0)
        return explain_failure(r, msg, cap);
    if ((r = explain_reply(resp, want, msg, cap)) != 0) {
        hakmem__ctl__response__free_unpacked(resp, NULL);
        return r;
    }
    *out = resp;
    return 0;
}

int call(Hakmem__Ctl__Request *rq, Hakmem__Ctl__Response__ResultCase want, Hakmem__Ctl__Response **out)
{
    *out = NULL;
    int fd = connect_daemon();
    if (fd < 0)
        return -fd;
    char msg[SAFE_MAX + 128];
    int r = exchange(fd, rq, want, out, msg, sizeof msg);
    close(fd);
    return r ? fail(r, "%s", msg) : 0;
}

typedef struct parts_call {
    Hakmem__Ctl__Response__ResultCase want;
    part_fn fn;
    void *arg;
} parts_call;

static int on_part(const Hakmem__Ctl__Response *resp, int last, void *arg)
{
    parts_call *pc = arg;
    char msg[SAFE_MAX + 128];
    int r = explain_reply(resp, pc->want, msg, sizeof msg);
    return r ? fail(r, "%s", msg) : pc->fn(resp, last, pc->arg);
}

int call_parts(Hakmem__Ctl__Request *rq, Hakmem__Ctl__Response__ResultCase want, part_fn fn, void *arg)
{
    int fd = connect_daemon();
    if (fd < 0)
        return -fd;
    parts_call pc = { want, fn, arg };
    int r = hkc_call_stream(fd, rq, on_part, &pc, g_timeout_ms);
    close(fd);
    if (r < 0) {
        char msg[256];
        r = explain_failure(r, msg, sizeof msg);
        return fail(r, "%s", msg);
    }
    return r;
}

/* ---- formatting ---- */

const char *human_bytes(uint64_t v, char *buf, size_t cap)
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

const char *human_duration(uint64_t ms, char *buf, size_t cap)
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

int parse_site_key(const char *s, uint64_t *hash, uint64_t *off)
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

int parse_u64(const char *s, uint64_t *v)
{
    char *end;
    if (!s || !*s || *s == '-')
        return -1;
    errno = 0;
    *v = strtoull(s, &end, 10);
    return errno || *end ? -1 : 0;
}

/* ---- status ---- */

void status_json(jw *w, const char *key, const Hakmem__Ctl__Status *s)
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

int get_status(Hakmem__Ctl__Response **out)
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
        char up[32], b[SAFE_MAX];
        printf("hakmemd %s (pid %d), up %s\n", safe(s->version, b), s->daemon_pid,
               human_duration(s->uptime_ms, up, sizeof up));
        printf("segment     %s\n", safe(s->segment, b));
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

int get_procs(Hakmem__Ctl__Response **out)
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
            char b1[16], b2[16], hb[32], exe[SAFE_MAX];
            human_duration(q->last_heartbeat_ms_ago, hb, sizeof hb);
            strncat(hb, " ago", sizeof hb - strlen(hb) - 1);
            printf("%-8d %6u %10s %10s %10" PRIu64 " %10s  %s\n", q->pid, q->sites,
                   human_bytes(q->bytes, b1, sizeof b1), human_bytes(q->rss_bytes, b2, sizeof b2),
                   q->page_faults, hb, safe(q->exe, exe));
        }
        if (p->n_procs == 0)
            printf("(no process is attached to the segment)\n");
    }
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
            if (parse_site_key(text, &key.module_hash, &key.offset) < 0)
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
    return find_arm(key, arm, out);
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
    if (parse_site_key(argv[0], &key.module_hash, &key.offset) < 0)
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

/* The text goes out as it arrives: some 200 MB at 65,536 sites. */
static int metrics_part(const Hakmem__Ctl__Response *resp, int last, void *arg)
{
    jw *w = arg;
    const char *text = resp->metrics->text ? resp->metrics->text : "";
    if (g_json) {
        jw_str_piece(w, text, strlen(text));
        if (last) {
            jw_str_end(w);
            jw_end_obj(w);
            jw_done(w);
        }
    } else {
        fputs(text, stdout);
    }
    return ferror(stdout) ? fail(EXIT_ERR, "cannot write the output: %s", strerror(errno)) : 0;
}

static int cmd_metrics(int argc, char **argv)
{
    if (argc > 0)
        return usage_error("metrics takes no arguments");
    (void)argv;
    Hakmem__Ctl__Request rq = HAKMEM__CTL__REQUEST__INIT;
    Hakmem__Ctl__MetricsRequest mr = HAKMEM__CTL__METRICS_REQUEST__INIT;
    rq.command_case = HAKMEM__CTL__REQUEST__COMMAND_METRICS;
    rq.metrics = &mr;
    jw w;
    if (g_json) {
        jw_init(&w, stdout);
        jw_obj(&w, NULL);
        jw_str(&w, "content_type", "text/plain; version=0.0.4");
        jw_str_begin(&w, "text");
    }
    return call_parts(&rq, HAKMEM__CTL__RESPONSE__RESULT_METRICS, metrics_part, &w);
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
    else if (!strcmp(cmd, "binaries"))
        r = cmd_binaries(n, args);
    else if (!strcmp(cmd, "pin-binary"))
        r = cmd_pin_binary(n, args, 0);
    else if (!strcmp(cmd, "unpin-binary"))
        r = cmd_pin_binary(n, args, 1);
    else if (!strcmp(cmd, "reset-binary"))
        r = cmd_reset_binary(n, args);
    else if (!strcmp(cmd, "watch"))
        r = cmd_watch(n, args);
    else if (!strcmp(cmd, "fleet"))
        r = cmd_fleet(n, args);
    else
        r = usage_error("unknown command '%s'", cmd);
    free(rest);
    if (r == 0 && (fflush(stdout) != 0 || ferror(stdout)))
        r = fail(EXIT_ERR, "cannot write the output: %s", strerror(errno));
    return r;
}
