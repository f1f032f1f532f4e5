/* Thread heaps: the owner-only page queues behind the fast path, and every
 * slow path of small and medium allocation and free (heap.c); a heap's
 * lifetime, from a thread's first slow call through the pool of exited
 * threads' heaps, and fork (heap_life.c). */
#ifndef HK_HEAP_H
#define HK_HEAP_H

#include "freelist.h"
#include "internal.h"

/* The calling thread's heap, created (and the process initialised) on first
 * use; NULL only when the OS refuses memory. */
hk_heap *hk_heap_for_thread(void);

/* The fast path found no free block (or no heap yet). */
void *hk_heap_malloc_slow(size_t size, uintptr_t ra);
/* A block of class cls when its current page has none; NULL when out of
 * memory.  exact: of class cls itself (an aligned request); otherwise a
 * block of 1 to 48 KiB may be one of the class above (heap.c). */
void *hk_heap_alloc_class_slow(hk_heap *heap, unsigned cls, int exact);

/* A block of class cls (exact: see hk_heap_alloc_class_slow), fast or slow;
 * NULL when out of memory. */
static inline void *hk_heap_alloc_class(hk_heap *heap, unsigned cls, int exact)
{
    hk_page *pg = heap->current[cls];
    hk_block *b = pg->free;
    if (unlikely(b == NULL)) return hk_heap_alloc_class_slow(heap, cls, exact);
    hk_block_pop(pg, b);
    pg->used++;
    return b;
}
/* free() of a segment pointer that the calling thread does not own, or that
 * may be invalid: validates, then frees locally or remotely. */
void hk_heap_free_slow(hk_page *page, void *p, const char *fn);
/* Maintenance (purging, adopting abandoned segments, BigCache aging, the shm
 * client's flush and policy check), at most once a millisecond; callers call
 * it every so often from their slow paths. */
void hk_heap_tick(hk_heap *heap);
/* A local free made the page empty. */
void hk_heap_page_emptied(hk_heap *heap, hk_page *page);
/* Frees p, a medium block realloc moved out of pg (a page of the calling
 * thread's heap): a page left with no block goes back and its memory is
 * purged now, so that a buffer grown step by step leaves no resident
 * copies behind. */
void hk_heap_free_moved(hk_page *pg, void *p, const char *fn);
/* Collects remote frees, retires empty pages, purges idle memory;
 * force: first adopts every abandoned segment, then everything free goes
 * back to the OS now. */
void hk_heap_collect(hk_heap *heap, int force);
/* The heaps of exited threads waiting in the pool for a new thread give
 * their memory up now (their segments abandoned, their free memory purged). */
void hk_heap_release_pooled(void);
/* The small-allocation countdown went below zero: counted (counters.h
 * estimates small allocations from it), then given to the site profiler. */
void hk_heap_sample(hk_heap *heap, uintptr_t ra, size_t size);

/* mallinfo: asks every heap to refresh its figures at its next maintenance;
 * publish refreshes the calling thread's own heap now. */
void hk_heap_info_request(void);
void hk_heap_info_publish(hk_heap *heap);
/* Calls fn for every live heap's counts and figures, then once for what
 * exited threads counted (info NULL), under the heap list lock. */
typedef void (*hk_heap_visit_fn)(const hk_heap_counts *counts, const hk_heap_info *info, void *arg);
void hk_heap_visit(hk_heap_visit_fn fn, void *arg);

/* Validates p as a block of page (page may be the invalid page); aborts
 * with a message naming fn otherwise. */
void hk_heap_check_block(const hk_page *page, const void *p, const char *fn);

void hk_heap_process_init(void);
unsigned hk_heap_live_count(void);
/* Pages other threads took back from idle heaps (heap.c: reclaim_idle_heaps). */
uint64_t hk_heap_pages_reclaimed(void);
uint64_t hk_heap_remote_collected(void);

void hk_heap_fork_prepare(void);
void hk_heap_fork_parent(void);
void hk_heap_fork_child(void);

#endif
