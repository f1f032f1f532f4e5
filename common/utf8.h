/* Text that crossed a process boundary: UTF-8 checking and the three ways
 * such text leaves us.  A module path or executable name is whatever bytes a
 * client or an imported policy said, so before a terminal, a Prometheus
 * scraper or the daemon's own tables see it, it is made safe here. */
#ifndef HAKMEMD_UTF8_H
#define HAKMEMD_UTF8_H

#include <stddef.h>

/* Length (1..4) of the well-formed UTF-8 character at p, of at most n
 * bytes; 0 when the bytes there are not one (stray continuation, overlong
 * form, surrogate, beyond U+10FFFF, cut short). */
size_t hk_utf8_len(const unsigned char *p, size_t n);

/* 1 when the well-formed character at p (of len bytes) is a control
 * character: C0, DEL or C1 (0x80-0x9f, which terminals also obey). */
int hk_utf8_is_control(const unsigned char *p, size_t len);

/* For a person's terminal: printable characters as they are, a backslash
 * as "\\", every other byte (control, invalid UTF-8) as "\xNN".  Always
 * NUL-terminates dst (cap > 0); cuts only between escapes.  Returns dst. */
const char *hk_text_for_terminal(const char *src, char *dst, size_t cap);

/* For storage at the door: a copy of at most cap-1 bytes that is valid
 * UTF-8 with no control characters (each bad byte becomes '?'), cut on a
 * character boundary, NUL-terminated.  src need not be terminated: at most
 * srclen bytes are read, and it stops at a NUL. */
void hk_text_clean(char *dst, size_t cap, const char *src, size_t srclen);

#endif
