/* The hardened build's free-list secret (freelist.h says how it is used). */
#include "freelist.h"
#include "mix.h"

#ifdef HAKMEM_HARDENED

#include <stdint.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/random.h>
#include <x86intrin.h>

hk_freelist_key hk_fl_key;

/* 2-adic Newton iteration: each step doubles the correct low bits, and an
 * odd a is its own inverse modulo 8, so five steps reach 64 bits. */
static uint64_t odd_inverse(uint64_t a)
{
    uint64_t x = a;
    for (int i = 0; i < 5; i++) x *= 2 - a * x;
    return x;
}

void hk_freelist_init(void)
{
    uint64_t seed[4] = { 0 };
    /* GRND_NONBLOCK: early in boot the pool may not be ready; the kernel's
     * AT_RANDOM bytes (16, given to every process) are then the source. */
    if (getrandom(seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) {
        const void *at_random = (const void *)getauxval(AT_RANDOM);
        if (at_random) memcpy(seed, at_random, 16);
        seed[2] ^= __rdtsc();
        seed[3] ^= (uint64_t)(uintptr_t)&seed;
    }
    uint64_t state = seed[0] ^ hk_splitmix64(&seed[1]) ^ hk_splitmix64(&seed[2]) ^ hk_splitmix64(&seed[3]);
    uint64_t mul = hk_splitmix64(&state) | 1;
    if (mul == 1) mul = 0x9E3779B97F4A7C15ull;
    hk_fl_key.mul = mul;
    hk_fl_key.mul_inv = odd_inverse(mul);
    hk_fl_key.mask = hk_splitmix64(&state);
    hk_fl_key.tag = hk_splitmix64(&state);
}

void hk_freelist_corrupt(const hk_block *at)
{
    hk_fatal_pointer("malloc()", "corrupted free list at", at);
}

#else

void hk_freelist_init(void) {}

#endif
