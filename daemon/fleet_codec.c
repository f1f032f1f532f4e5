/* The fleet's value format (fleet_codec.h): fixed-width little-endian
 * fields, read through one cursor that refuses to pass the end, so a
 * value another host wrote can be short, long or nonsense and cost no
 * more than a check of its length. */
#include "fleet_codec.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t magic[4] = { 'H', 'K', 'F', '1' };

/* ---- writing ---- */

typedef struct wcur {
    uint8_t *p, *end;
} wcur;

static void put_le(wcur *c, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        *c->p++ = (uint8_t)(v >> (8 * i));
}

static void put_f64(wcur *c, double d)
{
    uint64_t v;
    memcpy(&v, &d, sizeof v);
    put_le(c, v, 8);
}

size_t hkd_fleet_site_bytes(const hkd_fleet_site *s)
{
    size_t n = HKD_FLEET_SITE_MIN_BYTES;
    for (int a = 0; a < HKD_N_ARMS; a++)
        n += s->pulls[a] ? HKD_FLEET_ARM_BYTES : 0;
    return n;
}

long hkd_fleet_encode(const hkd_fleet_header *h, const hkd_fleet_site *sites, size_t n, uint8_t *buf, size_t cap)
{
    size_t need = HKD_FLEET_HEADER_BYTES;
    for (size_t i = 0; i < n; i++)
        need += hkd_fleet_site_bytes(&sites[i]);
    if (need > cap || n > UINT32_MAX)
        return -ENOSPC;
    wcur c = { buf, buf + cap };
    memcpy(c.p, magic, sizeof magic);
    c.p += sizeof magic;
    put_le(&c, h->shard, 2);
    put_le(&c, h->shards, 2);
    put_le(&c, (uint32_t)n, 4);
    put_le(&c, h->written_unix, 8);
    for (size_t i = 0; i < n; i++) {
        const hkd_fleet_site *s = &sites[i];
        put_le(&c, s->key.domain, 4);
        put_le(&c, s->key.module_hash, 8);
        put_le(&c, s->key.offset, 8);
        put_le(&c, s->sizes_known ? 1 : 0, 1);
        put_le(&c, s->size_lo, 1);
        put_le(&c, s->size_hi, 1);
        put_le(&c, (uint8_t)s->arm, 1);
        put_f64(&c, s->ref_cost);
        uint8_t mask = 0;
        for (int a = 0; a < HKD_N_ARMS; a++)
            mask |= (uint8_t)((s->pulls[a] != 0) << a);
        put_le(&c, mask, 1);
        for (int a = 0; a < HKD_N_ARMS; a++)
            if (s->pulls[a]) {
                put_le(&c, s->pulls[a], 4);
                put_f64(&c, s->reward_sum[a]);
            }
    }
    return (long)(c.p - buf);
}

/* ---- reading ---- */

typedef struct rcur {
    const uint8_t *p, *end;
} rcur;

static int take(rcur *c, size_t n, const uint8_t **at)
{
    if ((size_t)(c->end - c->p) < n)
        return 0;
    *at = c->p;
    c->p += n;
    return 1;
}

static int get_le(rcur *c, int bytes, uint64_t *v)
{
    const uint8_t *at;
    if (!take(c, (size_t)bytes, &at))
        return 0;
    uint64_t x = 0;
    for (int i = 0; i < bytes; i++)
        x |= (uint64_t)at[i] << (8 * i);
    *v = x;
    return 1;
}

static int get_f64(rcur *c, double *d)
{
    uint64_t v;
    if (!get_le(c, 8, &v))
        return 0;
    memcpy(d, &v, sizeof *d);
    return 1;
}

static int bad(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (why && whylen)
        vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return -EBADMSG;
}

/* One site, checked: sizes are log2 buckets of a 32-bit size, an arm is
 * one of the learner's, a reward is in [0,1] so a sum lies within
 * [0, pulls], and every number is finite. */
