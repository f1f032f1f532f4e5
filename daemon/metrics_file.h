/* --metrics-file: the exposition (metrics.h) written to a file for
 * node_exporter's textfile collector, replaced atomically (atomic_file.h)
 * and made world-readable, so the collector never reads half a file.
 *
 * At 65,536 sites a write takes seconds, so it runs on its own thread:
 * the main loop only hands it a trigger and never waits, and a trigger
 * that comes while a write is still running is skipped and counted.  One
 * warning is logged when writing starts failing and one line when it
 * works again. */
#ifndef HAKMEMD_METRICS_FILE_H
#define HAKMEMD_METRICS_FILE_H

#include <stdint.h>

/* Writes the exposition to path now, on the calling thread.  0 or -errno. */
int  hkd_metrics_write_file(const char *path);

/* Starts the writer thread for path (also removing temp files a killed
 * writer left there).  0 or -errno. */
int  hkd_metrics_file_start(const char *path);
/* Asks for a write; returns at once.  Skipped (and counted) while the
 * previous write still runs.  A no-op when no writer was started. */
void hkd_metrics_file_trigger(void);
/* Ends the thread; a write in progress is abandoned (the file keeps its
 * last complete contents). */
void hkd_metrics_file_stop(void);

typedef struct hkd_metrics_file_stats {
    uint64_t written, failed, skipped;
    uint64_t last_ns;                  /* duration of the last completed write */
} hkd_metrics_file_stats;

/* 0 with the counts, or -ENOENT when no writer runs. */
int  hkd_metrics_file_get_stats(hkd_metrics_file_stats *out);

#endif
