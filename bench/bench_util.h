/* Shared helpers of the benchmark programs: a seeded generator (so every
 * allocator sees the same sequence of requests), clocks, resource usage,
 * percentiles, argument parsing, and a look at hakmem's own counters when
 * hakmem happens to be the allocator in the process. */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "hakmem.h"

/* xorshift64*: tiny, fast and fully determined by its seed. */
typedef struct bench_rng {
    uint64_t s;
} bench_rng;

static inline void bench_rng_seed(bench_rng *r, uint64_t seed)
{
    /* Zero is the one state xorshift never leaves; mix so nearby seeds differ. */
    r->s = (seed ^ 0x9E3779B97F4A7C15ull) * 0xBF58476D1CE4E5B9ull;
    if (r->s == 0)
        r->s = 1;
}

static inline uint64_t bench_rng_next(bench_rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [0, n), n > 0.  The modulo bias is irrelevant at these n. */
static inline uint64_t bench_rng_below(bench_rng *r, uint64_t n)
{
    return bench_rng_next(r) % n;
}

uint64_t bench_now_ns(void);

/* A cycle counter for timing single operations: clock_gettime costs ~30 ns
 * and ticks in 10 ns steps on some virtual machines, too coarse for
 * operations of 100-300 ns.  Converted to ns with a rate measured against
 * CLOCK_MONOTONIC over the same loop (bench_tick_rate).  Falls back to
 * nanoseconds where there is no constant-rate counter. */
static inline uint64_t bench_ticks(void)
{
#if defined(__x86_64__)
    uint32_t lo, hi;
    /* lfence keeps the read from moving above the work it closes or opens. */
    __asm__ __volatile__("lfence\n\trdtsc" : "=a"(lo), "=d"(hi)::"memory");
    return ((uint64_t)hi << 32) | lo;
#else
    return bench_now_ns();
#endif
}

/* The same counter without the fence, for measuring the counter itself. */
static inline uint64_t bench_ticks_unfenced(void)
{
#if defined(__x86_64__)
    uint32_t lo, hi;
    __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
#else
    return bench_now_ns();
#endif
}

/* Nanoseconds per tick, from two (ticks, ns) readings taken around a loop. */
static inline double bench_tick_rate(uint64_t t0, uint64_t ns0, uint64_t t1, uint64_t ns1)
{
    return t1 > t0 ? (double)(ns1 - ns0) / (double)(t1 - t0) : 1.0;
}

/* Minor and major page faults of the whole process so far. */
void bench_faults(uint64_t *minor, uint64_t *major);

/* Peak resident set of the process, in KiB (getrusage ru_maxrss). */
long bench_maxrss_kb(void);

/* Sorts v and gives the median and the nearest-rank 95th and 99th percentiles. */
void bench_percentiles(uint64_t *v, size_t n, double *median, double *p95, double *p99);

/* Parses a positive decimal option value or exits with a one-line message. */
uint64_t bench_parse_u64(const char *prog, const char *opt, const char *text);

/* Memory for the benchmark's own bookkeeping, taken from mmap so that it never
 * disturbs the allocator under test. Exits on failure. */
void *bench_map(size_t bytes);
void bench_unmap(void *p, size_t bytes);

/* Fills *out and returns 1 when the process runs on hakmem (its extension
 * API is found at run time), 0 otherwise. */
int bench_hakmem_stats(hakmem_stats *out);

#endif
