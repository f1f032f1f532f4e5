/* hakmem shared-memory ABI: the one contract the client allocator and
 * hakmemd both compile against.
 *
 * Each side writes only what it owns.
 *
 *   The daemon's segment (POSIX shm, default "/hakmem"): created, sized
 *   and written by hakmemd alone.  Clients map it read-only.
 *
 *     [ header (4 KiB) | tables[HKSHM_TABLES] ]
 *
 *   A client's report region: a sealed memfd the client creates, writes,
 *   and registers with the daemon over the control socket (the descriptor
 *   travels by SCM_RIGHTS with a RegisterRequest, proto/control.proto).
 *   The daemon maps it read-only.
 *
 * Invariants (bump HKSHM_ABI_VERSION whenever any of this changes):
 *
 * - Segment header.  Written by the daemon only.  `magic` is stored last
 *   (release) when a segment is created, so a half-initialised segment
 *   looks foreign.  Every size field must equal the reader's compile-time
 *   value (hkshm_header_mismatch), otherwise the reader runs on defaults.
 *   `instance` changes every time a daemon takes the segment over: a client
 *   whose registration was made with another instance registers again.
 *   A client trusts a segment only when its owner is root or the daemon's
 *   user (the uid behind the control socket, or the socket file's owner)
 *   and no one else may write it (mode & 022 == 0).  (It also trusts its
 *   own euid; the socket file meant is $HAKMEM_SOCKET's or the default's:
 *   the header's socket_path cannot vouch for its own header.)  A segment
 *   of another size is described from its first 12 bytes (magic, ABI
 *   version: the same offsets in every ABI) and never mapped whole.
 *
 * - Ownership of a segment name is a flock(LOCK_EX) on the lock file
 *   "/dev/shm/<name>.lock" (mode 0600, owned by the daemon's user, so no
 *   client can open it, let alone hold its lock), never a pid in memory.
 *
 * - Report region.  Single writer: the owner process.  The first page's
 *   identity (magic .. exe) is written before registering and never again.
 *   (`registration` is rewritten before each registration.)
 *   Everything from `flushes` on is written under `seq`: odd before, even
 *   after each flush; the daemon copies under seq and retries a few times.
 *   A region is flushed once right before it is sent, so the daemon's first
 *   copy is current.  Counters are cumulative over the process lifetime
 *   (size_hist modulo 2^32; a fork child's start at its fork); the daemon
 *   works with differences.  Site i of the region is the process's i-th
 *   reported site (a dense index the client assigns at a site's first flush
 *   and never reuses; a fork child and every re-registration keep it): a
 *   key never changes at an index once written, and a daemon that sees one
 *   change counts nothing for it.  proc[RSS_KIB_MS] adds the RSS of each
 *   flush times the time since the previous one.  The final flush at exit
 *   sets proc[EXITED]; the client keeps its connection open until the
 *   kernel closes it, so a daemon reads the region once more when the
 *   connection closes or the process exits.  The daemon
 *   treats every byte here as untrusted input: counts are clamped, strings
 *   bounded and escaped, and a region that is not a memfd sealed against
 *   shrinking (F_SEAL_SHRINK), or not exactly HKSHM_REGION_SIZE bytes, is
 *   refused at registration.
 *
 * - Identity.  The daemon takes a client's pid and uid from SO_PEERCRED
 *   (pids as its own PID namespace sees them), never from the region.  A
 *   process holds at most one registration; one made after an exec (same
 *   pid) replaces the old one.  A registration ends when the process exits
 *   (pidfd), or when its connection closes (the socket is close-on-exec).
 *
 * - Registration, the client's side.  One frame (4-byte big-endian length,
 *   then Request{version 1, register_client{abi_version 2, region_size}},
 *   15 bytes today: 00 00 00 0b 08 01 92 01 06 08 02 10 80 cc 03) in one
 *   sendmsg carrying the memfd as SCM_RIGHTS; the client waits at most
 *   200 ms for one reply frame of at most 4096 bytes: `registered` is
 *   success (the client keeps the connection and closes its memfd), `error`
 *   a refusal, anything else a failure.  The
 *   socket is, in order: $HAKMEM_SOCKET, the header's socket_path when it
 *   is a NUL-terminated absolute path, HKSHM_DEFAULT_SOCKET.  A failure is
 *   retried 2 s later (after a timeout, 4, 8 .. 32 s).  Every 2 s a
 *   registered client checks its connection (EOF or error: gone) and the
 *   header's `instance` (changed since it registered: gone) and, if gone,
 *   registers again at once with a fresh region.  `registration` is 1 + the
 *   number of requests this process sent before that the daemon did not
 *   refuse (a request answered with garbage, or not at all, may have been
 *   registered: its number is used up, and the daemon must count the next
 *   one from what it first sees); a refused request's number is reused.  A
 *   fork child starts over at 1 with its own region.
 *
 * - Command.  A region may name the command the process runs, a word
 *   its argv gives (libclient/command.h has the client's rule):
 *   `command` holds 1..HKSHM_COMMAND_LEN bytes of [A-Za-z0-9_+=-],
 *   NUL-padded to HKSHM_COMMAND_MAX, and `command_hash` is
 *   hkshm_command_hash of that text; both 0 when there is none.  They are
 *   identity, written once before registration, though they sit after the
 *   flushed fields (in bytes that were reserved, so a region of an older
 *   client carries none).  A daemon refuses a command that fails
 *   hkshm_command_valid and takes the process as having none.
 *
 * - Domain of a reader: the euid it registered with (geteuid() before).
 *
 * - Domains.  Policy is learned and published per domain, the uid a
 *   process runs as: one user's processes never move another user's policy
 *   or counters.  Entries are sorted by (domain, key).
 *
 * - Binary entries are per (domain, binary_hash, command_hash): a process
 *   takes the entry of its own binary and command, and none other (a
 *   binary's commands cost differently, so one's arm says nothing of
 *   another's).  A client that looks entries up by (domain, binary_hash)
 *   alone, as clients before commands did, may find any command's entry
 *   of its binary.
 *
 * - Sampling.  Once the learner has settled a binary and command's choice
 *   and runs it (not exploring), its entry is published even when the
 *   choice is the default, with report_every = R > 1: a process of it
 *   then registers young (HAKMEM_REGISTER_AFTER_MS) only when its own
 *   draw falls on 1 in R, and otherwise only once it is a second old, so
 *   short runs of a settled command mostly pay reading their entry and no
 *   more.  A process drawn reports proc[REPORT_EVERY] = R, one that
 *   registered otherwise 1; the daemon weighs what taking part costs by
 *   it: the drawn process's cost before registering (ATTACH_NS) stands
 *   for R runs, the rest for one.  A client that ignores report_every
 *   registers as before.
 *
 * - Tables.  One publication is a copy holding both the per-site and the
 *   per-binary entries.  The daemon never writes a copy a client may be
 *   reading: it picks the inactive copy once every registered reader is
 *   outside a read of it (`read_gen` in each region is 0 or newer), or has
 *   held the same read for longer than the reader timeout (a stopped
 *   process cannot freeze publication).  It zeroes the copy's stamp,
 *   writes the entries, stamps it G+1, then stores `active` and
 *   `generation` = G+1 (seq_cst).  A client loads the generation, stores
 *   it in its region's `read_gen`, issues a full fence, reloads the
 *   generation (retries later if it moved), reads the copy whose stamp
 *   equals it, checks the stamp again (a read that raced a rewrite is
 *   thrown away), clears `read_gen` and records `gen_seen`.
 */
