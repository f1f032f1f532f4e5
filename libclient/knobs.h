/* Process-level knobs: where a process sits between speed and memory.  The
 * daemon learns them per binary and publishes them by index (the shm ABI's
 * knob table uses the same numbers); until then, and after a reset, they
 * hold the environment's values.  Slow paths read them with relaxed loads,
 * so a change takes effect at each path's next look:
 *
 *  0 PURGE_DELAY_MS     ms a freed span (or retained segment) stays resident
 *                       before MADV_DONTNEED, at least: refaults of spans
 *                       purged too soon raise the delay in force above it
 *                       (purge_pace.h).  0..60000, default 20
 *                       (HAKMEM_PURGE_DELAY_MS): long enough that a program
 *                       freeing and reallocating in a loop pays no faults,
 *                       short enough that one that shrinks shows it at once
 *                       and that threads coming and going do not pile up
 *                       freed spans (the larson workload: 13% less peak RSS
 *                       than at 100 ms, for 2-4% more time; bench/suite).
 *  1 RETAINED_SEGMENTS  empty segments kept mapped process-wide for reuse
 *                       instead of being unmapped (their memory still purged
 *                       after the delay).  0..256, default 8
 *                       (HAKMEM_RETAINED_SEGMENTS): 32 MiB of address space,
 *                       about 8 KiB resident each once purged; a heap that
 *                       shrinks and regrows skips mmap, munmap and, within
 *                       the delay, the page faults.
 *  2 PARTIAL_REUSE      how hard a page refill looks for room in the class's
 *                       partly used pages before taking a fresh one:
 *                         0  first page with a free block among 2 (fastest
 *                            refill; fragmentation takes fresh pages sooner)
 *                         1  first among 8 (default, HAKMEM_PARTIAL_REUSE)
 *                         2  first among 32
 *                         3  the fullest among 64, so live blocks gather in
 *                            few pages and sparse ones drain and are retired
 *                            (least memory; each refill scans them all).
 *  3 THP                bits.  HK_THP_SMALL: MADV_HUGEPAGE on segments
 *                       mapped (or taken back from the retained ones) from
 *                       then on for a thread heap that owns four others
 *                       or more (its first 16 MiB stay in small pages), two
 *                       huge pages each, when the kernel's THP mode is
 *                       "madvise" (HAKMEM_SMALL_THP=1).  HK_THP_LARGE:
 *                       on every large block of 2 MiB or more mapped from
 *                       then on, whatever its site's policy
 *                       (HAKMEM_LARGE_THP=1); a huge page moves whole when
 *                       BigCache hands the block on, so a program that
 *                       replaces big buffers neither faults nor misses the
 *                       TLB on them (bench/suite's big-blocks: 0.45-0.95 s
 *                       against 2.1-2.3 s without, tcmalloc 1.3-1.5, at the
 *                       same peak RSS, on one VM; on another, whose
 *                       kernel reports free memory to the host
 *                       (page_reporting_order=11), the kernel's zeroing of
 *                       huge pages took 77% of the run's samples against
 *                       12% of small ones (perf, cpu-clock), the fast arm
 *                       ran at 1.24-1.61x the default's time and fast-thp
 *                       at 0.78-1.12x (bash bench/arms.sh, three runs, at
 *                       three revisions), and the learner kept the
 *                       default; on a third, with page_reporting_order=9,
 *                       both bits ran bench/programs.sh's python at 0.69x
 *                       the default's time and perl at 0.84x, for 3-6%
 *                       more peak RSS).  Default 0: huge pages
 *                       make RSS coarse (a block touched sparsely holds
 *                       2 MiB per page touched), purging splits them, and
 *                       whether they pay depends on the machine: a
 *                       per-binary choice.
 *  4 LARGE_THRESHOLD    bytes from which a block of a site without a
 *                       published policy is mapped on its own.  64 KiB..1 MiB,
 *                       default 1 MiB (HAKMEM_LARGE_THRESHOLD).  A block
 *                       realloc grows to 64 KiB or more is mapped on its own
 *                       whatever this says (alloc.c: REALLOC_MAP_FROM).
 *  5 BIGCACHE_KIB       total bytes BigCache may hold (oldest blocks evicted
 *                       first beyond it).  0..16 GiB, default 128 MiB
 *                       (HAKMEM_BIGCACHE_BYTES, with K/M suffixes): room for
 *                       a few recent large blocks; they also leave once idle
 *                       for as long as the purge delay can grow (1 s by
 *                       default, purge_pace.h).  A large allocation takes
 *                       what it needs of the cached memory and leaves the
 *                       rest, so a program that replaces big buffers keeps
 *                       the cache drained and its RSS at what it holds; the
 *                       budget bounds what one that stops allocating keeps
 *                       for that second.
 *  6 MEDIUM_PAGE_BLOCKS the fewest blocks a new page of a class of 16 KiB to
 *                       128 KiB holds.  1..8, default 8
 *                       (HAKMEM_MEDIUM_PAGE_BLOCKS).  Fewer: a page whose
 *                       few blocks are all free goes back as a whole span,
 *                       for a page of any class that fits it (segment.c),
 *                       so a program that keeps a few medium blocks of
 *                       many sizes holds less (a server like larson: -16%
 *                       peak RSS at 1); more: fewer page refills and
 *                       purge/re-fault cycles for one that shrinks and
 *                       regrows, and small pages that do not come to sit on
 *                       slots medium ones left resident (git: +22% at 1).
 *  7 POPULATE_KIB       KiB of a fresh page faulted in with one system call
 *                       (MADV_POPULATE_WRITE) when carving first reaches
 *                       them, in every page but the first a heap takes of
 *                       a class.  0..1024, default 0 (HAKMEM_POPULATE_KIB): each
 *                       OS page faults on its first touch, as without it.
 *                       On this 2-core VM a fault costs ~11 us and
 *                       populating a page ~0.7 us, so at 32 a heap that
 *                       grows or threads that come and go run faster
 *                       (mstress -20% wall at +1.6% RSS, grow-shrink -18%,
 *                       larson -9% at +2%); a small program holds up to
 *                       28 KiB per class it never carves (small-leaky
 *                       +5.7% RSS): a per-binary choice, not a default.
 *  8 PACKED_KIB         requests of more than this many KiB, up to 64 KiB,
 *                       that are not a multiple of 4 KiB are packed end to
 *                       end (packed.h) instead of taking a size class.
 *                       0..63, 0: none; default 4 (HAKMEM_PACKED_KIB).  A
 *                       class rounds such a block up by an eighth on
 *                       average and gives it a last page no neighbour
 *                       shares, so a heap of them holds about a tenth more
 *                       than it asked for; packed, it holds what it asked
 *                       for.  On this VM (/usr/bin/time, 5 alternating
 *                       runs, medians): bench/suite's grow-shrink --mib 200
 *                       --cycles 5 peaked at 214.6 MB against 230.5 in
 *                       classes and 210.4 under glibc, in the same time;
 *                       larson --threads 4 --rounds 100 --ops 40000 at
 *                       28.1 MB against 34.7 (glibc 35.9), in 1.29 s
 *                       against 1.39.  From 4 KiB because a page and a
 *                       header is a common size (sqlite's page-cache
 *                       entries are 4368 bytes, which the 4608-byte class
 *                       rounds up by 5%); sqlite's queries of
 *                       bench/programs.sh peaked at 8608 KB against 8920
 *                       at 8 (glibc 8328), its load at 8368 against 8576
 *                       (glibc 8184), in the same time; git's largest
 *                       process (gc --aggressive) held about 1% more than
 *                       at 8.
 *                       Below 4 KiB the classes are a quarter or an eighth
 *                       of a power of two apart and a block and its
 *                       neighbours share pages, so packing gains less and
 *                       costs the arena's lock where the class's free list
 *                       costs none: at 1, remote-free --pairs 1 --items
 *                       2000000 peaked at 2.05 MB against 2.31 (glibc
 *                       1.88) but ran 20% longer, grow-shrink 5% longer:
 *                       a per-binary choice.  A page multiple keeps its
 *                       class, which it fits exactly: packed behind a
 *                       header, a 32 KiB buffer written whole would touch
 *                       nine pages, not eight.
 */
