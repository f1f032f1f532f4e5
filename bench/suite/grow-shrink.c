/* A long-running program whose heap grows, shrinks and regrows: it builds
 * up to --mib MiB of blocks (19 in 20 small, 16 - 512 B; the rest medium,
 * 1 - 64 KiB), frees nine in ten of them in random order, idles for
 * --idle-ms (time for an allocator to give memory back), and regrows to the
 * target; --cycles times, then frees everything.  A block is verified
 * before it is freed and the whole heap at every peak. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "check.h"

typedef struct block {
    void *p;
    size_t n;
    uint64_t id;
} block;

typedef struct heap {
    block *b;
    size_t count, cap;
    size_t bytes;
    uint64_t next_id;
    uint64_t ops;
    uint64_t sum;
    bench_rng rng;
} heap;

static size_t block_size(bench_rng *r)
{
    if (bench_rng_below(r, 20) == 0)
        return 1024 + (size_t)bench_rng_below(r, 63 * 1024 + 1);
    return 16 + (size_t)bench_rng_below(r, 497);
}

static void grow_to(heap *h, size_t target)
{
    while (h->bytes < target) {
        if (h->count == h->cap) {
            h->cap = h->cap ? 2 * h->cap : 4096;
            h->b = need(realloc(h->b, h->cap * sizeof *h->b), h->cap * sizeof *h->b);
        }
        block *b = &h->b[h->count++];
        b->n = block_size(&h->rng);
        b->id = h->next_id++;
        b->p = need(malloc(b->n), b->n);
        stamp_block(b->p, b->n, b->id);
        h->bytes += b->n;
        h->ops++;
    }
}

static void verify_all(heap *h)
{
    for (size_t i = 0; i < h->count; i++)
        h->sum = mix(h->sum, check_block(h->b[i].p, h->b[i].n, h->b[i].id, "a block changed at a peak"));
}

/* Frees all but one block in keep_one_in, chosen at random. */
static void shrink(heap *h, unsigned keep_one_in)
{
    size_t kept = 0;
    for (size_t i = 0; i < h->count; i++) {
        size_t j = i + (size_t)bench_rng_below(&h->rng, h->count - i);
        block t = h->b[i];
        h->b[i] = h->b[j];
        h->b[j] = t;
    }
    for (size_t i = 0; i < h->count; i++) {
        block *b = &h->b[i];
        if (keep_one_in && i % keep_one_in == 0) {
            h->b[kept++] = *b;
            continue;
        }
        h->sum = mix(h->sum, check_block(b->p, b->n, b->id, "a block changed before its free"));
        h->bytes -= b->n;
        free(b->p);
        h->ops++;
    }
    h->count = kept;
}

int main(int argc, char **argv)
{
    suite_opt o[] = {
        {"mib", 200, "heap size at each peak, MiB"},
        {"cycles", 3, "shrink-idle-regrow cycles"},
        {"idle-ms", 200, "idle time after each shrink"},
        {"seed", 1, "generator seed"},
    };
    parse_args(argc, argv, o, sizeof o / sizeof o[0]);
    heap h = {0};
    bench_rng_seed(&h.rng, o[3].value);
    size_t target = (size_t)o[0].value << 20;
    grow_to(&h, target);
    verify_all(&h);
    for (uint64_t c = 0; c < o[1].value; c++) {
        shrink(&h, 10);
        struct timespec idle = {(time_t)(o[2].value / 1000), (long)(o[2].value % 1000) * 1000000L};
        nanosleep(&idle, NULL);
        grow_to(&h, target);
        verify_all(&h);
    }
    shrink(&h, 0);
    if (h.count != 0 || h.bytes != 0)
        check_failed("bytes left over after freeing every block");
    free(h.b);
    print_result(h.sum, h.ops, NULL);
    return 0;
}
