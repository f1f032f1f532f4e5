/* The four published scenarios (the benchmark report of 2025-10-21, whose
 * figures are in bench/published.json).
 *
 *   JSON   1000 allocations of ~64 KiB from one site
 *   MIR     100 allocations of ~256 KiB from one site
 *   VM      one 2 MiB block allocated, touched on every page and freed, repeatedly
 *   MIXED  the three sites interleaved (70% JSON, 20% MIR, 10% VM, seeded order)
 *
 * One operation is: malloc, write one byte in every 4 KiB page of the block
 * (so memory the allocator gave back to the OS costs its page faults again),
 * check the first and last byte, free.  In MIXED each site keeps its latest
 * block alive until its next operation, so blocks of the three sites are live
 * together and the allocator must keep them apart.
 *
 * Each site is its own noinline function that calls malloc and then uses the
 * result, so the call can never become a tail jump: an allocator that keys
 * its policy on the return address of malloc sees exactly three sites.
 *
 * Output: one line of key=value pairs; times are per operation, in ns, over
 * the operations of this run; faults are getrusage minor+major over the
 * measured loop. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bench_util.h"

#define KIB 1024ul
#define PAGE 4096ul

enum site { SITE_JSON, SITE_MIR, SITE_VM, NSITES };

static const char *const site_names[NSITES] = {"JSON", "MIR", "VM"};

/* Read back by nobody; keeps the compiler from dropping the touches. */
static volatile uint64_t sink;

static void die_alloc(const char *site, size_t size)
{
    fprintf(stderr, "scenarios: %s site: malloc(%zu) returned NULL\n", site, size);
    exit(71);
}

__attribute__((noinline, noclone)) static unsigned char *site_json_alloc(size_t size)
{
    unsigned char *p = malloc(size);
    if (!p)
        die_alloc("JSON", size);
    p[0] = 'J';
    return p;
}

__attribute__((noinline, noclone)) static unsigned char *site_mir_alloc(size_t size)
{
    unsigned char *p = malloc(size);
    if (!p)
        die_alloc("MIR", size);
    p[0] = 'M';
    return p;
}

__attribute__((noinline, noclone)) static unsigned char *site_vm_alloc(size_t size)
{
    unsigned char *p = malloc(size);
    if (!p)
        die_alloc("VM", size);
    p[0] = 'V';
    return p;
}

static unsigned char *site_alloc(enum site s, size_t size)
{
    switch (s) {
    case SITE_JSON: return site_json_alloc(size);
    case SITE_MIR:  return site_mir_alloc(size);
    default:        return site_vm_alloc(size);
    }
}

static size_t site_size(enum site s, bench_rng *rng)
{
    switch (s) {
    case SITE_JSON: return 60 * KIB + (size_t)bench_rng_below(rng, 8 * KIB + 1);
    case SITE_MIR:  return 240 * KIB + (size_t)bench_rng_below(rng, 32 * KIB + 1);
    default:        return 2048 * KIB;
    }
}

/* One byte per page after the first (which the site wrote), and the last byte. */
static void touch(unsigned char *p, size_t size, unsigned char tag)
{
    for (size_t off = PAGE; off < size; off += PAGE)
        p[off] = tag;
    p[size - 1] = tag;
}

static int intact(const unsigned char *p, size_t size, enum site s, unsigned char tag)
{
    static const unsigned char first[NSITES] = {'J', 'M', 'V'};
    uint64_t sum = 0;
    for (size_t off = PAGE; off < size; off += PAGE)
        sum += p[off];
    sink += sum;
    return p[0] == first[s] && p[size - 1] == tag;
}

static void corrupt(enum site s, size_t size)
{
    fprintf(stderr, "scenarios: %s block of %zu bytes changed while it was live\n",
            site_names[s], size);
    exit(72);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: scenarios --scenario json|mir|vm|mixed [--ops N] [--seed N]\n"
            "  --ops   operations in the run (default: json 1000, mir 100, vm 100, mixed 1000)\n"
            "  --seed  seed of the size and order sequence (default 1)\n");
}

