/* Large block box: one aligned mapping per block with the "HAKM" header
 * below the user pointer, usable sizes, BigCache hand-off on free, new
 * the block a thread freed last kept for its next request, blocks cut from
 * or assembled of cached ones (page faults counted, cached ranges moved
 * whole),
 * resizing in place or by moving pages, and fail-fast frees. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bigcache.h"
#include "chunk_map.h"
#include "heap.h"
#include "internal.h"
#include "hakmem.h"
#include "init.h"
#include "large.h"
#include "options.h"
#include "site.h"
#include "unit_util.h"

#define MiB ((size_t)1 << 20)
#define MAGIC_LIVE 0x48414B4Du
#define MAGIC_FREED 0x46524545u

/* Site indices the test owns; their policies are set explicitly. */
enum { SITE_NOCACHE = 1001, SITE_A = 1002, SITE_B = 1003 };

static const hk_site_policy cached = { .large_threshold = 1 << 20, .bigcache_slots = 4, .thp = 0 };
static const hk_site_policy uncached = { .large_threshold = 1 << 20, .bigcache_slots = 0, .thp = 0 };

static uint32_t magic_of(const void *p) { return *(const uint32_t *)((const uint8_t *)p - 64); }

static int group_setup(void **state)
{
    (void)state;
    hk_process_init();
    hk_site_set_policy(SITE_NOCACHE, &uncached);
    hk_site_set_policy(SITE_A, &cached);
    hk_site_set_policy(SITE_B, &cached);
    /* The tests below but one are of the machines where a page moved on
     * its own costs nothing more to touch (large.c: move_unit). */
    hk_opt.moves_trap = 0;
    return 0;
}

/* Nothing may stay cached from one test to the next. */
static int teardown(void **state)
{
    (void)state;
    hk_large_drop_kept(hk_tls_heap);   /* the test thread has a heap once a test used malloc */
    hk_bigcache_trim(0, 0);
    return 0;
}

static void test_header_and_layout(void **state)
{
    (void)state;
    hk_large_stats s0, s1, s2;
    hk_large_get_stats(&s0);
    size_t size = 3 * MiB;
    int zeroed = -1;
    uint8_t *p = hk_large_alloc(size, 0, SITE_NOCACHE, &uncached, &zeroed);
    assert_non_null(p);
    assert_int_equal(zeroed, 1);
    assert_true(UT_LARGE_OFFSET_OK(p));               /* 4 MiB-aligned mapping + header + colour */
    assert_int_equal(magic_of(p), MAGIC_LIVE);
    assert_int_equal(hk_chunk_kind((uintptr_t)p), HK_CHUNK_LARGE);
    size_t usable = hk_large_usable(p, "test");
    assert_true(usable >= size);
    assert_true(usable <= size + size / 4 + 4096);
    size_t offset = (uintptr_t)p % (4 * MiB);
    assert_int_equal((usable + offset) % 4096, 0);    /* the mapping ends on a page */
    assert_int_equal(hak_malloc_usable_size(p), usable);
    for (size_t i = 0; i < usable; i += 4096) assert_int_equal(p[i], 0);
    memset(p, 0x77, usable);                          /* every usable byte is ours */
    hk_large_get_stats(&s1);
    assert_int_equal(s1.allocs, s0.allocs + 1);
    assert_int_equal(s1.mapped_bytes, s0.mapped_bytes + usable + offset);

    hk_large_free(p, "free()");
    hk_large_get_stats(&s2);
    assert_int_equal(s2.frees, s0.frees + 1);
    assert_int_equal(s2.mapped_bytes, s0.mapped_bytes);
    assert_int_equal(hk_chunk_kind((uintptr_t)p), HK_CHUNK_NONE);
}

/* Ordinary blocks start at a cache line of their first page chosen by
 * their mapping's address, within the room their last page leaves: so
 * walks a page at a time over different blocks do not all land in one
 * cache set, and the colour costs no page.  A block that fills its last
 * page starts at 64. */
static void test_block_offsets_vary(void **state)
{
    (void)state;
    enum { N = 64 };
    uint8_t *p[N];
    uint64_t seen = 0;
    int z;
    for (int i = 0; i < N; i++) {
        p[i] = hk_large_alloc(3 * MiB, 0, SITE_NOCACHE, &uncached, &z);
        assert_true(UT_LARGE_OFFSET_OK(p[i]));
        uintptr_t off = (uintptr_t)p[i] % (4 * MiB);
        assert_int_equal(off + hk_large_usable(p[i], "test"), 3 * MiB + 4096);   /* no page more */
        seen |= 1ull << (off / 64);
    }
    assert_true(__builtin_popcountll(seen) >= 8);
    for (int i = 0; i < N; i++) hk_large_free(p[i], "free()");
    for (int i = 0; i < 4; i++) {
        uint8_t *full = hk_large_alloc(4 * MiB - 64, 0, SITE_NOCACHE, &uncached, &z);
        assert_int_equal((uintptr_t)full % (4 * MiB), 64);
        assert_int_equal(hk_large_usable(full, "test"), 4 * MiB - 64);
        hk_large_free(full, "free()");
    }
}

/* Usable sizes round up by at most a quarter, to a whole page. */
static void test_usable_sizes(void **state)
{
    (void)state;
    static const size_t sizes[] = { 1 * MiB, 1 * MiB + 1, 2 * MiB - 64, 2 * MiB, 5 * MiB + 12345, 33 * MiB };
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int z;
        void *p = hk_large_alloc(sizes[i], 0, SITE_NOCACHE, &uncached, &z);
        assert_non_null(p);
        size_t u = hk_large_usable(p, "test");
        assert_true(u >= sizes[i]);
        assert_true(u - sizes[i] <= sizes[i] / 4 + 4096);
        hk_large_free(p, "free()");
    }
}

