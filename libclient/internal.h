/* hakmem client internals: every data structure the boxes share, with its
 * invariants.  Boxes include this and their own neighbours' small headers.
 *
 * Memory layout
 * -------------
 * Small and medium blocks (up to 1 MiB) live in segments: 4 MiB regions
 * aligned to 4 MiB, split into 64 slots of 64 KiB.  Slot 0 holds the segment
 * header (this struct) and is never handed out.  A page is a span of one or
 * more consecutive slots carved into blocks of a single size class.  Because
 * segments are aligned, free() finds the segment by masking the pointer and
 * the page through slot_page[].
 *
 * Large blocks (>= the site's large threshold, 1 MiB by default) are mapped
 * one by one, 4 MiB-aligned, with a 64-byte header just below the user
 * pointer.
 *
 * The chunk map has one byte per 4 MiB of the 47-bit address space and says
 * what starts there: nothing we own, a segment, or the chunk holding a large
 * block's user pointer.  It is how free() tells our pointers from foreign
 * ones without any system call.
 *
 * Ownership
 * ---------
 * Each thread has a heap (hk_heap); a segment and all its pages belong to one
 * heap.  Only the owning thread touches a page's `free` list, `used`,
 * `capacity` and queue links, so the local paths take no lock and no atomic
 * read-modify-write.  Other threads free into `remote` with a CAS push; the
 * owner collects those lazily on its slow path.  When a thread exits, its
 * segments are abandoned (heap = NULL) and adopted later by a thread that
 * needs a segment.
 */
#ifndef HK_INTERNAL_H
#define HK_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lock.h"

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define HK_NOINLINE __attribute__((noinline))
#define HK_COLD     __attribute__((cold, noinline))
#define HK_HIDDEN   __attribute__((visibility("hidden")))

#define HK_SEGMENT_SHIFT 22
#define HK_SEGMENT_SIZE  ((size_t)1 << HK_SEGMENT_SHIFT)          /* 4 MiB */
#define HK_SEGMENT_MASK  (HK_SEGMENT_SIZE - 1)
#define HK_SLOT_SHIFT    16
#define HK_SLOT_SIZE     ((size_t)1 << HK_SLOT_SHIFT)             /* 64 KiB */
#define HK_SLOTS         (HK_SEGMENT_SIZE / HK_SLOT_SIZE)         /* 64 */
#define HK_OS_PAGE       4096u                                    /* what the kernel faults in and takes back */
#define HK_ADDR_BITS     47
#define HK_CHUNKS        ((size_t)1 << (HK_ADDR_BITS - HK_SEGMENT_SHIFT))

#define HK_ALIGN         16          /* every block is at least this aligned */
#define HK_DIRECT_MAX    1024        /* sizes served through heap->direct[] */
/* Below the smallest large threshold a site can have (64 KiB), no policy
 * applies: such blocks are "small" and sampled.  From it on they are
 * "medium" (or large) and always attributed. */
#define HK_SAMPLED_MAX   (64 * 1024 - 1)
#define HK_CLASS_MAX     ((size_t)1 << 20)  /* largest segment block */
/* Eight classes per power of two from 2^HK_FINE_FROM_LOG2 bytes to 8 KiB,
 * four elsewhere above 64 B (size_class.h). */
#define HK_FINE_FROM_LOG2 9
#define HK_CLASSES       76

#define HK_LARGE_MAGIC   0x48414B4Du /* "HAKM": a live large block */
#define HK_LARGE_FREED   0x46524545u /* "FREE": large block sitting in BigCache */
#define HK_LARGE_HDR     64

/* A free block's first two words (freelist.h owns their meaning). */
typedef struct hk_block {
    struct hk_block *next;
    uintptr_t freed;                 /* hardened build: the block's free tag */
} hk_block;

/* off / block_size for any offset inside a span (< 2^21) and block sizes up
 * to 2^20, exact: the rounding error of inv stays below one block. */
#define HK_INV_SHIFT 42
static inline uint64_t hk_block_inv(uint32_t block_size)
{
    return (((uint64_t)1 << HK_INV_SHIFT) + block_size - 1) / block_size;
}
typedef struct hk_heap hk_heap;

/* A page: a span of slots carved into equal blocks.
 * Invariants (owner thread only, except `heap` and `remote`):
 *  - blocks [0, capacity) have been carved; capacity <= reserved;
 *  - a carved block is either handed out, on `free`, or on `remote`;
 *  - used = carved - on `free` (so blocks on `remote` still count as used
 *    until the owner collects them);
 *  - heap is the owner, NULL when abandoned or when the span is not a page.
 *
 * Three cache lines, by who writes them: the owner's allocations and frees
 * write the first on every call; other threads' frees read the second
 * (owner, geometry) and write only the third.  Sharing one line made every
 * remote free take the line the owner was allocating from, and the owner's
 * next allocation take it back.
 */
