/* Segment owner.
 *
 * Adoption is what lets running clients survive a daemon restart: their
 * mapping stays valid because the object is the same.  A segment whose
 * layout does not match is unlinked and recreated; clients still mapping the
 * old object notice the new inode on their periodic re-check. */
#include "segment.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t hkd_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t hkd_proc_start_time(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    /* comm may hold spaces and parentheses: fields count from the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    int field = 2;
    for (; *p && field < 22; p++)
        if (*p == ' ')
            field++;
    unsigned long long v = 0;
    if (sscanf(p, "%llu", &v) != 1)
        return 0;
    return v;
}

int hkd_proc_alive(pid_t pid, uint64_t start_time)
{
    if (pid <= 0)
        return 0;
    if (kill(pid, 0) < 0 && errno == ESRCH)
        return 0;
    if (start_time == 0)
        return 1;
    uint64_t st = hkd_proc_start_time(pid);
    /* Unreadable /proc (hidepid) leaves kill() as the only evidence. */
    return st == 0 || st == start_time;
}

static void init_header(hkshm_header *h)
{
    memset(h, 0, sizeof *h);
    h->abi_version = HKSHM_ABI_VERSION;
    h->header_size = HKSHM_HEADER_SIZE;
    h->segment_size = HKSHM_SEGMENT_SIZE;
    h->max_slots = HKSHM_MAX_SLOTS;
    h->slot_size = sizeof(hkshm_slot);
    h->slot_sites = HKSHM_SLOT_SITES;
    h->site_size = sizeof(hkshm_site);
    h->n_tables = HKSHM_TABLES;
    h->table_cap = HKSHM_TABLE_CAP;
    h->table_size = sizeof(hkshm_table);
    h->entry_size = sizeof(hkshm_policy);
    h->slots_offset = HKSHM_SLOTS_OFFSET;
    h->tables_offset = HKSHM_TABLES_OFFSET;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    atomic_store(&h->created_ns, (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
    atomic_store(&h->flush_interval_ms, 250);
}

static int try_adopt(hkd_segment *seg, const char *name)
{
    int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if ((uint64_t)st.st_size != HKSHM_SEGMENT_SIZE) {
        close(fd);
        snprintf(seg->why_recreated, sizeof seg->why_recreated, "segment size");
        return -EPROTO;
    }
    void *p = mmap(NULL, HKSHM_SEGMENT_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return -errno;
    hkshm_header *h = p;
    const char *why = hkshm_header_mismatch(h, (uint64_t)st.st_size);
    if (why) {
        snprintf(seg->why_recreated, sizeof seg->why_recreated, "%s", why);
        munmap(p, HKSHM_SEGMENT_SIZE);
        return -EPROTO;
    }
    uint32_t other = atomic_load(&h->daemon_pid);
    if (other && (pid_t)other != getpid() &&
        hkd_proc_alive((pid_t)other, atomic_load(&h->daemon_start_time))) {
        munmap(p, HKSHM_SEGMENT_SIZE);
        return -EBUSY;
    }
    seg->hdr = h;
    seg->adopted = 1;
    return 0;
}

static int create(hkd_segment *seg, const char *name)
{
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0660);
    if (fd < 0)
        return -errno;
    /* shm_open's mode went through the umask. */
    fchmod(fd, 0660);
    struct group *g = getgrnam("hakmem");
    if (g && fchown(fd, (uid_t)-1, g->gr_gid) < 0) {
        /* Not fatal: clients of our own user still attach. */
    }
    if (ftruncate(fd, (off_t)HKSHM_SEGMENT_SIZE) < 0) {
        int e = -errno;
        close(fd);
        shm_unlink(name);
        return e;
    }
    void *p = mmap(NULL, HKSHM_SEGMENT_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        int e = -errno;
        shm_unlink(name);
        return e;
    }
    hkshm_header *h = p;
    init_header(h);
    /* Clients look at the magic first: it goes in last. */
    __atomic_store_n(&h->magic, HKSHM_MAGIC, __ATOMIC_RELEASE);
    seg->hdr = h;
    seg->adopted = 0;
    return 0;
}

int hkd_segment_open(hkd_segment *seg, const char *name)
{
    memset(seg, 0, sizeof *seg);
    if (!name || name[0] != '/' || strlen(name) >= sizeof seg->name || strchr(name + 1, '/'))
        return -EINVAL;
    snprintf(seg->name, sizeof seg->name, "%s", name);
    int rc = try_adopt(seg, name);
    if (rc == -EPROTO) {
        shm_unlink(name);
        rc = create(seg, name);
    } else if (rc == -ENOENT) {
        rc = create(seg, name);
        if (rc == -EEXIST)            /* lost a race with another starter */
            rc = try_adopt(seg, name);
    }
    if (rc < 0)
        return rc;
    hkshm_header *h = seg->hdr;
    atomic_store(&h->daemon_start_time, hkd_proc_start_time(getpid()));
    atomic_store(&h->daemon_heartbeat_ns, hkd_now_ns());
    atomic_store(&h->daemon_pid, (uint32_t)getpid());
    return 0;
}

void hkd_segment_close(hkd_segment *seg)
{
    if (!seg->hdr)
        return;
    atomic_store(&seg->hdr->daemon_pid, 0);
    munmap(seg->hdr, HKSHM_SEGMENT_SIZE);
    seg->hdr = NULL;
}
