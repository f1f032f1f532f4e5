/* The allocation paths behind every public entry point (alloc.c, and the
 * C++ operators in cxx_new.c). */
#ifndef HK_ALLOC_H
#define HK_ALLOC_H

#include <stddef.h>
#include <stdint.h>

void *hk_alloc(size_t size, uintptr_t ra);
void *hk_alloc_aligned(size_t align, size_t size, uintptr_t ra);
void  hk_free(void *p, const char *fn);

#endif
