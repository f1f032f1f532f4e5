/* A small streaming JSON writer for hakmemctl --json: it tracks commas and
 * nesting so callers only say what to write.  Strings are escaped and
 * invalid UTF-8 becomes U+FFFD, so the output always parses. */
#ifndef HAKMEMD_JSONW_H
#define HAKMEMD_JSONW_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define JW_DEPTH 16

typedef struct jw {
    FILE *f;
    int depth;
    int count[JW_DEPTH];      /* members written at each level */
} jw;

void jw_init(jw *w, FILE *f);
/* key is NULL inside arrays and at top level. */
void jw_obj(jw *w, const char *key);
void jw_arr(jw *w, const char *key);
void jw_end_obj(jw *w);
void jw_end_arr(jw *w);
void jw_str(jw *w, const char *key, const char *v);   /* NULL writes null */
/* One string written in pieces (e.g. as they arrive); a piece must not cut
 * a UTF-8 character in two. */
void jw_str_begin(jw *w, const char *key);
void jw_str_piece(jw *w, const char *s, size_t len);
void jw_str_end(jw *w);
void jw_u64(jw *w, const char *key, uint64_t v);
void jw_i64(jw *w, const char *key, int64_t v);
void jw_dbl(jw *w, const char *key, double v);        /* NaN/Inf write null */
void jw_bool(jw *w, const char *key, int v);
/* Ends the document with a newline. */
void jw_done(jw *w);

#endif
