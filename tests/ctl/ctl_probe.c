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
 *   idle MS       one status request answered, then silence: does the daemon
 *                 close the connection within MS ms ("closed" / "open")
 *   keepalive N MS  open N connections one after the other, each asking for
 *                 status: print "served S busy B" (B answered BUSY); then keep
 *                 the served ones alive with a status a second for MS ms and
 *                 print "alive A" (those still answered at the end)
 *   legacy WHAT   sites (top 0), metrics or export without asking for a
 *                 stream: the one reply as below
 *   stream WHAT   the same as a stream: "parts P sites S bytes B maxframe F"
 *                 (sites counted, text or policy bytes summed, the largest
 *                 frame), or "badstream ..." when Response.more is not set
 *                 on every part but the last
 * For replies it prints "error CODE_NUMBER TEXT" or "ok KIND ..." (with the
 * sites and total of a Sites answer, and its more flag), one per line. */
#include "control.pb-c.h"
#include "frame.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
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
    else if (resp->result_case == HAKMEM__CTL__RESPONSE__RESULT_SITES)
        printf("ok %d sites %zu total %u more %d\n", resp->result_case, resp->sites->n_sites, resp->sites->total,
               resp->more);
    else
        printf("ok %d more %d\n", resp->result_case, resp->more);
    hakmem__ctl__response__free_unpacked(resp, NULL);
    return 0;
}

static int try_send(int fd, Hakmem__Ctl__Request *rq)
{
    uint8_t buf[256];
    size_t n = hakmem__ctl__request__pack(rq, buf);
    return hkc_frame_write(fd, buf, n, 5000);
}

static void send_request(int fd, Hakmem__Ctl__Request *rq)
{
    if (try_send(fd, rq) < 0) {
        printf("write failed\n");
        exit(1);
    }
}

/* A request for WHAT (status, sites, metrics, export); NULL when unknown.
 * The sub-messages are static: one request at a time. */
static Hakmem__Ctl__Request *request_for(const char *what, int stream)
{
    static Hakmem__Ctl__Request rq;
    static Hakmem__Ctl__StatusRequest st = HAKMEM__CTL__STATUS_REQUEST__INIT;
    static Hakmem__Ctl__SitesRequest si = HAKMEM__CTL__SITES_REQUEST__INIT;
    static Hakmem__Ctl__MetricsRequest me = HAKMEM__CTL__METRICS_REQUEST__INIT;
    static Hakmem__Ctl__ExportRequest ex = HAKMEM__CTL__EXPORT_REQUEST__INIT;
    hakmem__ctl__request__init(&rq);
    rq.version = 1;
    rq.stream = stream;
    if (!strcmp(what, "status"))
        rq.command_case = HAKMEM__CTL__REQUEST__COMMAND_STATUS, rq.status = &st;
    else if (!strcmp(what, "sites"))
        rq.command_case = HAKMEM__CTL__REQUEST__COMMAND_SITES, rq.sites = &si;
    else if (!strcmp(what, "metrics"))
        rq.command_case = HAKMEM__CTL__REQUEST__COMMAND_METRICS, rq.metrics = &me;
    else if (!strcmp(what, "export"))
        rq.command_case = HAKMEM__CTL__REQUEST__COMMAND_EXPORT_POLICY, rq.export_policy = &ex;
    else
        return NULL;
    return &rq;
}

/* 1 ok, 0 BUSY, -1 anything else. */
static int status_once(int fd)
{
    if (try_send(fd, request_for("status", 0)) < 0)
        return -1;
    uint8_t *buf;
    size_t len;
    if (hkc_frame_read(fd, &buf, &len, HKC_FRAME_MAX, 5000) < 0)
        return -1;
    Hakmem__Ctl__Response *resp = hakmem__ctl__response__unpack(NULL, len, buf);
    free(buf);
    int r = -1;
    if (resp && resp->result_case == HAKMEM__CTL__RESPONSE__RESULT_STATUS)
        r = 1;
    else if (resp && resp->result_case == HAKMEM__CTL__RESPONSE__RESULT_ERROR &&
             resp->error->code == HAKMEM__CTL__ERROR__CODE__BUSY)
        r = 0;
    if (resp)
        hakmem__ctl__response__free_unpacked(resp, NULL);
    return r;
}

