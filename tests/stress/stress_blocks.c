/* The stress test's blocks (stress.h): the name layer's run-time lookups,
 * failing, the patterns blocks carry, and obtaining, checking, resizing
 * and freeing them through every entry point. */
#include <dlfcn.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stress.h"

#ifdef STRESS_PREFIXED
void api_collect(void) { hakmem_collect(); }
bool api_stats(hakmem_stats *s) { hakmem_get_stats(s); return true; }
bool api_is_hakmem(const char **why) { (void)why; return true; }
#else
/* Looked up at run time so the same binary runs on glibc (for development)
 * and on hakmem whether linked or preloaded. */
void api_collect(void)
{
    void (*fn)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "hakmem_collect");
    if (fn)
        fn();
    else
        malloc_trim(0);
}
bool api_stats(hakmem_stats *s)
{
    void (*fn)(hakmem_stats *) =
        (void (*)(hakmem_stats *))dlsym(RTLD_DEFAULT, "hakmem_get_stats");
    if (!fn)
        return false;
    fn(s);
    return true;
}
bool api_is_hakmem(const char **why)
{
    Dl_info info;
    if (!dlsym(RTLD_DEFAULT, "hakmem_get_stats")) {
        *why = "hakmem_get_stats not found: not running on hakmem";
        return false;
    }
    void *(*volatile m)(size_t) = malloc;
    if (!dladdr((void *)m, &info) || !info.dli_fname || !strstr(info.dli_fname, "libhakmem")) {
        *why = "malloc does not resolve into libhakmem";
        return false;
    }
    return true;
}
#endif

/* ---- failure, randomness, patterns ---------------------------------------- */
const char *g_mode = "?";
volatile pid_t g_child;

void fail(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "stress %s (%s names): %s\n", g_mode, API_NAMES, buf);
    fflush(stderr);
    if (g_child > 0)
        kill(g_child, SIGKILL);
    _exit(1);
}

/* Skewed sizes: mostly small, some medium (16K..1M), a few large (to 4 MiB). */
static size_t rand_size(rng_t *r, size_t max)
{
    uint64_t pick = rnd_below(r, 1000), y = rnd(r);
    size_t n;
    if (pick < 600)      n = 1 + y % 128;
    else if (pick < 800) n = 129 + y % (1 * KiB - 128);
    else if (pick < 890) n = 1 * KiB + 1 + y % (16 * KiB - 1 * KiB);
    else if (pick < 985) n = 16 * KiB + y % (1 * MiB - 16 * KiB + 1);
    else                 n = 1 * MiB + 1 + y % (3 * MiB);
    if (n > max)
        n = 1 + y % max;
    return n;
}

/* Blocks up to PAT_FULL are patterned in every byte; beyond it one word per
 * 256 bytes (still every page) plus every word of the last PAT_EDGE bytes,
 * so multi-megabyte blocks stay cheap while overlap at either end shows. */
#define PAT_FULL (128 * KiB)
#define PAT_EDGE (16 * KiB)
#define PAT_OK   SIZE_MAX

static inline uint64_t pat_word(uint64_t tag, size_t off) { return tag ^ (off * 0x9e3779b97f4a7c15ull); }
static inline unsigned char pat_byte(uint64_t tag, size_t off)
{
    return (unsigned char)(pat_word(tag, off & ~(size_t)7) >> ((off & 7) * 8));
}

static size_t pat_span(unsigned char *b, size_t from, size_t to, size_t step,
                       uint64_t tag, bool check)
{
    for (size_t off = from; off + 8 <= to; off += step) {
        uint64_t v = pat_word(tag, off);
        if (check) {
            uint64_t g;
            memcpy(&g, b + off, 8);
            if (g != v)
                return off;
        } else {
            memcpy(b + off, &v, 8);
        }
    }
    return PAT_OK;
}

/* Writes or checks the pattern of a block laid out for length n, touching
 * only bytes below lim (a realloc keeps only min(old, new) bytes): PAT_OK,
 * or the offset of the first byte that differs. */
static size_t pattern(void *p, size_t n, size_t lim, uint64_t tag, bool check)
{
    unsigned char *b = p;
    size_t n8 = n & ~(size_t)7;
    size_t end = n8 < (lim & ~(size_t)7) ? n8 : (lim & ~(size_t)7);
    size_t tail0 = n8 > PAT_EDGE ? n8 - PAT_EDGE : 0;
    size_t r = pat_span(b, 0, end < PAT_FULL ? end : PAT_FULL, 8, tag, check);
    if (r != PAT_OK)
        return r;
    if (end > PAT_FULL) {
        size_t t = tail0 > PAT_FULL ? tail0 : PAT_FULL;
        if ((r = pat_span(b, PAT_FULL, end < t ? end : t, 256, tag, check)) != PAT_OK)
            return r;
        if ((r = pat_span(b, t, end, 8, tag, check)) != PAT_OK)
            return r;
    }
    for (size_t off = n8; off < n && off < lim; off++) {
        if (check) {
            if (b[off] != pat_byte(tag, off))
                return off;
        } else {
            b[off] = pat_byte(tag, off);
        }
    }
    return PAT_OK;
}

