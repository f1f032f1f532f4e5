/* A small, short-lived program that leaks a little: records (a header and
 * a string of 8 - 256 B) pass through a window of a thousand live ones, the
 * oldest freed as each new one arrives; one record in 400 is set aside and
 * never freed.  The heap stays small, so what is measured is mostly the
 * allocator's own footprint: peak RSS is this workload's figure.
 * At exit the window and the leaked records are verified; the leaked ones
 * stay allocated. */
#include <stdio.h>
#include <stdlib.h>

#include "check.h"

typedef struct record {
    uint64_t id;
    size_t len;
    char *text;
} record;

static record *make_record(bench_rng *r, uint64_t id)
{
    record *rec = need(malloc(sizeof *rec), sizeof *rec);
    rec->id = id;
    rec->len = 8 + (size_t)bench_rng_below(r, 249);
    rec->text = need(malloc(rec->len), rec->len);
    stamp_block(rec->text, rec->len, id);
    return rec;
}

static uint64_t drop_record(record *rec, int release)
{
    uint64_t v = check_block(rec->text, rec->len, rec->id, "a record's text changed while it was live");
    if (release) {
        free(rec->text);
        free(rec);
    }
    return v;
}

int main(int argc, char **argv)
{
    suite_opt o[] = {
        {"ops", 300000, "records made"},
        {"window", 1000, "records live at once"},
        {"leak-every", 400, "one record in this many is never freed"},
        {"seed", 1, "generator seed"},
    };
    parse_args(argc, argv, o, sizeof o / sizeof o[0]);
    bench_rng r;
    bench_rng_seed(&r, o[3].value);
    size_t window = o[1].value;
    size_t max_leaks = o[0].value / o[2].value + 1, nleaks = 0;
    record **live = need_zeroed(window, sizeof *live);
    record **leaked = need_zeroed(max_leaks, sizeof *leaked);
    uint64_t sum = 0;
    for (uint64_t i = 0; i < o[0].value; i++) {
        record *rec = make_record(&r, i + 1);
        if ((i + 1) % o[2].value == 0 && nleaks < max_leaks) {
            leaked[nleaks++] = rec;
            continue;
        }
        record **slot = &live[i % window];
        if (*slot)
            sum = mix(sum, drop_record(*slot, 1));
        *slot = rec;
    }
    for (size_t k = 0; k < window; k++)
        if (live[k])
            sum = mix(sum, drop_record(live[k], 1));
    for (size_t k = 0; k < nleaks; k++)
        sum = mix(sum, drop_record(leaked[k], 0));
    if (nleaks != o[0].value / o[2].value)
        check_failed("the wrong number of records leaked");
    free(live);
    char extra[64];
    snprintf(extra, sizeof extra, "leaked=%zu", nleaks);
    print_result(sum, o[0].value, extra);
    return 0;
}
