/* A deliberately broken allocator for tests/bench: preloaded, it hands
 * one malloc in 61 (the first, from the 61st call on, whose size fits the
 * block malloc returned just before) that same block again while it is
 * still live: two
 * owners of one block, as an allocator with a corrupted free list would
 * produce.  Everything else goes to glibc.  The free of one owner of a
 * doubled block is swallowed, so the process runs on until the workload's
 * own check notices the overlap, instead of glibc aborting on a double
 * free.  Only the suite's check can fail the run. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <malloc.h>

void *__libc_malloc(size_t n);
void __libc_free(void *p);
void *__libc_realloc(void *p, size_t n);

#define EVERY 61
#define MAX_DOUBLED 4096

static volatile int lock;
static uint64_t calls;
static int pending;   /* a doubled block is due */
static void *last;
static size_t last_size;
static void *doubled[MAX_DOUBLED];
static size_t ndoubled;

static void take(void)
{
    while (__atomic_exchange_n(&lock, 1, __ATOMIC_ACQUIRE))
        ;
}

static void give(void)
{
    __atomic_store_n(&lock, 0, __ATOMIC_RELEASE);
}

/* Removes one record of p; 1 when there was one. */
static int forget_doubled(void *p)
{
    for (size_t i = 0; i < ndoubled; i++)
        if (doubled[i] == p) {
            doubled[i] = doubled[--ndoubled];
            return 1;
        }
    return 0;
}

void *malloc(size_t n)
{
    take();
    if (++calls % EVERY == 0)
        pending = 1;
    if (pending && last && n <= last_size && ndoubled < MAX_DOUBLED) {
        void *p = last;
        pending = 0;
        doubled[ndoubled++] = p;
        give();
        return p;
    }
    give();
    void *p = __libc_malloc(n);
    take();
    if (p) {
        last = p;
        last_size = malloc_usable_size(p);
    }
    give();
    return p;
}

void free(void *p)
{
    if (!p)
        return;
    take();
    int swallowed = forget_doubled(p);
    if (p == last)
        last = NULL;
    give();
    if (!swallowed)
        __libc_free(p);
}

void *realloc(void *p, size_t n)
{
    take();
    int was_doubled = p && forget_doubled(p);
    if (p && p == last)
        last = NULL;
    give();
    if (!was_doubled)
        return __libc_realloc(p, n);
    /* The other owner keeps the block: move this one's bytes out. */
    void *q = __libc_malloc(n);
    if (q) {
        size_t have = malloc_usable_size(p);
        memcpy(q, p, have < n ? have : n);
    }
    return q;
}
