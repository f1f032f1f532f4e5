/* The control server.  One acceptor thread; one detached thread per
 * connection, each with a whole-frame deadline (also while idle between
 * requests), so a slow or silent client only ever holds its own thread.
 * The core is read through core_api.h, whose readers never block the
 * learner; answers that grow with the number of sites go out in bounded
 * parts (ctl_answer.h), never built whole.
 *
 * Connections: at most HKC_MAX_CONNS at a time, of which HKC_ADMIN_RESERVED
 * only root and the daemon's user may take, and at most HKC_CONNS_PER_UID
 * from any one uid but root's, so one group member's keep-alive clients
 * lock out neither root nor the other members.  A refused client is
 * answered BUSY.
 *
 * Authorization (SO_PEERCRED, and SO_PEERGROUPS for supplementary groups):
 * root and the daemon's own user may do everything; members of the group
 * "hakmem" may read, and register their report regions.  Every refusal is
 * answered and logged (refused registrations at most once a minute per
 * uid: a client retries them). */
#include "ctl_server.h"
#include "ctl_answer.h"
#include "ctl_binaries.h"
#include "ctl_fleet.h"
#include "core_api.h"
#include "frame.h"
#include "log.h"
#include "proc_copy.h"
#include "control.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define HKC_MAX_CONNS 64
#define HKC_ADMIN_RESERVED 8
#define HKC_CONNS_PER_UID 8          /* default; HAKMEMD_CTL_CONNS_PER_UID */
#define HKC_DEFAULT_TIMEOUT_MS 5000
#define HKC_GROUP "hakmem"
#define HKC_MAX_LINGER 32
#define HKC_LINGER_MS 1000

typedef enum { ROLE_NONE, ROLE_READ, ROLE_ADMIN } role_t;

typedef struct conn {
    int fd;
    struct ucred cred;
    role_t role;
    int stream;                 /* the request being answered set Request.stream */
    uint32_t import_parts;      /* an import in parts: parts and sites merged so far */
    uint64_t import_sites, import_bytes;
    struct conn *next;
} conn;

static struct {
    int listen_fd;
    int owned;                  /* we bound the path and remove it at stop */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int wake[2];
    pthread_t acceptor;
    int running;
    atomic_int stopping;
    int timeout_ms;
    int per_uid;
    gid_t group;
    int have_group;
    uid_t self_uid;
    pthread_mutex_t mu;
    pthread_cond_t idle;
    conn *conns;
    int nconns;
    /* Refused (busy) connections: answered, write side shut, and read until
     * the client closes, so that closing never discards a request still in
     * flight (on a Unix socket that turns the client's read of our answer
     * into ECONNRESET).  Polled by the acceptor; bounded by a deadline. */
    int linger_fd[HKC_MAX_LINGER];
    int64_t linger_until[HKC_MAX_LINGER];
    int nlinger;
    int64_t refusal_logged_ms;  /* refusals are logged at most once a second */
    unsigned refusals_unlogged;
} S = { .listen_fd = -1, .wake = { -1, -1 }, .mu = PTHREAD_MUTEX_INITIALIZER,
        .idle = PTHREAD_COND_INITIALIZER };

/* ---- authorization ---- */

/* From the peer's uid and primary gid alone. */
static role_t role_of_cred(const struct ucred *cred)
{
    if (cred->uid == 0 || cred->uid == S.self_uid)
        return ROLE_ADMIN;
    if (S.have_group && cred->gid == S.group)
        return ROLE_READ;
    return ROLE_NONE;
}

static role_t role_of(int fd, struct ucred *cred)
{
    socklen_t len = sizeof *cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, &len) < 0)
        return ROLE_NONE;
    role_t role = role_of_cred(cred);
    if (role != ROLE_NONE || !S.have_group)
        return role;
    gid_t groups[256];
    len = sizeof groups;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
        for (size_t i = 0; i < len / sizeof(gid_t); i++)
            if (groups[i] == S.group)
                return ROLE_READ;
    }
    return ROLE_NONE;
}

/* ---- responses (ctl_answer.h) ---- */

static hkc_out out_of(const conn *c)
{
    return (hkc_out){ .fd = c->fd, .timeout_ms = S.timeout_ms, .stream = c->stream };
}

static int send_response(conn *c, Hakmem__Ctl__Response *resp)
{
    hkc_out o = out_of(c);
    return hkc_send(&o, resp);
}

