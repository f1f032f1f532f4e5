/* The public API's edge cases and error paths, with the errno values glibc
 * gives, and the fail-fast checks on invalid pointers (each in a forked
 * child whose signal and stderr are examined). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "chunk_map.h"
#include "hakmem.h"
#include "segment.h"
#include "size_class.h"
#include "unit_util.h"

#define MiB ((size_t)1 << 20)
#define PAGE ((size_t)sysconf(_SC_PAGESIZE))

static void test_malloc_too_big(void **state)
{
    (void)state;
    errno = 0;
    assert_null(hak_malloc(SIZE_MAX));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(hak_malloc((size_t)PTRDIFF_MAX + 1));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(hak_malloc((size_t)1 << 62));
    assert_int_equal(errno, ENOMEM);
}

static void test_calloc_overflow(void **state)
{
    (void)state;
    errno = 0;
    assert_null(hak_calloc(SIZE_MAX / 2 + 1, 2));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(hak_calloc((size_t)1 << 32, (size_t)1 << 32));
    assert_int_equal(errno, ENOMEM);
    void *p = hak_calloc(0, 10);
    assert_non_null(p);
    hak_free(p);
}

static void test_reallocarray_overflow(void **state)
{
    (void)state;
    unsigned char *p = hak_malloc(100);
    memset(p, 0x42, 100);
    errno = 0;
    assert_null(hak_reallocarray(p, SIZE_MAX / 4 + 1, 8));
    assert_int_equal(errno, ENOMEM);
    for (unsigned i = 0; i < 100; i++) assert_int_equal(p[i], 0x42);   /* left alone */
    errno = 0;
    assert_null(hak_reallocarray(NULL, (size_t)1 << 33, (size_t)1 << 33));
    assert_int_equal(errno, ENOMEM);
    unsigned char *q = hak_reallocarray(p, 10, 200);
    assert_non_null(q);
    assert_true(hak_malloc_usable_size(q) >= 2000);
    for (unsigned i = 0; i < 100; i++) assert_int_equal(q[i], 0x42);
    hak_free(q);
}

static void test_posix_memalign_einval(void **state)
{
    (void)state;
    static const size_t bad[] = { 0, 3, 24, 4, 12, 48, 1000 };
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *out = (void *)0x1234;
        errno = 4321;
        int rc = hak_posix_memalign(&out, bad[i], 16);
        if (rc != EINVAL) fail_msg("posix_memalign(align %zu) = %d, expected EINVAL", bad[i], rc);
        assert_ptr_equal(out, (void *)0x1234);        /* not written */
        assert_int_equal(errno, 4321);                /* errno is not how it reports */
    }
    static const size_t good[] = { 8, 16, 64, 4096, 65536, 2 * MiB };
    for (unsigned i = 0; i < sizeof good / sizeof good[0]; i++) {
        void *out = NULL;
        assert_int_equal(hak_posix_memalign(&out, good[i], 1000), 0);
        assert_non_null(out);
        assert_int_equal((uintptr_t)out % good[i], 0);
        assert_true(hak_malloc_usable_size(out) >= 1000);
        hak_free(out);
    }
    void *out = (void *)0x1234;
    errno = 4321;
    assert_int_equal(hak_posix_memalign(&out, 64, SIZE_MAX), ENOMEM);
    assert_ptr_equal(out, (void *)0x1234);
    assert_int_equal(errno, 4321);
}

static void test_aligned_alloc_einval(void **state)
{
    (void)state;
    static const size_t bad[] = { 3, 24, 48, 100, 3 * 4096 };
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        void *p = hak_aligned_alloc(bad[i], bad[i] * 4);
        if (p != NULL) fail_msg("aligned_alloc(%zu) succeeded", bad[i]);
        assert_int_equal(errno, EINVAL);
    }
    static const size_t good[] = { 1, 16, 64, 4096, 65536, 4 * MiB };
    for (unsigned i = 0; i < sizeof good / sizeof good[0]; i++) {
        void *p = hak_aligned_alloc(good[i], 300);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % good[i], 0);
        assert_true(hak_malloc_usable_size(p) >= 300);
        hak_free(p);
    }
}