/* A freed block goes to its site's BigCache ring, marked freed, and the
 * next allocation of that size from that site gets it back. */
static void test_freed_block_cached_and_reused(void **state)
{
    (void)state;
    hk_bigcache_stats b0, b1;
    hk_bigcache_get_stats(&b0);
    int z;
    uint8_t *p = hk_large_alloc(2 * MiB, 0, SITE_A, &cached, &z);
    assert_int_equal(z, 1);
    memset(p, 0x33, 2 * MiB);
    hk_large_free(p, "free()");
    assert_int_equal(hk_chunk_kind((uintptr_t)p), HK_CHUNK_LARGE);   /* still mapped */
    assert_int_equal(magic_of(p), MAGIC_FREED);

    uint8_t *q = hk_large_alloc(2 * MiB, 0, SITE_A, &cached, &z);
    assert_int_equal(UT_PAGE_OF(q), UT_PAGE_OF(p));
    assert_int_equal(z, 0);                           /* reused: not known to be zero */
    assert_int_equal(p[4096], 0x33);                  /* the same memory, as it was */
    assert_int_equal(magic_of(q), MAGIC_LIVE);
    uint8_t *fresh = hk_large_alloc(2 * MiB, 0, SITE_B, &cached, &z);   /* nothing cached: a miss */
    assert_int_equal(z, 1);
    hk_large_free(q, "free()");
    /* Site B's ring is empty: site A's idle memory serves it before a
     * fresh mapping would. */
    uint8_t *other = hk_large_alloc(2 * MiB, 0, SITE_B, &cached, &z);
    assert_int_equal(UT_PAGE_OF(other), UT_PAGE_OF(p));
    assert_int_equal(z, 0);
    hk_bigcache_get_stats(&b1);
    assert_int_equal(b1.hits, b0.hits + 2);
    assert_int_equal(b1.misses, b0.misses + 2);       /* p's first allocation and fresh */
    assert_int_equal(b1.puts, b0.puts + 2);
    hk_large_free(other, "free()");
    hk_large_free(fresh, "free()");
    hk_bigcache_trim(0, 0);                           /* eviction unmaps */
    assert_int_equal(hk_chunk_kind((uintptr_t)p), HK_CHUNK_NONE);
    assert_int_equal(hk_chunk_kind((uintptr_t)fresh), HK_CHUNK_NONE);
}

static uint64_t kept_blocks(void)
{
    hk_large_stats s;
    hk_large_get_stats(&s);
    return s.kept_blocks;
}

/* The kept-block tests run in threads of their own, which get heaps; the
 * test thread has none, so that in the other tests every freed block goes
 * to BigCache.  cmocka's asserts must not fire off the test thread: a
 * thread notes the line of its first failed check, and the test asserts
 * there was none. */
static int failed_line;
#define CHECK(c) do { if (!(c) && !failed_line) failed_line = __LINE__; } while (0)

static void in_thread(void *(*fn)(void *), void *arg)
{
    failed_line = 0;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fn, arg), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    if (failed_line) fail_msg("check at line %d failed", failed_line);
}

/* A thread with a heap keeps the large block it freed last for its own
 * next request of about that size: no ring is touched either way.  A
 * request from another site, or one the block exceeds by more than an
 * eighth, sends it to BigCache first, as does the next block freed. */
static void *kept_and_served(void *arg)
{
    (void)arg;
    hak_free(hak_malloc(16));                         /* the thread gets a heap */
    hk_bigcache_stats b0, b1;
    hk_bigcache_get_stats(&b0);
    hk_large_stats s;
    int z;
    uint8_t *p = hk_large_alloc(2 * MiB, 0, SITE_A, &cached, &z);
    memset(p, 0x66, 2 * MiB);
    hk_large_free(p, "free()");
    CHECK(magic_of(p) == MAGIC_FREED);                /* a second free is caught */
    hk_large_get_stats(&s);
    CHECK(s.kept_blocks == 1);
    CHECK(s.kept_bytes == 2 * MiB + 4096);
    struct mallinfo2 mi = hak_mallinfo2();
    CHECK(mi.smblks == 1);                            /* free, waiting for reuse */
    CHECK(mi.fsmblks == 2 * MiB + 4096);

    uint8_t *q = hk_large_alloc(2 * MiB - 200000, 0, SITE_A, &cached, &z);
    CHECK(UT_PAGE_OF(q) == UT_PAGE_OF(p));
    CHECK(z == 0);
    CHECK(p[4096] == 0x66);
    CHECK(magic_of(q) == MAGIC_LIVE);
    CHECK(hk_large_usable(q, "test") + (uintptr_t)q % (4 * MiB) == 2 * MiB + 4096);   /* all of it */
    CHECK(kept_blocks() == 0);
    hk_bigcache_get_stats(&b1);
    CHECK(b1.puts == b0.puts);
    CHECK(b1.hits == b0.hits + 1);

    hk_large_free(q, "free()");
    uint8_t *other = hk_large_alloc(2 * MiB, 0, SITE_B, &cached, &z);   /* not its site */
    CHECK(UT_PAGE_OF(other) == UT_PAGE_OF(p));        /* via site A's ring: B's is empty */
    CHECK(z == 0);
    CHECK(kept_blocks() == 0);
    hk_bigcache_get_stats(&b1);
    CHECK(b1.puts == b0.puts + 1);                    /* p went to site A's ring */
    CHECK(b1.cached_blocks == b0.cached_blocks);       /* and left it for site B */
    hk_large_free(other, "free()");                   /* kept */
    uint8_t *half = hk_large_alloc(MiB, 0, SITE_B, &cached, &z);         /* too small for it */
    CHECK(UT_PAGE_OF(half) == UT_PAGE_OF(other));                             /* cut from it in site B's ring */
    CHECK(hk_large_usable(half, "test") < 2 * MiB);   /* the rest stayed there */
    CHECK(kept_blocks() == 0);
    hk_large_free(half, "free()");                    /* kept */
    uint8_t *again = hk_large_alloc(2 * MiB, 0, SITE_A, &cached, &z);
    CHECK(UT_PAGE_OF(again) == UT_PAGE_OF(p));                                /* from the ring, as before */
    CHECK(kept_blocks() == 0);
    hk_large_free(again, "free()");
    CHECK(kept_blocks() == 1);
    hakmem_collect();
    CHECK(kept_blocks() == 0);
    return NULL;
}

