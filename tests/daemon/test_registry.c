/* The registry, the collector and the publisher over real report regions:
 * what a registration must be (a sealed memfd of the right size, magic and
 * ABI) and the reason given when it is not, the caps, one registration per
 * pid, its end (pidfd, connection), and how regions are counted (a key that
 * changes at an index counts nothing, a later registration counts from its
 * first snapshot), a reader that never leaves its read, a region whose
 * owner never finishes a flush, a snapshot under a concurrent writer. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "collector.h"
#include "hakmem_shm.h"
#include "log.h"
#include "publisher.h"
#include "region_fixture.h"
#include "registry.h"
#include "segment.h"

#define KEY_HASH 0xABCull

static int setup(void **state)
{
    (void)state;
    return hkd_registry_init(64, 4, 0);
}

static int teardown(void **state)
{
    (void)state;
    hkd_registry_shutdown();
    return 0;
}

/* ---- what one pass reported ---- */

typedef struct seen {
    uint64_t allocs[16];             /* by key offset / 16 */
    uint64_t hist[16];
    uint32_t domain, reports, procs, changed, ended_reports;
    pid_t proc_pid;
    uint64_t command_hash;
    char command[HKSHM_COMMAND_MAX];
} seen;

static void on_site(const hkd_site_delta *d, void **cookie, void *arg)
{
    (void)cookie;
    seen *s = arg;
    s->reports++;
    s->domain = d->key.domain;
    if (d->key.module_hash != KEY_HASH || d->key.offset / 16 >= 16)
        return;
    if (!d->changed)
        return;
    s->changed++;
    s->allocs[d->key.offset / 16] += d->allocs;
    for (uint32_t b = 0; d->has_hist && b < HKSHM_HIST; b++)
        s->hist[d->key.offset / 16] += d->hist[b];
}

/* Live processes; an ended registration's last report says it ended. */
static void on_proc(const hkd_proc_info *p, void *arg)
{
    seen *s = arg;
    if (p->ended) {
        s->ended_reports++;
        return;
    }
    s->procs++;
    s->proc_pid = p->pid;
    s->command_hash = p->command_hash;
    memcpy(s->command, p->command, sizeof s->command);
}

static const hkd_collect_ops ops = { .site = on_site, .proc = on_proc };

/* One interval's worth: merge and check liveness, collect, drop the ended. */
static seen interval(hkd_collector *c, hkd_collect_stats *st)
{
    seen s;
    memset(&s, 0, sizeof s);
    hkd_registry_begin_interval();
    hkd_collect_stats local;
    assert_int_equal(hkd_collect(c, &ops, &s, st ? st : &local), 0);
    hkd_registry_end_interval();
    return s;
}

static void set_site(hkshm_region *r, uint32_t i, uint64_t offset, uint64_t allocs)
{
    region_write_begin(r);
    r->sites[i].module_hash = KEY_HASH;
    r->sites[i].offset = offset;
    r->sites[i].allocs = allocs;
    r->sites[i].size_hist[10] = (uint32_t)allocs;
    if (r->n_sites < i + 1)
        r->n_sites = i + 1;
    region_write_end(r);
}

/* ---- what a registration must be ---- */

static void expect_refused(int fd, const char *reason)
{
    char why[256] = "";
    int rc = hkd_registry_add_local(fd, 0, 1000, why, sizeof why);
    assert_true(rc < 0);
    if (!strstr(why, reason))
        fail_msg("refusal \"%s\" does not say \"%s\"", why, reason);
    assert_null(strchr(why, '\n'));
}

