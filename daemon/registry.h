/* The registry: one registration per live client process, each a client's
 * report region (include/hakmem_shm.h) mapped read-only, with who sent it
 * (SO_PEERCRED), its connection and a pidfd that say when it ends.
 *
 * Threads: registrations are added from any thread (queued under a mutex);
 * everything else belongs to the thread that runs intervals.  Each interval
 * calls hkd_registry_begin_interval() (merges the queue, marks ended
 * registrations), then walks the stable array (hkd_registry_at) without
 * locks, then calls hkd_registry_end_interval() (drops the ended ones after
 * their final collection).  Errors are negative errno values; a refusal
 * also says why in one line. */
#ifndef HAKMEMD_REGISTRY_H
#define HAKMEMD_REGISTRY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "hakmem_shm.h"

#define HKD_REG_MAX     4096u        /* registrations at once, all users */
#define HKD_REG_PER_UID 1024u        /* for a uid other than root and the daemon's own */

typedef struct hkd_reg {
    const hkshm_region *region;      /* read-only; every byte untrusted */
    uint64_t serial;                 /* unique for the daemon's lifetime; 0: entry unused */
    pid_t pid;                       /* 0: the peer is outside our PID namespace */
    uid_t uid;                       /* the domain */
    int conn_fd, pidfd;              /* -1 when none */
    uint64_t registered_ns;
    /* The identity, read once at registration (the owner may rewrite it). */
    uint32_t registration;           /* 1: counted from zero; > 1: from what is first seen */
    uint64_t binary_hash;
    char exe[HKSHM_EXE_MAX];
    uint64_t command_hash;           /* 0: none, or one refused (hkd_region_command) */
    char command[HKSHM_COMMAND_MAX]; /* valid text, NUL-padded, when command_hash != 0 */
    int ended;                       /* collected one last time this interval, then dropped */
    /* The publisher's view of its reads (publisher.c). */
    uint64_t read_gen_seen, read_gen_since_ns;
    int read_timeout_told;
} hkd_reg;

/* The command a region names, checked (include/hakmem_shm.h, Command):
 * its hash, with the text in out; 0 and out all NUL when it names none.
 * A command whose text is not a valid one, or whose hash is not its
 * text's, is refused (-EINVAL): the process counts as naming none. */
int  hkd_region_command(const hkshm_region *g, char out[HKSHM_COMMAND_MAX], uint64_t *hash);

/* Caps: total registrations and per uid (not root, not self_uid). */
int  hkd_registry_init(uint32_t max_total, uint32_t max_per_uid, uid_t self_uid);
/* Drops every registration (closing their connections) and frees all. */
void hkd_registry_shutdown(void);

/* A client's registration: validates region_fd (a memfd sealed against
 * shrinking and growing, exactly HKSHM_REGION_SIZE bytes, of our magic and
 * ABI), maps it, and queues it for the next interval.  The registry keeps
 * its own duplicate of conn_fd; the caller keeps (and closes) both of its
 * descriptors.  0, or -errno with the reason in `why`. */
int  hkd_registry_add(int conn_fd, int region_fd, const struct ucred *cred, char *why, size_t whylen);
/* The same without a connection, for in-process clients (tests, benches):
 * with pid > 0 a pidfd tells when it ends; with pid 0, hkd_registry_end(). */
int  hkd_registry_add_local(int region_fd, pid_t pid, uid_t uid, char *why, size_t whylen);

/* Interval thread.  Merges queued registrations (one from a pid that has
 * one replaces it), then checks every connection and pidfd at once: an
 * ended one gets `ended`.  Returns how many ended. */
uint32_t hkd_registry_begin_interval(void);
/* Drops the registrations marked ended (unmaps, closes both descriptors). */
void hkd_registry_end_interval(void);
/* Marks registration i ended (its last collection is this interval's). */
void hkd_registry_end(uint32_t i);

/* Entries [0, span) may be in use; at(i) is NULL when entry i is not. */
uint32_t hkd_registry_span(void);
hkd_reg *hkd_registry_at(uint32_t i);
/* Registrations in the array (ended ones included until dropped). */
uint32_t hkd_registry_count(void);

#endif
