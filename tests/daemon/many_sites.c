/* A process with more call sites than its report region holds
 * (HKSHM_REGION_SITES): SITES functions, each one malloc call of a medium
 * block (never sampled), called round after round for DURATION_MS.
 *   many_sites DURATION_MS  ->  "sites N rounds ok" */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SITES 300
#define BLOCK (128u << 10)

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Each expansion is a call site of its own; the empty asm keeps the
 * compiler from merging the bodies. */
#define SITE(n)                                                      \
    __attribute__((noinline)) static unsigned char *site_##n(void)   \
    {                                                                \
        unsigned char *p = malloc(BLOCK);                            \
        __asm__ volatile("" : : "r"(n) : "memory");                  \
        return p;                                                    \
    }
#define SITE10(n) SITE(n##0) SITE(n##1) SITE(n##2) SITE(n##3) SITE(n##4) \
                  SITE(n##5) SITE(n##6) SITE(n##7) SITE(n##8) SITE(n##9)
#define SITE100(n) SITE10(n##0) SITE10(n##1) SITE10(n##2) SITE10(n##3) SITE10(n##4) \
                   SITE10(n##5) SITE10(n##6) SITE10(n##7) SITE10(n##8) SITE10(n##9)
SITE100(1) SITE100(2) SITE100(3)

#define REF(n) site_##n,
#define REF10(n) REF(n##0) REF(n##1) REF(n##2) REF(n##3) REF(n##4) \
                 REF(n##5) REF(n##6) REF(n##7) REF(n##8) REF(n##9)
#define REF100(n) REF10(n##0) REF10(n##1) REF10(n##2) REF10(n##3) REF10(n##4) \
                  REF10(n##5) REF10(n##6) REF10(n##7) REF10(n##8) REF10(n##9)
static unsigned char *(*const sites[SITES])(void) = { REF100(1) REF100(2) REF100(3) };

int main(int argc, char **argv)
{
    uint64_t duration = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000;
    uint64_t end = now_ms() + duration;
    unsigned long rounds = 0;
    do {
        for (int i = 0; i < SITES; i++) {
            unsigned char *p = sites[i]();
            if (p == NULL) {
                fprintf(stderr, "many_sites: out of memory\n");
                return 1;
            }
            p[0] = (unsigned char)i;
            p[BLOCK - 1] = (unsigned char)rounds;
            if (p[0] != (unsigned char)i || p[BLOCK - 1] != (unsigned char)rounds) {
                fprintf(stderr, "many_sites: a block lost what was written\n");
                return 1;
            }
            free(p);
        }
        rounds++;
    } while (now_ms() < end);
    printf("sites %d rounds ok (%lu)\n", SITES, rounds);
    return 0;
}
