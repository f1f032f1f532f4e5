/* Packed medium blocks (packed.h): which requests are packed, blocks laid
 * end to end and joined again when freed, frees from any thread, the
 * pages of idle free blocks given back, empty chunks unmapped, bad frees
 * caught, and the PACKED_KIB knob's claims: which sizes it packs, less resident memory for
 * blocks whose class would round them up (RSS from /proc/self/statm in a
 * child of its own per setting). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chunk_map.h"
#include "hakmem.h"
#include "knobs.h"
#include "os.h"
#include "packed.h"
#include "unit_util.h"

#define KiB ((size_t)1 << 10)
#define SEC 1000000000ull

static int setup(void **state)
{
    (void)state;
    hk_knobs_reset();
    hk_packed_thread_done();
    return 0;
}

/* The block this thread keeps after a free goes back to its arena, so the
 * arena's state is what the frees made it. */
static void settle(void) { hk_packed_thread_done(); }

static unsigned kind_of(const void *p) { return hk_chunk_kind((uintptr_t)p); }

static hk_packed_figures figures(void)
{
    hk_packed_figures f;
    hk_packed_figures_get(&f);
    return f;
}

/* Everything freed so far given back, whatever its age. */
static void purge_all(void) { hk_packed_maintain(hk_coarse_ns() + 3600 * SEC); }

static void test_which_requests_are_packed(void **state)
{
    (void)state;
    assert_int_equal(hk_knob(HK_KNOB_PACKED_KIB), 4);        /* over 4 KiB by default */
    void *a = hak_malloc(4368), *b = hak_malloc(8 * KiB), *c = hak_malloc(4000), *d = hak_malloc(65535),
         *e = hak_malloc(32 * KiB), *f = hak_malloc(64 * KiB + 1);
    assert_int_equal(kind_of(a), HK_CHUNK_PACKED);
    assert_int_equal(kind_of(b), HK_CHUNK_SEGMENT);          /* a page multiple fits its class exactly */
    assert_int_equal(kind_of(c), HK_CHUNK_SEGMENT);          /* below 4 KiB */
    assert_int_equal(kind_of(d), HK_CHUNK_PACKED);
    assert_int_equal(kind_of(e), HK_CHUNK_SEGMENT);
    assert_int_not_equal(kind_of(f), HK_CHUNK_PACKED);       /* above 64 KiB */
    size_t u = hak_malloc_usable_size(a);
    assert_true(u >= 4368 && u < 4368 + 64);                 /* to 64 bytes, not to a class */
    assert_int_equal((uintptr_t)a % 16, 0);
    ut_set_knob(HK_KNOB_PACKED_KIB, 0);
    void *g = hak_malloc(9000);
    assert_int_equal(kind_of(g), HK_CHUNK_SEGMENT);
    ut_set_knob(HK_KNOB_PACKED_KIB, 1);                      /* from just over 1 KiB */
    void *h = hak_malloc(1100), *i = hak_malloc(1024), *j = hak_malloc(20 * KiB);
    assert_int_equal(kind_of(h), HK_CHUNK_PACKED);
    assert_int_equal(kind_of(i), HK_CHUNK_SEGMENT);
    assert_int_equal(kind_of(j), HK_CHUNK_SEGMENT);
    ut_set_knob(HK_KNOB_PACKED_KIB, 40);                     /* only over 40 KiB */
    void *k = hak_malloc(39 * KiB + 1), *l = hak_malloc(40 * KiB + 1);
    assert_int_equal(kind_of(k), HK_CHUNK_SEGMENT);
    assert_int_equal(kind_of(l), HK_CHUNK_PACKED);
    hak_free(h);
    hak_free(i);
    hak_free(j);
    hak_free(k);
    hak_free(l);
    hak_free(a);                                             /* a packed block frees where it lives */
    hak_free(b);
    hak_free(c);
    hak_free(d);
    hak_free(e);
    hak_free(f);
    hak_free(g);
    hakmem_collect();       /* the class pages used here serve no later test's sizes */
}

/* Blocks are carved end to end; freed neighbours join, and the joined
 * block serves a request as big as both. */
