/* Registration over the control socket, daemon side: a RegisterRequest
 * frame carries the region's descriptor (SCM_RIGHTS) with its first byte;
 * the reply is Registered{instance}; the connection then belongs to the
 * registration, which ends when it closes.  Descriptors that come with any
 * other request, more than one, or after the first byte are never kept. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "control.pb-c.h"
#include "ctl_server.h"
#include "frame.h"
#include "core_fixture.h"

static char sock_path[300];

/* Sends `len` bytes as one frame; the descriptors go with byte `at` (the
 * header's first byte is 0). */
static void send_frame(int s, const uint8_t *payload, size_t len, const int *fds, int nfds, size_t at)
{
    uint8_t buf[512];
    assert_true(len + 4 <= sizeof buf);
    buf[0] = (uint8_t)(len >> 24), buf[1] = (uint8_t)(len >> 16), buf[2] = (uint8_t)(len >> 8), buf[3] = (uint8_t)len;
    memcpy(buf + 4, payload, len);
    size_t total = len + 4, off = 0;
    if (at > 0) {
        assert_int_equal(send(s, buf, at, 0), (ssize_t)at);
        off = at;
    }
    union {
        struct cmsghdr align;
        char b[CMSG_SPACE(4 * sizeof(int))];
    } ctl;
    struct iovec iov = { .iov_base = buf + off, .iov_len = total - off };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (nfds) {
        msg.msg_control = ctl.b;
        msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
    }
    assert_int_equal(sendmsg(s, &msg, 0), (ssize_t)(total - off));
}

static size_t pack_register(uint8_t *out, uint32_t abi, uint64_t size)
{
    Hakmem__Ctl__Request rq = HAKMEM__CTL__REQUEST__INIT;
    Hakmem__Ctl__RegisterRequest rr = HAKMEM__CTL__REGISTER_REQUEST__INIT;
    rr.abi_version = abi;
    rr.region_size = size;
    rq.version = HKC_PROTOCOL_VERSION;
    rq.command_case = HAKMEM__CTL__REQUEST__COMMAND_REGISTER_CLIENT;
    rq.register_client = &rr;
    return hakmem__ctl__request__pack(&rq, out);
}

static size_t pack_status(uint8_t *out)
{
    Hakmem__Ctl__Request rq = HAKMEM__CTL__REQUEST__INIT;
    Hakmem__Ctl__StatusRequest st = HAKMEM__CTL__STATUS_REQUEST__INIT;
    rq.version = HKC_PROTOCOL_VERSION;
    rq.command_case = HAKMEM__CTL__REQUEST__COMMAND_STATUS;
    rq.status = &st;
    return hakmem__ctl__request__pack(&rq, out);
}

static Hakmem__Ctl__Response *reply(int s)
{
    uint8_t *buf;
    size_t len;
    assert_int_equal(hkc_frame_read(s, &buf, &len, HKC_FRAME_MAX, 5000), 0);
    Hakmem__Ctl__Response *r = hakmem__ctl__response__unpack(NULL, len, buf);
    free(buf);
    assert_non_null(r);
    return r;
}

static int dial(void)
{
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    assert_true(strlen(sock_path) < sizeof sa.sun_path);
    memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
    assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof sa), 0);
    return s;
}

/* ---- the frame reader alone ---- */

