/* Registry.
 *
 * A registration is only as trustworthy as the kernel's word: its pid and
 * uid come from SO_PEERCRED, its end from a pidfd or the connection, never
 * from the region.  The region itself is checked once, here, for what
 * could hurt the daemon later: a file its owner could shrink under our
 * mapping (a SIGBUS in the daemon) or one of another size or layout.
 *
 * Additions come from control-server threads while the interval thread
 * walks the array, so they wait in a queue (under `mu`) that the interval
 * merges at its start.  The entries' identities (serial, pid, uid) change
 * only under `mu` too, which is what the caps count; `ended` and the
 * publisher's fields belong to the interval thread alone. */
#include "registry.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "segment.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif
#ifndef POLLRDHUP
#define POLLRDHUP 0x2000
#endif

static struct {
    pthread_mutex_t mu;
    int ready;
    uint32_t max_total, max_per_uid;
    uid_t self_uid;
    uint64_t last_serial;
    hkd_reg *regs;                   /* max_total entries */
    const char **end_reason;         /* per entry, for the log line when it is dropped */
    uint32_t span, count;
    hkd_reg *pending;                /* max_total entries: the caps bound the queue too */
    uint32_t n_pending;
    struct pollfd *pfd;              /* 2 per entry: connection, pidfd */
    uint32_t *pfd_entry;
} R = { .mu = PTHREAD_MUTEX_INITIALIZER };

int hkd_registry_init(uint32_t max_total, uint32_t max_per_uid, uid_t self_uid)
{
    if (R.ready)
        return -EALREADY;
    if (max_total == 0 || max_total > HKD_REG_MAX)
        max_total = HKD_REG_MAX;
    if (max_per_uid == 0 || max_per_uid > max_total)
        max_per_uid = max_total;
    R.max_total = max_total;
    R.max_per_uid = max_per_uid;
    R.self_uid = self_uid;
    R.span = R.count = R.n_pending = 0;
    R.regs = calloc(max_total, sizeof *R.regs);
    R.end_reason = calloc(max_total, sizeof *R.end_reason);
    R.pending = calloc(max_total, sizeof *R.pending);
    R.pfd = calloc(2 * (size_t)max_total, sizeof *R.pfd);
    R.pfd_entry = calloc(2 * (size_t)max_total, sizeof *R.pfd_entry);
    if (!R.regs || !R.end_reason || !R.pending || !R.pfd || !R.pfd_entry) {
        R.ready = 1;
        hkd_registry_shutdown();
        return -ENOMEM;
    }
    R.ready = 1;
    return 0;
}

static void release(hkd_reg *r)
{
    if (r->region)
        munmap((void *)r->region, HKSHM_REGION_SIZE);
    if (r->conn_fd >= 0)
        close(r->conn_fd);
    if (r->pidfd >= 0)
        close(r->pidfd);
    memset(r, 0, sizeof *r);
    r->conn_fd = r->pidfd = -1;
}

void hkd_registry_shutdown(void)
{
    if (!R.ready)
        return;
    pthread_mutex_lock(&R.mu);
    for (uint32_t i = 0; R.regs && i < R.span; i++)
        if (R.regs[i].serial)
            release(&R.regs[i]);
    for (uint32_t i = 0; R.pending && i < R.n_pending; i++)
        release(&R.pending[i]);
    free(R.regs);
    free(R.end_reason);
    free(R.pending);
    free(R.pfd);
    free(R.pfd_entry);
    R.regs = R.pending = NULL;
    R.end_reason = NULL;
    R.pfd = NULL;
    R.pfd_entry = NULL;
    R.span = R.count = R.n_pending = 0;
    R.ready = 0;
    pthread_mutex_unlock(&R.mu);
}