static void test_freed_block_kept_by_its_thread(void **state)
{
    (void)state;
    in_thread(kept_and_served, NULL);
}

/* The kept block goes to BigCache at a trim, at the heap's maintenance (so
 * it stays out of the cache's ageing and budget for a millisecond of
 * allocator work at most) and at its thread's exit. */
static void *kept_then_given_up(void *arg)
{
    hak_free(hak_malloc(16));
    hk_heap *heap = hk_heap_for_thread();
    int z;
    uint8_t *p = hk_large_alloc(2 * MiB, 0, SITE_A, &cached, &z);
    hk_large_free(p, "free()");
    CHECK(kept_blocks() == 1);
    hakmem_collect();                                 /* a trim gives everything back */
    CHECK(kept_blocks() == 0);
    CHECK(hk_chunk_kind((uintptr_t)p) == HK_CHUNK_NONE);

    p = hk_large_alloc(2 * MiB, 0, SITE_A, &cached, &z);
    hk_large_free(p, "free()");
    CHECK(kept_blocks() == 1);
    usleep(10000);                    /* a maintenance pass is due (by the coarse clock) */
    hk_heap_tick(heap);
    CHECK(kept_blocks() == 0);
    hk_bigcache_stats b;
    hk_bigcache_get_stats(&b);
    CHECK(b.cached_blocks == 1);

    p = hk_large_alloc(2 * MiB, 0, SITE_A, &cached, &z);
    hk_large_free(p, "free()");
    CHECK(kept_blocks() == 1);
    *(uint8_t **)arg = p;
    return NULL;
}

static void test_kept_block_given_up(void **state)
{
    (void)state;
    uint8_t *p = NULL;
    in_thread(kept_then_given_up, &p);
    assert_int_equal(kept_blocks(), 0);              /* the thread's exit gave it up */
    hk_bigcache_stats b;
    hk_bigcache_get_stats(&b);
    assert_int_equal(b.cached_blocks, 1);
    assert_int_equal(hk_chunk_kind((uintptr_t)p), HK_CHUNK_LARGE);
    assert_int_equal(magic_of(p), MAGIC_FREED);
}

/* A cached block goes back once idle for as long as the purge delay can
 * grow (HAKMEM_PURGE_DELAY_MAX_MS, or the PURGE_DELAY_MS knob if higher),
 * at the heap's maintenance: no longer than free spans stay resident. */
static void *cached_until_purge_ceiling(void *arg)
{
    (void)arg;
    hak_free(hak_malloc(16));
    hk_heap *heap = hk_heap_for_thread();
    int z;
    uint8_t *p = hk_large_alloc(2 * MiB, 0, SITE_A, &cached, &z);
    hk_large_free(p, "free()");
    usleep(10000);
    hk_heap_tick(heap);                               /* kept -> BigCache */
    hk_bigcache_stats b;
    hk_bigcache_get_stats(&b);
    CHECK(b.cached_blocks == 1);
    usleep(30000);                                    /* well under the default second */
    hk_heap_tick(heap);
    hk_bigcache_get_stats(&b);
    CHECK(b.cached_blocks == 1);
    uint32_t saved = hk_opt.purge_delay_max_ms;
    hk_opt.purge_delay_max_ms = 0;                    /* the ceiling is the 20 ms floor */
    usleep(60000);
    hk_heap_tick(heap);
    hk_bigcache_get_stats(&b);
    hk_opt.purge_delay_max_ms = saved;
    CHECK(b.cached_blocks == 0);
    CHECK(hk_chunk_kind((uintptr_t)p) == HK_CHUNK_NONE);
    return NULL;
}

static void test_cached_block_leaves_after_purge_ceiling(void **state)
{
    (void)state;
    in_thread(cached_until_purge_ceiling, NULL);
}

static uint64_t minor_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_minflt;
}

/* A block at site A with every page written. */
static uint8_t *touched(size_t size)
{
    int z;
    uint8_t *p = hk_large_alloc(size, 0, SITE_A, &cached, &z);
    assert_non_null(p);
    memset(p, 0x44, size);
    return p;
}