/* memalign accepts any alignment and rounds it up to a power of two. */
static void test_memalign_rounds_up(void **state)
{
    (void)state;
    static const struct { size_t align, want; } cases[] = {
        { 3, 4 }, { 24, 32 }, { 48, 64 }, { 100, 128 }, { 1000, 1024 }, { 5000, 8192 },
        { 40000, 65536 }, { 3 * MiB, 4 * MiB },
    };
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        void *p[8];
        for (unsigned k = 0; k < 8; k++) {
            p[k] = hak_memalign(cases[i].align, 200 + k * 8);
            assert_non_null(p[k]);
            if ((uintptr_t)p[k] % cases[i].want != 0)
                fail_msg("memalign(%zu) gave %p, not %zu-aligned", cases[i].align, p[k], cases[i].want);
        }
        for (unsigned k = 0; k < 8; k++) hak_free(p[k]);
    }
    void *z = hak_memalign(0, 10);
    assert_non_null(z);
    hak_free(z);
    /* No power of two is that large: glibc says EINVAL, not a small block. */
    static const size_t huge[] = { SIZE_MAX, ((size_t)1 << 63) + 1, ((size_t)1 << 62) + 1 };
    for (unsigned i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        errno = 0;
        void *h = hak_memalign(huge[i], 10);
        if (h != NULL) fail_msg("memalign(%#zx, 10) gave %p", huge[i], h);
        assert_int_equal(errno, EINVAL);
    }
}

static void test_realloc_zero_frees(void **state)
{
    (void)state;
    void *p = hak_malloc(64);
    assert_null(hak_realloc(p, 0));
    assert_ptr_equal(hak_malloc(64), p);               /* it went back on the free list */
    hak_free(p);

    hakmem_stats s0, s1;
    void *big = hak_malloc(2 * MiB);
    hakmem_get_stats(&s0);
    assert_null(hak_realloc(big, 0));
    hakmem_get_stats(&s1);
    assert_int_equal(s1.large_frees, s0.large_frees + 1);

    void *n = hak_realloc(NULL, 0);                   /* realloc(NULL, 0) is malloc(0) */
    assert_non_null(n);
    hak_free(n);
}

static void test_free_null(void **state)
{
    (void)state;
    hakmem_stats s0, s1;
    hakmem_get_stats(&s0);
    hak_free(NULL);
    hakmem_get_stats(&s1);
    assert_memory_equal(&s0, &s1, sizeof s0);
    assert_int_equal(hak_malloc_usable_size(NULL), 0);
}

static void test_malloc_zero_unique(void **state)
{
    (void)state;
    void *p[16];
    for (unsigned i = 0; i < 16; i++) {
        p[i] = hak_malloc(0);
        assert_non_null(p[i]);
        assert_true(hak_malloc_usable_size(p[i]) >= 1);
        for (unsigned j = 0; j < i; j++) assert_ptr_not_equal(p[i], p[j]);
    }
    for (unsigned i = 0; i < 16; i++) hak_free(p[i]);
}

static void test_pvalloc_valloc(void **state)
{
    (void)state;
    static const struct { size_t size, pages; } pv[] = { { 0, 1 }, { 1, 1 }, { 4096, 1 }, { 4097, 2 }, { 3 * MiB + 1, 769 } };
    for (unsigned i = 0; i < sizeof pv / sizeof pv[0]; i++) {
        void *p = hak_pvalloc(pv[i].size);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % PAGE, 0);
        assert_true(hak_malloc_usable_size(p) >= pv[i].pages * PAGE);
        memset(p, 1, pv[i].pages * PAGE);
        hak_free(p);
    }
    errno = 0;
    assert_null(hak_pvalloc(SIZE_MAX - 10));
    assert_int_equal(errno, ENOMEM);
    static const size_t v[] = { 0, 100, 5000, 70000, 3 * MiB };
    for (unsigned i = 0; i < sizeof v / sizeof v[0]; i++) {
        void *p = hak_valloc(v[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % PAGE, 0);
        assert_true(hak_malloc_usable_size(p) >= v[i]);
        hak_free(p);
    }
}

