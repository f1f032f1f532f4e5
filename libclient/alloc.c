/* Public entry points.  The whole cost of a small malloc and free is in the
 * two inline functions at the top of this file; everything else is out of
 * line.
 *
 * malloc: thread heap (one TLS load), page for the size (direct table up to
 * 1 KiB), pop its free list, count, sample-countdown.  free: chunk map says
 * "segment", mask to the segment, slot to the page, owner check, push. */
#include "alloc.h"
#include "bigcache.h"
#include "chunk_map.h"
#include "counters.h"
#include "freelist.h"
#include "hakmem.h"
#include "heap.h"
#include "internal.h"
#include "knobs.h"
#include "large.h"
#include "mallinfo.h"
#include "options.h"
#include "os.h"
#include "packed.h"
#include "segment.h"
#include "shm_client.h"
#include "site.h"
#include "size_class.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#ifdef HAKMEM_PREFIX
#define API(name) hak_##name
#else
#define API(name) name
#endif
#define EXPORT __attribute__((visibility("default")))
#define RA() ((uintptr_t)__builtin_return_address(0))

#define MAX_REQUEST ((size_t)PTRDIFF_MAX)
#define TIMED_EVERY 16
/* Growth by realloc to this size or more maps the block on its own (the
 * smallest large threshold a site can have), as glibc's realloc moves any
 * block past its mmap threshold with mremap: a vector doubled to 2 MiB is
 * copied up to 64 KiB and moved from there. */
#define REALLOC_MAP_FROM ((size_t)HK_SAMPLED_MAX + 1)

static void *malloc_medium(size_t size, uintptr_t ra, int *zeroed, size_t map_from);
static void free_other(void *p, const char *fn);

/* A small size whose page has no free block (or no heap yet). */
static HK_NOINLINE void *malloc_slow(size_t size, uintptr_t ra)
{
    return hk_heap_malloc_slow(size, ra);
}

/* Out of line so that the fast path keeps no register across a call. */
static HK_NOINLINE void *sampled(hk_heap *heap, uintptr_t ra, size_t size, void *block)
{
    hk_heap_sample(heap, ra, size);
    return block;
}

/* Reached from malloc by a tail jump (sibling call, -O2): the return address
 * is malloc's caller.  Were the jump ever compiled as a call, sites would be
 * attributed to malloc itself; tests/unit/test_site.c would notice. */
static HK_NOINLINE void *malloc_slow_tail(size_t size)
{
    return malloc_slow(size, RA());
}

static HK_NOINLINE void *malloc_medium_tail(size_t size)
{
    return malloc_medium(size, RA(), NULL, SIZE_MAX);
}

static HK_NOINLINE void *sampled_tail(hk_heap *heap, size_t size, void *block)
{
    hk_heap_sample(heap, RA(), size);
    return block;
}

/* ---- the fast paths ---------------------------------------------------- */

/* A free block b of page handed out (malloc's pop, realloc's move). */
static inline __attribute__((always_inline)) void take_block(hk_page *page, hk_block *b)
{
    hk_block_pop(page, b);
    page->used++;
}

/* A block of a page the heap owns given back (free's push, realloc's move). */
static inline __attribute__((always_inline)) void give_back_own(hk_heap *heap, hk_page *page, hk_block *b)
{
    hk_block_push(page, b);
    if (unlikely(hk_page_unuse(page) == 0)) hk_heap_page_emptied(heap, page);
}

/* from_malloc: the caller is malloc itself, whose slow exits are tail jumps,
 * so the out-of-line functions find malloc's return address as their own and
 * the fast path does not load it.  Other entry points pass it explicitly. */
