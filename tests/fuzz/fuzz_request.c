/* Fuzzes every control request handler through the server's real dispatch
 * (ctl_handlers.c via hkd_ctl_serve_as) with the fake core
 * (tests/ctl/fake_core.c, 40 sites) behind it.
 *
 * Input: byte 0 picks the peer (root, a member of group hakmem when the
 * group exists, an outsider); byte 1 bit 0 picks how the rest is sent: as
 * raw bytes, or as frames (each a 2-byte big-endian length and that many
 * bytes, framed by the harness so that requests are reached easily).  The
 * answers are read and dropped by a second thread. */
#include "ctl_server.h"
#include "log.h"

#include <grp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Before the fake core's constructor: a fixed set of sites, no learner. */
__attribute__((constructor(101))) static void fake_settings(void)
{
    setenv("FAKE_CORE_FROZEN", "1", 1);
    setenv("FAKE_CORE_SITES", "40", 1);
    setenv("HAKMEMD_CTL_TIMEOUT_MS", "1000", 1);
}

static gid_t member_gid = 54321;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    hkd_log_init("fuzz_request", HKD_LOG_ERR);
    struct group *g = getgrnam("hakmem");
    if (g)
        member_gid = g->gr_gid;
    return 0;
}

static void *drain(void *arg)
{
    int fd = *(int *)arg;
    char sink[65536];
    while (read(fd, sink, sizeof sink) > 0)
        ;
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uid_t uid = 0;
    gid_t gid = 0;
    switch (data[0] % 3) {
    case 1: uid = 54321, gid = member_gid; break;               /* a member (reads only) */
    case 2: uid = 54322, gid = 54322; break;                   /* an outsider */
    default: break;                                             /* root */
    }
    int raw = data[1] & 1;
    data += 2, size -= 2;

    /* What the client sends, whole, before the server reads. */
    uint8_t *out = malloc(size * 2 + 8);
    size_t n = 0;
    if (!out)
        return 0;
    if (raw) {
        memcpy(out, data, size);
        n = size;
    } else {
        for (size_t i = 0; i + 2 <= size;) {
            size_t len = (size_t)data[i] << 8 | data[i + 1];
            i += 2;
            if (len > size - i)
                len = size - i;
            uint8_t hdr[4] = { 0, 0, (uint8_t)(len >> 8), (uint8_t)len };
            memcpy(out + n, hdr, 4);
            memcpy(out + n + 4, data + i, len);
            n += 4 + len;
            i += len;
        }
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
        free(out);
        return 0;
    }
    int big = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    ssize_t w = n ? write(sv[0], out, n) : 0;
    free(out);
    shutdown(sv[0], SHUT_WR);
    if (w == (ssize_t)n) {
        pthread_t t;
        pthread_create(&t, NULL, drain, &sv[0]);
        hkd_ctl_serve_as(sv[1], uid, gid);        /* closes sv[1] */
        pthread_join(t, NULL);
    } else {
        close(sv[1]);
    }
    close(sv[0]);
    return 0;
}