#ifndef HK_KNOBS_H
#define HK_KNOBS_H

#include <stdatomic.h>
#include <stdint.h>

enum {
    HK_KNOB_PURGE_DELAY_MS = 0,
    HK_KNOB_RETAINED_SEGMENTS = 1,
    HK_KNOB_PARTIAL_REUSE = 2,
    HK_KNOB_THP = 3,
    HK_KNOB_LARGE_THRESHOLD = 4,
    HK_KNOB_BIGCACHE_KIB = 5,
    HK_KNOB_MEDIUM_PAGE_BLOCKS = 6,
    HK_KNOB_POPULATE_KIB = 7,
    HK_KNOB_PACKED_KIB = 8,
    HK_KNOBS = 9,
};

#define HK_MEDIUM_PAGE_BLOCKS_MAX 8
#define HK_THP_SMALL 1u
#define HK_THP_LARGE 2u

extern _Atomic uint32_t hk_knob_value[HK_KNOBS];

static inline uint32_t hk_knob(unsigned k)
{
    return atomic_load_explicit(&hk_knob_value[k], memory_order_relaxed);
}

/* Sets the knobs whose bit is set in `set` (bit i: knob[i]), each clamped to
 * its range; lowering the retained segments or the BigCache budget gives the
 * surplus back before returning.  Any thread, any time. */
void hk_knobs_apply(uint32_t set, const uint32_t knob[HK_KNOBS]);
/* Every knob back to the environment's value. */
void hk_knobs_reset(void);
/* What the daemon published for this binary: the knobs in `set` take
 * knob[], every other one the environment's value, all at once. */
void hk_knobs_publish(uint32_t set, const uint32_t knob[HK_KNOBS]);

/* From hk_options_load: the environment's values become the current ones. */
void hk_knobs_load_env(void);

#endif
