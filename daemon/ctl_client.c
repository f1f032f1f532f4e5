/* Control socket client; see ctl_client.h. */
#include "ctl_client.h"
#include "frame.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

int hkc_connect(const char *path, int timeout_ms)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* A full accept backlog makes connect() wait; SO_SNDTIMEO bounds it. */
    if (timeout_ms > 0) {
        struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int r = errno == EINPROGRESS || errno == EAGAIN ? -ETIMEDOUT : -errno;
        close(fd);
        return r;
    }
    return fd;
}

int hkc_call(int fd, Hakmem__Ctl__Request *rq, Hakmem__Ctl__Response **out, int timeout_ms)
{
    *out = NULL;
    rq->version = HKC_PROTOCOL_VERSION;
    size_t n = hakmem__ctl__request__get_packed_size(rq);
    if (n > HKC_FRAME_MAX)
        return -EMSGSIZE;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return -ENOMEM;
    hakmem__ctl__request__pack(rq, buf);
    int r = hkc_frame_write(fd, buf, n, timeout_ms);
    free(buf);
    /* Even when the write failed, the daemon may have answered (e.g. an
     * error before closing); try to read it. */
    size_t len;
    int rr = hkc_frame_read(fd, &buf, &len, HKC_FRAME_MAX, timeout_ms);
    if (rr < 0)
        return r < 0 ? r : rr;
    *out = hakmem__ctl__response__unpack(NULL, len, buf);
    free(buf);
    return *out ? 0 : -EBADMSG;
}
