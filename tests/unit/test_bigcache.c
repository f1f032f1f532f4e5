/* BigCache box on its own: opaque blocks (addresses in a static array,
 * never dereferenced) and a recording eviction callback, so every put, take
 * and eviction can be checked exactly. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "bigcache.h"
#include "knobs.h"
#include "os.h"
#include "unit_util.h"

#define MiB ((size_t)1 << 20)
#define SEC 1000000000ull

static char blocks[40];
#define BLK(i) ((void *)&blocks[i])

static struct { void *block; size_t size; uint32_t site; } evicted[64];
static unsigned n_evicted;

static void record_evict(void *block, size_t size, uint32_t site)
{
    if (n_evicted < 64) {
        evicted[n_evicted].block = block;
        evicted[n_evicted].size = size;
        evicted[n_evicted].site = site;
    }
    n_evicted++;
}

/* hk_bigcache_take from the site's own ring only, with no alignment
 * preference; NULL or the block. */
static void *take(uint32_t site, size_t want)
{
    size_t size = 0;
    return hk_bigcache_take(site, want, 0, 0, &size);
}

/* The same, where other sites' rings serve when the site's is empty. */
static void *take_any(uint32_t site, size_t want)
{
    size_t size = 0;
    return hk_bigcache_take(site, want, 0, 1, &size);
}

static hk_bigcache_stats stats(void)
{
    hk_bigcache_stats s;
    hk_bigcache_get_stats(&s);
    return s;
}

static int group_setup(void **state)
{
    (void)state;
    hk_bigcache_init(record_evict);
    return 0;
}

/* Each test starts and ends with an empty cache and no recorded eviction. */
static int setup(void **state)
{
    (void)state;
    hk_bigcache_trim(0, 0);
    n_evicted = 0;
    return stats().cached_bytes == 0 ? 0 : -1;
}

static int put(uint32_t site, void *b, size_t size, unsigned slots)
{
    int ev = -1;
    int r = hk_bigcache_put(site, b, size, slots, &ev);
    assert_true(ev == 0 || ev == 1);
    return r * 2 + ev;          /* 2: cached, 3: cached with an eviction */
}

/* Run first, while no ring has held a block: walking the cache (a trim, a
 * take from an empty ring) reads only the rings that hold blocks, so the
 * other pages of the 84 KiB of rings are never touched (a kernel without
 * a shared zero page would give each page read a page of its own). */
static void test_walks_touch_only_occupied_rings(void **state)
{
    (void)state;
    const void *start;
    size_t bytes;
    hk_bigcache_memory(&start, &bytes);
    /* The pages wholly inside the rings (the first and last are shared
     * with the box's counters and other data). */
    uintptr_t lo = ((uintptr_t)start + 4095) & ~(uintptr_t)4095, hi = ((uintptr_t)start + bytes) & ~(uintptr_t)4095;
    size_t pages = (hi - lo) / 4096;
    unsigned char vec[64];
    assert_true(pages >= 16 && pages <= sizeof vec);
    int evicted_any;
    assert_int_equal(hk_bigcache_put(7, BLK(0), MiB, 4, &evicted_any), 1);
    uint64_t now = hk_now_ns();
    for (int i = 0; i < 10; i++) {
        hk_bigcache_trim(now, 3600 * SEC);      /* nothing idle that long */
        assert_null(take(9, MiB));              /* another ring, empty */
    }
    assert_int_equal(mincore((void *)lo, hi - lo, vec), 0);
    unsigned resident = 0;
    for (size_t i = 0; i < pages; i++) resident += vec[i] & 1;
    print_message("%u of %zu pages of the rings resident\n", resident, pages);
    assert_true(resident <= 2);                 /* ring 7's slots, which may straddle a page */
    assert_ptr_equal(take(7, MiB), BLK(0));
}

static void test_empty_ring(void **state)
{
    (void)state;
    size_t size = 7;
    assert_null(hk_bigcache_take(10, 4 * MiB, 0, 0, &size));
    assert_int_equal(size, 7);                         /* untouched */
    hk_bigcache_stats s0 = stats();
    hk_bigcache_count(0);
    hk_bigcache_count(1);
    hk_bigcache_count(1);
    hk_bigcache_stats s1 = stats();
    assert_int_equal(s1.misses, s0.misses + 1);
    assert_int_equal(s1.hits, s0.hits + 2);
}