static inline __attribute__((always_inline)) void *alloc_inline(size_t size, uintptr_t ra, int from_malloc)
{
    hk_heap *heap = hk_tls_heap;
    hk_page *page;
    if (likely(size <= HK_DIRECT_MAX)) page = heap->direct[(size + HK_ALIGN - 1) / HK_ALIGN];
    else if (likely(size <= HK_SAMPLED_MAX)) page = heap->current[hk_size_class(size)];
    else return from_malloc ? malloc_medium_tail(size) : malloc_medium(size, ra, NULL, SIZE_MAX);
    hk_block *b = page->free;
    if (unlikely(b == NULL)) return from_malloc ? malloc_slow_tail(size) : malloc_slow(size, ra);
    take_block(page, b);
    if (unlikely((heap->sample_left -= (int64_t)size) < 0))
        return from_malloc ? sampled_tail(heap, size, b) : sampled(heap, ra, size, b);
    return b;
}

/* Pointers no block can have: above the 47-bit user address space, or not
 * 16-byte aligned.  One test rejects both before the chunk map is indexed. */
#define FREE_REJECT (~(((uintptr_t)1 << HK_ADDR_BITS) - 1) | (HK_ALIGN - 1))

static inline __attribute__((always_inline)) void free_inline(void *p, const char *fn)
{
    uintptr_t a = (uintptr_t)p;
    if (likely(!(a & FREE_REJECT) && hk_chunk_kind_unchecked(a) == HK_CHUNK_SEGMENT)) {
        hk_page *page = hk_page_of(p);
        hk_heap *heap = hk_tls_heap;
        if (likely(hk_page_owner(page) == heap)) {
            hk_block *b = p;
#ifdef HAKMEM_HARDENED
            /* Our own page: p must be exactly the start of one of its blocks,
             * and one that is not free already. */
            if (unlikely(!hk_page_has_block(page, a, page->capacity))) hk_fatal_pointer(fn, "invalid pointer", p);
            if (unlikely(hk_block_is_free(b))) hk_fatal_pointer(fn, "double free", p);
#endif
            give_back_own(heap, page, b);
            return;
        }
        hk_heap_free_slow(page, p, fn);
        return;
    }
    free_other(p, fn);
}

void *hk_alloc(size_t size, uintptr_t ra) { return alloc_inline(size, ra, 0); }
void hk_free(void *p, const char *fn) { free_inline(p, fn); }

/* ---- slow paths -------------------------------------------------------- */

/* The site's large threshold: its published policy's, or the process's
 * default (the LARGE_THRESHOLD knob, which may change at any time: a block
 * stays what it was allocated as, so a change only moves later ones). */
static inline uint32_t large_threshold(const hk_site_local *site)
{
    return site->policy.from_daemon ? site->policy.large_threshold : hk_knob(HK_KNOB_LARGE_THRESHOLD);
}

/* A medium block from the heap's segments, counted (counters.h). */
static inline void *medium_block(hk_heap *heap, unsigned cls, size_t size)
{
    void *p = hk_heap_alloc_class(heap, cls, 0);
    if (unlikely(p == NULL)) return NULL;
    hk_count_own(&heap->counts.medium_allocs, 1);
    hk_count_own(&heap->counts.medium_bytes, size);
    return p;
}

/* Medium and large sizes: always attributed to their site, whose policy
 * decides between a segment block and a large mapping (map_from: a size
 * from which the caller wants a mapping whatever the policy). */
static inline __attribute__((always_inline)) void *medium_alloc(hk_heap *heap, hk_site_local *site,
                                                                size_t size, int *zeroed, size_t map_from)
{
    void *p;
    if (unlikely(size >= large_threshold(site) || size > HK_CLASS_MAX || size >= map_from)) {
        p = hk_large_alloc(size, 0, site->site, &site->policy, zeroed);
    } else {
        p = medium_block(heap, hk_size_class(size), size);
        if (unlikely(p == NULL)) errno = ENOMEM;
    }
    if (likely(p != NULL) && likely(site->site != UINT32_MAX)) hk_site_local_count(site, size);
    return p;
}

/* One medium call in TIMED_EVERY: timed (the time counts for all of them, so
 * the learner sees the cost of both paths without a clock read per call),
 * then maintenance. */
