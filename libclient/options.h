/* Environment knobs, read once at start (HAKMEM_*).  See README. */
#ifndef HK_OPTIONS_H
#define HK_OPTIONS_H

#include <stdint.h>

#include "hakmem_shm.h"

typedef struct hk_options {
    int stats;                  /* HAKMEM_STATS: report to stderr at exit */
    int verbose;                /* HAKMEM_VERBOSE: 0..3 */
    int bigcache;               /* HAKMEM_BIGCACHE: 0 turns BigCache off */
    int thp;                    /* HAKMEM_THP=0: never MADV_HUGEPAGE */
    int thp_default;            /* HAKMEM_THP=1: on for every site; unset: off until learned */
    int baseline;               /* HAKMEM_MODE=baseline: ignore the daemon */
    uint32_t large_threshold;   /* HAKMEM_LARGE_THRESHOLD: default 1 MiB */
    uint32_t bigcache_slots;    /* HAKMEM_BIGCACHE_SLOTS: ring size per site, <= 4 */
    uint32_t sample_bytes;      /* HAKMEM_SAMPLE_BYTES: small-allocation sampling period */
    uint32_t purge_delay_ms;    /* HAKMEM_PURGE_DELAY_MS: idle time before memory goes back */
    uint32_t purge_delay_max_ms; /* HAKMEM_PURGE_DELAY_MAX_MS: how far refaults raise it (purge_pace.h) */
    uint32_t register_after_ms; /* HAKMEM_REGISTER_AFTER_MS: a process this young does not register */
    int moves_trap;             /* HAKMEM_MOVES_TRAP: 1/0: a page mremap moved alone traps or not when
                                 * touched; -1 (unset): measured (large.c) */
    char shm_name[64];          /* HAKMEM_SHM */
    char socket_path[108];      /* HAKMEM_SOCKET: where to register ("": not set) */
} hk_options;

extern hk_options hk_opt __attribute__((visibility("hidden")));

/* Reads the environment; safe before main and inside malloc (no allocation).
 * The process-level knobs (knobs.h) take their values from it too. */
void hk_options_load(void);
/* HAKMEM_* variable `name` as a number (any C base, K or M suffix) within
 * lo..hi; fallback when unset, and (with a diagnostic) when invalid. */
long hk_env_long(const char *name, long fallback, long lo, long hi);

/* The daemon's knobs for this binary (enum hkshm_knob; values already
 * validated, hkshm_knob_valid): a knob whose bit is set in `set` takes the
 * published value, every other one goes back to what the environment (or
 * the built-in default) said. */
void hk_options_apply_binary(uint32_t set, const uint32_t knob[HKSHM_KNOBS]);
/* No entry for this binary: every knob back to the environment's value. */
void hk_options_binary_defaults(void);

#endif
