/* Process-level knobs (knobs.h): each changes what it claims, measured by the
 * process itself (RSS from /proc/self/statm, minor faults from getrusage,
 * AnonHugePages from /proc/self/smaps, pages held in a heap's queue, where a
 * block is mapped, what BigCache holds), with maintenance driven by calling
 * it with a chosen clock (one test also waits 25 ms for real, and says why). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bigcache.h"
#include "chunk_map.h"
#include "hakmem.h"
#include "heap.h"
#include "knobs.h"
#include "options.h"
#include "purge_pace.h"
#include "os.h"
#include "segment.h"
#include "site.h"
#include "size_class.h"
#include "unit_util.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define MS 1000000ull

static int setup(void **state)
{
    (void)state;
    hk_knobs_reset();
    hakmem_collect();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    hk_knobs_reset();
    hakmem_collect();
    return 0;
}

static uint64_t minor_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_minflt;
}

/* ---- apply, clamp, reset, environment --------------------------------- */

static void test_apply_clamps_and_resets(void **state)
{
    (void)state;
    uint32_t k[HK_KNOBS] = {
        [HK_KNOB_PURGE_DELAY_MS] = 1000000, [HK_KNOB_RETAINED_SEGMENTS] = 100000,
        [HK_KNOB_PARTIAL_REUSE] = 9, [HK_KNOB_THP] = 7,
        [HK_KNOB_LARGE_THRESHOLD] = 100, [HK_KNOB_BIGCACHE_KIB] = UINT32_MAX,
        [HK_KNOB_MEDIUM_PAGE_BLOCKS] = 50, [HK_KNOB_POPULATE_KIB] = 5000,
    };
    hk_knobs_apply(0xFF, k);
    assert_int_equal(hk_knob(HK_KNOB_PURGE_DELAY_MS), 60000);
    assert_int_equal(hk_knob(HK_KNOB_RETAINED_SEGMENTS), 256);
    assert_int_equal(hk_knob(HK_KNOB_PARTIAL_REUSE), 3);
    assert_int_equal(hk_knob(HK_KNOB_THP), HK_THP_SMALL | HK_THP_LARGE);
    assert_int_equal(hk_knob(HK_KNOB_LARGE_THRESHOLD), 64 * KiB);
    assert_int_equal(hk_knob(HK_KNOB_BIGCACHE_KIB), 16u << 20);
    assert_int_equal(hk_knob(HK_KNOB_MEDIUM_PAGE_BLOCKS), 8);
    assert_int_equal(hk_knob(HK_KNOB_POPULATE_KIB), 1024);
    k[HK_KNOB_MEDIUM_PAGE_BLOCKS] = 0;
    hk_knobs_apply(1u << HK_KNOB_MEDIUM_PAGE_BLOCKS, k);
    assert_int_equal(hk_knob(HK_KNOB_MEDIUM_PAGE_BLOCKS), 1);

    /* Only the knobs in the set change. */
    uint32_t other[HK_KNOBS] = { [HK_KNOB_PURGE_DELAY_MS] = 5, [HK_KNOB_PARTIAL_REUSE] = 0 };
    hk_knobs_apply(1u << HK_KNOB_PURGE_DELAY_MS, other);
    assert_int_equal(hk_knob(HK_KNOB_PURGE_DELAY_MS), 5);
    assert_int_equal(hk_knob(HK_KNOB_PARTIAL_REUSE), 3);

    hk_knobs_reset();                                     /* the suite sets no HAKMEM_* */
    assert_int_equal(hk_knob(HK_KNOB_PURGE_DELAY_MS), 20);
    assert_int_equal(hk_knob(HK_KNOB_RETAINED_SEGMENTS), 8);
    assert_int_equal(hk_knob(HK_KNOB_PARTIAL_REUSE), 1);
    assert_int_equal(hk_knob(HK_KNOB_THP), 0);
    assert_int_equal(hk_knob(HK_KNOB_LARGE_THRESHOLD), 1 << 20);
    assert_int_equal(hk_knob(HK_KNOB_BIGCACHE_KIB), 128u << 10);
    assert_int_equal(hk_knob(HK_KNOB_MEDIUM_PAGE_BLOCKS), 8);
    assert_int_equal(hk_knob(HK_KNOB_POPULATE_KIB), 0);
}