static HK_NOINLINE void *medium_timed(hk_heap *heap, hk_site_local *site, size_t size, int *zeroed,
                                      size_t map_from)
{
    uint64_t t0 = hk_now_ns();
    void *p = medium_alloc(heap, site, size, zeroed, map_from);
    hk_site_note_slow_ns(site->site, (hk_now_ns() - t0) * TIMED_EVERY);
    hk_heap_tick(heap);
    return p;
}

static HK_NOINLINE void *malloc_medium(size_t size, uintptr_t ra, int *zeroed, size_t map_from)
{
    int fresh_ignored;
    if (zeroed == NULL) zeroed = &fresh_ignored;
    *zeroed = 0;
    if (unlikely(size > MAX_REQUEST)) { errno = ENOMEM; return NULL; }
    hk_heap *heap = hk_tls_heap;
    if (unlikely(heap == &hk_empty_heap)) {
        heap = hk_heap_for_thread();
        if (heap == NULL) { errno = ENOMEM; return NULL; }
    }
    hk_site_local *site = hk_site_local_of(heap, ra);
    if (unlikely(heap->site_added)) {
        /* A new site: pick up what the daemon knows of it before using it. */
        heap->site_added = 0;
        hk_shm_client_sites_added(hk_coarse_ns());
        site = hk_site_local_of(heap, ra);
    }
    if (unlikely((++heap->medium_calls % TIMED_EVERY) == 0)) return medium_timed(heap, site, size, zeroed, map_from);
    return medium_alloc(heap, site, size, zeroed, map_from);
}

static HK_NOINLINE void free_other(void *p, const char *fn)
{
    if (p == NULL) return;
    unsigned kind = hk_chunk_kind((uintptr_t)p);
    if (kind == HK_CHUNK_PACKED) {
        hk_packed_free(p, fn);
        return;
    }
    if (kind == HK_CHUNK_LARGE) {
        hk_large_free(p, fn);
        return;
    }
    hk_fatal_pointer(fn, "invalid pointer", p);
}

void *hk_alloc_aligned(size_t align, size_t size, uintptr_t ra)
{
    if (align <= HK_ALIGN) return alloc_inline(size, ra, 0);
    if (size > MAX_REQUEST || align > MAX_REQUEST / 2) { errno = ENOMEM; return NULL; }
    hk_heap *heap = hk_tls_heap;
    if (unlikely(heap == &hk_empty_heap)) {
        heap = hk_heap_for_thread();
        if (heap == NULL) { errno = ENOMEM; return NULL; }
    }
    if (likely(size <= HK_SAMPLED_MAX && align <= HK_SLOT_SIZE)) {
        /* A class whose blocks are multiples of align: pages start 64 KiB-
         * aligned, so every block of it is aligned. */
        void *p = hk_heap_alloc_class(heap, hk_aligned_class(size, align), 1);
        if (p == NULL) { errno = ENOMEM; return NULL; }
        if (unlikely((heap->sample_left -= (int64_t)size) < 0)) hk_heap_sample(heap, ra, size);
        return p;
    }
    hk_site_local *site = hk_site_local_of(heap, ra);
    void *p = NULL;
    unsigned cls = hk_aligned_class(size, align);
    if (size < large_threshold(site) && cls < HK_CLASSES) {
        p = medium_block(heap, cls, size);
        if (p == NULL) { errno = ENOMEM; return NULL; }
    } else {
        int fresh;
        p = hk_large_alloc(size, align, site->site, &site->policy, &fresh);
        if (p == NULL) return NULL;
    }
    if (site->site != UINT32_MAX) hk_site_local_count(site, size);
    return p;
}

static size_t usable_size(void *p, const char *fn)
{
    uintptr_t a = (uintptr_t)p;
    unsigned kind = hk_chunk_kind(a);
    if (kind == HK_CHUNK_SEGMENT) {
        hk_page *page = hk_page_of(p);
        hk_heap_check_block(page, p, fn);
        return page->block_size;
    }
    if (kind == HK_CHUNK_PACKED) return hk_packed_usable(p, fn);
    if (kind == HK_CHUNK_LARGE) return hk_large_usable(p, fn);
    hk_fatal_pointer(fn, "invalid pointer", p);
}

