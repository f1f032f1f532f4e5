/* Server simulation after Larson and Krishnan: every thread owns an array of
 * slots holding blocks of varying sizes and replaces random slots (check the
 * old block, free it, allocate and stamp a new one).  After its share of
 * replacements a thread starts a successor, hands it its array and exits, so
 * most blocks are freed by a thread that did not allocate them.
 *
 * Sizes: 16 B - 1 KiB log-uniform, one in 64 of 4 - 64 KiB.  Each chain of
 * threads carries its generator along with its array, so the work and the
 * checksum are the same whatever the scheduling. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"

typedef struct slot {
    void *p;
    size_t n;
    uint64_t id;
} slot;

typedef struct chain {
    slot *slots;
    size_t nslots;
    uint64_t per_thread;    /* replacements before the hand-over */
    uint64_t generations;   /* threads in the chain */
    uint64_t gen;           /* the running thread's place in it */
    uint64_t next_id;
    uint64_t sum;
    bench_rng rng;
    /* tids[g] is written by thread g - 1 and read by main only after it has
     * joined thread g - 1: each written once, never raced. */
    pthread_t *tids;
} chain;

static size_t block_size(bench_rng *r)
{
    if (bench_rng_below(r, 64) == 0)
        return 4096 + (size_t)bench_rng_below(r, 60 * 1024 + 1);
    unsigned e = 4 + (unsigned)bench_rng_below(r, 6);       /* 16 .. 512 */
    size_t base = (size_t)1 << e;
    return base + (size_t)bench_rng_below(r, base + 1);     /* up to 1 KiB */
}

static void fill_slot(chain *c, slot *s)
{
    s->n = block_size(&c->rng);
    s->id = c->next_id++;
    s->p = need(malloc(s->n), s->n);
    stamp_block(s->p, s->n, s->id);
}

static void *run_chain(void *arg)
{
    chain *c = arg;
    for (uint64_t i = 0; i < c->per_thread; i++) {
        slot *s = &c->slots[bench_rng_below(&c->rng, c->nslots)];
        c->sum = mix(c->sum, check_block(s->p, s->n, s->id, "a slot's block changed while it was live"));
        free(s->p);
        fill_slot(c, s);
    }
    uint64_t g = ++c->gen;
    if (g < c->generations && pthread_create(&c->tids[g], NULL, run_chain, c) != 0) {
        fprintf(stderr, "%s: pthread_create failed\n", suite_prog);
        exit(71);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    suite_opt o[] = {
        {"threads", 4, "threads running at once (chains)"},
        {"slots", 2000, "slots per thread"},
        {"rounds", 20, "threads per chain (hand-overs + 1)"},
        {"ops", 40000, "replacements per thread"},
        {"seed", 1, "generator seed"},
    };
    parse_args(argc, argv, o, sizeof o / sizeof o[0]);
    size_t nt = o[0].value;
    chain *chains = need_zeroed(nt, sizeof *chains);
    for (size_t t = 0; t < nt; t++) {
        chain *c = &chains[t];
        c->nslots = o[1].value;
        c->per_thread = o[3].value;
        c->generations = o[2].value;
        c->next_id = (uint64_t)(t + 1) << 40;
        bench_rng_seed(&c->rng, o[4].value * 1000 + t);
        c->tids = need_zeroed(c->generations, sizeof *c->tids);
        c->slots = need_zeroed(c->nslots, sizeof *c->slots);
        /* The main thread fills every array: the first generation frees
         * blocks another thread allocated. */
        for (size_t i = 0; i < c->nslots; i++)
            fill_slot(c, &c->slots[i]);
    }
    for (size_t t = 0; t < nt; t++)
        if (pthread_create(&chains[t].tids[0], NULL, run_chain, &chains[t]) != 0)
            return 71;
    uint64_t sum = 0;
    for (size_t t = 0; t < nt; t++) {
        chain *c = &chains[t];
        for (uint64_t g = 0; g < c->generations; g++)
            pthread_join(c->tids[g], NULL);
        for (size_t i = 0; i < c->nslots; i++) {
            slot *s = &c->slots[i];
            c->sum = mix(c->sum, check_block(s->p, s->n, s->id, "a block changed after its thread exited"));
            free(s->p);
        }
        if (c->next_id - ((uint64_t)(t + 1) << 40) != c->nslots + o[2].value * o[3].value)
            check_failed("a chain did not make all its replacements");
        sum = mix(sum, c->sum);
        free(c->slots);
        free(c->tids);
    }
    free(chains);
    print_result(sum, nt * o[2].value * o[3].value, NULL);
    return 0;
}
