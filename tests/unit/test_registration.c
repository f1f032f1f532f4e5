/* Registration box and the shm client's registration life cycle, against a
 * fake daemon that decodes the client's hand-made frames with protobuf-c:
 * the request frame itself, reply decoding (registered, refused, garbage),
 * what the daemon receives (a sealed memfd of the right size, identity,
 * SO_PEERCRED), counters that grow, retries after a refusal or a broken
 * reply, registering again after the daemon goes (registration 2), and a
 * fork child that registers on its own (registration 1) without touching
 * its parent's region.
 *
 * Each life-cycle test runs the real client in a forked child (the client
 * initialises once per process); the child checks and exits non-zero with
 * a line on stderr when a check fails.  Time is passed to the client's tick
 * explicitly, so retries and checks happen at known points, not after
 * sleeps. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "command.h"
#include "control.pb-c.h"
#include "fake_daemon.h"
#include "hakmem.h"
#include "options.h"
#include "os.h"
#include "region.h"
#include "registration.h"
#include "shm_client.h"
#include "unit_util.h"

#define CHECK(c)                                                                        \
    do {                                                                                \
        if (!(c)) {                                                                     \
            fprintf(stderr, "check failed (line %d): %s\n", __LINE__, #c);              \
            _exit(1);                                                                   \
        }                                                                               \
    } while (0)

static char dir[64];
static uint64_t t0;

/* ---- frames, without a socket ---- */

static void test_request_frame(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t n = hk_reg_encode_request(buf, sizeof buf, HKSHM_REGION_SIZE);
    assert_true(n > 4 && n <= HK_REG_REQUEST_MAX + 4);
    uint32_t len = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
    assert_int_equal(len, n - 4);
    Hakmem__Ctl__Request *r = hakmem__ctl__request__unpack(NULL, len, buf + 4);
    assert_non_null(r);
    assert_int_equal(r->version, 1);
    assert_int_equal(r->command_case, HAKMEM__CTL__REQUEST__COMMAND_REGISTER_CLIENT);
    assert_int_equal(r->register_client->abi_version, HKSHM_ABI_VERSION);
    assert_int_equal(r->register_client->region_size, HKSHM_REGION_SIZE);
    hakmem__ctl__request__free_unpacked(r, NULL);
    assert_int_equal(hk_reg_encode_request(buf, 8, HKSHM_REGION_SIZE), 0);   /* does not fit */
}

static size_t pack_registered(uint8_t *buf, uint64_t instance, int with_unknown)
{
    Hakmem__Ctl__Response r = HAKMEM__CTL__RESPONSE__INIT;
    Hakmem__Ctl__Registered reg = HAKMEM__CTL__REGISTERED__INIT;
    r.version = 1;
    reg.instance = instance;
    r.result_case = HAKMEM__CTL__RESPONSE__RESULT_REGISTERED;
    r.registered = &reg;
    size_t n = 0;
    if (with_unknown) {
        /* Fields a newer daemon might add: a varint 99, a fixed64 100, a
         * string 101, a fixed32 102. */
        const uint8_t extra[] = { 0x98, 0x06, 0x05, 0xa1, 0x06, 1, 2, 3, 4, 5, 6, 7, 8,
                                  0xaa, 0x06, 0x02, 'h', 'i', 0xb5, 0x06, 1, 2, 3, 4 };
        memcpy(buf, extra, sizeof extra);
        n = sizeof extra;
    }
    return n + hakmem__ctl__response__pack(&r, buf + n);
}