/* calloc zeroes recycled memory, small and large. */
static void test_calloc_zeroes_reused(void **state)
{
    (void)state;
    unsigned char *p = hak_malloc(100);
    memset(p, 0xAA, 100);
    hak_free(p);
    unsigned char *q = hak_calloc(1, 100);
    assert_ptr_equal(q, p);
    for (unsigned i = 0; i < 100; i++) assert_int_equal(q[i], 0);
    hak_free(q);

    /* The same call site twice, so the second call may reuse the block the
     * first one dirtied (BigCache rings are per site). */
    unsigned char *first = NULL;
    for (int round = 0; round < 2; round++) {
        unsigned char *c = hak_calloc(2, MiB);
        assert_non_null(c);
        for (size_t i = 0; i < 2 * MiB; i += 512) assert_int_equal(c[i], 0);
        assert_int_equal(c[2 * MiB - 1], 0);
        if (round == 0) {
            first = c;
            memset(c, 0xAA, 2 * MiB);
        } else {
            assert_int_equal(UT_PAGE_OF(c), UT_PAGE_OF(first));   /* reused, and still zeroed */
        }
        hak_free(c);
    }
}

/* A block shrunk to under half its size moves to a block of the new size
 * (what it held beyond would otherwise stay resident), contents kept. */
static void test_realloc_shrink_moves(void **state)
{
    (void)state;
    static const size_t sizes[] = { 512, 4096, 60000, 262144 };
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = hak_malloc(sizes[i]);
        for (size_t k = 0; k < sizes[i]; k++) p[k] = (unsigned char)(k + i);
        unsigned char *q = hak_realloc(p, 100);
        assert_non_null(q);
        size_t u = hak_malloc_usable_size(q);
        if (u >= 256) fail_msg("realloc(%zu-byte block, 100) kept %zu bytes", sizes[i], u);
        for (size_t k = 0; k < 100; k++) assert_int_equal(q[k], (unsigned char)(k + i));
        hak_free(q);
    }
}

/* A small block grown past its class moves, contents kept, and its old
 * block goes back to its page at once: the next malloc of the old size
 * gets it. */
static void test_realloc_growth_frees_old_block(void **state)
{
    (void)state;
    for (size_t s = 16; s <= 512; s *= 2) {
        unsigned char *p = hak_malloc(s);
        for (size_t k = 0; k < s; k++) p[k] = (unsigned char)(k * 7 + s);
        unsigned char *q = hak_realloc(p, 2 * s);
        assert_non_null(q);
        assert_ptr_not_equal(q, p);
        assert_true(hak_malloc_usable_size(q) >= 2 * s);
        for (size_t k = 0; k < s; k++) assert_int_equal(q[k], (unsigned char)(k * 7 + s));
        void *again = hak_malloc(s);
        assert_ptr_equal(again, p);
        hak_free(again);
        hak_free(q);
    }
}

static void test_usable_size_holds_request(void **state)
{
    (void)state;
    for (size_t s = 1; s < 70000; s += s < 2048 ? 1 : 997) {
        void *p = hak_malloc(s);
        size_t u = hak_malloc_usable_size(p);
        if (u < s) fail_msg("malloc(%zu): usable %zu", s, u);
        memset(p, 0x11, u);
        hak_free(p);
    }
}

/* ---- invalid pointers ------------------------------------------------- */

typedef enum { DO_FREE, DO_REALLOC, DO_USABLE } bad_op;
typedef struct bad_call { bad_op op; void *p; } bad_call;

