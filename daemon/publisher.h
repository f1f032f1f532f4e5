/* The publisher: writes a new copy of the policy tables (site and binary
 * entries) and flips the active index, never touching a copy a registered
 * client may still be reading (the cross-process grace period described in
 * hakmem_shm.h), unless that reader has held its read past the reader
 * timeout. */
#ifndef HAKMEMD_PUBLISHER_H
#define HAKMEMD_PUBLISHER_H

#include <stdint.h>

#include "hakmem_shm.h"

typedef struct hkd_publication {
    const hkshm_site_policy *sites;      /* sorted by (domain, module_hash, offset) */
    uint32_t n_sites;                    /* <= HKSHM_SITE_CAP */
    const hkshm_binary_policy *binaries; /* sorted by (domain, binary_hash) */
    uint32_t n_binaries;                 /* <= HKSHM_BINARY_CAP */
} hkd_publication;

/* 1 when table copy t may be rewritten at now_ns (CLOCK_MONOTONIC);
 * otherwise 0 and *holder (if not NULL) names the pid of a registration
 * still inside a read that may be of it.  A registration that has shown
 * the same read for longer than the header's reader_timeout_ms (from when
 * the daemon first saw it) holds nothing. */
int hkd_grace_passed(hkshm_header *h, uint32_t t, uint64_t now_ns, int32_t *holder);

/* Publishes p.  0 and the new generation in *gen, or -EAGAIN when the
 * grace period has not passed (try again later), -E2BIG. */
int hkd_publish(hkshm_header *h, const hkd_publication *p, uint64_t now_ns, uint64_t *gen);

#endif
