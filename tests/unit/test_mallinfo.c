/* mallinfo2() and mallinfo(): the figures move with what the program holds
 * (mallinfo.c maps each field): segment blocks in uordblks, large blocks in
 * hblks/hblkhd, BigCache in smblks/fsmblks, resident free slots in keepcost,
 * arena = uordblks + fordblks; blocks of an exited thread still count. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <malloc.h>
#include <pthread.h>

#include "hakmem.h"
#include "internal.h"
#include "size_class.h"

#define MiB ((size_t)1 << 20)
enum { N = 1000, SIZE = 100 };

static void check_identity(const struct mallinfo2 *m)
{
    assert_int_equal(m->arena, m->uordblks + m->fordblks);
    assert_int_equal(m->usmblks, 0);
}

static void test_small_blocks_move_uordblks(void **state)
{
    (void)state;
    hakmem_collect();
    size_t bs = hk_classes[hk_size_class(SIZE)].block_size;
    struct mallinfo2 m0 = hak_mallinfo2();
    check_identity(&m0);
    void *p[N];
    for (int i = 0; i < N; i++) p[i] = hak_malloc(SIZE);
    struct mallinfo2 m1 = hak_mallinfo2();
    check_identity(&m1);
    assert_int_equal(m1.uordblks - m0.uordblks, N * bs);
    assert_true(m1.arena >= m1.uordblks);

    for (int i = 0; i < N / 2; i++) hak_free(p[i]);
    struct mallinfo2 m2 = hak_mallinfo2();
    check_identity(&m2);
    assert_int_equal(m1.uordblks - m2.uordblks, (N / 2) * bs);
    assert_true(m2.ordblks >= m1.ordblks + N / 2);

    for (int i = N / 2; i < N; i++) hak_free(p[i]);
    struct mallinfo2 m3 = hak_mallinfo2();
    assert_int_equal(m3.uordblks, m0.uordblks);
    hakmem_collect();
    struct mallinfo2 m4 = hak_mallinfo2();
    assert_int_equal(m4.arena, m0.arena);       /* empty segments unmapped */
    assert_int_equal(m4.keepcost, 0);           /* nothing resident left to trim */
}

static void test_large_blocks_and_bigcache(void **state)
{
    (void)state;
    hakmem_collect();
    struct mallinfo2 m0 = hak_mallinfo2();
    void *big = hak_malloc(8 * MiB);
    struct mallinfo2 m1 = hak_mallinfo2();
    assert_int_equal(m1.hblks, m0.hblks + 1);
    assert_true(m1.hblkhd >= m0.hblkhd + 8 * MiB);
    assert_int_equal(m1.uordblks, m0.uordblks);  /* large blocks are not in the arena */

    hak_free(big);                               /* waits in BigCache */
    struct mallinfo2 m2 = hak_mallinfo2();
    assert_int_equal(m2.hblks, m0.hblks);
    assert_int_equal(m2.hblkhd, m0.hblkhd);
    assert_int_equal(m2.smblks, m0.smblks + 1);
    assert_true(m2.fsmblks >= m0.fsmblks + 8 * MiB);

    hakmem_collect();
    struct mallinfo2 m3 = hak_mallinfo2();
    assert_int_equal(m3.smblks, 0);
    assert_int_equal(m3.fsmblks, 0);
}

/* Freed pages stay resident until the purge delay: keepcost shows them. */
static void test_keepcost_counts_resident_free_slots(void **state)
{
    (void)state;
    hakmem_collect();
    void *keep = hak_malloc(SIZE);                   /* the segment stays */
    enum { M = 64 };
    void *p[M];
    for (int i = 0; i < M; i++) p[i] = hak_malloc(32 * 1024);
    for (int i = 0; i < M; i++) hak_free(p[i]);
    struct mallinfo2 m = hak_mallinfo2();
    assert_true(m.keepcost >= 16 * HK_SLOT_SIZE);
    hak_free(keep);
    hakmem_collect();
}

typedef struct kept_blocks { void *p[N]; } kept_blocks;

static void *allocate_and_exit(void *arg)
{
    kept_blocks *k = arg;
    for (int i = 0; i < N; i++) k->p[i] = hak_malloc(SIZE);
    return NULL;
}

static void test_exited_thread_blocks_count(void **state)
{
    (void)state;
    hakmem_collect();
    size_t bs = hk_classes[hk_size_class(SIZE)].block_size;
    struct mallinfo2 m0 = hak_mallinfo2();
    static kept_blocks k;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, allocate_and_exit, &k), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    struct mallinfo2 m1 = hak_mallinfo2();
    check_identity(&m1);
    assert_int_equal(m1.uordblks - m0.uordblks, N * bs);
    for (int i = 0; i < N; i++) hak_free(k.p[i]);
    hakmem_collect();                                /* adopts and collects them */
    struct mallinfo2 m2 = hak_mallinfo2();
    assert_int_equal(m2.uordblks, m0.uordblks);
}

/* The old interface reports the same figures in ints. */
static void test_mallinfo_int_matches(void **state)
{
    (void)state;
    void *p = hak_malloc(SIZE);
    struct mallinfo2 m2 = hak_mallinfo2();
    struct mallinfo m = hak_mallinfo();
    assert_int_equal((size_t)m.arena, m2.arena);
    assert_int_equal((size_t)m.uordblks, m2.uordblks);
    assert_int_equal((size_t)m.fordblks, m2.fordblks);
    assert_int_equal((size_t)m.hblkhd, m2.hblkhd);
    hak_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_blocks_move_uordblks),
        cmocka_unit_test(test_large_blocks_and_bigcache),
        cmocka_unit_test(test_keepcost_counts_resident_free_slots),
        cmocka_unit_test(test_exited_thread_blocks_count),
        cmocka_unit_test(test_mallinfo_int_matches),
    };
    return cmocka_run_group_tests_name("mallinfo", tests, NULL, NULL);
}
