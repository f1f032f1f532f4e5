/* The other hosts of a fleet (fleet_peers.c): at each sync, which shards
 * they hold and what the changed ones say, summed per site (each host
 * once) and handed to the core as priors (core_fleet.h).  The fleet
 * thread's; hkd_fleet_peers_status may be called from any thread. */
#ifndef HAKMEMD_FLEET_PEERS_H
#define HAKMEMD_FLEET_PEERS_H

#include <stddef.h>

#include "etcd.h"
#include "fleet.h"
#include "fleet_codec.h"

/* Reads the keys under prefix (/hakmem/<fleet>/hosts/) through e, leaving
 * out own_id's. */
int  hkd_fleet_peers_init(hkd_etcd *e, const char *prefix, const char *own_id);
/* One sync's reading; the sums go to the core when anything changed, or
 * when the core's records did.  0 or -errno (the sums stay as they were). */
int  hkd_fleet_peers_sync(void);
/* hosts, sites_shared, sites_disagree and values_rejected into st; with
 * hosts, a copy of the hosts' list. */
int  hkd_fleet_peers_status(hkd_fleet_status *st, hkd_fleet_host **hosts, size_t *n);
/* This host's sites as it last wrote them (the arm each runs), so that
 * the sites where the hosts disagree count this one too. */
int  hkd_fleet_peers_own(const hkd_fleet_site *v, size_t n);
/* The sums are made again at the next sync (a reset changed what counts). */
void hkd_fleet_peers_resum(void);
void hkd_fleet_peers_free(void);

#endif