static void test_decode_replies(void **state)
{
    (void)state;
    uint8_t buf[256];
    hk_reg_reply out;
    size_t n = pack_registered(buf, 0x1234567890abcdefull, 0);
    assert_int_equal(hk_reg_decode_reply(buf, n, &out), 0);
    assert_int_equal(out.instance, 0x1234567890abcdefull);

    n = pack_registered(buf, 77, 1);
    assert_int_equal(hk_reg_decode_reply(buf, n, &out), 0);
    assert_int_equal(out.instance, 77);

    Hakmem__Ctl__Response r = HAKMEM__CTL__RESPONSE__INIT;
    Hakmem__Ctl__Error e = HAKMEM__CTL__ERROR__INIT;
    char text[300];
    memset(text, 'x', sizeof text - 1);
    text[sizeof text - 1] = 0;
    e.code = HAKMEM__CTL__ERROR__CODE__PERMISSION_DENIED;
    e.text = text;
    r.result_case = HAKMEM__CTL__RESPONSE__RESULT_ERROR;
    r.error = &e;
    uint8_t big[512];
    n = hakmem__ctl__response__pack(&r, big);
    assert_int_equal(hk_reg_decode_reply(big, n, &out), -EREMOTEIO);
    assert_int_equal(out.error_code, HAKMEM__CTL__ERROR__CODE__PERMISSION_DENIED);
    assert_int_equal(strlen(out.error_text), HK_REG_TEXT_MAX - 1);   /* bounded */

    /* A reply that is neither: a Status, or nothing at all. */
    Hakmem__Ctl__Response s = HAKMEM__CTL__RESPONSE__INIT;
    Hakmem__Ctl__Status st = HAKMEM__CTL__STATUS__INIT;
    s.result_case = HAKMEM__CTL__RESPONSE__RESULT_STATUS;
    s.status = &st;
    n = hakmem__ctl__response__pack(&s, buf);
    assert_int_equal(hk_reg_decode_reply(buf, n, &out), -EPROTO);
    assert_int_equal(hk_reg_decode_reply(buf, 0, &out), -EPROTO);
}

static void test_decode_malformed(void **state)
{
    (void)state;
    uint8_t buf[256];
    hk_reg_reply out;
    size_t n = pack_registered(buf, 5, 1);
    /* Every proper prefix of a reply is no reply. */
    for (size_t k = 0; k < n; k++)
        assert_int_not_equal(hk_reg_decode_reply(buf, k, &out), 0);
    /* A nested length that runs past the end, an overlong varint, a group,
     * field 0, and `registered` as a varint. */
    const uint8_t past[] = { 0x82, 0x01, 0x7f, 0x08, 0x01 };
    const uint8_t overlong[] = { 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f };
    const uint8_t group[] = { 0x0b, 0x0c };
    const uint8_t field0[] = { 0x00, 0x01 };
    const uint8_t wrong[] = { 0x80, 0x01, 0x05 };
    assert_int_equal(hk_reg_decode_reply(past, sizeof past, &out), -EPROTO);
    assert_int_equal(hk_reg_decode_reply(overlong, sizeof overlong, &out), -EPROTO);
    assert_int_equal(hk_reg_decode_reply(group, sizeof group, &out), -EPROTO);
    assert_int_equal(hk_reg_decode_reply(field0, sizeof field0, &out), -EPROTO);
    assert_int_equal(hk_reg_decode_reply(wrong, sizeof wrong, &out), -EPROTO);
    /* Random bytes: whatever they decode to, decoding stays inside them
     * (ASan-free build: a crash or hang is the failure). */
    srand(12345);
    for (int i = 0; i < 20000; i++) {
        uint8_t junk[64];
        size_t len = (size_t)(rand() % (int)sizeof junk);
        for (size_t k = 0; k < len; k++)
            junk[k] = (uint8_t)rand();
        int rc = hk_reg_decode_reply(junk, len, &out);
        assert_true(rc == 0 || rc == -EPROTO || rc == -EREMOTEIO);
    }
}

/* ---- the client's life cycle, in forked children ---- */

/* The protocol's tests register at once; the delay has its own test. */
static const char *register_after_ms = "0";

static void client_start(const char *socket, const char *shm)
{
    setenv("HAKMEM_MODE", "learning", 1);   /* anything but baseline */
    setenv("HAKMEM_REGISTER_AFTER_MS", register_after_ms, 1);
    if (socket) setenv("HAKMEM_SOCKET", socket, 1);
    else unsetenv("HAKMEM_SOCKET");
    setenv("HAKMEM_SHM", shm, 1);
    setenv("HAKMEM_VERBOSE", "1", 1);
    hk_options_load();
    t0 = hk_now_ns();
    hk_shm_client_init();
}

static void tick_at(unsigned seconds) { hk_shm_client_tick(t0 + (uint64_t)seconds * 1000000000ull); }

