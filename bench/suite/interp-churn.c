/* An interpreter's heap: a long-lived core (a dictionary of --core entries:
 * key strings and value objects that live the whole run, a value replaced
 * now and then) under heavy churn of short-lived small objects: every step
 * builds a few strings of 8 - 200 B, a tuple of 2 - 8 of them, a list that
 * grows by realloc, concatenates the strings, looks the result's hash up in
 * the dictionary, and frees the temporaries; one object in 16 survives a
 * while in a ring of young objects before it is freed.
 *
 * Strings carry the block stamp, checked before every free; at the end
 * every core entry is verified against its index. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

typedef struct str {
    size_t len;
    uint64_t id;
    char *bytes;      /* stamped with id */
} str;

typedef struct entry {
    str *key;
    str *value;
    uint64_t index;
} entry;

static str *new_str(size_t len, uint64_t id)
{
    str *s = need(malloc(sizeof *s), sizeof *s);
    s->len = len;
    s->id = id;
    s->bytes = need(malloc(len), len);
    stamp_block(s->bytes, len, id);
    return s;
}

static uint64_t del_str(str *s, const char *what)
{
    uint64_t v = check_block(s->bytes, s->len, s->id, what);
    free(s->bytes);
    free(s);
    return v;
}

static size_t slot_of(uint64_t h, size_t mask)
{
    return (size_t)((h * 0x9E3779B97F4A7C15ull) >> 20) & mask;
}

int main(int argc, char **argv)
{
    suite_opt o[] = {
        {"core", 50000, "dictionary entries that live the whole run"},
        {"steps", 400000, "interpreter steps"},
        {"young", 256, "ring of young survivors"},
        {"seed", 1, "generator seed"},
    };
    parse_args(argc, argv, o, sizeof o / sizeof o[0]);
    bench_rng r;
    bench_rng_seed(&r, o[3].value);
    size_t ncore = o[0].value, cap = 1;
    while (cap < 2 * ncore)
        cap <<= 1;
    entry **table = need_zeroed(cap, sizeof *table);
    uint64_t next_id = 1, sum = 0, ops = 0;
    for (uint64_t i = 0; i < ncore; i++) {
        entry *e = need(malloc(sizeof *e), sizeof *e);
        e->index = i;
        e->key = new_str(8 + (size_t)(i % 41), i);
        e->value = new_str(16 + (size_t)bench_rng_below(&r, 112), next_id++);
        size_t s = slot_of(i, cap - 1);
        while (table[s])
            s = (s + 1) & (cap - 1);
        table[s] = e;
    }
    size_t nyoung = o[2].value;
    str **young = need_zeroed(nyoung, sizeof *young);
    for (uint64_t step = 0; step < o[1].value; step++) {
        size_t k = 2 + (size_t)bench_rng_below(&r, 7);
        str **tuple = need(malloc(k * sizeof *tuple), k * sizeof *tuple);
        size_t total = 0;
        for (size_t j = 0; j < k; j++) {
            tuple[j] = new_str(8 + (size_t)bench_rng_below(&r, 193), next_id++);
            total += tuple[j]->len;
        }
        /* A list grown one element at a time, as an append loop does. */
        size_t lcap = 0, llen = 0;
        uint64_t *list = NULL;
        for (size_t j = 0; j < 3 * k; j++) {
            if (llen == lcap) {
                lcap = lcap ? 2 * lcap : 2;
                list = need(realloc(list, lcap * sizeof *list), lcap * sizeof *list);
            }
            list[llen++] = tuple[j % k]->id;
        }
        char *cat = need(malloc(total), total);
        size_t at = 0;
        for (size_t j = 0; j < k; j++) {
            memcpy(cat + at, tuple[j]->bytes, tuple[j]->len);
            at += tuple[j]->len;
        }
        uint64_t h = total;
        for (size_t j = 0; j < llen; j++)
            h = mix(h, list[j]);
        for (size_t j = 0; j < total; j += 8)
            h = mix(h, (unsigned char)cat[j]);
        /* Lookup of a core key; now and then its value is replaced. */
        uint64_t want = h % ncore;
        size_t s = slot_of(want, cap - 1);
        while (table[s] && table[s]->index != want)
            s = (s + 1) & (cap - 1);
        if (!table[s])
            check_failed("a core entry went missing");
        sum = mix(sum, h ^ table[s]->value->id);
        if ((step & 15) == 0) {
            sum = mix(sum, del_str(table[s]->value, "a core value changed while it was live"));
            table[s]->value = new_str(16 + (size_t)bench_rng_below(&r, 112), next_id++);
        }
        for (size_t j = 1; j < k; j++)
            sum = mix(sum, del_str(tuple[j], "a temporary string changed before its free"));
        /* The first string survives a while if the step says so. */
        if ((h & 15) == 0) {
            str **slot = &young[step % nyoung];
            if (*slot)
                sum = mix(sum, del_str(*slot, "a young object changed before its free"));
            *slot = tuple[0];
        } else {
            sum = mix(sum, del_str(tuple[0], "a temporary string changed before its free"));
        }
        free(cat);
        free(list);
        free(tuple);
        ops += 2 * k + 4;
    }
    for (size_t j = 0; j < nyoung; j++)
        if (young[j])
            sum = mix(sum, del_str(young[j], "a young object changed before its free"));
    size_t seen = 0;
    for (size_t s = 0; s < cap; s++) {
        entry *e = table[s];
        if (!e)
            continue;
        if (e->key->id != e->index || e->key->len != 8 + e->index % 41)
            check_failed("a core key no longer matches its entry");
        sum = mix(sum, del_str(e->key, "a core key changed while it was live"));
        sum = mix(sum, del_str(e->value, "a core value changed while it was live"));
        free(e);
        seen++;
    }
    if (seen != ncore)
        check_failed("the dictionary lost or gained entries");
    free(table);
    free(young);
    print_result(sum, ops, NULL);
    return 0;
}
