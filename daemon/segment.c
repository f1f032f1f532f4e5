/* Segment owner.
 *
 * Who owns a segment name is decided by a lock file only this daemon's
 * user can open, never by anything in the segment: a client can write
 * nothing there, and a stale or forged header cannot keep a daemon from
 * starting.  Adoption is what lets running clients keep their policy
 * across a restart: the object (and its published tables) stays.  A
 * segment of ours with another layout, or one that group or others could
 * write (its contents cannot be trusted, and a writable mapping may still
 * be open), is unlinked and recreated; clients still mapping the old object
 * notice the new inode.  A segment of another user is left alone. */
#include "segment.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define SHM_DIR "/dev/shm"

uint64_t hkd_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int take_lock(hkd_segment *seg, char *why, size_t whylen)
{
    int fd = open(seg->lock_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        return hkd_reason(why, whylen, -e, "cannot open lock file %s: %s", seg->lock_path,
                   e == ELOOP ? "it is a symbolic link" : strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return hkd_reason(why, whylen, -e, "cannot stat lock file %s: %s", seg->lock_path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return hkd_reason(why, whylen, -EPERM, "lock file %s is not a regular file; remove it", seg->lock_path);
    }
    if (st.st_uid != geteuid()) {
        close(fd);
        return hkd_reason(why, whylen, -EPERM, "lock file %s belongs to uid %u, not to this daemon (uid %u); remove it",
                   seg->lock_path, (unsigned)st.st_uid, (unsigned)geteuid());
    }
    /* Only we may open it: no one else can take (or hold) its lock. */
    if ((st.st_mode & 077) && fchmod(fd, 0600) < 0) {
        int e = errno;
        close(fd);
        return hkd_reason(why, whylen, -e, "cannot restrict lock file %s: %s", seg->lock_path, strerror(e));
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            return hkd_reason(why, whylen, -EBUSY, "another hakmemd holds %s", seg->lock_path);
        return hkd_reason(why, whylen, -e, "cannot lock %s: %s", seg->lock_path, strerror(e));
    }
    seg->lock_fd = fd;
    return 0;
}

static uint64_t fresh_instance(uint64_t old)
{
    uint64_t v = 0;
    for (int tries = 0; tries < 4 && (v == 0 || v == old); tries++) {
        if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v) {
            /* No entropy yet (early boot): still unique enough to change. */
            v = hkd_now_ns() ^ ((uint64_t)getpid() << 32) ^ (old * 0x9E3779B97F4A7C15ull);
        }
    }
    return v ? v : old + 1;
}

static void init_header(hkshm_header *h)
{
    memset(h, 0, sizeof *h);
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
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    atomic_store(&h->created_ns, (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
    atomic_store(&h->flush_interval_ms, 250);
}

/* 0 and seg->hdr; -EPROTO (why_recreated says why) when the segment is
 * ours but must be replaced; -ENOENT; -EPERM with `why` when it is not
 * ours. */
static int try_adopt(hkd_segment *seg, char *why, size_t whylen)
{
    int fd = shm_open(seg->name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return -ENOENT;
        struct stat st;
        char path[128];
        snprintf(path, sizeof path, SHM_DIR "%s", seg->name);
        if (e == EACCES && lstat(path, &st) == 0 && st.st_uid != geteuid())
            return hkd_reason(why, whylen, -EPERM, "segment %s belongs to uid %u, not to this daemon (uid %u); remove it",
                       path, (unsigned)st.st_uid, (unsigned)geteuid());
        return hkd_reason(why, whylen, -e, "cannot open segment %s: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return hkd_reason(why, whylen, -e, "cannot stat segment " SHM_DIR "%s: %s", seg->name, strerror(e));
    }
    if (st.st_uid != geteuid()) {
        close(fd);
        return hkd_reason(why, whylen, -EPERM,
                   "segment " SHM_DIR "%s belongs to uid %u, not to this daemon (uid %u); remove it", seg->name,
                   (unsigned)st.st_uid, (unsigned)geteuid());
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return hkd_reason(why, whylen, -EPERM, "segment " SHM_DIR "%s is not a regular file; remove it", seg->name);
    }
    const char *replace = (st.st_mode & 022) ? "writable by group or others"
                          : (uint64_t)st.st_size != HKSHM_SEGMENT_SIZE ? "segment size" : NULL;
    if (replace) {
        close(fd);
        snprintf(seg->why_recreated, sizeof seg->why_recreated, "%s", replace);
        return -EPROTO;
    }
    void *p = mmap(NULL, HKSHM_SEGMENT_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        int e = errno;
        return hkd_reason(why, whylen, -e, "cannot map segment " SHM_DIR "%s: %s", seg->name, strerror(e));
    }
    const char *mismatch = hkshm_header_mismatch(p, (uint64_t)st.st_size);
    if (mismatch) {
        snprintf(seg->why_recreated, sizeof seg->why_recreated, "%s", mismatch);
        munmap(p, HKSHM_SEGMENT_SIZE);
        return -EPROTO;
    }
    seg->hdr = p;
    seg->adopted = 1;
    return 0;
}

/* What a client reads once it sees a new instance. */
static void describe(hkshm_header *h, const char *socket_path, uint32_t reader_timeout_ms)
{
    const char *sp = socket_path ? socket_path : "";
    if (strncmp(h->socket_path, sp, sizeof h->socket_path) != 0) {
        memset(h->socket_path, 0, sizeof h->socket_path);
        memcpy(h->socket_path, sp, strlen(sp));
    }
    h->reader_timeout_ms = reader_timeout_ms;
}

static int create(hkd_segment *seg, const char *socket_path, uint32_t reader_timeout_ms, char *why, size_t whylen)
{
    int fd = shm_open(seg->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0) {
        int e = errno;
        return e == EEXIST ? -EEXIST
                           : hkd_reason(why, whylen, -e, "cannot create segment " SHM_DIR "%s: %s", seg->name, strerror(e));
    }
    /* shm_open's mode went through the umask. */
    int rc = fchmod(fd, 0640) < 0 ? -errno : 0;
    struct group gr, *res = NULL;
    char buf[4096];
    if (rc == 0 && getgrnam_r("hakmem", &gr, buf, sizeof buf, &res) == 0 && res &&
        fchown(fd, (uid_t)-1, gr.gr_gid) < 0) {
        /* Not fatal: clients of our own user still read it. */
    }
    if (rc == 0 && ftruncate(fd, (off_t)HKSHM_SEGMENT_SIZE) < 0)
        rc = -errno;
    void *p = MAP_FAILED;
    if (rc == 0 && (p = mmap(NULL, HKSHM_SEGMENT_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED)
        rc = -errno;
    close(fd);
    if (rc < 0) {
        shm_unlink(seg->name);
        return hkd_reason(why, whylen, rc, "cannot set up segment " SHM_DIR "%s: %s", seg->name, strerror(-rc));
    }
    hkshm_header *h = p;
    init_header(h);
    describe(h, socket_path, reader_timeout_ms);
    atomic_store(&h->instance, fresh_instance(0));
    /* Clients look at the magic first: it goes in last. */
    __atomic_store_n(&h->magic, HKSHM_MAGIC, __ATOMIC_RELEASE);
    seg->hdr = h;
    seg->adopted = 0;
    return 0;
}

int hkd_segment_open(hkd_segment *seg, const char *name, const char *socket_path, uint32_t reader_timeout_ms,
                     char *why, size_t whylen)
{
    memset(seg, 0, sizeof *seg);
    seg->lock_fd = -1;
    if (why && whylen)
        why[0] = 0;
    if (!name || name[0] != '/' || strlen(name) >= sizeof seg->name || strchr(name + 1, '/') || !name[1])
        return hkd_reason(why, whylen, -EINVAL, "segment name \"%s\" must be / and up to %zu characters, no other /",
                   name ? name : "", sizeof seg->name - 2);
    if (socket_path && strlen(socket_path) >= HKSHM_SOCKET_PATH)
        return hkd_reason(why, whylen, -ENAMETOOLONG, "socket path %s is longer than %u bytes", socket_path,
                   HKSHM_SOCKET_PATH - 1);
    snprintf(seg->name, sizeof seg->name, "%s", name);
    snprintf(seg->lock_path, sizeof seg->lock_path, SHM_DIR "%s.lock", name);
    int rc = take_lock(seg, why, whylen);
    if (rc < 0)
        return rc;
    /* Holding the lock, only a non-daemon can race us to the name: then
     * the next look finds a segment that is not ours. */
    rc = -ENOENT;
    for (int tries = 0; tries < 3 && seg->hdr == NULL; tries++) {
        rc = try_adopt(seg, why, whylen);
        if (rc == -EPROTO)
            shm_unlink(seg->name);
        if (rc == -EPROTO || rc == -ENOENT)
            rc = create(seg, socket_path, reader_timeout_ms, why, whylen);
        if (rc != -EEXIST && rc != 0)
            break;
    }
    if (rc == -EEXIST)
        rc = hkd_reason(why, whylen, -EBUSY, "segment " SHM_DIR "%s keeps being recreated by someone else", seg->name);
    if (rc < 0) {
        close(seg->lock_fd);
        seg->lock_fd = -1;
        return rc;
    }
    hkshm_header *h = seg->hdr;
    atomic_store(&h->daemon_heartbeat_ns, hkd_now_ns());
    atomic_store(&h->daemon_pid, (uint32_t)getpid());
    if (seg->adopted) {
        /* Its clients registered with the daemon before us: the new
         * instance tells them to register again. */
        describe(h, socket_path, reader_timeout_ms);
        atomic_store(&h->instance, fresh_instance(atomic_load(&h->instance)));
    }
    return 0;
}

void hkd_segment_close(hkd_segment *seg)
{
    if (seg->hdr) {
        atomic_store(&seg->hdr->daemon_pid, 0);
        munmap(seg->hdr, HKSHM_SEGMENT_SIZE);
        seg->hdr = NULL;
    }
    if (seg->lock_fd >= 0) {
        close(seg->lock_fd);
        seg->lock_fd = -1;
    }
}
