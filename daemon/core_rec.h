/* The core's site records, shared by its parts (core.c: the interval;
 * core_store.c: records by key and by slot, eviction; core_collect.c:
 * collection; core_learn.c: the learn pass; core_table.c: the shared
 * table; core_ops.c: loading, saving, import, export, reset, pin and
 * reading sites).  Private to the core.
 *
 * A record is pieces allocated in chunks, indexed by creation slot: the hot
 * record (learner state and merged totals, four lines, walked by every
 * learn pass), one accumulator line per collecting thread, and a cold part
 * (key, histogram, module path, hash node).  Evicted records' slots are
 * reused; live records never move.
 *
 * Who touches what:
 *  - The main loop runs the interval (hkd_core_interval) under g.lock:
 *    it collects the even registry entries, merges, learns, publishes.
 *    A record's hot part is written only under g.lock (by the interval
 *    and the control operations below), between wbegin() and wend().
 *  - The worker thread (worker.c), from 16,384 sites on, collects the odd
 *    entries during the interval, into its own accumulator line of each
 *    record (never the hot part); new records then need g.create_lock.
 *    A histogram merge writes the cold part under the cold part's seq.
 *  - Control-server threads (ctl_server.c) read records without g.lock,
 *    by the seqlocks (copy, then retry if seq moved), inside
 *    rcu_read_lock; what changes state (pin, reset, import, export) takes
 *    g.lock, so it runs between intervals (core_ops.c).
 *  - The saver thread (saver.c) writes a copy made under g.lock; it never
 *    reads a record.  The metrics-file thread (metrics_file.c) reads
 *    records as the control-server threads do, through metrics.c.
 *  - g's fields are g.lock's unless their comment says otherwise; the
 *    _Atomic ones are read by anyone. */
#ifndef HAKMEMD_CORE_REC_H
#define HAKMEMD_CORE_REC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <urcu.h>
#include <urcu/rculfhash.h>

#include "archive.h"
#include "bands.h"
#include "collector.h"
#include "core.h"
#include "core_api.h"
#include "domains.h"
#include "hakmem_shm.h"
#include "learner.h"
#include "segment.h"

#define MAX_SITES HKD_MAX_SITES
#define IDX_BITS 19
#define DOM_BITS 10
#define COLLECTORS 2                 /* threads that collect (each its own accumulators) */
#define SPLIT_MIN_RECS 16384u        /* fewer records or sites: one thread collects and learns */
#define CHUNK_RECS 8192u             /* records per allocation, never moved */
#define N_CHUNKS (MAX_SITES / CHUNK_RECS)
#define ARCHIVE_ENTRY_BYTES 256u     /* what an archived site takes in a state file, about: the archive holds what the file can */

typedef struct site_rec {
    /* Four cache lines, all of them read and written by the learn pass
     * every interval: the totals, then the learner.  Key, histogram,
     * module path and hash node are cold (cold_of()). */
    _Atomic uint32_t seq;            /* odd while the learner writes */
    uint16_t processes;              /* reports this interval (saturating) */
    uint16_t pos;                    /* its entry in g.entries while in_table */
    /* merged view: lifetime totals since the record was made */
    uint64_t allocs, frees, bytes, live_bytes;
    uint64_t hits, misses, evictions, thp, slow_ns;
    uint32_t idx : IDX_BITS;         /* creation slot: its accumulators, bits, cold part */
    uint32_t dom : DOM_BITS;         /* its domain's slot (domains.h) */
    uint32_t in_table : 1;           /* g.entries[pos] is its entry */
    uint32_t excluded : 1;           /* left out of a full table: clients run defaults, so it does not learn */
    uint32_t free : 1;               /* evicted; the slot waits for reuse */
    uint16_t frac_256k, frac_1m;     /* shares (of 65535) of allocations at or above the arms' two thresholds */
    uint32_t last_seen;              /* unix seconds of its last report, while processes == 0 (else: now) */
    float heat;                      /* bytes per interval, decayed: what the table keeps first */
    hkd_learn learn;
    hkd_thin thin;                   /* thin sites run their size band's arm */
} site_rec;

/* What an interval does not touch, apart so the hot records are packed.
 * A histogram merge (a collector, under seq) writes the shares here; the
 * learn pass copies them to the record when a merge says they moved. */
typedef struct site_cold {
    struct cds_lfht_node node;
    site_rec *rec;
    hkd_site_key key;
    _Atomic uint32_t seq;            /* odd while a merge writes (the record's seq does not cover it) */
    uint8_t  sizes_new;              /* size_lo/size_hi not yet handed to the learner */
    uint8_t  size_lo, size_hi;
    double frac_256k, frac_1m;       /* shares at or above the two thresholds arms use */
    uint64_t n_all, n_ge256, n_ge1m; /* hist's total, and at or above the two thresholds */
    uint32_t used;                   /* bit per bucket hist has counted in */
    uint64_t usage_before;           /* allocations the site had when it came back from the archive */
    uint64_t hist[HKSHM_HIST];
    char module[HKD_MODULE_MAX];
} site_cold;

/* The histogram bucket of v (log2, rounded down; 0 for 0). */
static inline int core_log2_floor(uint32_t v)
{
    return v ? 31 - __builtin_clz(v) : 0;
}

#define HOT_SIZE ((sizeof(site_rec) + 63) & ~(size_t)63)
_Static_assert(sizeof(site_rec) <= 256, "hot record stays within four cache lines");
_Static_assert(MAX_SITES <= 1u << IDX_BITS && HKD_DOMAINS_MAX <= 1u << DOM_BITS, "record fields hold their ranges");