static int keepalive(const char *path, int n, int ms)
{
    int *fds = calloc((size_t)n, sizeof *fds);
    int served = 0, busy = 0;
    for (int i = 0; i < n; i++) {
        fds[i] = dial(path);
        int r = status_once(fds[i]);
        if (r == 1) {
            served++;
        } else {
            busy += r == 0;
            close(fds[i]);
            fds[i] = -1;
        }
    }
    printf("served %d busy %d\n", served, busy);
    fflush(stdout);
    int alive = served;
    for (int t = 0; t < ms; t += 1000) {
        struct timespec ts = { 1, 0 };
        nanosleep(&ts, NULL);
        alive = 0;
        for (int i = 0; i < n; i++)
            if (fds[i] >= 0 && status_once(fds[i]) == 1)
                alive++;
    }
    printf("alive %d\n", alive);
    return 0;
}

/* Reads every part of a streamed answer. */
static int read_stream(int fd)
{
    uint64_t parts = 0, sites = 0, bytes = 0, maxframe = 0;
    for (;;) {
        uint8_t *buf;
        size_t len;
        int r = hkc_frame_read(fd, &buf, &len, HKC_FRAME_MAX, 30000);
        if (r < 0) {
            printf("noreply %s after %" PRIu64 " parts\n", strerror(-r), parts);
            return 1;
        }
        if (len > maxframe)
            maxframe = len;
        Hakmem__Ctl__Response *resp = hakmem__ctl__response__unpack(NULL, len, buf);
        free(buf);
        if (!resp) {
            printf("unparsable\n");
            return 1;
        }
        parts++;
        int more = resp->more;
        switch (resp->result_case) {
        case HAKMEM__CTL__RESPONSE__RESULT_SITES: sites += resp->sites->n_sites; break;
        case HAKMEM__CTL__RESPONSE__RESULT_METRICS: bytes += strlen(resp->metrics->text); break;
        case HAKMEM__CTL__RESPONSE__RESULT_POLICY: bytes += resp->policy->policy.len; break;
        case HAKMEM__CTL__RESPONSE__RESULT_ERROR:
            printf("error %d %s\n", resp->error->code, resp->error->text);
            hakmem__ctl__response__free_unpacked(resp, NULL);
            return 1;
        default:
            printf("badstream kind %d\n", resp->result_case);
            hakmem__ctl__response__free_unpacked(resp, NULL);
            return 1;
        }
        hakmem__ctl__response__free_unpacked(resp, NULL);
        if (!more)
            break;
    }
    printf("parts %" PRIu64 " sites %" PRIu64 " bytes %" PRIu64 " maxframe %" PRIu64 "\n", parts, sites, bytes,
           maxframe);
    return 0;
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
    if (!strcmp(mode, "keepalive"))
        return keepalive(argv[1], arg, argc > 4 ? atoi(argv[4]) : 0);
    if (!strcmp(mode, "legacy") || !strcmp(mode, "stream")) {
        Hakmem__Ctl__Request *rq = request_for(argc > 3 ? argv[3] : "", !strcmp(mode, "stream"));
        if (!rq)
            return 2;
        int fd = dial(argv[1]);
        send_request(fd, rq);
        return rq->stream ? read_stream(fd) : print_reply(fd);
    }
    int fd = dial(argv[1]);
    if (!strcmp(mode, "idle")) {
        send_request(fd, request_for("status", 0));
        if (print_reply(fd))
            return 1;
        wait_close(fd, arg);
        return 0;
    }
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