static void untrusted_regions_are_refused_with_their_reason(void **state)
{
    (void)state;
    int before = open_fds();
    hkshm_region *r;
    int fd = region_make(&r, 1, NULL, 0);                       /* no seals */
    assert_true(fd >= 0);
    expect_refused(fd, "not sealed against shrinking and growing");
    assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK), 0);  /* half of them */
    expect_refused(fd, "not sealed against shrinking and growing");
    close(fd);
    munmap(r, HKSHM_REGION_SIZE);

    fd = memfd_create("short", MFD_CLOEXEC | MFD_ALLOW_SEALING);  /* sealed, one page short */
    assert_int_equal(ftruncate(fd, HKSHM_REGION_SIZE - 4096), 0);
    assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
    expect_refused(fd, "bytes, not");
    close(fd);

    int p[2];
    assert_int_equal(pipe(p), 0);
    expect_refused(p[0], "not a memfd");
    close(p[0]);
    close(p[1]);

    char path[] = "/var/tmp/hkd-region-XXXXXX";                  /* a plain file of the right size */
    fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(ftruncate(fd, HKSHM_REGION_SIZE), 0);
    expect_refused(fd, "seal");
    close(fd);

    static const struct {
        int field;
        const char *reason;
    } identity[] = { { 0, "magic" }, { 1, "ABI" }, { 2, "says it is" }, { 3, "registration number is 0" } };
    for (size_t i = 0; i < sizeof identity / sizeof identity[0]; i++) {
        fd = region_make(&r, 1, NULL, F_SEAL_SHRINK | F_SEAL_GROW);
        assert_true(fd >= 0);
        if (identity[i].field == 0)
            r->magic = HKSHM_MAGIC;                                 /* the segment's, not a region's */
        else if (identity[i].field == 1)
            r->abi_version = 1;
        else if (identity[i].field == 2)
            r->region_size = HKSHM_REGION_SIZE * 2;
        else
            r->registration = 0;
        expect_refused(fd, identity[i].reason);
        close(fd);
        munmap(r, HKSHM_REGION_SIZE);
    }
    expect_refused(-1, "no region descriptor");

    assert_int_equal(hkd_registry_begin_interval(), 0);
    assert_int_equal(hkd_registry_count(), 0);
    hkd_registry_end_interval();
    assert_int_equal(open_fds(), before);           /* nothing kept of what was refused */
}

static void caps_per_user_and_in_all(void **state)
{
    (void)state;
    hkd_registry_shutdown();
    assert_int_equal(hkd_registry_init(6, 2, 0), 0);
    hkshm_region *r[8];
    char why[256];
    uint32_t n = 0;
    assert_non_null(r[n++] = region_register(0, 1000, 1, NULL, why, sizeof why));
    assert_non_null(r[n++] = region_register(0, 1000, 1, NULL, why, sizeof why));
    assert_null(region_register(0, 1000, 1, NULL, why, sizeof why));
    assert_string_equal(why, "uid 1000 has 2 registrations, the limit for one user");
    /* Root (and the daemon's own user) have no cap of their own. */
    for (int i = 0; i < 3; i++)
        assert_non_null(r[n++] = region_register(0, 0, 1, NULL, why, sizeof why));
    assert_non_null(r[n++] = region_register(0, 1001, 1, NULL, why, sizeof why));
    assert_null(region_register(0, 1002, 1, NULL, why, sizeof why));
    assert_string_equal(why, "the daemon has 6 registrations, its limit");
    assert_null(region_register(0, 0, 1, NULL, why, sizeof why));
    hkd_registry_begin_interval();
    assert_int_equal(hkd_registry_count(), 6);
    /* One ends: its place is free again after the interval that drops it. */
    hkd_registry_end(0);
    hkd_registry_end_interval();
    assert_non_null(r[n++] = region_register(0, 1002, 1, NULL, why, sizeof why));
    for (uint32_t i = 0; i < n; i++)
        munmap(r[i], HKSHM_REGION_SIZE);
}

/* ---- one registration per process ---- */