#ifndef HAKMEM_SHM_H
#define HAKMEM_SHM_H

#include <stdint.h>
#include <stddef.h>
#include <stdatomic.h>

#define HKSHM_MAGIC          0x334D48534D4B4148ULL   /* "HAKMSHM3" */
#define HKSHM_REGION_MAGIC   0x3247524D4B4148ULL     /* "HAKMRG2" */
#define HKSHM_ABI_VERSION    3u
#define HKSHM_DEFAULT_NAME   "/hakmem"
#define HKSHM_DEFAULT_SOCKET "/run/hakmem/ctl.sock"

#define HKSHM_SOCKET_PATH    108u     /* sizeof(sockaddr_un.sun_path) */
#define HKSHM_REGION_SITES   256u     /* sites a process reports (by site index) */
#define HKSHM_REGION_MODULES 16u
#define HKSHM_MODULE_PATH    56u
#define HKSHM_EXE_MAX        64u
#define HKSHM_BUILD_ID_MAX   20u
#define HKSHM_HIST           32u
#define HKSHM_PROC_COUNTERS  16u
#define HKSHM_TABLES         2u
#define HKSHM_SITE_CAP       65536u   /* published site policies per copy */
#define HKSHM_BINARY_CAP     4096u    /* published binary policies per copy */
#define HKSHM_KNOBS          9u
#define HKSHM_COMMAND_LEN    24u      /* bytes of a command's text at most */
#define HKSHM_COMMAND_MAX    32u      /* its field, NUL-padded */
#define HKSHM_HEADER_SIZE    4096u

