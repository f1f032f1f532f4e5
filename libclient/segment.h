/* Segments: 4 MiB aligned regions owned by one thread heap, handing out
 * spans of 64 KiB slots for pages, taking them back, and returning idle
 * memory to the OS after a delay (so a program that frees and reallocates
 * does not pay page faults each time, but one that stays small shrinks).
 * Empty segments wait on a process-wide retained list for reuse. */
#ifndef HK_SEGMENT_H
#define HK_SEGMENT_H

#include "internal.h"

/* THP's small bit (knobs.h) advises a segment only for a heap that owns at
 * least this many others. */
#define HK_THP_SMALL_AFTER_SEGMENTS 4u

/* A span of `slots` slots for a page of class cls, from the heap's segments,
 * an abandoned segment, or a new one, resident slots first.  A span that
 * faults in slots while the heap keeps resident free ones it could not use
 * gives back as many of those (idle for the floor delay).  Returns the
 * initialised page (in use, empty, owned by heap), or NULL when out of
 * memory. */
hk_page *hk_segment_page_alloc(hk_heap *heap, unsigned cls);
/* The page's blocks are all free: its slots become a free span. */
void hk_segment_page_free(hk_heap *heap, hk_page *page);
/* The span that page (a retired one) had goes back to the OS now, if it is
 * still free. */
void hk_segment_purge_span(const hk_page *page);
/* Purges spans idle for longer than the purge delay (of the heap's segments
 * and the retained ones) and hands the heap's empty segments to the retained
 * list, or back to the OS beyond the RETAINED_SEGMENTS knob; force: purges
 * everything free now and unmaps every empty segment, retained ones too. */
void hk_segment_maintain(hk_heap *heap, uint64_t now_ns, int force);
/* Unmaps retained segments beyond the knob (after it was lowered). */
void hk_segment_trim_retained(void);
/* Takes one abandoned segment (if any) into heap; its pages whose blocks
 * were all freed meanwhile become free spans.  Returns 1 if it took one. */
int hk_segment_adopt_one(hk_heap *heap);
/* Thread exit: empty segments are retained (or unmapped), the rest are
 * purged and abandoned for another thread to adopt. */
void hk_segment_abandon_all(hk_heap *heap);

/* Statistics. */
uint64_t hk_segment_mapped_count(void);
uint64_t hk_segment_purged_bytes(void);
uint32_t hk_segment_retained_count(void);
uint64_t hk_segment_retained_dirty_bytes(void);
/* Bytes handed out from abandoned segments, as of their abandonment. */
uint64_t hk_segment_abandoned_used(void);

void hk_segment_fork_prepare(void);
void hk_segment_fork_parent(void);
void hk_segment_fork_child(void);

static inline hk_segment *hk_segment_of(const void *p)
{
    return (hk_segment *)((uintptr_t)p & ~(uintptr_t)HK_SEGMENT_MASK);
}

/* The page whose span holds p, a pointer into a segment: the span head of
 * p's slot (the invalid page for a slot no span holds). */
static inline hk_page *hk_page_of(const void *p)
{
    return hk_segment_of(p)->slot_page[((uintptr_t)p >> HK_SLOT_SHIFT) & (HK_SLOTS - 1)];
}

/* Bytes a page's first block lies past its slot's start (segment.c:
 * page_color); a page of several slots has none. */
static inline size_t hk_page_color(const hk_page *pg)
{
    return pg->span == 1 ? (uintptr_t)pg->start & (HK_SLOT_SIZE - 1) : 0;
}

#endif
