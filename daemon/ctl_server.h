/* The control server: hakmemctl's peer on a Unix stream socket.
 * Length-prefixed protobuf-c frames (proto/control.proto), SO_PEERCRED
 * authorization, one slow client never stalls the others or the learner.
 * It reads and steers the core only through core_api.h. */
#ifndef HAKMEMD_CTL_SERVER_H
#define HAKMEMD_CTL_SERVER_H

#include <sys/types.h>

/* Serves on listen_fd when >= 0 (socket activation), else binds path
 * (mode 0660, group hakmem where it exists).  Runs its own thread(s).
 * Returns 0 or -errno. */
int  hkd_ctl_start(const char *path, int listen_fd);
void hkd_ctl_stop(void);

/* Serves one connected socket on the calling thread, through the same
 * dispatch as an accepted connection, as a peer with this uid and primary
 * gid (supplementary groups are not consulted), until the peer closes or
 * misbehaves; then closes fd.  For tests and fuzzing of every request as
 * any kind of peer. */
void hkd_ctl_serve_as(int fd, uid_t uid, gid_t gid);

#endif
