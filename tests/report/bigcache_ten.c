/* Ten rounds of 2 MiB blocks from one call site, as BigCache serves them
 * from the second round on.  tests/report/suite.sh runs it under glibc and
 * under hakmem.
 *
 *   bigcache_ten          one block a round, every byte written and read
 *                         back before it is freed; prints the page faults
 *                         of the ten rounds (getrusage minor + major)
 *   bigcache_ten calloc   calloc of a block the round before filled with
 *                         0xA5 and freed: every byte must read zero
 *   bigcache_ten hold     two blocks of one site live at once each round,
 *                         and one held across all rounds: none may change
 *                         what another holds, and realloc keeps the data
 * Exit 1 (and one line why) when a block does not hold what it must. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define BLOCK (2u << 20)
#define ROUNDS 10

static long faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt + ru.ru_majflt;
}

/* One site each: these calls, never inlined into the loops. */
__attribute__((noinline)) static unsigned char *vm_block(void)
{
    return malloc(BLOCK);
}

__attribute__((noinline)) static unsigned char *zeroed_block(void)
{
    return calloc(1, BLOCK);
}

static void need(const void *p)
{
    if (p == NULL) {
        fprintf(stderr, "bigcache_ten: out of memory\n");
        exit(2);
    }
}

/* A word no other block or round writes at that offset. */
static uint64_t word(uint64_t tag, size_t i)
{
    return (tag << 40) ^ (i * 0x9E3779B97F4A7C15ull);
}

static void fill(unsigned char *p, size_t len, uint64_t tag)
{
    for (size_t i = 0; i < len / 8; i++) {
        uint64_t w = word(tag, i);
        memcpy(p + 8 * i, &w, 8);
    }
}

/* The offset of the first word that is not what fill(tag) wrote, or -1. */
static long damaged(const unsigned char *p, size_t len, uint64_t tag)
{
    for (size_t i = 0; i < len / 8; i++) {
        uint64_t w;
        memcpy(&w, p + 8 * i, 8);
        if (w != word(tag, i))
            return (long)(8 * i);
    }
    return -1;
}

static int report_rounds(void)
{
    long before = faults();
    for (int round = 0; round < ROUNDS; round++) {
        unsigned char *p = vm_block();
        need(p);
        fill(p, BLOCK, (uint64_t)round + 1);
        long at = damaged(p, BLOCK, (uint64_t)round + 1);
        if (at >= 0) {
            fprintf(stderr, "bigcache_ten: round %d: byte %ld of the block changed under its owner\n", round, at);
            return 1;
        }
        free(p);
    }
    printf("faults=%ld rounds=%d intact\n", faults() - before, ROUNDS);
    return 0;
}

static int calloc_rounds(void)
{
    for (int round = 0; round < ROUNDS; round++) {
        unsigned char *p = zeroed_block();
        need(p);
        for (size_t i = 0; i < BLOCK; i++)
            if (p[i] != 0) {
                fprintf(stderr, "bigcache_ten: round %d: calloc returned byte %zu = %#x, not zero\n", round, i, p[i]);
                return 1;
            }
        memset(p, 0xA5, BLOCK);
        free(p);
    }
    printf("calloc rounds=%d zeroed\n", ROUNDS);
    return 0;
}

static int hold_rounds(void)
{
    unsigned char *held = vm_block();
    need(held);
    fill(held, BLOCK, 0xABC);
    for (int round = 0; round < ROUNDS; round++) {
        unsigned char *a = vm_block(), *b = vm_block();
        need(a);
        need(b);
        fill(a, BLOCK, 2 * (uint64_t)round + 1);
        fill(b, BLOCK, 2 * (uint64_t)round + 2);
        long at;
        if ((at = damaged(a, BLOCK, 2 * (uint64_t)round + 1)) >= 0 ||
            (at = damaged(b, BLOCK, 2 * (uint64_t)round + 2)) >= 0 || (at = damaged(held, BLOCK, 0xABC)) >= 0) {
            fprintf(stderr, "bigcache_ten: round %d: byte %ld of a live block was changed by another%s\n", round,
                    at, a == b ? " (two live blocks at one address)" : "");
            return 1;
        }
        free(b);
        free(a);
    }
    unsigned char *grown = realloc(held, 2 * BLOCK);
    need(grown);
    long at = damaged(grown, BLOCK, 0xABC);
    if (at >= 0) {
        fprintf(stderr, "bigcache_ten: realloc lost byte %ld of the block\n", at);
        return 1;
    }
    free(grown);
    printf("hold rounds=%d intact\n", ROUNDS);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 1)
        return report_rounds();
    if (argc == 2 && !strcmp(argv[1], "calloc"))
        return calloc_rounds();
    if (argc == 2 && !strcmp(argv[1], "hold"))
        return hold_rounds();
    fprintf(stderr, "usage: bigcache_ten [calloc|hold]\n");
    return 2;
}
