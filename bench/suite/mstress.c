/* Thread waves, after mimalloc-bench's mstress: waves of threads each free
 * the blocks they inherit from the wave before, allocate small blocks of
 * 1 - 128 words, free two thirds of them at once and pass the rest on
 * through a shared array to the next wave, then exit.  The last wave's
 * blocks are freed by the main thread.
 *
 * Thread i of a wave inherits what thread (i + 1) mod N of the wave before
 * left, so blocks always change threads; arrays alternate between waves,
 * so no wave reads what another one writes while it runs.  Each thread's
 * generator is seeded from (wave, i): the work is fixed by the arguments. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"

typedef struct kept {
    void *p;
    size_t n;
    uint64_t id;
} kept;

typedef struct shared {
    size_t threads;
    size_t objs;        /* allocated per thread per wave */
    size_t keep;        /* passed on per thread: a third */
    uint64_t seed;
    kept *gen[2];       /* [parity][thread * keep + k] */
} shared;

typedef struct worker {
    shared *sh;
    size_t index;
    uint64_t wave;
    uint64_t sum;
    uint64_t ops;
} worker;

static void *run_wave(void *arg)
{
    worker *w = arg;
    shared *sh = w->sh;
    bench_rng rng;
    bench_rng_seed(&rng, sh->seed * 7919 + w->wave * 131 + w->index);
    if (w->wave > 0) {
        kept *in = sh->gen[(w->wave - 1) & 1] + ((w->index + 1) % sh->threads) * sh->keep;
        for (size_t k = 0; k < sh->keep; k++) {
            w->sum = mix(w->sum, check_block(in[k].p, in[k].n, in[k].id, "an inherited block changed"));
            free(in[k].p);
            w->ops++;
        }
    }
    kept *out = sh->gen[w->wave & 1] + w->index * sh->keep;
    kept *mine = need(malloc(sh->objs * sizeof *mine), sh->objs * sizeof *mine);
    uint64_t base = ((w->wave + 1) << 32) | (w->index << 24);
    for (size_t k = 0; k < sh->objs; k++) {
        mine[k].n = 8 * (1 + bench_rng_below(&rng, 128));
        mine[k].id = base + k;
        mine[k].p = need(malloc(mine[k].n), mine[k].n);
        stamp_block(mine[k].p, mine[k].n, mine[k].id);
        w->ops++;
    }
    /* Every third block is kept; the others are freed, in a shuffled order. */
    size_t kept_n = 0;
    for (size_t k = 0; k < sh->objs; k++)
        if (k % 3 == 2 && kept_n < sh->keep)
            out[kept_n++] = mine[k];
    for (size_t k = sh->objs; k > 1; k--) {
        size_t j = bench_rng_below(&rng, k);
        kept t = mine[k - 1];
        mine[k - 1] = mine[j];
        mine[j] = t;
    }
    for (size_t k = 0; k < sh->objs; k++) {
        if (mine[k].id - base < sh->objs && (mine[k].id - base) % 3 == 2 && (mine[k].id - base) / 3 < sh->keep)
            continue;
        w->sum = mix(w->sum, check_block(mine[k].p, mine[k].n, mine[k].id, "a block changed before its free"));
        free(mine[k].p);
        w->ops++;
    }
    free(mine);
    if (kept_n != sh->keep)
        check_failed("a thread kept the wrong number of blocks");
    return NULL;
}

int main(int argc, char **argv)
{
    suite_opt o[] = {
        {"threads", 4, "threads per wave"},
        {"waves", 50, "waves of threads"},
        {"objs", 30000, "blocks allocated per thread per wave"},
        {"seed", 1, "generator seed"},
    };
    parse_args(argc, argv, o, sizeof o / sizeof o[0]);
    shared sh = {.threads = o[0].value, .objs = o[2].value, .keep = o[2].value / 3, .seed = o[3].value};
    size_t cells = sh.threads * sh.keep;
    sh.gen[0] = need_zeroed(cells + 1, sizeof(kept));
    sh.gen[1] = need_zeroed(cells + 1, sizeof(kept));
    worker *ws = need_zeroed(sh.threads, sizeof *ws);
    pthread_t *tids = need_zeroed(sh.threads, sizeof *tids);
    uint64_t sum = 0, ops = 0;
    for (uint64_t wave = 0; wave < o[1].value; wave++) {
        for (size_t i = 0; i < sh.threads; i++) {
            ws[i] = (worker){.sh = &sh, .index = i, .wave = wave};
            if (pthread_create(&tids[i], NULL, run_wave, &ws[i]) != 0)
                return 71;
        }
        for (size_t i = 0; i < sh.threads; i++) {
            pthread_join(tids[i], NULL);
            sum = mix(sum, ws[i].sum);
            ops += ws[i].ops;
        }
    }
    kept *last = sh.gen[(o[1].value - 1) & 1];
    for (size_t c = 0; c < cells; c++) {
        sum = mix(sum, check_block(last[c].p, last[c].n, last[c].id, "a block of the last wave changed"));
        free(last[c].p);
        ops++;
    }
    free(sh.gen[0]);
    free(sh.gen[1]);
    free(ws);
    free(tids);
    print_result(sum, ops, NULL);
    return 0;
}
