/* A small test-and-test-and-set lock for the allocator's rare paths (global
 * lists, a heap's slow paths).
 * It never allocates and is trivially reinitialised in a fork child. */
#ifndef HK_LOCK_H
#define HK_LOCK_H

#include <sched.h>
#include <stdatomic.h>

typedef struct { atomic_int v; } hk_lock;
#define HK_LOCK_INIT { 0 }

static inline void hk_lock_acquire(hk_lock *l)
{
    for (unsigned spins = 0;; spins++) {
        if (atomic_load_explicit(&l->v, memory_order_relaxed) == 0 &&
            atomic_exchange_explicit(&l->v, 1, memory_order_acquire) == 0) return;
        if (spins > 64) sched_yield();
        else __builtin_ia32_pause();
    }
}

/* 1 if it took the lock, 0 (at once) if someone holds it. */
static inline int hk_lock_try(hk_lock *l)
{
    return atomic_load_explicit(&l->v, memory_order_relaxed) == 0 &&
           atomic_exchange_explicit(&l->v, 1, memory_order_acquire) == 0;
}

static inline void hk_lock_release(hk_lock *l)
{
    atomic_store_explicit(&l->v, 0, memory_order_release);
}

static inline void hk_lock_reinit(hk_lock *l)
{
    atomic_store_explicit(&l->v, 0, memory_order_relaxed);
}

#endif
