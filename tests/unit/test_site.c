/* Site profiler box: registration by return address, per-thread counters
 * and their flush, sampling weights, policies, and the fleet-wide key a site
 * resolves to (module and offset, checked against /proc/self/maps and
 * against a second process of this same binary). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <inttypes.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>

#include "chunk_map.h"
#include "hakmem.h"
#include "init.h"
#include "options.h"
#include "site.h"
#include "unit_util.h"

/* Return addresses no code lives at (they resolve to module "?"). */
#define FAKE_RA(n) ((uintptr_t)0x6f0000001000ull + (uintptr_t)(n) * 0x40)

static hk_options saved;

static int setup(void **state)
{
    hk_process_init();
    saved = hk_opt;
    *state = ut_heap_new();
    return 0;
}

static int teardown(void **state)
{
    ut_heap_free(*state);
    hk_opt = saved;
    hk_site_reset_policies();
    return 0;
}

typedef struct find_ctx {
    uint32_t index;
    int found;
    hk_site_view view;
} find_ctx;

static void find_cb(const hk_site_view *v, void *arg)
{
    find_ctx *c = arg;
    if (c->found) return;
    if (v->index == c->index) {
        c->view = *v;
        c->found = 1;
    }
}

static hk_site_view view_of(uint32_t index)
{
    find_ctx c = { .index = index };
    hk_site_for_each(find_cb, &c);
    if (!c.found) fail_msg("site %u not listed", index);
    return c.view;
}

/* Sites registered between a snapshot and now: the exact way to find the
 * site of a call (neighbouring functions are too close for address ranges). */
typedef struct new_ctx {
    uint8_t old[HK_SITE_MAX];
    unsigned n;
    hk_site_view view;
} new_ctx;

static void mark_cb(const hk_site_view *v, void *arg) { ((new_ctx *)arg)->old[v->index] = 1; }

static void new_cb(const hk_site_view *v, void *arg)
{
    new_ctx *c = arg;
    if (c->old[v->index]) return;
    c->n++;
    c->view = *v;
}

static void snapshot(new_ctx *c)
{
    memset(c, 0, sizeof *c);
    hk_site_for_each(mark_cb, c);
}

/* The one site registered since the snapshot, or 0. */
static int only_new_site(new_ctx *c, hk_site_view *out)
{
    c->n = 0;
    hk_site_for_each(new_cb, c);
    if (c->n != 1) return 0;
    *out = c->view;
    return 1;
}

static void count_cb(const hk_site_view *v, void *arg)
{
    (void)v;
    (*(unsigned *)arg)++;
}

static long thread_minor_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return ru.ru_minflt;
}

/* Walking the sites reads the entries in use, not the whole table: its
 * untouched pages would each cost a fault (over a hundred, more than a
 * millisecond on a VM) at a process's registration.  Must run first, while
 * the table has never been walked. */
static void test_walk_touches_only_claimed_entries(void **state)
{
    hk_heap *h = *state;
    assert_int_equal(hk_site_count(), 0);
    for (unsigned i = 0; i < 3; i++)
        assert_true(hk_site_of(h, FAKE_RA(900 + i)) < HK_SITE_MAX);
    unsigned seen = 0;
    long before = thread_minor_faults();
    hk_site_for_each(count_cb, &seen);
    long faults = thread_minor_faults() - before;
    assert_int_equal(seen, 3);
    size_t table_pages = HK_SITE_MAX * sizeof(hk_site_view) / 4096;
    if (faults * 4 > (long)table_pages)
        fail_msg("walking 3 sites took %ld page faults (the table is some %zu pages)", faults, table_pages);
}

