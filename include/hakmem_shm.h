/* hakmem shared-memory ABI: the one contract the client allocator and
 * hakmemd both compile against.
 *
 * One POSIX shm segment, created and sized by the daemon:
 *
 *   [ header (4 KiB) | slots[HKSHM_MAX_SLOTS] | tables[HKSHM_TABLES] ]
 *
 * Invariants (bump HKSHM_ABI_VERSION whenever any of this changes):
 *
 * - The header is written by the daemon only.  `magic` is stored last (with
 *   release) when a segment is created, so a half-initialised segment looks
 *   foreign to clients.  Every size field must equal the compile-time value
 *   of the reader, otherwise the reader treats the segment as incompatible.
 *
 * - Slots.  `pid` is the ownership word: 0 free, a pid when owned,
 *   HKSHM_PID_RESERVED while the daemon recycles the slot.  A client claims a
 *   free slot with one CAS 0 -> getpid(), then writes its identity, then sets
 *   `state` LIVE (release).  Everything below `seq` is single-writer (the
 *   owner); the owner makes `seq` odd before and even after each flush, so the
 *   daemon copies a consistent snapshot by checking `seq` before and after.
 *   Per-site counters are cumulative over the process lifetime (size_hist is
 *   modulo 2^32); the daemon works with differences.  Site i of the slot is
 *   the process's site index i (stable for the process lifetime).
 *   At exit the owner does a last flush and sets EXITED; the daemon reads the
 *   final counters and frees the slot.  A slot whose owner died (kill(pid,0)
 *   fails, or /proc/pid/stat start time differs from `start_time`, i.e. the
 *   pid was reused) is freed by the daemon, or taken over by a client that
 *   finds no free slot (CAS from the dead pid).
 *
 * - Tables.  The daemon never writes a table a client may be reading.  To
 *   publish it picks the inactive copy, and only if that copy's grace period
 *   has passed: every live slot is either outside a read (`read_gen` == 0)
 *   or reading a newer generation.  It zeroes the copy's `generation`, writes
 *   entries sorted by (module_hash, offset), stamps the copy with G+1, then
 *   stores `active` and `generation` = G+1 (seq_cst).  A client loads the
 *   generation, stores it in `read_gen`, issues a full fence, reloads the
 *   generation (retry later if it moved), reads the copy whose stamp equals
 *   it, checks the stamp again, clears `read_gen` and records `gen_seen`.
 *   This is RCU across processes: `read_gen` is the reader's read-side
 *   critical section, dead slots never hold a grace period.
 */
#ifndef HAKMEM_SHM_H
#define HAKMEM_SHM_H

#include <stdint.h>
#include <stddef.h>
#include <stdatomic.h>

#define HKSHM_MAGIC          0x314D48534D4B4148ULL   /* "HAKMSHM1" */
#define HKSHM_ABI_VERSION    1u
#define HKSHM_DEFAULT_NAME   "/hakmem"

#define HKSHM_MAX_SLOTS      256u
#define HKSHM_SLOT_SITES     256u     /* sites a process reports (by site index) */
#define HKSHM_SLOT_MODULES   16u
#define HKSHM_MODULE_PATH    56u
#define HKSHM_EXE_MAX        64u
#define HKSHM_BUILD_ID_MAX   20u
#define HKSHM_HIST           32u
#define HKSHM_TABLES         2u
#define HKSHM_TABLE_CAP      65536u   /* published site policies per copy */
#define HKSHM_HEADER_SIZE    4096u

#define HKSHM_PID_RESERVED   0xFFFFFFFFu
#define HKSHM_NO_MODULE      0xFFFFu

enum hkshm_slot_state {
    HKSHM_SLOT_FREE = 0,
    HKSHM_SLOT_CLAIMING = 1,   /* pid written, identity not yet */
    HKSHM_SLOT_LIVE = 2,
    HKSHM_SLOT_EXITED = 3,     /* final counters flushed, owner gone */
};