static void test_environment_sets_what_reset_returns_to(void **state)
{
    (void)state;
    setenv("HAKMEM_PURGE_DELAY_MS", "250", 1);
    setenv("HAKMEM_RETAINED_SEGMENTS", "3", 1);
    setenv("HAKMEM_PARTIAL_REUSE", "2", 1);
    setenv("HAKMEM_SMALL_THP", "1", 1);
    setenv("HAKMEM_LARGE_THP", "1", 1);
    setenv("HAKMEM_LARGE_THRESHOLD", "256K", 1);
    setenv("HAKMEM_BIGCACHE_BYTES", "3M", 1);
    setenv("HAKMEM_MEDIUM_PAGE_BLOCKS", "2", 1);
    hk_options_load();
    uint32_t zero[HK_KNOBS] = { [HK_KNOB_LARGE_THRESHOLD] = 1 << 20 };
    hk_knobs_apply(0xFF, zero);
    hk_knobs_reset();
    assert_int_equal(hk_knob(HK_KNOB_PURGE_DELAY_MS), 250);
    assert_int_equal(hk_knob(HK_KNOB_RETAINED_SEGMENTS), 3);
    assert_int_equal(hk_knob(HK_KNOB_PARTIAL_REUSE), 2);
    assert_int_equal(hk_knob(HK_KNOB_THP), HK_THP_SMALL | HK_THP_LARGE);
    setenv("HAKMEM_SMALL_THP", "0", 1);
    hk_options_load();
    assert_int_equal(hk_knob(HK_KNOB_THP), HK_THP_LARGE);
    assert_int_equal(hk_knob(HK_KNOB_LARGE_THRESHOLD), 256 * KiB);
    assert_int_equal(hk_knob(HK_KNOB_BIGCACHE_KIB), 3 * 1024);
    assert_int_equal(hk_knob(HK_KNOB_MEDIUM_PAGE_BLOCKS), 2);

    /* Out of range: ignored, the previous value stands. */
    setenv("HAKMEM_PARTIAL_REUSE", "4", 1);
    setenv("HAKMEM_RETAINED_SEGMENTS", "-1", 1);
    setenv("HAKMEM_MEDIUM_PAGE_BLOCKS", "9", 1);
    hk_options_load();
    assert_int_equal(hk_knob(HK_KNOB_PARTIAL_REUSE), 2);
    assert_int_equal(hk_knob(HK_KNOB_RETAINED_SEGMENTS), 3);
    assert_int_equal(hk_knob(HK_KNOB_MEDIUM_PAGE_BLOCKS), 2);

    /* The built-in defaults again, for the tests that follow. */
    static const char *const defaults[][2] = {
        { "HAKMEM_PURGE_DELAY_MS", "20" }, { "HAKMEM_RETAINED_SEGMENTS", "8" }, { "HAKMEM_PARTIAL_REUSE", "1" },
        { "HAKMEM_SMALL_THP", "0" }, { "HAKMEM_LARGE_THP", "0" }, { "HAKMEM_LARGE_THRESHOLD", "1M" }, { "HAKMEM_BIGCACHE_BYTES", "128M" },
        { "HAKMEM_MEDIUM_PAGE_BLOCKS", "8" },
    };
    enum { N_DEFAULTS = sizeof defaults / sizeof defaults[0] };
    for (unsigned i = 0; i < N_DEFAULTS; i++) setenv(defaults[i][0], defaults[i][1], 1);
    hk_options_load();
    for (unsigned i = 0; i < N_DEFAULTS; i++) unsetenv(defaults[i][0]);
    assert_int_equal(hk_knob(HK_KNOB_BIGCACHE_KIB), 128u << 10);
    assert_int_equal(hk_knob(HK_KNOB_MEDIUM_PAGE_BLOCKS), 8);
}

