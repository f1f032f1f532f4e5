/* Learned state: protobuf round trip, atomic save/load, and files that are
 * corrupt, truncated or foreign (reported and set aside, never fatal). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "persist.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/hkd-persist-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static hkd_site_state *sample(size_t n)
{
    hkd_site_state *s = calloc(n, sizeof *s);
    for (size_t i = 0; i < n; i++) {
        s[i].key.module_hash = 0x1000 + i;
        s[i].key.offset = 0x40 * i;
        snprintf(s[i].module, sizeof s[i].module, "/usr/bin/prog%zu", i % 3);
        hkd_learn_init(&s[i].learn);
        for (int a = 0; a < HKD_N_ARMS; a++) {
            s[i].learn.pulls[a] = i + (uint64_t)a;
            s[i].learn.mean[a] = s[i].learn.pulls[a] ? 0.1f : 0.0f;
            s[i].learn.total_pulls += s[i].learn.pulls[a];
        }
        s[i].learn.current = (int)(i % HKD_N_ARMS);
        s[i].learn.pinned = i == 2 ? 5 : -1;
        s[i].learn.ref_cost = 123.5 + (double)i;
    }
    return s;
}

static void check_equal(const hkd_site_state *a, const hkd_site_state *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(a[i].key.module_hash, b[i].key.module_hash);
        assert_int_equal(a[i].key.offset, b[i].key.offset);
        assert_string_equal(a[i].module, b[i].module);
        assert_int_equal(a[i].learn.current, b[i].learn.current);
        assert_int_equal(a[i].learn.pinned, b[i].learn.pinned);
        assert_int_equal(a[i].learn.total_pulls, b[i].learn.total_pulls);
        assert_true(a[i].learn.ref_cost == b[i].learn.ref_cost);
        for (int k = 0; k < HKD_N_ARMS; k++) {
            assert_int_equal(a[i].learn.pulls[k], b[i].learn.pulls[k]);
            assert_true(a[i].learn.mean[k] == b[i].learn.mean[k]);
        }
    }
}

static void encode_decode_round_trip(void **state)
{
    (void)state;
    size_t n = 50;
    hkd_site_state *s = sample(n);
    uint8_t *buf;
    size_t len;
    assert_int_equal(hkd_policy_encode(s, n, 77, &buf, &len), 0);
    hkd_site_state *d;
    size_t dn;
    uint64_t gen;
    assert_int_equal(hkd_policy_decode(buf, len, &d, &dn, &gen), 0);
    assert_int_equal(dn, n);
    assert_int_equal(gen, 77);
    check_equal(s, d, n);
    free(buf);
    free(d);
    free(s);
}

static void save_load_round_trip(void **state)
{
    (void)state;
    size_t n = 20;
    hkd_site_state *s = sample(n);
    uint8_t *buf, *back;
    size_t len, blen;
    assert_int_equal(hkd_policy_encode(s, n, 5, &buf, &len), 0);
    assert_int_equal(hkd_state_save(dir, buf, len), 0);
    char aside[512];
    assert_int_equal(hkd_state_load(dir, &back, &blen, aside, sizeof aside), 0);
    assert_int_equal(blen, len);
    assert_memory_equal(buf, back, len);
    hkd_site_state *d;
    size_t dn;
    assert_int_equal(hkd_policy_decode(back, blen, &d, &dn, NULL), 0);
    check_equal(s, d, n);
    /* No temp file left behind. */
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp.%d", dir, HKD_STATE_FILE, (int)getpid());
    assert_int_equal(access(tmp, F_OK), -1);
    free(buf);
    free(back);
    free(d);
    free(s);
}

static void write_state_then(int (*mangle)(const char *path, size_t size))
{
    size_t n = 30;
    hkd_site_state *s = sample(n);
    uint8_t *buf;
    size_t len;
    assert_int_equal(hkd_policy_encode(s, n, 1, &buf, &len), 0);
    assert_int_equal(hkd_state_save(dir, buf, len), 0);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, HKD_STATE_FILE);
    assert_int_equal(mangle(path, len + 16), 0);
    uint8_t *back = NULL;
    size_t blen;
    char aside[512] = "";
    assert_int_equal(hkd_state_load(dir, &back, &blen, aside, sizeof aside), -EBADMSG);
    assert_null(back);
    /* Set aside, not deleted; the next start finds no state. */
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(access(aside, F_OK), 0);
    unlink(aside);
    assert_int_equal(hkd_state_load(dir, &back, &blen, aside, sizeof aside), -ENOENT);
    free(buf);
    free(s);
}

static int flip_byte(const char *path, size_t size)
{
    int fd = open(path, O_RDWR);
    unsigned char c;
    off_t at = (off_t)(size / 2);
    if (fd < 0 || pread(fd, &c, 1, at) != 1)
        return -1;
    c ^= 0x40;
    int rc = pwrite(fd, &c, 1, at) == 1 ? 0 : -1;
    close(fd);
    return rc;
}

static int truncate_file(const char *path, size_t size)
{
    return truncate(path, (off_t)(size * 2 / 3));
}

static int foreign_file(const char *path, size_t size)
{
    (void)size;
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs("{\"this is\": \"not our state\"}\n", f);
    return fclose(f);
}

static void corrupt_file_is_set_aside(void **state)
{
    (void)state;
    write_state_then(flip_byte);
}

static void truncated_file_is_set_aside(void **state)
{
    (void)state;
    write_state_then(truncate_file);
}

static void foreign_file_is_set_aside(void **state)
{
    (void)state;
    write_state_then(foreign_file);
}

static void foreign_payload_is_refused(void **state)
{
    (void)state;
    /* Valid protobuf wire data that is not a hakmem policy. */
    const uint8_t junk[] = { 0x0a, 0x05, 'o', 't', 'h', 'e', 'r', 0x18, 0x01 };
    hkd_site_state *d;
    size_t dn;
    assert_int_equal(hkd_policy_decode(junk, sizeof junk, &d, &dn, NULL), -EBADMSG);
    const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x12 };
    assert_int_equal(hkd_policy_decode(garbage, sizeof garbage, &d, &dn, NULL), -EBADMSG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encode_decode_round_trip),
        cmocka_unit_test(save_load_round_trip),
        cmocka_unit_test(corrupt_file_is_set_aside),
        cmocka_unit_test(truncated_file_is_set_aside),
        cmocka_unit_test(foreign_file_is_set_aside),
        cmocka_unit_test(foreign_payload_is_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
