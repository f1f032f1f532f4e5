/* Registration of the report region with the daemon over its control
 * socket (proto/control.proto: RegisterRequest / Registered), encoded and
 * decoded by hand: this runs inside malloc, so it allocates nothing, and
 * protobuf-c is not linked into the allocator.
 *
 * The request frame: 4-byte big-endian length, then
 * Request{version = 1, register_client = {abi_version, region_size}}, sent
 * in one sendmsg with the region's descriptor as SCM_RIGHTS.  The reply is
 * one frame of at most HK_REG_REPLY_MAX bytes, read until a deadline; a
 * Response carrying `registered` is success, `error` is a refusal, anything
 * else (garbage, a frame too long, a short one, silence) is a failure.
 * On success the connection stays open: its closing tells each side the
 * other is gone. */
#ifndef HK_REGISTRATION_H
#define HK_REGISTRATION_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HK_REG_REPLY_MAX   4096u    /* bytes of a reply frame's payload */
#define HK_REG_TEXT_MAX    96       /* of a refusal's text kept */
#define HK_REG_REQUEST_MAX 32u      /* bytes of the request frame */

typedef struct hk_reg_reply {
    uint64_t instance;              /* Registered.instance */
    uint32_t error_code;            /* Error.code of a refusal */
    char error_text[HK_REG_TEXT_MAX]; /* Error.text of a refusal, NUL-terminated, unescaped */
} hk_reg_reply;

/* The daemon's end of a registration, proved ours before any use: a
 * program may close every descriptor and reuse the number. */
typedef struct hk_conn {
    int fd;                         /* -1: none */
    dev_t dev;
    ino_t ino;
} hk_conn;

/* The two halves of a registration, so that a process never waits for the
 * daemon: send connects to `path` and sends the request with `region_fd`
 * (0 with *conn open, or the connect's or send's -errno and no
 * connection); poll takes the reply if it has arrived whole: 0 registered,
 * -EAGAIN not yet, and otherwise as hk_register says. */
int hk_register_send(const char *path, int region_fd, uint32_t region_size, hk_conn *conn);
/* send's halves: connect leaves *conn open (0) or none (-errno); request
 * sends on it, and closes it if that fails (-errno).  A process connects
 * before it makes anything to send, so that with no daemon it holds
 * nothing. */
int hk_register_connect(const char *path, hk_conn *conn);
int hk_register_request(hk_conn *conn, int region_fd, uint32_t region_size);
int hk_register_poll(hk_conn *conn, hk_reg_reply *reply);

/* Both, waiting for the reply until deadline_ns (CLOCK_MONOTONIC).  0 with *conn open on
 * success; else -errno and no connection: the connect's own error when
 * nothing was sent; -EREMOTEIO: refused (reply->error_*); -ETIMEDOUT: no
 * whole reply in time; -ECONNRESET: closed without one; -EPROTO: a reply
 * that is not one.  *sent says whether the request went out. */
int hk_register(const char *path, int region_fd, uint32_t region_size, uint64_t deadline_ns,
                hk_conn *conn, hk_reg_reply *reply, int *sent);

/* The request frame in buf (length prefix included); its size. */
size_t hk_reg_encode_request(uint8_t *buf, size_t cap, uint32_t region_size);
/* A reply frame's payload: 0 registered, -EREMOTEIO refused, -EPROTO not a
 * reply.  Lengths are bounded, unknown fields skipped. */
int hk_reg_decode_reply(const uint8_t *p, size_t n, hk_reg_reply *out);

/* 1 when conn->fd is still the socket we connected. */
int hk_conn_is_ours(const hk_conn *conn);
/* 1 while the daemon's end is open (checked without blocking or reading);
 * 0 when it closed, failed, or the descriptor is no longer ours. */
int hk_conn_alive(const hk_conn *conn);
/* The uid behind the connection (SO_PEERCRED); -1 when unknown. */
int64_t hk_conn_peer_uid(const hk_conn *conn);
/* Closes it if it is ours; forgets it either way. */
void hk_conn_close(hk_conn *conn);

#endif
