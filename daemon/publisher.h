/* The publisher: writes a new copy of the thresholds table and flips the
 * active index, never touching a copy a live client may still be reading
 * (the cross-process grace period described in hakmem_shm.h). */
#ifndef HAKMEMD_PUBLISHER_H
#define HAKMEMD_PUBLISHER_H

#include <stdint.h>

#include "hakmem_shm.h"

/* 1 when table copy t may be rewritten; otherwise 0 and *holder (if not
 * NULL) names a live pid still inside a read of an older generation. */
int hkd_grace_passed(hkshm_header *h, uint32_t t, uint32_t *holder);

/* Publishes n entries (sorted by key, n <= HKSHM_TABLE_CAP).  0 and the new
 * generation in *gen, or -EAGAIN when the grace period has not passed (try
 * again next interval), -E2BIG. */
int hkd_publish(hkshm_header *h, const hkshm_policy *entries, uint32_t n, uint64_t *gen);

#endif
