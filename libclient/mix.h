/* splitmix64: one step of the generator, spreading a few seed bits (a
 * random secret, a pid and a clock) over independent-looking words. */
#ifndef HK_MIX_H
#define HK_MIX_H

#include <stdint.h>

static inline uint64_t hk_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#endif