/* Page faults of writing a new block of `size` at site A; the block in *out. */
static uint64_t faults_of_new(size_t size, uint8_t **out, int *zeroed)
{
    uint64_t f0 = minor_faults();
    *out = hk_large_alloc(size, 0, SITE_A, &cached, zeroed);
    assert_non_null(*out);
    memset(*out, 0x55, size);
    return minor_faults() - f0;
}

/* A smaller block replacing a cached one is cut from it where it is (no
 * system call, no fault); the rest stays cached and serves the next one
 * it can hold, moved into a new mapping. */
static void test_cached_block_cut_in_place(void **state)
{
    (void)state;
    hk_bigcache_stats b0, b1;
    hk_large_stats s0, s1;
    hk_large_get_stats(&s0);
    uint8_t *p = touched(8 * MiB);
    hk_large_free(p, "free()");
    hk_bigcache_get_stats(&b0);
    assert_int_equal(b0.cached_bytes, 8 * MiB + 4096);

    uint8_t *q;
    int z = -1;
    uint64_t f = faults_of_new(6 * MiB, &q, &z);
    assert_int_equal(UT_PAGE_OF(q), UT_PAGE_OF(p));
    assert_int_equal(z, 0);
    print_message("faults writing 6 MiB cut from a cached 8 MiB block: %llu\n", (unsigned long long)f);
    assert_true(f < 16);
    hk_bigcache_get_stats(&b1);
    assert_int_equal(b1.cached_bytes, 2 * MiB);        /* 8 MiB + a page less 6 MiB + a page */
    assert_int_equal(b1.hits, b0.hits + 1);

    uint8_t *r;
    f = faults_of_new(3 * MiB / 2, &r, &z);
    assert_true(UT_LARGE_OFFSET_OK(r));
    print_message("faults writing 1.5 MiB made of a cached 2 MiB piece: %llu\n", (unsigned long long)f);
    assert_true(f < 16);
    assert_int_equal(z, 0);
    assert_int_equal(hk_chunk_kind((uintptr_t)r), HK_CHUNK_LARGE);
    hk_bigcache_get_stats(&b1);
    assert_int_equal(b1.cached_bytes, MiB / 2 - 4096);
    hk_large_free(q, "free()");
    hk_large_free(r, "free()");
    hk_bigcache_trim(0, 0);
    hk_large_get_stats(&s1);
    assert_int_equal(s1.mapped_bytes, s0.mapped_bytes);
}

/* A bigger block is assembled from several cached ones that were not side
 * by side, their pages moved, not faulted; their old places are no longer
 * ours.  A block freed beside a cached range (the rest of the range it was
 * cut from) is joined with it. */
static void test_block_assembled_from_cached_ones(void **state)
{
    (void)state;
    hk_large_stats s0, s1;
    hk_large_get_stats(&s0);
    uint8_t *a = touched(4 * MiB), *x = touched(2 * MiB), *b = touched(4 * MiB);
    hk_large_free(a, "free()");
    hk_large_free(b, "free()");
    hk_bigcache_stats bc;
    hk_bigcache_get_stats(&bc);
    assert_int_equal(bc.cached_blocks, 2);             /* x keeps them apart */
    uint8_t *n;
    int z = -1;
    uint64_t f = faults_of_new(8 * MiB, &n, &z);
    print_message("faults writing 8 MiB assembled of two cached 4 MiB blocks: %llu\n", (unsigned long long)f);
    assert_true(f < 16);
    assert_int_equal(z, 0);
    assert_int_equal(hk_chunk_kind((uintptr_t)a), HK_CHUNK_NONE);
    assert_int_equal(hk_chunk_kind((uintptr_t)b), HK_CHUNK_NONE);
    hk_bigcache_get_stats(&bc);
    assert_int_equal(bc.cached_blocks, 0);

    /* Cut, then freed beside its rest: one cached range again. */
    uint8_t *c = touched(8 * MiB);
    hk_large_free(c, "free()");
    uint8_t *d = touched(5 * MiB);
    assert_int_equal(UT_PAGE_OF(d), UT_PAGE_OF(c));
    hk_bigcache_get_stats(&bc);
    assert_int_equal(bc.cached_blocks, 1);
    assert_int_equal(bc.cached_bytes, 3 * MiB);
    hk_large_free(d, "free()");
    hk_bigcache_get_stats(&bc);
    assert_int_equal(bc.cached_blocks, 1);
    assert_int_equal(bc.cached_bytes, 8 * MiB + 4096);
    assert_int_equal(magic_of(d), MAGIC_FREED);        /* a second free would still be caught */
    hk_large_free(x, "free()");
    hk_large_free(n, "free()");
    hk_bigcache_trim(0, 0);
    hk_large_get_stats(&s1);
    assert_int_equal(s1.mapped_bytes, s0.mapped_bytes);
}

/* A cached range moves into a new block whole, from its start: the rest
 * of a cut block, 4 KiB past a 2 MiB boundary, brings every page it holds
 * with what was written there, and writing the block faults nothing.
 * Every page is stamped with its offset in the old block before it is
 * freed. */
