/* Learned state: protobuf round trip, the size cap (worthiest kept, users
 * taking turns), bounded decoding, atomic save/load, and files that are
 * corrupt, truncated or foreign (reported and set aside, never fatal).
 * Files from before domains: test_domains. */
#include <errno.h>
#include <math.h>
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
#include "policy.pb-c.h"
#include "proc_status.h"

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

static hkd_module_name mods[3];

static hkd_site_state *sample(size_t n)
{
    hkd_site_state *s = calloc(n, sizeof *s);
    for (int m = 0; m < 3; m++) {
        mods[m].hash = 0x1000 + (uint64_t)m;
        snprintf(mods[m].path, sizeof mods[m].path, "/usr/bin/prog%d", m);
    }
    for (size_t i = 0; i < n; i++) {
        s[i].key.module_hash = 0x1000 + i % 3;
        s[i].key.offset = 0x40 * i;
        s[i].key.domain = i % 4 == 3 ? 1000 : 0;
        for (int a = 0; a < HKD_N_ARMS; a++) {
            s[i].pulls[a] = (uint32_t)(i + (size_t)a) % 5;   /* some arms never pulled */
            s[i].mean[a] = s[i].pulls[a] ? 0.125f * (float)(a + 1) : 0.0f;
        }
        s[i].current = (int8_t)(i % HKD_N_ARMS);
        s[i].pinned = i == 2 ? 5 : -1;
        s[i].ref_cost = 123.5 + (double)i;
        s[i].last_seen = 1700000000u + (uint32_t)i;
        s[i].usage = 1000 * i;
        s[i].sizes_known = i % 2;
        s[i].size_lo = s[i].sizes_known ? 12 : 0;
        s[i].size_hi = s[i].sizes_known ? 20 : 0;
    }
    return s;
}

static void check_equal(const hkd_site_state *a, const hkd_site_state *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(a[i].key.module_hash, b[i].key.module_hash);
        assert_int_equal(a[i].key.offset, b[i].key.offset);
        assert_int_equal(a[i].key.domain, b[i].key.domain);
        assert_int_equal(a[i].current, b[i].current);
        assert_int_equal(a[i].pinned, b[i].pinned);
        assert_true(a[i].ref_cost == b[i].ref_cost);
        assert_int_equal(a[i].last_seen, b[i].last_seen);
        assert_int_equal(a[i].usage, b[i].usage);
        assert_int_equal(a[i].sizes_known, b[i].sizes_known);
        assert_int_equal(a[i].size_lo, b[i].size_lo);
        assert_int_equal(a[i].size_hi, b[i].size_hi);
        for (int k = 0; k < HKD_N_ARMS; k++) {
            assert_int_equal(a[i].pulls[k], b[i].pulls[k]);
            assert_true(a[i].mean[k] == b[i].mean[k]);
        }
    }
}

static void encode_decode_round_trip(void **state)
{
    (void)state;
    size_t n = 50;
    hkd_site_state *s = sample(n);
    uint8_t *buf;
    size_t len, kept;
    assert_int_equal(hkd_policy_encode(s, n, mods, 3, 77, 0, &buf, &len, &kept), 0);
    assert_int_equal(kept, n);
    hkd_policy d;
    assert_int_equal(hkd_policy_decode(buf, len, 0, &d), 0);
    assert_int_equal(d.n, n);
    assert_int_equal(d.generation, 77);
    check_equal(s, d.sites, n);
    assert_int_equal(d.n_modules, 3);
    assert_string_equal(hkd_module_path(d.modules, d.n_modules, 0x1001), "/usr/bin/prog1");
    /* What each site took is what the encoding is made of. */
    size_t sum = 0;
    for (size_t i = 0; i < d.n; i++)
        sum += d.site_bytes[i];
    assert_true(sum < len && len - sum < 128);
    hkd_policy_free(&d);
    free(buf);
    free(s);
}

