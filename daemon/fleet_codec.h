/* What one host tells its fleet about the sites it learned: the value of
 * one of its etcd keys (a shard of its sites), and reading the values
 * other hosts wrote.
 *
 * A value is little-endian bytes:
 *   "HKF1" u16 shard u16 shards u32 n_sites u64 written_unix, then n_sites
 *   times: u32 domain u64 module_hash u64 offset u8 flags (bit 0: sizes
 *   known) u8 size_lo u8 size_hi i8 arm f64 ref_cost u8 arm_mask, then for
 *   each arm in arm_mask, lowest first: u32 pulls f64 reward_sum.
 * Arms without pulls are left out, so a site takes 33 bytes plus 12 per
 * arm it pulled.  Every value comes from another host and is checked
 * whole before any of it is used: decode takes all of it or none. */
#ifndef HAKMEMD_FLEET_CODEC_H
#define HAKMEMD_FLEET_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "core_api.h"
#include "learner.h"

#define HKD_FLEET_HEADER_BYTES 20u
#define HKD_FLEET_SITE_MIN_BYTES 33u
#define HKD_FLEET_ARM_BYTES 12u
#define HKD_FLEET_SITE_MAX_BYTES (HKD_FLEET_SITE_MIN_BYTES + HKD_N_ARMS * HKD_FLEET_ARM_BYTES)
#define HKD_FLEET_VALUE_MAX (1u << 20)     /* a value's bytes: a put stays well under etcd's 1.5 MiB request */
#define HKD_FLEET_PULLS_MAX (1u << 30)     /* an arm's pulls on one host (a window keeps them far lower) */

/* One site as a host learned it: its own pulls and reward sums, never
 * what it took from the fleet. */
typedef struct hkd_fleet_site {
    hkd_site_key key;
    uint8_t  sizes_known, size_lo, size_hi;
    int8_t   arm;                        /* the arm the host runs for it */
    double   ref_cost;                   /* ns per allocation that scores 0.5 (0: unknown) */
    uint32_t pulls[HKD_N_ARMS];
    double   reward_sum[HKD_N_ARMS];
} hkd_fleet_site;

typedef struct hkd_fleet_header {
    uint16_t shard, shards;
    uint32_t n_sites;
    uint64_t written_unix;
} hkd_fleet_header;

/* Bytes site s takes in a value. */
size_t hkd_fleet_site_bytes(const hkd_fleet_site *s);
/* Writes the header and sites into buf (cap bytes): the length, or
 * -ENOSPC when they do not fit. */
long hkd_fleet_encode(const hkd_fleet_header *h, const hkd_fleet_site *sites, size_t n, uint8_t *buf, size_t cap);
/* Checks and decodes a value: the header, and the sites into *out
 * (malloc'd, at most len / HKD_FLEET_SITE_MIN_BYTES of them; NULL when
 * none).  0, or -EBADMSG with why (one phrase) in why. */
int  hkd_fleet_decode(const uint8_t *buf, size_t len, hkd_fleet_header *h, hkd_fleet_site **out, char *why,
                      size_t whylen);

#endif