/* ---- PURGE_DELAY_MS ----------------------------------------------------- */

enum { FILL_BLOCK = 1000, FILL_MAX = 32 * 1024 };
static void *fill_blocks[FILL_MAX];

/* bytes of 1000-byte blocks, every byte written; returns how many. */
static unsigned fill(size_t bytes)
{
    unsigned n = (unsigned)(bytes / FILL_BLOCK);
    assert_true(n <= FILL_MAX);
    for (unsigned i = 0; i < n; i++) {
        fill_blocks[i] = hak_malloc(FILL_BLOCK);
        assert_non_null(fill_blocks[i]);
        memset(fill_blocks[i], 0x5A, FILL_BLOCK);
    }
    return n;
}

static void free_fill(unsigned n)
{
    for (unsigned i = 0; i < n; i++) hak_free(fill_blocks[i]);
}

static void test_purge_delay_moves_rss(void **state)
{
    (void)state;
    hk_heap *h = hk_heap_for_thread();
    ut_set_knob(HK_KNOB_RETAINED_SEGMENTS, 64);      /* empty segments stay: only the delay decides */
    ut_set_knob(HK_KNOB_PURGE_DELAY_MS, 60000);
    unsigned n = fill(30 * MiB);
    free_fill(n);
    uint64_t t = hk_coarse_ns();
    size_t rss_freed = ut_rss_bytes();

    hk_segment_maintain(h, t + 20 * MS, 0);       /* a long delay: still resident */
    size_t rss_long = ut_rss_bytes();
    print_message("RSS after freeing %u blocks: %zu KiB; after a pass 20 ms later with a 60 s delay: %zu KiB\n", n,
                  rss_freed >> 10, rss_long >> 10);
    assert_true(rss_long + 4 * MiB > rss_freed);

    ut_set_knob(HK_KNOB_PURGE_DELAY_MS, 10);         /* shortened: the next pass purges */
    hk_segment_maintain(h, t + 20 * MS, 0);
    size_t rss_short = ut_rss_bytes();
    if (rss_long < rss_short + 24 * MiB)
        fail_msg("RSS %zu KiB after a 10 ms delay passed, %zu KiB before", rss_short >> 10, rss_long >> 10);
}

/* Every free slot of the heap's segments fell idle `ms` earlier than it did:
 * the time a program would have spent between its shrink and its regrow. */
static void age_free_slots(hk_heap *h, uint64_t ms)
{
    for (hk_segment *s = h->segments; s; s = s->next)
        for (unsigned i = 1; i < HK_SLOTS; i++)
            if ((s->free_slots >> i) & 1) s->pages[i].idle_since_ns -= ms * MS;
}

/* Minor faults of the second of two shrink, 300 ms idle, regrow cycles. */
static uint64_t second_regrow_faults(size_t bytes)
{
    hk_heap *h = hk_heap_for_thread();
    uint64_t faults = 0;
    unsigned n = fill(bytes);
    for (int cycle = 0; cycle < 2; cycle++) {
        free_fill(n);
        age_free_slots(h, 300);
        hk_segment_maintain(h, hk_coarse_ns() + 25 * MS, 0);
        /* The slots are aged, not the clock: the floor delay after the last
         * fault must pass for real, or the regrow's own maintenance would
         * still purge at the floor. */
        nanosleep(&(struct timespec){ .tv_nsec = 25 * 1000000L }, NULL);
        uint64_t f0 = minor_faults();
        n = fill(bytes);
        faults = minor_faults() - f0;
    }
    free_fill(n);
    return faults;
}

/* HAKMEM_PURGE_DELAY_MAX_MS: a regrow that faults back memory purged after
 * 300 ms idle raises the delay past that, so the next regrow after the same
 * idle time finds its memory resident; with the ceiling at the floor every
 * regrow faults. */
