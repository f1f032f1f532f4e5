/* What the thread-heap unit tests share (test_heap.c, test_heap_life.c):
 * the test thread's heap, and a setup and teardown that hold each test to
 * leaving the heap as it found it. */
#ifndef HEAP_FIXTURE_H
#define HEAP_FIXTURE_H

#include <stdint.h>

#include "hakmem.h"
#include "heap.h"
#include "segment.h"

static hk_heap *heap;
static uint64_t baseline_segments;

static inline unsigned segments_of_heap(const hk_heap *h)
{
    unsigned n = 0;
    for (const hk_segment *s = h->segments; s; s = s->next) n++;
    return n;
}

/* Each test starts with a heap that owns no segment and must leave it so:
 * after a forced collection everything it allocated has gone back. */
static inline int setup(void **state)
{
    (void)state;
    heap = hk_heap_for_thread();
    if (heap == NULL) return -1;
    hakmem_collect();
    baseline_segments = hk_segment_mapped_count();
    return heap->segments == NULL ? 0 : -1;
}

static inline int teardown(void **state)
{
    (void)state;
    hakmem_collect();
    return heap->segments == NULL && hk_segment_mapped_count() == baseline_segments ? 0 : -1;
}

#endif
