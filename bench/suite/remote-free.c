/* Producer/consumer pairs: in each pair one thread allocates and stamps
 * blocks and pushes them through a bounded ring, the other pops, verifies
 * and frees them, so every free is remote.  Sizes 8 B - 4 KiB, log-uniform.
 * Each producer's generator is seeded from its pair: the blocks and the
 * checksum are fixed by the arguments. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"

#define RING 256   /* a power of two */

typedef struct item {
    void *p;
    size_t n;
    uint64_t id;
} item;

typedef struct pair {
    _Alignas(64) _Atomic uint64_t head;   /* next slot the producer fills */
    _Alignas(64) _Atomic uint64_t tail;   /* next slot the consumer empties */
    _Alignas(64) item ring[RING];
    uint64_t items;
    uint64_t seed;
    uint64_t sum;
} pair;

static void *produce(void *arg)
{
    pair *pr = arg;
    bench_rng rng;
    bench_rng_seed(&rng, pr->seed);
    for (uint64_t i = 0; i < pr->items; i++) {
        unsigned e = 3 + (unsigned)bench_rng_below(&rng, 9);
        size_t n = ((size_t)1 << e) + (size_t)bench_rng_below(&rng, ((size_t)1 << e) + 1);
        if (n > 4096)
            n = 4096;
        uint64_t id = (pr->seed << 40) + i;
        void *p = need(malloc(n), n);
        stamp_block(p, n, id);
        while (i - atomic_load_explicit(&pr->tail, memory_order_acquire) >= RING)
            sched_yield();
        pr->ring[i & (RING - 1)] = (item){p, n, id};
        atomic_store_explicit(&pr->head, i + 1, memory_order_release);
    }
    return NULL;
}

static void *consume(void *arg)
{
    pair *pr = arg;
    for (uint64_t i = 0; i < pr->items; i++) {
        while (atomic_load_explicit(&pr->head, memory_order_acquire) <= i)
            sched_yield();
        item it = pr->ring[i & (RING - 1)];
        atomic_store_explicit(&pr->tail, i + 1, memory_order_release);
        if (it.id != (pr->seed << 40) + i)
            check_failed("the ring delivered a block out of order");
        pr->sum = mix(pr->sum, check_block(it.p, it.n, it.id, "a block changed on its way to the consumer"));
        free(it.p);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    suite_opt o[] = {
        {"pairs", 2, "producer/consumer pairs"},
        {"items", 1000000, "blocks per pair"},
        {"seed", 1, "generator seed"},
    };
    parse_args(argc, argv, o, sizeof o / sizeof o[0]);
    size_t np = o[0].value;
    pair *pairs = need(aligned_alloc(64, np * sizeof *pairs), np * sizeof *pairs);
    pthread_t *tids = need_zeroed(2 * np, sizeof *tids);
    for (size_t k = 0; k < np; k++) {
        pair *pr = &pairs[k];
        atomic_init(&pr->head, 0);
        atomic_init(&pr->tail, 0);
        pr->items = o[1].value;
        pr->seed = o[2].value * 1000 + k + 1;
        pr->sum = 0;
        if (pthread_create(&tids[2 * k], NULL, produce, pr) != 0 ||
            pthread_create(&tids[2 * k + 1], NULL, consume, pr) != 0)
            return 71;
    }
    uint64_t sum = 0;
    for (size_t k = 0; k < np; k++) {
        pthread_join(tids[2 * k], NULL);
        pthread_join(tids[2 * k + 1], NULL);
        sum = mix(sum, pairs[k].sum);
    }
    free(pairs);
    free(tids);
    print_result(sum, np * o[1].value, NULL);
    return 0;
}