static inline int is_pow2(size_t x) { return x && (x & (x - 1)) == 0; }

/* ---- the standard API ---------------------------------------------------- */

EXPORT void *API(malloc)(size_t size)
{
    return alloc_inline(size, 0, 1);
}

EXPORT void API(free)(void *p)
{
    free_inline(p, "free()");
}

EXPORT void *API(calloc)(size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) { errno = ENOMEM; return NULL; }
    void *p;
    int zeroed = 0;
    if (total > HK_SAMPLED_MAX) p = malloc_medium(total, RA(), &zeroed, SIZE_MAX);
    else p = alloc_inline(total, RA(), 0);
    if (p && !zeroed) memset(p, 0, total);
    return p;
}

/* A segment block asked to hold size stays put while it fits and would not
 * waste more than half. */
static inline int stays_put(size_t size, size_t old)
{
    return size <= old && (size >= old / 2 || old <= 64);
}

static void *realloc_impl(void *p, size_t size, uintptr_t ra)
{
    const char *fn = "realloc()";
    if (p == NULL) return alloc_inline(size, ra, 0);
    if (size == 0) {                      /* glibc: frees and returns NULL */
        free_inline(p, fn);
        return NULL;
    }
    uintptr_t a = (uintptr_t)p;
    unsigned kind = hk_chunk_kind(a);
    size_t old;
    if (kind == HK_CHUNK_SEGMENT) {
        hk_page *page = hk_page_of(p);
#ifdef HAKMEM_HARDENED
        hk_heap_check_block(page, p, fn);
#else
        /* As free() checks it: a live page, an aligned pointer.  The free
         * below (if the block moves) checks ownership as usual. */
        if (page == &hk_invalid_page || (a & (HK_ALIGN - 1))) hk_fatal_pointer(fn, "invalid pointer", p);
#endif
        old = page->block_size;
        if (stays_put(size, old)) return p;
    } else if (kind == HK_CHUNK_PACKED) {
        if (hk_packed_resize(p, size, &old, fn)) return p;
    } else if (kind == HK_CHUNK_LARGE) {
        void *q = hk_large_try_realloc(p, size, fn);
        if (q) return q;
        old = hk_large_usable(p, fn);
    } else {
        hk_fatal_pointer(fn, "invalid pointer", p);
    }
    void *q;
    if (kind != HK_CHUNK_LARGE && size > old && size >= REALLOC_MAP_FROM) {
        /* A mapping of its own (REALLOC_MAP_FROM); where none can be had
         * (vm.max_map_count reached, address space capped), a segment
         * block still serves. */
        int saved = errno;
        q = malloc_medium(size, ra, NULL, REALLOC_MAP_FROM);
        if (q == NULL && size <= HK_CLASS_MAX && (q = alloc_inline(size, ra, 0)) != NULL) errno = saved;
    } else if (kind == HK_CHUNK_PACKED && size > old && hk_packed_wanted(hk_packed_roomy(size))) {
        q = alloc_inline(hk_packed_roomy(size), ra, 0);
    } else {
        q = alloc_inline(size, ra, 0);
    }
    if (q == NULL) return NULL;           /* the old block is left untouched */
    memcpy(q, p, old < size ? old : size);
    if (kind == HK_CHUNK_SEGMENT && old > HK_SAMPLED_MAX) {
        hk_page *page = hk_page_of(p);
        if (hk_page_owner(page) == hk_tls_heap) {
            hk_heap_free_moved(page, p, fn);
            return q;
        }
    }
    free_inline(p, fn);
    return q;
}

/* A small block of this thread's that stays put, or grows into a class
 * whose page has a free block at hand and no sample due: malloc and free
 * fused, each page looked up once.  NULL: anything else, which realloc_impl
 * takes whole (as it takes every call of the hardened build, which checks
 * the block first). */
