/* The stress test's shared parts (stress.c runs the modes): the allocator
 * entry points under either name set, failing with one line, seeded
 * randomness, and blocks that carry a pattern from their tag, obtained
 * through every entry point and checked before they are released
 * (stress_blocks.c). */
#ifndef HK_TEST_STRESS_H
#define HK_TEST_STRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hakmem.h"

/* ---- the name layer ------------------------------------------------------ */
#ifdef STRESS_PREFIXED
#define A_MALLOC       hak_malloc
#define A_FREE         hak_free
#define A_CALLOC       hak_calloc
#define A_REALLOC      hak_realloc
#define A_REALLOCARRAY hak_reallocarray
#define A_POSIX_MEMALIGN hak_posix_memalign
#define A_ALIGNED_ALLOC hak_aligned_alloc
#define A_MEMALIGN     hak_memalign
#define A_VALLOC       hak_valloc
#define A_PVALLOC      hak_pvalloc
#define A_USABLE       hak_malloc_usable_size
#define API_NAMES      "hak_*"
#else
#define A_MALLOC       malloc
#define A_FREE         free
#define A_CALLOC       calloc
#define A_REALLOC      realloc
#define A_REALLOCARRAY reallocarray
#define A_POSIX_MEMALIGN posix_memalign
#define A_ALIGNED_ALLOC aligned_alloc
#define A_MEMALIGN     memalign
#define A_VALLOC       valloc
#define A_PVALLOC      pvalloc
#define A_USABLE       malloc_usable_size
#define API_NAMES      "standard"
#endif

void api_collect(void);
/* false where the process does not run on hakmem (standard names). */
bool api_stats(hakmem_stats *s);
bool api_is_hakmem(const char **why);

/* The sanitizer runtimes of GCC 12 are not fork-safe: a parent thread
 * caught inside their own allocator at fork time leaves its lock held in
 * the child, so a child that starts a thread (which allocates through the
 * runtime) can hang for reasons that are not the allocator's under test. */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define CHILD_MAY_START_THREADS 0
#else
#define CHILD_MAY_START_THREADS 1
#endif

/* ---- failure, randomness, patterns ---------------------------------------- */
extern const char *g_mode;
/* The forked child a failing parent must not leave behind. */
extern volatile pid_t g_child;

/* The reason, as the last line on stderr, and exit status 1. */
__attribute__((format(printf, 1, 2), noreturn, noinline))
void fail(const char *fmt, ...);

/* Hides where a pointer came from, so the compiler cannot reason about the
 * allocator's results (e.g. assume calloc memory is zero) and skip checks. */
static inline void *launder(void *p)
{
    __asm__ volatile("" : "+r"(p) : : "memory");
    return p;
}

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27; x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

typedef struct { uint64_t s; } rng_t;
static inline uint64_t rnd(rng_t *r) { r->s += 0x9e3779b97f4a7c15ull; return mix64(r->s); }
static inline uint64_t rnd_below(rng_t *r, uint64_t n) { return rnd(r) % n; }

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

long page_size(void);
size_t rss_bytes(void);

/* ---- blocks ------------------------------------------------------------ */
typedef struct blk {
    void    *p;
    size_t   n;       /* requested size */
    uint64_t tag;
} blk_t;

void blk_verify(const blk_t *b, const char *when);
/* Checks what every fresh block must satisfy, then patterns it. */
void blk_adopt(blk_t *b, void *p, size_t n, size_t align, uint64_t tag, const char *how);
void blk_free(blk_t *b, const char *when);
/* Obtains a block through one of the allocation entry points. */
void blk_new(blk_t *b, rng_t *r, size_t max, uint64_t tag);
/* Grows and shrinks a block a few times; the common prefix must survive. */
void blk_realloc_chain(blk_t *b, rng_t *r, size_t max, uint64_t *tagc);

#endif
