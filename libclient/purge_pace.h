/* How long freed memory stays resident before it goes back to the OS.
 *
 * The PURGE_DELAY_MS knob is the floor.  A process that takes back a span
 * it purged less than HAKMEM_PURGE_DELAY_MAX_MS (default 1000) after the
 * span fell idle paid a page fault per OS page for nothing: a delay twice
 * that idle time would have kept it.  The delay rises to that (at most the
 * ceiling) for the whole process, and halves each time 16 delays pass with
 * no such refault, down to the floor.  It stays at the floor, though, while
 * some heap faults in fresh memory it could not trade for resident memory
 * of its own (segment.h): resident free memory held in one thread's heap
 * while another faults raises the peak (threads that hand work to one
 * another, like larson), where in a heap that shrinks and regrows it is
 * used again first.  A floor of 0 (give memory back at once) or a ceiling
 * at or under the floor turns this off.
 *
 * Why a second at most: at the default memory price (hakmemd
 * --memory-weight, 94000 ns of CPU per MiB-second) keeping 1 MiB resident
 * for a second costs 94 us, while faulting it back in costs 256 faults,
 * 64-100 us on bare metal and ~2.5 ms on a VM whose faults cost ~10 us. */
#ifndef HK_PURGE_PACE_H
#define HK_PURGE_PACE_H

#include <stdint.h>

/* The floor: the PURGE_DELAY_MS knob, in ns. */
uint64_t hk_purge_floor_ns(void);
/* The longest the delay in force can be: the ceiling, or the floor when
 * that is higher.  Memory kept for reuse elsewhere (BigCache's cached large
 * blocks) stays resident no longer than this either. */
uint64_t hk_purge_ceiling_ns(void);
/* The delay in force at `now` (CLOCK_MONOTONIC_COARSE ns). */
uint64_t hk_purge_delay_ns(uint64_t now);
/* A span that fell idle at idle_since and was purged is being used again. */
void hk_purge_refaulted(uint64_t now, uint64_t idle_since);

/* A heap faults in slots that no resident memory of its own paid for: for
 * the floor delay from now, the delay in force is the floor. */
void hk_purge_faulting(uint64_t now);
/* The delay back to the floor (the floor itself changed). */
void hk_purge_pace_reset(void);

/* Statistics: the delay in force, in ms, and the refaults that raised it. */
uint32_t hk_purge_delay_current_ms(void);
uint64_t hk_purge_refaults(void);

#endif
