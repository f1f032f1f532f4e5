/* Registration box (registration.h). */
#include "registration.h"
#include "os.h"
#include "hakmem_shm.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define PROTOCOL_VERSION      1u
/* Field numbers of proto/control.proto. */
#define REQUEST_VERSION       1u
#define REQUEST_REGISTER      18u
#define REGISTER_ABI_VERSION  1u
#define REGISTER_REGION_SIZE  2u
#define RESPONSE_ERROR        2u
#define RESPONSE_REGISTERED   16u
#define ERROR_CODE            1u
#define ERROR_TEXT            2u
#define REGISTERED_INSTANCE   1u

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LEN = 2, WIRE_FIXED32 = 5 };

/* ---- encoding ---- */

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static size_t put_tag(uint8_t *p, uint32_t field, uint32_t wire)
{
    return put_varint(p, (uint64_t)field << 3 | wire);
}

size_t hk_reg_encode_request(uint8_t *buf, size_t cap, uint32_t region_size)
{
    uint8_t inner[24], body[HK_REG_REQUEST_MAX];
    size_t ni = 0, nb = 0;
    ni += put_tag(inner + ni, REGISTER_ABI_VERSION, WIRE_VARINT);
    ni += put_varint(inner + ni, HKSHM_ABI_VERSION);
    ni += put_tag(inner + ni, REGISTER_REGION_SIZE, WIRE_VARINT);
    ni += put_varint(inner + ni, region_size);
    nb += put_tag(body + nb, REQUEST_VERSION, WIRE_VARINT);
    nb += put_varint(body + nb, PROTOCOL_VERSION);
    nb += put_tag(body + nb, REQUEST_REGISTER, WIRE_LEN);
    nb += put_varint(body + nb, ni);
    memcpy(body + nb, inner, ni);
    nb += ni;
    if (cap < 4 + nb)
        return 0;
    buf[0] = (uint8_t)(nb >> 24);
    buf[1] = (uint8_t)(nb >> 16);
    buf[2] = (uint8_t)(nb >> 8);
    buf[3] = (uint8_t)nb;
    memcpy(buf + 4, body, nb);
    return 4 + nb;
}

/* ---- decoding: every length checked against what is left ---- */

typedef struct reader {
    const uint8_t *p, *end;
} reader;

static int get_varint(reader *r, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end)
            return -1;
        uint8_t b = *r->p++;
        if (shift == 63 && b > 1)
            return -1;              /* more than 64 bits */
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* The next field: its number, wire type, and (for WIRE_LEN) its bytes as a
 * sub-reader, or (for WIRE_VARINT) its value; fixed-size ones are skipped. */
static int next_field(reader *r, uint32_t *field, uint32_t *wire, uint64_t *value, reader *sub)
{
    uint64_t tag;
    if (get_varint(r, &tag) < 0 || (tag >> 3) == 0 || (tag >> 3) > 0x1FFFFFFFu)
        return -1;
    *field = (uint32_t)(tag >> 3);
    *wire = (uint32_t)(tag & 7);
    uint64_t len;
    switch (*wire) {
    case WIRE_VARINT:
        return get_varint(r, value);
    case WIRE_FIXED64:
    case WIRE_FIXED32:
        len = *wire == WIRE_FIXED64 ? 8 : 4;
        if ((uint64_t)(r->end - r->p) < len)
            return -1;
        r->p += len;
        return 0;
    case WIRE_LEN:
        if (get_varint(r, &len) < 0 || len > (uint64_t)(r->end - r->p))
            return -1;
        sub->p = r->p;
        sub->end = r->p + len;
        r->p += len;
        return 0;
    default:
        return -1;                  /* groups and unknown wire types */
    }
}

/* Walks a sub-message, handing each field to `take`; -1 when malformed. */
static int walk(reader r, void (*take)(uint32_t field, uint32_t wire, uint64_t v, reader sub, hk_reg_reply *out),
                hk_reg_reply *out)
{
    uint32_t field, wire;
    uint64_t v = 0;
    reader sub = { r.p, r.p };
    while (r.p < r.end) {
        if (next_field(&r, &field, &wire, &v, &sub) < 0)
            return -1;
        take(field, wire, v, sub, out);
    }
    return 0;
}

static void take_error(uint32_t field, uint32_t wire, uint64_t v, reader sub, hk_reg_reply *out)
{
    if (field == ERROR_CODE && wire == WIRE_VARINT) {
        out->error_code = (uint32_t)v;
    } else if (field == ERROR_TEXT && wire == WIRE_LEN) {
        size_t n = (size_t)(sub.end - sub.p);
        if (n > sizeof out->error_text - 1)
            n = sizeof out->error_text - 1;
        memcpy(out->error_text, sub.p, n);
        out->error_text[n] = 0;
    }
}

static void take_registered(uint32_t field, uint32_t wire, uint64_t v, reader sub, hk_reg_reply *out)
{
    (void)sub;
    if (field == REGISTERED_INSTANCE && wire == WIRE_VARINT)
        out->instance = v;
}

int hk_reg_decode_reply(const uint8_t *p, size_t n, hk_reg_reply *out)
{
    memset(out, 0, sizeof *out);
    reader r = { p, p + n };
    int registered = 0, refused = 0;
    uint32_t field, wire;
    uint64_t v = 0;
    reader sub;
    while (r.p < r.end) {
        if (next_field(&r, &field, &wire, &v, &sub) < 0)
            return -EPROTO;
        if (field == RESPONSE_ERROR && wire == WIRE_LEN) {
            if (walk(sub, take_error, out) < 0)
                return -EPROTO;
            refused = 1;
        } else if (field == RESPONSE_REGISTERED && wire == WIRE_LEN) {
            if (walk(sub, take_registered, out) < 0)
                return -EPROTO;
            registered = 1;
        } else if (field == RESPONSE_ERROR || field == RESPONSE_REGISTERED) {
            return -EPROTO;         /* a known field of the wrong type */
        }
    }
    if (refused)
        return -EREMOTEIO;
    return registered ? 0 : -EPROTO;
}