static void test_refaults_raise_purge_delay(void **state)
{
    (void)state;
    size_t bytes = 16 * MiB;
    ut_set_knob(HK_KNOB_RETAINED_SEGMENTS, 64);
    ut_set_knob(HK_KNOB_PURGE_DELAY_MS, 20);
    hk_opt.purge_delay_max_ms = 1000;
    hk_purge_pace_reset();
    uint64_t adaptive = second_regrow_faults(bytes);
    uint32_t raised = (uint32_t)(hk_purge_delay_ns(hk_coarse_ns() + 25 * MS) / MS);   /* past the last fault */
    hakmem_collect();
    hk_opt.purge_delay_max_ms = 20;
    hk_purge_pace_reset();
    uint64_t fixed = second_regrow_faults(bytes);
    hk_opt.purge_delay_max_ms = 1000;
    print_message("second regrow of %zu MiB after 300 ms idle: %llu minor faults (delay raised to %u ms), "
                  "%llu with the delay fixed at 20 ms\n", bytes >> 20, (unsigned long long)adaptive, raised,
                  (unsigned long long)fixed);
    assert_true(raised >= 600);
    assert_true(fixed > bytes / 4096 / 2);            /* most pages fault again */
    assert_true(adaptive * 10 < fixed);
}

/* ---- RETAINED_SEGMENTS -------------------------------------------------- */

/* Minor faults of regrowing a heap that grew to `bytes`, shrank to nothing
 * and had one maintenance pass in between. */
static uint64_t regrow_faults(uint32_t retained, size_t bytes)
{
    hakmem_collect();
    ut_set_knob(HK_KNOB_RETAINED_SEGMENTS, retained);
    ut_set_knob(HK_KNOB_PURGE_DELAY_MS, 60000);
    hk_heap *h = hk_heap_for_thread();
    unsigned n = fill(bytes);
    free_fill(n);
    hk_segment_maintain(h, hk_coarse_ns(), 0);
    uint64_t f0 = minor_faults();
    n = fill(bytes);
    uint64_t faults = minor_faults() - f0;
    free_fill(n);
    return faults;
}

static void test_retained_segments_spare_faults(void **state)
{
    (void)state;
    size_t bytes = 24 * MiB;
    uint64_t with = regrow_faults(64, bytes);
    uint64_t without = regrow_faults(0, bytes);
    print_message("regrow of %zu MiB: %llu minor faults with retained segments, %llu without\n",
                  bytes >> 20, (unsigned long long)with, (unsigned long long)without);
    assert_true(without > bytes / 4096 / 2);       /* most pages fault again */
    assert_true(with * 10 < without);
}

/* ---- SMALL_THP ---------------------------------------------------------- */

/* AnonHugePages (kB) of the mapping that holds addr. */
static long anon_huge_kb(const void *addr)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    assert_non_null(f);
    char line[512];
    int inside = 0;
    long kb = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
            continue;
        }
        if (inside && sscanf(line, "AnonHugePages: %ld kB", &kb) == 1) break;
    }
    fclose(f);
    return kb;
}

static unsigned long vmstat(const char *name)
{
    FILE *f = fopen("/proc/vmstat", "r");
    char key[64];
    unsigned long v, found = 0;
    while (f && fscanf(f, "%63s %lu", key, &v) == 2) if (!strcmp(key, name)) found = v;
    if (f) fclose(f);
    return found;
}

/* A class whose pages are one slot each. */
static unsigned one_slot_class(void)
{
    unsigned cls = 0;
    while (hk_classes[cls].span != 1) cls++;
    return cls;
}

/* A segment more for heap, whose segments are full, every byte of its pages
 * written: its huge-page backing.  It goes back (empty) before the return. */
