/* The saver: a thread that encodes snapshots of the learned state and
 * writes them to the state file, so a save never stretches an interval.
 *
 * Whoever saves fills a snapshot (copying under its own lock) and hands it
 * over with a ticket; a newer snapshot waiting replaces an older one not
 * yet started, and one thread writes, so the file never goes back in time.
 * The file is held to its cap by keeping the worthiest sites (persist.h):
 * a save never fails for size. */
#ifndef HAKMEMD_SAVER_H
#define HAKMEMD_SAVER_H

#include <stddef.h>
#include <stdint.h>

#include "persist.h"

typedef struct hkd_snapshot {
    hkd_site_state  *sites;
    size_t           n, cap;
    hkd_module_name *mods;
    size_t           n_mods, cap_mods;
    uint64_t         generation;
    struct hkd_binary_state *binaries;   /* malloc'd; the per-binary learners */
    size_t           n_binaries;
} hkd_snapshot;

/* Room for n sites and n_mods module names; 0 or -ENOMEM. */
int  hkd_snapshot_reserve(hkd_snapshot *s, size_t n, size_t n_mods);
void hkd_snapshot_free(hkd_snapshot *s);

/* The state directory and the largest state file (bytes, header included). */
void hkd_saver_config(const char *dir, size_t max_file_bytes);
/* A snapshot to fill (emptied): the buffers of one already written when
 * there is one.  NULL: no memory. */
hkd_snapshot *hkd_saver_snapshot(void);
/* Hands s to the saver thread (started on first use); *ticket names it.
 * 0 or -errno (s is freed then). */
int  hkd_saver_submit(hkd_snapshot *s, uint64_t *ticket);
/* Waits until the snapshot with that ticket (or a newer one) is on disk or
 * failed: 0 or -errno. */
int  hkd_saver_wait(uint64_t ticket);
/* Writes what is pending, then ends the thread. */
void hkd_saver_stop(void);

#endif
