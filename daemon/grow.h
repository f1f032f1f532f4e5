/* Arrays that grow: room for at least `need` items, doubling (from 256)
 * so that adding one at a time costs a logarithmic number of copies. */
#ifndef HAKMEMD_GROW_H
#define HAKMEMD_GROW_H

#include <errno.h>
#include <stdlib.h>

/* *p with room for need items of size bytes (*cap of them); 0, or -ENOMEM
 * with *p and *cap as they were. */
static inline int hkd_grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 256;
    while (c < need)
        c *= 2;
    void *n = realloc(*p, c * size);
    if (!n)
        return -ENOMEM;
    *p = n;
    *cap = c;
    return 0;
}

#endif
