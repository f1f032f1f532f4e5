/* Process counters for the daemon's reward: time the allocator spends in its
 * slow paths, the system calls it makes, and how much it allocates.
 *
 * Nothing here touches the fast paths.  Time is taken with the TSC (one
 * instruction; clock_gettime costs about fifty) and turned into nanoseconds
 * when read, at the rate measured between process start and the read; on a
 * CPU without an invariant TSC the ticks are CLOCK_MONOTONIC nanoseconds.
 * Per-thread slow paths count into their heap (owner writes, no atomic
 * read-modify-write, heap.h), rare process-wide ones (large blocks, system
 * calls) into relaxed atomics here.
 *
 * Small allocations are never counted one by one: their bytes and number are
 * estimated from the sampling countdown the fast path already keeps
 * (site.h): every HAKMEM_SAMPLE_BYTES bytes one sample is taken, so bytes =
 * completed periods x period (short by less than one period per thread), and
 * each sample of size s stands for period / s allocations (at least one).
 * Medium (segment blocks from 64 KiB) and large allocations are exact. */
#ifndef HK_COUNTERS_H
#define HK_COUNTERS_H

#include "internal.h"
#include "os.h"

#include <stdint.h>
#include <x86intrin.h>

enum { HK_SYS_MMAP, HK_SYS_MUNMAP, HK_SYS_MADVISE, HK_SYS_MREMAP, HK_SYS_KINDS };

typedef struct hk_counters {
    uint64_t slow_ns;                /* refill + retire + maintain + large */
    uint64_t refill_ns;              /* page refills, new pages and segments included */
    uint64_t retire_ns;              /* emptied pages given back to their segment */
    uint64_t maintain_ns;            /* purging, retained segments, adoption, BigCache
                                      * aging, collection, thread exit */
    uint64_t large_ns;               /* large blocks: map, unmap, BigCache, remap */
    uint64_t syscalls[HK_SYS_KINDS]; /* mmap, munmap, madvise, mremap calls */
    uint64_t syscall_ns;             /* time inside them (part of the slow times) */
    uint64_t refills;
    uint64_t small_allocs, small_bytes;      /* estimated, see above */
    uint64_t medium_allocs, medium_bytes;
    uint64_t large_allocs, large_bytes;
} hk_counters;

/* A snapshot of the process's counters (since start, or since fork in a
 * child).  Any thread, any time; takes the heap list lock briefly. */
void hk_counters_read(hk_counters *out);

/* ---- for the boxes that count ---------------------------------------- */

extern int hk_ticks_are_ns;

static inline uint64_t hk_ticks(void)
{
    return likely(!hk_ticks_are_ns) ? __rdtsc() : hk_now_ns();
}

/* A counter only its owner thread writes, any thread reads.  An aligned
 * 64-bit add is one instruction and a reader sees the old or the new value;
 * under TSan it is a relaxed atomic load and store so the benign race is not
 * reported (as hk_page_owner in internal.h). */
static inline void hk_count_own(_Atomic uint64_t *c, uint64_t v)
{
#if defined(__SANITIZE_THREAD__)
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v, memory_order_relaxed);
#else
    *(uint64_t *)c += v;
#endif
}

void hk_counters_init(void);
void hk_counters_large(uint64_t ticks, uint64_t bytes_allocated);
void hk_counters_syscall(unsigned kind, uint64_t ticks);
/* A fork child starts from zero. */
void hk_counters_fork_child(void);

#endif
