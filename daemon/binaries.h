/* The binaries: per (domain, build-id hash of the main executable,
 * command), the per-binary learner (binlearn.h), fed with the processes of
 * that binary that run that command (include/hakmem_shm.h, Command; runs
 * that name none are one more key of the binary).  Commands of one binary
 * never share learning: their costs per unit are not comparable, so a new
 * command starts on the default arm whatever another command runs.
 *
 * Every interval the core hands over each registration it collected, live
 * or ended (hkd_binaries_proc).  A process that ends is one observation:
 * what it spent from its first report (or from where its last window
 * ended) to its final flush.  A long-running process gives one
 * observation per `window_s` of wall time.  The arm an observation counts
 * for is the one the process reported it ran (`binary_arm`); a process
 * that ran no published arm ran the default.
 *
 * Threads: the interval thread changes the table; control-server threads
 * read it (hkd_binaries_for_each) and pin or reset under the same mutex,
 * which the interval holds only while it updates. */
#ifndef HAKMEMD_BINARIES_H
#define HAKMEMD_BINARIES_H

#include <stddef.h>
#include <stdint.h>

#include "binlearn.h"
#include "core_api.h"
#include "hakmem_shm.h"

#define HKD_BINARIES_MAX 4096u       /* (binary, command) keys known at once (HKSHM_BINARY_CAP) */
#define HKD_BINARY_COMMANDS 32u      /* commands of one binary learned apart; runs of any further
                                      * command are not learned (no key, the default arm) */

typedef struct hkd_binaries hkd_binaries;

typedef struct hkd_binaries_cfg {
    hkd_bin_cfg learn;
    double window_s;                 /* a long-running process: one observation per window */
} hkd_binaries_cfg;

/* The learner's defaults (hkd_bin_default_cfg), one observation a minute. */
hkd_binaries_cfg hkd_binaries_defaults(void);

hkd_binaries *hkd_binaries_new(const hkd_binaries_cfg *cfg);
void hkd_binaries_free(hkd_binaries *b);

/* One registration as collected this interval (interval thread).  `serial`
 * tells registrations apart; `ended`: its final counters.  Returns 1 when
 * a binary's published entry changed: its arm, or its sampling. */
int  hkd_binaries_proc(hkd_binaries *b, uint64_t serial, const hkd_proc_info *p, uint32_t registration,
                       uint32_t arm_reported, int ended);
/* Ends the interval: forgets registrations not seen in it (interval thread). */
void hkd_binaries_end_interval(hkd_binaries *b);

/* The entries to publish, sorted by (domain, binary_hash, command_hash):
 * keys whose arm is not the default.  Returns how many were written (<= cap). */
uint32_t hkd_binaries_fill(hkd_binaries *b, hkshm_binary_policy *out, uint32_t cap);

/* What a reader sees of one binary. */
typedef struct hkd_binary_info {
    uint32_t domain;
    uint64_t binary_hash;
    uint64_t command_hash;           /* 0: the runs that name no command */
    char     command[HKSHM_COMMAND_MAX];
    char     exe[HKD_EXE_MAX];       /* the tail of a process's /proc/self/exe (escaped on output) */
    uint32_t live;                   /* registrations of it now */
    uint64_t processes;              /* seen since the daemon started */
    double   plane_share;            /* of their time that ended runs spent taking part (registering,
                                      * flushing, reading policy), as they reported it */
    uint64_t observations, ignored;
    int      current, choice, pinned, settled;
    int      racing;                 /* hkd_bin_racing's arm, or -1 */
    hkd_bin_stat arms[HKD_BIN_ARMS];
} hkd_binary_info;

/* Calls fn for every key, sorted by (domain, hash, command hash); stops
 * at fn's first nonzero return, which it returns. */
int  hkd_binaries_for_each(hkd_binaries *b, int (*fn)(const hkd_binary_info *, void *), void *arg);
/* Which keys a pin or a reset is about: the binary's of every command, or
 * (by_command) of one (command_hash 0: the runs that name none). */
typedef struct hkd_binary_sel {
    uint32_t domain;
    uint64_t binary_hash;            /* reset: 0 is every binary */
    int by_command;
    uint64_t command_hash;
} hkd_binary_sel;
/* Forces (arm >= 0) or releases (arm < 0) the arm of the keys sel picks:
 * how many there were, with *changed set when a published arm moved;
 * -ENOENT (none), -EINVAL. */
int  hkd_binaries_pin(hkd_binaries *b, const hkd_binary_sel *sel, int arm, int *changed);
/* Forgets what was learned of the keys sel picks: how many, or -ENOENT. */
int  hkd_binaries_reset(hkd_binaries *b, const hkd_binary_sel *sel);
/* Processes not learned since the start: past a cap (keys, a domain's
 * keys, a binary's commands). */
uint64_t hkd_binaries_refused(hkd_binaries *b);

/* Persistence: the learned state as plain records (persist.c encodes). */
typedef struct hkd_binary_state {
    uint32_t domain;
    uint64_t binary_hash;
    uint64_t command_hash;           /* hkshm_command_hash(command), 0: none */
    char     command[HKSHM_COMMAND_MAX];
    char     exe[HKD_EXE_MAX];
    hkd_bin_learn learn;
} hkd_binary_state;

/* A malloc'd copy of every binary's state; *n set.  NULL on ENOMEM. */
hkd_binary_state *hkd_binaries_snapshot(hkd_binaries *b, size_t *n);
/* Takes in saved state (restore: replaces; otherwise the counts add).
 * Returns how many binaries were taken. */
int  hkd_binaries_merge(hkd_binaries *b, const hkd_binary_state *in, size_t n, int restore);

#endif
