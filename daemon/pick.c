/* Candidates are grouped by domain (a counting sort); the turns every
 * domain gets is the largest r with sum(min(count, r)) <= k; each domain
 * larger than r keeps its r heaviest (quickselect, with a sort when the
 * partitioning goes badly); what room is left goes to the heaviest of the
 * next turn. */
#include "pick.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int heavier_first(const void *a, const void *b)
{
    const hkd_pick *x = a, *y = b;
    return x->weight > y->weight ? -1 : x->weight < y->weight;
}

static void swap(hkd_pick *a, hkd_pick *b)
{
    hkd_pick t = *a;
    *a = *b;
    *b = t;
}

/* Moves the r heaviest of v[0, n) to its front. */
static void select_heaviest(hkd_pick *v, size_t n, size_t r)
{
    size_t lo = 0, hi = n;           /* the boundary r lies in [lo, hi) */
    int budget = 2 * (64 - __builtin_clzll(n | 1));
    while (hi - lo > 16 && lo < r && r < hi) {
        if (budget-- == 0) {
            qsort(v + lo, hi - lo, sizeof *v, heavier_first);
            return;
        }
        /* Median of three as pivot, then Hoare's partition (descending). */
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid].weight > v[lo].weight)
            swap(&v[mid], &v[lo]);
        if (v[hi - 1].weight > v[lo].weight)
            swap(&v[hi - 1], &v[lo]);
        if (v[hi - 1].weight > v[mid].weight)
            swap(&v[hi - 1], &v[mid]);
        uint64_t pivot = v[mid].weight;
        size_t i = lo, j = hi - 1;
        for (;;) {
            while (v[i].weight > pivot)
                i++;
            while (v[j].weight < pivot)
                j--;
            if (i >= j)
                break;
            swap(&v[i++], &v[j--]);
        }
        /* v[lo, j] >= pivot >= v[j + 1, hi) */
        if (r <= j)
            hi = j + 1;
        else
            lo = j + 1;
    }
    if (lo < r && r < hi)
        qsort(v + lo, hi - lo, sizeof *v, heavier_first);
}

static size_t taken(const size_t *count, uint32_t n_domains, size_t turns)
{
    size_t sum = 0;
    for (uint32_t d = 0; d < n_domains; d++)
        sum += count[d] < turns ? count[d] : turns;
    return sum;
}

int64_t hkd_pick_fair(hkd_pick *v, size_t n, size_t k, uint32_t n_domains)
{
    if (n <= k)
        return (int64_t)n;
    size_t *count = calloc(n_domains, sizeof *count);
    size_t *start = calloc(n_domains + 1, sizeof *start);
    size_t *take = calloc(n_domains, sizeof *take);
    hkd_pick *g = malloc(n * sizeof *g);
    hkd_pick *next = malloc(n_domains * sizeof *next);
    int64_t rc = -ENOMEM;
    if (!count || !start || !take || !g || !next)
        goto out;
    for (size_t i = 0; i < n; i++)
        count[v[i].domain]++;
    for (uint32_t d = 0; d < n_domains; d++)
        start[d + 1] = start[d] + count[d];
    for (size_t i = 0; i < n; i++)
        g[start[v[i].domain] + take[v[i].domain]++] = v[i];

    /* The most turns every domain can have. */
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo + 1) / 2;
        if (taken(count, n_domains, mid) <= k)
            lo = mid;
        else
            hi = mid - 1;
    }
    size_t turns = lo, left = k - taken(count, n_domains, turns);
    /* A larger domain keeps its heaviest `turns`; its next heaviest, moved
     * just after them, competes for the room left. */
    uint32_t n_next = 0;
    for (uint32_t d = 0; d < n_domains; d++) {
        take[d] = count[d] < turns ? count[d] : turns;
        if (count[d] <= turns)
            continue;
        hkd_pick *seg = g + start[d];
        select_heaviest(seg, count[d], turns);
        size_t best = turns;
        for (size_t i = turns + 1; i < count[d]; i++)
            if (seg[i].weight > seg[best].weight)
                best = i;
        swap(&seg[turns], &seg[best]);
        next[n_next] = seg[turns];
        next[n_next++].domain = d;
    }
    qsort(next, n_next, sizeof *next, heavier_first);
    for (uint32_t e = 0; e < n_next && e < left; e++)
        take[next[e].domain]++;
    /* The picks first, then the rest: v stays a permutation. */
    size_t out = 0;
    for (uint32_t d = 0; d < n_domains; d++)
        for (size_t i = 0; i < take[d]; i++)
            v[out++] = g[start[d] + i];
    rc = (int64_t)out;
    for (uint32_t d = 0; d < n_domains; d++)
        for (size_t i = take[d]; i < count[d]; i++)
            v[out++] = g[start[d] + i];
out:
    free(count), free(start), free(take), free(g), free(next);
    return rc;
}
