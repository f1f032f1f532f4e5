/* The core's side of a fleet (core_fleet.c): what this host learned, for
 * the fleet thread to write, and what the other hosts learned, kept per
 * record as a prior (learner.h: hkd_prior) beside the record's own
 * learner, never mixed into it.
 *
 * The priors live in chunks of their own, indexed by a record's creation
 * slot and made only when a fleet sends one, so a daemon without a fleet
 * carries a table of NULL pointers and nothing else.  A prior is written
 * under g.lock (hkd_fleet_apply) and its slot is cleared when its record
 * is evicted; the learn pass reads it under g.lock, readers of sites
 * through its own seq. */
#ifndef HAKMEMD_CORE_FLEET_H
#define HAKMEMD_CORE_FLEET_H

#include <stddef.h>
#include <stdint.h>

#include "core_api.h"
#include "fleet_codec.h"
#include "learner.h"

/* What the fleet's other hosts learned of one site, added up. */
typedef struct hkd_fleet_sum {
    hkd_site_key key;
    hkd_prior prior;
    uint8_t sizes_known, size_lo, size_hi;
    double ref_cost;                 /* of the host with the most pulls (0: none knew) */
    uint32_t hosts;
} hkd_fleet_sum;

/* This host's learned sites (own pulls only): *out malloc'd, *n of them. */
int hkd_fleet_snapshot(hkd_fleet_site **out, size_t *n);
/* Replaces every prior with v[0..n): sites the host does not know yet get
 * a record (as an import would: a user's limits still apply; only users
 * who have sites here, and root and the daemon's user), so that the
 * first process to run them already reads the fleet's arm; a site no
 * pull of this host has begun takes the fleet's choice now.  Sites no
 * longer in v lose their prior.  How many records it made, or -errno. */
int hkd_fleet_apply(const hkd_fleet_sum *v, size_t n);
/* A site the fleet pins (fleet_control.h), as the core takes it. */
typedef struct hkd_fleet_pin {
    hkd_site_key key;
    int arm;
} hkd_fleet_pin;

/* Makes v[0..n) the fleet's pins: each site runs its arm whatever it
 * learned (a site this host does not know yet gets a record, for the same
 * users as hkd_fleet_apply), and a site the fleet pinned before that is
 * not in v learns again.  How many sites changed, or -errno. */
int hkd_fleet_pins(const hkd_fleet_pin *v, size_t n);
/* A fleet reset: forgets what this host learned of the site (every site
 * when key is NULL) and what the fleet told it. */
void hkd_fleet_reset(const hkd_site_key *key);
/* Pulls of a site from the fleet, per arm, as readers see them. */
int hkd_fleet_read_prior(uint32_t idx, const hkd_site_key *key, hkd_prior *out);

#endif
