/* The control server: hakmemctl's peer on a Unix stream socket.
 * Length-prefixed protobuf-c frames (proto/control.proto), SO_PEERCRED
 * authorization, one slow client never stalls the others or the learner.
 * It reads and steers the core only through core_api.h. */
#ifndef HAKMEMD_CTL_SERVER_H
#define HAKMEMD_CTL_SERVER_H

/* Serves on listen_fd when >= 0 (socket activation), else binds path
 * (mode 0660, group hakmem where it exists).  Runs its own thread(s).
 * Returns 0 or -errno. */
int  hkd_ctl_start(const char *path, int listen_fd);
void hkd_ctl_stop(void);

#endif