static void save_load_round_trip(void **state)
{
    (void)state;
    size_t n = 20;
    hkd_site_state *s = sample(n);
    uint8_t *buf, *back;
    size_t len, blen;
    assert_int_equal(hkd_policy_encode(s, n, mods, 3, 5, 0, &buf, &len, NULL), 0);
    assert_int_equal(hkd_state_save(dir, buf, len), 0);
    char aside[512];
    assert_int_equal(hkd_state_load(dir, &back, &blen, aside, sizeof aside), 0);
    assert_int_equal(blen, len);
    assert_memory_equal(buf, back, len);
    hkd_policy d;
    assert_int_equal(hkd_policy_decode(back, blen, 0, &d), 0);
    check_equal(s, d.sites, n);
    /* No temp file left behind. */
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp.%d", dir, HKD_STATE_FILE, (int)getpid());
    assert_int_equal(access(tmp, F_OK), -1);
    hkd_policy_free(&d);
    free(buf);
    free(back);
    free(s);
}

/* Root's history (older, heavily used) and a flood of another user's
 * junk (newer, barely used) under a cap that holds a fraction: root keeps
 * all of its sites, the junk only its turns, and what of the junk is kept
 * is its worthiest. */
static void capped_encoding_keeps_the_worthiest_users_taking_turns(void **state)
{
    (void)state;
    enum { ROOT = 300, JUNK = 6000 };
    size_t n = ROOT + JUNK;
    hkd_site_state *s = calloc(n, sizeof *s);
    for (size_t i = 0; i < n; i++) {
        int root = i < ROOT;
        s[i].key = (hkd_site_key){ .module_hash = root ? 0x1 : 0x2, .offset = i, .domain = root ? 0 : 4242 };
        s[i].pulls[0] = 3;
        s[i].mean[0] = 0.5f;
        s[i].pinned = -1;
        s[i].last_seen = root ? 1600000000u : 1700000000u + (uint32_t)(i % 1000) * 86400u;
        s[i].usage = root ? 1000000 : i;
    }
    uint8_t *buf;
    size_t all_len, len, kept;
    assert_int_equal(hkd_policy_encode(s, n, NULL, 0, 1, 0, &buf, &all_len, &kept), 0);
    free(buf);
    size_t cap = all_len / 8;
    assert_int_equal(hkd_policy_encode(s, n, NULL, 0, 1, cap, &buf, &len, &kept), 0);
    assert_true(len <= cap);
    assert_true(kept > 2 * ROOT && kept < n);
    hkd_policy d;
    assert_int_equal(hkd_policy_decode(buf, len, 0, &d), 0);
    assert_int_equal(d.n, kept);
    size_t root = 0;
    uint32_t junk_oldest = UINT32_MAX;
    for (size_t i = 0; i < d.n; i++) {
        if (d.sites[i].key.domain == 0)
            root++;
        else if (d.sites[i].last_seen < junk_oldest)
            junk_oldest = d.sites[i].last_seen;
    }
    assert_int_equal(root, ROOT);
    /* Every junk site dropped was seen no later (by the day) than every one kept. */
    uint8_t *in = calloc(n, 1);
    for (size_t i = 0; i < d.n; i++)
        if (d.sites[i].key.domain)
            in[d.sites[i].key.offset] = 1;
    for (size_t i = ROOT; i < n; i++)
        if (!in[i])
            assert_true(s[i].last_seen / 86400 <= junk_oldest / 86400);
    free(in);
    hkd_policy_free(&d);
    free(buf);
    /* A cap below the header still encodes (no site): never a failure for size. */
    assert_int_equal(hkd_policy_encode(s, n, NULL, 0, 1, 8, &buf, &len, &kept), 0);
    assert_int_equal(kept, 0);
    free(buf);
    free(s);
}

/* A policy holding far more sites than asked for decodes to about the
 * number asked for (the worthiest), and trimming to a size keeps to it. */
