/* The control server.  One acceptor thread; one detached thread per
 * connection, at most HKC_MAX_CONNS at a time, each with a whole-frame
 * deadline, so a slow or silent client only ever holds its own thread.  The
 * core is read through core_api.h, whose readers never block the learner;
 * the answer is built in memory and sent after the read-side section ends.
 *
 * Authorization (SO_PEERCRED, and SO_PEERGROUPS for supplementary groups):
 * root and the daemon's own user may do everything; members of the group
 * "hakmem" may read.  Every refusal is answered and logged. */
#include "ctl_server.h"
#include "core_api.h"
#include "frame.h"
#include "log.h"
#include "metrics.h"
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
#define HKC_DEFAULT_TIMEOUT_MS 5000
#define HKC_GROUP "hakmem"
#define HKC_MAX_LINGER 32
#define HKC_LINGER_MS 1000

typedef enum { ROLE_NONE, ROLE_READ, ROLE_ADMIN } role_t;

typedef struct conn {
    int fd;
    struct ucred cred;
    role_t role;
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
} S = { .listen_fd = -1, .wake = { -1, -1 }, .mu = PTHREAD_MUTEX_INITIALIZER,
        .idle = PTHREAD_COND_INITIALIZER };

/* ---- authorization ---- */

static role_t role_of(int fd, struct ucred *cred)
{
    socklen_t len = sizeof *cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, &len) < 0)
        return ROLE_NONE;
    if (cred->uid == 0 || cred->uid == S.self_uid)
        return ROLE_ADMIN;
    if (!S.have_group)
        return ROLE_NONE;
    if (cred->gid == S.group)
        return ROLE_READ;
    gid_t groups[256];
    len = sizeof groups;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
        for (size_t i = 0; i < len / sizeof(gid_t); i++)
            if (groups[i] == S.group)
                return ROLE_READ;
    }
    return ROLE_NONE;
}

/* ---- responses ---- */

static int send_response(conn *c, Hakmem__Ctl__Response *resp)
{
    resp->version = HKC_PROTOCOL_VERSION;
    size_t n = hakmem__ctl__response__get_packed_size(resp);
    if (n > HKC_FRAME_MAX) {
        /* Too big to send: say so instead (the client may narrow it). */
        Hakmem__Ctl__Response small = HAKMEM__CTL__RESPONSE__INIT;
        Hakmem__Ctl__Error err = HAKMEM__CTL__ERROR__INIT;
        err.code = HAKMEM__CTL__ERROR__CODE__TOO_LARGE;
        err.text = "answer exceeds the maximum frame size; narrow it (e.g. sites --top N)";
        small.result_case = HAKMEM__CTL__RESPONSE__RESULT_ERROR;
        small.error = &err;
        return send_response(c, &small);
    }
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return -ENOMEM;
    hakmem__ctl__response__pack(resp, buf);
    int r = hkc_frame_write(c->fd, buf, n, S.timeout_ms);
    free(buf);
    return r;
}

