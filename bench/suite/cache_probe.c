#include "cache_probe.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"

typedef struct probe {
    size_t size;
    uint64_t iters;
    uint64_t writes;
    unsigned char *handed;   /* scratch: the block the main thread allocated */
    unsigned index;
    uint64_t sum;
} probe;

/* Two blocks live at once, written in turn: a and b must not share a byte,
 * and each must end up holding exactly what this thread wrote. */
static void *run_probe(void *arg)
{
    probe *pr = arg;
    if (pr->handed) {
        if (pr->handed[0] != (unsigned char)pr->index)
            check_failed("a handed-over block changed before its thread freed it");
        free(pr->handed);
    }
    for (uint64_t it = 0; it < pr->iters; it++) {
        volatile unsigned char *a = need(malloc(pr->size), pr->size);
        volatile unsigned char *b = need(malloc(pr->size), pr->size);
        unsigned char ia = (unsigned char)(it * 2 + pr->index), ib = (unsigned char)(ia + 101);
        for (size_t k = 0; k < pr->size; k++) {
            a[k] = ia;
            b[k] = ib;
        }
        for (uint64_t w = 0; w < pr->writes; w++)
            for (size_t k = 0; k < pr->size; k++) {
                a[k]++;
                b[k] += 3;
            }
        unsigned char wa = (unsigned char)(ia + pr->writes), wb = (unsigned char)(ib + 3 * pr->writes);
        for (size_t k = 0; k < pr->size; k++)
            if (a[k] != wa || b[k] != wb)
                check_failed("a block holds bytes its thread did not write");
        pr->sum = mix(pr->sum, (uint64_t)wa << 8 | wb);
        free((void *)a);
        free((void *)b);
    }
    return NULL;
}

int cache_probe_main(int argc, char **argv, int scratch)
{
    suite_opt o[] = {
        {"threads", 4, "threads"},
        {"size", 8, "bytes per block"},
        {"iters", 20000, "pairs of blocks allocated per thread"},
        {"writes", 200, "passes of writes over each block"},
    };
    parse_args(argc, argv, o, sizeof o / sizeof o[0]);
    size_t nt = o[0].value;
    probe *ps = need_zeroed(nt, sizeof *ps);
    pthread_t *tids = need_zeroed(nt, sizeof *tids);
    for (size_t t = 0; t < nt; t++) {
        ps[t] = (probe){.size = o[1].value, .iters = o[2].value, .writes = o[3].value, .index = (unsigned)t};
        if (scratch) {
            ps[t].handed = need(malloc(ps[t].size), ps[t].size);
            ps[t].handed[0] = (unsigned char)t;
        }
    }
    for (size_t t = 0; t < nt; t++)
        if (pthread_create(&tids[t], NULL, run_probe, &ps[t]) != 0)
            return 71;
    uint64_t sum = 0;
    for (size_t t = 0; t < nt; t++) {
        pthread_join(tids[t], NULL);
        sum = mix(sum, ps[t].sum);
    }
    free(ps);
    free(tids);
    print_result(sum, nt * o[2].value * 2, NULL);
    return 0;
}