static void test_register_once(void **state)
{
    hk_heap *h = *state;
    hk_heap *h2 = ut_heap_new();
    uint32_t n0 = hk_site_count();
    uint32_t a = hk_site_of(h, FAKE_RA(1));
    assert_true(a < HK_SITE_MAX);
    assert_int_equal(hk_site_count(), n0 + 1);
    assert_int_equal(hk_site_of(h, FAKE_RA(1)), a);
    assert_int_equal(hk_site_of(h2, FAKE_RA(1)), a);  /* another thread's heap */
    assert_int_equal(hk_site_of(NULL, FAKE_RA(1)), a);
    assert_int_equal(hk_site_count(), n0 + 1);
    uint32_t b = hk_site_of(h, FAKE_RA(2));
    assert_true(b < HK_SITE_MAX);
    assert_int_not_equal(a, b);
    assert_int_equal(hk_site_count(), n0 + 2);
    assert_int_equal(hk_site_of(h, FAKE_RA(1)), a);   /* still itself after b */
    hk_site_view v = view_of(a);
    assert_int_equal(v.address, FAKE_RA(1));
    assert_string_equal(v.module, "?");
    ut_heap_free(h2);
}

static void child_fill_table(void *arg)
{
    (void)arg;
    uint32_t first = hk_site_of(NULL, FAKE_RA(100));
    for (unsigned i = 1; hk_site_count() < HK_SITE_MAX; i++) {
        if (hk_site_of(NULL, FAKE_RA(100 + i)) == UINT32_MAX) _exit(2);
    }
    if (hk_site_of(NULL, FAKE_RA(100000)) != UINT32_MAX) _exit(3);   /* full */
    if (hk_site_of(NULL, FAKE_RA(100)) != first) _exit(4);           /* old ones still found */
    if (hk_site_count() != HK_SITE_MAX) _exit(5);
    hk_site_note_alloc(NULL, UINT32_MAX, 10, 1);       /* unattributed: ignored */
    _exit(0);
}

static void test_table_full(void **state)
{
    (void)state;
    ut_child c;
    ut_run_child(child_fill_table, NULL, &c);
    assert_int_equal(c.signo, 0);
    assert_int_equal(c.exit_code, 0);
}

static void test_counters(void **state)
{
    hk_heap *h = *state;
    uint32_t s = hk_site_of(h, FAKE_RA(3));
    for (unsigned i = 0; i < 3; i++) hk_site_note_alloc(h, s, 100, 1);
    /* Pending in the heap's local cache until flushed. */
    assert_int_equal(view_of(s).counters.allocs, 0);
    hk_site_flush_thread(h);
    hk_site_view v = view_of(s);
    assert_int_equal(v.counters.allocs, 3);
    assert_int_equal(v.counters.bytes, 300);
    assert_int_equal(v.counters.size_hist[6], 3);     /* 64..127 */
    assert_int_equal(v.counters.size_hist[7], 0);

    /* The local cache flushes by itself every 64 events. */
    uint32_t t = hk_site_of(h, FAKE_RA(4));
    for (unsigned i = 0; i < 64; i++) hk_site_note_alloc(h, t, 5000, 1);
    v = view_of(t);
    assert_int_equal(v.counters.allocs, 64);
    assert_int_equal(v.counters.bytes, 64 * 5000);
    assert_int_equal(v.counters.size_hist[12], 64);   /* 4096..8191 */

    /* Without a cached entry, counts go straight to the table. */
    hk_site_note_alloc(NULL, s, 1 << 20, 2);
    v = view_of(s);
    assert_int_equal(v.counters.allocs, 5);
    assert_int_equal(v.counters.size_hist[20], 2);

    hk_site_note_large_live(s, 3000, 1);
    hk_site_note_large_live(s, 5000, 1);
    hk_site_note_free(s, 3000);
    hk_site_note_bigcache(s, 1, 0);
    hk_site_note_bigcache(s, 1, 0);
    hk_site_note_bigcache(s, 0, 0);
    hk_site_note_bigcache(s, 0, 1);
    hk_site_note_thp(s);
    hk_site_note_slow_ns(s, 700);
    hk_site_note_slow_ns(s, 300);
    v = view_of(s);
    assert_int_equal(v.counters.frees, 1);
    assert_int_equal(v.counters.live_bytes, 5000);
    assert_int_equal(v.counters.bigcache_hits, 2);
    assert_int_equal(v.counters.bigcache_misses, 1);
    assert_int_equal(v.counters.bigcache_evictions, 1);
    assert_int_equal(v.counters.thp_blocks, 1);
    assert_int_equal(v.counters.slow_ns, 1000);
    /* Indices past the table are ignored, not written out of bounds. */
    hk_site_note_free(UINT32_MAX, 1);
    hk_site_note_bigcache(HK_SITE_MAX, 1, 0);
    hk_site_note_thp(HK_SITE_MAX + 5);
}