static void test_blocks_split_and_join(void **state)
{
    (void)state;
    enum { SIZE = 20000 };
    uint8_t *a = hak_malloc(SIZE), *b = hak_malloc(SIZE), *c = hak_malloc(SIZE);
    assert_int_equal(kind_of(a), HK_CHUNK_PACKED);
    size_t step = hak_malloc_usable_size(a) + 16;
    assert_ptr_equal(b, a + step);
    assert_ptr_equal(c, b + step);
    hk_packed_figures before = figures();
    hak_free(b);
    settle();
    assert_int_equal(figures().free_blocks, before.free_blocks + 1);
    hak_free(a);                                             /* joins b */
    settle();
    assert_int_equal(figures().free_blocks, before.free_blocks + 1);
    uint8_t *ab = hak_malloc(2 * SIZE);
    assert_ptr_equal(ab, a);
    hak_free(ab);
    hak_free(c);                                             /* all three and the rest: one block */
    settle();
    hk_packed_figures after = figures();
    assert_int_equal(after.used_bytes, before.used_bytes - 3 * step);
}

static void test_realloc_keeps_contents(void **state)
{
    (void)state;
    uint8_t *p = hak_malloc(9000);
    for (size_t i = 0; i < 9000; i++) p[i] = (uint8_t)(i * 7);
    assert_ptr_equal(hak_realloc(p, 8500), p);               /* shrinks in place */
    uint8_t *q = hak_realloc(p, 40000);
    assert_non_null(q);
    assert_int_equal(kind_of(q), HK_CHUNK_PACKED);
    for (size_t i = 0; i < 8500; i++)
        if (q[i] != (uint8_t)(i * 7)) fail_msg("byte %zu lost in realloc", i);
    uint8_t *r = hak_realloc(q, 100);                        /* moves to a small class */
    assert_int_equal(kind_of(r), HK_CHUNK_SEGMENT);
    for (size_t i = 0; i < 100; i++) assert_int_equal(r[i], (uint8_t)(i * 7));
    hak_free(r);
}

/* A buffer appended to: in place while the block after it is free, else
 * moved with an eighth to spare, so it is copied a logarithmic number of
 * times. */
static void test_realloc_grows_in_place(void **state)
{
    (void)state;
    uint8_t *p = hak_malloc(9000);
    memset(p, 7, 9000);
    uint8_t *q = hak_realloc(p, 30000);                       /* the free rest of the chunk follows */
    assert_ptr_equal(q, p);
    size_t roomy = hak_malloc_usable_size(q);
    assert_true(roomy >= 30000 + 30000 / 8);                  /* an eighth more, as a move gives */
    for (size_t i = 0; i < 9000; i++) assert_int_equal(q[i], 7);
    uint8_t *wall = hak_malloc(9000);                         /* the next block is in use now */
    assert_ptr_equal(hak_realloc(q, roomy), q);               /* the eighth serves the next appends */
    uint8_t *r = hak_realloc(q, roomy + 1);
    assert_ptr_not_equal(r, q);
    assert_true(hak_malloc_usable_size(r) >= roomy + roomy / 8);
    unsigned moves = 0;
    uint8_t *s = r;
    for (size_t n = 32000; n < 60000; n += 100) {
        uint8_t *t = hak_realloc(s, n);
        moves += t != s;
        s = t;
    }
    assert_true(moves <= 6);
    hak_free(s);
    hak_free(wall);
    settle();
}

/* ---- frees from other threads -------------------------------------------- */

enum { HANDED = 500 };
static void *handed[HANDED];

static void *free_handed(void *arg)
{
    (void)arg;
    for (int i = 0; i < HANDED; i++) hak_free(handed[i]);
    return NULL;
}

static void test_other_threads_free_at_once(void **state)
{
    (void)state;
    hk_packed_figures before = figures();
    for (int i = 0; i < HANDED; i++) {
        handed[i] = hak_malloc(9000 + (size_t)i * 100);
        memset(handed[i], 0xA5, 9000);
    }
    assert_true(figures().used_bytes > before.used_bytes);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, free_handed, NULL), 0);
    pthread_join(t, NULL);
    /* Back in the arena as the free returned: no owner has to collect. */
    assert_int_equal(figures().used_bytes, before.used_bytes);
    purge_all();
}

/* ---- memory back --------------------------------------------------------- */