#define HKSHM_NO_MODULE      0xFFFFu
/* A process keeps the binary arm it first read for this long before it
 * takes another one published; the daemon makes one observation of a
 * long-running process per this much wall time. */
#define HKSHM_BINARY_HOLD_MS 60000u
#define HKSHM_NO_ARM         0xFFFFFFFFu

typedef struct hkshm_header {
    uint64_t magic;
    uint32_t abi_version;
    uint32_t header_size;
    uint64_t segment_size;
    uint32_t n_tables, table_size;
    uint32_t site_cap, site_entry_size;
    uint32_t binary_cap, binary_entry_size;
    uint64_t tables_offset;
    uint32_t region_size;                 /* what a registered region must measure */
    uint32_t reader_timeout_ms;           /* a read held longer holds no grace period */

    _Atomic uint64_t instance;            /* new for every daemon that takes the segment */
    _Atomic uint32_t daemon_pid;          /* informational: 0 when stopped cleanly */
    _Atomic uint32_t learning;            /* 0: the tables hold nothing to apply */
    _Atomic uint64_t daemon_heartbeat_ns; /* CLOCK_MONOTONIC, each interval */
    _Atomic uint64_t generation;          /* of the active copy; 0 = none yet */
    _Atomic uint32_t active;              /* index of the active copy */
    _Atomic uint32_t flush_interval_ms;   /* how often clients should flush */
    _Atomic uint64_t created_ns;          /* CLOCK_REALTIME at creation */
    char     socket_path[HKSHM_SOCKET_PATH]; /* where to register ("" : not known) */
    uint8_t  reserved[HKSHM_HEADER_SIZE - 220];
} hkshm_header;

/* Per-process counters a region reports (index into hkshm_region.proc). */
enum hkshm_proc_counter {
    HKSHM_PROC_RSS_BYTES = 0,     /* resident set at the last flush */
    HKSHM_PROC_PEAK_RSS_BYTES,    /* getrusage ru_maxrss */
    HKSHM_PROC_RSS_KIB_MS,        /* integral of RSS over time since start */
    HKSHM_PROC_PAGE_FAULTS,       /* minor + major */
    HKSHM_PROC_CPU_NS,            /* user + system CPU of the whole process */
    HKSHM_PROC_WALL_NS,           /* since the allocator started */
    HKSHM_PROC_ALLOC_NS,          /* in the allocator's slow paths, system calls included */
    HKSHM_PROC_SYSCALLS,          /* mmap, munmap, madvise, mremap the allocator made */
    HKSHM_PROC_ALLOCS,            /* allocations, small ones included (may be estimated) */
    HKSHM_PROC_BYTES,             /* bytes allocated, small ones included (may be estimated) */
    HKSHM_PROC_EXITED,            /* 1 once the final flush at exit is written */
    HKSHM_PROC_PLANE_NS,          /* CPU ns in the client's side of this plane: registering, flushing, reading policy */
    HKSHM_PROC_ATTACH_NS,         /* of PLANE_NS, what went before the process registered (peeks) */
    HKSHM_PROC_REPORT_EVERY,      /* the runs this one stands for: its entry's report_every when it
                                   * registered young because it was drawn, else 1 (0: 1) */
    /* 14..15 reserved: 0 */
};

typedef struct hkshm_module {
    uint64_t hash;                        /* build-id hash (or path hash) */
    char     path[HKSHM_MODULE_PATH];
} hkshm_module;

