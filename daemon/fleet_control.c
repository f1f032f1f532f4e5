/* The fleet's control keys and values (fleet_control.h). */
#include "fleet_control.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "learner.h"

int hkd_fleet_valid_id(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!isalnum((unsigned char)s[n]) && s[n] != '.' && s[n] != '_' && s[n] != '-')
            return 0;
    return n >= 1 && n <= HKD_FLEET_ID_MAX && strcmp(s, ".") && strcmp(s, "..");
}

int hkd_control_prefix(const char *fleet, char *out, size_t cap)
{
    int n = snprintf(out, cap, "/hakmem/%s/controls/", fleet);
    return n > 0 && (size_t)n < cap ? n : -ENAMETOOLONG;
}

int hkd_control_site_text(const hkd_site_key *k, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%" PRIu32 ":%016" PRIx64 ":%" PRIx64, k->domain, k->module_hash, k->offset);
    return n > 0 && (size_t)n < cap ? n : -EINVAL;
}

int hkd_control_key(const char *fleet, hkd_control_kind kind, const hkd_site_key *key, char *out, size_t cap)
{
    char site[HKD_CONTROL_SITE_TEXT_MAX];
    if (key)
        hkd_control_site_text(key, site, sizeof site);
    else
        snprintf(site, sizeof site, "all");
    if (kind == HKD_CONTROL_PIN && !key)
        return -EINVAL;
    int n = snprintf(out, cap, "/hakmem/%s/controls/%s/%s", fleet, kind == HKD_CONTROL_PIN ? "pin" : "reset", site);
    return n > 0 && (size_t)n < cap ? n : -ENAMETOOLONG;
}

/* An unsigned number of at most max_digits digits in base, all of s[0..n). */
static int number(const char *s, size_t n, int base, size_t max_digits, uint64_t *v)
{
    if (n == 0 || n > max_digits)
        return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : base == 16 && c >= 'a' && c <= 'f' ? c - 'a' + 10
                : base == 16 && c >= 'A' && c <= 'F'                               ? c - 'A' + 10
                                                                                   : -1;
        if (d < 0 || x > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
            return -1;
        x = x * (uint64_t)base + (uint64_t)d;
    }
    *v = x;
    return 0;
}

int hkd_control_site_parse(const char *s, size_t n, hkd_site_key *k)
{
    const char *c1 = memchr(s, ':', n);
    const char *c2 = c1 ? memchr(c1 + 1, ':', n - (size_t)(c1 + 1 - s)) : NULL;
    uint64_t uid, hash, off;
    if (!c2 || number(s, (size_t)(c1 - s), 10, 10, &uid) < 0 || uid > UINT32_MAX ||
        number(c1 + 1, (size_t)(c2 - c1 - 1), 16, 16, &hash) < 0 ||
        number(c2 + 1, n - (size_t)(c2 + 1 - s), 16, 16, &off) < 0)
        return -EINVAL;
    *k = (hkd_site_key){ .module_hash = hash, .offset = off, .domain = (uint32_t)uid };
    return 0;
}

static int printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}

int hkd_control_value(int arm, const char *who, uint64_t unix_s, char *out, size_t cap)
{
    if (!printable(who, strlen(who)) || strchr(who, ' '))
        return -EINVAL;
    int n = arm >= 0 ? snprintf(out, cap, "arm=%d by=%.64s at=%" PRIu64, arm, who, unix_s)
                     : snprintf(out, cap, "by=%.64s at=%" PRIu64, who, unix_s);
    return n > 0 && (size_t)n < cap ? n : -EINVAL;
}

static int bad(char *why, size_t whylen, const char *what)
{
    snprintf(why, whylen, "%s", what);
    return -EBADMSG;
}

int hkd_control_parse(const char *prefix, const uint8_t *key, size_t klen, const uint8_t *value, size_t vlen,
                      hkd_fleet_control *out, char *why, size_t whylen)
{
    size_t plen = strlen(prefix);
    if (klen <= plen || klen > HKD_CONTROL_KEY_MAX || memcmp(key, prefix, plen) != 0 ||
        !printable((const char *)key, klen))
        return bad(why, whylen, "a key that is not a control");
    const char *k = (const char *)key + plen;
    size_t n = klen - plen;
    memset(out, 0, sizeof *out);
    if (n > 4 && !memcmp(k, "pin/", 4)) {
        out->kind = HKD_CONTROL_PIN;
        k += 4, n -= 4;
    } else if (n > 6 && !memcmp(k, "reset/", 6)) {
        out->kind = HKD_CONTROL_RESET;
        k += 6, n -= 6;
    } else {
        return bad(why, whylen, "neither a pin nor a reset");
    }
    if (out->kind == HKD_CONTROL_RESET && n == 3 && !memcmp(k, "all", 3))
        out->all = 1;
    else if (hkd_control_site_parse(k, n, &out->key) < 0)
        return bad(why, whylen, "its site is not UID:MODULEHASH:OFFSET");
    if (vlen > HKD_CONTROL_VALUE_MAX || !printable((const char *)value, vlen))
        return bad(why, whylen, "a value over 256 bytes or not printable");
    out->arm = -1;
    if (out->kind == HKD_CONTROL_PIN) {
        const char *v = (const char *)value;
        size_t digits = 0;
        if (vlen > 4 && !memcmp(v, "arm=", 4))
            while (4 + digits < vlen && v[4 + digits] >= '0' && v[4 + digits] <= '9')
                digits++;
        uint64_t arm;
        if (digits == 0 || (4 + digits < vlen && v[4 + digits] != ' ') ||
            number(v + 4, digits, 10, 3, &arm) < 0 || arm >= HKD_N_ARMS)
            return bad(why, whylen, "a pin whose value does not begin with arm=N, N an arm");
        out->arm = (int)arm;
    }
    return 0;
}
