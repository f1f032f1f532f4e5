/* What every suite workload shares: blocks stamped with their identity and
 * verified before they are freed, a checksum over what was verified, the
 * one result line the runner parses, and argument parsing.
 *
 * A block of n bytes that carries identity id holds: id in its first 8
 * bytes (when n >= 8), then the byte fill_byte(id) up to its last byte,
 * which holds fill_byte(~id).  An allocator that hands out overlapping or
 * reused-while-live memory breaks one of them, and check_block exits 3
 * naming the workload: a broken allocator produces no number. */
#ifndef SUITE_CHECK_H
#define SUITE_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "bench_util.h"

#define SUITE_EXIT_CHECK 3   /* a verification failed */
#define SUITE_EXIT_NOMEM 4   /* an allocation returned NULL */
#define SUITE_EXIT_USAGE 64

/* Writes the stamp of id over the n bytes at p. */
void stamp_block(void *p, size_t n, uint64_t id);

/* Verifies the stamp of id over the n bytes at p; exits 3 when it is not
 * there.  Returns a value folded into the caller's checksum. */
uint64_t check_block(const void *p, size_t n, uint64_t id, const char *what);

/* Exits 3 with "PROG: check failed: WHAT" on stderr. */
void check_failed(const char *what) __attribute__((noreturn));

/* Exits 4 when p is NULL. */
void *need(void *p, size_t n);

/* calloc(n, size), exiting 4 when it fails. */
void *need_zeroed(size_t n, size_t size);

/* Folds v into a running checksum (order-dependent, 64-bit). */
static inline uint64_t mix(uint64_t sum, uint64_t v)
{
    sum ^= v + 0x9E3779B97F4A7C15ull + (sum << 6) + (sum >> 2);
    return sum * 0xBF58476D1CE4E5B9ull;
}

/* The program's name for messages; set by parse_args. */
extern const char *suite_prog;

/* Options of the form --name N, each with a default.  parse_args fills
 * value from argv and exits 64 with a usage line on anything else. */
typedef struct suite_opt {
    const char *name;
    uint64_t value;
    const char *help;
} suite_opt;

void parse_args(int argc, char **argv, suite_opt *opts, size_t nopts);

/* Prints "result ok checksum=HEX ops=N" plus extra key=value text. */
void print_result(uint64_t checksum, uint64_t ops, const char *extra);

#endif