typedef struct hkshm_site {
    uint64_t module_hash, offset;         /* fleet-wide key; 0,0 = unused */
    uint64_t allocs, frees, bytes, live_bytes;
    uint64_t bigcache_hits, bigcache_misses, bigcache_evictions;
    uint64_t thp_blocks, slow_ns;
    uint16_t module;                      /* index into the region's modules, or HKSHM_NO_MODULE */
    uint16_t flags;
    uint32_t policy_arm;                  /* arm applied by the client (HKSHM_NO_ARM: defaults) */
    uint32_t size_hist[HKSHM_HIST];       /* log2 buckets, modulo 2^32 */
} hkshm_site;

typedef struct hkshm_region {
    /* Identity: written once, before registration. */
    uint64_t magic;                       /* HKSHM_REGION_MAGIC */
    uint32_t abi_version;
    uint32_t region_size;
    uint64_t binary_hash;                 /* build-id hash of the main executable (0: none) */
    uint8_t  build_id_len;
    uint8_t  pad0[3];
    uint32_t registration;                /* 1 at the process's first registration, +1 at each
                                           * one after (its daemon went away): a daemon counts a
                                           * first registration's counters from zero, a later
                                           * one's from what it first sees */
    uint8_t  build_id[HKSHM_BUILD_ID_MAX];
    uint8_t  pad1[12];
    char     exe[HKSHM_EXE_MAX];          /* informational: the tail of /proc/self/exe */
    /* The reader's side of publication (see Tables above). */
    _Atomic uint64_t read_gen;            /* != 0 while reading that generation */
    _Atomic uint64_t gen_seen;            /* last generation applied */
    _Atomic uint64_t heartbeat_ns;        /* CLOCK_MONOTONIC of the last flush */
    _Atomic uint64_t seq;                 /* odd while the owner writes below */
    /* Flushed under seq. */
    uint64_t flushes;
    uint64_t proc[HKSHM_PROC_COUNTERS];   /* enum hkshm_proc_counter */
    uint32_t n_sites;                     /* sites[0..n_sites) may be used */
    uint32_t n_modules;
    uint32_t sites_applied;               /* sites running on a published policy */
    uint32_t binary_arm;                  /* binary arm applied (HKSHM_NO_ARM: defaults) */
    /* Identity, written once before registration (see Command above). */
    uint64_t command_hash;                /* hkshm_command_hash(command); 0: no command */
    char     command[HKSHM_COMMAND_MAX];  /* informational text, NUL-padded */
    uint8_t  reserved[512 - 352];
    hkshm_module modules[HKSHM_REGION_MODULES];
    hkshm_site   sites[HKSHM_REGION_SITES];
} hkshm_region;

typedef struct hkshm_site_policy {
    uint32_t domain;                      /* uid */
    uint32_t large_threshold;             /* bytes */
    uint64_t module_hash, offset;
    uint16_t bigcache_slots;
    uint8_t  thp;
    uint8_t  pad;
    uint32_t arm;                         /* daemon's arm index, informational */
} hkshm_site_policy;

/* Process-level knobs (index into hkshm_binary_policy.knob); a knob whose
 * bit is clear in `set`, or whose value fails hkshm_knob_valid, keeps the
 * client's own default. */
enum hkshm_knob {
    HKSHM_KNOB_PURGE_DELAY_MS = 0,        /* how long freed pages stay resident */
    HKSHM_KNOB_RETAINED_SEGMENTS,         /* empty segments a process keeps mapped */
    HKSHM_KNOB_PARTIAL_REUSE,             /* 0..3: how eagerly partly used pages are reused */
    HKSHM_KNOB_THP,                       /* bits: HKSHM_THP_SMALL, HKSHM_THP_LARGE */
    HKSHM_KNOB_LARGE_THRESHOLD,           /* bytes: the default for sites without a policy */
    HKSHM_KNOB_BIGCACHE_KIB,              /* BigCache's total bytes, in KiB */
    HKSHM_KNOB_MEDIUM_PAGE_BLOCKS,        /* 1..8: fewest blocks in a page of a 16-128 KiB class */
    HKSHM_KNOB_POPULATE_KIB,              /* 0..1024: KiB faulted in at once ahead of carving */
    HKSHM_KNOB_PACKED_KIB,                /* 0..63: requests over this many KiB, to 64 KiB, packed (0: none) */
};

/* HKSHM_KNOB_THP's bits: huge pages asked for small-object segments, and
 * for every large block of 2 MiB or more whatever its site's policy. */