typedef struct hk_page {
    /* written by the owner on every allocation and free */
    hk_block *free;
    uint32_t used;
    uint32_t reserved;
    struct hk_page *next, *prev;     /* in the owner's class queue */
    uint64_t idle_since_ns;          /* free span: when it became free */
    uint8_t cls;
    uint8_t span;                    /* slots in this span (page or free span) */
    uint8_t dirty;                   /* free span whose memory is still resident */
    uint32_t populated;              /* bytes from start populated ahead of carving
                                      * (UINT32_MAX: left to fault, heap.c) */
    /* read by every free; written when the page is set up or extended */
    _Alignas(64) _Atomic(hk_heap *) heap;
    uint8_t *start;
    uint64_t block_inv;              /* ceil(2^42 / block_size): offset -> index without dividing */
    uint32_t block_size;
    uint32_t capacity;
    uint8_t in_use;                  /* 1: a page; 0: a free span head */
    /* the blocks other threads freed (freelist.h: hk_remote_*) */
    _Alignas(64) _Atomic uintptr_t remote;
    uintptr_t remote_hollowed;       /* `remote` when an idle heap's reclaim last hollowed
                                      * its blocks (heap.c), under the owner's lock */
} __attribute__((aligned(64))) hk_page;

/* Segment header, at the start of slot 0. */
typedef struct hk_segment {
    uint64_t magic;
    hk_heap *heap;                   /* owner; NULL while abandoned */
    struct hk_segment *next, *prev;  /* in the owner's segment list */
    uint64_t free_slots;             /* bit i: slot i is free */
    uint64_t dirty_slots;            /* free slots still resident (not purged) */
    uint64_t purged_slots;           /* free slots purged since they were last used */
    /* OS pages from the start of each slot that may be resident: what the
     * pages that held it touched, less what went back since (segment.c) */
    uint8_t resident_pages[HK_SLOTS];
    uint32_t pages_in_use;
    hk_page *slot_page[HK_SLOTS];    /* span head of each slot, or the invalid page */
    hk_page pages[HK_SLOTS];         /* descriptors; only span heads are meaningful */
    uint64_t abandoned_used;         /* bytes handed out when it was abandoned */
    uint8_t huge;                    /* advised MADV_HUGEPAGE (THP's small bit) */
} hk_segment;

#define HK_SEGMENT_MAGIC 0x48414B4D53454721ull

/* A site's policy as the allocation paths use it (site.h explains it). */
typedef struct hk_site_policy {
    uint32_t large_threshold;       /* bytes; >= goes to mmap + BigCache */
    uint16_t bigcache_slots;        /* 0: BigCache off for this site; n: its ring
                                     * keeps up to 8n freed blocks or pieces (large.c) */
    uint8_t  thp;                   /* 1: MADV_HUGEPAGE on 2 MiB-aligned blocks */
    uint8_t  from_daemon;           /* 1 once a published policy was applied */
} hk_site_policy;

/* Per-thread site cache entry (site.c owns the meaning of the counters):
 * pending counts not yet added to the process table, and the site's policy
 * as of policy_epoch. */
typedef struct hk_site_local {
    uintptr_t ra;
    uint32_t site;
    uint32_t pending;
    uint64_t policy_epoch;
    hk_site_policy policy;
    uint64_t allocs, bytes;
    uint64_t hist[32];
} hk_site_local;
#define HK_SITE_LOCAL 32
_Static_assert(HK_SITE_LOCAL <= 32, "hk_heap.sites_used has a bit per entry");

/* What a heap counts for counters.h: its owner adds (hk_count_own, no
 * read-modify-write), any thread reads. */
typedef struct hk_heap_counts {
    _Atomic uint64_t refill_ticks, retire_ticks, maintain_ticks, refills;
    /* Interleaved: two counters a path adds to together are not neighbours,
     * so the compiler does not pair the adds into vector instructions. */
    _Atomic uint64_t small_bytes, medium_allocs;     /* small allocations estimated */
    _Atomic uint64_t small_allocs, medium_bytes;
    _Atomic uint64_t remote_collected;              /* blocks other threads freed, collected */
} hk_heap_counts;

/* A heap's mallinfo figures (mallinfo.c) as of its last refresh: the owner
 * writes them when mallinfo asked since (epoch), any thread reads. */
