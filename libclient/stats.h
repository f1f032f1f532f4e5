/* The statistics box: the exit report (hakmem.h: hakmem_report,
 * hakmem_get_stats) and the per-process counters the report region
 * carries (include/hakmem_shm.h, enum hkshm_proc_counter). */
#ifndef HK_STATS_H
#define HK_STATS_H

#include <stdint.h>

/* Cumulative since the process started (since the fork, in a fork child),
 * all four from what the allocator counts today:
 *   alloc_ns  nanoseconds in the medium/large slow paths (sampled timing,
 *             scaled), summed over sites;
 *   syscalls  mmap/munmap/madvise/mremap calls: not counted by the OS box
 *             yet, so 0;
 *   allocs    allocations, small ones estimated from sampling;
 *   bytes     bytes allocated, small ones estimated from sampling.
 * This is the one place the report region takes them from. */
void hk_stats_proc_counters(uint64_t *alloc_ns, uint64_t *syscalls, uint64_t *allocs, uint64_t *bytes);

#endif
