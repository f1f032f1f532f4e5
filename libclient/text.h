/* Building a short line of text in a caller's buffer without stdio: safe
 * inside malloc and in a fork child (no locale, no locks, no allocation).
 * The buffer is always NUL-terminated; what does not fit is dropped. */
#ifndef HK_TEXT_H
#define HK_TEXT_H

#include <stdint.h>

typedef struct hk_text {
    char *p;
    int len, used;
} hk_text;

static inline hk_text hk_text_on(char *buf, int len)
{
    if (len > 0)
        buf[0] = 0;
    return (hk_text){ buf, len, 0 };
}

static inline void hk_text_char(hk_text *t, char c)
{
    if (t->used < t->len - 1) {
        t->p[t->used++] = c;
        t->p[t->used] = 0;
    }
}

static inline void hk_text_str(hk_text *t, const char *s)
{
    while (*s)
        hk_text_char(t, *s++);
}

/* Bytes from outside (a daemon's error text): printable ASCII as is, the
 * rest as '?', at most n bytes. */
static inline void hk_text_untrusted(hk_text *t, const char *s, int n)
{
    for (int i = 0; i < n && s[i]; i++)
        hk_text_char(t, s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?');
}

static inline void hk_text_u64(hk_text *t, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n > 0)
        hk_text_char(t, tmp[--n]);
}

static inline void hk_text_hex(hk_text *t, uint64_t v)
{
    hk_text_str(t, "0x");
    int shift = 60;
    while (shift > 0 && ((v >> shift) & 0xf) == 0)
        shift -= 4;
    for (; shift >= 0; shift -= 4)
        hk_text_char(t, "0123456789abcdef"[(v >> shift) & 0xf]);
}

#endif
