/* hakmemctl's side of the control socket: connect, send one request, read
 * one response.  Errors are negative errno values; the caller turns them
 * into one line for a person and an exit code for a script. */
#ifndef HAKMEMD_CTL_CLIENT_H
#define HAKMEMD_CTL_CLIENT_H

#include "control.pb-c.h"

/* A connected socket, or -errno (-ENOENT / -ECONNREFUSED: no daemon;
 * -EACCES: the socket's permissions shut the caller out). */
int hkc_connect(const char *path, int timeout_ms);

/* Fills rq->version, sends rq, and returns the unpacked response in *out
 * (free with hakmem__ctl__response__free_unpacked).  -EPIPE / -ENODATA /
 * -ECONNRESET: the daemon closed the connection; -ETIMEDOUT; -EBADMSG: the
 * answer does not parse. */
int hkc_call(int fd, Hakmem__Ctl__Request *rq, Hakmem__Ctl__Response **out, int timeout_ms);

#endif
