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

static int send_request(int fd, Hakmem__Ctl__Request *rq, int timeout_ms)
{
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
    return r;
}

static int read_response(int fd, Hakmem__Ctl__Response **out, int timeout_ms)
{
    uint8_t *buf;
    size_t len;
    int r = hkc_frame_read(fd, &buf, &len, HKC_FRAME_MAX, timeout_ms);
    if (r < 0)
        return r;
    *out = hakmem__ctl__response__unpack(NULL, len, buf);
    free(buf);
    return *out ? 0 : -EBADMSG;
}

int hkc_call(int fd, Hakmem__Ctl__Request *rq, Hakmem__Ctl__Response **out, int timeout_ms)
{
    *out = NULL;
    int r = send_request(fd, rq, timeout_ms);
    if (r == -EMSGSIZE || r == -ENOMEM)
        return r;
    /* Even when the write failed, the daemon may have answered (e.g. an
     * error before closing); try to read it. */
    int rr = read_response(fd, out, timeout_ms);
    return rr < 0 && r < 0 ? r : rr;
}

int hkc_call_stream(int fd, Hakmem__Ctl__Request *rq, hkc_part_fn fn, void *arg, int timeout_ms)
{
    rq->stream = 1;
    int r = send_request(fd, rq, timeout_ms);
    if (r == -EMSGSIZE || r == -ENOMEM)
        return r;
    for (;;) {
        Hakmem__Ctl__Response *resp;
        int rr = read_response(fd, &resp, timeout_ms);
        if (rr < 0)
            return r < 0 ? r : rr;
        /* An error ends the answer, whatever came before it. */
        int last = !resp->more || resp->result_case == HAKMEM__CTL__RESPONSE__RESULT_ERROR;
        rr = fn(resp, last, arg);
        hakmem__ctl__response__free_unpacked(resp, NULL);
        if (rr != 0)
            return rr;
        if (last)
            return 0;
    }
}
