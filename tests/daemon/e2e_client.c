/* A client for the end-to-end test: allocates from several fixed call sites
 * (medium, large, huge) for a while, checking its data, so the daemon has
 * something to merge and learn.  Built twice (variant A and B) so the test
 * has processes of two different binaries.
 *   e2e_client DURATION_MS */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef VARIANT
#define VARIANT 'A'
#endif

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int use(unsigned char *p, size_t n, unsigned char v)
{
    if (!p)
        return 1;
    for (size_t i = 0; i < n; i += 4096)
        p[i] = v;
    p[n - 1] = v;
    int bad = 0;
    for (size_t i = 0; i < n; i += 4096)
        bad |= p[i] != v;
    return bad | (p[n - 1] != v);
}

__attribute__((noinline)) static int site_medium(unsigned char v)
{
    unsigned char *p = malloc(300 << 10);
    int bad = use(p, 300 << 10, v);
    free(p);
    return bad;
}

__attribute__((noinline)) static int site_large(unsigned char v)
{
    unsigned char *p = malloc(2 << 20);
    int bad = use(p, 2 << 20, v);
    free(p);
    return bad;
}

__attribute__((noinline)) static int site_mid_large(unsigned char v)
{
    unsigned char *p = malloc(600 << 10);
    int bad = use(p, 600 << 10, v);
    free(p);
    return bad;
}

#if VARIANT == 'B'
__attribute__((noinline)) static int site_b_only(unsigned char v)
{
    unsigned char *p = calloc(1, 1200 << 10);
    int bad = use(p, 1200 << 10, v);
    free(p);
    return bad;
}
#endif

/* Small-object churn: reaches the allocator's small slow path, which is
 * where the shm client gets its ticks. */
__attribute__((noinline)) static int churn(unsigned char v)
{
    enum { N = 4096 };
    static void *ptr[N];
    int bad = 0;
    for (int i = 0; i < N; i++) {
        ptr[i] = malloc(16 + (size_t)(i % 64) * 8);
        if (!ptr[i])
            return 1;
        *(unsigned char *)ptr[i] = v;
    }
    for (int i = 0; i < N; i++) {
        bad |= *(unsigned char *)ptr[i] != v;
        free(ptr[i]);
    }
    return bad;
}

int main(int argc, char **argv)
{
    uint64_t duration = argc > 1 ? strtoull(argv[1], NULL, 10) : 2000;
    uint64_t end = now_ms() + duration;
    uint64_t rounds = 0;
    int bad = 0;
    while (now_ms() < end) {
        unsigned char v = (unsigned char)rounds;
        bad |= site_medium(v);
        bad |= site_large(v);
        bad |= site_mid_large(v);
#if VARIANT == 'B'
        bad |= site_b_only(v);
#endif
        if (rounds % 16 == 0)
            bad |= churn(v);
        rounds++;
    }
    if (bad) {
        fprintf(stderr, "e2e_client %c: data check failed\n", VARIANT);
        return 1;
    }
    printf("e2e_client %c: %llu rounds ok\n", VARIANT, (unsigned long long)rounds);
    return 0;
}