static void child_bad_call(void *arg)
{
    bad_call *b = arg;
    if (b->op == DO_FREE) hak_free(b->p);
    else if (b->op == DO_REALLOC) (void)hak_realloc(b->p, 10);
    else (void)hak_malloc_usable_size(b->p);
}

static void expect_abort(bad_op op, void *p, const char *fn, const char *what)
{
    char want[160];
    snprintf(want, sizeof want, "hakmem: %s: %s %p\n", fn, what, p);
    bad_call b = { op, p };
    ut_child c;
    ut_run_child(child_bad_call, &b, &c);
    if (c.signo != SIGABRT)
        fail_msg("%s(%p): child %s %d, stderr \"%s\"", fn, p, c.signo ? "died of signal" : "exited with",
                 c.signo ? c.signo : c.exit_code, c.err);
    assert_int_equal(ut_count_lines(c.err), 1);
    assert_string_equal(c.err, want);
}

static void test_free_stack_address(void **state)
{
    (void)state;
    int local = 0;
    expect_abort(DO_FREE, &local, "free()", "invalid pointer");
}

/* Every build rejects a pointer no block can have (misaligned); the
 * hardened build also rejects an aligned pointer into the middle of a block. */
static void test_free_interior_small(void **state)
{
    (void)state;
    char *p = hak_malloc(64);
    expect_abort(DO_FREE, p + 8, "free()", "invalid pointer");
#ifdef UNIT_HARDENED
    expect_abort(DO_FREE, p + 16, "free()", "invalid pointer");
#endif
    hak_free(p);
}

#ifdef UNIT_HARDENED
/* Block-aligned addresses that are still no block: past what the page has
 * carved, and in the tail a span leaves after its last block. */
static void test_free_uncarved_block(void **state)
{
    (void)state;
    char *p = hak_malloc(96);
    hk_page *pg = hk_page_of(p);
    assert_true(pg->capacity < pg->reserved);
    expect_abort(DO_FREE, pg->start + (size_t)(pg->reserved - 1) * pg->block_size, "free()", "invalid pointer");
    hak_free(p);
}

static void test_free_span_tail(void **state)
{
    (void)state;
    unsigned cls = HK_CLASSES;
    for (unsigned c = 0; c < HK_CLASSES; c++) {
        uint64_t tail = (uint64_t)hk_classes[c].span * HK_SLOT_SIZE - (uint64_t)hk_classes[c].blocks * hk_classes[c].block_size;
        if (tail >= HK_ALIGN && hk_classes[c].block_size < 1024 * 1024) { cls = c; break; }
    }
    assert_true(cls < HK_CLASSES);
    char *b = hak_malloc(hk_classes[cls].block_size);
    hk_page *bp = hk_page_of(b);
    assert_int_equal(bp->cls, cls);
    expect_abort(DO_FREE, bp->start + (size_t)bp->reserved * bp->block_size, "free()", "invalid pointer");
    hak_free(b);
}
#endif

static void *interior;

static void *free_interior(void *arg)
{
    (void)arg;
    hak_free(interior);
    return NULL;
}

static void child_free_from_thread(void *arg)
{
    (void)arg;
    pthread_t t;
    if (pthread_create(&t, NULL, free_interior, NULL) == 0) pthread_join(t, NULL);
}

/* The same mistake made by a thread that does not own the page. */
static void test_free_interior_small_other_thread(void **state)
{
    (void)state;
    char *p = hak_malloc(64);
    interior = p + 8;
    char want[160];
    snprintf(want, sizeof want, "hakmem: free(): invalid pointer %p\n", interior);
    ut_child c;
    ut_run_child(child_free_from_thread, NULL, &c);
    assert_int_equal(c.signo, SIGABRT);
    assert_string_equal(c.err, want);
    hak_free(p);
}

