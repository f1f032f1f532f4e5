/* The segment owner: the lock file decides who owns a name (nothing in the
 * segment does), a segment is the daemon's alone (0640, its owner), one of
 * ours is adopted with its tables or replaced when it cannot be trusted,
 * and one of another user is refused, never unlinked. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "hakmem_shm.h"
#include "log.h"
#include "publisher.h"
#include "segment.h"

#define OTHER_UID 4242u

static char name[64], path[96], lock[96];

static int setup(void **state)
{
    (void)state;
    snprintf(name, sizeof name, "/hkd-segtest-%d", (int)getpid());
    snprintf(path, sizeof path, "/dev/shm%s", name);
    snprintf(lock, sizeof lock, "/dev/shm%s.lock", name);
    shm_unlink(name);
    unlink(lock);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    shm_unlink(name);
    unlink(lock);
    return 0;
}

static void open_ok(hkd_segment *s)
{
    char why[256];
    int rc = hkd_segment_open(s, name, "/run/test/ctl.sock", 1234, why, sizeof why);
    if (rc != 0)
        fail_msg("open: %d %s", rc, why);
}

static void created_segment_is_the_daemons_alone(void **state)
{
    (void)state;
    hkd_segment s;
    open_ok(&s);
    assert_int_equal(s.adopted, 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
    assert_int_equal(st.st_uid, geteuid());
    assert_int_equal(stat(lock, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_null(hkshm_header_mismatch(s.hdr, HKSHM_SEGMENT_SIZE));
    assert_string_equal(s.hdr->socket_path, "/run/test/ctl.sock");
    assert_int_equal(s.hdr->reader_timeout_ms, 1234);
    assert_int_equal(s.hdr->region_size, HKSHM_REGION_SIZE);
    assert_true(atomic_load(&s.hdr->instance) != 0);
    assert_int_equal(atomic_load(&s.hdr->daemon_pid), (uint32_t)getpid());
    hkd_segment_close(&s);
}

static void second_daemon_is_refused_at_once(void **state)
{
    (void)state;
    hkd_segment s, other;
    open_ok(&s);
    char why[256];
    assert_int_equal(hkd_segment_open(&other, name, "", 0, why, sizeof why), -EBUSY);
    char want[200];
    snprintf(want, sizeof want, "another hakmemd holds %s", lock);
    assert_string_equal(why, want);
    hkd_segment_close(&s);
    /* Once the holder lets go, the name is free again. */
    open_ok(&other);
    assert_int_equal(other.adopted, 1);
    hkd_segment_close(&other);
}

static void restart_adopts_tables_whatever_the_header_says(void **state)
{
    (void)state;
    hkd_segment s;
    open_ok(&s);
    hkshm_site_policy e = { .domain = 7, .large_threshold = 1 << 20, .module_hash = 0xab, .offset = 0x10,
                            .bigcache_slots = 4, .thp = 1, .arm = 3 };
    hkd_publication pub = { .sites = &e, .n_sites = 1 };
    uint64_t gen;
    assert_int_equal(hkd_publish(s.hdr, &pub, hkd_now_ns(), &gen), 0);
    uint64_t instance = atomic_load(&s.hdr->instance);
    /* A header that names a live daemon (pid 1) means nothing: the lock does. */
    atomic_store(&s.hdr->daemon_pid, 1);
    hkd_segment_close(&s);
    hkd_segment again;
    open_ok(&again);
    assert_int_equal(again.adopted, 1);
    assert_true(atomic_load(&again.hdr->instance) != instance);
    assert_int_equal(atomic_load(&again.hdr->generation), gen);
    const hkshm_table *t = hkshm_table_at(again.hdr, atomic_load(&again.hdr->active));
    assert_int_equal(t->n_sites, 1);
    assert_int_equal(t->sites[0].domain, 7);
    assert_int_equal(t->sites[0].module_hash, 0xab);
    hkd_segment_close(&again);
}

