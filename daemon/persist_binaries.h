/* The per-binary learner's state in a policy (proto/policy.proto,
 * BinaryState, field 20 of Policy): encoded as a run of Policy fields that
 * can be appended to any encoded Policy, and decoded one field at a time
 * by persist.c's decoder.  Everything read is checked: arms are matched
 * by name, counts and means must be finite. */
#ifndef HAKMEMD_PERSIST_BINARIES_H
#define HAKMEMD_PERSIST_BINARIES_H

#include <stddef.h>
#include <stdint.h>

#include "binaries.h"
#include "policy.pb-c.h"

/* v as a protobuf varint at p (at most 10 bytes); returns its length. */
size_t hkd_put_varint(uint8_t *p, uint64_t v);
/* Policy field 20 entries for v[0..n): *out malloc'd (NULL and 0 when n is 0). */
int hkd_binaries_encode(const hkd_binary_state *v, size_t n, uint8_t **out, size_t *len);
/* One decoded BinaryState into *out: 0, or -EBADMSG when it holds nothing
 * usable (no hash, counts that are not numbers). */
int hkd_binary_state_of_msg(const Hakmem__Policy__BinaryState *m, hkd_binary_state *out);

#endif
