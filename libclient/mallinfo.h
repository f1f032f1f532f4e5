/* mallinfo2() and mallinfo() figures (mallinfo.c maps each field). */
#ifndef HK_MALLINFO_H
#define HK_MALLINFO_H

#include <malloc.h>

void hk_mallinfo(struct mallinfo2 *out);
/* The same in the old struct's int fields, each clamped to INT_MAX. */
void hk_mallinfo_int(struct mallinfo *out);

#endif
