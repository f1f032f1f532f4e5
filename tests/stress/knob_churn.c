/* Knobs changed while threads allocate: 4 threads churn small, medium and
 * large blocks (some freed by a neighbour, so remote frees and adoption
 * happen too) while another thread applies random knob values, resets them,
 * and reads the counters and mallinfo2 all along.  Passes when nothing
 * crashes, every block keeps its contents, and (under TSan) no race is
 * reported.  Linked to the prefixed library (hak_* names) or its TSan build.
 *
 * usage: knob_churn [-t THREADS] [-i ITERATIONS] [-s SEED] */
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "counters.h"
#include "hakmem.h"
#include "knobs.h"

#define SLOTS 64

static _Atomic int running = 1;
static _Atomic(unsigned char *) shared[SLOTS];   /* blocks handed between threads */
static unsigned iterations = 20000, threads = 4;

static uint64_t next_random(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static size_t pick_size(uint64_t r)
{
    switch (r % 16) {
    case 0: return 1024 * 1024 + r % (3u << 20);   /* large */
    case 1: case 2: return 64 * 1024 + r % (512u << 10);   /* medium */
    default: return 1 + r % 2048;                  /* small */
    }
}

/* A block whose first and last bytes say who wrote it and how long it is. */
static unsigned char *make_block(size_t size, unsigned char tag)
{
    unsigned char *p = hak_malloc(size + 16);
    if (p == NULL) { fprintf(stderr, "knob_churn: out of memory\n"); exit(2); }
    memcpy(p, &size, sizeof size);
    p[8] = tag;
    p[size + 15] = tag;
    return p;
}

static void check_and_free(unsigned char *p)
{
    size_t size;
    memcpy(&size, p, sizeof size);
    if (p[8] != p[size + 15]) { fprintf(stderr, "knob_churn: block %p damaged\n", (void *)p); abort(); }
    hak_free(p);
}

static void *churn(void *arg)
{
    uint64_t s = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ull + 1;
    unsigned char *mine[32] = { 0 };
    for (unsigned i = 0; i < iterations; i++) {
        uint64_t r = next_random(&s);
        unsigned k = (unsigned)(r >> 40) % 32;
        if (mine[k]) check_and_free(mine[k]);
        mine[k] = make_block(pick_size(r), (unsigned char)r);
        if (r % 8 == 0) {          /* hand one over; free what another thread left */
            unsigned char *old = atomic_exchange(&shared[(r >> 20) % SLOTS], mine[k]);
            mine[k] = NULL;
            if (old) check_and_free(old);
        }
        if (r % 4096 == 0) hakmem_collect();
    }
    for (unsigned k = 0; k < 32; k++) if (mine[k]) check_and_free(mine[k]);
    return NULL;
}

static void *tune(void *arg)
{
    uint64_t s = (uint64_t)(uintptr_t)arg + 7, changes = 0;
    while (atomic_load(&running)) {
        uint32_t knob[HK_KNOBS];
        for (unsigned k = 0; k < HK_KNOBS; k++) knob[k] = (uint32_t)next_random(&s);
        knob[HK_KNOB_PURGE_DELAY_MS] %= 50;
        knob[HK_KNOB_RETAINED_SEGMENTS] %= 6;
        knob[HK_KNOB_LARGE_THRESHOLD] %= 2u << 20;   /* clamped into 64 KiB..1 MiB */
        knob[HK_KNOB_BIGCACHE_KIB] %= 16384;
        uint32_t set = (uint32_t)next_random(&s);
        if (set % 10 == 0) hk_knobs_reset();
        else hk_knobs_apply(set, knob);
        hk_counters c;
        hk_counters_read(&c);
        struct mallinfo2 m = hak_mallinfo2();
        if (m.arena != m.uordblks + m.fordblks) { fprintf(stderr, "knob_churn: mallinfo2 inconsistent\n"); abort(); }
        changes++;
        usleep(200);
    }
    return (void *)(uintptr_t)changes;
}

int main(int argc, char **argv)
{
    uint64_t seed = 1;
    int opt;
    while ((opt = getopt(argc, argv, "t:i:s:")) != -1) {
        if (opt == 't') threads = (unsigned)atoi(optarg);
        else if (opt == 'i') iterations = (unsigned)atoi(optarg);
        else if (opt == 's') seed = strtoull(optarg, NULL, 0);
        else { fprintf(stderr, "usage: knob_churn [-t THREADS] [-i ITERATIONS] [-s SEED]\n"); return 64; }
    }
    if (threads < 1 || threads > 64) threads = 4;
    pthread_t t[64], tuner;
    pthread_create(&tuner, NULL, tune, (void *)(uintptr_t)seed);
    for (unsigned i = 0; i < threads; i++) pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(seed * 64 + i + 1));
    for (unsigned i = 0; i < threads; i++) pthread_join(t[i], NULL);
    atomic_store(&running, 0);
    void *changes;
    pthread_join(tuner, &changes);
    for (unsigned i = 0; i < SLOTS; i++) {
        unsigned char *p = atomic_exchange(&shared[i], NULL);
        if (p) check_and_free(p);
    }
    hk_knobs_reset();
    hk_counters c;
    hk_counters_read(&c);
    printf("knob_churn: threads=%u iterations=%u knob_changes=%llu slow_ms=%llu mmap=%llu munmap=%llu madvise=%llu\n",
           threads, iterations, (unsigned long long)(uintptr_t)changes, (unsigned long long)(c.slow_ns / 1000000),
           (unsigned long long)c.syscalls[HK_SYS_MMAP], (unsigned long long)c.syscalls[HK_SYS_MUNMAP],
           (unsigned long long)c.syscalls[HK_SYS_MADVISE]);
    return 0;
}
