/* Between the two halves of the thread heap box (heap.h is what both offer
 * the rest of the client).  heap_life.c owns heaps' lifetime: the live list,
 * the pool of exited threads' heaps and what exited threads counted, all
 * under its heap list lock.  heap.c owns the pages.  Neither touches the
 * other's state: each reaches it only through what is declared here. */
#ifndef HK_HEAP_LIFE_H
#define HK_HEAP_LIFE_H

#include "internal.h"

/* ---- heap_life.c, for heap.c ---- */

/* Registers the thread-exit hook that pools a thread's heap (at process init). */
void hk_heap_life_init(void);
/* Maintenance: pooled heaps' spans idle for the purge delay go back, and a
 * heap left unclaimed for HK_POOL_HOLD_NS (or the purge delay, if longer)
 * gives its segments up to other heaps. */
void hk_heap_release_stale_pool(uint64_t now);
#define HK_POOL_HOLD_NS 250000000ull
/* Calls fn for every live heap under the heap list lock, so that no fork,
 * thread exit or pooling runs meanwhile (the reclaim of idle heaps' pages). */
void hk_heap_each_live(void (*fn)(hk_heap *heap, void *arg), void *arg);
/* The calling thread frees into target, a heap that was pooled when it
 * looked: 1 if target became the thread's heap (hk_tls_heap), its previous
 * one pooled; 0 if the thread took one over before, or target is no longer
 * in the pool. */
int hk_heap_take_over(hk_heap *target);

/* ---- heap.c, for heap_life.c (both under heap->own) ---- */

/* Collects remote frees and retires every empty page; drop_current: the
 * current pages give up their phantom use first (so they may retire too),
 * and the free blocks of 8 KiB or more left in pages some block keeps give
 * back their memory but the OS page holding their list link. */
void hk_heap_collect_pages(hk_heap *heap, int drop_current);
/* Current pages of every class whose blocks are all free give up their
 * phantom use, so that they retire at the next collection (a pooled heap's:
 * no thread allocates from it meanwhile). */
void hk_heap_drop_idle_current(hk_heap *heap);
/* Refreshes the heap's mallinfo figures (a heap pooled keeps them). */
void hk_heap_info_publish_locked(hk_heap *heap);

#endif