static inline __attribute__((always_inline)) void *realloc_small_inline(void *p, size_t size)
{
#ifndef HAKMEM_HARDENED
    uintptr_t a = (uintptr_t)p;
    if (likely(size - 1 < HK_DIRECT_MAX && !(a & FREE_REJECT) && hk_chunk_kind_unchecked(a) == HK_CHUNK_SEGMENT)) {
        hk_page *page = hk_page_of(p);
        hk_heap *heap = hk_tls_heap;
        if (unlikely(hk_page_owner(page) != heap)) return NULL;
        size_t old = page->block_size;
        if (size <= old) return stays_put(size, old) ? p : NULL;
        hk_page *to = heap->direct[(size + HK_ALIGN - 1) / HK_ALIGN];
        hk_block *b = to->free;
        if (likely(b != NULL && heap->sample_left >= (int64_t)size)) {
            take_block(to, b);
            heap->sample_left -= (int64_t)size;
            memcpy(b, p, old);
            give_back_own(heap, page, (hk_block *)p);
            return b;
        }
    }
#else
    (void)p;
    (void)size;
#endif
    return NULL;
}

EXPORT void *API(realloc)(void *p, size_t size)
{
    void *q = realloc_small_inline(p, size);
    return likely(q != NULL) ? q : realloc_impl(p, size, RA());
}

EXPORT void *API(reallocarray)(void *p, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) { errno = ENOMEM; return NULL; }
    return realloc_impl(p, total, RA());
}

EXPORT int API(posix_memalign)(void **out, size_t align, size_t size)
{
    if (!is_pow2(align) || align % sizeof(void *) != 0) return EINVAL;
    int saved = errno;
    void *p = hk_alloc_aligned(align, size, RA());
    if (p == NULL) { errno = saved; return ENOMEM; }
    *out = p;
    return 0;
}

EXPORT void *API(aligned_alloc)(size_t align, size_t size)
{
    if (!is_pow2(align)) { errno = EINVAL; return NULL; }
    return hk_alloc_aligned(align, size, RA());
}

/* glibc's memalign rounds a non-power-of-two alignment up. */
static void *memalign_impl(size_t align, size_t size, uintptr_t ra)
{
    if (align > MAX_REQUEST / 2 + 1) { errno = EINVAL; return NULL; }
    if (!is_pow2(align)) align = align ? (size_t)1 << (64 - __builtin_clzl(align)) : 1;
    return hk_alloc_aligned(align, size, ra);
}

EXPORT void *API(memalign)(size_t align, size_t size)
{
    return memalign_impl(align, size, RA());
}

EXPORT void *API(valloc)(size_t size)
{
    return memalign_impl((size_t)getpagesize(), size, RA());
}

EXPORT void *API(pvalloc)(size_t size)
{
    size_t page = (size_t)getpagesize();
    size_t rounded;
    if (__builtin_add_overflow(size, page - 1, &rounded)) { errno = ENOMEM; return NULL; }
    rounded &= ~(page - 1);
    if (rounded == 0) rounded = page;
    return memalign_impl(page, rounded, RA());
}

EXPORT size_t API(malloc_usable_size)(void *p)
{
    return p ? usable_size(p, "malloc_usable_size()") : 0;
}

/* glibc extensions: what the allocator holds (mallinfo.c maps the fields). */
EXPORT struct mallinfo2 API(mallinfo2)(void)
{
    struct mallinfo2 m;
    hk_mallinfo(&m);
    return m;
}

EXPORT struct mallinfo API(mallinfo)(void)
{
    struct mallinfo m;
    hk_mallinfo_int(&m);
    return m;
}

#ifndef HAKMEM_PREFIX
/* glibc extension: give memory back now. */
EXPORT int malloc_trim(size_t pad)
{
    (void)pad;
    hakmem_collect();
    return 1;
}
#endif

EXPORT void hakmem_collect(void)
{
    hk_heap_release_pooled();
    hk_heap *heap = hk_heap_for_thread();
    if (heap != NULL) {
        hk_heap_collect(heap, 1);                    /* what exited threads left behind too */
        hk_large_drop_kept(heap);
    }
    hk_bigcache_trim(0, 0);
    hk_packed_collect();
}