typedef struct hkshm_header {
    uint64_t magic;
    uint32_t abi_version;
    uint32_t header_size;
    uint64_t segment_size;
    uint32_t max_slots, slot_size;
    uint32_t slot_sites, site_size;
    uint32_t n_tables, table_cap;
    uint32_t table_size, entry_size;
    uint64_t slots_offset, tables_offset;

    _Atomic uint32_t daemon_pid;          /* 0 when no daemon runs */
    _Atomic uint32_t learning;            /* 0: daemon publishes nothing to apply */
    _Atomic uint64_t daemon_start_time;   /* /proc/<pid>/stat starttime, clock ticks */
    _Atomic uint64_t daemon_heartbeat_ns; /* CLOCK_MONOTONIC, each interval */
    _Atomic uint64_t generation;          /* of the active table; 0 = none yet */
    _Atomic uint32_t active;              /* index of the active table copy */
    _Atomic uint32_t flush_interval_ms;   /* how often clients should flush */
    _Atomic uint64_t created_ns;          /* CLOCK_REALTIME at creation */
    uint8_t reserved[HKSHM_HEADER_SIZE - 120];
} hkshm_header;

typedef struct hkshm_module {
    uint64_t hash;                        /* build-id hash (or path hash) */
    char     path[HKSHM_MODULE_PATH];
} hkshm_module;

typedef struct hkshm_site {
    uint64_t module_hash, offset;         /* fleet-wide key; 0,0 = unused */
    uint64_t allocs, frees, bytes, live_bytes;
    uint64_t bigcache_hits, bigcache_misses, bigcache_evictions;
    uint64_t thp_blocks, slow_ns;
    uint16_t module;                      /* index into slot modules, or HKSHM_NO_MODULE */
    uint16_t flags;
    uint32_t policy_arm;                  /* arm applied by the client (UINT32_MAX: defaults) */
    uint32_t size_hist[HKSHM_HIST];       /* log2 buckets, modulo 2^32 */
} hkshm_site;

typedef struct hkshm_slot {
    _Atomic uint32_t pid;
    _Atomic uint32_t state;
    uint64_t start_time;                  /* /proc/<pid>/stat starttime, clock ticks */
    _Atomic uint64_t read_gen;            /* != 0 while reading that generation */
    _Atomic uint64_t gen_seen;            /* last generation applied */
    _Atomic uint64_t heartbeat_ns;        /* CLOCK_MONOTONIC of the last flush */
    _Atomic uint64_t seq;                 /* odd while the owner writes below */
    uint64_t flushes;
    uint64_t rss_bytes, page_faults;      /* the process's, at the last flush */
    uint32_t n_sites;                     /* sites[0..n_sites) may be used */
    uint32_t n_modules;
    uint32_t sites_applied;               /* sites running on a published policy */
    uint8_t  build_id_len;
    uint8_t  pad0[3];
    uint8_t  build_id[HKSHM_BUILD_ID_MAX];
    uint8_t  pad1[4];
    char     exe[HKSHM_EXE_MAX];
    uint8_t  reserved[256 - 176];
    hkshm_module modules[HKSHM_SLOT_MODULES];
    hkshm_site   sites[HKSHM_SLOT_SITES];
} hkshm_slot;

typedef struct hkshm_policy {
    uint64_t module_hash, offset;
    uint32_t large_threshold;             /* bytes */
    uint16_t bigcache_slots;
    uint8_t  thp;
    uint8_t  arm;                         /* daemon's arm index, informational */
} hkshm_policy;

typedef struct hkshm_table {
    _Atomic uint64_t generation;          /* stamp; 0 while being written */
    uint32_t n_entries;
    uint32_t pad;
    uint8_t  reserved[48];
    hkshm_policy entries[HKSHM_TABLE_CAP];
} hkshm_table;

