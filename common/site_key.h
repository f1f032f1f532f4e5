/* A site's identity in the daemon: (domain, module_hash, offset).  One
 * order and one hash for every table keyed by it (records, archive, the
 * published table, state files): domain first, so one user's sites are
 * contiguous and never interleave with another's. */
#ifndef HAKMEMD_SITE_KEY_H
#define HAKMEMD_SITE_KEY_H

#include <stdint.h>

#include "core_api.h"

static inline int hkd_site_key_cmp(const hkd_site_key *a, const hkd_site_key *b)
{
    if (a->domain != b->domain)
        return a->domain < b->domain ? -1 : 1;
    if (a->module_hash != b->module_hash)
        return a->module_hash < b->module_hash ? -1 : 1;
    if (a->offset != b->offset)
        return a->offset < b->offset ? -1 : 1;
    return 0;
}

static inline int hkd_site_key_eq(const hkd_site_key *a, const hkd_site_key *b)
{
    return a->module_hash == b->module_hash && a->offset == b->offset && a->domain == b->domain;
}

static inline uint64_t hkd_site_key_hash(const hkd_site_key *k)
{
    uint64_t x = k->module_hash ^ (k->offset * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)k->domain * 0xD6E8FEB86659FD93ull);
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    return x;
}

#endif