static int send_error(conn *c, Hakmem__Ctl__Error__Code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int send_error(conn *c, Hakmem__Ctl__Error__Code code, const char *fmt, ...)
{
    hkc_out o = out_of(c);
    va_list ap;
    va_start(ap, fmt);
    int r = hkc_send_errorv(&o, code, fmt, ap);
    va_end(ap);
    return r;
}

static int send_core_error(conn *c, const char *what, int err)
{
    hkc_out o = out_of(c);
    return hkc_send_core_error(&o, what, err);
}

static int send_done(conn *c, int count)
{
    Hakmem__Ctl__Response resp = HAKMEM__CTL__RESPONSE__INIT;
    Hakmem__Ctl__Done done = HAKMEM__CTL__DONE__INIT;
    done.count = count;
    resp.result_case = HAKMEM__CTL__RESPONSE__RESULT_DONE;
    resp.done = &done;
    return send_response(c, &resp);
}

/* ---- reads ---- */

static int do_status(conn *c)
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

static int do_procs(conn *c)
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
static int do_import(conn *c, const Hakmem__Ctl__ImportRequest *rq)
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

static int do_reset(conn *c, const Hakmem__Ctl__ResetRequest *rq)
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

static int do_pin(conn *c, const Hakmem__Ctl__PinRequest *rq)
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

static int do_binary_pin(conn *c, const Hakmem__Ctl__BinaryPinRequest *rq)
{
    int r = hkd_binary_pin(rq->domain, rq->binary_hash, rq->arm < 0 ? -1 : rq->arm);
    if (r < 0)
        return send_core_error(c, rq->arm < 0 ? "unpin-binary" : "pin-binary", r);
    hkd_log(HKD_LOG_NOTICE, "binary %016" PRIx64 " of uid %u %s by uid %u (pid %d)", rq->binary_hash,
            (unsigned)rq->domain, rq->arm < 0 ? "unpinned" : "pinned", (unsigned)c->cred.uid, (int)c->cred.pid);
    return send_done(c, 0);
}

static int do_binary_reset(conn *c, const Hakmem__Ctl__BinaryResetRequest *rq)
{
    int r = hkd_binary_reset(rq->domain, rq->binary_hash);
    if (r < 0)
        return send_core_error(c, "reset-binary", r);
    hkd_log(HKD_LOG_NOTICE, "%s learning reset by uid %u (pid %d)", rq->binary_hash ? "a binary's" : "every binary's",
            (unsigned)c->cred.uid, (int)c->cred.pid);
    return send_done(c, r);
}

/* ---- registration ---- */

#define REFUSAL_UIDS 64
#define REFUSAL_LOG_MS 60000

static struct {
    pthread_mutex_t mu;
    uid_t uid[REFUSAL_UIDS];
    int64_t at_ms[REFUSAL_UIDS];     /* 0: unused */
} refusals = { .mu = PTHREAD_MUTEX_INITIALIZER };

static int64_t now_ms(void);

/* 1 when a refusal for uid may be logged now (then not again for a
 * minute); the least recently logged uid gives way to a new one. */
static int refusal_log_due(uid_t uid)
{
    int64_t now = now_ms();
    pthread_mutex_lock(&refusals.mu);
    int k = 0, due = 1;
    for (int i = 0; i < REFUSAL_UIDS; i++) {
        if (refusals.at_ms[i] && refusals.uid[i] == uid) {
            k = i;
            due = now - refusals.at_ms[i] >= REFUSAL_LOG_MS;
            break;
        }
        if (refusals.at_ms[i] < refusals.at_ms[k])
            k = i;
    }
    if (due) {
        refusals.uid[k] = uid;
        refusals.at_ms[k] = now ? now : 1;
    }
    pthread_mutex_unlock(&refusals.mu);
    return due;
}

/* A client's RegisterRequest, with the region descriptor that came with it
 * (-1: none), which this closes.  1 when the connection now belongs to the
 * registration (nothing more is read from it here), 0 to keep serving,
 * < 0 to close. */
static int do_register(conn *c, const Hakmem__Ctl__Request *rq, int region_fd)
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
    } else if (c->role < ROLE_READ) {
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
    if (refusal_log_due(c->cred.uid))
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
static int handle(conn *c, const Hakmem__Ctl__Request *rq)
{
    c->stream = rq->stream;
    if (rq->version != HKC_PROTOCOL_VERSION)
        return send_error(c, HAKMEM__CTL__ERROR__CODE__UNSUPPORTED_VERSION,
                          "protocol version %u not supported (this daemon speaks %d)",
                          rq->version, HKC_PROTOCOL_VERSION);
    Hakmem__Ctl__Request__CommandCase cc = rq->command_case;
    if (cc == HAKMEM__CTL__REQUEST__COMMAND__NOT_SET || !strcmp(command_name(cc), "?"))
        return send_error(c, HAKMEM__CTL__ERROR__CODE__BAD_REQUEST, "request names no known command");

    role_t need = is_change(cc) ? ROLE_ADMIN : ROLE_READ;
    if (c->role < need) {
        hkd_log(HKD_LOG_WARNING, "refused %s from uid %u gid %u (pid %d): %s",
                command_name(cc), (unsigned)c->cred.uid, (unsigned)c->cred.gid, (int)c->cred.pid,
                need == ROLE_ADMIN ? "changes need root or the daemon's user"
                                   : "reads need group " HKC_GROUP);
        return send_error(c, HAKMEM__CTL__ERROR__CODE__PERMISSION_DENIED,
                          need == ROLE_ADMIN
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

static void serve(conn *c)
{
    for (;;) {
        uint8_t *buf;
        size_t len;
        int passed = -1;
        int r = hkc_frame_read_fd(c->fd, &buf, &len, HKC_FRAME_MAX, S.timeout_ms, &passed);
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
                    (unsigned)c->cred.uid, (int)c->cred.pid, S.timeout_ms);
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
        if (r < 0 || r == 1 || atomic_load(&S.stopping))
            return;
    }
}

/* Takes c out of the connection table (it no longer counts against any
 * limit). */
static void conn_unlink(conn *c)
{
    pthread_mutex_lock(&S.mu);
    for (conn **pp = &S.conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            S.nconns--;
            break;
        }
    if (S.nconns == 0)
        pthread_cond_broadcast(&S.idle);
    pthread_mutex_unlock(&S.mu);
}

static void *conn_main(void *arg)
{
    conn *c = arg;
    hkd_reader_thread_enter();
    serve(c);
    hkd_reader_thread_leave();
    conn_unlink(c);
    close(c->fd);
    free(c);
    return NULL;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Under S.mu: NULL when c may join the table, else why not.  Root is
 * limited only by the table; everyone else to S.per_uid connections; all
 * but root and the daemon's user together leave HKC_ADMIN_RESERVED free. */
static const char *admit(const conn *c, char *why, size_t cap)
{
    if (S.nconns >= HKC_MAX_CONNS) {
        snprintf(why, cap, "all %d control connections are in use; try again", HKC_MAX_CONNS);
        return why;
    }
    if (c->cred.uid != 0) {
        int mine = 0;
        for (const conn *o = S.conns; o; o = o->next)
            mine += o->cred.uid == c->cred.uid;
        if (mine >= S.per_uid) {
            snprintf(why, cap, "uid %u already has %d control connections open (the most one uid may); try again",
                     (unsigned)c->cred.uid, mine);
            return why;
        }
    }
    if (c->role != ROLE_ADMIN && S.nconns >= HKC_MAX_CONNS - HKC_ADMIN_RESERVED) {
        snprintf(why, cap, "the control connections left are kept for root and the daemon's user; try again");
        return why;
    }
    return NULL;
}

/* A refused peer is logged, at most once a second (a client retrying in a
 * loop would flood the log), with how many went unlogged before it. */
static void log_refusal(const conn *c, const char *why)
{
    int64_t now = now_ms();
    if (now - S.refusal_logged_ms < 1000) {
        S.refusals_unlogged++;
        return;
    }
    if (S.refusals_unlogged)
        hkd_log(HKD_LOG_WARNING, "refused connection of uid %u (pid %d): %s (%u more refused since the last such line)",
                (unsigned)c->cred.uid, (int)c->cred.pid, why, S.refusals_unlogged);
    else
        hkd_log(HKD_LOG_WARNING, "refused connection of uid %u (pid %d): %s", (unsigned)c->cred.uid,
                (int)c->cred.pid, why);
    S.refusal_logged_ms = now;
    S.refusals_unlogged = 0;
}

/* Answers BUSY and parks the connection in the linger set (or closes it
 * when that is full too).  Takes fd over. */
static void refuse_busy(int fd, const char *why)
{
    Hakmem__Ctl__Response resp = HAKMEM__CTL__RESPONSE__INIT;
    Hakmem__Ctl__Error err = HAKMEM__CTL__ERROR__INIT;
    err.code = HAKMEM__CTL__ERROR__CODE__BUSY;
    err.text = (char *)why;
    resp.version = HKC_PROTOCOL_VERSION;
    resp.result_case = HAKMEM__CTL__RESPONSE__RESULT_ERROR;
    resp.error = &err;
    uint8_t buf[512];
    size_t n = hakmem__ctl__response__get_packed_size(&resp);
    if (n <= sizeof buf) {
        hakmem__ctl__response__pack(&resp, buf);
        /* The reply is small and the socket buffer empty: this never waits. */
        hkc_frame_write(fd, buf, n, 0);
    }
    shutdown(fd, SHUT_WR);
    if (S.nlinger == HKC_MAX_LINGER) {
        close(fd);
        return;
    }
    S.linger_fd[S.nlinger] = fd;
    S.linger_until[S.nlinger] = now_ms() + HKC_LINGER_MS;
    S.nlinger++;
}

/* Drains lingering connections; closes those the client closed or whose
 * time is up. */
static void linger_service(const struct pollfd *p)
{
    int64_t now = now_ms();
    /* Backwards, so that moving the last entry into a freed slot never
     * moves one whose poll result is still to be read. */
    for (int i = S.nlinger - 1; i >= 0; i--) {
        int done = now >= S.linger_until[i];
        if (!done && p[i].revents) {
            char sink[4096];
            ssize_t k;
            while ((k = recv(S.linger_fd[i], sink, sizeof sink, MSG_DONTWAIT)) > 0)
                ;
            done = k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
        }
        if (done) {
            close(S.linger_fd[i]);
            S.nlinger--;
            S.linger_fd[i] = S.linger_fd[S.nlinger];
            S.linger_until[i] = S.linger_until[S.nlinger];
        }
    }
}

static void *acceptor_main(void *arg)
{
    (void)arg;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    while (!atomic_load(&S.stopping)) {
        struct pollfd p[2 + HKC_MAX_LINGER] = { { .fd = S.listen_fd, .events = POLLIN },
                                                { .fd = S.wake[0], .events = POLLIN } };
        for (int i = 0; i < S.nlinger; i++)
            p[2 + i] = (struct pollfd){ .fd = S.linger_fd[i], .events = POLLIN };
        int np = 2 + S.nlinger;
        if (poll(p, (nfds_t)np, S.nlinger ? 100 : -1) < 0) {
            if (errno == EINTR)
                continue;
            hkd_log(HKD_LOG_ERR, "control socket poll: %s", strerror(errno));
            break;
        }
        if (p[1].revents)
            break;
        linger_service(p + 2);
        if (!(p[0].revents & POLLIN))
            continue;
        int fd = accept4(S.listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                hkd_log(HKD_LOG_WARNING, "accept on control socket: %s", strerror(errno));
            if (errno == EMFILE || errno == ENFILE)
                usleep(100 * 1000);
            continue;
        }
        conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->role = role_of(fd, &c->cred);
        char why[160];
        pthread_mutex_lock(&S.mu);
        const char *refused = admit(c, why, sizeof why);
        if (!refused) {
            c->next = S.conns;
            S.conns = c;
            S.nconns++;
        }
        pthread_mutex_unlock(&S.mu);
        if (!refused) {
            pthread_t t;
            int r = pthread_create(&t, &attr, conn_main, c);
            if (r == 0)
                continue;
            hkd_log(HKD_LOG_WARNING, "no thread for a control connection: %s", strerror(r));
            conn_unlink(c);
            refused = "the daemon cannot serve another connection now; try again";
        } else {
            log_refusal(c, refused);
        }
        refuse_busy(fd, refused);
        free(c);
    }
    pthread_attr_destroy(&attr);
    for (int i = 0; i < S.nlinger; i++)
        close(S.linger_fd[i]);
    S.nlinger = 0;
    return NULL;
}

/* ---- start / stop ---- */

/* Binds under a temporary name, sets mode and group, then renames into
 * place: the socket is never reachable with looser permissions. */
static int bind_path(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path - 16)
        return -ENAMETOOLONG;

    /* A live daemon already answers there: do not steal its socket. */
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0) {
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        int live = connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0;
        close(probe);
        if (live)
            return -EADDRINUSE;
    }
    /* Create the parent (e.g. /run/hakmem) when running without systemd. */
    char dir[sizeof sa.sun_path];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
            return -errno;
    }

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    char tmp[sizeof sa.sun_path];
    snprintf(tmp, sizeof tmp, "%s.%d", path, (int)getpid());
    unlink(tmp);
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", tmp);
    int r = 0;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        r = -errno;
    if (r == 0 && S.have_group && chown(tmp, (uid_t)-1, S.group) < 0)
        hkd_log(HKD_LOG_WARNING, "cannot give %s to group %s: %s", path, HKC_GROUP, strerror(errno));
    if (r == 0 && chmod(tmp, 0660) < 0)
        r = -errno;
    if (r == 0 && listen(fd, 64) < 0)
        r = -errno;
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0) {
        unlink(tmp);
        close(fd);
        return r;
    }
    return fd;
}

