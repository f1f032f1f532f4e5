/* A hostile member of the hakmem group: every attack on the daemon's
 * shared memory and socket that a member can try.  Each attack prints one
 * line, "refused ..." or "done ...", and the suite decides what must hold;
 * exit status 0 unless the program itself could not run.
 *
 *   hostile segment-write SHM            open, map or remap the segment writable
 *   hostile lock SHM                     open the daemon's lock file
 *   hostile hold-segment SHM SECONDS     hold a shared flock on the segment itself
 *   hostile register-bad SOCKET          regions that must be refused
 *   hostile registrations SOCKET N SECS  N processes each holding a registration until all
 *                                        have an answer, then SECS more
 *   hostile hold-read SOCKET SHM SECS    a registration whose read never ends
 *   hostile stall-seq SOCKET SECS        a registration whose flush never ends
 *   hostile flood SOCKET PROCS KEYS SECS     KEYS fake site keys from PROCS processes, fresh every round
 *   hostile mimic SOCKET HASH OFFSET SECS    report root's site key with absurd counts
 *   hostile strings SOCKET SECS          exe and module path full of control bytes
 *   hostile conns SOCKET N SECS          N idle keep-alive control connections
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hakmem_shm.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint64_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static size_t varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static int connect_to(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Sends a RegisterRequest carrying fd (or none when fd < 0) and reads the
 * answer: 1 registered, 0 refused (its text in why), -1 no answer. */