static void test_put_then_take(void **state)
{
    (void)state;
    hk_bigcache_stats s0 = stats();
    assert_int_equal(put(11, BLK(0), 8 * MiB, 4), 2);
    hk_bigcache_stats s1 = stats();
    assert_int_equal(s1.puts, s0.puts + 1);
    assert_int_equal(s1.cached_bytes, 8 * MiB);
    assert_int_equal(s1.cached_blocks, 1);
    size_t size = 0;
    assert_ptr_equal(hk_bigcache_take(11, 8 * MiB, 0, 0, &size), BLK(0));
    assert_int_equal(size, 8 * MiB);
    hk_bigcache_stats s2 = stats();
    assert_int_equal(s2.cached_bytes, 0);
    assert_int_equal(s2.cached_blocks, 0);
    assert_int_equal(s2.hits, s0.hits);                /* taking counts nothing */
    assert_int_equal(s2.misses, s0.misses);
    assert_null(take(11, 8 * MiB));                    /* taken: gone */
    assert_int_equal(n_evicted, 0);
}

/* Any cached block serves: the caller cuts a bigger one and joins smaller
 * ones.  Of those that hold the request, the smallest; else the biggest. */
static void test_best_fit(void **state)
{
    (void)state;
    put(17, BLK(0), 5 * MiB, 4);
    put(17, BLK(1), 3 * MiB, 4);
    put(17, BLK(2), 4 * MiB, 4);
    put(17, BLK(3), 9 * MiB, 4);
    size_t size;
    assert_ptr_equal(hk_bigcache_take(17, 11 * MiB / 4, 0, 0, &size), BLK(1));
    assert_int_equal(size, 3 * MiB);
    assert_int_equal(stats().cached_bytes, 18 * MiB);
    assert_ptr_equal(take(17, 11 * MiB / 4), BLK(2));
    assert_ptr_equal(take(17, 1 * MiB), BLK(0));        /* far bigger than asked: still the smallest */
    assert_ptr_equal(hk_bigcache_take(17, 20 * MiB, 0, 0, &size), BLK(3));   /* none holds it: the biggest */
    assert_int_equal(size, 9 * MiB);
    put(17, BLK(4), 2 * MiB, 4);
    put(17, BLK(5), 6 * MiB, 4);
    put(17, BLK(6), 1 * MiB, 4);
    assert_ptr_equal(take(17, 7 * MiB), BLK(5));
    assert_ptr_equal(take(17, 7 * MiB), BLK(4));
    assert_ptr_equal(take(17, 7 * MiB), BLK(6));
}

/* Of the blocks that hold a request, one that holds it from an address
 * with none of the mask's bits set wins over a smaller one that does not. */
static void test_aligned_fit_preferred(void **state)
{
    (void)state;
    /* Addresses in blocks[], aligned to 16 or 1 and 17 bytes past it. */
    uintptr_t mask = 15;
    uintptr_t base = ((uintptr_t)BLK(0) + mask) & ~mask;
    void *aligned = (void *)base, *off = (void *)(base + 1), *tight = (void *)(base + 17);
    put(25, off, 100, 8);                              /* aligned from base + 16: only 85 left */
    put(25, aligned, 300, 8);
    put(25, tight, 90, 8);                             /* aligned from base + 32: 75 left */
    size_t size;
    assert_ptr_equal(hk_bigcache_take(25, 80, mask, 0, &size), off);     /* 85 >= 80 aligned, smallest such */
    assert_ptr_equal(hk_bigcache_take(25, 80, mask, 0, &size), aligned);
    assert_ptr_equal(hk_bigcache_take(25, 80, mask, 0, &size), tight);   /* holds 80, not aligned */
}

/* The block that begins at an address, or ends at one, is found and
 * taken; other rings' are not. */
static void test_take_at(void **state)
{
    (void)state;
    char *b = blocks;
    put(26, b + 0, 4, 8);                              /* [0, 4) */
    put(26, b + 10, 5, 8);                             /* [10, 15) */
    put(26, b + 20, 3, 8);                             /* [20, 23) */
    put(27, b + 15, 2, 8);                             /* [15, 17): another ring */
    size_t size = 0;
    assert_null(hk_bigcache_take_at(26, b + 4, NULL, &size));
    assert_null(hk_bigcache_take_at(26, NULL, b + 10, &size));
    assert_ptr_equal(hk_bigcache_take_at(26, NULL, b + 4, &size), b);
    assert_int_equal(size, 4);
    assert_ptr_equal(hk_bigcache_take_at(26, b + 10, NULL, &size), b + 10);
    assert_int_equal(size, 5);
    assert_null(hk_bigcache_take_at(26, b + 15, NULL, &size));   /* site 27's */
    assert_ptr_equal(hk_bigcache_take_at(27, b + 15, NULL, &size), b + 15);
    assert_int_equal(stats().cached_bytes, 3);
}