static long touch_segment_huge_kb(hk_heap *h, unsigned long *fallbacks)
{
    unsigned cls = one_slot_class();
    hk_page *pg[HK_SLOTS];
    unsigned long fb0 = vmstat("thp_fault_fallback");
    for (unsigned i = 1; i < HK_SLOTS; i++) {
        pg[i] = hk_segment_page_alloc(h, cls);
        memset(pg[i]->start - hk_page_color(pg[i]), 1, HK_SLOT_SIZE);   /* the whole slot */
    }
    *fallbacks = vmstat("thp_fault_fallback") - fb0;
    long kb = anon_huge_kb(pg[1]->start);
    for (unsigned i = 1; i < HK_SLOTS; i++) hk_segment_page_free(h, pg[i]);
    hk_segment_maintain(h, hk_coarse_ns(), 1);
    return kb;
}

static unsigned segments_of(const hk_heap *h)
{
    unsigned n = 0;
    for (const hk_segment *s = h->segments; s; s = s->next) n++;
    return n;
}

static void test_small_thp_backs_segments(void **state)
{
    (void)state;
    int mode = hk_os_thp_mode();
    if (mode == 0) {
        print_message("skipped: transparent huge pages are off in this kernel (mode \"never\")\n");
        skip();
    }
    ut_set_knob(HK_KNOB_THP, 1);
    unsigned long fallbacks;
    /* A heap that owns HK_THP_SMALL_AFTER_SEGMENTS full segments. */
    hk_heap *big = ut_heap_new();
    hk_page *held[HK_THP_SMALL_AFTER_SEGMENTS * (HK_SLOTS - 1)];
    unsigned n = 0, cls = one_slot_class();
    while (n < HK_THP_SMALL_AFTER_SEGMENTS * (HK_SLOTS - 1)) {
        held[n] = hk_segment_page_alloc(big, cls);
        assert_non_null(held[n]);
        n++;
    }
    assert_int_equal(segments_of(big), HK_THP_SMALL_AFTER_SEGMENTS);
    /* Another heap's first segments stay in small pages whatever the knob,
     * however many the process maps. */
    hk_heap *small = ut_heap_new();
    long first = touch_segment_huge_kb(small, &fallbacks);
    ut_heap_free(small);
    /* The big heap's next one is advised, and without the knob it is not. */
    long on = touch_segment_huge_kb(big, &fallbacks);
    unsigned long on_fallbacks = fallbacks;
    long off = -1;
    if (mode == 1) {                               /* "madvise": without the advice, none */
        ut_set_knob(HK_KNOB_THP, 0);
        off = touch_segment_huge_kb(big, &fallbacks);
    }
    while (n > 0) hk_segment_page_free(big, held[--n]);
    hk_segment_maintain(big, hk_coarse_ns(), 1);
    ut_heap_free(big);
    if (mode == 1) assert_int_equal(first, 0);
    if (on == 0 && on_fallbacks > 0) {
        print_message("skipped: the kernel had no free huge page (%lu fallbacks)\n", on_fallbacks);
        skip();
    }
    assert_true(on >= 2048);
    if (mode == 1) assert_int_equal(off, 0);
}

/* ---- PARTIAL_REUSE ------------------------------------------------------ */

enum { PAGES = 48, BLOCK = 256 };


typedef struct reuse_run {
    unsigned level;
    int sparse_head;            /* 0: room deep in the queue; 1: sparse pages first, then fuller ones */
    unsigned extra;             /* blocks allocated after the free pattern */
    unsigned pages_after;       /* pages of the class the heap held at the end */
} reuse_run;

static unsigned pages_held(const hk_heap *h, unsigned cls)
{
    unsigned n = 0;
    const hk_page *pg = h->queue[cls];
    if (pg) do { n++; pg = pg->next; } while (pg != h->queue[cls]);
    return n;
}

/* In a thread of its own (a fresh heap): PAGES full pages of one class, in
 * queue order newest first (filled at level 3, which never reorders a queue
 * of full pages), then a free pattern, then more blocks at the level tested. */
