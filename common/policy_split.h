/* Splitting a saved policy (proto/policy.proto) for `hakmemctl import`:
 * a policy of 65,536 sites is some 30 MB, far over one frame, so it goes
 * as parts that are each a complete policy (the header fields, then a run
 * of the sites) and that the daemon merges one after the other.  Works on
 * the wire format at the top level only; what a site holds is the
 * daemon's to judge.  The file is untrusted input: every length is
 * checked. */
#ifndef HAKMEMD_POLICY_SPLIT_H
#define HAKMEMD_POLICY_SPLIT_H

#include <stddef.h>
#include <stdint.h>

/* Takes one part (valid until it returns); last is set on the final one.
 * Returns 0 to go on, anything else to stop (and have it returned). */
typedef int (*hkc_policy_part_fn)(const uint8_t *part, size_t len, int last, void *arg);

/* Calls fn with parts of at most max bytes, in order, all sites in them
 * once.  0; -EBADMSG when buf is not a protobuf message at the top level;
 * -EMSGSIZE when the header and one site do not fit in max; or what fn
 * returned. */
int hkc_policy_split(const uint8_t *buf, size_t len, size_t max, hkc_policy_part_fn fn, void *arg);

#endif