static void a_new_registration_of_a_pid_replaces_the_old(void **state)
{
    (void)state;
    hkd_collector *c = hkd_collector_new(0, 1);
    char why[256];
    hkshm_region *old = region_register(getpid(), 1000, 1, "/usr/bin/before-exec", why, sizeof why);
    assert_non_null(old);
    set_site(old, 0, 0x10, 100);
    seen s = interval(c, NULL);
    assert_int_equal(s.allocs[1], 100);
    assert_int_equal(s.procs, 1);
    assert_int_equal(s.proc_pid, getpid());
    assert_int_equal(s.domain, 1000);
    /* The old image's last flush, then the new image registers (an exec). */
    set_site(old, 0, 0x10, 150);
    hkshm_region *now = region_register(getpid(), 1000, 1, "/usr/bin/after-exec", why, sizeof why);
    assert_non_null(now);
    set_site(now, 0, 0x10, 7);
    hkd_collect_stats st;
    s = interval(c, &st);
    assert_int_equal(s.allocs[1], 50 + 7);     /* the old one's final counters, the new one's from zero */
    assert_int_equal(st.ended, 1);
    assert_int_equal(s.procs, 1);
    assert_int_equal(hkd_registry_count(), 1);
    assert_string_equal(hkd_registry_at(hkd_registry_span() - 1)->exe, "/usr/bin/after-exec");
    munmap(old, HKSHM_REGION_SIZE);
    munmap(now, HKSHM_REGION_SIZE);
    hkd_collector_free(c);
}

/* A process whose user is at its cap still registers again when it execs:
 * the new registration replaces its own, so it does not count. */
static void a_pid_at_its_users_cap_registers_again(void **state)
{
    (void)state;
    hkd_registry_shutdown();
    assert_int_equal(hkd_registry_init(6, 2, 0), 0);
    char why[256];
    hkshm_region *r[3];
    assert_non_null(r[0] = region_register(getpid(), 1000, 1, "/usr/bin/before-exec", why, sizeof why));
    assert_non_null(r[1] = region_register(getppid(), 1000, 1, NULL, why, sizeof why));
    assert_null(region_register(0, 1000, 1, NULL, why, sizeof why));        /* at the cap */
    r[2] = region_register(getpid(), 1000, 1, "/usr/bin/after-exec", why, sizeof why);
    if (r[2] == NULL) fail_msg("the re-registration was refused: %s", why);
    hkd_registry_begin_interval();                   /* the new one replaces the old */
    hkd_registry_end_interval();
    assert_int_equal(hkd_registry_count(), 2);
    for (int i = 0; i < 3; i++)
        munmap(r[i], HKSHM_REGION_SIZE);
}

/* ---- the end of a registration ---- */

static void process_exit_ends_it_after_a_last_collection(void **state)
{
    (void)state;
    hkd_collector *c = hkd_collector_new(0, 1);
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t child = fork();
    if (child == 0) {
        char b;
        close(go[1]);
        _exit(read(go[0], &b, 1) < 0);
    }
    close(go[0]);
    hkshm_region *r;
    int fd = region_make(&r, 1, "/usr/bin/child", F_SEAL_SHRINK | F_SEAL_GROW);
    char why[256];
    assert_int_equal(hkd_registry_add_local(fd, child, 1000, why, sizeof why), 0);
    close(fd);
    set_site(r, 0, 0x20, 40);
    seen s = interval(c, NULL);
    assert_int_equal(s.allocs[2], 40);
    assert_int_equal(hkd_registry_count(), 1);
    /* Its final flush, then it exits. */
    set_site(r, 0, 0x20, 90);
    close(go[1]);
    assert_int_equal(waitpid(child, NULL, 0), child);
    hkd_collect_stats st;
    s = interval(c, &st);
    assert_int_equal(s.allocs[2], 50);
    assert_int_equal(st.ended, 1);
    assert_int_equal(s.procs, 0);              /* not a live process any more */
    assert_int_equal(s.ended_reports, 1);      /* but its last report says so, for the binaries */
    assert_int_equal(hkd_registry_count(), 0);
    assert_int_equal(hkd_registry_span(), 0);
    /* A pid that is gone cannot register. */
    fd = region_make(&r, 1, NULL, F_SEAL_SHRINK | F_SEAL_GROW);
    assert_int_equal(hkd_registry_add_local(fd, child, 1000, why, sizeof why), -ESRCH);
    close(fd);
    munmap(r, HKSHM_REGION_SIZE);
    /* But one that sent its request and exited before the daemon took it
     * (clients do not wait for the reply) is counted once, its final flush
     * included, and ended at once. */
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    socklen_t alen = offsetof(struct sockaddr_un, sun_path) + 1 +
                     (socklen_t)snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "hk-test-registry-%d", (int)getpid());
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, alen), 0);
    assert_int_equal(listen(lfd, 1), 0);
    child = fork();
    if (child == 0)
        _exit(connect(socket(AF_UNIX, SOCK_STREAM, 0), (struct sockaddr *)&a, alen) != 0);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_int_equal(status, 0);
    int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(conn >= 0);
    close(lfd);
    struct ucred cred;
    socklen_t clen = sizeof cred;
    assert_int_equal(getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &clen), 0);
    assert_int_equal(cred.pid, child);
    fd = region_make(&r, 1, "/usr/bin/child", F_SEAL_SHRINK | F_SEAL_GROW);
    set_site(r, 0, 0x20, 7);
    assert_int_equal(hkd_registry_add(conn, fd, &cred, why, sizeof why), 0);
    close(conn);
    close(fd);
    s = interval(c, &st);
    assert_int_equal(s.allocs[2], 7);
    assert_int_equal(st.ended, 1);
    assert_int_equal(s.ended_reports, 1);
    assert_int_equal(hkd_registry_count(), 0);
    munmap(r, HKSHM_REGION_SIZE);
    hkd_collector_free(c);
}