typedef struct hk_heap_info {
    _Atomic uint64_t epoch;
    _Atomic uint64_t used_bytes;     /* blocks handed out (remote frees not yet collected count) */
    _Atomic uint64_t free_blocks;    /* carved blocks on free lists */
    _Atomic uint64_t dirty_bytes;    /* free slots of its segments still resident */
} hk_heap_info;

/* A thread heap.  direct[] and current[] always point at a valid page (the
 * empty page when there is none) so the fast path never tests for NULL.
 * What it allocates from comes before `pooled`; from slow_calls on, the
 * state belongs to the thread it serves (a pooled heap passes the first
 * part on to its next thread, heap_life.c). */
struct hk_heap {
    hk_page *direct[HK_DIRECT_MAX / HK_ALIGN + 1];
    hk_page *current[HK_CLASSES];
    int64_t sample_left;             /* bytes until the next sampled allocation */
    hk_page *queue[HK_CLASSES];      /* all pages of a class, current first */
    hk_segment *segments;            /* segments this heap owns */
    uint8_t classes_paged[HK_CLASSES]; /* 1: a fresh page of class c was taken */
    uint8_t borrow_run[HK_CLASSES];  /* blocks class c took from the class above
                                      * since it last used a page of its own */
    /* Alone on its line: every remote free into this heap peeks at it, and
     * the owner's slow paths write what would otherwise share the line. */
    _Alignas(64) _Atomic uint8_t pooled;  /* 1 while in the pool of exited threads' heaps
                                      * (written under the heap list lock, peeked at
                                      * by remote frees; never reset with the rest) */
    hk_lock own;                     /* held over every change to the queues and segments:
                                      * by the owner's slow paths, and by another thread
                                      * reclaiming pages of an idle heap (heap.c) */
    _Alignas(64) uint64_t slow_calls;
    uint64_t medium_calls;
    /* The large block this thread freed last (large.c), for its next large
     * request; whoever takes it exchanges it out: the owner, its maintenance,
     * another thread reclaiming the heap while idle, its exit. */
    _Atomic(void *) large_kept;
    uint32_t sites_known;            /* process site count this thread last saw */
    uint32_t site_added;             /* a site appeared since: the shm client should look */
    uint64_t last_maintenance_ns;
    struct hk_heap *next_heap, *prev_heap;  /* global list of live heaps */
    struct hk_heap *next_free;       /* pool of exited threads' heaps */
    uint64_t pooled_ns;              /* when it was pooled */
    hk_site_local *last_site;        /* entry of the last hk_site_of() */
    hk_heap_counts counts;
    hk_heap_info info;
    uint32_t sites_used;             /* bit i: sites[i] has been filled since the reset
                                      * (only those are walked or cleared: a page of
                                      * the array never used is never touched) */
    /* Last: most of the heap, of which a thread uses a few entries. */
    hk_site_local sites[HK_SITE_LOCAL];
};

/* The owner of a page, as the free fast path compares it with its own heap.
 * Other threads may change it concurrently (abandon, adopt); an aligned
 * pointer load is atomic on every target we build for, and a stale value
 * only sends the free to the slow path, which reads it again with acquire.
 * The plain load lets the compiler fold it into the comparison; under TSan
 * it is a relaxed atomic load so the race is not reported. */
#if defined(__SANITIZE_THREAD__)
#define hk_page_owner(pg) atomic_load_explicit(&(pg)->heap, memory_order_relaxed)
#else
#define hk_page_owner(pg) (*(hk_heap *const *)&(pg)->heap)
#endif

/* A page's use, lowered by a free of the owner's.  Another thread may read
 * it while it reclaims an idle heap's pages (heap.c), which the aligned
 * store of the plain decrement allows; under TSan the decrement is atomic
 * so that the race the checker reports is a real one. */
#if defined(__SANITIZE_THREAD__)
#define hk_page_unuse(pg) __atomic_sub_fetch(&(pg)->used, 1, __ATOMIC_RELEASE)
#else
#define hk_page_unuse(pg) (--(pg)->used)
#endif

extern hk_heap hk_empty_heap;
extern hk_page hk_empty_page;
extern hk_page hk_invalid_page;
extern __thread hk_heap *hk_tls_heap __attribute__((tls_model("initial-exec")));

/* Fail-fast: one line on stderr, then abort. */
__attribute__((noreturn, cold)) void hk_fatal_pointer(const char *fn, const char *what, const void *p);
__attribute__((noreturn, cold)) void hk_fatal(const char *fmt, ...);
/* Verbose diagnostics (HAKMEM_VERBOSE >= level), one line, no malloc. */
void hk_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