static int send_register(int conn, int fd, uint64_t region_size, char *why, size_t whylen)
{
    uint8_t inner[32], frame[64];
    size_t ni = 0;
    inner[ni++] = 0x08;
    ni += varint(inner + ni, HKSHM_ABI_VERSION);
    inner[ni++] = 0x10;
    ni += varint(inner + ni, region_size);
    size_t nf = 4;
    frame[nf++] = 0x08;
    frame[nf++] = 0x01;
    frame[nf++] = 0x92;
    frame[nf++] = 0x01;
    nf += varint(frame + nf, ni);
    memcpy(frame + nf, inner, ni);
    nf += ni;
    uint32_t len = (uint32_t)(nf - 4);
    frame[0] = (uint8_t)(len >> 24);
    frame[1] = (uint8_t)(len >> 16);
    frame[2] = (uint8_t)(len >> 8);
    frame[3] = (uint8_t)len;
    struct iovec iov = { frame, nf };
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (fd >= 0) {
        msg.msg_control = u.buf;
        msg.msg_controllen = sizeof u.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    if (sendmsg(conn, &msg, MSG_NOSIGNAL) != (ssize_t)nf)
        return -1;
    uint8_t hdr[4], body[4096];
    struct pollfd p = { conn, POLLIN, 0 };
    if (poll(&p, 1, 10000) <= 0 || recv(conn, hdr, 4, MSG_WAITALL) != 4)
        return -1;
    uint32_t n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    if (n > sizeof body || recv(conn, body, n, MSG_WAITALL) != (ssize_t)n)
        return -1;
    for (uint32_t i = 0; i + 1 < n; i++)
        if (body[i] == 0x82 && body[i + 1] == 0x01)
            return 1;
    /* The error's text: printable bytes of the answer, for the log. */
    size_t w = 0;
    for (uint32_t i = 0; i < n && w + 1 < whylen; i++)
        if (body[i] >= 0x20 && body[i] < 0x7f)
            why[w++] = (char)body[i];
    why[w] = 0;
    return 0;
}

typedef struct region {
    int conn;
    hkshm_region *r;
} region;

static int make_memfd(uint64_t size, int seal)
{
    int fd = memfd_create("hostile", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
        return -1;
    if (seal && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
        return -1;
    return fd;
}

static void identity(hkshm_region *r, const char *exe)
{
    r->magic = HKSHM_REGION_MAGIC;
    r->abi_version = HKSHM_ABI_VERSION;
    r->region_size = HKSHM_REGION_SIZE;
    r->registration = 1;
    r->binary_hash = 0x686F7374696C65ull;   /* "hostile" */
    snprintf(r->exe, sizeof r->exe, "%s", exe);
}

static char last_refusal[256];

/* A valid registration; its mapping stays writable for the caller.  1
 * registered, 0 refused (why in last_refusal), -1 no answer, -2 the socket
 * would not take the connection at all. */
static int register_region(const char *sock, region *out, const char *exe)
{
    int fd = make_memfd(HKSHM_REGION_SIZE, 0);
    if (fd < 0)
        return -1;
    hkshm_region *r = mmap(NULL, HKSHM_REGION_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (r == MAP_FAILED)
        return -1;
    identity(r, exe);
    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
    int conn = connect_to(sock);
    char why[256] = "";
    int rc = conn >= 0 ? send_register(conn, fd, HKSHM_REGION_SIZE, why, sizeof why) : -2;
    close(fd);
    if (rc != 1) {
        snprintf(last_refusal, sizeof last_refusal, "%s", why);
        if (conn >= 0)
            close(conn);
        munmap(r, HKSHM_REGION_SIZE);
        return rc;
    }
    out->conn = conn;
    out->r = r;
    return 1;
}

static void flush_begin(hkshm_region *r)
{
    __atomic_store_n(&r->seq, r->seq | 1, __ATOMIC_RELEASE);
}

static void flush_end(hkshm_region *r)
{
    r->flushes++;
    __atomic_store_n(&r->seq, (r->seq | 1) + 1, __ATOMIC_RELEASE);
}

/* ---- attacks ---- */

static int segment_write(const char *shm)
{
    int fd = shm_open(shm, O_RDWR, 0);
    printf("%s open read-write: %s\n", fd < 0 ? "refused" : "done", fd < 0 ? strerror(errno) : "opened");
    if (fd >= 0)
        close(fd);
    fd = shm_open(shm, O_RDONLY, 0);
    if (fd < 0) {
        printf("refused open read-only: %s\n", strerror(errno));
        return 0;
    }
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    printf("%s map writable: %s\n", p == MAP_FAILED ? "refused" : "done", p == MAP_FAILED ? strerror(errno) : "mapped");
    p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    int rc = p == MAP_FAILED ? -1 : mprotect(p, 4096, PROT_READ | PROT_WRITE);
    printf("%s remap writable: %s\n", rc < 0 ? "refused" : "done", rc < 0 ? strerror(errno) : "remapped");
    rc = fchmod(fd, 0666);
    printf("%s chmod: %s\n", rc < 0 ? "refused" : "done", rc < 0 ? strerror(errno) : "changed");
    close(fd);
    return 0;
}

static int lock_file(const char *shm)
{
    char path[256];
    snprintf(path, sizeof path, "/dev/shm%s.lock", shm);
    int fd = open(path, O_RDONLY | O_NOFOLLOW);
    printf("%s open lock file: %s\n", fd < 0 ? "refused" : "done", fd < 0 ? strerror(errno) : "opened");
    if (fd >= 0) {
        int rc = flock(fd, LOCK_SH | LOCK_NB);
        printf("%s lock it: %s\n", rc < 0 ? "refused" : "done", rc < 0 ? strerror(errno) : "locked");
        close(fd);
    }
    return 0;
}

static int hold_segment(const char *shm, double secs)
{
    int fd = shm_open(shm, O_RDONLY, 0);
    int rc = fd < 0 ? -1 : flock(fd, LOCK_SH | LOCK_NB);
    printf("%s shared lock on the segment\n", rc < 0 ? "refused" : "done");
    fflush(stdout);
    if (rc == 0)
        usleep((useconds_t)(secs * 1e6));
    return 0;
}

static int register_bad(const char *sock)
{
    struct { const char *what; int fd; uint64_t size; } cases[6];
    int n = 0;
    cases[n++] = (typeof(cases[0])){ "an unsealed memfd", make_memfd(HKSHM_REGION_SIZE, 0), HKSHM_REGION_SIZE };
    cases[n++] = (typeof(cases[0])){ "a sealed memfd too small", make_memfd(4096, 1), 4096 };
    cases[n++] = (typeof(cases[0])){ "a sealed memfd too big", make_memfd(1u << 24, 1), 1u << 24 };
    int pfd[2];
    if (pipe(pfd) == 0)
        cases[n++] = (typeof(cases[0])){ "a pipe", pfd[0], HKSHM_REGION_SIZE };
    char tmpl[] = "/tmp/hostile.XXXXXX";
    int file = mkstemp(tmpl);
    if (file >= 0) {
        unlink(tmpl);
        if (ftruncate(file, HKSHM_REGION_SIZE) == 0)
            cases[n++] = (typeof(cases[0])){ "a regular file", file, HKSHM_REGION_SIZE };
    }
    cases[n++] = (typeof(cases[0])){ "no descriptor at all", -1, HKSHM_REGION_SIZE };
    for (int i = 0; i < n; i++) {
        int conn = connect_to(sock);
        char why[256] = "";
        int rc = conn >= 0 ? send_register(conn, cases[i].fd, cases[i].size, why, sizeof why) : -1;
        printf("%s %s: %s\n", rc == 1 ? "done" : "refused", cases[i].what, rc == 1 ? "registered" : why);
        if (conn >= 0)
            close(conn);
    }
    return 0;
}

/* Runs fn(i) in n child processes at once (one registration is all a
 * process can hold: a second from the same pid replaces the first) and
 * waits for them; each child's result lands in results[i]. */
static void in_children(int n, int (*fn)(int i, void *arg), void *arg, int *results)
{
    pid_t *kids = calloc((size_t)n, sizeof *kids);
    for (int i = 0; i < n; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            rng ^= (uint64_t)(i + 1) * 0xD1B54A32D192ED03ull;   /* each child its own sequence */
            _exit(fn(i, arg) & 0xff);
        }
    }
    for (int i = 0; i < n; i++) {
        int st = 0;
        if (kids[i] > 0 && waitpid(kids[i], &st, 0) == kids[i] && WIFEXITED(st))
            results[i] = WEXITSTATUS(st);
        else
            results[i] = 255;
    }
    free(kids);
}

typedef struct hold_args {
    const char *sock;
    double secs;
    int answered;               /* write end: one byte per child with its answer */
    int release;                /* read end: end of file once every child has one */
} hold_args;

/* 1: registered and held; 0: refused; 2: no answer.  A refusal for the
 * number of control connections at once is a "try again" (the real client
 * retries too); the registration cap is the answer wanted.  A registered
 * child holds on until every child has its answer (then SECS more), so the
 * cap is met however slowly the children start: a fixed hold alone let the
 * first registrations end before the last ones were made.  The children
 * block on a pipe rather than poll, so thousands of them waiting cost the
 * daemon no CPU. */
static int register_and_hold(int i, void *arg)
{
    (void)i;
    const hold_args *a = arg;
    region reg;
    int rc = -1;
    double until = now_s() + 30;
    while ((rc = register_region(a->sock, &reg, "hostile-many")) != 1 && now_s() < until &&
           (rc == -1 || strstr(last_refusal, "control connections")))
        usleep(50000 + (useconds_t)(next_random() % 200000));
    ssize_t w = write(a->answered, "", 1);
    (void)w;
    if (rc == 1) {
        char c;
        while (read(a->release, &c, 1) < 0 && errno == EINTR)
            ;
        usleep((useconds_t)(a->secs * 1e6));
    }
    return rc == 1 ? 1 : rc == 0 ? 0 : 2;
}

/* Waits (up to LIMIT seconds) for N bytes on FD: one per child answered. */
static int await_answers(int fd, int n, double limit)
{
    double give_up = now_s() + limit;
    int got = 0;
    char buf[512];
    while (got < n && now_s() < give_up) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 1000) <= 0)
            continue;
        ssize_t r = read(fd, buf, sizeof buf);
        if (r == 0)
            break;              /* every child has exited */
        if (r > 0)
            got += (int)r;
    }
    return got;
}

