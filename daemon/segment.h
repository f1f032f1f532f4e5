/* The segment owner: creates, sizes and adopts the shared-memory segment
 * (include/hakmem_shm.h), and knows how to tell a live process from a dead
 * one whose pid was reused. */
#ifndef HAKMEMD_SEGMENT_H
#define HAKMEMD_SEGMENT_H

#include <stdint.h>
#include <sys/types.h>

#include "hakmem_shm.h"

typedef struct hkd_segment {
    hkshm_header *hdr;               /* the mapping (HKSHM_SEGMENT_SIZE bytes) */
    char name[64];
    int adopted;                     /* 1: a previous run's segment was kept */
    char why_recreated[64];          /* when a foreign segment was replaced */
} hkd_segment;

/* Opens `name`: adopts a compatible segment (keeping slots and tables),
 * otherwise creates a new one (mode 0660, group hakmem when it exists).
 * -EBUSY when another live hakmemd owns it. */
int  hkd_segment_open(hkd_segment *seg, const char *name);
/* Marks the daemon gone and unmaps; the segment stays for the clients. */
void hkd_segment_close(hkd_segment *seg);

/* starttime of /proc/<pid>/stat (clock ticks since boot), 0 when gone. */
uint64_t hkd_proc_start_time(pid_t pid);
/* 1 when pid is alive and (start_time == 0 or) started at start_time. */
int  hkd_proc_alive(pid_t pid, uint64_t start_time);
uint64_t hkd_now_ns(void);          /* CLOCK_MONOTONIC */

#endif
