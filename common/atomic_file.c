/* Atomic file replacement; see atomic_file.h. */
#include "atomic_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* The directory and the base name of path ("." for a bare name). */
static int split_path(const char *path, char *dir, size_t dcap, const char **base)
{
    const char *slash = strrchr(path, '/');
    *base = slash ? slash + 1 : path;
    if (!**base)
        return -EISDIR;
    size_t dlen = slash ? (size_t)(slash - path) : 1;
    if (slash && dlen == 0)
        dlen = 1;                    /* "/name": the root */
    if (dlen >= dcap)
        return -ENAMETOOLONG;
    memcpy(dir, slash ? path : ".", dlen);
    dir[dlen] = '\0';
    return 0;
}

int hkd_atomic_open(hkd_atomic_file *f, const char *path, mode_t mode)
{
    f->fd = -1;
    char dir[HKD_PATH_MAX];
    const char *base;
    int r = split_path(path, dir, sizeof dir, &base);
    if (r < 0)
        return r;
    if ((size_t)snprintf(f->path, sizeof f->path, "%s", path) >= sizeof f->path)
        return -ENAMETOOLONG;
    for (int tries = 0; tries < 16; tries++) {
        unsigned rnd = 0;
        if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
            rnd = (unsigned)rand();
        if ((size_t)snprintf(f->tmp, sizeof f->tmp, "%s/.%s.tmp.%d.%08x", dir, base, (int)getpid(), rnd) >=
            sizeof f->tmp)
            return -ENAMETOOLONG;
        f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (f->fd >= 0)
            return 0;
        if (errno != EEXIST)
            return -errno;
    }
    return -EEXIST;
}

int hkd_atomic_write(hkd_atomic_file *f, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(f->fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int hkd_atomic_commit(hkd_atomic_file *f)
{
    int r = 0;
    if (fsync(f->fd) < 0)
        r = -errno;
    if (close(f->fd) < 0 && r == 0)
        r = -errno;
    f->fd = -1;
    if (r == 0 && rename(f->tmp, f->path) < 0)
        r = -errno;
    if (r < 0) {
        unlink(f->tmp);
        return r;
    }
    /* The rename is durable only once the directory is. */
    char dir[HKD_PATH_MAX];
    const char *base;
    if (split_path(f->path, dir, sizeof dir, &base) == 0) {
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            if (fsync(dfd) < 0 && errno != EINVAL)
                r = -errno;
            close(dfd);
        }
    }
    return r;
}

void hkd_atomic_abort(hkd_atomic_file *f)
{
    if (f->fd >= 0) {
        close(f->fd);
        f->fd = -1;
        unlink(f->tmp);
    }
}

/* The PID in "<prefix><pid>[.anything]", or -1. */
static long pid_in(const char *rest)
{
    char *end;
    errno = 0;
    long pid = strtol(rest, &end, 10);
    if (errno || end == rest || pid <= 0 || (*end && *end != '.'))
        return -1;
    return pid;
}

int hkd_atomic_clean(const char *path)
{
    char dir[HKD_PATH_MAX], prefix[HKD_PATH_MAX];
    const char *base;
    int r = split_path(path, dir, sizeof dir, &base);
    if (r < 0)
        return r;
    if ((size_t)snprintf(prefix, sizeof prefix, ".%s.tmp.", base) >= sizeof prefix)
        return -ENAMETOOLONG;
    size_t plen = strlen(prefix);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    DIR *d = fdopendir(dfd);
    if (!d) {
        r = -errno;
        close(dfd);
        return r;
    }
    int removed = 0;
    uid_t me = geteuid();
    pid_t self = getpid();
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, plen) != 0)
            continue;
        struct stat st;
        if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
            st.st_uid != me)
            continue;
        long pid = pid_in(e->d_name + plen);
        /* A live writer other than us (an earlier incarnation may have had
         * our PID, e.g. in a container) is still at work. */
        if (pid > 0 && pid != self && (kill((pid_t)pid, 0) == 0 || errno == EPERM))
            continue;
        if (unlinkat(dfd, e->d_name, 0) == 0)
            removed++;
    }
    closedir(d);
    return removed;
}
