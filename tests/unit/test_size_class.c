/* Size classes: every size maps to the smallest class that holds it, the
 * classes are spaced tightly enough that no request wastes more than a
 * quarter (an eighth from 512 B to 8 KiB), and each class's page geometry is
 * self-consistent. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "size_class.h"

static int setup(void **state)
{
    (void)state;
    hk_size_class_init();
    return 0;
}

static void test_table_shape(void **state)
{
    (void)state;
    assert_int_equal(hk_classes[0].block_size, 16);
    assert_int_equal(hk_classes[1].block_size, 32);
    assert_int_equal(hk_classes[2].block_size, 48);
    assert_int_equal(hk_classes[3].block_size, 64);
    assert_int_equal(hk_classes[4].block_size, 80);
    assert_int_equal(hk_classes[HK_CLASSES - 1].block_size, HK_CLASS_MAX);
    for (unsigned c = 0; c < HK_CLASSES; c++) {
        assert_int_equal(hk_classes[c].block_size % HK_ALIGN, 0);
        if (c > 0) assert_true(hk_classes[c].block_size > hk_classes[c - 1].block_size);
    }
}

/* The class of every size 1..1 MiB is the smallest one that fits. */
static void test_every_size_smallest_fit(void **state)
{
    (void)state;
    for (size_t s = 1; s <= HK_CLASS_MAX; s++) {
        unsigned c = hk_size_class(s);
        if (c >= HK_CLASSES) { fail_msg("size %zu: class %u out of range", s, c); return; }
        if (hk_classes[c].block_size < s) fail_msg("size %zu: class %u holds only %u", s, c, hk_classes[c].block_size);
        if (c > 0 && hk_classes[c - 1].block_size >= s)
            fail_msg("size %zu: class %u (%u) but class %u (%u) fits", s, c, hk_classes[c].block_size,
                     c - 1, hk_classes[c - 1].block_size);
    }
    assert_int_equal(hk_size_class(0), hk_size_class(1));
    assert_int_equal(hk_size_class(HK_CLASS_MAX), HK_CLASSES - 1);
    /* One past the largest class is outside the table. */
    assert_true(hk_size_class(HK_CLASS_MAX + 1) >= HK_CLASSES);
}

static void test_waste_bounded(void **state)
{
    (void)state;
    for (size_t s = 65; s <= HK_CLASS_MAX; s++) {
        size_t bs = hk_classes[hk_size_class(s)].block_size;
        size_t parts = s > (1u << HK_FINE_FROM_LOG2) && s <= 8192 ? 8 : 4;
        if ((bs - s) * parts > s) fail_msg("size %zu gets %zu: waste %zu > 1/%zu", s, bs, bs - s, parts);
    }
    /* A page and a header: 4368 bytes take 4608, not 5120; eighths begin
     * at 512 B: 520 bytes take 576, not 640. */
    assert_int_equal(hk_classes[hk_size_class(4096 + 272)].block_size, 4608);
    assert_int_equal(hk_classes[hk_size_class(520)].block_size, 576);
}

/* Above 64 bytes, consecutive classes are at most a quarter of the power of
 * two below them apart (four classes per doubling), an eighth from 512 B
 * to 8 KiB. */
static void test_spacing(void **state)
{
    (void)state;
    for (unsigned c = 4; c < HK_CLASSES; c++) {
        uint32_t prev = hk_classes[c - 1].block_size, cur = hk_classes[c].block_size;
        uint32_t pow2 = 1u << (31 - __builtin_clz(prev));      /* largest power of two <= prev */
        uint32_t step = prev >= (1u << HK_FINE_FROM_LOG2) && prev < 8192 ? pow2 / 8 : pow2 / 4;
        if (cur - prev > step)
            fail_msg("class %u: %u after %u, step %u > %u", c, cur, prev, cur - prev, step);
    }
    for (unsigned c = 1; c < 4; c++)
        assert_int_equal(hk_classes[c].block_size - hk_classes[c - 1].block_size, 16);
}

