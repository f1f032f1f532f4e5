/* Fuzzes the frame decoder (common/frame.c) with the bytes a peer sends:
 * every frame read until the stream ends, with a small maximum so the
 * oversize path runs too; each frame is also decoded as a Request and as a
 * Response, as the two sides of the control socket do, and written back
 * and read again unchanged. */
#include "control.pb-c.h"
#include "frame.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FRAME 1024         /* well under the inputs libFuzzer makes (4096 bytes) */

static void check_roundtrip(const uint8_t *p, size_t n)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        abort();
    uint8_t *back;
    size_t len;
    if (hkc_frame_write(sv[0], p, n, 1000) != 0 || hkc_frame_read(sv[1], &back, &len, MAX_FRAME, 1000) != 0 ||
        len != n || memcmp(back, p, n) != 0)
        abort();
    free(back);
    close(sv[0]);
    close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        return 0;
    int big = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    if (size && write(sv[0], data, size) != (ssize_t)size) {
        close(sv[0]);
        close(sv[1]);
        return 0;
    }
    shutdown(sv[0], SHUT_WR);
    for (;;) {
        uint8_t *buf;
        size_t len;
        int r = hkc_frame_read(sv[1], &buf, &len, MAX_FRAME, 0);
        if (r == -EMSGSIZE && len <= MAX_FRAME)
            abort();                 /* refused a frame it should take */
        if (r < 0)
            break;
        if (len > MAX_FRAME)
            abort();
        Hakmem__Ctl__Request *rq = hakmem__ctl__request__unpack(NULL, len, buf);
        if (rq)
            hakmem__ctl__request__free_unpacked(rq, NULL);
        Hakmem__Ctl__Response *resp = hakmem__ctl__response__unpack(NULL, len, buf);
        if (resp)
            hakmem__ctl__response__free_unpacked(resp, NULL);
        check_roundtrip(buf, len);
        free(buf);
    }
    close(sv[0]);
    close(sv[1]);
    return 0;
}
