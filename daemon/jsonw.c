/* Streaming JSON output; see jsonw.h. */
#include "jsonw.h"

#include <inttypes.h>
#include <math.h>

void jw_init(jw *w, FILE *f)
{
    w->f = f;
    w->depth = 0;
    w->count[0] = 0;
}

static void put_string(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    while (*p) {
        unsigned c = *p;
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc((int)c, f);
            p++;
        } else if (c < 0x20) {
            fprintf(f, "\\u%04x", c);
            p++;
        } else if (c < 0x80) {
            fputc((int)c, f);
            p++;
        } else {
            /* Copy a well-formed multi-byte sequence; anything else is one
             * replacement character per bad byte. */
            int n = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
            int ok = n > 0 && !(c == 0xc0 || c == 0xc1 || c > 0xf4);
            for (int i = 1; ok && i < n; i++)
                ok = (p[i] & 0xc0) == 0x80;
            if (ok) {
                fwrite(p, 1, (size_t)n, f);
                p += n;
            } else {
                fputs("\\ufffd", f);
                p++;
            }
        }
    }
    fputc('"', f);
}

static void member(jw *w, const char *key)
{
    if (w->count[w->depth]++ > 0)
        fputc(',', w->f);
    if (key) {
        put_string(w->f, key);
        fputc(':', w->f);
    }
}

static void open_level(jw *w, const char *key, int ch)
{
    member(w, key);
    fputc(ch, w->f);
    if (w->depth + 1 < JW_DEPTH)
        w->depth++;
    w->count[w->depth] = 0;
}

void jw_obj(jw *w, const char *key) { open_level(w, key, '{'); }
void jw_arr(jw *w, const char *key) { open_level(w, key, '['); }

void jw_end_obj(jw *w)
{
    fputc('}', w->f);
    if (w->depth > 0)
        w->depth--;
}

void jw_end_arr(jw *w)
{
    fputc(']', w->f);
    if (w->depth > 0)
        w->depth--;
}

void jw_str(jw *w, const char *key, const char *v)
{
    member(w, key);
    if (v)
        put_string(w->f, v);
    else
        fputs("null", w->f);
}

void jw_u64(jw *w, const char *key, uint64_t v)
{
    member(w, key);
    fprintf(w->f, "%" PRIu64, v);
}

void jw_i64(jw *w, const char *key, int64_t v)
{
    member(w, key);
    fprintf(w->f, "%" PRId64, v);
}

void jw_dbl(jw *w, const char *key, double v)
{
    member(w, key);
    if (isfinite(v))
        fprintf(w->f, "%.17g", v);
    else
        fputs("null", w->f);
}

void jw_bool(jw *w, const char *key, int v)
{
    member(w, key);
    fputs(v ? "true" : "false", w->f);
}

void jw_done(jw *w)
{
    fputc('\n', w->f);
    fflush(w->f);
}
