/* Publisher.  See the table invariants in include/hakmem_shm.h. */
#include "publisher.h"

#include <errno.h>
#include <string.h>
#include <sys/types.h>

#include "segment.h"

int hkd_grace_passed(hkshm_header *h, uint32_t t, uint32_t *holder)
{
    hkshm_table *tab = hkshm_table_at(h, t);
    uint64_t stamp = atomic_load_explicit(&tab->generation, memory_order_acquire);
    uint64_t current = atomic_load(&h->generation);
    /* Pairs with the client's fence between storing read_gen and re-reading
     * the generation: either we see its read_gen, or it sees our newer
     * generation and backs off. */
    atomic_thread_fence(memory_order_seq_cst);
    for (uint32_t i = 0; i < HKSHM_MAX_SLOTS; i++) {
        hkshm_slot *s = hkshm_slot_at(h, i);
        uint64_t rg = atomic_load_explicit(&s->read_gen, memory_order_relaxed);
        if (rg == 0)
            continue;
        int holds = stamp ? rg <= stamp : rg < current;
        if (!holds)
            continue;
        uint32_t pid = atomic_load_explicit(&s->pid, memory_order_acquire);
        if (pid == 0 || pid == HKSHM_PID_RESERVED || !hkd_proc_alive((pid_t)pid, s->start_time))
            continue;               /* the dead hold no grace period */
        if (holder)
            *holder = pid;
        return 0;
    }
    return 1;
}

int hkd_publish(hkshm_header *h, const hkshm_policy *entries, uint32_t n, uint64_t *gen)
{
    if (n > HKSHM_TABLE_CAP)
        return -E2BIG;
    uint32_t active = atomic_load(&h->active) % HKSHM_TABLES;
    uint32_t t = (active + 1) % HKSHM_TABLES;
    if (!hkd_grace_passed(h, t, NULL))
        return -EAGAIN;
    hkshm_table *tab = hkshm_table_at(h, t);
    uint64_t next = atomic_load(&h->generation) + 1;
    atomic_store_explicit(&tab->generation, 0, memory_order_release);
    atomic_thread_fence(memory_order_release);
    tab->n_entries = n;
    if (n)
        memcpy(tab->entries, entries, (size_t)n * sizeof *entries);
    atomic_store_explicit(&tab->generation, next, memory_order_release);
    atomic_store(&h->active, t);
    atomic_store(&h->generation, next);
    if (gen)
        *gen = next;
    return 0;
}