static void test_cached_rest_moves_whole(void **state)
{
    (void)state;
    const uint64_t mark = 0x5354414D50000000ull;     /* "STAMP" */
    uint8_t *c = touched(10 * MiB);
    uint8_t *base = (uint8_t *)UT_PAGE_OF(c);
    for (size_t off = 4096; off < 10 * MiB; off += 4096)
        *(uint64_t *)(base + off) = mark | off;
    hk_large_free(c, "free()");
    int z;
    uint8_t *d = hk_large_alloc(5 * MiB, 0, SITE_A, &cached, &z);  /* cut in place, not written */
    assert_int_equal(UT_PAGE_OF(d), UT_PAGE_OF(c));
    const size_t rest = 5 * MiB + 4096;                            /* where the rest begins */
    uint64_t f0 = minor_faults();
    uint8_t *e = hk_large_alloc(4 * MiB, 0, SITE_A, &cached, &z);  /* moved from the rest */
    assert_int_equal(z, 0);
    uint8_t *ebase = (uint8_t *)UT_PAGE_OF(e);
    size_t moved = 0;
    for (size_t off = 4096; off < 4 * MiB; off += 4096)
        moved += *(uint64_t *)(ebase + off) == (mark | (rest + off));
    memset(e, 0x66, 4 * MiB);
    uint64_t f = minor_faults() - f0;
    print_message("pages of a 4 MiB block moved in order from a cached range: %zu of %zu; faults writing it: "
                  "%llu\n", moved, 4 * MiB / 4096 - 1, (unsigned long long)f);
    assert_int_equal(moved, 4 * MiB / 4096 - 1);
    assert_true(f < 16);
    hk_large_free(d, "free()");
    hk_large_free(e, "free()");
}

/* Where a page moved on its own traps when touched (shadow paging), cached
 * memory is cut and moved in 2 MiB units.  A block cut in place keeps the
 * pages up to the next 2 MiB boundary, where its rest begins; a piece that
 * does not complete a block moves whole units of its start, its ragged
 * rest staying cached on a boundary, and a piece under 2 MiB that would
 * not complete one stays cached (the block's remainder faults in).  Every
 * page is stamped with its block and offset before the blocks are freed. */
static void stamp_pages(uint8_t *p, size_t size, uint64_t mark)
{
    uint8_t *base = (uint8_t *)UT_PAGE_OF(p);
    for (size_t off = 4096; off < size; off += 4096) *(uint64_t *)(base + off) = mark | off;
}

static int cached_at(const uint8_t *start, size_t *len)
{
    uint8_t *r = hk_bigcache_take_at(SITE_A, start, NULL, len);
    if (r == NULL) return 0;
    int evicted;
    assert_true(hk_bigcache_put(SITE_A, r, *len, 32, &evicted));
    return 1;
}

static void test_cached_memory_moves_by_2mib_where_moves_trap(void **state)
{
    (void)state;
    const uint64_t mark_a = 0x4100000000000000ull, mark_b = 0x4200000000000000ull;
    int saved = hk_opt.moves_trap;
    hk_opt.moves_trap = 1;
    hk_large_stats ls;

    /* Cut in place: 5 MiB of a cached 8 MiB block keep 6 MiB; the rest,
     * 2 MiB and the header's page, is cached from the 6 MiB boundary. */
    uint8_t *c = touched(8 * MiB);
    uint8_t *cbase = (uint8_t *)UT_PAGE_OF(c);
    hk_large_free(c, "free()");
    int z;
    uint8_t *d = hk_large_alloc(5 * MiB, 0, SITE_A, &cached, &z);
    assert_ptr_equal(UT_PAGE_OF(d), cbase);
    assert_true(hk_large_usable(d, "test") >= 6 * MiB - 4096);
    size_t len = 0;
    assert_true(cached_at(cbase + 6 * MiB, &len));
    assert_int_equal(len, 2 * MiB + 4096);
    hk_large_get_stats(&ls);
    assert_int_equal(ls.move_unit, 2 * MiB);
    hk_large_free(d, "free()");
    hk_bigcache_trim(0, 0);

    /* Assembled: two cached 3 MiB blocks each give their first 2 MiB to a
     * 5 MiB block, one after the other; their ragged rests (1 MiB and a page) stay
     * cached at their 2 MiB boundaries, too small to complete it. */
    uint8_t *a = touched(3 * MiB), *x = touched(2 * MiB), *b = touched(3 * MiB);
    uint8_t *abase = (uint8_t *)UT_PAGE_OF(a), *bbase = (uint8_t *)UT_PAGE_OF(b);
    stamp_pages(a, 3 * MiB, mark_a);
    stamp_pages(b, 3 * MiB, mark_b);
    hk_large_free(a, "free()");
    hk_large_free(b, "free()");
    uint8_t *n = hk_large_alloc(5 * MiB, 0, SITE_A, &cached, &z);
    assert_non_null(n);
    uint8_t *nbase = (uint8_t *)UT_PAGE_OF(n);
    size_t from_a = 0, from_b = 0;
    for (size_t off = 4096; off < 4 * MiB; off += 4096) {
        uint64_t w = *(uint64_t *)(nbase + off);
        if (off < 2 * MiB) from_a += w == (mark_a | off) || w == (mark_b | off);
        else from_b += w == (mark_a | (off - 2 * MiB)) || w == (mark_b | (off - 2 * MiB));
    }
    print_message("pages of a 5 MiB block moved by 2 MiB units from two cached 3 MiB blocks: %zu and %zu\n",
                  from_a, from_b);
    assert_int_equal(from_a, 2 * MiB / 4096 - 1);     /* each piece's first page held its header */
    assert_int_equal(from_b, 2 * MiB / 4096 - 1);
    assert_true(cached_at(abase + 2 * MiB, &len));
    assert_int_equal(len, MiB + 4096);
    assert_true(cached_at(bbase + 2 * MiB, &len));
    assert_int_equal(len, MiB + 4096);
    hk_large_free(n, "free()");
    hk_large_free(x, "free()");
    hk_opt.moves_trap = saved;
}

