/* Process counters (counters.h).  The process-wide ones are relaxed atomics;
 * the per-thread ones live in each heap and are summed, with what exited
 * threads left, under the heap list lock. */
#include "counters.h"
#include "heap.h"
#include "os.h"

#include <cpuid.h>
#include <string.h>

int hk_ticks_are_ns;
static uint64_t base_ticks, base_ns;       /* the rate's reference point */
static _Atomic uint64_t large_ticks, large_allocs, large_bytes;
static _Atomic uint64_t sys_calls[HK_SYS_KINDS], sys_ticks;

/* Invariant TSC: CPUID 0x80000007, EDX bit 8 (constant rate, runs in every
 * C-state), so ticks convert to time at one rate. */
static int tsc_invariant(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(0x80000000u, &a, &b, &c, &d) || a < 0x80000007u) return 0;
    __get_cpuid(0x80000007u, &a, &b, &c, &d);
    return (d >> 8) & 1;
}

void hk_counters_init(void)
{
    hk_ticks_are_ns = !tsc_invariant();
    base_ns = hk_now_ns();
    base_ticks = hk_ticks();
}

void hk_counters_large(uint64_t ticks, uint64_t bytes_allocated)
{
    atomic_fetch_add_explicit(&large_ticks, ticks, memory_order_relaxed);
    if (bytes_allocated) {
        atomic_fetch_add_explicit(&large_allocs, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&large_bytes, bytes_allocated, memory_order_relaxed);
    }
}

void hk_counters_syscall(unsigned kind, uint64_t ticks)
{
    atomic_fetch_add_explicit(&sys_calls[kind], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&sys_ticks, ticks, memory_order_relaxed);
}

void hk_counters_fork_child(void)
{
    atomic_store_explicit(&large_ticks, 0, memory_order_relaxed);
    atomic_store_explicit(&large_allocs, 0, memory_order_relaxed);
    atomic_store_explicit(&large_bytes, 0, memory_order_relaxed);
    atomic_store_explicit(&sys_ticks, 0, memory_order_relaxed);
    for (unsigned k = 0; k < HK_SYS_KINDS; k++) atomic_store_explicit(&sys_calls[k], 0, memory_order_relaxed);
}

typedef struct heap_sums {
    uint64_t refill, retire, maintain, refills, small_bytes, small_allocs, medium_allocs, medium_bytes;
} heap_sums;

static void add_heap(const hk_heap_counts *c, const hk_heap_info *info, void *arg)
{
    (void)info;
    heap_sums *s = arg;
    s->refill += atomic_load_explicit(&c->refill_ticks, memory_order_relaxed);
    s->retire += atomic_load_explicit(&c->retire_ticks, memory_order_relaxed);
    s->maintain += atomic_load_explicit(&c->maintain_ticks, memory_order_relaxed);
    s->refills += atomic_load_explicit(&c->refills, memory_order_relaxed);
    s->small_bytes += atomic_load_explicit(&c->small_bytes, memory_order_relaxed);
    s->small_allocs += atomic_load_explicit(&c->small_allocs, memory_order_relaxed);
    s->medium_allocs += atomic_load_explicit(&c->medium_allocs, memory_order_relaxed);
    s->medium_bytes += atomic_load_explicit(&c->medium_bytes, memory_order_relaxed);
}

void hk_counters_read(hk_counters *out)
{
    heap_sums s = { 0 };
    hk_heap_visit(add_heap, &s);
    memset(out, 0, sizeof *out);
    /* ns per tick, from the whole life of the process so far. */
    double ns_per_tick = 1.0;
    if (!hk_ticks_are_ns) {
        uint64_t dt = hk_ticks() - base_ticks, dn = hk_now_ns() - base_ns;
        ns_per_tick = dt ? (double)dn / (double)dt : 0.0;
    }
#define NS(t) ((uint64_t)((double)(t) * ns_per_tick))
    out->refill_ns = NS(s.refill);
    out->retire_ns = NS(s.retire);
    out->maintain_ns = NS(s.maintain);
    out->large_ns = NS(atomic_load_explicit(&large_ticks, memory_order_relaxed));
    out->syscall_ns = NS(atomic_load_explicit(&sys_ticks, memory_order_relaxed));
#undef NS
    out->slow_ns = out->refill_ns + out->retire_ns + out->maintain_ns + out->large_ns;
    for (unsigned k = 0; k < HK_SYS_KINDS; k++)
        out->syscalls[k] = atomic_load_explicit(&sys_calls[k], memory_order_relaxed);
    out->refills = s.refills;
    out->small_allocs = s.small_allocs;
    out->small_bytes = s.small_bytes;
    out->medium_allocs = s.medium_allocs;
    out->medium_bytes = s.medium_bytes;
    out->large_allocs = atomic_load_explicit(&large_allocs, memory_order_relaxed);
    out->large_bytes = atomic_load_explicit(&large_bytes, memory_order_relaxed);
}
