#include "fake_daemon.h"
#include "control.pb-c.h"
#include "unit_util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void send_all(int s, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(s, c, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        c += w;
        n -= (size_t)w;
    }
}

static void send_frame(int s, const uint8_t *body, uint32_t n)
{
    uint8_t head[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };
    send_all(s, head, 4);
    send_all(s, body, n);
}

static void send_response(int s, const Hakmem__Ctl__Response *r)
{
    uint8_t buf[256];
    size_t n = hakmem__ctl__response__pack(r, buf);
    send_frame(s, buf, (uint32_t)n);
}

static void reply(fake_daemon *d, fd_request *q, fd_reply how)
{
    Hakmem__Ctl__Response r = HAKMEM__CTL__RESPONSE__INIT;
    r.version = 1;
    switch (how) {
    case FD_REGISTERED: {
        Hakmem__Ctl__Registered reg = HAKMEM__CTL__REGISTERED__INIT;
        reg.instance = d->instance;
        r.result_case = HAKMEM__CTL__RESPONSE__RESULT_REGISTERED;
        r.registered = &reg;
        send_response(q->sock, &r);
        break;
    }
    case FD_ERROR: {
        Hakmem__Ctl__Error e = HAKMEM__CTL__ERROR__INIT;
        e.code = HAKMEM__CTL__ERROR__CODE__PERMISSION_DENIED;
        e.text = "go away\n\x1b[31m";
        r.result_case = HAKMEM__CTL__RESPONSE__RESULT_ERROR;
        r.error = &e;
        send_response(q->sock, &r);
        break;
    }
    case FD_GARBAGE: {
        uint8_t junk[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
        send_frame(q->sock, junk, sizeof junk);
        break;
    }
    case FD_OVERSIZED: {
        /* More bytes than any reply may have, and the connection left open:
         * a client that believed the length would read past its buffer, then
         * wait for the rest. */
        static uint8_t big[3 * 4096];
        big[0] = 0x7f;
        big[1] = big[2] = big[3] = 0xff;
        send_all(q->sock, big, sizeof big);
        break;
    }
    case FD_TRUNCATED: {
        uint8_t part[7] = { 0, 0, 0, 10, 0x08, 0x01, 0x82 };
        send_all(q->sock, part, sizeof part);
        close(q->sock);
        q->sock = -1;
        break;
    }
    case FD_SILENT:
        break;
    case FD_WRONG_TYPE: {
        uint8_t body[5] = { 0x08, 0x01, 0x80, 0x01, 0x05 };
        send_frame(q->sock, body, sizeof body);
        break;
    }
    }
    q->replied = how;
}

static void serve_one(fake_daemon *d, int s)
{
    fd_request q;
    memset(&q, 0, sizeof q);
    q.sock = s;
    q.region_fd = -1;
    struct ucred cred;
    socklen_t cl = sizeof cred;
    if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0) {
        q.pid = cred.pid;
        q.uid = cred.uid;
    }
    uint8_t buf[256];
    union {
        struct cmsghdr align;
        char b[CMSG_SPACE(sizeof(int) * 4)];
    } control;
    struct iovec iov = { .iov_base = buf, .iov_len = sizeof buf };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.b, .msg_controllen = sizeof control.b };
    struct pollfd pfd = { .fd = s, .events = POLLIN };
    ssize_t n = poll(&pfd, 1, 2000) == 1 ? recvmsg(s, &msg, MSG_CMSG_CLOEXEC) : -1;
    for (struct cmsghdr *cm = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL; cm; cm = CMSG_NXTHDR(&msg, cm))
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
            memcpy(&q.region_fd, CMSG_DATA(cm), sizeof(int));
    if (n >= 4) {
        uint32_t len = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
        if (len == (uint32_t)n - 4) {
            Hakmem__Ctl__Request *r = hakmem__ctl__request__unpack(NULL, len, buf + 4);
            if (r && r->command_case == HAKMEM__CTL__REQUEST__COMMAND_REGISTER_CLIENT && r->register_client) {
                q.decoded = 1;
                q.version = r->version;
                q.abi_version = r->register_client->abi_version;
                q.region_size = r->register_client->region_size;
            }
            if (r)
                hakmem__ctl__request__free_unpacked(r, NULL);
        }
    }
    pthread_mutex_lock(&d->mu);
    int k = d->n_req;
    fd_reply how = k < d->n_script ? d->script[k] : FD_REGISTERED;
    pthread_mutex_unlock(&d->mu);
    reply(d, &q, how);
    pthread_mutex_lock(&d->mu);
    if (d->n_req < FD_MAX_CONNS)
        d->req[d->n_req++] = q;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static void *serve(void *arg)
{
    fake_daemon *d = arg;
    for (;;) {
        pthread_mutex_lock(&d->mu);
        int stop = d->stop;
        pthread_mutex_unlock(&d->mu);
        if (stop)
            return NULL;
        struct pollfd pfd = { .fd = d->listen_fd, .events = POLLIN };
        if (poll(&pfd, 1, 20) != 1)
            continue;
        int s = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (s >= 0)
            serve_one(d, s);
    }
}