static void test_idle_free_blocks_give_pages_back(void **state)
{
    (void)state;
    enum { N = 8, SIZE = 60000 };
    uint8_t *b[N];
    for (int i = 0; i < N; i++) {
        b[i] = hak_malloc(SIZE);
        memset(b[i], 1, SIZE);
    }
    uint8_t *keep = hak_malloc(SIZE);                        /* the chunk does not go wholly free */
    uintptr_t lo = ((uintptr_t)b[1] + 4095) & ~(uintptr_t)4095, hi = (uintptr_t)b[N - 2] & ~(uintptr_t)4095;
    size_t pages = (hi - lo) / 4096;
    assert_int_equal(ut_resident_pages((void *)lo, hi - lo), pages);
    for (int i = 0; i < N; i++) hak_free(b[i]);
    settle();
    uint64_t now = hk_coarse_ns();
    hk_packed_maintain(now);                                 /* not idle yet: kept */
    assert_int_equal(ut_resident_pages((void *)lo, hi - lo), pages);
    uint64_t purged = figures().purged_bytes;
    hk_packed_maintain(now + 3600 * SEC);
    assert_int_equal(ut_resident_pages((void *)lo, hi - lo), 0);
    assert_true(figures().purged_bytes >= purged + (hi - lo));
    hak_free(keep);
    purge_all();
}

static void test_empty_chunks_unmapped_but_one(void **state)
{
    (void)state;
    enum { N = 200, SIZE = 60000 };                          /* about three chunks */
    static void *b[N];
    uint64_t chunks0 = figures().chunks;
    for (int i = 0; i < N; i++) b[i] = hak_malloc(SIZE);
    uint64_t grown = figures().chunks;
    assert_true(grown >= chunks0 + 2);
    void *far = b[N - 1];
    assert_int_equal(kind_of(far), HK_CHUNK_PACKED);
    for (int i = 0; i < N; i++) hak_free(b[i]);
    settle();
    assert_int_equal(figures().chunks, 1);                   /* one wholly free chunk is kept */
    hakmem_collect();                                        /* malloc_trim: that one too */
    assert_int_equal(figures().chunks, 0);
    assert_int_not_equal(kind_of(far), HK_CHUNK_PACKED);
}

/* ---- the block a thread keeps --------------------------------------------- */

static void *keep_and_exit(void *arg)
{
    void *p = hak_malloc(30000);
    hak_free(p);                                             /* kept by this thread... */
    *(void **)arg = p;
    return NULL;                                             /* ...until it exits */
}

static void test_thread_keeps_its_last_freed_block(void **state)
{
    (void)state;
    uint8_t *p = hak_malloc(30000);
    hk_packed_figures before = figures();
    hak_free(p);
    assert_int_equal(figures().used_bytes, before.used_bytes);  /* kept: still counted in use */
    assert_ptr_equal(hak_malloc(29000), p);                   /* about its size: served at once */
    hak_free(p);
    void *small = hak_malloc(20000);                          /* a third smaller: not the kept one whole */
    assert_true(hak_malloc_usable_size(small) < 20000 + 64);
    hak_free(small);
    settle();
    assert_int_equal(figures().used_bytes, before.used_bytes - (30000 + 16 + 63) / 64 * 64);
    /* A thread's exit gives its kept block back. */
    uint64_t used = figures().used_bytes;
    void *theirs = NULL;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, keep_and_exit, &theirs), 0);
    pthread_join(t, NULL);
    assert_non_null(theirs);
    assert_int_equal(figures().used_bytes, used);
}

/* ---- bad frees ------------------------------------------------------------ */

typedef struct bad { void *free_first, *then; int usable; } bad;

static void child_bad_free(void *arg)
{
    bad *b = arg;
    if (b->free_first) hak_free(b->free_first);
    if (b->usable) (void)hak_malloc_usable_size(b->then);
    else hak_free(b->then);
}

static void expect_abort_in(int usable, void *first, void *then, const char *what)
{
    char want[160];
    snprintf(want, sizeof want, "hakmem: %s: %s %p\n", usable ? "malloc_usable_size()" : "free()", what, then);
    bad b = { first, then, usable };
    ut_child c;
    ut_run_child(child_bad_free, &b, &c);
    if (c.signo != SIGABRT || strcmp(c.err, want) != 0)
        fail_msg("child %s %d, stderr \"%s\", wanted \"%s\"", c.signo ? "died of signal" : "exited with",
                 c.signo ? c.signo : c.exit_code, c.err, want);
}