/* Where moves trap, a small block cut from a cached range holds a whole
 * 2 MiB unit: a vector doubled by realloc within it stays put, with no
 * copy and no fault, up to the unit's end. */
static void test_realloc_grows_within_its_2mib_cut(void **state)
{
    (void)state;
    int saved = hk_opt.moves_trap;
    hk_opt.moves_trap = 1;
    uint8_t *c = touched(4 * MiB);
    hk_large_free(c, "free()");
    int z;
    uint8_t *p = hk_large_alloc(128 * 1024, 0, SITE_A, &cached, &z);
    assert_ptr_equal(UT_PAGE_OF(p), UT_PAGE_OF(c));
    size_t usable = hk_large_usable(p, "test");
    assert_true(usable >= 2 * MiB - 4096);
    memset(p, 0x71, 128 * 1024);
    uint64_t f0 = minor_faults();
    for (size_t size = 256 * 1024; size <= usable; size *= 2) {
        assert_ptr_equal(hk_large_try_realloc(p, size, "realloc()"), p);
        p[size - 1] = 0x72;
    }
    assert_true(minor_faults() - f0 < 16);
    assert_int_equal(p[1000], 0x71);
    /* A shrink that would waste over half still moves. */
    assert_null(hk_large_try_realloc(p, 128 * 1024, "realloc()"));
    hk_large_free(p, "free()");
    hk_opt.moves_trap = saved;
}

/* A block cut from a cached range and then grown by realloc takes the rest
 * of that range back where it is: same pointer, no fault. */
static void test_realloc_grows_into_cached_rest(void **state)
{
    (void)state;
    uint8_t *p = touched(4 * MiB);
    hk_large_free(p, "free()");
    int z;
    uint8_t *q = hk_large_alloc(1 * MiB, 0, SITE_A, &cached, &z);
    assert_int_equal(UT_PAGE_OF(q), UT_PAGE_OF(p));
    memset(q, 0x66, 1 * MiB);
    uint64_t f0 = minor_faults();
    uint8_t *r = hk_large_try_realloc(q, 3 * MiB, "realloc()");
    assert_ptr_equal(r, q);
    assert_true(hk_large_usable(r, "test") >= 3 * MiB);
    memset(r + 1 * MiB, 0x67, 2 * MiB);
    assert_true(minor_faults() - f0 < 16);
    assert_int_equal(r[100], 0x66);
    hk_bigcache_stats bc;
    hk_bigcache_get_stats(&bc);
    assert_int_equal(bc.cached_bytes, 4 * MiB + 4096 - (3 * MiB + 4096));   /* the rest of the rest */
    hk_large_free(r, "free()");
}

static void test_aligned_blocks(void **state)
{
    (void)state;
    int z;
    uint8_t *p = hk_large_alloc(1 * MiB, 8 * MiB, SITE_A, &cached, &z);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % (8 * MiB), 0);
    assert_int_equal(magic_of(p), MAGIC_LIVE);
    assert_true(hk_large_usable(p, "test") >= 1 * MiB);
    memset(p, 1, 1 * MiB);
    /* Aligned blocks are not cached: the mapping goes at once. */
    hk_large_free(p, "free()");
    assert_int_equal(hk_chunk_kind((uintptr_t)p), HK_CHUNK_NONE);

    uint8_t *q = hak_aligned_alloc(2 * MiB, 3 * MiB);
    assert_non_null(q);
    assert_int_equal((uintptr_t)q % (2 * MiB), 0);
    assert_int_equal(hk_chunk_kind((uintptr_t)q), HK_CHUNK_LARGE);
    assert_true(hak_malloc_usable_size(q) >= 3 * MiB);
    hak_free(q);
}

static void test_try_realloc_in_place(void **state)
{
    (void)state;
    int z;
    uint8_t *p = hk_large_alloc(3 * MiB, 0, SITE_NOCACHE, &uncached, &z);
    size_t u = hk_large_usable(p, "test");
    assert_ptr_equal(hk_large_try_realloc(p, u, "realloc()"), p);          /* grow into the slack */
    assert_ptr_equal(hk_large_try_realloc(p, u / 2 + 1, "realloc()"), p);  /* shrink a little */
    assert_int_equal(hk_large_usable(p, "test"), u);
    /* Shrinking below half would waste the rest: the caller must move it. */
    assert_null(hk_large_try_realloc(p, u / 4, "realloc()"));
    assert_int_equal(magic_of(p), MAGIC_LIVE);
    hk_large_free(p, "free()");
}

