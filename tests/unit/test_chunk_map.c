/* Chunk map: one byte per 4 MiB says what hakmem owns there.  Checked both
 * directly and through the allocator, which must keep it in step with its
 * segments and large mappings. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>

#include "chunk_map.h"
#include "hakmem.h"

/* An address range nothing in this process maps (just below the top of the
 * 47-bit space, far from the allocator's hint window and the stack). */
#define SPARE_CHUNK ((uintptr_t)0x7f0000000000ull - 64 * HK_SEGMENT_SIZE)

static void test_out_of_range_is_none(void **state)
{
    (void)state;
    assert_int_equal(hk_chunk_kind((uintptr_t)1 << HK_ADDR_BITS), HK_CHUNK_NONE);
    assert_int_equal(hk_chunk_kind(UINTPTR_MAX), HK_CHUNK_NONE);
    assert_int_equal(hk_chunk_kind(0xffff800000000000ull), HK_CHUNK_NONE);
    assert_int_equal(hk_chunk_kind(0), HK_CHUNK_NONE);
}

/* A kind covers the whole 4 MiB chunk and nothing beside it. */
static void test_set_covers_one_chunk(void **state)
{
    (void)state;
    uintptr_t c = SPARE_CHUNK;
    assert_int_equal(hk_chunk_kind(c), HK_CHUNK_NONE);
    hk_chunk_set(c + 12345, HK_CHUNK_LARGE);
    assert_int_equal(hk_chunk_kind(c), HK_CHUNK_LARGE);
    assert_int_equal(hk_chunk_kind(c + HK_SEGMENT_SIZE - 1), HK_CHUNK_LARGE);
    assert_int_equal(hk_chunk_kind(c - 1), HK_CHUNK_NONE);
    assert_int_equal(hk_chunk_kind(c + HK_SEGMENT_SIZE), HK_CHUNK_NONE);
    hk_chunk_set(c, HK_CHUNK_SEGMENT);
    assert_int_equal(hk_chunk_kind(c + 777), HK_CHUNK_SEGMENT);
    hk_chunk_set(c, HK_CHUNK_NONE);
    assert_int_equal(hk_chunk_kind(c + 777), HK_CHUNK_NONE);
}

static void test_allocator_marks_segments(void **state)
{
    (void)state;
    void *p = hak_malloc(64);
    assert_non_null(p);
    assert_int_equal(hk_chunk_kind((uintptr_t)p), HK_CHUNK_SEGMENT);
    void *q = hak_malloc(200 * 1024);                       /* medium: still a segment block */
    assert_non_null(q);
    assert_int_equal(hk_chunk_kind((uintptr_t)q), HK_CHUNK_SEGMENT);
    hak_free(q);
    hak_free(p);
    /* Empty segments go back with a forced collection, and their chunks
     * are forgotten. */
    hakmem_collect();
    assert_int_equal(hk_chunk_kind((uintptr_t)p), HK_CHUNK_NONE);
    assert_int_equal(hk_chunk_kind((uintptr_t)q), HK_CHUNK_NONE);
}

static void test_allocator_marks_large(void **state)
{
    (void)state;
    size_t sz = 3u << 20;
    char *p = hak_malloc(sz);
    assert_non_null(p);
    assert_int_equal(hk_chunk_kind((uintptr_t)p), HK_CHUNK_LARGE);
    hak_free(p);
    hakmem_collect();                       /* also empties BigCache */
    assert_int_equal(hk_chunk_kind((uintptr_t)p), HK_CHUNK_NONE);
}

static void test_foreign_pointers_are_none(void **state)
{
    (void)state;
    int local;
    assert_int_equal(hk_chunk_kind((uintptr_t)&local), HK_CHUNK_NONE);
    void *g = malloc(100);                  /* glibc's heap */
    assert_non_null(g);
    assert_int_equal(hk_chunk_kind((uintptr_t)g), HK_CHUNK_NONE);
    free(g);
    assert_int_equal(hk_chunk_kind((uintptr_t)&test_foreign_pointers_are_none), HK_CHUNK_NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_out_of_range_is_none),
        cmocka_unit_test(test_set_covers_one_chunk),
        cmocka_unit_test(test_allocator_marks_segments),
        cmocka_unit_test(test_allocator_marks_large),
        cmocka_unit_test(test_foreign_pointers_are_none),
    };
    return cmocka_run_group_tests_name("chunk_map", tests, NULL, NULL);
}
