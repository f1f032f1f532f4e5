/* The client's side of the shared-memory plane (include/hakmem_shm.h).
 *
 * Claims a process slot on first use, flushes per-site counters and a
 * heartbeat from the allocator's slow path, and applies the thresholds the
 * daemon publishes.  Without a daemon, or with a segment it does not
 * understand, every call is a cheap no-op and the allocator runs on its
 * defaults.  Never blocks, never takes a lock the daemon holds. */
#ifndef HK_SHM_CLIENT_H
#define HK_SHM_CLIENT_H

#include <stdint.h>

/* Once, after the allocator is initialised (from its constructor). */
void hk_shm_client_init(void);
/* From the allocator's slow path; rate-limits itself (cheap when called
 * often).  now_ns: CLOCK_MONOTONIC. */
void hk_shm_client_tick(uint64_t now_ns);
/* New call sites were registered: apply their published policies now
 * rather than at the next scheduled check. */
void hk_shm_client_sites_added(uint64_t now_ns);
/* In the child after fork(): takes its own slot. */
void hk_shm_client_after_fork_child(void);
/* At process exit: last flush, releases the slot. */
void hk_shm_client_exit(void);
/* For the exit report: "attached to /hakmem, generation 12, 3 sites applied"
 * or why not. */
void hk_shm_client_describe(char *buf, int len);

#endif