static void *reuse_thread(void *arg)
{
    reuse_run *r = arg;
    unsigned cls = hk_size_class(BLOCK);
    unsigned total = PAGES * hk_classes[cls].blocks;   /* at most: a coloured page holds a few less */
    unsigned first[PAGES], held[PAGES];
    void **b = calloc(total + r->extra, sizeof *b);
    ut_set_knob(HK_KNOB_PARTIAL_REUSE, 3);
    unsigned n = 0;
    for (unsigned k = 0; k < PAGES; k++) {             /* each page filled before the next is taken */
        first[k] = n;
        b[n++] = hak_malloc(BLOCK);
        held[k] = hk_page_of(b[first[k]])->reserved;
        while (n < first[k] + held[k]) b[n++] = hak_malloc(BLOCK);
    }
    total = n;
    hk_heap *h = hk_heap_for_thread();
    if (pages_held(h, cls) != PAGES) { free(b); r->pages_after = 0; return NULL; }
    /* Page k (0 = oldest) is at queue position PAGES - k from the head. */
    for (unsigned k = 0; k < PAGES; k++) {
        unsigned pos = PAGES - k;
        for (unsigned j = 0; j < held[k]; j++) {
            void **slot = &b[first[k] + j];
            int drop;
            if (!r->sparse_head) drop = pos >= 25 && pos <= 36 && j % 4 != 0;   /* 3/4 free */
            else if (pos <= 8) drop = j != 0;                                   /* one block left */
            else drop = j % 4 == 0;                                             /* 1/4 free */
            if (drop) { hak_free(*slot); *slot = NULL; }
        }
    }
    ut_set_knob(HK_KNOB_PARTIAL_REUSE, r->level);
    for (unsigned i = 0; i < r->extra; i++) b[total + i] = hak_malloc(BLOCK);
    if (r->sparse_head) {
        /* The sparse pages' last old blocks go: pages left with nothing retire. */
        for (unsigned k = PAGES - 8; k < PAGES; k++) {
            hak_free(b[first[k]]);
            b[first[k]] = NULL;
        }
    }
    r->pages_after = pages_held(h, cls);
    for (unsigned i = 0; i < total + r->extra; i++) hak_free(b[i]);
    free(b);
    return NULL;
}