static int get_site(rcur *c, hkd_fleet_site *s, char *why, size_t whylen)
{
    uint64_t dom, hash, off, flags, lo, hi, arm, mask;
    if (!get_le(c, 4, &dom) || !get_le(c, 8, &hash) || !get_le(c, 8, &off) || !get_le(c, 1, &flags) ||
        !get_le(c, 1, &lo) || !get_le(c, 1, &hi) || !get_le(c, 1, &arm) || !get_f64(c, &s->ref_cost) ||
        !get_le(c, 1, &mask))
        return bad(why, whylen, "truncated site");
    s->key = (hkd_site_key){ .module_hash = hash, .offset = off, .domain = (uint32_t)dom };
    if (flags > 1)
        return bad(why, whylen, "unknown site flags %#x", (unsigned)flags);
    if (lo > 31 || hi > 31 || lo > hi)
        return bad(why, whylen, "size range %u..%u", (unsigned)lo, (unsigned)hi);
    int8_t a8 = (int8_t)(uint8_t)arm;
    if (a8 < -1 || a8 >= HKD_N_ARMS)
        return bad(why, whylen, "arm %d", a8);
    if (!isfinite(s->ref_cost) || s->ref_cost < 0)
        return bad(why, whylen, "reference cost %g", s->ref_cost);
    s->sizes_known = (uint8_t)flags;
    s->size_lo = (uint8_t)lo;
    s->size_hi = (uint8_t)hi;
    s->arm = a8;
    for (int i = 0; i < HKD_N_ARMS; i++) {
        s->pulls[i] = 0;
        s->reward_sum[i] = 0.0;
        if (!(mask >> i & 1))
            continue;
        uint64_t pulls;
        double sum;
        if (!get_le(c, 4, &pulls) || !get_f64(c, &sum))
            return bad(why, whylen, "truncated arm");
        if (pulls == 0 || pulls > HKD_FLEET_PULLS_MAX)
            return bad(why, whylen, "arm %d: %llu pulls", i, (unsigned long long)pulls);
        if (!isfinite(sum) || sum < 0 || sum > (double)pulls)
            return bad(why, whylen, "arm %d: reward sum %g over %llu pulls", i, sum, (unsigned long long)pulls);
        s->pulls[i] = (uint32_t)pulls;
        s->reward_sum[i] = sum;
    }
    return 0;
}

int hkd_fleet_decode(const uint8_t *buf, size_t len, hkd_fleet_header *h, hkd_fleet_site **out, char *why,
                     size_t whylen)
{
    *out = NULL;
    if (!buf || len > HKD_FLEET_VALUE_MAX)
        return bad(why, whylen, "%zu bytes, more than a value may hold", len);
    rcur c = { buf, buf + len };
    const uint8_t *m;
    uint64_t shard, shards, n, when;
    if (!take(&c, sizeof magic, &m) || memcmp(m, magic, sizeof magic) != 0)
        return bad(why, whylen, "not a hakmem fleet value");
    if (!get_le(&c, 2, &shard) || !get_le(&c, 2, &shards) || !get_le(&c, 4, &n) || !get_le(&c, 8, &when))
        return bad(why, whylen, "truncated header");
    if (shards == 0 || shard >= shards)
        return bad(why, whylen, "shard %u of %u", (unsigned)shard, (unsigned)shards);
    /* The count is checked against the bytes before anything is allocated. */
    if (n > (size_t)(c.end - c.p) / HKD_FLEET_SITE_MIN_BYTES)
        return bad(why, whylen, "%llu sites in %zu bytes", (unsigned long long)n, len);
    *h = (hkd_fleet_header){ .shard = (uint16_t)shard, .shards = (uint16_t)shards, .n_sites = (uint32_t)n,
                             .written_unix = when };
    if (n == 0)
        return c.p == c.end ? 0 : bad(why, whylen, "bytes after the last site");
    hkd_fleet_site *v = malloc((size_t)n * sizeof *v);
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        int rc = get_site(&c, &v[i], why, whylen);
        if (rc < 0) {
            free(v);
            return rc;
        }
    }
    if (c.p != c.end) {
        free(v);
        return bad(why, whylen, "bytes after the last site");
    }
    *out = v;
    return 0;
}