static void make_segment(mode_t mode, off_t size)
{
    int fd = shm_open(name, O_RDWR | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(ftruncate(fd, size), 0);
    close(fd);
}

static void our_untrusted_segments_are_replaced(void **state)
{
    (void)state;
    static const struct {
        mode_t mode;
        off_t size;
        const char *why;
    } cases[] = {
        { 0640, 12345, "segment size" },
        { 0640, (off_t)HKSHM_SEGMENT_SIZE, "magic" },            /* zeroes: an older or half-made one */
        { 0660, (off_t)HKSHM_SEGMENT_SIZE, "writable by group or others" },
        { 0606, (off_t)HKSHM_SEGMENT_SIZE, "writable by group or others" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        make_segment(cases[i].mode, cases[i].size);
        struct stat before, after;
        assert_int_equal(stat(path, &before), 0);
        hkd_segment s;
        open_ok(&s);
        assert_int_equal(s.adopted, 0);
        assert_string_equal(s.why_recreated, cases[i].why);
        assert_null(hkshm_header_mismatch(s.hdr, HKSHM_SEGMENT_SIZE));
        /* A new object: clients still mapping the old one see the inode change. */
        assert_int_equal(stat(path, &after), 0);
        assert_true(after.st_ino != before.st_ino);
        assert_int_equal(after.st_mode & 0777, 0640);
        hkd_segment_close(&s);
        shm_unlink(name);
    }
    /* A valid one of ours that someone made writable: a writable mapping
     * may still be open, so it is not adopted. */
    hkd_segment s;
    open_ok(&s);
    hkd_segment_close(&s);
    assert_int_equal(chmod(path, 0660), 0);
    open_ok(&s);
    assert_int_equal(s.adopted, 0);
    assert_string_equal(s.why_recreated, "writable by group or others");
    hkd_segment_close(&s);
}

static void another_users_files_are_refused_and_kept(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        print_message("skipped: giving a file away needs root\n");
        skip();
    }
    char why[256];
    hkd_segment s;
    /* Someone else's segment under our name. */
    make_segment(0644, (off_t)HKSHM_SEGMENT_SIZE);
    assert_int_equal(chown(path, OTHER_UID, OTHER_UID), 0);
    assert_int_equal(hkd_segment_open(&s, name, "", 0, why, sizeof why), -EPERM);
    assert_non_null(strstr(why, "belongs to uid 4242"));
    assert_null(strchr(why, '\n'));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_uid, OTHER_UID);
    shm_unlink(name);
    /* Someone else's lock file: they could hold its lock. */
    int fd = open(lock, O_RDWR | O_CREAT, 0644);
    assert_true(fd >= 0);
    assert_int_equal(fchown(fd, OTHER_UID, OTHER_UID), 0);
    close(fd);
    assert_int_equal(hkd_segment_open(&s, name, "", 0, why, sizeof why), -EPERM);
    assert_non_null(strstr(why, "lock file"));
    assert_non_null(strstr(why, "belongs to uid 4242"));
    assert_int_equal(stat(lock, &st), 0);
    unlink(lock);
}

static void lock_file_may_not_be_a_link(void **state)
{
    (void)state;
    char target[128], why[256];
    snprintf(target, sizeof target, "/tmp/hkd-segtest-target-%d", (int)getpid());
    assert_int_equal(symlink(target, lock), 0);
    hkd_segment s;
    assert_int_equal(hkd_segment_open(&s, name, "", 0, why, sizeof why), -ELOOP);
    assert_non_null(strstr(why, "symbolic link"));
    assert_int_equal(access(target, F_OK), -1);   /* nothing was made through it */
    unlink(lock);
}

static void loose_lock_file_of_ours_is_tightened(void **state)
{
    (void)state;
    int fd = open(lock, O_RDWR | O_CREAT, 0666);
    assert_true(fd >= 0);
    assert_int_equal(fchmod(fd, 0666), 0);
    close(fd);
    hkd_segment s;
    open_ok(&s);
    struct stat st;
    assert_int_equal(stat(lock, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    hkd_segment_close(&s);
}

int main(void)
{
    hkd_log_init("test_segment", HKD_LOG_ERR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(created_segment_is_the_daemons_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(second_daemon_is_refused_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(restart_adopts_tables_whatever_the_header_says, setup, teardown),
        cmocka_unit_test_setup_teardown(our_untrusted_segments_are_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(another_users_files_are_refused_and_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(lock_file_may_not_be_a_link, setup, teardown),
        cmocka_unit_test_setup_teardown(loose_lock_file_of_ours_is_tightened, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
