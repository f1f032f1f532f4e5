/* The segment owner: takes the segment name (a lock file), then creates or
 * adopts the daemon's shared-memory segment (include/hakmem_shm.h), which
 * only this daemon writes and its clients map read-only. */
#ifndef HAKMEMD_SEGMENT_H
#define HAKMEMD_SEGMENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hakmem_shm.h"

typedef struct hkd_segment {
    hkshm_header *hdr;               /* the mapping (HKSHM_SEGMENT_SIZE bytes) */
    char name[64];
    char lock_path[96];
    int lock_fd;                     /* holds flock(LOCK_EX) while open */
    int adopted;                     /* 1: a previous run's segment was kept */
    char why_recreated[64];          /* when a segment of ours was replaced */
} hkd_segment;

/* Takes the name's lock, then adopts a compatible segment of ours (the
 * published tables stay) or creates one (mode 0640, group hakmem when it
 * exists), and gives it a new instance.  socket_path ("" : none) and
 * reader_timeout_ms go into the header.  -EBUSY when another daemon holds
 * the lock; -EPERM when the lock file or the segment is not ours or not
 * safe to use; other -errno.  On failure `why` says it in one line. */
int  hkd_segment_open(hkd_segment *seg, const char *name, const char *socket_path, uint32_t reader_timeout_ms,
                      char *why, size_t whylen);
/* Marks the daemon gone, unmaps and lets the lock go; the segment stays
 * for the clients. */
void hkd_segment_close(hkd_segment *seg);

uint64_t hkd_now_ns(void);          /* CLOCK_MONOTONIC */

#endif