static void decoding_holds_what_it_would_keep(void **state)
{
    (void)state;
    size_t n = 20000;
    hkd_site_state *s = calloc(n, sizeof *s);
    for (size_t i = 0; i < n; i++) {
        s[i].key = (hkd_site_key){ .module_hash = 0x7, .offset = i };
        s[i].pulls[1] = 1;
        s[i].mean[1] = 0.25f;
        s[i].pinned = -1;
        s[i].usage = i;
    }
    uint8_t *buf;
    size_t len;
    assert_int_equal(hkd_policy_encode(s, n, NULL, 0, 1, 0, &buf, &len, NULL), 0);
    hkd_policy d;
    assert_int_equal(hkd_policy_decode(buf, len, 500, &d), 0);
    assert_int_equal(d.n, 500);
    for (size_t i = 0; i < d.n; i++)
        assert_true(d.sites[i].usage >= n - 500);
    size_t before = d.n, bytes = 0;
    size_t dropped = hkd_policy_trim(&d, 4096);
    for (size_t i = 0; i < d.n; i++)
        bytes += d.site_bytes[i];
    assert_int_equal(before - dropped, d.n);
    assert_true(d.n > 0 && bytes <= 4096);
    hkd_policy_free(&d);
    assert_int_equal(hkd_policy_decode(buf, len, 0, &d), 0);
    assert_int_equal(d.n, n);
    hkd_policy_free(&d);
    free(buf);
    free(s);
}

/* Four million sites of two bytes each (a 16 MiB import): decoding holds
 * about what it keeps, never a record per site (that would be 480 MiB). */
static void a_hostile_policy_decodes_within_bounds(void **state)
{
    (void)state;
    enum { SITES = 4 << 20 };
    size_t len = 18 + (size_t)SITES * 4;
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    buf[0] = 0x0a;
    buf[1] = 16;
    memcpy(buf + 2, HKD_POLICY_FORMAT, 16);
    for (size_t i = 0; i < SITES; i++) {
        uint8_t *p = buf + 18 + 4 * i;
        p[0] = 0x2a, p[1] = 2, p[2] = 0x50, p[3] = (uint8_t)(i & 0x7f);   /* usage = i % 128 */
    }
    uint64_t before = proc_status_bytes("VmHWM");
    hkd_policy d;
    assert_int_equal(hkd_policy_decode(buf, len, 1000, &d), 0);
    uint64_t grew = proc_status_bytes("VmHWM") - before;
    print_message("decoding 4M sites kept %zu; peak RSS grew %.1f MiB\n", d.n, grew / 1048576.0);
    assert_int_equal(d.n, 1000);
    assert_true(grew < (64u << 20));
    hkd_policy_free(&d);
    free(buf);
}

/* A policy from a build with another arm set (policy.proto: arms are
 * matched by name; arms never pulled may be left out): an arm this build
 * does not know is dropped without lending its pulls to another, arms
 * left out are unpulled, a current or pinned arm of an unknown name falls
 * back to the default and to no pin, and a mean outside [0,1] is refused. */