static void frame_takes_one_descriptor_with_the_first_byte_only(void **state)
{
    (void)state;
    int before = open_fds();
    uint8_t payload[64];
    size_t n = pack_status(payload);
    int extra[3];
    for (int i = 0; i < 3; i++)
        extra[i] = memfd_create("x", MFD_CLOEXEC);
    static const struct {
        int nfds;
        size_t at;
        int kept;
    } cases[] = { { 1, 0, 1 }, { 0, 0, 0 }, { 2, 0, 0 }, { 3, 0, 0 }, { 1, 2, 0 }, { 1, 4, 0 } };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int sp[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
        send_frame(sp[1], payload, n, extra, cases[i].nfds, cases[i].at);
        uint8_t *buf;
        size_t len;
        int passed = -7;
        assert_int_equal(hkc_frame_read_fd(sp[0], &buf, &len, HKC_FRAME_MAX, 1000, &passed), 0);
        assert_int_equal(len, n);
        assert_memory_equal(buf, payload, n);
        free(buf);
        if (cases[i].kept) {
            assert_true(passed >= 0);
            assert_int_equal(fcntl(passed, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
            close(passed);
        } else {
            assert_int_equal(passed, -1);
        }
        close(sp[0]);
        close(sp[1]);
        assert_int_equal(open_fds(), before + 3);   /* nothing left installed */
    }
    for (int i = 0; i < 3; i++)
        close(extra[i]);
}

/* ---- through the control server and the core ---- */

static const hkshm_header *hdr;

static int start(void **state)
{
    (void)state;
    snprintf(sock_path, sizeof sock_path, "%s/ctl.sock", dir);
    hkd_core_cfg cfg = { .shm_name = shm, .socket_path = sock_path, .interval_ms = 100, .learning = 1,
                         .learn = hkd_learn_default_cfg };
    if (hkd_core_init(&cfg) != 0 || !(hdr = core_fixture_map()))
        return -1;
    return hkd_ctl_start(sock_path, -1) == 0 ? 0 : -1;
}

static int stop(void **state)
{
    (void)state;
    hkd_ctl_stop();
    hkd_core_shutdown();
    munmap((void *)hdr, HKSHM_SEGMENT_SIZE);
    return 0;
}

static hkd_status status(void)
{
    hkd_status st;
    assert_int_equal(hkd_get_status(&st), 0);
    return st;
}

/* Out of line: inlined after a failure path, gcc took r for NULL. */
static __attribute__((noinline)) void write_one_site(hkshm_region *r)
{
    region_write_begin(r);
    r->n_sites = 1;
    r->sites[0].module_hash = 0x77;
    r->sites[0].offset = 0x10;
    r->sites[0].allocs = 12;
    region_write_end(r);
}

static void a_client_registers_and_its_connection_ends_it(void **state)
{
    (void)state;
    assert_string_equal(hdr->socket_path, sock_path);
    int s = dial();
    hkshm_region *r;
    int fd = region_make(&r, 1, "/usr/bin/registered", F_SEAL_SHRINK | F_SEAL_GROW);
    assert_true(fd >= 0);
    uint8_t payload[64];
    size_t n = pack_register(payload, HKSHM_ABI_VERSION, HKSHM_REGION_SIZE);
    send_frame(s, payload, n, &fd, 1, 0);
    close(fd);
    Hakmem__Ctl__Response *resp = reply(s);
    assert_int_equal(resp->result_case, HAKMEM__CTL__RESPONSE__RESULT_REGISTERED);
    assert_int_equal(resp->registered->instance, atomic_load(&hdr->instance));
    hakmem__ctl__response__free_unpacked(resp, NULL);
    write_one_site(r);
    assert_int_equal(hkd_core_interval(), 0);
    hkd_status st = status();
    assert_int_equal(st.registrations, 1);
    assert_int_equal(st.processes, 1);
    assert_int_equal(st.sites, 1);
    /* The daemon writes nothing more on it, and keeps it open. */
    assert_int_equal(hkd_core_interval(), 0);
    assert_int_equal(status().registrations, 1);
    close(s);
    assert_int_equal(hkd_core_interval(), 0);
    st = status();
    assert_int_equal(st.registrations, 0);
    assert_int_equal(st.processes, 0);

    /* Once registered, nothing on the connection is a request: a byte ends
     * the registration (no server thread reads it any more). */
    munmap(r, HKSHM_REGION_SIZE);
    s = dial();
    fd = region_make(&r, 1, "/usr/bin/registered", F_SEAL_SHRINK | F_SEAL_GROW);
    send_frame(s, payload, n, &fd, 1, 0);
    close(fd);
    resp = reply(s);
    assert_int_equal(resp->result_case, HAKMEM__CTL__RESPONSE__RESULT_REGISTERED);
    hakmem__ctl__response__free_unpacked(resp, NULL);
    assert_int_equal(hkd_core_interval(), 0);
    assert_int_equal(status().registrations, 1);
    assert_int_equal(write(s, "x", 1), 1);
    usleep(100000);
    assert_int_equal(hkd_core_interval(), 0);
    assert_int_equal(status().registrations, 0);
    close(s);
    munmap(r, HKSHM_REGION_SIZE);
}

static void refusals_are_answered_and_leave_nothing(void **state)
{
    (void)state;
    int before = open_fds();
    uint8_t payload[64];
    hkshm_region *r;
    int fd = region_make(&r, 1, NULL, F_SEAL_SHRINK | F_SEAL_GROW);
    int unsealed = memfd_create("unsealed", MFD_CLOEXEC);
    assert_int_equal(ftruncate(unsealed, HKSHM_REGION_SIZE), 0);
    static const struct {
        uint32_t abi;
        int which;                   /* 0: the region, 1: none, 2: two, 3: unsealed */
        const char *says;
    } cases[] = {
        { 1, 0, "ABI 1" },
        { HKSHM_ABI_VERSION, 1, "exactly one descriptor" },
        { HKSHM_ABI_VERSION, 2, "exactly one descriptor" },
        { HKSHM_ABI_VERSION, 3, "not sealed" },
    };
    int s = dial();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = pack_register(payload, cases[i].abi, HKSHM_REGION_SIZE);
        int fds[2] = { cases[i].which == 3 ? unsealed : fd, fd };
        send_frame(s, payload, n, fds, cases[i].which == 1 ? 0 : cases[i].which == 2 ? 2 : 1, 0);
        Hakmem__Ctl__Response *resp = reply(s);
        assert_int_equal(resp->result_case, HAKMEM__CTL__RESPONSE__RESULT_ERROR);
        if (!strstr(resp->error->text, cases[i].says))
            fail_msg("error \"%s\" does not say \"%s\"", resp->error->text, cases[i].says);
        hakmem__ctl__response__free_unpacked(resp, NULL);
    }
    /* A descriptor with any other request is dropped; the request answered. */
    size_t n = pack_status(payload);
    send_frame(s, payload, n, &fd, 1, 0);
    Hakmem__Ctl__Response *resp = reply(s);
    assert_int_equal(resp->result_case, HAKMEM__CTL__RESPONSE__RESULT_STATUS);
    hakmem__ctl__response__free_unpacked(resp, NULL);
    close(s);
    close(fd);
    close(unsealed);
    munmap(r, HKSHM_REGION_SIZE);
    assert_int_equal(hkd_core_interval(), 0);
    assert_int_equal(status().registrations, 0);
    /* The server threads have let go of their connections by now or soon. */
    for (int tries = 0; tries < 100 && open_fds() != before; tries++)
        usleep(10000);
    assert_int_equal(open_fds(), before);       /* nothing that came with a request was kept */
}

int main(void)
{
    if (core_fixture_begin("register") != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frame_takes_one_descriptor_with_the_first_byte_only),
        cmocka_unit_test_setup_teardown(a_client_registers_and_its_connection_ends_it, start, stop),
        cmocka_unit_test_setup_teardown(refusals_are_answered_and_leave_nothing, start, stop),
    };
    return core_fixture_end(cmocka_run_group_tests(tests, NULL, NULL));
}
