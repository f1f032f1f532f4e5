/* The fleet's controls as a daemon applies them (fleet_controls.c): at
 * each sync the fleet thread reads /hakmem/<fleet>/controls/ (the layout
 * is fleet_control.h's), makes the pins there the core's fleet pins, and
 * applies each reset it has not applied before, once: a reset is its key's
 * revision, and the revisions applied are kept in the state directory
 * (fleet-resets), so a restart does not apply one again.  The fleet
 * thread's; nothing here is called from another thread. */
#ifndef HAKMEMD_FLEET_CONTROLS_H
#define HAKMEMD_FLEET_CONTROLS_H

#include <stdint.h>

#include "core_api.h"
#include "etcd.h"

#define HKD_FLEET_CONTROLS_MAX 4096u       /* control keys read; past them the rest is left out (said once) */

/* Reads the resets already applied from state_dir (NULL: none kept). */
int  hkd_fleet_controls_init(hkd_etcd *e, const char *fleet, const char *state_dir);
/* One sync's reading and applying: 0, or -errno (nothing changed). */
int  hkd_fleet_controls_sync(void);
/* The revision of the newest reset applied that covers key (0: none):
 * another host's value for the site written before it no longer counts. */
int64_t hkd_fleet_controls_reset_revision(const hkd_site_key *key);
void hkd_fleet_controls_free(void);

#endif
