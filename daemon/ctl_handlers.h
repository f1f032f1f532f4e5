/* The control requests (proto/control.proto) answered on one connection:
 * reads (status, procs, sites, export, metrics, binaries) for the READ
 * role, changes (import, reset, pin, and their per-binary kin) for ADMIN
 * only, each change logged with who made it, and a client's registration
 * of its report region.  Reads that grow with the number of sites are
 * answered in bounded parts (ctl_answer.h), never built whole.  The core
 * is read and steered only through core_api.h, whose readers never block
 * the learner. */
#ifndef HAKMEMD_CTL_HANDLERS_H
#define HAKMEMD_CTL_HANDLERS_H

#include <stdatomic.h>

#include "ctl_conn.h"

/* Reads and answers requests on c, each frame within c->timeout_ms, until
 * the peer closes or misbehaves, a registration takes the connection
 * over, or *stopping is set.  Leaves c->fd open. */
void hkc_serve(hkc_conn *c, const atomic_int *stopping);

#endif