#define HKSHM_SLOTS_OFFSET   ((uint64_t)HKSHM_HEADER_SIZE)
#define HKSHM_TABLES_OFFSET  (HKSHM_SLOTS_OFFSET + (uint64_t)HKSHM_MAX_SLOTS * sizeof(hkshm_slot))
#define HKSHM_SEGMENT_SIZE   (HKSHM_TABLES_OFFSET + (uint64_t)HKSHM_TABLES * sizeof(hkshm_table))

/* Sanity limits a reader applies to published values (garbage defence). */
#define HKSHM_THRESHOLD_MIN  (4u << 10)
#define HKSHM_THRESHOLD_MAX  (1u << 30)
#define HKSHM_SLOTS_LIMIT    64u

_Static_assert(sizeof(hkshm_header) == HKSHM_HEADER_SIZE, "header is one page");
_Static_assert(offsetof(hkshm_header, daemon_pid) == 72, "header layout");
_Static_assert(offsetof(hkshm_header, generation) == 96, "header layout");
_Static_assert(sizeof(hkshm_module) == 64, "module entry");
_Static_assert(sizeof(hkshm_site) == 224, "site record");
_Static_assert(offsetof(hkshm_site, size_hist) == 96, "site layout");
_Static_assert(offsetof(hkshm_slot, seq) == 40, "slot layout");
_Static_assert(offsetof(hkshm_slot, exe) == 112, "slot layout");
_Static_assert(offsetof(hkshm_slot, modules) == 256, "slot header is 256 bytes");
_Static_assert(sizeof(hkshm_slot) == 256 + 16 * 64 + 256 * 224, "slot size");
_Static_assert(sizeof(hkshm_slot) % 64 == 0, "slots stay cache-line aligned");
_Static_assert(sizeof(hkshm_policy) == 24, "policy entry");
_Static_assert(offsetof(hkshm_table, entries) == 64, "table layout");
_Static_assert(HKSHM_TABLES_OFFSET % 64 == 0, "tables aligned");
_Static_assert(sizeof(_Atomic uint64_t) == 8 && sizeof(_Atomic uint32_t) == 4,
               "atomics are plain words in shared memory");

static inline hkshm_slot *hkshm_slot_at(void *base, uint32_t i)
{
    return (hkshm_slot *)((char *)base + HKSHM_SLOTS_OFFSET) + i;
}

static inline hkshm_table *hkshm_table_at(void *base, uint32_t i)
{
    return (hkshm_table *)((char *)base + HKSHM_TABLES_OFFSET) + i;
}

/* Orders two fleet keys (tables are sorted by this). */
static inline int hkshm_key_cmp(uint64_t ha, uint64_t oa, uint64_t hb, uint64_t ob)
{
    if (ha != hb)
        return ha < hb ? -1 : 1;
    if (oa != ob)
        return oa < ob ? -1 : 1;
    return 0;
}

/* The header this build expects; 0 when `h` matches, else a short reason. */
static inline const char *hkshm_header_mismatch(const hkshm_header *h, uint64_t size)
{
    if (size != HKSHM_SEGMENT_SIZE || h->segment_size != HKSHM_SEGMENT_SIZE)
        return "segment size";
    if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != HKSHM_MAGIC)
        return "magic";
    if (h->abi_version != HKSHM_ABI_VERSION)
        return "ABI version";
    if (h->header_size != HKSHM_HEADER_SIZE || h->max_slots != HKSHM_MAX_SLOTS ||
        h->slot_size != sizeof(hkshm_slot) || h->slot_sites != HKSHM_SLOT_SITES ||
        h->site_size != sizeof(hkshm_site) || h->n_tables != HKSHM_TABLES ||
        h->table_cap != HKSHM_TABLE_CAP || h->table_size != sizeof(hkshm_table) ||
        h->entry_size != sizeof(hkshm_policy) ||
        h->slots_offset != HKSHM_SLOTS_OFFSET || h->tables_offset != HKSHM_TABLES_OFFSET)
        return "layout";
    return 0;
}

#endif
