/* Fast-path microbenchmark: one malloc/free pair of a constant small size,
 * repeated, so that after the first pair every call takes the allocator's
 * fastest path.
 *
 * Run under `valgrind --tool=callgrind` by bench/run.sh: the instructions per
 * pair are the inclusive cost of fp_loop_<size> minus that of fp_empty (the
 * same loop without the two calls), divided by the iterations.  They include
 * the call instructions and PLT jumps a real program pays too.  Run natively,
 * the program prints nanoseconds per pair instead (timing only): each
 * loop's time per iteration as measured, and on the baseline line that of
 * the empty loop (a difference of two timings could come out below zero).
 *
 * The pointer goes to a volatile sink and the file is built with
 * -fno-builtin-malloc/-free, so the compiler cannot elide the pair. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

static void *volatile fp_sink;
static void *fp_pins[16];
static unsigned fp_npins;

#define FP_LOOP(SZ)                                              \
    __attribute__((noinline)) void fp_loop_##SZ(uint64_t n);     \
    __attribute__((noinline)) void fp_loop_##SZ(uint64_t n)      \
    {                                                            \
        for (uint64_t i = 0; i < n; i++) {                       \
            void *p = malloc(SZ);                                \
            fp_sink = p;                                         \
            free(p);                                             \
        }                                                        \
    }

FP_LOOP(16)
FP_LOOP(32)
FP_LOOP(64)
FP_LOOP(128)
FP_LOOP(256)
FP_LOOP(512)
FP_LOOP(1024)

__attribute__((noinline)) void fp_empty(uint64_t n);
__attribute__((noinline)) void fp_empty(uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        fp_sink = (void *)(uintptr_t)i;
}

/* Brings the size class to its steady state outside the measured functions:
 * the first allocation of a size takes the slow path everywhere.  One block
 * of the size stays live for the rest of the run, so the page the loop works
 * in never becomes empty: otherwise allocators that retire or release empty
 * pages (mimalloc does) would take that path on every free, which is not
 * the fast path a program with live objects of that size sees. */
__attribute__((noinline)) void fp_warm(size_t size);
__attribute__((noinline)) void fp_warm(size_t size)
{
    void *pin = malloc(size);
    if (!pin) {
        fprintf(stderr, "fastpath: malloc(%zu) failed\n", size);
        exit(71);
    }
    fp_pins[fp_npins++] = pin;
    for (int i = 0; i < 64; i++) {
        void *p = malloc(size);
        if (!p) {
            fprintf(stderr, "fastpath: malloc(%zu) failed\n", size);
            exit(71);
        }
        fp_sink = p;
        free(p);
    }
}

static const struct {
    size_t size;
    void (*loop)(uint64_t);
} loops[] = {
    {16, fp_loop_16},   {32, fp_loop_32},   {64, fp_loop_64},     {128, fp_loop_128},
    {256, fp_loop_256}, {512, fp_loop_512}, {1024, fp_loop_1024},
};

int main(int argc, char **argv)
{
    uint64_t iters = 2000000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--iters")) {
            iters = bench_parse_u64("fastpath", argv[i], i + 1 < argc ? argv[i + 1] : NULL);
            i++;
        } else {
            fprintf(stderr, "usage: fastpath [--iters N]\n");
            return strcmp(argv[i], "--help") ? 64 : 0;
        }
    }
    uint64_t t0 = bench_now_ns();
    fp_empty(iters);
    double empty_ns = (double)(bench_now_ns() - t0) / (double)iters;
    for (size_t k = 0; k < sizeof loops / sizeof loops[0]; k++) {
        fp_warm(loops[k].size);
        t0 = bench_now_ns();
        loops[k].loop(iters);
        double ns = (double)(bench_now_ns() - t0) / (double)iters;
        printf("fastpath size=%zu iters=%llu fn=fp_loop_%zu ns_per_pair=%.2f\n", loops[k].size,
               (unsigned long long)iters, loops[k].size, ns);
    }
    printf("fastpath baseline fn=fp_empty iters=%llu ns_per_iter=%.2f\n", (unsigned long long)iters, empty_ns);
    for (unsigned k = 0; k < fp_npins; k++)
        free(fp_pins[k]);
    return fflush(stdout) == 0 ? 0 : 74;
}