static uint32_t fork_site;

static void child_counts_from_zero(void *arg)
{
    (void)arg;
    hk_site_view v = view_of(fork_site);
    if (v.counters.allocs || v.counters.bytes || v.counters.frees || v.counters.size_hist[20] ||
        v.counters.bigcache_hits || v.counters.slow_ns)
        _exit(2);                                   /* the parent's counts, reported twice */
    if (v.counters.live_bytes != 4096) _exit(3);    /* the child holds the parent's blocks */
    hk_site_note_alloc(NULL, fork_site, 1 << 20, 1);
    if (view_of(fork_site).counters.allocs != 1) _exit(4);
    _exit(0);
}

/* After fork() the child reports only what it allocates itself. */
static void test_fork_child_counts_from_zero(void **state)
{
    (void)state;
    fork_site = hk_site_of(NULL, FAKE_RA(7));
    hk_site_note_alloc(NULL, fork_site, 1 << 20, 3);
    hk_site_note_large_live(fork_site, 4096, 1);
    hk_site_note_bigcache(fork_site, 1, 0);
    hk_site_note_slow_ns(fork_site, 500);
    ut_child c;
    ut_run_child(child_counts_from_zero, NULL, &c);
    assert_int_equal(c.signo, 0);
    assert_int_equal(c.exit_code, 0);
    /* The parent's own counts are untouched. */
    assert_int_equal(view_of(fork_site).counters.allocs, 3);
    hk_site_note_large_live(fork_site, 4096, 0);
}

/* A sample stands for sample_bytes of allocation of its size. */
static void test_sampling_weights(void **state)
{
    hk_heap *h = *state;
    hk_opt.sample_bytes = 4096;
    h->sample_left = -10;
    hk_site_sample(h, FAKE_RA(5), 64);                  /* weight 4096 / 64 */
    assert_int_equal(h->sample_left, 4086);
    hk_site_sample(h, FAKE_RA(5), 10000);               /* bigger than the period: 1 */
    h->sample_left = -10000;
    hk_site_sample(h, FAKE_RA(5), 100);                 /* weight 40 */
    assert_true(h->sample_left >= 0 && h->sample_left < 4096);
    assert_int_equal(h->sample_left, -10000 + 3 * 4096);
    hk_site_flush_thread(h);
    hk_site_view v = view_of(hk_site_of(h, FAKE_RA(5)));
    assert_int_equal(v.counters.allocs, 64 + 1 + 40);
    assert_int_equal(v.counters.bytes, 64 * 64 + 10000 + 40 * 100);
    assert_int_equal(v.counters.size_hist[6], 64 + 40);
    assert_int_equal(v.counters.size_hist[13], 1);
}

static void *volatile sink, *volatile sink2;

/* noipa: each function stays itself (no cloning, no identical-code folding)
 * so its call to hak_malloc has a return address inside its own body. */
static __attribute__((noipa)) void *alloc_small_here(size_t n)
{
    void *p = hak_malloc(n);
    sink = p;                   /* work after the call: no tail call, a real return address */
    return p;
}

static void *sample_thread(void *arg)
{
    (void)arg;
    void *p[1000];
    for (unsigned i = 0; i < 1000; i++) p[i] = alloc_small_here(64);
    for (unsigned i = 0; i < 1000; i++) hak_free(p[i]);
    return NULL;
}

/* Through malloc: a thread that allocates 1000 x 64 bytes with a 4 KiB
 * period takes a sample every 64 calls, each weighing 64: the estimate is
 * within one sample of the truth. */
static void test_sampled_estimate(void **state)
{
    (void)state;
    hk_opt.sample_bytes = 4096;
    static new_ctx c;
    snapshot(&c);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, sample_thread, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);     /* exit flushes its counters */
    hk_site_view v = { 0 };
    assert_true(only_new_site(&c, &v));
    assert_true(v.address > (uintptr_t)alloc_small_here && v.address < (uintptr_t)alloc_small_here + 64);
    assert_true(v.counters.allocs >= 1000 - 64 && v.counters.allocs <= 1000 + 64);
    assert_int_equal(v.counters.allocs % 64, 0);
    assert_int_equal(v.counters.bytes, v.counters.allocs * 64);
}