static void test_try_realloc_moves_pages(void **state)
{
    (void)state;
    hk_large_stats s0, s1;
    int z;
    uint8_t *p = hk_large_alloc(3 * MiB, 0, SITE_NOCACHE, &uncached, &z);
    size_t u = hk_large_usable(p, "test");
    for (size_t i = 0; i < u; i += 4096) memcpy(p + i, &i, sizeof i);
    p[u - 1] = 0x5C;
    hk_large_get_stats(&s0);
    uintptr_t offset = (uintptr_t)p % (4 * MiB);
    uint8_t *np = hk_large_try_realloc(p, 10 * MiB, "realloc()");
    assert_non_null(np);
    assert_int_equal((uintptr_t)np % (4 * MiB), offset);   /* the pages moved, the block with them */
    assert_int_equal(magic_of(np), MAGIC_LIVE);
    size_t nu = hk_large_usable(np, "test");
    assert_true(nu >= 10 * MiB);
    for (size_t i = 0; i < u; i += 4096) {
        size_t v;
        memcpy(&v, np + i, sizeof v);
        if (v != i) { fail_msg("page at %zu lost its contents", i); return; }
    }
    assert_int_equal(np[u - 1], 0x5C);
    memset(np + u, 0xEE, nu - u);                     /* the new tail is there */
    assert_int_equal(hk_chunk_kind((uintptr_t)np), HK_CHUNK_LARGE);
    if (np != p) assert_int_equal(hk_chunk_kind((uintptr_t)p), HK_CHUNK_NONE);
    hk_large_get_stats(&s1);
    assert_int_equal(s1.mapped_bytes, s0.mapped_bytes + (nu - u));
    hk_large_free(np, "free()");
    hk_large_get_stats(&s1);
    assert_int_equal(s1.mapped_bytes, s0.mapped_bytes - (u + offset));

    /* An aligned block cannot be moved that way. */
    uint8_t *a = hk_large_alloc(1 * MiB, 8 * MiB, SITE_NOCACHE, &uncached, &z);
    size_t au = hk_large_usable(a, "test");
    assert_null(hk_large_try_realloc(a, au * 4, "realloc()"));
    assert_int_equal(magic_of(a), MAGIC_LIVE);
    hk_large_free(a, "free()");
}

/* realloc through the public API keeps the contents across growth. */
static void test_public_realloc_large(void **state)
{
    (void)state;
    uint8_t *p = hak_malloc(2 * MiB);
    for (size_t i = 0; i < 2 * MiB; i += 1024) p[i] = (uint8_t)(i >> 10);
    for (size_t i = 1; i < 100; i++) p[i] = (uint8_t)(i + 1);
    uint8_t *q = hak_realloc(p, 9 * MiB);
    assert_non_null(q);
    for (size_t i = 0; i < 2 * MiB; i += 1024) assert_int_equal(q[i], (uint8_t)(i >> 10));
    uint8_t *r = hak_realloc(q, 100);                 /* back to a small block */
    assert_int_equal(hk_chunk_kind((uintptr_t)r), HK_CHUNK_SEGMENT);
    assert_int_equal(r[0], 0);
    for (size_t i = 1; i < 100; i++) assert_int_equal(r[i], i + 1);
    hak_free(r);
}

/* A segment block grown by realloc past 64 KiB gets a mapping of its own,
 * though its site's large threshold is 1 MiB, and its next growth moves the
 * pages: the ones its owner never touched are not faulted in by a copy. */
static void test_realloc_grown_block_maps_and_moves(void **state)
{
    (void)state;
    uint8_t *p = hak_malloc(48 * 1024);
    assert_int_equal(hk_chunk_kind((uintptr_t)p), HK_CHUNK_SEGMENT);
    for (size_t i = 0; i < 48 * 1024; i++) p[i] = (uint8_t)(i * 7);
    uint8_t *q = hak_realloc(p, 256 * 1024);
    assert_non_null(q);
    assert_int_equal(hk_chunk_kind((uintptr_t)q), HK_CHUNK_LARGE);
    assert_int_equal(magic_of(q), MAGIC_LIVE);
    q[256 * 1024 - 1] = 0x3C;                         /* the last page only */
    uint8_t *r = hak_realloc(q, 1536 * 1024);
    assert_non_null(r);
    assert_int_equal(hk_chunk_kind((uintptr_t)r), HK_CHUNK_LARGE);
    for (size_t i = 0; i < 48 * 1024; i++)
        if (r[i] != (uint8_t)(i * 7)) { fail_msg("byte %zu lost on the way", i); return; }
    /* Between the copied 48 KiB and the last page: never touched. */
    const uint8_t *lo = (const uint8_t *)(((uintptr_t)r + 52 * 1024 + 4095) & ~(uintptr_t)4095);
    const uint8_t *hi = (const uint8_t *)(((uintptr_t)r + 252 * 1024) & ~(uintptr_t)4095);
    size_t in = ut_resident_pages(lo, (size_t)(hi - lo));
    if (in != 0) fail_msg("%zu of %zu untouched pages were faulted in", in, (size_t)(hi - lo) / 4096);
    assert_int_equal(r[256 * 1024 - 1], 0x3C);
    hak_free(r);
}

/* So does a packed one: not a class block first, to be copied again at
 * its next growth. */
static void test_realloc_grown_packed_block_maps(void **state)
{
    (void)state;
    uint8_t *p = hak_malloc(48 * 1024 + 100);
    assert_int_equal(hk_chunk_kind((uintptr_t)p), HK_CHUNK_PACKED);
    for (size_t i = 0; i < 48 * 1024 + 100; i++) p[i] = (uint8_t)(i * 3);
    uint8_t *q = hak_realloc(p, 80 * 1024);
    assert_non_null(q);
    assert_int_equal(hk_chunk_kind((uintptr_t)q), HK_CHUNK_LARGE);
    for (size_t i = 0; i < 48 * 1024 + 100; i++)
        if (q[i] != (uint8_t)(i * 3)) { fail_msg("byte %zu lost on the way", i); return; }
    hak_free(q);
}

/* Where no mapping can be had, a block realloc grows past 64 KiB still
 * moves, into a segment block: run in a child whose address space is
 * capped at what it has mapped. */