/* Timeout, limits and who may do what, from the environment and the
 * group database. */
static void load_settings(void)
{
    const char *t = getenv("HAKMEMD_CTL_TIMEOUT_MS");
    S.timeout_ms = t && atoi(t) > 0 ? atoi(t) : HKC_DEFAULT_TIMEOUT_MS;
    t = getenv("HAKMEMD_CTL_CONNS_PER_UID");
    S.per_uid = t && atoi(t) > 0 && atoi(t) <= HKC_MAX_CONNS ? atoi(t) : HKC_CONNS_PER_UID;
    S.self_uid = geteuid();
    struct group gr, *res = NULL;
    char gbuf[4096];
    S.have_group = getgrnam_r(HKC_GROUP, &gr, gbuf, sizeof gbuf, &res) == 0 && res;
    if (S.have_group)
        S.group = gr.gr_gid;
}

void hkd_ctl_serve_as(int fd, uid_t uid, gid_t gid)
{
    if (!S.running)
        load_settings();
    conn c = { .fd = fd, .cred = { .pid = 0, .uid = uid, .gid = gid } };
    c.role = role_of_cred(&c.cred);
    hkd_reader_thread_enter();
    serve(&c);
    hkd_reader_thread_leave();
    close(fd);
}

int hkd_ctl_start(const char *path, int listen_fd)
{
    if (S.running)
        return -EALREADY;
    load_settings();
    if (!S.have_group)
        hkd_log(HKD_LOG_NOTICE, "no group %s: only root and uid %u may use the control socket",
                HKC_GROUP, (unsigned)S.self_uid);

    if (listen_fd >= 0) {
        int fl = fcntl(listen_fd, F_GETFL);
        if (fl < 0 || fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK) < 0)
            return -errno;
        S.listen_fd = listen_fd;
        S.owned = 0;
        hkd_log(HKD_LOG_INFO, "control socket passed by systemd (fd %d)", listen_fd);
    } else {
        if (!path || !*path)
            return -EINVAL;
        int fd = bind_path(path);
        if (fd < 0) {
            hkd_log(HKD_LOG_ERR, "cannot listen on %s: %s", path, strerror(-fd));
            return fd;
        }
        S.listen_fd = fd;
        S.owned = 1;
        snprintf(S.path, sizeof S.path, "%s", path);
        hkd_log(HKD_LOG_INFO, "control socket listening on %s", path);
    }
    if (pipe2(S.wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        int r = -errno;
        if (S.owned)
            close(S.listen_fd), unlink(S.path);
        S.listen_fd = -1;
        return r;
    }
    atomic_store(&S.stopping, 0);
    int r = pthread_create(&S.acceptor, NULL, acceptor_main, NULL);
    if (r != 0) {
        close(S.wake[0]), close(S.wake[1]);
        if (S.owned)
            close(S.listen_fd), unlink(S.path);
        S.listen_fd = -1;
        return -r;
    }
    S.running = 1;
    return 0;
}

void hkd_ctl_stop(void)
{
    if (!S.running)
        return;
    atomic_store(&S.stopping, 1);
    ssize_t w = write(S.wake[1], "x", 1);
    (void)w;
    pthread_join(S.acceptor, NULL);

    /* Wake every connection thread out of its poll; each one exits, and the
     * last one signals that none is left. */
    pthread_mutex_lock(&S.mu);
    for (conn *c = S.conns; c; c = c->next)
        shutdown(c->fd, SHUT_RDWR);
    while (S.nconns > 0)
        pthread_cond_wait(&S.idle, &S.mu);
    pthread_mutex_unlock(&S.mu);

    if (S.owned) {
        close(S.listen_fd);
        unlink(S.path);
    }
    close(S.wake[0]), close(S.wake[1]);
    S.listen_fd = -1;
    S.running = 0;
}