static void test_per_site_rings(void **state)
{
    (void)state;
    put(13, BLK(0), 2 * MiB, 4);
    assert_null(take(14, 2 * MiB));        /* another site does not see it */
    for (unsigned i = 0; i < 4; i++) assert_int_equal(put(15, BLK(1 + i), 2 * MiB, 4), 2);
    for (unsigned i = 0; i < 4; i++) assert_int_equal(put(16, BLK(5 + i), 2 * MiB, 4), 2);
    assert_int_equal(n_evicted, 0);                   /* full rings, no interference */
    assert_int_equal(stats().cached_bytes, 9 * 2 * MiB);
    for (unsigned i = 0; i < 4; i++) {
        void *a = take(15, 2 * MiB), *b = take(16, 2 * MiB);
        assert_true(a >= BLK(1) && a <= BLK(4));
        assert_true(b >= BLK(5) && b <= BLK(8));
    }
    assert_ptr_equal(take(13, 2 * MiB), BLK(0));
}

/* A site whose ring is empty takes the block of another ring that serves
 * it best; one whose ring holds a block takes its own, even one too small
 * (the caller joins pieces). */
static void test_other_sites_serve_an_empty_ring(void **state)
{
    (void)state;
    put(13, BLK(0), 2 * MiB, 4);
    put(20, BLK(1), 4 * MiB, 4);
    assert_null(take(14, 3 * MiB));
    assert_ptr_equal(take_any(14, 3 * MiB), BLK(1));   /* holds it; the 2 MiB does not */
    put(14, BLK(2), MiB, 4);
    assert_ptr_equal(take_any(14, 2 * MiB), BLK(2));   /* its own first */
    assert_ptr_equal(take_any(14, 2 * MiB), BLK(0));
    assert_null(take_any(14, 2 * MiB));
    assert_int_equal(stats().cached_bytes, 0);
}

/* A full ring evicts its oldest entry through the callback, in circular
 * order. */
static void test_circular_eviction(void **state)
{
    (void)state;
    hk_bigcache_stats s0 = stats();
    for (unsigned i = 0; i < 4; i++) assert_int_equal(put(18, BLK(i), (i + 1) * MiB, 4), 2);
    assert_int_equal(n_evicted, 0);
    for (unsigned i = 4; i < 10; i++) {
        assert_int_equal(put(18, BLK(i), (i + 1) * MiB, 4), 3);
        assert_int_equal(n_evicted, i - 3);
        assert_ptr_equal(evicted[i - 4].block, BLK(i - 4));
        assert_int_equal(evicted[i - 4].size, (i - 3) * MiB);
        assert_int_equal(evicted[i - 4].site, 18);
    }
    hk_bigcache_stats s1 = stats();
    assert_int_equal(s1.evictions, s0.evictions + 6);
    assert_int_equal(s1.puts, s0.puts + 10);
    assert_int_equal(s1.cached_bytes, (7 + 8 + 9 + 10) * MiB);
    for (unsigned i = 6; i < 10; i++) assert_ptr_equal(take(18, (i + 1) * MiB), BLK(i));

    /* A two-slot ring. */
    n_evicted = 0;
    put(19, BLK(0), 2 * MiB, 2);
    put(19, BLK(1), 2 * MiB, 2);
    for (unsigned i = 2; i < 6; i++) {
        assert_int_equal(put(19, BLK(i), 2 * MiB, 2), 3);
        assert_ptr_equal(evicted[i - 2].block, BLK(i - 2));
    }
}

/* Taking a block out of the middle of a full ring leaves a hole the next
 * put fills without evicting; the put after that must still evict the
 * oldest entry (the header's contract), not whichever slot follows the
 * hole. */
static void test_eviction_oldest_after_hole(void **state)
{
    (void)state;
    for (unsigned i = 0; i < 4; i++) put(20, BLK(i), (i + 1) * MiB, 4);
    assert_ptr_equal(take(20, 2 * MiB), BLK(1));
    assert_int_equal(put(20, BLK(4), 5 * MiB, 4), 2);  /* fills the hole */
    assert_int_equal(n_evicted, 0);
    assert_int_equal(put(20, BLK(5), 6 * MiB, 4), 3);
    assert_int_equal(n_evicted, 1);
    assert_ptr_equal(evicted[0].block, BLK(0));       /* the oldest */
    /* And on in age order: C, D, then E (which filled the hole). */
    static const unsigned order[] = { 2, 3, 4, 5 };
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(put(20, BLK(6 + i), (7 + i) * MiB, 4), 3);
        assert_ptr_equal(evicted[1 + i].block, BLK(order[i]));
    }
}

static void test_zero_slots_disables(void **state)
{
    (void)state;
    hk_bigcache_stats s0 = stats();
    assert_int_equal(put(21, BLK(0), 2 * MiB, 0), 0);   /* refused: caller releases */
    hk_bigcache_stats s1 = stats();
    assert_int_equal(s1.puts, s0.puts);
    assert_int_equal(s1.cached_bytes, 0);
    assert_null(take(21, 2 * MiB));
    assert_int_equal(n_evicted, 0);
    /* More slots than a ring has: clamped to the ring. */
    for (unsigned i = 0; i < HK_BIGCACHE_SLOTS; i++)
        assert_int_equal(put(22, BLK(i), 1 * MiB, HK_BIGCACHE_SLOTS + 5), 2);
    assert_int_equal(put(22, BLK(HK_BIGCACHE_SLOTS), 1 * MiB, HK_BIGCACHE_SLOTS + 5), 3);
    assert_ptr_equal(evicted[0].block, BLK(0));
    assert_int_equal(evicted[0].site, 22);
}

