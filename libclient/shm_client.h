/* The client's side of the daemon plane (include/hakmem_shm.h).
 *
 * Registers a report region of its own with the daemon over the control
 * socket, flushes per-site and per-process counters into it from the
 * allocator's slow path, and applies what the daemon publishes in its
 * segment (mapped read-only): per-site thresholds and this binary's knobs.
 * Without a daemon, or with a segment it does not trust or understand,
 * every call is a cheap no-op and the allocator runs on its defaults.
 * Never waits on a lock; a registration waits at most 200 ms for its reply.
 * Safe in a fork child: never enters the dynamic loader. */
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
/* In the child after fork(): lets go of the parent's region and connection;
 * the child registers its own at its next tick. */
void hk_shm_client_after_fork_child(void);
/* At process exit: the last flush (marked exited). */
void hk_shm_client_exit(void);
/* For the exit report: "registered with /run/hakmem/ctl.sock (registration 1);
 * segment /hakmem, generation 12, 3 sites applied" or why not.  Both whys
 * at their longest fit in HK_SHM_DESCRIBE_MAX bytes. */
#define HK_SHM_DESCRIBE_MAX 352
void hk_shm_client_describe(char *buf, int len);
/* What taking part has cost so far: steps taken (registration, flushes,
 * policy reads) and nanoseconds spent in them. */
void hk_shm_client_cost(uint64_t *steps, uint64_t *ns);

#endif
