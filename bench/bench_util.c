/* Helpers shared by the benchmark programs; see bench_util.h. */
#include "bench_util.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void bench_faults(uint64_t *minor, uint64_t *major)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *minor = (uint64_t)ru.ru_minflt;
    *major = (uint64_t)ru.ru_majflt;
}

long bench_maxrss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double nearest_rank(const uint64_t *sorted, size_t n, double q)
{
    /* Nearest rank: the smallest value with at least q of the samples at or below it. */
    size_t rank = (size_t)(q * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)sorted[rank - 1];
}

void bench_percentiles(uint64_t *v, size_t n, double *median, double *p95, double *p99)
{
    if (n == 0) {
        *median = *p95 = *p99 = 0;
        return;
    }
    qsort(v, n, sizeof *v, cmp_u64);
    *median = (n % 2) ? (double)v[n / 2] : ((double)v[n / 2 - 1] + (double)v[n / 2]) / 2.0;
    *p95 = nearest_rank(v, n, 0.95);
    *p99 = nearest_rank(v, n, 0.99);
}

uint64_t bench_parse_u64(const char *prog, const char *opt, const char *text)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = text ? strtoull(text, &end, 10) : 0;
    if (!text || errno || end == text || *end != '\0' || v == 0 || text[0] == '-') {
        fprintf(stderr, "%s: %s needs a positive integer, got '%s'\n", prog, opt,
                text ? text : "(nothing)");
        exit(64);
    }
    return (uint64_t)v;
}

void *bench_map(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        fprintf(stderr, "bench: mmap of %zu bytes failed: %s\n", bytes, strerror(errno));
        exit(70);
    }
    return p;
}

void bench_unmap(void *p, size_t bytes)
{
    munmap(p, bytes);
}

int bench_hakmem_stats(hakmem_stats *out)
{
    /* Looked up at run time: the programs are linked against glibc only and
     * the allocator is chosen with LD_PRELOAD. */
    void (*get)(hakmem_stats *) = (void (*)(hakmem_stats *))dlsym(RTLD_DEFAULT, "hakmem_get_stats");
    if (!get)
        return 0;
    memset(out, 0, sizeof *out);
    get(out);
    return 1;
}
