/* Length-prefixed frames on a stream socket, shared by hakmemd's control
 * server and hakmemctl: a 4-byte big-endian length, then the payload.
 * Every call takes a deadline so that a peer that stalls cannot hold the
 * caller forever.  Errors are negative errno values. */
#ifndef HAKMEMD_FRAME_H
#define HAKMEMD_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define HKC_FRAME_MAX (4u << 20)   /* largest payload either side accepts */
#define HKC_PROTOCOL_VERSION 1

/* CLOCK_MONOTONIC in milliseconds: the clock of the deadlines below. */
int64_t hkc_now_ms(void);

/* Sends one frame.  timeout_ms < 0 waits forever. */
int hkc_frame_write(int fd, const uint8_t *buf, size_t len, int timeout_ms);

/* Receives one frame into a malloc'd buffer (*out, caller frees).
 * -ENODATA: the peer closed cleanly before a frame began;
 * -EPROTO: it closed in the middle of one;
 * -EMSGSIZE: the announced length exceeds max (*len holds it, nothing read);
 * -ETIMEDOUT: the whole frame did not arrive within timeout_ms. */
int hkc_frame_read(int fd, uint8_t **out, size_t *len, size_t max, int timeout_ms);

/* The same, and a descriptor passed (SCM_RIGHTS) with the frame's first
 * byte: *passed is it, close-on-exec, the caller's to close; -1 when none
 * came, or more than one (then all of them are closed).  Descriptors sent
 * with any later byte are never installed. */
int hkc_frame_read_fd(int fd, uint8_t **out, size_t *len, size_t max, int timeout_ms, int *passed);

#endif
