/* The daemon's half of the ABI, played by tests: a control socket served by
 * a thread (protobuf-c decodes what the client hand-encoded), scripted
 * replies, and a segment the test writes while the client maps it
 * read-only.  Also an oracle for the main executable's build-id hash that
 * reads the ELF file from disk rather than trusting the code under test. */
#ifndef FAKE_DAEMON_H
#define FAKE_DAEMON_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "hakmem_shm.h"

typedef enum fd_reply {
    FD_REGISTERED = 0,              /* Response{registered{instance}} */
    FD_ERROR,                       /* Response{error{PERMISSION_DENIED, "go away"}} */
    FD_GARBAGE,                     /* a frame of bytes that are no Response */
    FD_OVERSIZED,                   /* a length prefix of 2^31 - 1 and 12 KiB; left open */
    FD_TRUNCATED,                   /* a length of 10, three bytes, then closed */
    FD_SILENT,                      /* no reply; the connection stays open */
    FD_WRONG_TYPE,                  /* field 16 as a varint instead of a message */
} fd_reply;

#define FD_MAX_CONNS 16

typedef struct fd_request {
    int sock;                       /* -1 once closed */
    int region_fd;                  /* the descriptor that came with it (-1: none) */
    pid_t pid;                      /* SO_PEERCRED */
    uid_t uid;
    int decoded;                    /* protobuf-c could unpack it as a RegisterRequest */
    uint32_t version, abi_version;
    uint64_t region_size;
    fd_reply replied;
} fd_request;

typedef struct fake_daemon {
    char path[108];
    int listen_fd;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    uint64_t instance;
    fd_reply script[FD_MAX_CONNS];  /* reply to the k-th request; after the script: registered */
    int n_script;
    fd_request req[FD_MAX_CONNS];
    int n_req;
} fake_daemon;

/* Listens on a fresh socket under dir; 0 or -1. */
int fd_start(fake_daemon *d, const char *dir, uint64_t instance);
void fd_stop(fake_daemon *d);
/* Waits (up to 10 s) until n requests were answered; 0 when they were. */
int fd_wait_requests(fake_daemon *d, int n);
/* The daemon's end of request i goes away. */
void fd_close_request(fake_daemon *d, int i);
/* Maps request i's region read-only (NULL when it came without one). */
const hkshm_region *fd_map_region(fake_daemon *d, int i);

/* A POSIX shm segment of `size` bytes under `name`, mode and owner as
 * given (owner -1: the caller), mapped read-write for the test; with
 * `valid`, an ABI-2 header is written (magic last). */
void *seg_create(const char *name, uint64_t size, mode_t mode, int64_t owner, int valid);
/* Publishes one copy: sites and binaries (sorted here), stamp g, then
 * active and generation. */
void seg_publish(void *seg, uint32_t copy, uint64_t g, const hkshm_site_policy *sites, uint32_t n_sites,
                 const hkshm_binary_policy *bins, uint32_t n_bins);

/* FNV-1a of the main executable's GNU build-id, read from the file. */
uint64_t oracle_exe_hash(void);

#endif
