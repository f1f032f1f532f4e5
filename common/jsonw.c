/* Streaming JSON output; see jsonw.h. */
#include "jsonw.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "utf8.h"

void jw_init(jw *w, FILE *f)
{
    w->f = f;
    w->depth = 0;
    w->count[0] = 0;
}

/* The inside of a JSON string: quote, backslash and control characters
 * escaped, each byte of invalid UTF-8 one replacement character. */
static void put_chars(FILE *f, const unsigned char *p, size_t n)
{
    while (n > 0) {
        unsigned c = *p;
        size_t len = hk_utf8_len(p, n);
        if (len == 0) {
            fputs("\\ufffd", f);
            len = 1;
        } else if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc((int)c, f);
        } else if (c < 0x20) {
            fprintf(f, "\\u%04x", c);
        } else {
            fwrite(p, 1, len, f);
        }
        p += len, n -= len;
    }
}

static void put_string(FILE *f, const char *s)
{
    fputc('"', f);
    put_chars(f, (const unsigned char *)s, strlen(s));
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

void jw_str_begin(jw *w, const char *key)
{
    member(w, key);
    fputc('"', w->f);
}

void jw_str_piece(jw *w, const char *s, size_t len)
{
    put_chars(w->f, (const unsigned char *)s, len);
}

void jw_str_end(jw *w)
{
    fputc('"', w->f);
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
