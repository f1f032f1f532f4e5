/* TEST ONLY: misbehaving and raw clients for the control server.
 * usage: ctl_probe SOCKET MODE [ARG]
 *   toolarge      announce a frame one byte over the maximum
 *   garbage       a well-framed payload that is not a Request
 *   http          raw "GET / HTTP/1.0" bytes, no framing at all
 *   version       a Request with protocol version 99
 *   nocommand     a Request with no command
 *   multi         three status requests on one connection
 *   silent MS     connect, send nothing; report whether the daemon closes
 *                 the connection within MS ms ("closed" / "open")
 *   partial MS    send half a frame header, then nothing; same report
 *   hold N        open N silent connections, print "held N", then sleep
 * For replies it prints "error CODE_NUMBER TEXT" or "ok KIND", one per line. */
#include "control.pb-c.h"
#include "frame.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int dial(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        perror("ctl_probe: connect");
        exit(3);
    }
    return fd;
}

static int print_reply(int fd)
{
    uint8_t *buf;
    size_t len;
    int r = hkc_frame_read(fd, &buf, &len, HKC_FRAME_MAX, 5000);
    if (r < 0) {
        printf("noreply %s\n", strerror(-r));
        return 1;
    }
    Hakmem__Ctl__Response *resp = hakmem__ctl__response__unpack(NULL, len, buf);
    free(buf);
    if (!resp) {
        printf("unparsable\n");
        return 1;
    }
    if (resp->result_case == HAKMEM__CTL__RESPONSE__RESULT_ERROR)
        printf("error %d %s\n", resp->error->code, resp->error->text);
    else
        printf("ok %d\n", resp->result_case);
    hakmem__ctl__response__free_unpacked(resp, NULL);
    return 0;
}

static void send_request(int fd, Hakmem__Ctl__Request *rq)
{
    uint8_t buf[256];
    size_t n = hakmem__ctl__request__pack(rq, buf);
    if (hkc_frame_write(fd, buf, n, 5000) < 0) {
        printf("write failed\n");
        exit(1);
    }
}

/* Waits for the peer to close: recv() returning 0 (or an error). */
static void wait_close(int fd, int ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int r = poll(&p, 1, ms);
    char c;
    if (r > 0 && recv(fd, &c, 1, MSG_DONTWAIT) <= 0)
        printf("closed\n");
    else
        printf("open\n");
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    const char *mode = argv[2];
    int arg = argc > 3 ? atoi(argv[3]) : 0;
    if (!strcmp(mode, "hold")) {
        int *fds = calloc((size_t)arg, sizeof *fds);
        for (int i = 0; i < arg; i++)
            fds[i] = dial(argv[1]);
        printf("held %d\n", arg);
        fflush(stdout);
        for (;;)
            pause();
    }
    int fd = dial(argv[1]);
    if (!strcmp(mode, "toolarge")) {
        uint32_t n = HKC_FRAME_MAX + 1;
        uint8_t hdr[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };
        if (write(fd, hdr, 4) != 4)
            return 1;
        return print_reply(fd);
    }
    if (!strcmp(mode, "garbage")) {
        uint8_t junk[64];
        for (size_t i = 0; i < sizeof junk; i++)
            junk[i] = (uint8_t)(0xff - i * 7);
        hkc_frame_write(fd, junk, sizeof junk, 5000);
        return print_reply(fd);
    }
    if (!strcmp(mode, "http")) {
        const char *req = "GET / HTTP/1.0\r\n\r\n";
        if (write(fd, req, strlen(req)) < 0)
            return 1;
        return print_reply(fd);
    }
    if (!strcmp(mode, "version") || !strcmp(mode, "nocommand")) {
        Hakmem__Ctl__Request rq = HAKMEM__CTL__REQUEST__INIT;
        Hakmem__Ctl__StatusRequest sr = HAKMEM__CTL__STATUS_REQUEST__INIT;
        rq.version = 1;
        if (!strcmp(mode, "version")) {
            rq.version = 99;
            rq.command_case = HAKMEM__CTL__REQUEST__COMMAND_STATUS;
            rq.status = &sr;
        }
        send_request(fd, &rq);
        return print_reply(fd);
    }
    if (!strcmp(mode, "multi")) {
        Hakmem__Ctl__Request rq = HAKMEM__CTL__REQUEST__INIT;
        Hakmem__Ctl__StatusRequest sr = HAKMEM__CTL__STATUS_REQUEST__INIT;
        rq.version = 1;
        rq.command_case = HAKMEM__CTL__REQUEST__COMMAND_STATUS;
        rq.status = &sr;
        for (int i = 0; i < 3; i++) {
            send_request(fd, &rq);
            if (print_reply(fd))
                return 1;
        }
        return 0;
    }
    if (!strcmp(mode, "silent")) {
        wait_close(fd, arg);
        return 0;
    }
    if (!strcmp(mode, "partial")) {
        if (write(fd, "\0\0", 2) != 2)
            return 1;
        wait_close(fd, arg);
        return 0;
    }
    fprintf(stderr, "ctl_probe: unknown mode %s\n", mode);
    return 2;
}