/* Replaces bytes a terminal or a log would act on: exe names are shown. */
static void printable(char *s, size_t n)
{
    for (size_t i = 0; i < n && s[i]; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
            s[i] = '?';
}

int hkd_region_command(const hkshm_region *g, char out[HKSHM_COMMAND_MAX], uint64_t *hash)
{
    /* One copy, checked: the owner may rewrite the bytes under us. */
    uint64_t h = __atomic_load_n(&g->command_hash, __ATOMIC_RELAXED);
    int blank = 1;
    for (size_t i = 0; i < HKSHM_COMMAND_MAX; i++) {
        out[i] = __atomic_load_n(&g->command[i], __ATOMIC_RELAXED);
        blank &= out[i] == 0;
    }
    *hash = 0;
    if (h == 0 && blank)
        return 0;
    size_t n = hkshm_command_valid(out);
    if (h == 0 || !n || hkshm_command_hash(out, n) != h) {
        memset(out, 0, HKSHM_COMMAND_MAX);
        return -EINVAL;
    }
    *hash = h;
    return 0;
}

/* The first refused command of the daemon's run is told, escaped, in one
 * line; later ones are not (a client could fill the log with them). */
static void command_refused(const hkd_reg *r, const hkshm_region *g)
{
    static _Atomic int told;
    if (atomic_exchange(&told, 1))
        return;
    char shown[HKSHM_COMMAND_MAX * 4 + 1] = "";
    size_t o = 0, end = HKSHM_COMMAND_MAX;
    while (end > 0 && __atomic_load_n(&g->command[end - 1], __ATOMIC_RELAXED) == 0)
        end--;
    for (size_t i = 0; i < end; i++) {
        unsigned char c = (unsigned char)__atomic_load_n(&g->command[i], __ATOMIC_RELAXED);
        o += (size_t)snprintf(shown + o, sizeof shown - o, c >= 0x20 && c < 0x7f && c != '\\' ? "%c" : "\\x%02x", c);
    }
    hkd_log(HKD_LOG_WARNING,
            "uid %u (%s): its region names a command that is not a valid one (hash %016llx, text \"%s\"); "
            "taken as none (said once)",
            (unsigned)r->uid, r->exe[0] ? r->exe : "?",
            (unsigned long long)__atomic_load_n(&g->command_hash, __ATOMIC_RELAXED), shown);
}

/* Checks and maps the region, and reads its identity into r. */
static int map_region(hkd_reg *r, int region_fd, char *why, size_t whylen)
{
    struct stat st;
    if (region_fd < 0)
        return hkd_reason(why, whylen, -EBADF, "no region descriptor came with the registration");
    if (fstat(region_fd, &st) < 0)
        return hkd_reason(why, whylen, -errno, "cannot stat the region: %s", strerror(errno));
    if (!S_ISREG(st.st_mode))
        return hkd_reason(why, whylen, -EINVAL, "the region is not a memfd (not even a regular file)");
    if ((uint64_t)st.st_size != HKSHM_REGION_SIZE)
        return hkd_reason(why, whylen, -EINVAL, "the region is %lld bytes, not %u", (long long)st.st_size,
                   HKSHM_REGION_SIZE);
    int seals = fcntl(region_fd, F_GET_SEALS);
    if (seals < 0)
        return hkd_reason(why, whylen, -EINVAL, "the region is not a memfd that can be sealed");
    if ((seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
        return hkd_reason(why, whylen, -EINVAL, "the region is not sealed against shrinking and growing");
    void *p = mmap(NULL, HKSHM_REGION_SIZE, PROT_READ, MAP_SHARED, region_fd, 0);
    if (p == MAP_FAILED)
        return hkd_reason(why, whylen, -errno, "cannot map the region: %s", strerror(errno));
    const hkshm_region *g = p;
    uint64_t magic = __atomic_load_n(&g->magic, __ATOMIC_ACQUIRE);
    uint32_t abi = __atomic_load_n(&g->abi_version, __ATOMIC_RELAXED);
    uint32_t size = __atomic_load_n(&g->region_size, __ATOMIC_RELAXED);
    uint32_t registration = __atomic_load_n(&g->registration, __ATOMIC_RELAXED);
    int rc = 0;
    if (magic != HKSHM_REGION_MAGIC)
        rc = hkd_reason(why, whylen, -EPROTO, "the region's magic %016llx is not a hakmem region's",
                 (unsigned long long)magic);
    else if (abi != HKSHM_ABI_VERSION)
        rc = hkd_reason(why, whylen, -EPROTO, "the region speaks ABI %u; this daemon speaks %u", abi, HKSHM_ABI_VERSION);
    else if (size != HKSHM_REGION_SIZE)
        rc = hkd_reason(why, whylen, -EPROTO, "the region says it is %u bytes, not %u", size, HKSHM_REGION_SIZE);
    else if (registration == 0)
        rc = hkd_reason(why, whylen, -EPROTO, "the region's registration number is 0 (the first is 1)");
    if (rc < 0) {
        munmap(p, HKSHM_REGION_SIZE);
        return rc;
    }
    r->region = g;
    r->registration = registration;
    r->binary_hash = __atomic_load_n(&g->binary_hash, __ATOMIC_RELAXED);
    memcpy(r->exe, g->exe, sizeof r->exe);
    r->exe[sizeof r->exe - 1] = 0;
    printable(r->exe, sizeof r->exe);
    if (hkd_region_command(g, r->command, &r->command_hash) < 0)
        command_refused(r, g);
    return 0;
}

/* The caps, counted under mu.  A pid that has a registration is replacing
 * it: that one does not count. */
static int within_caps(pid_t pid, uid_t uid, char *why, size_t whylen)
{
    uint32_t total = 0, mine = 0;
    for (int pass = 0; pass < 2; pass++) {
        const hkd_reg *v = pass ? R.pending : R.regs;
        uint32_t n = pass ? R.n_pending : R.span;
        for (uint32_t i = 0; i < n; i++) {
            if (!v[i].serial || (pid > 0 && v[i].pid == pid))
                continue;
            total++;
            mine += v[i].uid == uid;
        }
    }
    if (total >= R.max_total)
        return hkd_reason(why, whylen, -EUSERS, "the daemon has %u registrations, its limit", total);
    if (uid != 0 && uid != R.self_uid && mine >= R.max_per_uid)
        return hkd_reason(why, whylen, -EUSERS, "uid %u has %u registrations, the limit for one user", (unsigned)uid, mine);
    return 0;
}

static int pidfd_of(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int add(int conn_fd, int region_fd, pid_t pid, uid_t uid, char *why, size_t whylen)
{
    if (why && whylen)
        why[0] = 0;
    if (!R.ready)
        return hkd_reason(why, whylen, -ENODEV, "the daemon takes no registrations");
    hkd_reg r;
    memset(&r, 0, sizeof r);
    r.conn_fd = r.pidfd = -1;
    r.pid = pid;
    r.uid = uid;
    int rc = map_region(&r, region_fd, why, whylen);
    if (rc < 0)
        return rc;
    if (conn_fd >= 0 && (r.conn_fd = fcntl(conn_fd, F_DUPFD_CLOEXEC, 0)) < 0) {
        rc = hkd_reason(why, whylen, -errno, "cannot keep the connection: %s", strerror(errno));
        release(&r);
        return rc;
    }
    if (pid > 0) {
        /* The peer's own pidfd, when the kernel gives one, cannot name a
         * process that reused the pid since it connected. */
        socklen_t len = sizeof r.pidfd;
        if (conn_fd < 0 || getsockopt(conn_fd, SOL_SOCKET, SO_PEERPIDFD, &r.pidfd, &len) < 0)
            r.pidfd = pidfd_of(pid);
        if (r.pidfd >= 0)
            fcntl(r.pidfd, F_SETFD, FD_CLOEXEC);
        /* A process that exited before we got here (it does not wait for
         * the reply) is still taken: its connection has closed, which ends
         * the registration at once, and the region holds its final flush. */
        if (r.pidfd < 0 && conn_fd < 0) {
            rc = hkd_reason(why, whylen, -ESRCH, "process %d: %s", (int)pid,
                     errno == ESRCH ? "it is gone" : "no pidfd to tell when it ends");
            release(&r);
            return rc;
        }
    }
    r.registered_ns = hkd_now_ns();
    pthread_mutex_lock(&R.mu);
    rc = within_caps(pid, uid, why, whylen);
    if (rc == 0) {
        r.serial = ++R.last_serial;
        R.pending[R.n_pending++] = r;
    }
    pthread_mutex_unlock(&R.mu);
    if (rc < 0)
        release(&r);
    return rc;
}

int hkd_registry_add(int conn_fd, int region_fd, const struct ucred *cred, char *why, size_t whylen)
{
    if (conn_fd < 0 || !cred)
        return hkd_reason(why, whylen, -EINVAL, "a registration needs its connection and credentials");
    return add(conn_fd, region_fd, cred->pid > 0 ? cred->pid : 0, cred->uid, why, whylen);
}

int hkd_registry_add_local(int region_fd, pid_t pid, uid_t uid, char *why, size_t whylen)
{
    return add(-1, region_fd, pid > 0 ? pid : 0, uid, why, whylen);
}

static void end(uint32_t i, const char *reason)
{
    if (!R.regs[i].ended) {
        R.regs[i].ended = 1;
        R.end_reason[i] = reason;
    }
}

uint32_t hkd_registry_begin_interval(void)
{
    if (!R.ready)
        return 0;
    pthread_mutex_lock(&R.mu);
    uint32_t free_at = 0, merged = 0;
    for (; merged < R.n_pending; merged++) {
        hkd_reg *p = &R.pending[merged];
        while (free_at < R.max_total && R.regs[free_at].serial)
            free_at++;
        if (free_at == R.max_total)
            break;                   /* replacements wait for the entries they replace */
        for (uint32_t i = 0; p->pid > 0 && i < R.span; i++)
            if (R.regs[i].serial && R.regs[i].pid == p->pid)
                end(i, "replaced by a new registration of the process");
        R.regs[free_at] = *p;
        R.end_reason[free_at] = NULL;
        hkd_log(HKD_LOG_DEBUG, "registered pid %d (uid %u, %s), registration %u", (int)p->pid, (unsigned)p->uid,
                p->exe[0] ? p->exe : "?", p->registration);
        R.count++;
        if (free_at + 1 > R.span)
            R.span = free_at + 1;
    }
    memmove(R.pending, R.pending + merged, (R.n_pending - merged) * sizeof *R.pending);
    R.n_pending -= merged;
    pthread_mutex_unlock(&R.mu);

    nfds_t n = 0;
    for (uint32_t i = 0; i < R.span; i++) {
        const hkd_reg *r = &R.regs[i];
        if (!r->serial || r->ended)
            continue;
        if (r->conn_fd >= 0) {
            R.pfd[n] = (struct pollfd){ .fd = r->conn_fd, .events = POLLIN | POLLRDHUP };
            R.pfd_entry[n++] = i;
        }
        if (r->pidfd >= 0) {
            R.pfd[n] = (struct pollfd){ .fd = r->pidfd, .events = POLLIN };
            R.pfd_entry[n++] = i;
        }
    }
    uint32_t ended = 0;
    if (n && poll(R.pfd, n, 0) > 0) {
        for (nfds_t k = 0; k < n; k++) {
            if (!R.pfd[k].revents)
                continue;
            uint32_t i = R.pfd_entry[k];
            ended += !R.regs[i].ended;
            /* A registered connection carries nothing after the request:
             * bytes, a hang-up or an error all end it. */
            end(i, R.pfd[k].fd == R.regs[i].pidfd ? "the process exited" : "its connection closed");
        }
    }
    return ended;
}

void hkd_registry_end_interval(void)
{
    if (!R.ready)
        return;
    pthread_mutex_lock(&R.mu);
    for (uint32_t i = 0; i < R.span; i++) {
        hkd_reg *r = &R.regs[i];
        if (!r->serial || !r->ended)
            continue;
        hkd_log(HKD_LOG_DEBUG, "pid %d (uid %u, %s): registration dropped, %s", (int)r->pid, (unsigned)r->uid,
                r->exe[0] ? r->exe : "?", R.end_reason[i] ? R.end_reason[i] : "ended");
        release(r);
        R.count--;
    }
    while (R.span && !R.regs[R.span - 1].serial)
        R.span--;
    pthread_mutex_unlock(&R.mu);
}

void hkd_registry_end(uint32_t i)
{
    if (R.ready && i < R.span && R.regs[i].serial)
        end(i, "ended by the daemon");
}

uint32_t hkd_registry_span(void)
{
    return R.span;
}

hkd_reg *hkd_registry_at(uint32_t i)
{
    return i < R.span && R.regs[i].serial ? &R.regs[i] : NULL;
}

uint32_t hkd_registry_count(void)
{
    return R.count;
}