/* The client takes a registration's reply at its next step: fd_wait_requests
 * returns once the fake daemon has answered, so one step at the time given
 * finds the reply there. */
static void take_reply_at(unsigned seconds)
{
    uint64_t at = t0 + (uint64_t)seconds * 1000000000ull, now = hk_now_ns();
    hk_shm_client_tick(at > now ? at : now);
}

static int registered(void)
{
    char d[256];
    hk_shm_client_describe(d, sizeof d);
    return strncmp(d, "registered with", 15) == 0;
}

static char shm_none[64], shm_seg[64];

/* One call site: its allocations are attributed to it. */
static __attribute__((noinline)) void allocate_large(unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        char *p = hak_malloc(2u << 20);
        CHECK(p != NULL);
        p[0] = 1;
        hak_free(p);
    }
    __asm__ volatile("");
}

/* The busiest site of a region (by allocations). */
static const hkshm_site *busiest(const hkshm_region *r)
{
    const hkshm_site *best = NULL;
    for (uint32_t i = 0; i < r->n_sites && i < HKSHM_REGION_SITES; i++)
        if (!best || r->sites[i].allocs > best->allocs)
            best = &r->sites[i];
    return best;
}

static ino_t inode_of(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

static void run_identity(void *arg)
{
    (void)arg;
    fake_daemon d;
    CHECK(fd_start(&d, dir, 7) == 0);
    client_start(d.path, shm_none);
    CHECK(fd_wait_requests(&d, 1) == 0);
    take_reply_at(0);                           /* the reply is taken at a later step, not waited for */
    CHECK(registered());
    fd_request *q = &d.req[0];
    CHECK(q->decoded && q->version == 1 && q->abi_version == HKSHM_ABI_VERSION);
    CHECK(q->region_size == HKSHM_REGION_SIZE);
    CHECK(q->pid == getpid() && q->uid == geteuid());
    CHECK(q->region_fd >= 0);
    char link[128] = "", proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", q->region_fd);
    CHECK(readlink(proc, link, sizeof link - 1) > 0);
    CHECK(strncmp(link, "/memfd:hakmem-report", 20) == 0);
    int seals = fcntl(q->region_fd, F_GET_SEALS);
    CHECK(seals >= 0 && (seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) == (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL));
    CHECK(ftruncate(q->region_fd, 4096) < 0);       /* the daemon cannot shrink it either */
    struct stat st;
    CHECK(fstat(q->region_fd, &st) == 0 && st.st_size == HKSHM_REGION_SIZE);

    const hkshm_region *r = fd_map_region(&d, 0);
    CHECK(r != NULL);
    CHECK(r->magic == HKSHM_REGION_MAGIC && r->abi_version == HKSHM_ABI_VERSION);
    CHECK(r->region_size == HKSHM_REGION_SIZE && r->registration == 1);
    uint64_t oracle = oracle_exe_hash();
    CHECK(oracle != 0 && r->binary_hash == oracle && r->build_id_len > 0);
    char exe[256];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CHECK(n > 0);
    exe[n] = 0;
    const char *tail = n >= (ssize_t)HKSHM_EXE_MAX ? exe + n - (HKSHM_EXE_MAX - 1) : exe;
    CHECK(strcmp(r->exe, tail) == 0);

    /* Counters grow with the work, flush after flush. */
    uint64_t flushes = r->flushes;
    allocate_large(20);
    tick_at(1);
    CHECK(r->flushes > flushes && (atomic_load(&r->seq) & 1) == 0);
    const hkshm_site *s = busiest(r);
    CHECK(s && s->allocs >= 20 && s->module_hash != 0);
    uint64_t allocs = s->allocs;
    CHECK(r->proc[HKSHM_PROC_RSS_BYTES] > 0 && r->proc[HKSHM_PROC_PEAK_RSS_BYTES] > 0);
    CHECK(r->proc[HKSHM_PROC_CPU_NS] > 0 && r->proc[HKSHM_PROC_WALL_NS] > 0);
    CHECK(r->proc[HKSHM_PROC_ALLOCS] >= 20 && r->proc[HKSHM_PROC_BYTES] >= 20ull * (2u << 20));
    CHECK(r->proc[HKSHM_PROC_EXITED] == 0);
    uint64_t wall = r->proc[HKSHM_PROC_WALL_NS];
    allocate_large(10);
    tick_at(2);
    CHECK(busiest(r)->allocs >= allocs + 10);
    CHECK(r->proc[HKSHM_PROC_WALL_NS] > wall && r->proc[HKSHM_PROC_RSS_KIB_MS] > 0);
    hk_shm_client_exit();
    CHECK(r->proc[HKSHM_PROC_EXITED] == 1);
    CHECK(d.n_req == 1);
    fd_stop(&d);
}

static void run_refused(void *arg)
{
    (void)arg;
    fake_daemon d;
    CHECK(fd_start(&d, dir, 8) == 0);
    d.script[0] = FD_ERROR;
    d.n_script = 1;
    client_start(d.path, shm_none);
    CHECK(fd_wait_requests(&d, 1) == 0);
    take_reply_at(0);               /* the refusal */
    CHECK(!registered());
    tick_at(1);                     /* too soon to ask again */
    CHECK(d.n_req == 1);
    tick_at(3);
    CHECK(fd_wait_requests(&d, 2) == 0);
    take_reply_at(3);
    CHECK(registered());
    const hkshm_region *r = fd_map_region(&d, 1);
    CHECK(r && r->registration == 1);   /* a refusal used no number */
    fd_stop(&d);
}

static void run_malformed(void *arg)
{
    (void)arg;
    static const fd_reply script[] = { FD_GARBAGE, FD_OVERSIZED, FD_TRUNCATED, FD_SILENT, FD_WRONG_TYPE };
    const int n = (int)(sizeof script / sizeof script[0]);
    fake_daemon d;
    CHECK(fd_start(&d, dir, 9) == 0);
    memcpy(d.script, script, sizeof script);
    d.n_script = n;
    client_start(d.path, shm_none);
    for (int k = 1; k <= n; k++) {
        CHECK(fd_wait_requests(&d, k) == 0);
        CHECK(!registered());
        uint64_t before = hk_now_ns();
        take_reply_at(40u * (unsigned)k + 5);       /* the bad reply, or (silent) past the reply's deadline */
        CHECK(!registered());
        tick_at(40u * (unsigned)k + 39);            /* past any back-off: the next request */
        CHECK(hk_now_ns() - before < 5000000000ull);  /* bounded: no hang */
    }
    CHECK(fd_wait_requests(&d, n + 1) == 0);
    take_reply_at(40u * (unsigned)n + 39);
    CHECK(registered());
    /* Every request that went out unanswered used its number. */
    for (int k = 0; k <= n; k++) {
        const hkshm_region *r = fd_map_region(&d, k);
        CHECK(r && r->registration == (uint32_t)k + 1);
    }
    fd_stop(&d);
}

static void run_daemon_gone(void *arg)
{
    (void)arg;
    fake_daemon d;
    CHECK(fd_start(&d, dir, 10) == 0);
    client_start(d.path, shm_none);
    CHECK(fd_wait_requests(&d, 1) == 0);
    take_reply_at(0);
    allocate_large(5);
    tick_at(1);
    const hkshm_region *r1 = fd_map_region(&d, 0);
    uint64_t allocs = busiest(r1)->allocs;
    CHECK(allocs >= 5);
    fd_close_request(&d, 0);
    tick_at(3);
    CHECK(fd_wait_requests(&d, 2) == 0);
    take_reply_at(3);
    CHECK(registered());
    const hkshm_region *r2 = fd_map_region(&d, 1);
    CHECK(r2 && r2->registration == 2);
    CHECK(inode_of(d.req[1].region_fd) != inode_of(d.req[0].region_fd));
    CHECK(busiest(r2)->allocs >= allocs);       /* cumulative */
    CHECK(r2->binary_hash == r1->binary_hash);
    fd_stop(&d);
}

static void run_fork_child(void *arg)
{
    (void)arg;
    fake_daemon d;
    CHECK(fd_start(&d, dir, 11) == 0);
    client_start(d.path, shm_none);
    CHECK(fd_wait_requests(&d, 1) == 0);
    take_reply_at(0);
    allocate_large(7);
    tick_at(1);
    const hkshm_region *r1 = fd_map_region(&d, 0);
    CHECK(busiest(r1)->allocs >= 7);
    static uint8_t before[HKSHM_REGION_SIZE];
    memcpy(before, r1, sizeof before);
    void *mine = hk_region_get();
    CHECK(mine != NULL && mine != (void *)r1);

    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        /* The parent's region is no longer mapped by the client here (the
         * fake daemon's read-only view of it is the test's own). */
        if (hk_region_get() != NULL)
            _exit(10);
        if (msync(mine, HKSHM_REGION_SIZE, MS_ASYNC) == 0 || errno != ENOMEM)
            _exit(12);
        allocate_large(3);
        tick_at(5);                 /* the child's own request */
        for (int i = 0; i < 2000 && !registered(); i++) {
            usleep(1000);
            tick_at(5);             /* its reply, once the daemon has sent it */
        }
        _exit(registered() ? 0 : 11);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "fork child: status %#x\n", status);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(fd_wait_requests(&d, 2) == 0);
    fd_request *q = &d.req[1];
    CHECK(q->pid == pid);
    CHECK(inode_of(q->region_fd) != inode_of(d.req[0].region_fd));
    const hkshm_region *r2 = fd_map_region(&d, 1);
    CHECK(r2 && r2->registration == 1);
    CHECK(busiest(r2)->allocs == 3);            /* its own counts, from zero */
    CHECK(memcmp(before, r1, sizeof before) == 0);   /* the parent's region untouched */
    fd_stop(&d);
}