static void test_trim_by_idle_time(void **state)
{
    (void)state;
    const uint64_t idle = 1 * SEC;
    uint64_t a0 = hk_coarse_ns();
    put(23, BLK(0), 2 * MiB, 4);
    uint64_t a1 = hk_coarse_ns();
    struct timespec nap = { 0, 30 * 1000 * 1000 };    /* the coarse clock ticks every few ms */
    nanosleep(&nap, NULL);
    uint64_t b0 = hk_coarse_ns();
    assert_true(b0 > a1);
    put(24, BLK(1), 2 * MiB, 4);

    hk_bigcache_trim(a0 + idle, idle);                /* nobody idle that long yet */
    assert_int_equal(n_evicted, 0);
    hk_bigcache_trim(b0 + idle, idle);                /* only the older block */
    assert_int_equal(n_evicted, 1);
    assert_ptr_equal(evicted[0].block, BLK(0));
    assert_int_equal(evicted[0].size, 2 * MiB);
    assert_int_equal(stats().cached_bytes, 2 * MiB);
    hk_bigcache_trim(hk_coarse_ns(), 0);              /* 0: everything */
    assert_int_equal(n_evicted, 2);
    assert_ptr_equal(evicted[1].block, BLK(1));
    assert_int_equal(stats().cached_bytes, 0);
    assert_null(take(24, 2 * MiB));
}

/* The byte budget (BIGCACHE_KIB): beyond it the oldest block of any ring
 * goes first; a block over the whole budget is not taken; a lowered budget
 * evicts at once. */
static void test_budget_evicts_oldest_first(void **state)
{
    (void)state;
    ut_set_knob(HK_KNOB_BIGCACHE_KIB, 3 * 1024);
    assert_int_equal(put(30, BLK(0), 1 * MiB, 4), 2);
    assert_int_equal(put(31, BLK(1), 1 * MiB, 4), 2);
    assert_int_equal(put(32, BLK(2), 1 * MiB, 4), 2);
    assert_int_equal(n_evicted, 0);
    assert_int_equal(put(33, BLK(3), 1 * MiB, 4), 3);   /* another ring: BLK(0), the oldest, goes */
    assert_int_equal(n_evicted, 1);
    assert_ptr_equal(evicted[0].block, BLK(0));
    assert_int_equal(stats().cached_bytes, 3 * MiB);
    assert_ptr_equal(take(31, 1 * MiB), BLK(1));      /* the others are still there */
    assert_int_equal(put(34, BLK(4), 2 * MiB, 4), 3);   /* needs 2 MiB: BLK(2) goes, BLK(3) stays */
    assert_int_equal(n_evicted, 2);
    assert_ptr_equal(evicted[1].block, BLK(2));
    assert_int_equal(stats().cached_bytes, 3 * MiB);
    assert_int_equal(put(35, BLK(5), 4 * MiB, 4), 0);   /* over the whole budget: the caller keeps it */
    ut_set_knob(HK_KNOB_BIGCACHE_KIB, 2 * 1024);         /* lowered: BLK(3) goes now */
    assert_int_equal(n_evicted, 3);
    assert_ptr_equal(evicted[2].block, BLK(3));
    assert_int_equal(stats().cached_bytes, 2 * MiB);
    hk_knobs_reset();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_walks_touch_only_occupied_rings, setup),
        cmocka_unit_test_setup(test_empty_ring, setup),
        cmocka_unit_test_setup(test_put_then_take, setup),
        cmocka_unit_test_setup(test_best_fit, setup),
        cmocka_unit_test_setup(test_aligned_fit_preferred, setup),
        cmocka_unit_test_setup(test_take_at, setup),
        cmocka_unit_test_setup(test_per_site_rings, setup),
        cmocka_unit_test_setup(test_other_sites_serve_an_empty_ring, setup),
        cmocka_unit_test_setup(test_circular_eviction, setup),
        cmocka_unit_test_setup(test_eviction_oldest_after_hole, setup),
        cmocka_unit_test_setup(test_zero_slots_disables, setup),
        cmocka_unit_test_setup(test_trim_by_idle_time, setup),
        cmocka_unit_test_setup(test_budget_evicts_oldest_first, setup),
    };
    return cmocka_run_group_tests_name("bigcache", tests, group_setup, NULL);
}
