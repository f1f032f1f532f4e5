/* The site store (core_store.c): records by key and by creation slot, the
 * collectors' accumulator lines stored with them, and eviction.  Private
 * to the core; core_rec.h has the records themselves and the lookups
 * (core_lookup, core_get_or_add, core_state_of) the store defines. */
#ifndef HAKMEMD_CORE_STORE_H
#define HAKMEMD_CORE_STORE_H

#include <stdint.h>

#include "core_rec.h"

/* This interval's sums over one collecting thread's processes: one line,
 * in a dense array per thread, so the two threads never share a line.
 * The first report of an interval overwrites it (the thread's bit in
 * core_acc.touched says whether it has one), so nothing clears it and the
 * learn pass reads only the accumulators that were written.  Counts are 32
 * bits, saturating: a per-interval sum past four billion is not a real
 * site. */
typedef struct site_acc {
    uint32_t rec;                    /* the record's idx */
    uint32_t procs;
    uint32_t allocs, frees, hits, misses, evictions, thp;
    uint64_t bytes, slow_ns, live;
    float faults;
    uint32_t hist;                   /* a histogram merge moved the shares in the cold part */
} __attribute__((aligned(64))) site_acc;

_Static_assert(sizeof(site_acc) == 64, "accumulator is one cache line");

/* Each collecting thread's accumulators.  The store makes a chunk's lines
 * with the chunk (under create_lock) and allocates the bitmaps; a
 * collecting thread writes only its own (core_collect.c), the interval
 * clears the bitmaps before collecting, and the learn pass reads both
 * after the join (core_learn.c). */
typedef struct core_accs {
    site_acc *chunks[COLLECTORS][N_CHUNKS];
    uint64_t *touched[COLLECTORS];   /* bit per record: the thread's accumulator is this interval's */
} core_accs;

extern core_accs core_acc;

/* Thread t's accumulator line of record idx. */
static inline site_acc *core_acc_at(uint32_t t, uint32_t idx)
{
    return &core_acc.chunks[t][idx / CHUNK_RECS][idx % CHUNK_RECS];
}

/* Whether thread t's line of record idx is this interval's. */
static inline int core_touched(uint32_t t, uint32_t idx)
{
    return (int)(core_acc.touched[t][idx / 64] >> (idx % 64)) & 1;
}

/* Idle records each domain gives up for room this interval: the
 * learner's, filled by core_evict_plan, taken by core_evict_idle. */
extern uint32_t core_want[HKD_DOMAINS_MAX];

/* A record no process reports for the retention period goes. */
static inline int core_aged_out(const site_rec *r)
{
    return g.now_s >= r->last_seen && g.now_s - r->last_seen >= g.cfg.retention_s;
}

/* The learner, before the learn pass: asks the domains for room (core_want). */
void core_evict_plan(void);
/* The learner, after the learn pass: evicts from the records no process
 * reported this interval (idle[] of both learn parts) those aged out, then
 * what each domain gives up for room. */
void core_evict_idle(const uint32_t *const idle[2], const uint32_t n_idle[2]);

/* The hash table, the free list and the bitmaps: 0 or -ENOMEM. */
int  core_store_init(void);
/* Drops every record and frees the store; no reader or collector runs. */
void core_store_free(void);

#endif