static void child_realloc_without_mappings(void *arg)
{
    (void)arg;
    hk_bigcache_trim(0, 0);
    hak_free(hak_malloc(100 * 1024));                 /* a page of the class, with room */
    uint8_t *p = hak_malloc(48 * 1024);
    for (size_t i = 0; i < 48 * 1024; i++) p[i] = (uint8_t)(i * 5);
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (f == NULL || fscanf(f, "%lu", &pages) != 1) _exit(2);
    fclose(f);
    struct rlimit cap = { .rlim_cur = pages * 4096 + 16 * 1024, .rlim_max = RLIM_INFINITY };
    if (setrlimit(RLIMIT_AS, &cap) != 0) _exit(2);
    errno = 0;
    uint8_t *q = hak_realloc(p, 100 * 1024);
    if (q == NULL) _exit(3);
    if (hk_chunk_kind((uintptr_t)q) != HK_CHUNK_SEGMENT) _exit(4);
    for (size_t i = 0; i < 48 * 1024; i++)
        if (q[i] != (uint8_t)(i * 5)) _exit(5);
    if (errno != 0) _exit(6);
    _exit(0);
}

static void test_realloc_grows_into_segment_without_mappings(void **state)
{
    (void)state;
    ut_child c;
    ut_run_child(child_realloc_without_mappings, NULL, &c);
    assert_int_equal(c.signo, 0);
    assert_true(c.exited);
    assert_int_equal(c.exit_code, 0);      /* 3: NULL, 4: not a segment block, 5: contents, 6: errno */
}

static void *bad_ptr;

static void child_free(void *arg)
{
    (void)arg;
    hak_free(bad_ptr);
}

static void expect_abort(void *p, const char *what)
{
    char want[128];
    snprintf(want, sizeof want, "hakmem: free(): %s %p\n", what, p);
    bad_ptr = p;
    ut_child c;
    ut_run_child(child_free, NULL, &c);
    assert_int_equal(c.signo, SIGABRT);
    assert_string_equal(c.err, want);
}

/* Frees a block, which it keeps, and waits to be told to exit. */
static int keeper_state;
static void *keep_one_until_told(void *arg)
{
    hak_free(hak_malloc(16));
    int z;
    uint8_t *p = hk_large_alloc(2 * MiB, 0, SITE_A, &cached, &z);
    hk_large_free(p, "free()");
    *(uint8_t **)arg = p;
    __atomic_store_n(&keeper_state, 1, __ATOMIC_RELEASE);
    while (__atomic_load_n(&keeper_state, __ATOMIC_ACQUIRE) != 2) usleep(100);
    return NULL;
}

static void test_bad_frees_abort(void **state)
{
    (void)state;
    int z;
    uint8_t *p = hk_large_alloc(2 * MiB, 0, SITE_A, &cached, &z);
    expect_abort(p + 16, "invalid pointer");           /* inside the block */
    expect_abort(p + 4096, "invalid pointer");
    hk_large_free(p, "free()");
    expect_abort(p, "double free");                   /* cached or kept: the header says FREE */
    uint64_t kept0 = kept_blocks();
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, keep_one_until_told, &p), 0);
    while (__atomic_load_n(&keeper_state, __ATOMIC_ACQUIRE) != 1) usleep(100);
    assert_int_equal(kept_blocks(), kept0 + 1);
    expect_abort(p, "double free");                   /* kept by a thread: the same */
    __atomic_store_n(&keeper_state, 2, __ATOMIC_RELEASE);
    assert_int_equal(pthread_join(t, NULL), 0);
    uint8_t *n = hk_large_alloc(2 * MiB, 0, SITE_NOCACHE, &uncached, &z);
    hk_large_free(n, "free()");                       /* unmapped: nobody vouches for it */
    expect_abort(n, "invalid pointer");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_header_and_layout, teardown),
        cmocka_unit_test_teardown(test_usable_sizes, teardown),
        cmocka_unit_test_teardown(test_block_offsets_vary, teardown),
        cmocka_unit_test_teardown(test_freed_block_cached_and_reused, teardown),
        cmocka_unit_test_teardown(test_freed_block_kept_by_its_thread, teardown),
        cmocka_unit_test_teardown(test_kept_block_given_up, teardown),
        cmocka_unit_test_teardown(test_cached_block_leaves_after_purge_ceiling, teardown),
        cmocka_unit_test_teardown(test_cached_block_cut_in_place, teardown),
        cmocka_unit_test_teardown(test_block_assembled_from_cached_ones, teardown),
        cmocka_unit_test_teardown(test_cached_rest_moves_whole, teardown),
        cmocka_unit_test_teardown(test_cached_memory_moves_by_2mib_where_moves_trap, teardown),
        cmocka_unit_test_teardown(test_realloc_grows_within_its_2mib_cut, teardown),
        cmocka_unit_test_teardown(test_realloc_grows_into_cached_rest, teardown),
        cmocka_unit_test_teardown(test_aligned_blocks, teardown),
        cmocka_unit_test_teardown(test_try_realloc_in_place, teardown),
        cmocka_unit_test_teardown(test_try_realloc_moves_pages, teardown),
        cmocka_unit_test_teardown(test_public_realloc_large, teardown),
        cmocka_unit_test_teardown(test_realloc_grown_block_maps_and_moves, teardown),
        cmocka_unit_test_teardown(test_realloc_grown_packed_block_maps, teardown),
        cmocka_unit_test_teardown(test_realloc_grows_into_segment_without_mappings, teardown),
        cmocka_unit_test_teardown(test_bad_frees_abort, teardown),
    };
    return cmocka_run_group_tests_name("large", tests, group_setup, NULL);
}