static void connection_end_or_bytes_end_it(void **state)
{
    (void)state;
    hkd_collector *c = hkd_collector_new(0, 1);
    for (int how = 0; how < 2; how++) {
        int sp[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
        hkshm_region *r;
        int fd = region_make(&r, 1, NULL, F_SEAL_SHRINK | F_SEAL_GROW);
        /* pid 0: a peer in an ancestor PID namespace; only the connection tells. */
        struct ucred cred = { .pid = 0, .uid = 1000, .gid = 1000 };
        char why[256];
        assert_int_equal(hkd_registry_add(sp[0], fd, &cred, why, sizeof why), 0);
        close(fd);
        close(sp[0]);                            /* the registry keeps its own */
        set_site(r, 0, 0x30, 11);
        seen s = interval(c, NULL);
        assert_int_equal(s.allocs[3], 11);
        assert_int_equal(hkd_registry_count(), 1);
        s = interval(c, NULL);
        assert_int_equal(hkd_registry_count(), 1);   /* a quiet connection is a live one */
        set_site(r, 0, 0x30, 20);
        if (how == 0) {
            close(sp[1]);
        } else {
            assert_int_equal(write(sp[1], "x", 1), 1);   /* nothing may follow the request */
        }
        hkd_collect_stats st;
        s = interval(c, &st);
        assert_int_equal(s.allocs[3], 9);
        assert_int_equal(st.ended, 1);
        assert_int_equal(hkd_registry_count(), 0);
        if (how == 1) {
            /* Dropping it closed the daemon's end: the client reads the end
             * (a reset, since its byte was never read). */
            char b;
            ssize_t k = read(sp[1], &b, 1);
            assert_true(k == 0 || (k < 0 && errno == ECONNRESET));
            close(sp[1]);
        }
        munmap(r, HKSHM_REGION_SIZE);
    }
    hkd_collector_free(c);
}

/* ---- counting ---- */

static void a_key_that_changes_at_an_index_counts_nothing(void **state)
{
    (void)state;
    hkd_collector *c = hkd_collector_new(0, 1);
    char why[256];
    hkshm_region *r = region_register(0, 1000, 1, NULL, why, sizeof why);
    assert_non_null(r);
    for (uint32_t i = 0; i < 8; i++)
        set_site(r, i, 0x10, 100);               /* eight indices, one key (offset 0x10) */
    seen s = interval(c, NULL);
    assert_int_equal(s.allocs[1], 800);
    /* Over eight intervals (one of them merges histograms: both paths),
     * index k changes to a new key with a large total: none of it counts. */
    for (uint32_t k = 0; k < 8; k++) {
        set_site(r, k, 0x20 + 16 * k, 1000000 + k);
        s = interval(c, NULL);
        for (uint32_t i = 0; i < 16; i++) {
            assert_int_equal(s.allocs[i], 0);
            assert_int_equal(s.hist[i], 0);
        }
    }
    /* From the new baseline on, they count: 5 a site each interval, and
     * the histogram merge (one interval in eight) takes what moved since
     * the baseline, never the total before it. */
    uint64_t hist = 0;
    for (uint32_t pass = 1; pass <= 8; pass++) {
        for (uint32_t k = 0; k < 8; k++)
            set_site(r, k, 0x20 + 16 * k, 1000000 + k + 5 * pass);
        s = interval(c, NULL);
        for (uint32_t k = 0; k < 8; k++) {
            assert_int_equal(s.allocs[2 + k], 5);
            hist += s.hist[2 + k];
        }
    }
    assert_true(hist > 0 && hist <= 8 * 8 * 5 && hist % (8 * 5) == 0);
    munmap(r, HKSHM_REGION_SIZE);
    hkd_collector_free(c);
}

static void a_later_registration_counts_from_its_first_snapshot(void **state)
{
    (void)state;
    hkd_collector *c = hkd_collector_new(0, 1);
    char why[256];
    /* Its daemon went away: what it counted so far was the other daemon's. */
    hkshm_region *r = region_register(0, 1000, 2, NULL, why, sizeof why);
    assert_non_null(r);
    set_site(r, 0, 0x10, 5000);
    seen s = interval(c, NULL);
    assert_int_equal(s.allocs[1], 0);
    assert_int_equal(s.hist[1], 0);
    assert_int_equal(s.reports, 1);              /* the site is still known to be in use */
    set_site(r, 0, 0x10, 5030);
    set_site(r, 1, 0x40, 20);                    /* a site first used after registering */
    s = interval(c, NULL);
    assert_int_equal(s.allocs[1], 30);
    assert_int_equal(s.allocs[4], 20);
    munmap(r, HKSHM_REGION_SIZE);
    hkd_collector_free(c);
}

/* ---- the command a region names ---- */

/* Out of line: inlined after region_make, gcc takes its MAP_FAILED path
 * for an object of no size. */
__attribute__((noinline)) static void name_command(hkshm_region *r, const char *text, size_t len, uint64_t hash)
{
    memset(r->command, 0, sizeof r->command);
    memcpy(r->command, text, len);
    r->command_hash = hash;
}

/* A valid command is taken, hash and text; anything else (a text that is
 * not a command, not NUL-padded, too long, or whose hash is not its
 * text's) is refused and the process counts as naming none. */
static void a_region_names_a_command_or_none(void **state)
{
    (void)state;
    hkshm_region *r;
    int fd = region_make(&r, 1, NULL, 0);
    assert_true(fd >= 0);
    char out[HKSHM_COMMAND_MAX];
    uint64_t h = 0, add = hkshm_command_hash("add", 3);
    assert_int_equal(hkd_region_command(r, out, &h), 0);                 /* none */
    assert_true(h == 0);
    name_command(r, "add", 3, add);
    assert_int_equal(hkd_region_command(r, out, &h), 0);
    assert_true(h == add);
    assert_string_equal(out, "add");
    static const struct { const char *text; size_t len; } bad[] = {
        { "a/b", 3 }, { "x.py", 4 }, { "tab\t", 4 }, { "\033[31m", 5 }, { "caf\xc3\xa9", 5 },
        { "add\0junk", 8 },                                              /* not NUL-padded */
        { "abcdefghijklmnopqrstuvwxy", 25 },                              /* too long */
        { "abcdefghijklmnopqrstuvwxyzabcdef", 32 },                       /* no NUL at all */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        /* The hash of the text up to its first NUL: what a reader that
         * skipped the padding check would take as valid. */
        name_command(r, bad[i].text, bad[i].len, hkshm_command_hash(bad[i].text, strnlen(bad[i].text, bad[i].len)));
        memset(out, 'x', sizeof out);
        h = 77;
        assert_int_equal(hkd_region_command(r, out, &h), -EINVAL);
        assert_true(h == 0);
        for (size_t k = 0; k < sizeof out; k++)
            assert_int_equal(out[k], 0);
    }
    name_command(r, "add", 3, add + 1);                                   /* not its text's hash */
    assert_int_equal(hkd_region_command(r, out, &h), -EINVAL);
    name_command(r, "add", 3, 0);                                         /* text without a hash */
    assert_int_equal(hkd_region_command(r, out, &h), -EINVAL);
    name_command(r, "", 0, add);                                          /* a hash without text */
    assert_int_equal(hkd_region_command(r, out, &h), -EINVAL);
    munmap(r, HKSHM_REGION_SIZE);
    close(fd);

    /* Through a registration: a valid one reaches the process report, a
     * corrupt one is not a refusal of the registration, only of the command. */
    hkd_collector *c = hkd_collector_new(0, 1);
    char why[256];
    int fd2 = region_make(&r, 1, NULL, 0);
    name_command(r, "log", 3, hkshm_command_hash("log", 3));
    assert_int_equal(fcntl(fd2, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
    assert_int_equal(hkd_registry_add_local(fd2, 0, 1000, why, sizeof why), 0);
    close(fd2);
    seen s = interval(c, NULL);
    assert_int_equal(s.procs, 1);
    assert_true(s.command_hash == hkshm_command_hash("log", 3));
    assert_string_equal(s.command, "log");
    munmap(r, HKSHM_REGION_SIZE);
    hkd_registry_shutdown();
    assert_int_equal(hkd_registry_init(64, 4, 0), 0);
    fd2 = region_make(&r, 1, NULL, 0);
    name_command(r, "../../etc/passwd", 16, hkshm_command_hash("../../etc/passwd", 16));
    assert_int_equal(fcntl(fd2, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
    assert_int_equal(hkd_registry_add_local(fd2, 0, 1000, why, sizeof why), 0);
    close(fd2);
    s = interval(c, NULL);
    assert_int_equal(s.procs, 1);
    assert_true(s.command_hash == 0);
    assert_int_equal(s.command[0], 0);
    munmap(r, HKSHM_REGION_SIZE);
    hkd_collector_free(c);
}

/* ---- hostile owners ---- */

static void a_region_left_mid_flush_is_skipped(void **state)
{
    (void)state;
    hkd_collector *c = hkd_collector_new(0, 1);
    char why[256];
    hkshm_region *stuck = region_register(0, 1000, 1, NULL, why, sizeof why);
    hkshm_region *fine = region_register(0, 1001, 1, NULL, why, sizeof why);
    assert_non_null(stuck);
    assert_non_null(fine);
    set_site(stuck, 0, 0x10, 70);
    set_site(fine, 0, 0x30, 33);
    region_write_begin(stuck);                   /* and never ends it */
    for (int pass = 0; pass < 3; pass++) {
        hkd_collect_stats st;
        seen s = interval(c, &st);
        assert_int_equal(st.skipped_busy, 1);
        assert_int_equal(st.live, 1);
        assert_int_equal(s.allocs[1], 0);
        assert_int_equal(s.allocs[3], pass == 0 ? 33 : 0);
    }
    /* When it finishes, its first snapshot counts from zero as any first one. */
    region_write_end(stuck);
    hkd_collect_stats st;
    seen s = interval(c, &st);
    assert_int_equal(st.skipped_busy, 0);
    assert_int_equal(s.allocs[1], 70);
    munmap(stuck, HKSHM_REGION_SIZE);
    munmap(fine, HKSHM_REGION_SIZE);
    hkd_collector_free(c);
}

static hkshm_header *private_header(uint32_t reader_timeout_ms)
{
    void *p = mmap(NULL, HKSHM_SEGMENT_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    hkshm_header *h = p;
    h->reader_timeout_ms = reader_timeout_ms;
    return h;
}

static void a_reader_that_never_leaves_holds_publication_only_so_long(void **state)
{
    (void)state;
    hkshm_header *h = private_header(100);
    char why[256];
    hkshm_region *stuck = region_register(getpid(), 1000, 1, NULL, why, sizeof why);
    hkshm_region *polite = region_register(0, 1001, 1, NULL, why, sizeof why);
    assert_non_null(stuck);
    assert_non_null(polite);
    hkd_registry_begin_interval();
    hkshm_site_policy e = { .domain = 1000, .large_threshold = 1 << 20, .module_hash = 1, .offset = 2 };
    hkd_publication pub = { .sites = &e, .n_sites = 1 };
    const uint64_t t0 = 1000000000ull, ms = 1000000ull;
    uint64_t g1, g2, g;
    assert_int_equal(hkd_publish(h, &pub, t0, &g1), 0);
    atomic_store(&stuck->read_gen, g1);          /* enters a read of g1 and stops there */
    atomic_store(&polite->read_gen, 0);
    assert_int_equal(hkd_publish(h, &pub, t0, &g2), 0);   /* the other copy */
    uint32_t t_g1 = (atomic_load(&h->active) + 1) % HKSHM_TABLES;
    int32_t holder = 0;
    assert_int_equal(hkd_grace_passed(h, t_g1, t0 + 10 * ms, &holder), 0);
    assert_int_equal(holder, getpid());
    assert_int_equal(hkd_publish(h, &pub, t0 + 50 * ms, &g), -EAGAIN);
    assert_int_equal(hkd_publish(h, &pub, t0 + 100 * ms, &g), -EAGAIN);
    assert_int_equal(atomic_load(&hkshm_table_at(h, t_g1)->generation), g1);   /* untouched */
    /* Past the timeout (counted from when the daemon first saw the read). */
    assert_int_equal(hkd_publish(h, &pub, t0 + 111 * ms, &g), 0);
    assert_int_equal(g, g2 + 1);
    assert_int_equal(hkd_registry_at(0)->read_timeout_told, 1);
    /* A new read starts a new clock. */
    atomic_store(&stuck->read_gen, g);
    assert_int_equal(hkd_publish(h, &pub, t0 + 112 * ms, &g), 0);
    assert_int_equal(hkd_publish(h, &pub, t0 + 113 * ms, &g), -EAGAIN);
    assert_int_equal(hkd_registry_at(0)->read_timeout_told, 0);
    /* Leaving the read lets go at once. */
    atomic_store(&stuck->read_gen, 0);
    assert_int_equal(hkd_publish(h, &pub, t0 + 114 * ms, &g), 0);
    hkd_registry_end_interval();
    munmap(stuck, HKSHM_REGION_SIZE);
    munmap(polite, HKSHM_REGION_SIZE);
    munmap(h, HKSHM_SEGMENT_SIZE);
}

static void publication_carries_both_tables(void **state)
{
    (void)state;
    hkshm_header *h = private_header(100);
    hkshm_site_policy sites[2] = { { .domain = 0, .module_hash = 1 }, { .domain = 5, .module_hash = 1 } };
    hkshm_binary_policy bins[3] = { { .domain = 0, .binary_hash = 9 }, { .domain = 5, .binary_hash = 2 },
                                    { .domain = 5, .binary_hash = 3, .set = 1, .knob = { 250 } } };
    hkd_publication pub = { .sites = sites, .n_sites = 2, .binaries = bins, .n_binaries = 3 };
    uint64_t g;
    assert_int_equal(hkd_publish(h, &pub, 1, &g), 0);
    const hkshm_table *t = hkshm_table_at(h, atomic_load(&h->active));
    assert_int_equal(atomic_load(&t->generation), g);
    assert_int_equal(t->n_sites, 2);
    assert_int_equal(t->n_binaries, 3);
    assert_int_equal(t->sites[1].domain, 5);
    assert_int_equal(t->binaries[2].knob[0], 250);
    pub.n_binaries = HKSHM_BINARY_CAP + 1;
    assert_int_equal(hkd_publish(h, &pub, 1, &g), -E2BIG);
    munmap(h, HKSHM_SEGMENT_SIZE);
}

/* ---- snapshot consistency ---- */

static _Atomic int stop_writer;
static hkshm_region *wregion;

static void *writer(void *arg)
{
    (void)arg;
    uint64_t v = 0;
    while (!atomic_load(&stop_writer)) {
        v++;
        region_write_begin(wregion);
        for (int i = 0; i < 64; i++) {
            hkshm_site *s = &wregion->sites[i];
            __atomic_store_n(&s->allocs, v, __ATOMIC_RELAXED);
            __atomic_store_n(&s->bytes, v * 3, __ATOMIC_RELAXED);
            __atomic_store_n(&s->slow_ns, v * 7, __ATOMIC_RELAXED);
            __atomic_store_n(&s->size_hist[5], (uint32_t)v, __ATOMIC_RELAXED);
        }
        __atomic_store_n(&wregion->proc[HKSHM_PROC_PAGE_FAULTS], v, __ATOMIC_RELAXED);
        wregion->n_sites = 64;
        region_write_end(wregion);
    }
    return NULL;
}

static void snapshot_is_consistent_under_a_writer(void **state)
{
    (void)state;
    int fd = region_make(&wregion, 1, NULL, F_SEAL_SHRINK | F_SEAL_GROW);
    assert_true(fd >= 0);
    /* The daemon's view: its own read-only mapping of the same memfd. */
    const hkshm_region *ro = mmap(NULL, HKSHM_REGION_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    assert_true(ro != MAP_FAILED);
    close(fd);
    static hkshm_region snap;
    atomic_store(&stop_writer, 0);
    pthread_t th;
    pthread_create(&th, NULL, writer, NULL);
    int ok = 0;
    for (int n = 0; n < 20000; n++) {
        if (hkd_region_snapshot(ro, &snap, 64, n % 2) < 0)
            continue;
        ok++;
        uint64_t v = snap.proc[HKSHM_PROC_PAGE_FAULTS];
        if (snap.n_sites == 0)
            continue;
        assert_int_equal(snap.n_sites, 64);
        for (int i = 0; i < 64; i++) {
            assert_int_equal(snap.sites[i].allocs, v);
            assert_int_equal(snap.sites[i].bytes, v * 3);
            assert_int_equal(snap.sites[i].slow_ns, v * 7);
            if (n % 2)
                assert_int_equal(snap.sites[i].size_hist[5], (uint32_t)v);
        }
    }
    atomic_store(&stop_writer, 1);
    pthread_join(th, NULL);
    assert_true(ok > 0);
    /* An owner that died mid-flush leaves an odd sequence: never a torn copy. */
    atomic_store(&wregion->seq, 11);
    assert_int_equal(hkd_region_snapshot(ro, &snap, 4, 1), -EBUSY);
    munmap((void *)ro, HKSHM_REGION_SIZE);
    munmap(wregion, HKSHM_REGION_SIZE);
}

int main(void)
{
    hkd_log_init("test_registry", HKD_LOG_ERR);
    int fds = open_fds();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(untrusted_regions_are_refused_with_their_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(caps_per_user_and_in_all, setup, teardown),
        cmocka_unit_test_setup_teardown(a_new_registration_of_a_pid_replaces_the_old, setup, teardown),
        cmocka_unit_test_setup_teardown(a_pid_at_its_users_cap_registers_again, setup, teardown),
        cmocka_unit_test_setup_teardown(process_exit_ends_it_after_a_last_collection, setup, teardown),
        cmocka_unit_test_setup_teardown(connection_end_or_bytes_end_it, setup, teardown),
        cmocka_unit_test_setup_teardown(a_key_that_changes_at_an_index_counts_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(a_later_registration_counts_from_its_first_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(a_region_names_a_command_or_none, setup, teardown),
        cmocka_unit_test_setup_teardown(a_region_left_mid_flush_is_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(a_reader_that_never_leaves_holds_publication_only_so_long, setup, teardown),
        cmocka_unit_test_setup_teardown(publication_carries_both_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(snapshot_is_consistent_under_a_writer, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    /* Every registration dropped closed what it held. */
    if (rc == 0 && open_fds() != fds) {
        fprintf(stderr, "descriptors leaked: %d open before, %d after\n", fds, open_fds());
        rc = 1;
    }
    return rc;
}
