/* A program whose peak of live requested bytes is known in advance, for
 * tests/bench/suite.sh to hold bench/headroom_shim.so's count against.
 *
 * Every entry point the shim counts is used (malloc, calloc, realloc
 * growing, shrinking, to 0 and from NULL, reallocarray, posix_memalign,
 * aligned_alloc, memalign, valloc, free), and the peak is reached with four
 * threads each holding its blocks at once behind a barrier, so a count that
 * lost an update between threads would show.  Prints "expected_peak=N
 * expected_live_at_exit=0": the shim's figures may exceed these only by
 * what libc allocates for itself (thread start-up, stdio), a few KiB.
 * Built with -fno-builtin-* so that no call is folded away. */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
#define THREAD_BLOCKS 256
#define THREAD_BLOCK_BYTES 4096

static pthread_barrier_t all_holding, may_free;

static void *hold_blocks(void *unused)
{
    (void)unused;
    void *blocks[THREAD_BLOCKS];
    for (int i = 0; i < THREAD_BLOCKS; i++) {
        blocks[i] = malloc(THREAD_BLOCK_BYTES);
        if (blocks[i] == NULL) abort();
        memset(blocks[i], i, THREAD_BLOCK_BYTES);
    }
    pthread_barrier_wait(&all_holding);
    pthread_barrier_wait(&may_free);
    for (int i = 0; i < THREAD_BLOCKS; i++) free(blocks[i]);
    return NULL;
}

static void need(void *p)
{
    if (p == NULL) {
        fprintf(stderr, "headroom_known: allocation failed\n");
        exit(1);
    }
}

int main(void)
{
    long long live = 0, peak = 0;
#define NOTE(delta) do { live += (delta); if (live > peak) peak = live; } while (0)

    static void *small[1000];
    for (int i = 0; i < 1000; i++) {
        need(small[i] = malloc(1000));
        NOTE(1000);
    }
    for (int i = 0; i < 1000; i += 2) {
        free(small[i]);
        NOTE(-1000);
    }
    void *zeroed = calloc(100, 1000);
    need(zeroed);
    NOTE(100000);
    need(small[1] = realloc(small[1], 2000000)); /* grows: moves */
    NOTE(2000000 - 1000);
    need(small[1] = realloc(small[1], 10)); /* shrinks */
    NOTE(10 - 2000000);
    need(small[3] = reallocarray(small[3], 3, 700));
    NOTE(2100 - 1000);
    void *fresh = realloc(NULL, 5000); /* a malloc */
    need(fresh);
    NOTE(5000);
    if (realloc(small[5], 0) != NULL) return 1; /* a free, as glibc does it */
    small[5] = NULL;
    NOTE(-1000);

    void *a, *b, *c, *d;
    if (posix_memalign(&a, 64, 300000) != 0) return 1;
    NOTE(300000);
    need(b = aligned_alloc(4096, 40960));
    NOTE(40960);
    need(c = memalign(256, 7777));
    NOTE(7777);
    need(d = valloc(12345));
    NOTE(12345);
    free(a);
    free(b);
    free(c);
    free(d);
    NOTE(-300000 - 40960 - 7777 - 12345);

    pthread_barrier_init(&all_holding, NULL, THREADS + 1);
    pthread_barrier_init(&may_free, NULL, THREADS + 1);
    pthread_t threads[THREADS];
    for (int t = 0; t < THREADS; t++)
        if (pthread_create(&threads[t], NULL, hold_blocks, NULL) != 0) return 1;
    pthread_barrier_wait(&all_holding);
    NOTE((long long)THREADS * THREAD_BLOCKS * THREAD_BLOCK_BYTES);
    pthread_barrier_wait(&may_free);
    for (int t = 0; t < THREADS; t++) pthread_join(threads[t], NULL);
    NOTE(-(long long)THREADS * THREAD_BLOCKS * THREAD_BLOCK_BYTES);

    for (int i = 1; i < 1000; i += 2) free(small[i]);
    free(zeroed);
    free(fresh);
    live = 0;
    printf("expected_peak=%lld expected_live_at_exit=%lld\n", peak, live);
    return 0;
}
