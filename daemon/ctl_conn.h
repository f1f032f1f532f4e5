/* One control connection, as the control server's parts share it: the
 * server (ctl_server.c) accepts it and gives it a thread, the access rules
 * (ctl_access.h) give it a role and a place among the open connections,
 * and the handlers (ctl_handlers.h) answer its requests. */
#ifndef HAKMEMD_CTL_CONN_H
#define HAKMEMD_CTL_CONN_H

#include <stdint.h>
#include <sys/socket.h>

/* Ordered: each role may do all the one below it may. */
typedef enum { HKC_ROLE_NONE, HKC_ROLE_READ, HKC_ROLE_ADMIN } hkc_role;

typedef struct hkc_conn {
    int fd;
    struct ucred cred;
    hkc_role role;
    int timeout_ms;             /* the deadline of each frame read or sent */
    int stream;                 /* the request being answered set Request.stream */
    uint32_t import_parts;      /* an import in parts: parts and sites merged so far */
    uint64_t import_sites, import_bytes;
    struct hkc_conn *next;      /* the server's table of open connections */
} hkc_conn;

#endif
