/* Control request handlers; see ctl_handlers.h. */
#include "ctl_handlers.h"
#include "binaries.h"
#include "ctl_access.h"
#include "ctl_answer.h"
#include "ctl_binaries.h"
#include "ctl_fleet.h"
#include "core_api.h"
#include "frame.h"
#include "log.h"
#include "proc_copy.h"
#include "control.pb-c.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- responses (ctl_answer.h) ---- */

static hkc_out out_of(const hkc_conn *c)
{
    return (hkc_out){ .fd = c->fd, .timeout_ms = c->timeout_ms, .stream = c->stream };
}

static int send_response(hkc_conn *c, Hakmem__Ctl__Response *resp)
{
    hkc_out o = out_of(c);
    return hkc_send(&o, resp);
}

static int send_error(hkc_conn *c, Hakmem__Ctl__Error__Code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int send_error(hkc_conn *c, Hakmem__Ctl__Error__Code code, const char *fmt, ...)
{
    hkc_out o = out_of(c);
    va_list ap;
    va_start(ap, fmt);
    int r = hkc_send_errorv(&o, code, fmt, ap);
    va_end(ap);
    return r;
}

static int send_core_error(hkc_conn *c, const char *what, int err)
{
    hkc_out o = out_of(c);
    return hkc_send_core_error(&o, what, err);
}

static int send_done(hkc_conn *c, int count)
{
    Hakmem__Ctl__Response resp = HAKMEM__CTL__RESPONSE__INIT;
    Hakmem__Ctl__Done done = HAKMEM__CTL__DONE__INIT;
    done.count = count;
    resp.result_case = HAKMEM__CTL__RESPONSE__RESULT_DONE;
    resp.done = &done;
    return send_response(c, &resp);
}

/* ---- reads ---- */

static int do_status(hkc_conn *c)
{
    hkd_status st;
    int r = hkd_get_status(&st);
    if (r < 0)
        return send_core_error(c, "status", r);
    st.version[sizeof st.version - 1] = '\0';
    st.shm_name[sizeof st.shm_name - 1] = '\0';
    Hakmem__Ctl__Response resp = HAKMEM__CTL__RESPONSE__INIT;
    Hakmem__Ctl__Status s = HAKMEM__CTL__STATUS__INIT;
    s.version = st.version;
    s.uptime_ms = st.uptime_ms;
    s.segment = st.shm_name;
    s.generation = st.generation;
    s.processes = st.processes;
    s.sites = st.sites;
    s.interval_ms = st.interval_ms;
    s.intervals = st.intervals;
    s.last_interval_ns = st.last_interval_ns;
    s.learning = st.learning != 0;
    s.protocol_version = HKC_PROTOCOL_VERSION;
    s.daemon_pid = (int32_t)getpid();
    s.domains = st.domains;
    s.sites_archived = st.sites_archived;
    s.sites_refused = st.sites_refused;
    s.sites_evicted = st.sites_evicted;
    resp.result_case = HAKMEM__CTL__RESPONSE__RESULT_STATUS;
    resp.status = &s;
    return send_response(c, &resp);
}

static int do_procs(hkc_conn *c)
{
    hkd_proc_info *pi;
    size_t n;
    int r = hkd_procs_copy(&pi, &n);
    if (r < 0)
        return send_core_error(c, "procs", r);
    Hakmem__Ctl__Proc *procs = calloc(n ? n : 1, sizeof *procs);
    Hakmem__Ctl__Proc **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    if (!procs || !ptrs) {
        free(procs), free(ptrs), free(pi);
        return send_core_error(c, "procs", -ENOMEM);
    }
    for (size_t i = 0; i < n; i++) {
        hakmem__ctl__proc__init(&procs[i]);
        procs[i].pid = pi[i].pid;
        procs[i].exe = pi[i].exe;
        procs[i].sites = pi[i].sites;
        procs[i].bytes = pi[i].bytes;
        procs[i].rss_bytes = pi[i].rss_bytes;
        procs[i].page_faults = pi[i].page_faults;
        procs[i].last_heartbeat_ms_ago = pi[i].last_heartbeat_ms_ago;
        ptrs[i] = &procs[i];
    }
    Hakmem__Ctl__Response resp = HAKMEM__CTL__RESPONSE__INIT;
    Hakmem__Ctl__Procs msg = HAKMEM__CTL__PROCS__INIT;
    msg.n_procs = n;
    msg.procs = ptrs;
    resp.result_case = HAKMEM__CTL__RESPONSE__RESULT_PROCS;
    resp.procs = &msg;
    r = send_response(c, &resp);
    free(procs), free(ptrs), free(pi);
    return r;
}

/* ---- changes ---- */

static int key_of(const Hakmem__Ctl__SiteKey *k, hkd_site_key *out)
{
    if (!k)
        return -EINVAL;
    out->module_hash = k->module_hash;
    out->offset = k->offset;
    out->domain = k->domain;
    return 0;
}

/* A large policy comes in parts on one connection (ImportRequest.more),
 * each a complete policy: each is merged as it arrives, and the import is
 * logged once, when its last part is in (or one fails). */
static int do_import(hkc_conn *c, const Hakmem__Ctl__ImportRequest *rq)
{
    int r = hkd_policy_import(rq->policy.data, rq->policy.len);
    c->import_parts++;
    c->import_bytes += rq->policy.len;
    if (r < 0) {
        if (c->import_parts > 1)
            hkd_log(HKD_LOG_WARNING, "policy import from uid %u (pid %d) failed at part %u: %s "
                    "(the %" PRIu64 " sites of the parts before were merged)",
                    (unsigned)c->cred.uid, (int)c->cred.pid, c->import_parts, strerror(-r), c->import_sites);
        else
            hkd_log(HKD_LOG_WARNING, "policy import from uid %u (pid %d) failed: %s", (unsigned)c->cred.uid,
                    (int)c->cred.pid, strerror(-r));
        c->import_parts = 0, c->import_sites = c->import_bytes = 0;
        return send_core_error(c, "import", r);
    }
    c->import_sites += (uint64_t)r;
    if (!rq->more) {
        hkd_log(HKD_LOG_NOTICE, "policy imported by uid %u (pid %d): %" PRIu64 " sites, %" PRIu64 " bytes%s",
                (unsigned)c->cred.uid, (int)c->cred.pid, c->import_sites, c->import_bytes,
                c->import_parts > 1 ? " (in parts)" : "");
        c->import_parts = 0, c->import_sites = c->import_bytes = 0;
    }
    return send_done(c, r);
}

static int do_reset(hkc_conn *c, const Hakmem__Ctl__ResetRequest *rq)
{
    hkd_site_key key;
    int whole = rq->site == NULL;
    if (!whole)
        key_of(rq->site, &key);
    int r = hkd_reset(whole ? NULL : &key);
    if (r < 0)
        return send_core_error(c, "reset", r);
    if (whole)
        hkd_log(HKD_LOG_NOTICE, "learned policy reset by uid %u (pid %d)",
                (unsigned)c->cred.uid, (int)c->cred.pid);
    else
        hkd_log(HKD_LOG_NOTICE, "site %016" PRIx64 ":%" PRIx64 " of uid %u reset by uid %u (pid %d)",
                key.module_hash, key.offset, key.domain, (unsigned)c->cred.uid, (int)c->cred.pid);
    return send_done(c, r);
}

static int do_pin(hkc_conn *c, const Hakmem__Ctl__PinRequest *rq)
{
    hkd_site_key key;
    if (key_of(rq->site, &key) < 0)
        return send_error(c, HAKMEM__CTL__ERROR__CODE__BAD_REQUEST, "pin: no site given");
    int r = hkd_pin(&key, rq->arm < 0 ? -1 : rq->arm);
    if (r < 0)
        return send_core_error(c, rq->arm < 0 ? "unpin" : "pin", r);
    if (rq->arm < 0)
        hkd_log(HKD_LOG_NOTICE, "site %016" PRIx64 ":%" PRIx64 " of uid %u unpinned by uid %u (pid %d)",
                key.module_hash, key.offset, key.domain, (unsigned)c->cred.uid, (int)c->cred.pid);
    else
        hkd_log(HKD_LOG_NOTICE, "site %016" PRIx64 ":%" PRIx64 " of uid %u pinned to arm %d by uid %u (pid %d)",
                key.module_hash, key.offset, key.domain, rq->arm, (unsigned)c->cred.uid, (int)c->cred.pid);
    return send_done(c, r);
}

/* A pin's or a reset's choice of keys; -EINVAL when the command named is
 * not one. */
static int binary_sel(uint32_t domain, uint64_t hash, int by_command, const char *command, hkd_binary_sel *sel)
{
    memset(sel, 0, sizeof *sel);
    sel->domain = domain;
    sel->binary_hash = hash;
    sel->by_command = by_command;
    if (!by_command || !command || !command[0])
        return 0;
    char field[HKSHM_COMMAND_MAX];
    size_t n = hkshm_command_field(field, command);
    if (!n)
        return -EINVAL;
    sel->command_hash = hkshm_command_hash(field, n);
    return 0;
}

static const char *sel_text(const hkd_binary_sel *sel, const char *command, char *buf, size_t len)
{
    if (!sel->by_command)
        snprintf(buf, len, "every command");
    else if (!sel->command_hash)
        snprintf(buf, len, "no command");
    else
        snprintf(buf, len, "command %s", command);
    return buf;
}

static int do_binary_pin(hkc_conn *c, const Hakmem__Ctl__BinaryPinRequest *rq)
{
    const char *what = rq->arm < 0 ? "unpin-binary" : "pin-binary";
    hkd_binary_sel sel;
    int r = binary_sel(rq->domain, rq->binary_hash, rq->by_command, rq->command, &sel);
    if (r == 0)
        r = hkd_binary_pin(&sel, rq->arm < 0 ? -1 : rq->arm);
    if (r < 0)
        return send_core_error(c, what, r);
    char which[48];
    hkd_log(HKD_LOG_NOTICE, "binary %016" PRIx64 " of uid %u (%s, %d key%s) %s by uid %u (pid %d)", rq->binary_hash,
            (unsigned)rq->domain, sel_text(&sel, rq->command, which, sizeof which), r, r == 1 ? "" : "s",
            rq->arm < 0 ? "unpinned" : "pinned", (unsigned)c->cred.uid, (int)c->cred.pid);
    return send_done(c, r);
}

static int do_binary_reset(hkc_conn *c, const Hakmem__Ctl__BinaryResetRequest *rq)
{
    hkd_binary_sel sel;
    int r = binary_sel(rq->domain, rq->binary_hash, rq->by_command, rq->command, &sel);
    if (r == 0)
        r = hkd_binary_reset(&sel);
    if (r < 0)
        return send_core_error(c, "reset-binary", r);
    char which[48];
    hkd_log(HKD_LOG_NOTICE, "%s learning reset (%s) by uid %u (pid %d)", rq->binary_hash ? "a binary's" : "every binary's",
            sel_text(&sel, rq->command, which, sizeof which), (unsigned)c->cred.uid, (int)c->cred.pid);
    return send_done(c, r);
}

/* ---- registration ---- */

/* A client's RegisterRequest, with the region descriptor that came with it
 * (-1: none), which this closes.  1 when the connection now belongs to the
 * registration (nothing more is read from it here), 0 to keep serving,
 * < 0 to close. */
static int do_register(hkc_conn *c, const Hakmem__Ctl__Request *rq, int region_fd)
{
    const Hakmem__Ctl__RegisterRequest *rr = rq->register_client;
    Hakmem__Ctl__Error__Code code = HAKMEM__CTL__ERROR__CODE__INVALID_ARGUMENT;
    char why[256] = "";
    uint64_t instance = 0;
    int rc = -EINVAL;
    if (rq->version != HKC_PROTOCOL_VERSION) {
        code = HAKMEM__CTL__ERROR__CODE__UNSUPPORTED_VERSION;
        snprintf(why, sizeof why, "protocol version %u not supported (this daemon speaks %d)", rq->version,
                 HKC_PROTOCOL_VERSION);
    } else if (c->role < HKC_ROLE_READ) {
        code = HAKMEM__CTL__ERROR__CODE__PERMISSION_DENIED;
        snprintf(why, sizeof why, "only root, the daemon's user and group " HKC_GROUP " may register");
    } else if (rr->abi_version != HKSHM_ABI_VERSION) {
        snprintf(why, sizeof why, "the client speaks ABI %u; this daemon speaks %u", rr->abi_version,
                 HKSHM_ABI_VERSION);
    } else if (rr->region_size != HKSHM_REGION_SIZE) {
        snprintf(why, sizeof why, "the client's region is %llu bytes; this daemon's ABI says %u",
                 (unsigned long long)rr->region_size, HKSHM_REGION_SIZE);
    } else if (region_fd < 0) {
        snprintf(why, sizeof why, "the request must carry exactly one descriptor, the region's, with its first byte");
    } else {
        rc = hkd_register_client(c->fd, region_fd, &c->cred, &instance, why, sizeof why);
        code = rc == -EUSERS ? HAKMEM__CTL__ERROR__CODE__BUSY
             : rc == -ENODEV || rc == -ENOMEM ? HAKMEM__CTL__ERROR__CODE__INTERNAL : code;
    }
    if (region_fd >= 0)
        close(region_fd);
    if (rc == 0) {
        Hakmem__Ctl__Response resp = HAKMEM__CTL__RESPONSE__INIT;
        Hakmem__Ctl__Registered reg = HAKMEM__CTL__REGISTERED__INIT;
        reg.instance = instance;
        resp.result_case = HAKMEM__CTL__RESPONSE__RESULT_REGISTERED;
        resp.registered = &reg;
        send_response(c, &resp);
        return 1;
    }
    if (hkc_refusal_log_due(c->cred.uid))
        hkd_log(HKD_LOG_WARNING, "refused registration of pid %d (uid %u): %s", (int)c->cred.pid,
                (unsigned)c->cred.uid, why);
    return send_error(c, code, "registration refused: %s", why);
}

/* ---- dispatch ---- */

static const char *command_name(Hakmem__Ctl__Request__CommandCase cc)
{
    switch (cc) {
    case HAKMEM__CTL__REQUEST__COMMAND_STATUS: return "status";
    case HAKMEM__CTL__REQUEST__COMMAND_PROCS: return "procs";
    case HAKMEM__CTL__REQUEST__COMMAND_SITES: return "sites";
    case HAKMEM__CTL__REQUEST__COMMAND_EXPORT_POLICY: return "export";
    case HAKMEM__CTL__REQUEST__COMMAND_IMPORT_POLICY: return "import";
    case HAKMEM__CTL__REQUEST__COMMAND_RESET: return "reset";
    case HAKMEM__CTL__REQUEST__COMMAND_PIN: return "pin";
    case HAKMEM__CTL__REQUEST__COMMAND_METRICS: return "metrics";
    case HAKMEM__CTL__REQUEST__COMMAND_BINARIES: return "binaries";
    case HAKMEM__CTL__REQUEST__COMMAND_BINARY_PIN: return "pin-binary";
    case HAKMEM__CTL__REQUEST__COMMAND_BINARY_RESET: return "reset-binary";
    case HAKMEM__CTL__REQUEST__COMMAND_FLEET: return "fleet";
    default: return "?";
    }
}

static int is_change(Hakmem__Ctl__Request__CommandCase cc)
{
    return cc == HAKMEM__CTL__REQUEST__COMMAND_IMPORT_POLICY ||
           cc == HAKMEM__CTL__REQUEST__COMMAND_RESET ||
           cc == HAKMEM__CTL__REQUEST__COMMAND_PIN ||
           cc == HAKMEM__CTL__REQUEST__COMMAND_BINARY_PIN ||
           cc == HAKMEM__CTL__REQUEST__COMMAND_BINARY_RESET;
}

/* Returns < 0 when the connection must close. */
static int handle(hkc_conn *c, const Hakmem__Ctl__Request *rq)
{
    c->stream = rq->stream;
    if (rq->version != HKC_PROTOCOL_VERSION)
        return send_error(c, HAKMEM__CTL__ERROR__CODE__UNSUPPORTED_VERSION,
                          "protocol version %u not supported (this daemon speaks %d)",
                          rq->version, HKC_PROTOCOL_VERSION);
    Hakmem__Ctl__Request__CommandCase cc = rq->command_case;
    if (cc == HAKMEM__CTL__REQUEST__COMMAND__NOT_SET || !strcmp(command_name(cc), "?"))
        return send_error(c, HAKMEM__CTL__ERROR__CODE__BAD_REQUEST, "request names no known command");

    hkc_role need = is_change(cc) ? HKC_ROLE_ADMIN : HKC_ROLE_READ;
    if (c->role < need) {
        hkd_log(HKD_LOG_WARNING, "refused %s from uid %u gid %u (pid %d): %s",
                command_name(cc), (unsigned)c->cred.uid, (unsigned)c->cred.gid, (int)c->cred.pid,
                need == HKC_ROLE_ADMIN ? "changes need root or the daemon's user"
                                   : "reads need group " HKC_GROUP);
        return send_error(c, HAKMEM__CTL__ERROR__CODE__PERMISSION_DENIED,
                          need == HKC_ROLE_ADMIN
                              ? "%s changes the daemon: only root or the daemon's user may do it"
                              : "%s: only root, the daemon's user and group " HKC_GROUP " may read",
                          command_name(cc));
    }
    hkc_out o = out_of(c);
    switch (cc) {
    case HAKMEM__CTL__REQUEST__COMMAND_STATUS: return do_status(c);
    case HAKMEM__CTL__REQUEST__COMMAND_PROCS: return do_procs(c);
    case HAKMEM__CTL__REQUEST__COMMAND_SITES: return hkc_answer_sites(&o, rq->sites);
    case HAKMEM__CTL__REQUEST__COMMAND_EXPORT_POLICY: return hkc_answer_export(&o);
    case HAKMEM__CTL__REQUEST__COMMAND_IMPORT_POLICY: return do_import(c, rq->import_policy);
    case HAKMEM__CTL__REQUEST__COMMAND_RESET: return do_reset(c, rq->reset);
    case HAKMEM__CTL__REQUEST__COMMAND_PIN: return do_pin(c, rq->pin);
    case HAKMEM__CTL__REQUEST__COMMAND_METRICS: return hkc_answer_metrics(&o);
    case HAKMEM__CTL__REQUEST__COMMAND_BINARIES: return hkc_answer_binaries(&o);
    case HAKMEM__CTL__REQUEST__COMMAND_BINARY_PIN: return do_binary_pin(c, rq->binary_pin);
    case HAKMEM__CTL__REQUEST__COMMAND_BINARY_RESET: return do_binary_reset(c, rq->binary_reset);
    case HAKMEM__CTL__REQUEST__COMMAND_FLEET: return hkc_answer_fleet(&o);
    default: return -EINVAL;
    }
}

void hkc_serve(hkc_conn *c, const atomic_int *stopping)
{
    for (;;) {
        uint8_t *buf;
        size_t len;
        int passed = -1;
        int r = hkc_frame_read_fd(c->fd, &buf, &len, HKC_FRAME_MAX, c->timeout_ms, &passed);
        if (r == -ENODATA)
            return;
        if (r == -EMSGSIZE) {
            hkd_log(HKD_LOG_WARNING, "uid %u (pid %d) sent a %zu-byte frame (max %u); closing",
                    (unsigned)c->cred.uid, (int)c->cred.pid, len, HKC_FRAME_MAX);
            send_error(c, HAKMEM__CTL__ERROR__CODE__TOO_LARGE,
                       "frame of %zu bytes exceeds the maximum of %u", len, HKC_FRAME_MAX);
            return;
        }
        if (r == -ETIMEDOUT) {
            hkd_log(HKD_LOG_INFO, "closing connection of uid %u (pid %d): no complete request within %d ms",
                    (unsigned)c->cred.uid, (int)c->cred.pid, c->timeout_ms);
            return;
        }
        if (r < 0) {
            if (r != -ECONNRESET && r != -EPIPE)
                hkd_log(HKD_LOG_INFO, "connection of uid %u (pid %d) ended: %s",
                        (unsigned)c->cred.uid, (int)c->cred.pid, strerror(-r));
            return;
        }
        Hakmem__Ctl__Request *rq = hakmem__ctl__request__unpack(NULL, len, buf);
        free(buf);
        int registering = rq && rq->command_case == HAKMEM__CTL__REQUEST__COMMAND_REGISTER_CLIENT;
        if (passed >= 0 && !registering) {
            close(passed);           /* only a registration carries a descriptor */
            passed = -1;
        }
        if (!rq) {
            hkd_log(HKD_LOG_WARNING, "uid %u (pid %d) sent %zu bytes that are not a request; closing",
                    (unsigned)c->cred.uid, (int)c->cred.pid, len);
            send_error(c, HAKMEM__CTL__ERROR__CODE__BAD_REQUEST, "the frame is not a control request");
            return;
        }
        r = registering ? do_register(c, rq, passed) : handle(c, rq);
        hakmem__ctl__request__free_unpacked(rq, NULL);
        if (r < 0 || r == 1 || atomic_load(stopping))
            return;
    }
}
