/* The control server's sockets and threads.  One acceptor thread; one
 * detached thread per connection, each with a whole-frame deadline (also
 * while idle between requests), so a slow or silent client only ever
 * holds its own thread.  Who may connect and what each may do is
 * ctl_access.h's to say; the requests are answered by ctl_handlers.h.
 * A refused client is answered BUSY. */
#include "ctl_server.h"
#include "ctl_access.h"
#include "ctl_conn.h"
#include "ctl_handlers.h"
#include "core_api.h"
#include "frame.h"
#include "log.h"
#include "control.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define HKC_DEFAULT_TIMEOUT_MS 5000
#define HKC_MAX_LINGER 32
#define HKC_LINGER_MS 1000

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
    pthread_mutex_t mu;
    pthread_cond_t idle;
    hkc_conn *conns;
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

/* ---- connections ---- */

/* Takes c out of the connection table (it no longer counts against any
 * limit). */
static void conn_unlink(hkc_conn *c)
{
    pthread_mutex_lock(&S.mu);
    for (hkc_conn **pp = &S.conns; *pp; pp = &(*pp)->next)
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
    hkc_conn *c = arg;
    hkd_reader_thread_enter();
    hkc_serve(c, &S.stopping);
    hkd_reader_thread_leave();
    conn_unlink(c);
    close(c->fd);
    free(c);
    return NULL;
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
    S.linger_until[S.nlinger] = hkc_now_ms() + HKC_LINGER_MS;
    S.nlinger++;
}

/* Drains lingering connections; closes those the client closed or whose
 * time is up. */
static void linger_service(const struct pollfd *p)
{
    int64_t now = hkc_now_ms();
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
        hkc_conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->timeout_ms = S.timeout_ms;
        c->role = hkc_role_of(fd, &c->cred);
        char why[160];
        pthread_mutex_lock(&S.mu);
        const char *refused = hkc_admit(c, S.conns, S.nconns, why, sizeof why);
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
            hkc_log_refused_conn(c, refused);
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
    S.have_group = hkc_access_load(&S.group);
}

void hkd_ctl_serve_as(int fd, uid_t uid, gid_t gid)
{
    if (!S.running)
        load_settings();
    hkc_conn c = { .fd = fd, .cred = { .pid = 0, .uid = uid, .gid = gid }, .timeout_ms = S.timeout_ms };
    c.role = hkc_role_of_cred(&c.cred);
    hkd_reader_thread_enter();
    hkc_serve(&c, &S.stopping);
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
                HKC_GROUP, (unsigned)geteuid());

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
    for (hkc_conn *c = S.conns; c; c = c->next)
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