/* The daemon core as main() drives it: one interval = collect, learn,
 * publish.  What the control server may call is in core_api.h. */
#ifndef HAKMEMD_CORE_H
#define HAKMEMD_CORE_H

#include <stdint.h>

#include "learner.h"

typedef struct hkd_core_cfg {
    const char *shm_name;
    const char *socket_path;         /* where clients register (NULL or "": nowhere) */
    uint32_t reader_timeout_ms;      /* 0: HKD_READER_TIMEOUT_MS */
    const char *state_dir;           /* NULL: no persistence */
    uint32_t interval_ms;
    int learning;                    /* 0: collect only, publish nothing */
    hkd_learn_cfg learn;
    double memory_weight_ns;         /* per-binary price of a MiB-second of RSS; < 0: the default */
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
 * (or failed): 0 or -errno. */
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