/* The core's state, under g.lock unless said (core.c defines it). */
typedef struct core_state {
    pthread_mutex_t lock;
    pthread_mutex_t create_lock;     /* new records, while two threads collect */
    hkd_core_cfg cfg;
    char state_dir[1024];
    hkd_segment seg;
    hkd_collector *col, *col2;       /* even and odd registry entries: one per collecting thread */
    hkd_domains *domains;
    hkd_archive *archive;
    struct cds_lfht *ht;
    char *hot_chunks[N_CHUNKS];
    site_cold *cold_chunks[N_CHUNKS];
    uint32_t n_idx;                  /* creation slots handed out, live or free */
    uint32_t *free_idx;              /* evicted slots, ready for reuse */
    uint32_t n_free;
    int set_changed;                 /* records came or went: the table's selection is stale */
    int dirty;                       /* republish wanted */
    int over_cap;                    /* more sites than the table holds: some are left out */
    hkshm_site_policy *entries;      /* kept current per record: publishing copies it */
    uint32_t n_entries;
    hkshm_binary_policy *binaries;   /* per-binary policy, HKSHM_BINARY_CAP */
    uint32_t n_binaries;
    char init_error[256];
    uint32_t now_s;                  /* wall clock of this interval */
    uint64_t selected_at;            /* interval of the last choice of the table's sites */
    _Atomic uint64_t intervals;
    _Atomic uint64_t generation;
    _Atomic uint32_t n_archived;
} core_state;

extern core_state g;

static inline site_rec *rec_at(uint32_t idx)
{
    return (site_rec *)(g.hot_chunks[idx / CHUNK_RECS] + (size_t)(idx % CHUNK_RECS) * HOT_SIZE);
}

/* The chunk tables are fixed arrays: safe while the other collector adds. */
static inline site_cold *cold_at(uint32_t idx)
{
    return &g.cold_chunks[idx / CHUNK_RECS][idx % CHUNK_RECS];
}

static inline site_cold *cold_of(const site_rec *r)
{
    return cold_at(r->idx);
}

static inline void wbegin(site_rec *r)
{
    atomic_store_explicit(&r->seq, r->seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

static inline void wend(site_rec *r)
{
    atomic_store_explicit(&r->seq, r->seq + 1, memory_order_release);
}

/* The arm a site runs: pinned, else its band's while it is thin, else its own. */
static inline int rec_arm(const site_rec *r)
{
    if (r->learn.pinned >= 0)
        return r->learn.pinned;
    if (r->thin.band != HKD_NO_BAND && r->thin.arm >= 0)
        return r->thin.arm;
    return r->learn.current;
}

/* core.c */
uint64_t core_clock_ms(void);
/* core_store.c */
/* Inside rcu_read_lock. */
site_rec *core_lookup(const hkd_site_key *k);
/* A collecting thread's note of the user its last refusal was for (slot
 * -1: none yet), and the refusals made on it since: until the interval
 * ends, admissions only fill the limits, so that user's other new keys
 * are refused too.  A flood of new keys then costs a lookup each, not a
 * turn at the create lock that the other collecting thread waits for. */
typedef struct core_spent {
    int slot;
    uint32_t uid;
    uint64_t refused;
} core_spent;
#define CORE_SPENT_NONE ((core_spent){ .slot = -1 })

/* Either collecting thread (inside rcu_read_lock), or the learner: the
 * record for k, made when new and its domain may add it (by_report: a
 * process reports it), restored from the archive when kept there.
 * NULL: refused or no memory.  spent: a collecting thread's note, or NULL:
 * a new key of the user it names is refused at once, and a refusal for a
 * limit names its user there. */
site_rec *core_get_or_add(const hkd_site_key *k, const char *module, int by_report, core_spent *spent);
/* Counts the refusals made on a note with its user's, and clears it. */
void core_spent_settle(core_spent *spent);

/* What is kept of r's learning (the archive, state files). */
void core_state_of(const site_rec *r, hkd_site_state *s);

/* core_fleet.c: what other hosts learned, per record (core_fleet.h) */
typedef struct core_prior {
    _Atomic uint32_t seq;            /* odd while written */
    uint32_t gen;                    /* the apply that wrote it (0: empty) */
    hkd_site_key key;
    hkd_prior prior;
    _Atomic uint8_t pin;             /* the fleet's pin: its arm + 1 (0: none); g.lock's to write */
    uint32_t pin_gen;                /* the pins' apply that last named it */
} core_prior;

extern core_prior *core_prior_chunks[N_CHUNKS];

/* Record idx's prior, or NULL when no fleet sent one (under g.lock). */
static inline const hkd_prior *core_fleet_prior_at(uint32_t idx)
{
    core_prior *c = core_prior_chunks[idx / CHUNK_RECS];
    if (__builtin_expect(c == NULL, 1))
        return NULL;
    core_prior *p = &c[idx % CHUNK_RECS];
    return p->gen ? &p->prior : NULL;
}
/* An evicted record's prior goes with it (the learner). */
void core_fleet_forget(uint32_t idx);
/* 1 when the fleet pins record idx (any thread). */
int  core_fleet_pinned(uint32_t idx);
void core_fleet_free(void);

/* core_ops.c */
void core_load_state(void);
/* Forces (arm >= 0) or releases (arm < 0) r's arm and publishes when that
 * changed what runs (under g.lock). */
void core_pin_record(site_rec *r, int arm);
/* core_table.c */
/* Updates the record's table entry when it has one (the arm it runs). */
void core_set_published(site_rec *r);
/* Frees the table choice's working arrays (at shutdown). */
void core_table_free(void);
/* Chooses the table's sites when due (or now, with force) and publishes
 * when something changed. */
int  core_publish(int force);

#endif
