/* The operating system, as the allocator needs it: aligned mappings, giving
 * memory back, time, and what the kernel says about huge pages and faults.
 * Nothing here allocates. */
#ifndef HK_OS_H
#define HK_OS_H

#include <stddef.h>
#include <stdint.h>

/* A fresh zeroed mapping of size bytes whose start is aligned to `align`
 * (a power of two >= the page size); NULL on failure. */
void *hk_os_map_aligned(size_t size, size_t align);
void  hk_os_unmap(void *p, size_t size);
/* Gives the pages back (contents become zero on next touch). */
void  hk_os_purge(void *p, size_t size);
/* Moves a mapping to a fresh aligned place of new_size bytes without copying
 * the pages; NULL when the kernel refuses. */
void *hk_os_remap_aligned(void *p, size_t old_size, size_t new_size, size_t align);
/* Moves the pages of [from, from + size) to `to`, replacing what was
 * mapped there, without copying them.  0, or -errno (-EFAULT: the range
 * spans several mappings and the kernel, before 6.17, moves one only). */
int   hk_os_move(void *from, size_t size, void *to);
/* Faults [p, p + size) in with one system call (MADV_POPULATE_WRITE);
 * -1 where the kernel lacks it (before 5.14). */
int   hk_os_populate(void *p, size_t size);
/* What touching a page costs after mremap moved its table entry on its
 * own (not a whole page-table page, which moves 2 MiB at once), in ns
 * beyond a second touch: a few ns where the hardware walks the guest's
 * page tables, microseconds under a hypervisor's shadow paging, which
 * rebuilds the entry on that touch.  Measured once, on a few pages, the
 * first time it is asked; at least 1 (1 also when the probe could not
 * run). */
uint32_t hk_os_moved_page_touch_ns(void);
int   hk_os_advise_huge(void *p, size_t size);
int   hk_os_advise_no_huge(void *p, size_t size);

uint64_t hk_now_ns(void);            /* CLOCK_MONOTONIC */
uint64_t hk_thread_cpu_ns(void);     /* this thread's CPU time (a system call) */
uint64_t hk_coarse_ns(void);         /* CLOCK_MONOTONIC_COARSE: cheap, ~4 ms resolution */
/* Transparent huge pages: 0 never, 1 madvise, 2 always (from sysfs, once). */
int   hk_os_thp_mode(void);
/* Minor + major faults of this process so far. */
uint64_t hk_os_page_faults(void);

#endif