static void test_policy_set_get_reset(void **state)
{
    hk_heap *h = *state;
    uint32_t s = hk_site_of(h, FAKE_RA(6));
    hk_site_policy d = hk_site_policy_get(s);
    assert_int_equal(d.large_threshold, hk_opt.large_threshold);
    assert_int_equal(d.bigcache_slots, hk_opt.bigcache ? hk_opt.bigcache_slots : 0);
    assert_int_equal(d.thp, hk_opt.thp_default);
    assert_int_equal(d.from_daemon, 0);

    hk_site_policy p = { .large_threshold = 256 * 1024, .bigcache_slots = 2, .thp = 1 };
    hk_site_set_policy(s, &p);
    hk_site_policy g = hk_site_policy_get(s);
    assert_int_equal(g.large_threshold, 256 * 1024);
    assert_int_equal(g.bigcache_slots, 2);
    assert_int_equal(g.thp, 1);
    assert_int_equal(g.from_daemon, 1);
    assert_int_equal(view_of(s).policy.large_threshold, 256 * 1024);
    uint32_t other = hk_site_of(h, FAKE_RA(7));
    assert_int_equal(hk_site_policy_get(other).from_daemon, 0);

    /* Out-of-range values are clamped to what the allocator supports. */
    hk_site_policy wild = { .large_threshold = 1000, .bigcache_slots = 9, .thp = 7 };
    hk_site_set_policy(s, &wild);
    g = hk_site_policy_get(s);
    assert_int_equal(g.large_threshold, 64 * 1024);
    assert_int_equal(g.bigcache_slots, 4);
    assert_int_equal(g.thp, 1);
    wild.large_threshold = 64u << 20;
    hk_site_set_policy(s, &wild);
    assert_int_equal(hk_site_policy_get(s).large_threshold, HK_CLASS_MAX);
    /* Slots 0 is a real policy (BigCache off), not "unset". */
    hk_site_policy none = { .large_threshold = 1 << 20, .bigcache_slots = 0, .thp = 0 };
    hk_site_set_policy(s, &none);
    g = hk_site_policy_get(s);
    assert_int_equal(g.bigcache_slots, 0);
    assert_int_equal(g.from_daemon, 1);

    hk_site_reset_policies();
    g = hk_site_policy_get(s);
    assert_int_equal(g.from_daemon, 0);
    assert_int_equal(g.large_threshold, hk_opt.large_threshold);
    /* Indices outside the table: defaults, and setting is ignored. */
    hk_site_set_policy(UINT32_MAX, &p);
    assert_int_equal(hk_site_policy_get(UINT32_MAX).from_daemon, 0);
}

static __attribute__((noipa)) void *alloc_medium_here(size_t n)
{
    void *p = hak_malloc(n);
    sink2 = p;
    return p;
}

/* A published threshold decides, for that site only, where a block goes. */
static void test_policy_steers_allocation(void **state)
{
    (void)state;
    static new_ctx c;
    snapshot(&c);
    void *p = alloc_medium_here(100 * 1024);
    assert_int_equal(hk_chunk_kind((uintptr_t)p), HK_CHUNK_SEGMENT);
    hak_free(p);
    hk_site_view v = { 0 };
    assert_true(only_new_site(&c, &v));
    assert_true(v.address > (uintptr_t)alloc_medium_here && v.address < (uintptr_t)alloc_medium_here + 64);
    assert_true(v.counters.allocs >= 1);
    hk_site_policy low = { .large_threshold = 64 * 1024, .bigcache_slots = 4, .thp = 0 };
    hk_site_set_policy(v.index, &low);
    p = alloc_medium_here(100 * 1024);
    assert_int_equal(hk_chunk_kind((uintptr_t)p), HK_CHUNK_LARGE);
    hak_free(p);
    void *q = alloc_small_here(100 * 1024);            /* another site: untouched */
    assert_int_equal(hk_chunk_kind((uintptr_t)q), HK_CHUNK_SEGMENT);
    hak_free(q);
    hk_site_reset_policies();
    p = alloc_medium_here(100 * 1024);
    assert_int_equal(hk_chunk_kind((uintptr_t)p), HK_CHUNK_SEGMENT);
    hak_free(p);
}