static void run_segment_instance(void *arg)
{
    (void)arg;
    fake_daemon d;
    CHECK(fd_start(&d, dir, 12) == 0);
    hkshm_header *h = seg_create(shm_seg, HKSHM_SEGMENT_SIZE, 0600, -1, 1);
    /* No HAKMEM_SOCKET: the segment says where the daemon listens. */
    snprintf(h->socket_path, sizeof h->socket_path, "%s", d.path);
    client_start(NULL, shm_seg);
    CHECK(fd_wait_requests(&d, 1) == 0);
    take_reply_at(0);
    CHECK(registered());
    tick_at(3);
    CHECK(d.n_req == 1);                        /* same daemon: nothing to do */
    atomic_store(&h->instance, 2);              /* another daemon took the segment over */
    tick_at(6);
    CHECK(fd_wait_requests(&d, 2) == 0);
    const hkshm_region *r2 = fd_map_region(&d, 1);
    CHECK(r2 && r2->registration == 2);
    fd_stop(&d);
}

/* Descriptors of this process open on a report region. */
static int region_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char link[300], target[128];
        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        ssize_t k = readlink(link, target, sizeof target - 1);
        if (k > 0) {
            target[k] = '\0';
            n += strstr(target, "memfd:hakmem-report") != NULL;
        }
    }
    closedir(d);
    return n;
}

