/* The control server's answer to FleetRequest (proto/control.proto): the
 * fleet link's status, its endpoints and the other hosts (fleet.h). */
#ifndef HAKMEMD_CTL_FLEET_H
#define HAKMEMD_CTL_FLEET_H

#include "ctl_answer.h"

int hkc_answer_fleet(const hkc_out *o);

#endif
