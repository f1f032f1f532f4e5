/* Framing for the control socket.  The deadline covers the whole frame, not
 * each read, so a peer that trickles one byte at a time is still cut off. */
#include "frame.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int64_t hkc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for events or the deadline passes.  It always
 * polls once, so a deadline of "now" still succeeds on a ready socket. */
static int wait_ready(int fd, short events, int64_t deadline)
{
    for (;;) {
        int left = -1;
        if (deadline >= 0) {
            int64_t d = deadline - hkc_now_ms();
            left = d <= 0 ? 0 : d > 60000 ? 60000 : (int)d;
        }
        struct pollfd p = { .fd = fd, .events = events };
        int r = poll(&p, 1, left);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
        if (r == 0 && left == 0)
            return -ETIMEDOUT;
    }
}

static int write_all(int fd, const uint8_t *p, size_t n, int64_t deadline)
{
    while (n > 0) {
        int r = wait_ready(fd, POLLOUT, deadline);
        if (r < 0)
            return r;
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Returns bytes read (< n only at EOF) or -errno. */
static ssize_t read_all(int fd, uint8_t *p, size_t n, int64_t deadline)
{
    size_t got = 0;
    while (got < n) {
        int r = wait_ready(fd, POLLIN, deadline);
        if (r < 0)
            return r;
        ssize_t k = recv(fd, p + got, n - got, MSG_DONTWAIT);
        if (k < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return -errno;
        }
        if (k == 0)
            break;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

int hkc_frame_write(int fd, const uint8_t *buf, size_t len, int timeout_ms)
{
    if (len > UINT32_MAX)
        return -EMSGSIZE;
    int64_t deadline = timeout_ms < 0 ? -1 : hkc_now_ms() + timeout_ms;
    uint8_t hdr[4] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16),
                       (uint8_t)(len >> 8), (uint8_t)len };
    int r = write_all(fd, hdr, sizeof hdr, deadline);
    if (r == 0 && len > 0)
        r = write_all(fd, buf, len, deadline);
    return r;
}

/* Receives the first byte of a frame and what descriptors came with it:
 * the one it keeps in *passed, the others closed.  Returns 1, 0 at EOF, or
 * -errno.  Later reads use recv(), which leaves any descriptor uninstalled. */
static ssize_t read_first(int fd, uint8_t *p, int64_t deadline, int *passed)
{
    for (;;) {
        int r = wait_ready(fd, POLLIN, deadline);
        if (r < 0)
            return r;
        /* Room for two: a second one is how we know there were too many. */
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(2 * sizeof(int))];
        } ctl;
        struct iovec iov = { .iov_base = p, .iov_len = 1 };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                              .msg_controllen = sizeof ctl.buf };
        ssize_t k = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (k < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return -errno;
        }
        int got[8], n = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            size_t fds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < fds; i++) {
                int v;
                memcpy(&v, CMSG_DATA(c) + i * sizeof(int), sizeof v);
                if (n < (int)(sizeof got / sizeof got[0]))
                    got[n++] = v;
                else
                    close(v);
            }
        }
        /* Truncated ancillary data means more came than we took. */
        if (n == 1 && !(msg.msg_flags & MSG_CTRUNC)) {
            *passed = got[0];
        } else {
            for (int i = 0; i < n; i++)
                close(got[i]);
        }
        return k;
    }
}

static int frame_read(int fd, uint8_t **out, size_t *len, size_t max, int timeout_ms, int *passed)
{
    *out = NULL;
    *len = 0;
    int64_t deadline = timeout_ms < 0 ? -1 : hkc_now_ms() + timeout_ms;
    uint8_t hdr[4];
    ssize_t k;
    if (passed) {
        *passed = -1;
        k = read_first(fd, hdr, deadline, passed);
        if (k == 1) {
            k = read_all(fd, hdr + 1, sizeof hdr - 1, deadline);
            k = k < 0 ? k : k + 1;
        }
    } else {
        k = read_all(fd, hdr, sizeof hdr, deadline);
    }
    if (k < 0)
        return (int)k;
    if (k == 0)
        return -ENODATA;
    if (k < (ssize_t)sizeof hdr)
        return -EPROTO;
    size_t n = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
    *len = n;
    if (n > max)
        return -EMSGSIZE;
    /* One extra byte so an empty frame still yields a non-NULL buffer. */
    uint8_t *buf = malloc(n + 1);
    if (!buf)
        return -ENOMEM;
    k = read_all(fd, buf, n, deadline);
    if (k < 0 || (size_t)k < n) {
        free(buf);
        return k < 0 ? (int)k : -EPROTO;
    }
    *out = buf;
    return 0;
}

int hkc_frame_read(int fd, uint8_t **out, size_t *len, size_t max, int timeout_ms)
{
    return frame_read(fd, out, len, max, timeout_ms, NULL);
}

int hkc_frame_read_fd(int fd, uint8_t **out, size_t *len, size_t max, int timeout_ms, int *passed)
{
    int rc = frame_read(fd, out, len, max, timeout_ms, passed);
    if (rc < 0 && *passed >= 0) {
        close(*passed);
        *passed = -1;
    }
    return rc;
}
