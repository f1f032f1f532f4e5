/* hakmemctl's side of the control socket: connect, send a request, read
 * its response (or the parts of a streamed one).  Errors are negative errno
 * values; the caller turns them into one line for a person and an exit
 * code for a script. */
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

/* Takes one response of a streamed answer (freed after it returns); last
 * is set on the final one (Response.more clear, or an error).  Returns 0
 * to go on, anything else to stop there (hkc_call_stream returns it). */
typedef int (*hkc_part_fn)(const Hakmem__Ctl__Response *resp, int last, void *arg);

/* Like hkc_call, but asks for the answer in parts (Request.stream) and
 * hands each to fn as it arrives, so no side holds all of a large answer;
 * the deadline is per part.  A daemon that does not stream answers in one
 * part, which fn sees as the last. */
int hkc_call_stream(int fd, Hakmem__Ctl__Request *rq, hkc_part_fn fn, void *arg, int timeout_ms);

#endif