static void unknown_and_missing_arms(void **state)
{
    (void)state;
    Hakmem__Policy__ArmState a256 = HAKMEM__POLICY__ARM_STATE__INIT, a512 = HAKMEM__POLICY__ARM_STATE__INIT,
                             a1m = HAKMEM__POLICY__ARM_STATE__INIT, wild = HAKMEM__POLICY__ARM_STATE__INIT;
    a256.name = (char *)"large=256K,slots=4,thp=on";      /* arm 5 */
    a256.pulls = 10, a256.reward_sum = 6.0;
    a512.name = (char *)"large=512K,slots=2,thp=off";     /* no such arm here */
    a512.pulls = 99, a512.reward_sum = 50.0;
    a1m.name = (char *)"large=1M,slots=4,thp=off";        /* arm 0 */
    a1m.pulls = 4, a1m.reward_sum = 1.0;
    wild.name = (char *)"large=1M,slots=0,thp=off";       /* arm 2, a mean of 2 */
    wild.pulls = 5, wild.reward_sum = 10.0;
    Hakmem__Policy__ArmState *arms1[] = { &a256, &a1m, &a512 }, *arms3[] = { &wild, &a256 };
    Hakmem__Policy__SiteState s1 = HAKMEM__POLICY__SITE_STATE__INIT, s2 = HAKMEM__POLICY__SITE_STATE__INIT,
                              s3 = HAKMEM__POLICY__SITE_STATE__INIT;
    s1.module_hash = 0xa1, s1.offset = 0x10, s1.n_arms = 3, s1.arms = arms1;
    s1.current_arm = (char *)"large=512K,slots=2,thp=off";
    s1.pinned_arm = (char *)"no-such-arm";
    s2.module_hash = 0xa2, s2.offset = 0x20;                /* no arm at all */
    s2.current_arm = (char *)"large=1M,slots=0,thp=on";     /* arm 3 */
    s2.pinned_arm = (char *)"large=256K,slots=0,thp=off";   /* arm 6 */
    s3.module_hash = 0xa3, s3.offset = 0x30, s3.n_arms = 2, s3.arms = arms3;
    Hakmem__Policy__SiteState *sites[] = { &s1, &s2, &s3 };
    Hakmem__Policy__Policy pol = HAKMEM__POLICY__POLICY__INIT;
    pol.format = (char *)HKD_POLICY_FORMAT;
    pol.n_sites = 3, pol.sites = sites;
    size_t len = hakmem__policy__policy__get_packed_size(&pol);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    hakmem__policy__policy__pack(&pol, buf);

    hkd_policy d;
    assert_int_equal(hkd_policy_decode(buf, len, 0, &d), 0);
    assert_int_equal(d.n, 3);
    const hkd_site_state *x = NULL, *y = NULL, *z = NULL;
    for (size_t i = 0; i < d.n; i++) {
        const hkd_site_state *t = &d.sites[i];
        if (t->key.module_hash == 0xa1) x = t;
        if (t->key.module_hash == 0xa2) y = t;
        if (t->key.module_hash == 0xa3) z = t;
    }
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(z);
    for (int a = 0; a < HKD_N_ARMS; a++) {
        assert_int_equal(x->pulls[a], a == 5 ? 10 : a == 0 ? 4 : 0);
        assert_int_equal(y->pulls[a], 0);
        assert_int_equal(z->pulls[a], a == 5 ? 10 : 0);
    }
    assert_true(fabsf(x->mean[5] - 0.6f) < 1e-6f && fabsf(x->mean[0] - 0.25f) < 1e-6f);
    assert_int_equal(x->current, HKD_DEFAULT_ARM);
    assert_int_equal(x->pinned, -1);
    assert_int_equal(y->current, 3);
    assert_int_equal(y->pinned, 6);
    hkd_policy_free(&d);
    free(buf);
}

static void write_state_then(int (*mangle)(const char *path, size_t size))
{
    size_t n = 30;
    hkd_site_state *s = sample(n);
    uint8_t *buf;
    size_t len;
    assert_int_equal(hkd_policy_encode(s, n, mods, 3, 1, 0, &buf, &len, NULL), 0);
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
    hkd_policy d;
    assert_int_equal(hkd_policy_decode(junk, sizeof junk, 0, &d), -EBADMSG);
    const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x12 };
    assert_int_equal(hkd_policy_decode(garbage, sizeof garbage, 0, &d), -EBADMSG);
    /* A length running past the end, and a site that is not a message. */
    const uint8_t longer[] = { 0x0a, 0x10, 'h', 'a', 'k' };
    assert_int_equal(hkd_policy_decode(longer, sizeof longer, 0, &d), -EBADMSG);
    uint8_t bad_site[32] = { 0x0a, 16 };
    memcpy(bad_site + 2, HKD_POLICY_FORMAT, 16);
    bad_site[18] = 0x2a, bad_site[19] = 2, bad_site[20] = 0xff, bad_site[21] = 0xff;
    assert_int_equal(hkd_policy_decode(bad_site, 22, 0, &d), -EBADMSG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encode_decode_round_trip),
        cmocka_unit_test(save_load_round_trip),
        cmocka_unit_test(capped_encoding_keeps_the_worthiest_users_taking_turns),
        cmocka_unit_test(decoding_holds_what_it_would_keep),
        cmocka_unit_test(a_hostile_policy_decodes_within_bounds),
        cmocka_unit_test(unknown_and_missing_arms),
        cmocka_unit_test(corrupt_file_is_set_aside),
        cmocka_unit_test(truncated_file_is_set_aside),
        cmocka_unit_test(foreign_file_is_set_aside),
        cmocka_unit_test(foreign_payload_is_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