static __attribute__((noipa)) void *alloc_resolve_here(size_t n)
{
    void *p = hak_malloc(n);
    sink = p;
    sink2 = p;
    return p;
}

/* The site of alloc_resolve_here (registered by the first call). */
static int resolve_own_site(hk_site_view *v)
{
    static uint32_t index = UINT32_MAX;
    if (index != UINT32_MAX) {
        *v = view_of(index);
        return 1;
    }
    static new_ctx c;
    snapshot(&c);
    void *p = alloc_resolve_here(HK_SAMPLED_MAX + 1024);   /* medium: always attributed */
    hak_free(p);
    if (!only_new_site(&c, v)) return 0;
    index = v->index;
    return v->address > (uintptr_t)alloc_resolve_here && v->address < (uintptr_t)alloc_resolve_here + 64;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* A site in this program resolves to this program's file, at an offset
 * that /proc/self/maps confirms; a second process of the same binary (its
 * own ASLR) agrees on module hash and offset. */
static void test_resolves_test_binary(void **state)
{
    (void)state;
    hk_site_view v = { 0 };
    assert_true(resolve_own_site(&v));
    char path[512];
    uintptr_t bias;
    assert_int_equal(ut_module_of(v.address, path, sizeof path, &bias), 0);
    assert_string_equal(base_name(v.module), base_name(path));
    assert_string_equal(base_name(path), "unit_site");
    assert_int_equal(v.offset, v.address - bias);
    assert_true(v.module_hash != 0);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "UNIT_SITE_PRINT=1 /proc/%d/exe", (int)getpid());
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    uint64_t hash = 0, off = 0, addr = 0;
    int n = fscanf(f, "%" SCNx64 " %" SCNx64 " %" SCNx64, &hash, &off, &addr);
    int rc = pclose(f);
    assert_int_equal(n, 3);
    assert_int_equal(rc, 0);
    assert_int_equal(hash, v.module_hash);
    assert_int_equal(off, v.offset);
    if (addr != v.address) print_message("second process: same offset at another address\n");
}

/* The child side of the test above. */
static int print_own_site(void)
{
    hk_process_init();
    hk_site_view v = { 0 };
    if (!resolve_own_site(&v)) return 1;
    printf("%" PRIx64 " %" PRIx64 " %" PRIxPTR "\n", v.module_hash, v.offset, v.address);
    return 0;
}

static void test_resolves_libc(void **state)
{
    hk_heap *h = *state;
    uintptr_t fn = (uintptr_t)dlsym(RTLD_DEFAULT, "getpid");
    assert_true(fn != 0);
    uint32_t s = hk_site_of(h, fn + 4);
    hk_site_view v = view_of(s);
    char path[512];
    uintptr_t bias;
    assert_int_equal(ut_module_of(fn + 4, path, sizeof path, &bias), 0);
    assert_non_null(strstr(base_name(path), "libc.so"));
    assert_string_equal(base_name(v.module), base_name(path));
    assert_int_equal(v.offset, fn + 4 - bias);
    /* Another module, another key. */
    hk_site_view own = { 0 };
    assert_true(resolve_own_site(&own));
    assert_true(own.module_hash != v.module_hash);
    /* A second site in libc shares its module hash. */
    uintptr_t fn2 = (uintptr_t)dlsym(RTLD_DEFAULT, "getppid");
    hk_site_view v2 = view_of(hk_site_of(h, fn2 + 4));
    assert_true(v2.module_hash == v.module_hash);
    assert_int_equal(v2.offset - v.offset, fn2 - fn);
}

int main(void)
{
    if (getenv("UNIT_SITE_PRINT")) return print_own_site();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_walk_touches_only_claimed_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_register_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_child_counts_from_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sampling_weights, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sampled_estimate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policy_set_get_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policy_steers_allocation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolves_test_binary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolves_libc, setup, teardown),
    };
    return cmocka_run_group_tests_name("site", tests, NULL, NULL);
}