int fd_start(fake_daemon *d, const char *dir, uint64_t instance)
{
    memset(d, 0, sizeof *d);
    d->instance = instance;
    snprintf(d->path, sizeof d->path, "%s/ctl.sock", dir);
    unlink(d->path);
    d->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", d->path);
    if (d->listen_fd < 0 || bind(d->listen_fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(d->listen_fd, 16) < 0)
        return -1;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    return pthread_create(&d->thread, NULL, serve, d) == 0 ? 0 : -1;
}

void fd_stop(fake_daemon *d)
{
    pthread_mutex_lock(&d->mu);
    d->stop = 1;
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->thread, NULL);
    close(d->listen_fd);
    unlink(d->path);
    for (int i = 0; i < d->n_req; i++) {
        if (d->req[i].sock >= 0)
            close(d->req[i].sock);
        if (d->req[i].region_fd >= 0)
            close(d->req[i].region_fd);
    }
}

int fd_wait_requests(fake_daemon *d, int n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&d->mu);
    int rc = 0;
    while (d->n_req < n && rc == 0)
        rc = pthread_cond_timedwait(&d->cv, &d->mu, &until);
    int ok = d->n_req >= n;
    pthread_mutex_unlock(&d->mu);
    return ok ? 0 : -1;
}

void fd_close_request(fake_daemon *d, int i)
{
    pthread_mutex_lock(&d->mu);
    if (d->req[i].sock >= 0)
        close(d->req[i].sock);
    d->req[i].sock = -1;
    pthread_mutex_unlock(&d->mu);
}

const hkshm_region *fd_map_region(fake_daemon *d, int i)
{
    if (d->req[i].region_fd < 0)
        return NULL;
    void *p = mmap(NULL, HKSHM_REGION_SIZE, PROT_READ, MAP_SHARED, d->req[i].region_fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* ---- the segment ---- */

void *seg_create(const char *name, uint64_t size, mode_t mode, int64_t owner, int valid)
{
    shm_unlink(name);
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0 || fchmod(fd, mode) < 0)
        abort();
    if (owner >= 0 && fchown(fd, (uid_t)owner, (gid_t)-1) < 0)
        abort();
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        abort();
    if (valid) {
        hkshm_header *h = p;
        h->abi_version = HKSHM_ABI_VERSION;
        h->header_size = HKSHM_HEADER_SIZE;
        h->segment_size = HKSHM_SEGMENT_SIZE;
        h->n_tables = HKSHM_TABLES;
        h->table_size = sizeof(hkshm_table);
        h->site_cap = HKSHM_SITE_CAP;
        h->site_entry_size = sizeof(hkshm_site_policy);
        h->binary_cap = HKSHM_BINARY_CAP;
        h->binary_entry_size = sizeof(hkshm_binary_policy);
        h->tables_offset = HKSHM_TABLES_OFFSET;
        h->region_size = HKSHM_REGION_SIZE;
        h->reader_timeout_ms = 1000;
        atomic_store(&h->instance, 1);
        atomic_store(&h->learning, 1);
        atomic_store(&h->flush_interval_ms, 100);
        __atomic_store_n(&h->magic, HKSHM_MAGIC, __ATOMIC_RELEASE);
    }
    return p;
}

static int site_order(const void *a, const void *b)
{
    const hkshm_site_policy *x = a, *y = b;
    return hkshm_site_cmp(x->domain, x->module_hash, x->offset, y->domain, y->module_hash, y->offset);
}

static int binary_order(const void *a, const void *b)
{
    const hkshm_binary_policy *x = a, *y = b;
    return hkshm_binary_cmp(x->domain, x->binary_hash, x->command_hash, y->domain, y->binary_hash, y->command_hash);
}

void seg_publish(void *seg, uint32_t copy, uint64_t g, const hkshm_site_policy *sites, uint32_t n_sites,
                 const hkshm_binary_policy *bins, uint32_t n_bins)
{
    hkshm_header *h = seg;
    hkshm_table *t = hkshm_table_at(seg, copy);
    atomic_store(&t->generation, 0);
    memcpy(t->sites, sites, n_sites * sizeof *sites);
    qsort(t->sites, n_sites, sizeof *sites, site_order);
    memcpy(t->binaries, bins, n_bins * sizeof *bins);
    qsort(t->binaries, n_bins, sizeof *bins, binary_order);
    t->n_sites = n_sites;
    t->n_binaries = n_bins;
    atomic_store(&t->generation, g);
    atomic_store(&h->active, copy);
    atomic_store(&h->generation, g);
}

/* ---- the oracle: the executable's build-id, from the file ---- */

uint64_t oracle_exe_hash(void)
{
    return ut_file_build_id_hash("/proc/self/exe");
}
