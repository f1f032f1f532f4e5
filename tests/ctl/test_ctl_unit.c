/* Unit tests (cmocka) for the pieces hakmemctl and the control server share:
 * framing, the JSON writer, ELF symbolization, UTF-8 checking and escaping,
 * atomic file replacement. */
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

#include "atomic_file.h"
#include "frame.h"
#include "jsonw.h"
#include "symbolize.h"
#include "utf8.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

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

/* A JSON writer into memory, an object opened. */
static FILE *json_to_memory(jw *w, char **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    FILE *f = open_memstream(out, n);
    jw_init(w, f);
    jw_obj(w, NULL);
    return f;
}

static void json_escaping(void **state)
{
    (void)state;
    char *out;
    size_t n;
    jw w;
    FILE *f = json_to_memory(&w, &out, &n);
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

static size_t u8len(const char *s)
{
    return hk_utf8_len((const unsigned char *)s, strlen(s));
}

static void utf8_checks(void **state)
{
    (void)state;
    assert_int_equal(u8len("a"), 1);
    assert_int_equal(u8len("\xc3\xa9"), 2);              /* e acute */
    assert_int_equal(u8len("\xe2\x82\xac"), 3);          /* euro sign */
    assert_int_equal(u8len("\xf0\x9f\x98\x80"), 4);      /* an emoji */
    assert_int_equal(u8len("\xc0\x80"), 0);              /* overlong NUL */
    assert_int_equal(u8len("\xe0\x80\x80"), 0);          /* overlong */
    assert_int_equal(u8len("\xed\xa0\x80"), 0);          /* a surrogate */
    assert_int_equal(u8len("\xf4\x90\x80\x80"), 0);      /* beyond U+10FFFF */
    assert_int_equal(u8len("\xe2\x82"), 0);              /* cut short */
    assert_int_equal(u8len("\x80"), 0);                  /* a stray continuation */
    assert_int_equal(u8len("\xff"), 0);
    assert_true(hk_utf8_is_control((const unsigned char *)"\x1b", 1));
    assert_true(hk_utf8_is_control((const unsigned char *)"\x7f", 1));
    assert_true(hk_utf8_is_control((const unsigned char *)"\xc2\x9b", 2));   /* C1: a terminal's CSI */
    assert_false(hk_utf8_is_control((const unsigned char *)"\xc3\xa9", 2));
}

static void text_for_terminal(void **state)
{
    (void)state;
    char out[64];
    assert_string_equal(hk_text_for_terminal("a\nb\\c\x1b[1m\xff\xc3\xa9", out, sizeof out),
                        "a\\x0ab\\\\c\\x1b[1m\\xff\xc3\xa9");
    /* Cut between escapes, never inside one. */
    assert_string_equal(hk_text_for_terminal("ab\x1b", out, 6), "ab");
    assert_string_equal(hk_text_for_terminal(NULL, out, sizeof out), "");
}

static void text_clean(void **state)
{
    (void)state;
    char out[16];
    hk_text_clean(out, sizeof out, "/a\nb\x1b\xff\xc3\xa9", 64);
    assert_string_equal(out, "/a?b??\xc3\xa9");
    /* Cut on a character boundary: the e acute does not fit whole. */
    hk_text_clean(out, 4, "ab\xc3\xa9", 64);
    assert_string_equal(out, "ab");
    /* Reads at most srclen bytes of an unterminated source. */
    const char raw[4] = { 'w', 'x', 'y', 'z' };
    hk_text_clean(out, sizeof out, raw, sizeof raw);
    assert_string_equal(out, "wxyz");
}

static void json_in_pieces(void **state)
{
    (void)state;
    char *out;
    size_t n;
    jw w;
    FILE *f = json_to_memory(&w, &out, &n);
    jw_str_begin(&w, "text");
    jw_str_piece(&w, "a\"b\n", 4);
    jw_str_piece(&w, "\xff", 1);
    jw_str_end(&w);
    jw_end_obj(&w);
    jw_done(&w);
    fclose(f);
    assert_string_equal(out, "{\"text\":\"a\\\"b\\u000a\\ufffd\"}\n");
    free(out);
}

static int count_temps(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

static void atomic_replace(void **state)
{
    (void)state;
    char dir[] = "/tmp/hkatomic.XXXXXX", path[128], buf[16] = "";
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/f", dir);
    hkd_atomic_file f;
    assert_int_equal(hkd_atomic_open(&f, path, 0644), 0);
    assert_int_equal(hkd_atomic_write(&f, "new", 3), 0);
    assert_int_equal(access(path, F_OK), -1);               /* not there before the commit */
    assert_int_equal(hkd_atomic_commit(&f), 0);
    int fd = open(path, O_RDONLY);
    assert_int_equal(read(fd, buf, sizeof buf), 3);
    close(fd);
    assert_string_equal(buf, "new");
    assert_int_equal(hkd_atomic_open(&f, path, 0644), 0);
    assert_int_equal(hkd_atomic_write(&f, "other", 5), 0);
    hkd_atomic_abort(&f);
    assert_int_equal(count_temps(dir), 0);
    fd = open(path, O_RDONLY);
    assert_int_equal(read(fd, buf, sizeof buf), 3);          /* the old contents stay */
    close(fd);

    /* Orphans: a writer that no longer runs loses its temp file, a live
     * one (this process's parent) and a symlink keep theirs. */
    char orphan[160], live[160], link[160];
    snprintf(orphan, sizeof orphan, "%s/.f.tmp.%d.dead", dir, 0x7ffffff0);
    snprintf(live, sizeof live, "%s/.f.tmp.%d.live", dir, (int)getppid());
    snprintf(link, sizeof link, "%s/.f.tmp.%d.link", dir, 0x7ffffff0);
    close(open(orphan, O_WRONLY | O_CREAT, 0600));
    close(open(live, O_WRONLY | O_CREAT, 0600));
    assert_int_equal(symlink(path, link), 0);
    assert_int_equal(hkd_atomic_clean(path), 1);
    assert_int_equal(access(orphan, F_OK), -1);
    assert_int_equal(access(live, F_OK), 0);
    struct stat st;
    assert_int_equal(lstat(link, &st), 0);
    unlink(live), unlink(link), unlink(path);
    assert_int_equal(rmdir(dir), 0);
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
        cmocka_unit_test(utf8_checks),
        cmocka_unit_test(text_for_terminal),
        cmocka_unit_test(text_clean),
        cmocka_unit_test(json_in_pieces),
        cmocka_unit_test(atomic_replace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