static void run_daemon_later(void *arg)
{
    (void)arg;
    char path[128];
    snprintf(path, sizeof path, "%s/ctl.sock", dir);
    client_start(path, shm_none);
    tick_at(1);
    CHECK(!registered());
    /* With no daemon, nothing is made for one: no region, no descriptor. */
    CHECK(region_fds() == 0);
    CHECK(hk_region_get() == NULL);
    fake_daemon d;
    CHECK(fd_start(&d, dir, 13) == 0);
    tick_at(3);
    CHECK(fd_wait_requests(&d, 1) == 0);
    take_reply_at(3);
    CHECK(registered());
    fd_stop(&d);
}

/* A process younger than HAKMEM_REGISTER_AFTER_MS does not register: one
 * that exits that young would pay for it and teach nothing. */
static void run_young(void *arg)
{
    (void)arg;
    register_after_ms = "40";
    fake_daemon d;
    CHECK(fd_start(&d, dir, 17) == 0);
    client_start(d.path, shm_none);
    char desc[256];
    hk_shm_client_describe(desc, sizeof desc);
    CHECK(strstr(desc, "registers once 40 ms old (HAKMEM_REGISTER_AFTER_MS)") != NULL);
    hk_shm_client_tick(t0 + 39 * 1000000ull);
    usleep(100 * 1000);                         /* time for a request, were one sent */
    pthread_mutex_lock(&d.mu);
    int sent = d.n_req;
    pthread_mutex_unlock(&d.mu);
    CHECK(sent == 0);
    hk_shm_client_tick(t0 + 41 * 1000000ull);   /* the client started a little after t0 */
    CHECK(fd_wait_requests(&d, 1) == 0);
    take_reply_at(1);
    CHECK(registered());
    fd_stop(&d);
}

