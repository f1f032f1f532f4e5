/* Keeping the worthiest learned state, domains taking turns: two sorts,
 * one to rank each entry within its domain, one to order the turns. */
#include "value.h"

#include <errno.h>
#include <stdlib.h>

#define DAY_S 86400u
#define USAGE_BITS 40

uint64_t hkd_worth_score(uint32_t last_seen, uint64_t usage, int pinned)
{
    if (pinned)
        return UINT64_MAX;           /* an operator chose it: kept first */
    uint64_t day = last_seen / DAY_S;                       /* < 2^24 until the year 47,000 */
    uint64_t used = usage < (1ull << USAGE_BITS) ? usage : (1ull << USAGE_BITS) - 1;
    uint64_t s = day << USAGE_BITS | used;
    return s < UINT64_MAX ? s : UINT64_MAX - 1;             /* below every pinned entry */
}

typedef struct ranked {
    uint64_t score;
    uint32_t domain;
    uint32_t rank;                   /* within its domain, 0 = worth most */
    uint32_t i;
} ranked;

static int by_domain_then_worth(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->domain != y->domain)
        return x->domain < y->domain ? -1 : 1;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static int by_turn(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    if (x->domain != y->domain)
        return x->domain < y->domain ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

int64_t hkd_keep_worthiest(const hkd_worth *w, size_t n, uint64_t budget, uint8_t *keep)
{
    uint64_t all = 0;
    for (size_t i = 0; i < n; i++)
        all += w[i].cost;
    if (all <= budget) {
        for (size_t i = 0; i < n; i++)
            keep[i] = 1;
        return (int64_t)all;
    }
    ranked *v = malloc((n ? n : 1) * sizeof *v);
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        v[i] = (ranked){ .score = w[i].score, .domain = w[i].domain, .i = (uint32_t)i };
    qsort(v, n, sizeof *v, by_domain_then_worth);
    for (size_t i = 0; i < n; i++)
        v[i].rank = i && v[i - 1].domain == v[i].domain ? v[i - 1].rank + 1 : 0;
    qsort(v, n, sizeof *v, by_turn);
    uint64_t used = 0;
    size_t k = 0;
    for (; k < n && used + w[v[k].i].cost <= budget; k++) {
        used += w[v[k].i].cost;
        keep[v[k].i] = 1;
    }
    for (; k < n; k++)
        keep[v[k].i] = 0;
    free(v);
    return (int64_t)used;
}