#define HKSHM_THP_SMALL      1u
#define HKSHM_THP_LARGE      2u

typedef struct hkshm_binary_policy {
    uint32_t domain;                      /* uid */
    uint32_t arm;                         /* daemon's arm index, informational */
    uint64_t binary_hash;                 /* build-id hash of the main executable */
    uint32_t set;                         /* bit k: knob[k] is set */
    uint32_t report_every;                /* 1 in this many processes registers young
                                           * (0, 1: every one; see Sampling) */
    uint32_t knob[HKSHM_KNOBS];
    uint64_t command_hash;                /* the command's (0: runs that name none) */
} hkshm_binary_policy;

typedef struct hkshm_table {
    _Atomic uint64_t generation;          /* stamp; 0 while being written */
    uint32_t n_sites;
    uint32_t n_binaries;
    uint8_t  reserved[48];
    hkshm_site_policy sites[HKSHM_SITE_CAP];
    hkshm_binary_policy binaries[HKSHM_BINARY_CAP];
} hkshm_table;

#define HKSHM_TABLES_OFFSET  ((uint64_t)HKSHM_HEADER_SIZE)
#define HKSHM_SEGMENT_SIZE   (HKSHM_TABLES_OFFSET + (uint64_t)HKSHM_TABLES * sizeof(hkshm_table))
#define HKSHM_REGION_SIZE    ((uint32_t)sizeof(hkshm_region))

/* Sanity limits a reader applies to published values (garbage defence). */
#define HKSHM_REPORT_EVERY_MAX 64u    /* larger report_every values count as this */
#define HKSHM_THRESHOLD_MIN  (4u << 10)
#define HKSHM_THRESHOLD_MAX  (1u << 30)
#define HKSHM_SLOTS_LIMIT    64u

/* Whether a published knob value is one a reader accepts; a knob outside
 * its range (or a reserved one) is treated as if its bit were clear. */
static inline int hkshm_knob_valid(uint32_t knob, uint32_t v)
{
    switch (knob) {
    case HKSHM_KNOB_PURGE_DELAY_MS:    return v <= 60000u;
    case HKSHM_KNOB_RETAINED_SEGMENTS: return v <= 1024u;
    case HKSHM_KNOB_PARTIAL_REUSE:     return v <= 3u;
    case HKSHM_KNOB_THP:               return v <= (HKSHM_THP_SMALL | HKSHM_THP_LARGE);
    case HKSHM_KNOB_LARGE_THRESHOLD:   return v >= HKSHM_THRESHOLD_MIN && v <= HKSHM_THRESHOLD_MAX;
    case HKSHM_KNOB_BIGCACHE_KIB:      return v <= (4u << 20);
    case HKSHM_KNOB_MEDIUM_PAGE_BLOCKS: return v >= 1u && v <= 8u;
    case HKSHM_KNOB_POPULATE_KIB:      return v <= 1024u;
    case HKSHM_KNOB_PACKED_KIB:        return v <= 63u;
    default:                           return 0;
    }
}

_Static_assert(sizeof(hkshm_header) == HKSHM_HEADER_SIZE, "header is one page");
_Static_assert(offsetof(hkshm_header, instance) == 64, "header layout");
_Static_assert(offsetof(hkshm_header, socket_path) == 112, "header layout");
_Static_assert(sizeof(hkshm_module) == 64, "module entry");
_Static_assert(sizeof(hkshm_site) == 224, "site record");
_Static_assert(offsetof(hkshm_site, size_hist) == 96, "site layout");
_Static_assert(offsetof(hkshm_region, read_gen) == 128, "region layout");
_Static_assert(offsetof(hkshm_region, flushes) == 160, "region layout");
_Static_assert(offsetof(hkshm_region, command_hash) == 312, "region layout");
_Static_assert(offsetof(hkshm_region, reserved) == 352, "region layout");
_Static_assert(offsetof(hkshm_region, modules) == 512, "region header is 512 bytes");
_Static_assert(sizeof(hkshm_region) == 512 + 16 * 64 + 256 * 224, "region size");
_Static_assert(sizeof(hkshm_region) % 64 == 0, "regions stay cache-line aligned");
_Static_assert(sizeof(hkshm_site_policy) == 32, "site policy entry");
_Static_assert(sizeof(hkshm_binary_policy) == 72, "binary policy entry");
_Static_assert(offsetof(hkshm_binary_policy, command_hash) == 64, "binary policy layout");
_Static_assert(offsetof(hkshm_table, sites) == 64, "table layout");
_Static_assert(sizeof(hkshm_table) % 64 == 0, "copies stay aligned");
_Static_assert(sizeof(_Atomic uint64_t) == 8 && sizeof(_Atomic uint32_t) == 4,
               "atomics are plain words in shared memory");