static void expect_child_ok(void (*fn)(void *), const char *verbose_must_have)
{
    ut_child c;
    ut_run_child(fn, NULL, &c);
    if (!c.exited || c.exit_code != 0)
        fail_msg("child: exited %d code %d signal %d; stderr:\n%s", c.exited, c.exit_code, c.signo, c.err);
    if (verbose_must_have && !strstr(c.err, verbose_must_have))
        fail_msg("stderr lacks \"%s\":\n%s", verbose_must_have, c.err);
}

/* Sampling (hakmem_shm.h): the segment publishes this binary and command
 * as settled with report_every 4.  A process drawn registers young and
 * says it stands for 4 runs (exit 10); one not drawn does not register
 * young, says why, registers once a second old and stands for itself
 * (exit 11). */
static void run_sampled(void *arg)
{
    (void)arg;
    fake_daemon d;
    CHECK(fd_start(&d, dir, 19) == 0);
    client_start(d.path, shm_seg);
    hk_shm_client_tick(t0 + 1000000ull);
    usleep(50 * 1000);                          /* time for a request, were one sent */
    pthread_mutex_lock(&d.mu);
    int sent = d.n_req;
    pthread_mutex_unlock(&d.mu);
    int code = 10;
    if (!sent) {
        char desc[256];
        hk_shm_client_describe(desc, sizeof desc);
        CHECK(strstr(desc, "settled; 1 in 4 of their processes registers young") != NULL);
        hk_shm_client_tick(t0 + 999000000ull);
        usleep(50 * 1000);
        pthread_mutex_lock(&d.mu);
        sent = d.n_req;
        pthread_mutex_unlock(&d.mu);
        CHECK(sent == 0);
        hk_shm_client_tick(t0 + 1001000000ull);  /* a second old: it registers */
        code = 11;
    }
    CHECK(fd_wait_requests(&d, 1) == 0);
    take_reply_at(2);
    CHECK(registered());
    const hkshm_region *r = fd_map_region(&d, 0);
    CHECK(r != NULL);
    CHECK(r->proc[HKSHM_PROC_REPORT_EVERY] == (code == 10 ? 4u : 1u));
    CHECK(r->proc[HKSHM_PROC_ATTACH_NS] <= r->proc[HKSHM_PROC_PLANE_NS]);
    fd_stop(&d);
    _exit(code);
}

static void test_settled_binary_samples_registration(void **state)
{
    (void)state;
    hk_command_init();
    hkshm_binary_policy b = { .domain = (uint32_t)geteuid(), .arm = 0, .binary_hash = oracle_exe_hash(),
                              .command_hash = hk_command_hash(), .report_every = 4 };
    void *seg = seg_create(shm_seg, HKSHM_SEGMENT_SIZE, 0600, -1, 1);
    seg_publish(seg, 1, 3, NULL, 0, &b, 1);
    int drawn = 0, not_drawn = 0;
    for (int i = 0; i < 40; i++) {
        ut_child c;
        ut_run_child(run_sampled, NULL, &c);
        if (!c.exited || (c.exit_code != 10 && c.exit_code != 11))
            fail_msg("child: exited %d code %d signal %d; stderr:\n%s", c.exited, c.exit_code, c.signo, c.err);
        drawn += c.exit_code == 10;
        not_drawn += c.exit_code == 11;
    }
    munmap(seg, HKSHM_SEGMENT_SIZE);
    shm_unlink(shm_seg);
    /* One in four of 40: 10 expected; 0 or more than 24 has odds below 1e-4. */
    print_message("drawn %d of 40\n", drawn);
    assert_true(drawn >= 1 && drawn <= 24);
    assert_int_equal(drawn + not_drawn, 40);
}

