/* The process's report region (include/hakmem_shm.h, hkshm_region): a
 * sealed memfd this process creates, writes alone, and hands to the daemon
 * at registration.  The box keeps the mapping, the descriptor until the
 * daemon holds its own, and the process-wide counters the region reports.
 *
 * Region index i is the i-th site this process reported (assigned at its
 * first flush and never reused), so a key never changes at an index; a
 * fork child and every re-registration keep the same assignment.
 *
 * Runs inside malloc's slow path (and in fork children): system calls and
 * static storage only, nothing that allocates or locks. */
#ifndef HK_REGION_H
#define HK_REGION_H

#include "hakmem_shm.h"

#include <stdint.h>

/* Once, at start-up: the clock the wall time and the RSS integral start from. */
void hk_region_init(void);
/* A fresh region (memfd, sized, mapped, identity written, sealed) whose
 * `registration` is n; the previous one, if any, is dropped first.
 * 0 or -errno. */
int hk_region_create(uint32_t registration);
/* The mapping (NULL: none) and the descriptor (-1 once released). */
hkshm_region *hk_region_get(void);
int hk_region_fd(void);
/* The daemon holds its own reference now: close ours, keep the mapping. */
void hk_region_release_fd(void);
/* Writes the counters under seq; `exiting` marks the final flush. */
void hk_region_flush(int exiting);
/* What policy reading applied, reported at the next flush. */
void hk_region_set_site_arm(uint32_t site, uint32_t arm);
void hk_region_set_applied(uint32_t sites_applied, uint32_t binary_arm);
/* Time spent taking part so far (the shm client's steps), reported as
 * proc[HKSHM_PROC_PLANE_NS] from the next flush on. */
void hk_region_note_plane_ns(uint64_t ns);
/* What registering was for (hakmem_shm.h, Sampling): the plane's CPU ns
 * before it, and the runs this one stands for. */
void hk_region_note_sampling(uint64_t attach_ns, uint32_t report_every);
/* The daemon's arm for this binary now in force (HKSHM_NO_ARM: none). */
uint32_t hk_region_binary_arm(void);
/* In the fork child: the parent's region is the parent's (shared memory):
 * unmap it, close its descriptor if still ours, restart the counters. */
void hk_region_fork_child(void);

#endif