/* ---- the socket ---- */


/* Waits until fd is readable or the deadline passes: 0 readable, -ETIMEDOUT. */
static int wait_readable(int fd, uint64_t deadline_ns)
{
    for (;;) {
        uint64_t now = hk_now_ns();
        if (now >= deadline_ns)
            return -ETIMEDOUT;
        uint64_t left_ms = (deadline_ns - now + 999999) / 1000000;
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int n = poll(&pfd, 1, (int)(left_ms > 1000 ? 1000 : left_ms));
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

static int send_request(int fd, int region_fd, uint32_t region_size)
{
    uint8_t frame[HK_REG_REQUEST_MAX + 4];
    size_t n = hk_reg_encode_request(frame, sizeof frame, region_size);
    struct iovec iov = { .iov_base = frame, .iov_len = n };
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                          .msg_controllen = sizeof control.buf };
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &region_fd, sizeof(int));
    ssize_t w;
    do
        w = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (w < 0 && errno == EINTR);
    if (w < 0)
        return -errno;
    return (size_t)w == n ? 0 : -EMSGSIZE;
}

int hk_register_connect(const char *path, hk_conn *conn)
{
    conn->fd = -1;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, len + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int rc;
    do
        rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    while (rc < 0 && errno == EINTR);
    if (rc < 0)
        rc = -errno;                /* EAGAIN: the daemon's backlog is full */
    struct stat st;
    if (rc == 0 && fstat(fd, &st) < 0)
        rc = -errno;
    if (rc < 0) {
        close(fd);
        return rc;
    }
    conn->fd = fd;
    conn->dev = st.st_dev;
    conn->ino = st.st_ino;
    return 0;
}

int hk_register_request(hk_conn *conn, int region_fd, uint32_t region_size)
{
    int rc = hk_conn_is_ours(conn) ? send_request(conn->fd, region_fd, region_size) : -EBADF;
    if (rc < 0)
        hk_conn_close(conn);
    return rc;
}

int hk_register_send(const char *path, int region_fd, uint32_t region_size, hk_conn *conn)
{
    int rc = hk_register_connect(path, conn);
    return rc < 0 ? rc : hk_register_request(conn, region_fd, region_size);
}

/* 1 when the daemon has closed its end (what it sent may still be unread). */
static int peer_closed(int fd)
{
    struct pollfd pfd = { .fd = fd, .events = POLLRDHUP };
    return poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

int hk_register_poll(hk_conn *conn, hk_reg_reply *reply)
{
    memset(reply, 0, sizeof *reply);
    if (!hk_conn_is_ours(conn))
        return -EBADF;
    /* Callers are serialised (shm_client's try-lock). */
    static uint8_t frame[4 + HK_REG_REPLY_MAX];
    ssize_t got;
    do
        got = recv(conn->fd, frame, 4, MSG_PEEK | MSG_DONTWAIT);
    while (got < 0 && errno == EINTR);
    if (got == 0)
        return -ECONNRESET;
    if (got < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
    if (got < 4) {
        return peer_closed(conn->fd) ? -ECONNRESET : -EAGAIN;
    }
    uint32_t n = (uint32_t)frame[0] << 24 | (uint32_t)frame[1] << 16 | (uint32_t)frame[2] << 8 | frame[3];
    if (n > HK_REG_REPLY_MAX)
        return -EPROTO;
    do
        got = recv(conn->fd, frame, 4 + n, MSG_PEEK | MSG_DONTWAIT);
    while (got < 0 && errno == EINTR);
    if (got < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
    if ((size_t)got < 4 + n) {
        /* The rest is on its way, unless the daemon has closed its end. */
        return peer_closed(conn->fd) ? -ECONNRESET : -EAGAIN;
    }
    do
        got = recv(conn->fd, frame, 4 + n, MSG_DONTWAIT);
    while (got < 0 && errno == EINTR);
    if (got != (ssize_t)(4 + n))
        return -EPROTO;
    return hk_reg_decode_reply(frame + 4, n, reply);
}

int hk_register(const char *path, int region_fd, uint32_t region_size, uint64_t deadline_ns,
                hk_conn *conn, hk_reg_reply *reply, int *sent)
{
    memset(reply, 0, sizeof *reply);
    *sent = 0;
    int rc = hk_register_send(path, region_fd, region_size, conn);
    if (rc < 0)
        return rc;
    *sent = 1;
    while ((rc = hk_register_poll(conn, reply)) == -EAGAIN) {
        int w = wait_readable(conn->fd, deadline_ns);
        if (w < 0) {
            rc = w;
            break;
        }
    }
    if (rc < 0)
        hk_conn_close(conn);
    return rc;
}

int hk_conn_is_ours(const hk_conn *conn)
{
    struct stat st;
    return conn->fd >= 0 && fstat(conn->fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == conn->dev &&
           st.st_ino == conn->ino;
}

int hk_conn_alive(const hk_conn *conn)
{
    if (!hk_conn_is_ours(conn))
        return 0;
    char c;
    ssize_t n = recv(conn->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0)
        return 1;                   /* bytes the daemon was not meant to send: left alone */
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
}

int64_t hk_conn_peer_uid(const hk_conn *conn)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (!hk_conn_is_ours(conn) || getsockopt(conn->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return -1;
    return (int64_t)cred.uid;
}

void hk_conn_close(hk_conn *conn)
{
    if (hk_conn_is_ours(conn))
        close(conn->fd);
    conn->fd = -1;
}
