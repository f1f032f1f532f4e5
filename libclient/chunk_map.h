/* The chunk map: one byte per 4 MiB of address space saying what hakmem owns
 * there.  free() consults it before trusting anything about a pointer, so a
 * foreign pointer is caught with one load instead of a system call.  The
 * array lives in .bss: untouched parts cost no memory. */
#ifndef HK_CHUNK_MAP_H
#define HK_CHUNK_MAP_H

#include "internal.h"

enum { HK_CHUNK_NONE = 0, HK_CHUNK_SEGMENT = 1, HK_CHUNK_LARGE = 2, HK_CHUNK_PACKED = 3 };

extern _Atomic uint8_t hk_chunk_map[HK_CHUNKS];

static inline unsigned hk_chunk_kind(uintptr_t p)
{
    uintptr_t i = p >> HK_SEGMENT_SHIFT;
    if (unlikely(i >= HK_CHUNKS)) return HK_CHUNK_NONE;
    return atomic_load_explicit(&hk_chunk_map[i], memory_order_relaxed);
}

/* For an address already known to be below 2^47. */
static inline unsigned hk_chunk_kind_unchecked(uintptr_t p)
{
    return atomic_load_explicit(&hk_chunk_map[p >> HK_SEGMENT_SHIFT], memory_order_relaxed);
}

static inline void hk_chunk_set(uintptr_t p, unsigned kind)
{
    atomic_store_explicit(&hk_chunk_map[p >> HK_SEGMENT_SHIFT], (uint8_t)kind, memory_order_release);
}

#endif