static inline hkshm_table *hkshm_table_at(void *base, uint32_t i)
{
    return (hkshm_table *)((char *)base + HKSHM_TABLES_OFFSET) + i;
}

/* Orders two site entries' keys (tables are sorted by this). */
static inline int hkshm_site_cmp(uint32_t da, uint64_t ha, uint64_t oa, uint32_t db, uint64_t hb, uint64_t ob)
{
    if (da != db)
        return da < db ? -1 : 1;
    if (ha != hb)
        return ha < hb ? -1 : 1;
    if (oa != ob)
        return oa < ob ? -1 : 1;
    return 0;
}

/* Orders two binary entries' keys: (domain, binary hash, command hash). */
static inline int hkshm_binary_cmp(uint32_t da, uint64_t ha, uint64_t ca, uint32_t db, uint64_t hb, uint64_t cb)
{
    return hkshm_site_cmp(da, ha, ca, db, hb, cb);
}

/* Whether c may be in a command's text. */
static inline int hkshm_command_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '+' ||
           c == '=' || c == '-';
}

/* The length of the command text in field[0..HKSHM_COMMAND_MAX): 1 to
 * HKSHM_COMMAND_LEN command bytes, then NULs to the end of the field;
 * 0 when the field is not that (empty, too long, another byte in it). */
static inline size_t hkshm_command_valid(const char *field)
{
    size_t n = 0;
    while (n < HKSHM_COMMAND_MAX && field[n] && hkshm_command_char(field[n]))
        n++;
    if (n == 0 || n > HKSHM_COMMAND_LEN)
        return 0;
    for (size_t i = n; i < HKSHM_COMMAND_MAX; i++)
        if (field[i])
            return 0;
    return n;
}

/* A C string as a command field: its length, with field holding it
 * NUL-padded; 0 and field all NUL when text is not a valid command. */
static inline size_t hkshm_command_field(char field[HKSHM_COMMAND_MAX], const char *text)
{
    size_t n = 0;
    for (size_t i = 0; i < HKSHM_COMMAND_MAX; i++)
        field[i] = 0;
    while (n <= HKSHM_COMMAND_LEN && text[n])
        n++;
    if (n > HKSHM_COMMAND_LEN)
        return 0;
    for (size_t i = 0; i < n; i++)
        field[i] = text[i];
    if (hkshm_command_valid(field) == n)
        return n;
    for (size_t i = 0; i < n; i++)
        field[i] = 0;
    return 0;
}

/* A command's key: FNV-1a 64 of its text, never 0 (0 is "no command"). */
static inline uint64_t hkshm_command_hash(const char *text, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)text[i];
        h *= 0x100000001b3ull;
    }
    return h ? h : 1;
}

/* The header this build expects; 0 when `h` matches, else a short reason:
 * "segment size", "magic", "ABI version" or "layout". */
static inline const char *hkshm_header_mismatch(const hkshm_header *h, uint64_t size)
{
    if (size != HKSHM_SEGMENT_SIZE)
        return "segment size";
    if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != HKSHM_MAGIC)
        return "magic";
    if (h->abi_version != HKSHM_ABI_VERSION)
        return "ABI version";
    if (h->segment_size != HKSHM_SEGMENT_SIZE || h->header_size != HKSHM_HEADER_SIZE ||
        h->n_tables != HKSHM_TABLES || h->table_size != sizeof(hkshm_table) ||
        h->site_cap != HKSHM_SITE_CAP || h->site_entry_size != sizeof(hkshm_site_policy) ||
        h->binary_cap != HKSHM_BINARY_CAP || h->binary_entry_size != sizeof(hkshm_binary_policy) ||
        h->tables_offset != HKSHM_TABLES_OFFSET || h->region_size != HKSHM_REGION_SIZE)
        return "layout";
    return 0;
}

#endif
