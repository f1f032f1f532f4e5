/* Unit tests (cmocka) for the pieces hakmemctl and the control server share:
 * framing, the JSON writer, ELF symbolization. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frame.h"
#include "jsonw.h"
#include "symbolize.h"

static void pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
}

typedef struct big { int fd; uint8_t *buf; size_t len; int rc; } big;
static void *writer(void *arg)
{
    big *b = arg;
    b->rc = hkc_frame_write(b->fd, b->buf, b->len, 10000);
    return NULL;
}

static void frame_roundtrip(void **state)
{
    (void)state;
    int sv[2];
    pair(sv);
    /* Larger than any socket buffer: the writer must wait for the reader. */
    size_t n = HKC_FRAME_MAX;
    uint8_t *src = malloc(n);
    for (size_t i = 0; i < n; i++)
        src[i] = (uint8_t)(i * 31 + 7);
    big b = { sv[0], src, n, -1 };
    pthread_t t;
    pthread_create(&t, NULL, writer, &b);
    uint8_t *got;
    size_t len;
    assert_int_equal(hkc_frame_read(sv[1], &got, &len, HKC_FRAME_MAX, 10000), 0);
    pthread_join(t, NULL);
    assert_int_equal(b.rc, 0);
    assert_int_equal(len, n);
    assert_memory_equal(got, src, n);
    free(got);
    /* An empty frame is a frame, not an end of stream. */
    assert_int_equal(hkc_frame_write(sv[0], NULL, 0, 1000), 0);
    assert_int_equal(hkc_frame_read(sv[1], &got, &len, 16, 1000), 0);
    assert_int_equal(len, 0);
    assert_non_null(got);
    free(got);
    free(src);
    close(sv[0]);
    close(sv[1]);
}

static void frame_too_large(void **state)
{
    (void)state;
    int sv[2];
    pair(sv);
    uint8_t payload[100] = { 0 };
    assert_int_equal(hkc_frame_write(sv[0], payload, sizeof payload, 1000), 0);
    uint8_t *got;
    size_t len;
    assert_int_equal(hkc_frame_read(sv[1], &got, &len, 99, 1000), -EMSGSIZE);
    assert_int_equal(len, 100);
    assert_null(got);
    close(sv[0]);
    close(sv[1]);
}

static void frame_eof(void **state)
{
    (void)state;
    int sv[2];
    uint8_t *got;
    size_t len;
    pair(sv);
    close(sv[0]);
    assert_int_equal(hkc_frame_read(sv[1], &got, &len, 64, 1000), -ENODATA);
    close(sv[1]);

    pair(sv);
    const uint8_t half[] = { 0, 0, 0, 10, 'a', 'b' };
    assert_int_equal(write(sv[0], half, sizeof half), (ssize_t)sizeof half);
    close(sv[0]);
    assert_int_equal(hkc_frame_read(sv[1], &got, &len, 64, 1000), -EPROTO);
    close(sv[1]);

    pair(sv);
    assert_int_equal(write(sv[0], half, 2), 2);
    close(sv[0]);
    assert_int_equal(hkc_frame_read(sv[1], &got, &len, 64, 1000), -EPROTO);
    close(sv[1]);
}

static void frame_timeout(void **state)
{
    (void)state;
    int sv[2];
    uint8_t *got;
    size_t len;
    pair(sv);
    /* A peer that starts a frame and stalls: the deadline covers the
     * whole frame. */
    const uint8_t part[] = { 0, 0, 0, 10, 'a' };
    assert_int_equal(write(sv[0], part, sizeof part), (ssize_t)sizeof part);
    assert_int_equal(hkc_frame_read(sv[1], &got, &len, 64, 50), -ETIMEDOUT);
    close(sv[0]);
    close(sv[1]);
}

static void json_escaping(void **state)
{
    (void)state;
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    jw w;
    jw_init(&w, f);
    jw_obj(&w, NULL);
    jw_str(&w, "s", "a\"b\\c\nd\x01 \xc3\xa9 \xff");
    jw_u64(&w, "u", UINT64_MAX);
    jw_i64(&w, "i", -5);
    jw_dbl(&w, "nan", 0.0 / 0.0);
    jw_dbl(&w, "half", 0.5);
    jw_bool(&w, "t", 1);
    jw_str(&w, "null", NULL);
    jw_arr(&w, "a");
    jw_u64(&w, NULL, 1);
    jw_obj(&w, NULL);
    jw_end_obj(&w);
    jw_end_arr(&w);
    jw_end_obj(&w);
    jw_done(&w);
    fclose(f);
    assert_string_equal(out,
        "{\"s\":\"a\\\"b\\\\c\\u000ad\\u0001 \xc3\xa9 \\ufffd\",\"u\":18446744073709551615,"
        "\"i\":-5,\"nan\":null,\"half\":0.5,\"t\":true,\"null\":null,\"a\":[1,{}]}\n");
    free(out);
}

__attribute__((noinline, used)) int unit_marker_function(int x)
{
    return x * 3 + 1;
}

static void symbolize_self(void **state)
{
    (void)state;
    Dl_info di;
    assert_true(dladdr((void *)unit_marker_function, &di) != 0);
    uint64_t off = (uint64_t)((uintptr_t)unit_marker_function - (uintptr_t)di.dli_fbase) + 5;
    char name[256];
    char exe[4096];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(k > 0);
    exe[k] = '\0';
    assert_int_equal(hkc_symbolize(exe, off, name, sizeof name), 1);
    assert_string_equal(name, "unit_marker_function+0x5");
    assert_true(hkc_symbolize("/nonexistent/module", 16, name, sizeof name) < 0);
    assert_int_equal(hkc_symbolize("/etc/hostname", 16, name, sizeof name), -ENOEXEC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frame_roundtrip),
        cmocka_unit_test(frame_too_large),
        cmocka_unit_test(frame_eof),
        cmocka_unit_test(frame_timeout),
        cmocka_unit_test(json_escaping),
        cmocka_unit_test(symbolize_self),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