static void test_free_wild_addresses(void **state)
{
    (void)state;
    expect_abort(DO_FREE, (void *)0x1000, "free()", "invalid pointer");
    expect_abort(DO_FREE, (void *)0x5e5e5e5e5e50ull, "free()", "invalid pointer");
    expect_abort(DO_FREE, (void *)0xdeadbeef0ull, "free()", "invalid pointer");
    /* Inside a live segment: its header, and a slot that is no page. */
    char *p = hak_malloc(64);
    hk_segment *seg = hk_segment_of(p);
    assert_int_equal(hk_chunk_kind((uintptr_t)seg), HK_CHUNK_SEGMENT);
    expect_abort(DO_FREE, (char *)seg + 64, "free()", "invalid pointer");
    /* The earlier tests may have left no slot of p's segment free: blocks
     * of five slots each end up in a segment that has one. */
    void *big[16];
    unsigned n = 0;
    hk_segment *roomy = seg;
    while (roomy->free_slots == 0 && n < 16) {
        big[n] = hak_malloc(300 * 1024);
        assert_non_null(big[n]);
        roomy = hk_segment_of(big[n++]);
    }
    unsigned free_slot = (unsigned)__builtin_ctzll(roomy->free_slots);
    assert_true(roomy->free_slots != 0 && free_slot > 0 && free_slot < HK_SLOTS);
    expect_abort(DO_FREE, (char *)roomy + (size_t)free_slot * HK_SLOT_SIZE, "free()", "invalid pointer");
    while (n > 0) hak_free(big[--n]);
    hak_free(p);
}

static void test_double_free_large(void **state)
{
    (void)state;
    void *p = hak_malloc(2 * MiB);
    hak_free(p);
    expect_abort(DO_FREE, p, "free()", "double free");
    hakmem_collect();
}

static void test_other_calls_name_themselves(void **state)
{
    (void)state;
    int local = 0;
    expect_abort(DO_REALLOC, &local, "realloc()", "invalid pointer");
    expect_abort(DO_USABLE, (void *)0x5e5e5e5e5e50ull, "malloc_usable_size()", "invalid pointer");
    /* Inside one of our blocks: realloc rejects what free does (a pointer no
     * block can have), and malloc_usable_size, which would hand out a size
     * past the block's end, any pointer but a block's start. */
    char *p = hak_malloc(64);
    expect_abort(DO_REALLOC, p + 8, "realloc()", "invalid pointer");
    expect_abort(DO_USABLE, p + 8, "malloc_usable_size()", "invalid pointer");
    expect_abort(DO_USABLE, p + 16, "malloc_usable_size()", "invalid pointer");
    hak_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malloc_too_big),
        cmocka_unit_test(test_calloc_overflow),
        cmocka_unit_test(test_reallocarray_overflow),
        cmocka_unit_test(test_posix_memalign_einval),
        cmocka_unit_test(test_aligned_alloc_einval),
        cmocka_unit_test(test_memalign_rounds_up),
        cmocka_unit_test(test_realloc_shrink_moves),
        cmocka_unit_test(test_realloc_growth_frees_old_block),
        cmocka_unit_test(test_realloc_zero_frees),
        cmocka_unit_test(test_free_null),
        cmocka_unit_test(test_malloc_zero_unique),
        cmocka_unit_test(test_pvalloc_valloc),
        cmocka_unit_test(test_calloc_zeroes_reused),
        cmocka_unit_test(test_usable_size_holds_request),
        cmocka_unit_test(test_free_stack_address),
        cmocka_unit_test(test_free_interior_small),
        cmocka_unit_test(test_free_interior_small_other_thread),
#ifdef UNIT_HARDENED
        cmocka_unit_test(test_free_uncarved_block),
        cmocka_unit_test(test_free_span_tail),
#endif
        cmocka_unit_test(test_free_wild_addresses),
        cmocka_unit_test(test_double_free_large),
        cmocka_unit_test(test_other_calls_name_themselves),
    };
    return cmocka_run_group_tests_name("api", tests, NULL, NULL);
}
