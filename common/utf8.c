/* UTF-8 checking and escaping; see utf8.h. */
#include "utf8.h"

#include <stdio.h>
#include <string.h>

size_t hk_utf8_len(const unsigned char *p, size_t n)
{
    if (n == 0)
        return 0;
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xbf;       /* range of the second byte */
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0;                   /* overlong */
        else if (c == 0xed)
            hi = 0x9f;                   /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;                   /* overlong */
        else if (c == 0xf4)
            hi = 0x8f;                   /* beyond U+10FFFF */
    } else
        return 0;
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

int hk_utf8_is_control(const unsigned char *p, size_t len)
{
    if (len == 1)
        return p[0] < 0x20 || p[0] == 0x7f;
    return len == 2 && p[0] == 0xc2 && p[1] < 0xa0;
}

const char *hk_text_for_terminal(const char *src, char *dst, size_t cap)
{
    const unsigned char *p = (const unsigned char *)(src ? src : "");
    size_t n = strlen((const char *)p), o = 0;
    if (cap == 0)
        return dst;
    while (n > 0) {
        size_t len = hk_utf8_len(p, n);
        char esc[8];
        const char *out = (const char *)p;
        size_t olen = len;
        if (len == 0 || hk_utf8_is_control(p, len)) {
            snprintf(esc, sizeof esc, "\\x%02x", p[0]);
            out = esc, olen = 4, len = 1;
        } else if (p[0] == '\\') {
            out = "\\\\", olen = 2;
        }
        if (o + olen >= cap)
            break;
        memcpy(dst + o, out, olen);
        o += olen;
        p += len, n -= len;
    }
    dst[o] = '\0';
    return dst;
}

void hk_text_clean(char *dst, size_t cap, const char *src, size_t srclen)
{
    if (cap == 0)
        return;
    const unsigned char *p = (const unsigned char *)src;
    size_t n = src ? strnlen(src, srclen) : 0, o = 0;
    while (n > 0) {
        size_t len = hk_utf8_len(p, n);
        if (len == 0 || hk_utf8_is_control(p, len)) {
            if (o + 1 >= cap)
                break;
            dst[o++] = '?';
            p++, n--;
            continue;
        }
        if (o + len >= cap)
            break;
        memcpy(dst + o, p, len);
        o += len;
        p += len, n -= len;
    }
    dst[o] = '\0';
}