static unsigned run_reuse(unsigned level, int sparse_head, unsigned extra)
{
    reuse_run r = { level, sparse_head, extra, 0 };
    pthread_t t;
    hakmem_collect();
    assert_int_equal(pthread_create(&t, NULL, reuse_thread, &r), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    hakmem_collect();
    assert_true(r.pages_after != 0);
    return r.pages_after;
}

/* Room left deep in the queue (12 pages with 3/4 free, behind 24 full
 * ones): the deeper a level looks, the fewer fresh pages it takes. */
static void test_partial_reuse_depth(void **state)
{
    (void)state;
    unsigned fresh[4];
    for (unsigned level = 0; level < 4; level++) fresh[level] = run_reuse(level, 0, 2000) - PAGES;
    print_message("fresh pages taken for 2000 blocks, levels 0..3: %u %u %u %u\n", fresh[0], fresh[1], fresh[2],
                  fresh[3]);
    assert_true(fresh[0] > fresh[1]);
    assert_true(fresh[1] > fresh[2]);
    assert_int_equal(fresh[2], 0);
    assert_int_equal(fresh[3], 0);
}

/* Sparse pages first, fuller ones behind: level 3 fills the fullest, so the
 * sparse ones drain and retire when their last old blocks go. */
static void test_partial_reuse_fullest_drains_sparse_pages(void **state)
{
    (void)state;
    unsigned held2 = run_reuse(2, 1, 1000), held3 = run_reuse(3, 1, 1000);
    print_message("pages held after the sparse pages' last blocks went: level 2 %u, level 3 %u\n", held2, held3);
    assert_true(held3 < held2);
}

/* ---- LARGE_THRESHOLD ---------------------------------------------------- */

static void test_large_threshold_moves_blocks(void **state)
{
    (void)state;
    ut_set_knob(HK_KNOB_LARGE_THRESHOLD, 128 * KiB);
    void *at = hak_malloc(128 * KiB), *below = hak_malloc(128 * KiB - 16);
    assert_int_equal(hk_chunk_kind((uintptr_t)at), HK_CHUNK_LARGE);
    assert_int_equal(hk_chunk_kind((uintptr_t)below), HK_CHUNK_SEGMENT);

    hk_knobs_reset();                              /* 1 MiB: the same size is a segment block */
    void *again = hak_malloc(128 * KiB);
    assert_int_equal(hk_chunk_kind((uintptr_t)again), HK_CHUNK_SEGMENT);
    hak_free(at);                                  /* blocks stay what they were made as */
    hak_free(below);
    hak_free(again);

    /* A site with a published policy keeps its own threshold. */
    hk_site_policy pol = { .large_threshold = 1 << 20, .bigcache_slots = 4, .thp = 0 };
    for (uint32_t s = 0; s < HK_SITE_MAX; s++) hk_site_set_policy(s, &pol);
    ut_set_knob(HK_KNOB_LARGE_THRESHOLD, 128 * KiB);
    void *published = hak_malloc(128 * KiB);
    assert_int_equal(hk_chunk_kind((uintptr_t)published), HK_CHUNK_SEGMENT);
    hak_free(published);
    hk_site_reset_policies();
}

/* ---- BIGCACHE_KIB ------------------------------------------------------- */

static void test_bigcache_budget_holds(void **state)
{
    (void)state;
    ut_set_knob(HK_KNOB_BIGCACHE_KIB, 4 * 1024);
    hk_bigcache_stats st;
    void *p[6];
    for (int i = 0; i < 6; i++) p[i] = hak_malloc(3 * MiB / 2);
    for (int i = 0; i < 6; i++) {
        hak_free(p[i]);
        hk_bigcache_get_stats(&st);
        assert_true(st.cached_bytes <= 4 * MiB);
    }
    assert_true(st.cached_bytes > 0);
    /* A block over the whole budget is never cached. */
    void *huge = hak_malloc(6 * MiB);   /* the last block freed goes from its thread to the cache */
    hk_bigcache_get_stats(&st);
    uint64_t puts0 = st.puts;
    hak_free(huge);
    hk_bigcache_get_stats(&st);
    assert_int_equal(st.puts, puts0);
    /* Lowered: evicted down at once. */
    ut_set_knob(HK_KNOB_BIGCACHE_KIB, 1024);
    hk_bigcache_get_stats(&st);
    assert_true(st.cached_bytes <= 1 * MiB);
    ut_set_knob(HK_KNOB_BIGCACHE_KIB, 0);
    hk_bigcache_get_stats(&st);
    assert_int_equal(st.cached_bytes, 0);
}

/* ---- MEDIUM_PAGE_BLOCKS ------------------------------------------------- */

/* A class of 16 KiB to 128 KiB gets pages of at least the knob's blocks
 * (pages made before keep theirs); smaller and bigger classes do not
 * follow it.  With two blocks a page, freeing both gives its slots back,
 * where an eight-block page stays with its free blocks resident. */
/* ---- POPULATE_KIB ------------------------------------------------------ */

/* Allocates (and writes) 700-byte blocks until one comes from a second
 * fresh page of the class; how many of that page's OS pages are resident
 * then.  Everything is freed and purged after. */
static unsigned second_page_resident(uint32_t kib)
{
    enum { SIZE = 700, MAX = 1024 };
    static void *blocks[MAX];
    ut_set_knob(HK_KNOB_RETAINED_SEGMENTS, 0);
    ut_set_knob(HK_KNOB_PURGE_DELAY_MS, 0);
    hakmem_collect();
    ut_set_knob(HK_KNOB_POPULATE_KIB, kib);
    unsigned n = 0, resident = 0;
    uintptr_t first_slot = 0;
    while (n < MAX) {
        void *b = hak_malloc(SIZE);
        assert_non_null(b);
        memset(b, 1, SIZE);
        blocks[n++] = b;
        uintptr_t slot = (uintptr_t)b & ~(uintptr_t)(HK_SLOT_SIZE - 1);
        if (first_slot == 0) first_slot = slot;
        if (slot != first_slot) {
            resident = (unsigned)ut_resident_pages((void *)slot, HK_SLOT_SIZE);
            break;
        }
    }
    assert_true(n < MAX);
    for (unsigned i = 0; i < n; i++) hak_free(blocks[i]);
    hakmem_collect();
    return resident;
}

static void test_populate_faults_ahead(void **state)
{
    (void)state;
    unsigned without = second_page_resident(0);
    unsigned with = second_page_resident(64);
    unsigned part = second_page_resident(16);
    print_message("second page of 700-byte blocks, one block carved: %u of %zu OS pages resident; "
                  "%u with POPULATE_KIB=64, %u with 16\n", without, HK_SLOT_SIZE / 4096, with, part);
    assert_true(without <= 2);                        /* faulted in as carved */
    assert_int_equal(with, HK_SLOT_SIZE / 4096);       /* all of it at once */
    assert_true(part >= 4 && part <= 5);               /* 16 KiB from where the carving starts */
}

static void test_medium_page_blocks_sizes_pages(void **state)
{
    (void)state;
    hk_heap *h = ut_heap_new();
    unsigned c64 = hk_size_class(64 * KiB), c8 = hk_size_class(8 * KiB), c256 = hk_size_class(256 * KiB);
    hk_page *eight = hk_segment_page_alloc(h, c64);
    assert_int_equal(eight->reserved, 8);
    assert_int_equal(eight->span, 8);
    ut_set_knob(HK_KNOB_MEDIUM_PAGE_BLOCKS, 2);
    hk_page *two = hk_segment_page_alloc(h, c64);
    assert_int_equal(two->reserved, 2);
    assert_int_equal(two->span, 2);
    assert_int_equal(eight->reserved, 8);             /* unchanged */
    hk_page *small = hk_segment_page_alloc(h, c8), *big = hk_segment_page_alloc(h, c256);
    assert_int_equal(small->reserved, hk_classes[c8].blocks);
    assert_int_equal(big->reserved, 1);
    unsigned c16 = hk_size_class(16 * KiB);
    hk_page *p16 = hk_segment_page_alloc(h, c16);
    assert_int_equal(p16->span, 1);                    /* one slot already holds four */
    assert_int_equal(p16->reserved, 4);
    hk_segment_page_free(h, eight);
    hk_segment_page_free(h, two);
    hk_segment_page_free(h, small);
    hk_segment_page_free(h, big);
    hk_segment_page_free(h, p16);
    hk_segment_maintain(h, hk_coarse_ns(), 1);
    ut_heap_free(h);

    /* Through malloc: two blocks of 48 KiB fill a page; freed, it goes. */
    unsigned c48 = hk_size_class(48 * KiB);
    hk_heap *me = hk_heap_for_thread();
    void *a = hak_malloc(48 * KiB), *b = hak_malloc(48 * KiB);
    hk_page *pg = hk_page_of(a);
    assert_int_equal(pg->reserved, 2);
    assert_ptr_equal(hk_page_of(b), pg);
    void *c = hak_malloc(48 * KiB);                    /* the page is full: another one is current */
    assert_ptr_not_equal(me->current[c48], pg);
    hak_free(a);
    hak_free(b);
    assert_int_equal(pg->in_use, 0);                   /* retired: its slots are a free span */
    hak_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_apply_clamps_and_resets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_environment_sets_what_reset_returns_to, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge_delay_moves_rss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refaults_raise_purge_delay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retained_segments_spare_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_thp_backs_segments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_reuse_depth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_reuse_fullest_drains_sparse_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_threshold_moves_blocks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bigcache_budget_holds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_medium_page_blocks_sizes_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_populate_faults_ahead, setup, teardown),
    };
    return cmocka_run_group_tests_name("knobs", tests, NULL, NULL);
}
