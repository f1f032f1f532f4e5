#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *suite_prog = "suite";

static uint8_t fill_byte(uint64_t id)
{
    return (uint8_t)(id * 0x9Du + (id >> 17) + 1u);
}

void check_failed(const char *what)
{
    fprintf(stderr, "%s: check failed: %s\n", suite_prog, what);
    exit(SUITE_EXIT_CHECK);
}

void *need(void *p, size_t n)
{
    if (p == NULL) {
        fprintf(stderr, "%s: allocation of %zu bytes failed\n", suite_prog, n);
        exit(SUITE_EXIT_NOMEM);
    }
    return p;
}

void *need_zeroed(size_t n, size_t size)
{
    return need(calloc(n, size), n * size);
}

void stamp_block(void *p, size_t n, uint64_t id)
{
    unsigned char *b = p;
    size_t head = n >= 8 ? 8 : 0;
    if (head)
        memcpy(b, &id, 8);
    if (n > head + 1)
        memset(b + head, fill_byte(id), n - head - 1);
    if (n > head)
        b[n - 1] = fill_byte(~id);
}

uint64_t check_block(const void *p, size_t n, uint64_t id, const char *what)
{
    const unsigned char *b = p;
    size_t head = n >= 8 ? 8 : 0;
    uint64_t got = id;
    if (head)
        memcpy(&got, b, 8);
    if (got != id)
        check_failed(what);
    if (n > head) {
        const unsigned char want = fill_byte(id);
        /* Word-wise over the body: the check costs about what the fill did. */
        size_t i = head, end = n - 1;
        uint64_t pat;
        memset(&pat, want, sizeof pat);
        for (; i + 8 <= end; i += 8) {
            uint64_t w;
            memcpy(&w, b + i, 8);
            if (w != pat)
                check_failed(what);
        }
        for (; i < end; i++)
            if (b[i] != want)
                check_failed(what);
        if (b[n - 1] != fill_byte(~id))
            check_failed(what);
    }
    return id * 31 + n;
}

void parse_args(int argc, char **argv, suite_opt *opts, size_t nopts)
{
    const char *slash = strrchr(argv[0], '/');
    suite_prog = slash ? slash + 1 : argv[0];
    for (int i = 1; i < argc; i++) {
        size_t k;
        for (k = 0; k < nopts; k++)
            if (strncmp(argv[i], "--", 2) == 0 && strcmp(argv[i] + 2, opts[k].name) == 0)
                break;
        if (k == nopts || i + 1 >= argc) {
            fprintf(stderr, "usage: %s", suite_prog);
            for (k = 0; k < nopts; k++)
                fprintf(stderr, " [--%s N]", opts[k].name);
            fprintf(stderr, "\n");
            for (k = 0; k < nopts; k++)
                fprintf(stderr, "  --%-10s %s (default %llu)\n", opts[k].name, opts[k].help,
                        (unsigned long long)opts[k].value);
            exit(SUITE_EXIT_USAGE);
        }
        opts[k].value = bench_parse_u64(suite_prog, argv[i], argv[i + 1]);
        i++;
    }
}

void print_result(uint64_t checksum, uint64_t ops, const char *extra)
{
    printf("result ok checksum=%016llx ops=%llu%s%s\n", (unsigned long long)checksum,
           (unsigned long long)ops, extra && *extra ? " " : "", extra ? extra : "");
    fflush(stdout);
}
