/* Publisher.  See the table invariants in include/hakmem_shm.h.  Readers
 * are the registrations (daemon/registry.h): each region's read_gen says
 * whether its owner is inside a read, and of which generation. */
#include "publisher.h"

#include <errno.h>
#include <string.h>
#include <sys/types.h>

#include "log.h"
#include "registry.h"

/* 1 when registration r may be reading a copy stamped `stamp` (0: being
 * written; current is the active generation). */
static int holds(hkd_reg *r, uint64_t stamp, uint64_t current, uint64_t timeout_ns, uint64_t now_ns)
{
    uint64_t rg = __atomic_load_n((const uint64_t *)&r->region->read_gen, __ATOMIC_RELAXED);
    if (rg == 0) {
        r->read_gen_seen = 0;
        return 0;
    }
    if (rg != r->read_gen_seen) {
        r->read_gen_seen = rg;
        r->read_gen_since_ns = now_ns;
        r->read_timeout_told = 0;
    }
    if (!(stamp ? rg <= stamp : rg < current))
        return 0;
    if (now_ns - r->read_gen_since_ns <= timeout_ns)
        return 1;
    /* A stopped (or hostile) reader cannot freeze publication: its read,
     * if it ever finishes, fails the stamp check and is thrown away. */
    if (!r->read_timeout_told) {
        r->read_timeout_told = 1;
        hkd_log(HKD_LOG_NOTICE, "pid %d (uid %u, %s) has held a read of generation %llu for over %u ms: "
                "publishing without waiting for it", (int)r->pid, (unsigned)r->uid, r->exe[0] ? r->exe : "?",
                (unsigned long long)rg, (unsigned)(timeout_ns / 1000000));
    }
    return 0;
}

int hkd_grace_passed(hkshm_header *h, uint32_t t, uint64_t now_ns, int32_t *holder)
{
    hkshm_table *tab = hkshm_table_at(h, t);
    uint64_t stamp = atomic_load_explicit(&tab->generation, memory_order_acquire);
    uint64_t current = atomic_load(&h->generation);
    uint64_t timeout_ns = (uint64_t)h->reader_timeout_ms * 1000000ull;
    /* Pairs with the client's fence between storing read_gen and re-reading
     * the generation: either we see its read_gen, or it sees our newer
     * generation and backs off. */
    atomic_thread_fence(memory_order_seq_cst);
    int passed = 1;
    uint32_t span = hkd_registry_span();
    for (uint32_t i = 0; i < span; i++) {
        hkd_reg *r = hkd_registry_at(i);
        /* An ended registration's process is gone or has let go of us. */
        if (!r || r->ended || !holds(r, stamp, current, timeout_ns, now_ns))
            continue;
        if (passed && holder)
            *holder = (int32_t)r->pid;
        passed = 0;                  /* the others' timeouts still start now */
    }
    return passed;
}

int hkd_publish(hkshm_header *h, const hkd_publication *p, uint64_t now_ns, uint64_t *gen)
{
    if (p->n_sites > HKSHM_SITE_CAP || p->n_binaries > HKSHM_BINARY_CAP)
        return -E2BIG;
    uint32_t active = atomic_load(&h->active) % HKSHM_TABLES;
    uint32_t t = (active + 1) % HKSHM_TABLES;
    if (!hkd_grace_passed(h, t, now_ns, NULL))
        return -EAGAIN;
    hkshm_table *tab = hkshm_table_at(h, t);
    uint64_t next = atomic_load(&h->generation) + 1;
    atomic_store_explicit(&tab->generation, 0, memory_order_release);
    atomic_thread_fence(memory_order_release);
    tab->n_sites = p->n_sites;
    tab->n_binaries = p->n_binaries;
    if (p->n_sites)
        memcpy(tab->sites, p->sites, (size_t)p->n_sites * sizeof *p->sites);
    if (p->n_binaries)
        memcpy(tab->binaries, p->binaries, (size_t)p->n_binaries * sizeof *p->binaries);
    atomic_store_explicit(&tab->generation, next, memory_order_release);
    atomic_store(&h->active, t);
    atomic_store(&h->generation, next);
    if (gen)
        *gen = next;
    return 0;
}
