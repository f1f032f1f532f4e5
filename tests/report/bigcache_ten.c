/* Allocates, touches and frees one 2 MiB block from one call site, ten times,
 * and prints the page faults of those ten rounds (getrusage minor + major).
 * tests/report/suite.sh runs it under glibc and under hakmem. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define BLOCK (2u << 20)

static long faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt + ru.ru_majflt;
}

/* One site: this call of malloc, never inlined into the loop. */
__attribute__((noinline)) static unsigned char *vm_block(void)
{
    unsigned char *p = malloc(BLOCK);
    if (p == NULL) {
        fprintf(stderr, "bigcache_ten: malloc failed\n");
        exit(1);
    }
    return p;
}

int main(void)
{
    unsigned long sum = 0;
    long before = faults();
    for (int round = 0; round < 10; round++) {
        unsigned char *p = vm_block();
        for (size_t off = 0; off < BLOCK; off += 4096) p[off] = (unsigned char)(round + off);
        for (size_t off = 0; off < BLOCK; off += 4096) sum += p[off];
        free(p);
    }
    printf("faults=%ld checksum=%lu\n", faults() - before, sum);
    return 0;
}