static int send_error(conn *c, Hakmem__Ctl__Error__Code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int send_error(conn *c, Hakmem__Ctl__Error__Code code, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    Hakmem__Ctl__Response resp = HAKMEM__CTL__RESPONSE__INIT;
    Hakmem__Ctl__Error err = HAKMEM__CTL__ERROR__INIT;
    err.code = code;
    err.text = text;
    resp.result_case = HAKMEM__CTL__RESPONSE__RESULT_ERROR;
    resp.error = &err;
    return send_response(c, &resp);
}

static Hakmem__Ctl__Error__Code code_of(int err)
{
    switch (err) {
    case -ENOENT: case -ESRCH: return HAKMEM__CTL__ERROR__CODE__NOT_FOUND;
    case -EINVAL: case -EBADMSG: case -ERANGE: case -EPROTO:
        return HAKMEM__CTL__ERROR__CODE__INVALID_ARGUMENT;
    case -EPERM: case -EACCES: return HAKMEM__CTL__ERROR__CODE__PERMISSION_DENIED;
    case -EMSGSIZE: case -E2BIG: return HAKMEM__CTL__ERROR__CODE__TOO_LARGE;
    case -EBUSY: case -EAGAIN: return HAKMEM__CTL__ERROR__CODE__BUSY;
    default: return HAKMEM__CTL__ERROR__CODE__INTERNAL;
    }
}

static int send_core_error(conn *c, const char *what, int err)
{
    return send_error(c, code_of(err), "%s: %s", what, strerror(-err));
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

typedef struct growable {
    void *items;
    size_t n, cap, size;
    const char *module;          /* sites filter, NULL for none */
    size_t seen;
} growable;

static int grow_push(growable *g, const void *item)
{
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 64;
        void *p = realloc(g->items, cap * g->size);
        if (!p)
            return -ENOMEM;
        g->items = p;
        g->cap = cap;
    }
    memcpy((char *)g->items + g->n++ * g->size, item, g->size);
    return 0;
}

static int collect_proc(const hkd_proc_info *p, void *arg) { return grow_push(arg, p); }

static int do_procs(conn *c)
{
    growable g = { .size = sizeof(hkd_proc_info) };
    int r = hkd_for_each_proc(collect_proc, &g);
    if (r < 0) {
        free(g.items);
        return send_core_error(c, "procs", r);
    }
    hkd_proc_info *pi = g.items;
    Hakmem__Ctl__Proc *procs = calloc(g.n ? g.n : 1, sizeof *procs);
    Hakmem__Ctl__Proc **ptrs = calloc(g.n ? g.n : 1, sizeof *ptrs);
    if (!procs || !ptrs) {
        free(procs), free(ptrs), free(g.items);
        return send_core_error(c, "procs", -ENOMEM);
    }
    for (size_t i = 0; i < g.n; i++) {
        hakmem__ctl__proc__init(&procs[i]);
        pi[i].exe[HKD_EXE_MAX - 1] = '\0';
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
    msg.n_procs = g.n;
    msg.procs = ptrs;
    resp.result_case = HAKMEM__CTL__RESPONSE__RESULT_PROCS;
    resp.procs = &msg;
    r = send_response(c, &resp);
    free(procs), free(ptrs), free(g.items);
    return r;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s && s[1] ? s + 1 : path;
}

static int module_matches(const char *module, const char *want)
{
    return strcmp(module, want) == 0 || strcmp(base_name(module), base_name(want)) == 0;
}

static int collect_site(const hkd_site_info *s, void *arg)
{
    growable *g = arg;
    g->seen++;
    if (g->module && *g->module) {
        char m[HKD_MODULE_MAX];
        memcpy(m, s->module, sizeof m);
        m[sizeof m - 1] = '\0';
        if (!module_matches(m, g->module))
            return 0;
    }
    return grow_push(g, s);
}

static int by_bytes_desc(const void *a, const void *b)
{
    const hkd_site_info *x = a, *y = b;
    return x->bytes < y->bytes ? 1 : x->bytes > y->bytes ? -1 : 0;
}

static int do_sites(conn *c, const Hakmem__Ctl__SitesRequest *rq)
{
    growable g = { .size = sizeof(hkd_site_info), .module = rq->module };
    int r = hkd_for_each_site(collect_site, &g);
    if (r < 0) {
        free(g.items);
        return send_core_error(c, "sites", r);
    }
    hkd_site_info *si = g.items;
    if (g.n > 1)
        qsort(si, g.n, sizeof *si, by_bytes_desc);
    size_t n = g.n;
    if (rq->top && rq->top < n)
        n = rq->top;

    size_t narms = 0;
    for (size_t i = 0; i < n; i++)
        narms += si[i].n_arms < HKD_MAX_ARMS ? si[i].n_arms : HKD_MAX_ARMS;
    Hakmem__Ctl__Site *sites = calloc(n ? n : 1, sizeof *sites);
    Hakmem__Ctl__Site **sptr = calloc(n ? n : 1, sizeof *sptr);
    Hakmem__Ctl__SiteKey *keys = calloc(n ? n : 1, sizeof *keys);
    Hakmem__Ctl__Thresholds *th = calloc(n ? n : 1, sizeof *th);
    Hakmem__Ctl__Arm *arms = calloc(narms ? narms : 1, sizeof *arms);
    Hakmem__Ctl__Arm **aptr = calloc(narms ? narms : 1, sizeof *aptr);
    if (!sites || !sptr || !keys || !th || !arms || !aptr) {
        r = send_core_error(c, "sites", -ENOMEM);
        goto out;
    }
    size_t ai = 0;
    for (size_t i = 0; i < n; i++) {
        Hakmem__Ctl__Site *s = &sites[i];
        hakmem__ctl__site__init(s);
        hakmem__ctl__site_key__init(&keys[i]);
        hakmem__ctl__thresholds__init(&th[i]);
        si[i].module[HKD_MODULE_MAX - 1] = '\0';
        keys[i].module_hash = si[i].key.module_hash;
        keys[i].offset = si[i].key.offset;
        keys[i].domain = si[i].key.domain;
        s->key = &keys[i];
        s->module = si[i].module;
        s->processes = si[i].processes;
        s->allocs = si[i].allocs;
        s->frees = si[i].frees;
        s->bytes = si[i].bytes;
        s->live_bytes = si[i].live_bytes;
        s->n_size_hist = 32;
        s->size_hist = si[i].size_hist;
        s->bigcache_hits = si[i].bigcache_hits;
        s->bigcache_misses = si[i].bigcache_misses;
        s->bigcache_evictions = si[i].bigcache_evictions;
        s->thp_blocks = si[i].thp_blocks;
        s->slow_ns = si[i].slow_ns;
        th[i].large_threshold = si[i].thresholds.large_threshold;
        th[i].bigcache_slots = si[i].thresholds.bigcache_slots;
        th[i].thp = si[i].thresholds.thp != 0;
        s->thresholds = &th[i];
        s->pinned_arm = si[i].pinned_arm;
        s->settled = si[i].settled;
        s->thin = si[i].thin;
        uint32_t na = si[i].n_arms < HKD_MAX_ARMS ? si[i].n_arms : HKD_MAX_ARMS;
        s->n_arms = na;
        s->arms = &aptr[ai];
        for (uint32_t a = 0; a < na; a++, ai++) {
            hakmem__ctl__arm__init(&arms[ai]);
            si[i].arms[a].name[HKD_ARM_NAME_MAX - 1] = '\0';
            arms[ai].name = si[i].arms[a].name;
            arms[ai].pulls = si[i].arms[a].pulls;
            arms[ai].mean_reward = si[i].arms[a].mean_reward;
            aptr[ai] = &arms[ai];
        }
        sptr[i] = s;
    }
    Hakmem__Ctl__Response resp = HAKMEM__CTL__RESPONSE__INIT;
    Hakmem__Ctl__Sites msg = HAKMEM__CTL__SITES__INIT;
    msg.total = (uint32_t)g.seen;
    msg.n_sites = n;
    msg.sites = sptr;
    resp.result_case = HAKMEM__CTL__RESPONSE__RESULT_SITES;
    resp.sites = &msg;
    r = send_response(c, &resp);
out:
    free(sites), free(sptr), free(keys), free(th), free(arms), free(aptr), free(g.items);
    return r;
}

static int do_export(conn *c)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int r = hkd_policy_export(&buf, &len);
    if (r < 0)
        return send_core_error(c, "export", r);
    Hakmem__Ctl__Response resp = HAKMEM__CTL__RESPONSE__INIT;
    Hakmem__Ctl__Policy pol = HAKMEM__CTL__POLICY__INIT;
    pol.policy.data = buf;
    pol.policy.len = len;
    resp.result_case = HAKMEM__CTL__RESPONSE__RESULT_POLICY;
    resp.policy = &pol;
    r = send_response(c, &resp);
    free(buf);
    return r;
}

static int do_metrics(conn *c)
{
    char *text = NULL;
    size_t len = 0;
    int r = hkd_metrics_render(&text, &len);
    if (r < 0)
        return send_core_error(c, "metrics", r);
    Hakmem__Ctl__Response resp = HAKMEM__CTL__RESPONSE__INIT;
    Hakmem__Ctl__Metrics m = HAKMEM__CTL__METRICS__INIT;
    m.text = text;
    resp.result_case = HAKMEM__CTL__RESPONSE__RESULT_METRICS;
    resp.metrics = &m;
    r = send_response(c, &resp);
    free(text);
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

static int do_import(conn *c, const Hakmem__Ctl__ImportRequest *rq)
{
    int r = hkd_policy_import(rq->policy.data, rq->policy.len);
    if (r < 0) {
        hkd_log(HKD_LOG_WARNING, "policy import from uid %u (pid %d) failed: %s",
                (unsigned)c->cred.uid, (int)c->cred.pid, strerror(-r));
        return send_core_error(c, "import", r);
    }
    hkd_log(HKD_LOG_NOTICE, "policy imported by uid %u (pid %d): %d sites, %zu bytes",
            (unsigned)c->cred.uid, (int)c->cred.pid, r, rq->policy.len);
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
    default: return "?";
    }
}

static int is_change(Hakmem__Ctl__Request__CommandCase cc)
{
    return cc == HAKMEM__CTL__REQUEST__COMMAND_IMPORT_POLICY ||
           cc == HAKMEM__CTL__REQUEST__COMMAND_RESET ||
           cc == HAKMEM__CTL__REQUEST__COMMAND_PIN;
}

/* Returns < 0 when the connection must close. */
static int handle(conn *c, const Hakmem__Ctl__Request *rq)
{
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
    switch (cc) {
    case HAKMEM__CTL__REQUEST__COMMAND_STATUS: return do_status(c);
    case HAKMEM__CTL__REQUEST__COMMAND_PROCS: return do_procs(c);
    case HAKMEM__CTL__REQUEST__COMMAND_SITES: return do_sites(c, rq->sites);
    case HAKMEM__CTL__REQUEST__COMMAND_EXPORT_POLICY: return do_export(c);
    case HAKMEM__CTL__REQUEST__COMMAND_IMPORT_POLICY: return do_import(c, rq->import_policy);
    case HAKMEM__CTL__REQUEST__COMMAND_RESET: return do_reset(c, rq->reset);
    case HAKMEM__CTL__REQUEST__COMMAND_PIN: return do_pin(c, rq->pin);
    case HAKMEM__CTL__REQUEST__COMMAND_METRICS: return do_metrics(c);
    default: return -EINVAL;
    }
}

static void serve(conn *c)
{
    for (;;) {
        uint8_t *buf;
        size_t len;
        int r = hkc_frame_read(c->fd, &buf, &len, HKC_FRAME_MAX, S.timeout_ms);
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
        if (!rq) {
            hkd_log(HKD_LOG_WARNING, "uid %u (pid %d) sent %zu bytes that are not a request; closing",
                    (unsigned)c->cred.uid, (int)c->cred.pid, len);
            send_error(c, HAKMEM__CTL__ERROR__CODE__BAD_REQUEST, "the frame is not a control request");
            return;
        }
        r = handle(c, rq);
        hakmem__ctl__request__free_unpacked(rq, NULL);
        if (r < 0 || atomic_load(&S.stopping))
            return;
    }
}

static void *conn_main(void *arg)
{
    conn *c = arg;
    hkd_reader_thread_enter();
    serve(c);
    hkd_reader_thread_leave();

    pthread_mutex_lock(&S.mu);
    for (conn **pp = &S.conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    S.nconns--;
    if (S.nconns == 0)
        pthread_cond_broadcast(&S.idle);
    pthread_mutex_unlock(&S.mu);
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

/* Answers BUSY and parks the connection in the linger set (or closes it
 * when that is full too). */
static void refuse_busy(int fd)
{
    Hakmem__Ctl__Response resp = HAKMEM__CTL__RESPONSE__INIT;
    Hakmem__Ctl__Error err = HAKMEM__CTL__ERROR__INIT;
    err.code = HAKMEM__CTL__ERROR__CODE__BUSY;
    err.text = "too many control connections; try again";
    resp.version = HKC_PROTOCOL_VERSION;
    resp.result_case = HAKMEM__CTL__RESPONSE__RESULT_ERROR;
    resp.error = &err;
    uint8_t buf[256];
    size_t n = hakmem__ctl__response__pack(&resp, buf);
    /* The reply is tiny and the socket buffer empty: this never waits. */
    hkc_frame_write(fd, buf, n, 0);
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
        pthread_mutex_lock(&S.mu);
        int full = S.nconns >= HKC_MAX_CONNS;
        if (!full) {
            c->next = S.conns;
            S.conns = c;
            S.nconns++;
        }
        pthread_mutex_unlock(&S.mu);
        if (full) {
            hkd_log(HKD_LOG_WARNING, "refused connection of uid %u (pid %d): %d connections open",
                    (unsigned)c->cred.uid, (int)c->cred.pid, HKC_MAX_CONNS);
            refuse_busy(fd);
            close(fd);
            free(c);
            continue;
        }
        pthread_t t;
        int r = pthread_create(&t, &attr, conn_main, c);
        if (r != 0) {
            hkd_log(HKD_LOG_WARNING, "no thread for a control connection: %s", strerror(r));
            pthread_mutex_lock(&S.mu);
            for (conn **pp = &S.conns; *pp; pp = &(*pp)->next)
                if (*pp == c) {
                    *pp = c->next;
                    break;
                }
            S.nconns--;
            pthread_mutex_unlock(&S.mu);
            refuse_busy(fd);
            close(fd);
            free(c);
        }
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

int hkd_ctl_start(const char *path, int listen_fd)
{
    if (S.running)
        return -EALREADY;
    const char *t = getenv("HAKMEMD_CTL_TIMEOUT_MS");
    S.timeout_ms = t && atoi(t) > 0 ? atoi(t) : HKC_DEFAULT_TIMEOUT_MS;
    S.self_uid = geteuid();
    struct group gr, *res = NULL;
    char gbuf[4096];
    S.have_group = getgrnam_r(HKC_GROUP, &gr, gbuf, sizeof gbuf, &res) == 0 && res;
    if (S.have_group)
        S.group = gr.gr_gid;
    else
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
