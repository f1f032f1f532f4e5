/* hakmem: the public extension API.
 *
 * libhakmem replaces malloc under the standard names (malloc, free, ...,
 * and the C++ operator new/delete family).  Built with -DHAKMEM_PREFIX it
 * exports the same functions as hak_malloc, hak_free, ... instead, so that
 * sanitizers (which replace malloc themselves) can test it.
 *
 * The functions below exist in both builds. */
#ifndef HAKMEM_H
#define HAKMEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HAKMEM_VERSION "0.1.0"

/* Prefixed entry points (only in the -DHAKMEM_PREFIX build). */
void  *hak_malloc(size_t size);
void   hak_free(void *ptr);
void  *hak_calloc(size_t n, size_t size);
void  *hak_realloc(void *ptr, size_t size);
void  *hak_reallocarray(void *ptr, size_t n, size_t size);
int    hak_posix_memalign(void **out, size_t alignment, size_t size);
void  *hak_aligned_alloc(size_t alignment, size_t size);
void  *hak_memalign(size_t alignment, size_t size);
void  *hak_valloc(size_t size);
void  *hak_pvalloc(size_t size);
size_t hak_malloc_usable_size(void *ptr);
/* As glibc's mallinfo2() and mallinfo() (declared in <malloc.h>). */
struct mallinfo2 hak_mallinfo2(void);
struct mallinfo hak_mallinfo(void);

/* Statistics of one process, as the exit report shows them. */
typedef struct hakmem_stats {
    uint64_t bigcache_hits, bigcache_misses, bigcache_puts, bigcache_evictions;
    uint64_t large_allocs, large_frees, large_mapped_bytes;
    uint64_t segments_mapped, segment_bytes_mapped;
    uint64_t bytes_purged;          /* returned to the OS while idle */
    uint64_t remote_frees_collected;
    uint32_t sites;                 /* distinct call sites seen */
    uint32_t threads_live;
} hakmem_stats;

void hakmem_get_stats(hakmem_stats *out);

/* The process-level knobs in force now, numbered as include/hakmem_shm.h
 * numbers them (purge delay in ms, retained segments, partial reuse 0..3,
 * small-object THP, default large threshold in bytes, BigCache budget in
 * KiB, fewest blocks per medium page, KiB populated ahead of carving,
 * whether 8-64 KiB requests are packed; entries past the last knob are 0),
 * and the arm the daemon published for this binary
 * (-1: none; the knobs are then the environment's or the defaults). */
#define HAKMEM_KNOBS_MAX 16
typedef struct hakmem_knobs {
    int32_t  binary_arm;
    uint32_t value[HAKMEM_KNOBS_MAX];
} hakmem_knobs;

void hakmem_get_knobs(hakmem_knobs *out);
/* Writes the report (as HAKMEM_STATS=1 does at exit) to fd. */
void hakmem_report(int fd);
/* Returns idle memory to the OS now (what malloc_trim(0) also does). */
void hakmem_collect(void);

#ifdef __cplusplus
}
#endif
#endif