static void test_span_blocks_consistent(void **state)
{
    (void)state;
    for (unsigned c = 0; c < HK_CLASSES; c++) {
        const hk_class_info *ci = &hk_classes[c];
        uint64_t bytes = (uint64_t)ci->span * HK_SLOT_SIZE;
        assert_true(ci->span >= 1);
        assert_true(ci->span <= HK_SLOTS - 1);               /* slot 0 is the header */
        assert_int_equal(ci->blocks, bytes / ci->block_size);
        assert_true(ci->blocks >= (ci->block_size > 128 * 1024 ? 1u : 8u));
        /* The tail left after the last block is less than a block and at
         * most a quarter of the span. */
        uint64_t tail = bytes - (uint64_t)ci->blocks * ci->block_size;
        assert_true(tail < ci->block_size);
        assert_true(tail * 4 <= bytes);
        /* No more than a quarter wider than the smallest span that holds
         * the minimum number of blocks. */
        uint64_t want = (uint64_t)(ci->block_size > 128 * 1024 ? 1 : 8) * ci->block_size;
        uint64_t min_span = (want + HK_SLOT_SIZE - 1) / HK_SLOT_SIZE;
        assert_true(ci->span >= min_span);
        assert_true(ci->span <= min_span + min_span / 4);
    }
}

static void test_init_idempotent(void **state)
{
    (void)state;
    hk_class_info copy[HK_CLASSES];
    memcpy(copy, hk_classes, sizeof copy);
    hk_size_class_init();
    assert_memory_equal(copy, hk_classes, sizeof copy);
}

/* Oracle: the first class, in table order, that holds size and whose block
 * size is a multiple of align. */
static unsigned aligned_oracle(size_t size, size_t align)
{
    for (unsigned c = 0; c < HK_CLASSES; c++) {
        if (hk_classes[c].block_size >= size && hk_classes[c].block_size % align == 0) return c;
    }
    return HK_CLASSES;
}

static void test_aligned_class(void **state)
{
    (void)state;
    for (size_t align = 16; align <= 64 * 1024; align <<= 1) {
        for (size_t size = 1; size <= HK_CLASS_MAX; size += size < 4096 ? 7 : 4093) {
            unsigned c = hk_aligned_class(size, align);
            unsigned want = aligned_oracle(size, align);
            if (c != want) fail_msg("aligned_class(%zu, %zu) = %u, expected %u", size, align, c, want);
            if (c < HK_CLASSES) {
                assert_int_equal(hk_classes[c].block_size % align, 0);
                assert_true(hk_classes[c].block_size >= size);
            }
        }
    }
    /* Concrete cases. */
    assert_int_equal(hk_classes[hk_aligned_class(65, 64)].block_size, 128);
    assert_int_equal(hk_classes[hk_aligned_class(1, 4096)].block_size, 4096);
    assert_int_equal(hk_classes[hk_aligned_class(100, 32)].block_size, 128);
    assert_int_equal(hk_classes[hk_aligned_class(5000, 4096)].block_size, 8192);
    assert_int_equal(hk_classes[hk_aligned_class(HK_CLASS_MAX, 65536)].block_size, HK_CLASS_MAX);
    /* Nothing holds more than the largest class. */
    assert_int_equal(hk_aligned_class(HK_CLASS_MAX + 1, 16), HK_CLASSES);
}

/* The reciprocal the free path uses instead of dividing: exact for every
 * offset inside a page of every class. */
static void test_block_inverse_exact(void **state)
{
    (void)state;
    for (unsigned c = 0; c < HK_CLASSES; c++) {
        uint32_t bs = hk_classes[c].block_size;
        uint64_t inv = hk_block_inv(bs);
        uint64_t span_bytes = (uint64_t)hk_classes[c].span * HK_SLOT_SIZE;
        for (uint64_t off = 0; off < span_bytes; off++) {
            uint64_t idx = (off * inv) >> HK_INV_SHIFT;
            if (idx != off / bs) { fail_msg("class %u (%u): offset %lu gives %lu", c, bs, (unsigned long)off, (unsigned long)idx); return; }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_shape),
        cmocka_unit_test(test_every_size_smallest_fit),
        cmocka_unit_test(test_waste_bounded),
        cmocka_unit_test(test_spacing),
        cmocka_unit_test(test_span_blocks_consistent),
        cmocka_unit_test(test_init_idempotent),
        cmocka_unit_test(test_aligned_class),
        cmocka_unit_test(test_block_inverse_exact),
    };
    return cmocka_run_group_tests_name("size_class", tests, setup, NULL);
}