static void test_identity_and_counters(void **state)
{
    (void)state;
    expect_child_ok(run_identity, "registered with the daemon at");
}

static void test_refused_then_retry(void **state)
{
    (void)state;
    ut_child c;
    ut_run_child(run_refused, NULL, &c);
    if (!c.exited || c.exit_code != 0)
        fail_msg("child: exited %d code %d signal %d; stderr:\n%s", c.exited, c.exit_code, c.signo, c.err);
    /* One line per change of state, the daemon's text escaped. */
    assert_non_null(strstr(c.err, "refused: go away??[31m; retrying\n"));
    assert_non_null(strstr(c.err, "registered with the daemon at"));
    assert_null(strchr(c.err, '\x1b'));
}

static void test_malformed_replies(void **state)
{
    (void)state;
    ut_child c;
    ut_run_child(run_malformed, NULL, &c);
    if (!c.exited || c.exit_code != 0)
        fail_msg("child: exited %d code %d signal %d; stderr:\n%s", c.exited, c.exit_code, c.signo, c.err);
    /* Each failure for what it was, in order (a line per change of state):
     * garbage and the oversized length are malformed at once (the client
     * reads no further than a length it accepts), then a short reply, no
     * reply, a wrong type, and success. */
    static const char *const states[] = { "malformed reply", "closed without a reply", "no reply in time",
                                          "malformed reply", "registered with the daemon" };
    size_t next = 0;
    char *copy = strdup(c.err), *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!strstr(line, "registered"))
            continue;               /* the segment's lines */
        if (next >= sizeof states / sizeof states[0] || !strstr(line, states[next]))
            fail_msg("registration state %zu is not \"%s\"; stderr:\n%s", next,
                     next < sizeof states / sizeof states[0] ? states[next] : "(none)", c.err);
        next++;
    }
    free(copy);
    assert_int_equal(next, sizeof states / sizeof states[0]);
}

static void test_daemon_gone_registers_again(void **state)
{
    (void)state;
    expect_child_ok(run_daemon_gone, "connection closed");
}

static void test_fork_child_registers_alone(void **state)
{
    (void)state;
    expect_child_ok(run_fork_child, NULL);
}

static void test_new_instance_registers_again(void **state)
{
    (void)state;
    ut_child c;
    ut_run_child(run_segment_instance, NULL, &c);
    shm_unlink(shm_seg);            /* whatever became of the child */
    if (!c.exited || c.exit_code != 0 || !strstr(c.err, "new instance"))
        fail_msg("child: exited %d code %d signal %d; stderr:\n%s", c.exited, c.exit_code, c.signo, c.err);
}

static void test_young_process_does_not_register(void **state)
{
    (void)state;
    expect_child_ok(run_young, "registered with the daemon at");
}

static void test_daemon_appears_later(void **state)
{
    (void)state;
    expect_child_ok(run_daemon_later, "no daemon");
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/hakmem-unit-reg.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(shm_none, sizeof shm_none, "/hakmem-unit-none-%d", (int)getpid());
    snprintf(shm_seg, sizeof shm_seg, "/hakmem-unit-reg-%d", (int)getpid());
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/ctl.sock", dir);
    unlink(path);
    rmdir(dir);
    return 0;
}

int main(int argc, char **argv)
{
    (void)argc;
    ut_baseline_process(argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_frame),
        cmocka_unit_test(test_decode_replies),
        cmocka_unit_test(test_decode_malformed),
        cmocka_unit_test(test_identity_and_counters),
        cmocka_unit_test(test_settled_binary_samples_registration),
        cmocka_unit_test(test_refused_then_retry),
        cmocka_unit_test(test_malformed_replies),
        cmocka_unit_test(test_daemon_gone_registers_again),
        cmocka_unit_test(test_fork_child_registers_alone),
        cmocka_unit_test(test_new_instance_registers_again),
        cmocka_unit_test(test_daemon_appears_later),
        cmocka_unit_test(test_young_process_does_not_register),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