int main(int argc, char **argv)
{
    const char *name = NULL;
    uint64_t ops = 0, seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--scenario") && v) {
            name = v;
            i++;
        } else if (!strcmp(a, "--ops")) {
            ops = bench_parse_u64("scenarios", a, v);
            i++;
        } else if (!strcmp(a, "--seed")) {
            seed = bench_parse_u64("scenarios", a, v);
            i++;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 64;
        }
    }
    if (!name) {
        usage(stderr);
        return 64;
    }

    int mixed = 0;
    enum site only = SITE_JSON;
    uint64_t default_ops;
    if (!strcasecmp(name, "json")) {
        only = SITE_JSON;
        default_ops = 1000;
    } else if (!strcasecmp(name, "mir")) {
        only = SITE_MIR;
        default_ops = 100;
    } else if (!strcasecmp(name, "vm")) {
        only = SITE_VM;
        default_ops = 100;
    } else if (!strcasecmp(name, "mixed")) {
        mixed = 1;
        default_ops = 1000;
    } else {
        fprintf(stderr, "scenarios: unknown scenario '%s'\n", name);
        return 64;
    }
    if (!ops)
        ops = default_ops;

    bench_rng rng;
    bench_rng_seed(&rng, seed);
    /* Sizes and the order of sites are drawn before timing starts, so the
     * timed loop does the same work under every allocator. */
    size_t *sizes = bench_map(ops * sizeof *sizes);
    unsigned char *order = bench_map(ops);
    uint64_t *ns = bench_map(ops * sizeof *ns);   /* ticks until converted */
    for (uint64_t i = 0; i < ops; i++) {
        enum site s = only;
        if (mixed) {
            uint64_t r = bench_rng_below(&rng, 100);
            s = r < 70 ? SITE_JSON : r < 90 ? SITE_MIR : SITE_VM;
        }
        order[i] = (unsigned char)s;
        sizes[i] = site_size(s, &rng);
    }

    hakmem_stats before, after;
    int on_hakmem = bench_hakmem_stats(&before);

    unsigned char *live[NSITES] = {0};
    size_t live_size[NSITES] = {0};
    unsigned char live_tag[NSITES] = {0};
    uint64_t min0, maj0, min1, maj1;
    bench_faults(&min0, &maj0);
    /* Effective timer resolution: the smallest difference between two
     * back-to-back counter reads (on this project's VM the counter moves in
     * ~10 ns steps).  Medians closer than this cannot be told apart. */
    uint64_t step = UINT64_MAX;
    for (int k = 0; k < 256; k++) {
        uint64_t a = bench_ticks_unfenced(), b = bench_ticks_unfenced();
        if (b > a && b - a < step)
            step = b - a;
    }
    if (step == UINT64_MAX)
        step = 0;
    uint64_t start = bench_now_ns(), tick0 = bench_ticks();
    for (uint64_t i = 0; i < ops; i++) {
        enum site s = (enum site)order[i];
        size_t size = sizes[i];
        unsigned char tag = (unsigned char)(i * 7 + 1);
        uint64_t t0 = bench_ticks();
        if (mixed && live[s]) {
            if (!intact(live[s], live_size[s], s, live_tag[s]))
                corrupt(s, live_size[s]);
            free(live[s]);
        }
        unsigned char *p = site_alloc(s, size);
        touch(p, size, tag);
        if (mixed) {
            live[s] = p;
            live_size[s] = size;
            live_tag[s] = tag;
        } else {
            if (!intact(p, size, s, tag))
                corrupt(s, size);
            free(p);
        }
        ns[i] = bench_ticks() - t0;
    }
    uint64_t tick1 = bench_ticks(), end = bench_now_ns();
    uint64_t elapsed = end - start;
    double ns_per_tick = bench_tick_rate(tick0, start, tick1, end);
    bench_faults(&min1, &maj1);
    for (int s = 0; s < NSITES; s++) {
        if (live[s]) {
            if (!intact(live[s], live_size[s], (enum site)s, live_tag[s]))
                corrupt((enum site)s, live_size[s]);
            free(live[s]);
        }
    }

    double med, p95, p99;
    bench_percentiles(ns, ops, &med, &p95, &p99);
    med *= ns_per_tick;
    p95 *= ns_per_tick;
    p99 *= ns_per_tick;
    uint64_t minor = min1 - min0, major = maj1 - maj0;
    printf("scenario=%s ops=%llu median_ns=%.1f p95_ns=%.1f p99_ns=%.1f mean_ns=%.1f "
           "faults=%llu minor=%llu major=%llu maxrss_kb=%ld timer_res_ns=%.1f",
           mixed ? "MIXED" : site_names[only], (unsigned long long)ops, med, p95, p99,
           (double)elapsed / (double)ops, (unsigned long long)(minor + major),
           (unsigned long long)minor, (unsigned long long)major, bench_maxrss_kb(),
           (double)step * ns_per_tick);
    if (on_hakmem && bench_hakmem_stats(&after)) {
        printf(" bigcache_hits=%llu bigcache_misses=%llu sites=%u",
               (unsigned long long)(after.bigcache_hits - before.bigcache_hits),
               (unsigned long long)(after.bigcache_misses - before.bigcache_misses),
               after.sites);
    }
    printf("\n");
    bench_unmap(sizes, ops * sizeof *sizes);
    bench_unmap(order, ops);
    bench_unmap(ns, ops * sizeof *ns);
    return fflush(stdout) == 0 ? 0 : 74;
}