static int registrations(const char *sock, int n, double secs)
{
    int answered[2], release[2];
    if (pipe(answered) || pipe(release)) {
        printf("failed: pipe: %s\n", strerror(errno));
        return 1;
    }
    hold_args a = { sock, secs, answered[1], release[0] };
    int *res = calloc((size_t)n, sizeof *res);
    pid_t waiter = fork();
    if (waiter == 0) {
        /* Releases the children once all have answered (or after 150 s),
         * while the parent below waits for them. */
        close(answered[1]);
        close(release[0]);
        await_answers(answered[0], n, 150);
        _exit(0);
    }
    close(answered[0]);
    close(release[1]);
    in_children(n, register_and_hold, &a, res);
    close(answered[1]);
    close(release[0]);
    waitpid(waiter, NULL, 0);
    int ok = 0, refused = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        ok += res[i] == 1;
        refused += res[i] == 0;
        failed += res[i] != 0 && res[i] != 1;
    }
    printf("done registrations: %d accepted, %d refused, %d failed\n", ok, refused, failed);
    free(res);
    return 0;
}

static const hkshm_header *map_header(const char *shm)
{
    int fd = shm_open(shm, O_RDONLY, 0);
    if (fd < 0)
        return NULL;
    void *p = mmap(NULL, HKSHM_HEADER_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    return p == MAP_FAILED ? NULL : p;
}

static int hold_read(const char *sock, const char *shm, double secs)
{
    region reg;
    const hkshm_header *h = map_header(shm);
    if (!h || register_region(sock, &reg, "hostile-reader") != 1) {
        printf("failed hold-read: no registration\n");
        return 1;
    }
    /* Holds the oldest generation it can claim to be reading, forever. */
    uint64_t g = __atomic_load_n(&h->generation, __ATOMIC_ACQUIRE);
    __atomic_store_n(&reg.r->read_gen, g ? g : 1, __ATOMIC_SEQ_CST);
    printf("done holding read_gen %llu\n", (unsigned long long)(g ? g : 1));
    fflush(stdout);
    usleep((useconds_t)(secs * 1e6));
    return 0;
}

static int stall_seq(const char *sock, double secs)
{
    region reg;
    if (register_region(sock, &reg, "hostile-staller") != 1) {
        printf("failed stall-seq: no registration\n");
        return 1;
    }
    flush_begin(reg.r);
    printf("done flush left open\n");
    fflush(stdout);
    usleep((useconds_t)(secs * 1e6));
    return 0;
}

typedef struct flood_args {
    const char *sock;
    long keys;                       /* per process */
    double secs;
} flood_args;

/* Fresh random keys in every site of its region, every round, with
 * counters that move; returns 1 when it showed all its keys. */
static int flood_one(int i, void *arg)
{
    const flood_args *a = arg;
    (void)i;
    region reg;
    /* Registrations of an earlier attack may still fill this user's quota
     * for an interval or two. */
    int rc = 0;
    for (int tries = 0; tries < 50 && (rc = register_region(a->sock, &reg, "hostile-flood")) != 1; tries++)
        usleep(200000);
    if (rc != 1)
        return 0;
    hkshm_region *r = reg.r;
    long shown = 0;
    double end = now_s() + a->secs;
    uint64_t round = 0;
    while (shown < a->keys && now_s() < end) {
        round++;
        flush_begin(r);
        for (uint32_t s = 0; s < HKSHM_REGION_SITES; s++) {
            hkshm_site *site = &r->sites[s];
            site->module_hash = next_random() >> (next_random() & 63);   /* low hashes too */
            site->offset = next_random();
            site->allocs = round * 1000;
            site->bytes = round * 1000 * 4096;
            site->size_hist[12] = (uint32_t)(round * 1000);
            site->module = HKSHM_NO_MODULE;
        }
        r->n_sites = HKSHM_REGION_SITES;
        flush_end(r);
        shown += HKSHM_REGION_SITES;
        /* The daemon reads every 200 ms or so: a new set each interval. */
        usleep(100000);
    }
    return shown >= a->keys;
}

static int flood(const char *sock, int procs, long keys, double secs)
{
    flood_args a = { sock, (keys + procs - 1) / procs, secs };
    int *res = calloc((size_t)procs, sizeof *res);
    in_children(procs, flood_one, &a, res);
    int done = 0;
    for (int i = 0; i < procs; i++)
        done += res[i] == 1;
    printf("done flood: %ld keys from %d processes, %d of them showed all theirs\n", (long)done * a.keys, procs, done);
    return 0;
}

static int mimic(const char *sock, uint64_t hash, uint64_t offset, double secs)
{
    region reg;
    if (register_region(sock, &reg, "hostile-mimic") != 1) {
        printf("failed mimic: no registration\n");
        return 1;
    }
    double end = now_s() + secs;
    uint64_t round = 0;
    while (now_s() < end) {
        round++;
        hkshm_region *r = reg.r;
        flush_begin(r);
        hkshm_site *s = &r->sites[0];
        s->module_hash = hash;
        s->offset = offset;
        s->allocs = round * 100000;
        s->bytes = round * 100000 * (1u << 20);
        s->slow_ns = round * 1000000000ull;
        s->size_hist[20] = (uint32_t)(round * 100000);
        s->module = HKSHM_NO_MODULE;
        r->n_sites = 1;
        flush_end(r);
        usleep(50000);
    }
    printf("done mimic %016llx:%llx for %.0f s\n", (unsigned long long)hash, (unsigned long long)offset, secs);
    return 0;
}

static int strings(const char *sock, double secs)
{
    region reg;
    static const char evil[] = "evil\n\x1b[31mred\x1b[0m \"q\" \\ \xff\xfe end";
    if (register_region(sock, &reg, evil) != 1) {
        printf("failed strings: no registration\n");
        return 1;
    }
    hkshm_region *r = reg.r;
    flush_begin(r);
    r->n_modules = 1;
    r->modules[0].hash = 0x6576696C;
    memset(r->modules[0].path, 'A', sizeof r->modules[0].path);   /* no terminator */
    memcpy(r->modules[0].path, evil, sizeof evil - 1);
    r->sites[0] = (hkshm_site){ .module_hash = 0x6576696C, .offset = 0x10, .allocs = 5, .bytes = 5 << 20,
                                .module = 0 };
    r->sites[0].size_hist[20] = 5;
    r->n_sites = 1;
    flush_end(r);
    printf("done strings\n");
    fflush(stdout);
    usleep((useconds_t)(secs * 1e6));
    return 0;
}

static int conns(const char *sock, int n, double secs)
{
    int ok = 0;
    for (int i = 0; i < n; i++)
        ok += connect_to(sock) >= 0;
    printf("done %d connections held\n", ok);
    fflush(stdout);
    usleep((useconds_t)(secs * 1e6));
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    rng ^= (uint64_t)getpid() * 0x9E3779B97F4A7C15ull;
    if (argc >= 3 && !strcmp(argv[1], "segment-write"))
        return segment_write(argv[2]);
    if (argc >= 3 && !strcmp(argv[1], "lock"))
        return lock_file(argv[2]);
    if (argc >= 4 && !strcmp(argv[1], "hold-segment"))
        return hold_segment(argv[2], atof(argv[3]));
    if (argc >= 3 && !strcmp(argv[1], "register-bad"))
        return register_bad(argv[2]);
    if (argc >= 5 && !strcmp(argv[1], "registrations"))
        return registrations(argv[2], atoi(argv[3]), atof(argv[4]));
    if (argc >= 5 && !strcmp(argv[1], "hold-read"))
        return hold_read(argv[2], argv[3], atof(argv[4]));
    if (argc >= 4 && !strcmp(argv[1], "stall-seq"))
        return stall_seq(argv[2], atof(argv[3]));
    if (argc >= 6 && !strcmp(argv[1], "flood"))
        return flood(argv[2], atoi(argv[3]), atol(argv[4]), atof(argv[5]));
    if (argc >= 6 && !strcmp(argv[1], "mimic"))
        return mimic(argv[2], strtoull(argv[3], NULL, 16), strtoull(argv[4], NULL, 16), atof(argv[5]));
    if (argc >= 4 && !strcmp(argv[1], "strings"))
        return strings(argv[2], atof(argv[3]));
    if (argc >= 5 && !strcmp(argv[1], "conns"))
        return conns(argv[2], atoi(argv[3]), atof(argv[4]));
    fprintf(stderr, "usage: see the comment at the top of tests/trust/hostile.c\n");
    return 2;
}
