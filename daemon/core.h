/* The daemon core as main() drives it: one interval = collect, learn,
 * publish.  What the control server may call is in core_api.h. */
#ifndef HAKMEMD_CORE_H
#define HAKMEMD_CORE_H

#include <stdint.h>

#include "learner.h"

/* Limits (hakmemd --help says the same).  Sites of root and of the
 * daemon's own user are limited only by the whole daemon's cap. */
#define HKD_MAX_SITES                (1u << 18)  /* sites in memory, every user together */
#define HKD_DEFAULT_SITES_PER_USER   16384u      /* each other user */
#define HKD_DEFAULT_NEW_SITES        1024u       /* new sites each other user may add per interval */
#define HKD_DEFAULT_RETENTION_S      86400u      /* a site no process reports leaves memory after this */
#define HKD_DEFAULT_STATE_MAX        (64u << 20) /* bytes of state file */
#define HKD_STATE_MIN                4096u

typedef struct hkd_core_cfg {
    const char *shm_name;
    const char *socket_path;         /* where clients register (NULL or "": nowhere) */
    uint32_t reader_timeout_ms;      /* 0: HKD_READER_TIMEOUT_MS */
    const char *state_dir;           /* NULL: no persistence */
    uint32_t interval_ms;
    int learning;                    /* 0: collect only, publish nothing */
    hkd_learn_cfg learn;
    double memory_weight_ns;         /* per-binary price of a MiB-second of RSS; < 0: the default */
    uint32_t arm_mask;               /* per-binary arms the learner may run; 0: its default */
    uint32_t settled_report_every;   /* 0: the learner's default (hakmem_shm.h, Sampling) */
    uint32_t daemon_uid;             /* trusted like root (main: geteuid()) */
    /* 0: the defaults above */
    uint32_t max_sites_per_user;
    uint32_t new_sites_per_interval;
    uint32_t retention_s;
    uint64_t state_max_bytes;        /* HKD_STATE_MIN .. HKD_STATE_MAX_BYTES */
    /* For tests: a wall clock (ms since the epoch; NULL: CLOCK_REALTIME). */
    uint64_t (*clock_ms)(void);
} hkd_core_cfg;

#define HKD_READER_TIMEOUT_MS 2000u  /* a table read held longer holds no grace period */

/* The calling thread becomes the learner; it must have called
 * hkd_reader_thread_enter().  Opens/adopts the segment, starts taking
 * registrations and loads state.  On failure hkd_core_init_error() says
 * why in one line (e.g. -EBUSY: another daemon holds the segment's lock). */
int  hkd_core_init(const hkd_core_cfg *cfg);
const char *hkd_core_init_error(void);
/* One interval.  Returns 0 or -errno. */
int  hkd_core_interval(void);
/* Writes the learned state now (atomically) and waits until it is on disk
 * (or failed): 0 or -errno.  The file keeps to state_max_bytes. */
int  hkd_core_save(void);
/* Copies the learned state and returns; a saver thread writes it (same
 * atomic file contract).  A snapshot not yet started when a newer one
 * arrives is dropped for the newer.  0 or -errno (copy failed). */
int  hkd_core_save_async(void);
/* Nanoseconds of the last interval's collect, learn and publish phases. */
void hkd_core_phase_ns(uint64_t out[3]);
/* Logs what the core knows (debug level): processes, sites, arms. */
void hkd_core_log_summary(int max_sites);
/* Saves nothing by itself, but finishes a save in progress or queued;
 * leaves the segment for the clients. */
void hkd_core_shutdown(void);

#endif