long page_size(void) { return sysconf(_SC_PAGESIZE); }

size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    if (!f)
        fail("cannot open /proc/self/statm");
    if (fscanf(f, "%lu %lu", &size, &res) != 2)
        fail("cannot parse /proc/self/statm");
    fclose(f);
    return (size_t)res * (size_t)page_size();
}

/* ---- blocks ------------------------------------------------------------ */
static void blk_fill(blk_t *b) { pattern(b->p, b->n, b->n, b->tag, false); }

void blk_verify(const blk_t *b, const char *when)
{
    size_t off = pattern(b->p, b->n, b->n, b->tag, true);
    if (off != PAT_OK)
        fail("%s: block %p (size %zu) corrupted at offset %zu", when, b->p, b->n, off);
}

void blk_adopt(blk_t *b, void *p, size_t n, size_t align, uint64_t tag, const char *how)
{
    if (!p)
        fail("%s(%zu, align %zu) returned NULL", how, n, align);
    p = launder(p);
    if (align && ((uintptr_t)p & (align - 1)))
        fail("%s(%zu) returned %p, not aligned to %zu", how, n, p, align);
    size_t us = A_USABLE(p);
    if (us < n)
        fail("%s(%zu): malloc_usable_size %zu < requested", how, n, us);
    /* The slack past the request is ours too; a write there must not hurt
     * any other block (the neighbours' patterns would show it). */
    memset((unsigned char *)p + n, 0xa5, us - n);
    b->p = p;
    b->n = n;
    b->tag = tag;
    blk_fill(b);
}

void blk_free(blk_t *b, const char *when)
{
    blk_verify(b, when);
    A_FREE(b->p);
    b->p = NULL;
}

static size_t rand_align(rng_t *r)
{
    /* Mostly modest alignments; now and then up to 1 MiB. */
    unsigned k = rnd_below(r, 16) == 0 ? (unsigned)rnd_below(r, 21) : (unsigned)rnd_below(r, 13);
    return (size_t)1 << k;
}

void blk_new(blk_t *b, rng_t *r, size_t max, uint64_t tag)
{
    size_t n = rand_size(r, max);
    uint64_t how = rnd_below(r, 100);
    if (how < 55) {
        blk_adopt(b, A_MALLOC(n), n, 0, tag, "malloc");
    } else if (how < 75) {
        size_t k = 1 + rnd_below(r, 16), m = (n + k - 1) / k;
        unsigned char *p = launder(A_CALLOC(k, m));
        if (!p)
            fail("calloc(%zu, %zu) returned NULL", k, m);
        for (size_t i = 0; i < k * m; i++)
            if (p[i])
                fail("calloc(%zu, %zu) = %p: byte %zu is %#x, not zero", k, m, (void *)p, i, p[i]);
        blk_adopt(b, p, k * m, 0, tag, "calloc");
    } else if (how < 80) {
        blk_adopt(b, A_REALLOC(NULL, n), n, 0, tag, "realloc(NULL)");
    } else if (how < 85) {
        size_t k = 1 + rnd_below(r, 8), m = (n + k - 1) / k;
        blk_adopt(b, A_REALLOCARRAY(NULL, k, m), k * m, 0, tag, "reallocarray(NULL)");
    } else if (how < 90) {
        size_t a = rand_align(r);
        if (a < sizeof(void *))
            a = sizeof(void *);
        void *p = NULL;
        int rc = A_POSIX_MEMALIGN(&p, a, n);
        if (rc)
            fail("posix_memalign(%zu, %zu) failed: %d", a, n, rc);
        blk_adopt(b, p, n, a, tag, "posix_memalign");
    } else if (how < 95) {
        size_t a = rand_align(r);
        blk_adopt(b, A_ALIGNED_ALLOC(a, n), n, a, tag, "aligned_alloc");
    } else {
        size_t a = rand_align(r);
        blk_adopt(b, A_MEMALIGN(a, n), n, a, tag, "memalign");
    }
}

void blk_realloc_chain(blk_t *b, rng_t *r, size_t max, uint64_t *tagc)
{
    unsigned steps = 1 + (unsigned)rnd_below(r, 6);
    for (unsigned s = 0; s < steps; s++) {
        size_t n = rnd_below(r, 3) == 0 ? 1 + rnd_below(r, b->n + 64) : rand_size(r, max);
        if (rnd_below(r, 4) == 0 && b->n * 2 <= max)
            n = b->n * 2;   /* a classic doubling vector */
        void *q = launder(A_REALLOC(b->p, n));
        if (!q)
            fail("realloc(%p, %zu) returned NULL", b->p, n);
        size_t keep = b->n < n ? b->n : n;
        size_t off = pattern(q, b->n, keep, b->tag, true);
        if (off != PAT_OK)
            fail("realloc(%p [%zu] -> %zu) = %p lost contents at offset %zu",
                 b->p, b->n, n, q, off);
        size_t us = A_USABLE(q);
        if (us < n)
            fail("realloc(%zu): malloc_usable_size %zu < requested", n, us);
        b->p = q;
        b->n = n;
        b->tag = mix64(++*tagc);
        blk_fill(b);
    }
}
