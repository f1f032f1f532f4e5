/* The kernel's clock_gettime, called in the vDSO directly.  libc's wrapper
 * lives in a stretch of libc's text that nothing else the allocator calls
 * touches, and the first call maps up to 64 KiB of it (the kernel's
 * fault-around) into the resident set of every process, however small. */
#ifndef HK_VDSO_H
#define HK_VDSO_H

#include <time.h>

typedef int (*hk_clock_fn)(clockid_t clock, struct timespec *ts);

/* __vdso_clock_gettime (0 or a negative errno, like the system call), or
 * NULL when the kernel maps no vDSO or its symbol table cannot be read. */
hk_clock_fn hk_vdso_clock_gettime(void);

#endif
