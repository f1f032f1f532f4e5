/* Who may use the control socket, and for what.
 *
 * Roles, from the peer's credentials (SO_PEERCRED, and SO_PEERGROUPS for
 * supplementary groups): root and the daemon's own user may do everything;
 * members of group "hakmem" may read, and register their report regions;
 * anyone else nothing.
 *
 * Connections: at most 64 at a time, of which 8 only root and the daemon's
 * user may take, and at most 8 (HAKMEMD_CTL_CONNS_PER_UID) from any one uid
 * but root's, so one group member's keep-alive clients lock out neither
 * root nor the other members.
 *
 * Refusals are logged, but never as a flood: refused connections at most
 * once a second, refused registrations at most once a minute per uid (a
 * client retries them). */
#ifndef HAKMEMD_CTL_ACCESS_H
#define HAKMEMD_CTL_ACCESS_H

#include <stddef.h>
#include <sys/types.h>

#include "ctl_conn.h"

#define HKC_GROUP "hakmem"

/* Reads the daemon's user, the group and the per-uid share from the
 * environment and the group database.  1 when the group exists (*group
 * is its gid), else 0. */
int hkc_access_load(gid_t *group);

/* From the peer's uid and primary gid alone. */
hkc_role hkc_role_of_cred(const struct ucred *cred);
/* Of the peer on fd, whose credentials land in *cred. */
hkc_role hkc_role_of(int fd, struct ucred *cred);

/* NULL when c may join the n open connections listed from open, else why
 * not (written to why).  The caller holds the lock that guards the list. */
const char *hkc_admit(const hkc_conn *c, const hkc_conn *open, int n, char *why, size_t cap);

/* Logs that c was refused a connection for why; called from one thread. */
void hkc_log_refused_conn(const hkc_conn *c, const char *why);

/* 1 when a refused registration of uid may be logged now (then not again
 * for a minute). */
int hkc_refusal_log_due(uid_t uid);

#endif