static void expect_abort(void *first, void *then, const char *what) { expect_abort_in(0, first, then, what); }

static void test_bad_frees_fail_fast(void **state)
{
    (void)state;
    uint8_t *p = hak_malloc(10000), *q = hak_malloc(10000);
    expect_abort(p, p, "double free");                       /* the first free kept it */
    hak_free(hak_malloc(12000));                             /* this thread keeps another */
    expect_abort(p, p, "double free");                       /* the first free released it */
    expect_abort(NULL, p + 64, "invalid pointer");           /* inside a block */
    expect_abort(NULL, p + 8, "invalid pointer");            /* not 16-aligned */
    /* A header the program overwrote (running past the block before). */
    uint8_t saved[16];
    memcpy(saved, q - 16, 16);
    memset(q - 16, 0x41, 16);
    expect_abort(NULL, q, "invalid pointer");
    expect_abort_in(1, NULL, q, "invalid pointer");
    memcpy(q - 16, saved, 16);
    expect_abort_in(1, p, p, "use after free");
    hak_free(q);
    hak_free(p);
}

/* ---- fork while another thread allocates ------------------------------------ */

static volatile int churning;

static void *churn(void *arg)
{
    (void)arg;
    while (churning) {
        void *p = hak_malloc(12345);
        hak_free(p);
    }
    return NULL;
}

static void test_fork_child_allocates(void **state)
{
    (void)state;
    churning = 1;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, churn, NULL), 0);
    for (int i = 0; i < 40; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(10);                                       /* a deadlock kills it */
            void *p = hak_malloc(20000);
            memset(p, 1, 20000);
            hak_free(p);
            _exit(0);
        }
        int status;
        assert_true(waitpid(pid, &status, 0) == pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail_msg("fork child %d: status %#x", i, status);
    }
    churning = 0;
    pthread_join(t, NULL);
}

/* ---- the knob's claim -------------------------------------------------------- */

/* In a child: 400 blocks of 33 KiB and 100 bytes, each written whole; the
 * RSS they added, in KiB, on stderr. */
static void child_rss(void *arg)
{
    ut_set_knob(HK_KNOB_PACKED_KIB, (uint32_t)(uintptr_t)arg);
    enum { N = 400, SIZE = 33 * 1024 + 100 };
    static void *b[N];
    size_t before = ut_rss_bytes();
    for (int i = 0; i < N; i++) {
        b[i] = hak_malloc(SIZE);
        memset(b[i], 3, SIZE);
    }
    fprintf(stderr, "%zu", (ut_rss_bytes() - before) >> 10);
}

static void test_knob_holds_less(void **state)
{
    (void)state;
    ut_child off, on;
    ut_run_child(child_rss, (void *)0, &off);
    ut_run_child(child_rss, (void *)8, &on);
    assert_true(off.exited && on.exited);
    size_t kib_off = strtoul(off.err, NULL, 10), kib_on = strtoul(on.err, NULL, 10);
    size_t asked = 400 * (33 * 1024 + 100) / 1024;
    print_message("400 blocks of 33 KiB + 100 B (%zu KiB asked): RSS +%zu KiB packed, +%zu KiB in classes\n", asked,
                  kib_on, kib_off);
    assert_true(kib_on * 100 <= kib_off * 95);
    assert_true(kib_on <= asked + asked / 50);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_which_requests_are_packed, setup),
        cmocka_unit_test_setup(test_blocks_split_and_join, setup),
        cmocka_unit_test_setup(test_realloc_keeps_contents, setup),
        cmocka_unit_test_setup(test_realloc_grows_in_place, setup),
        cmocka_unit_test_setup(test_other_threads_free_at_once, setup),
        cmocka_unit_test_setup(test_idle_free_blocks_give_pages_back, setup),
        cmocka_unit_test_setup(test_empty_chunks_unmapped_but_one, setup),
        cmocka_unit_test_setup(test_thread_keeps_its_last_freed_block, setup),
        cmocka_unit_test_setup(test_bad_frees_fail_fast, setup),
        cmocka_unit_test_setup(test_fork_child_allocates, setup),
        cmocka_unit_test_setup(test_knob_holds_less, setup),
    };
    return cmocka_run_group_tests_name("packed", tests, NULL, NULL);
}
