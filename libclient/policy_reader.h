/* The daemon's segment, read-only (include/hakmem_shm.h): whether to trust
 * it, and applying what it publishes for this process's domain.
 *
 * A segment is trusted only when its owner is root or one of the uids the
 * caller vouches for (the process's own, the control socket's owner, the
 * uid behind the connection) and no one else may write it (mode & 022 ==
 * 0); it is mapped PROT_READ, so this process cannot write it at all.
 * Every value read from it is validated before use. */
#ifndef HK_POLICY_READER_H
#define HK_POLICY_READER_H

#include "hakmem_shm.h"

#include <stdint.h>

/* Opens and maps `name`.  0 on success; else -errno with a one-line reason
 * in why: -ENOENT (no segment), -EPERM (not trusted), -EPROTO (another ABI
 * or layout), or what open/mmap said. */
int hk_policy_open(const char *name, const int64_t *trusted_uids, int n_uids, char *why, int why_len);
/* What a peek saw of the header. */
typedef struct hk_policy_peeked {
    uint64_t generation;
    int learning;
    char socket_path[HKSHM_SOCKET_PATH];    /* as published: unchecked */
} hk_policy_peeked;

/* Reads this binary and command's entry of the active copy and applies
 * it, as hk_policy_apply does, without mapping the segment: a handful of
 * preads on a descriptor closed before it returns (every page of a
 * mapping first touched costs a fault; the client maps the segment only
 * once the process registers or is 100 ms old, shm_client.c).  Trusts and
 * refuses segments as hk_policy_open does, with the same codes; 1 applied,
 * 0 nothing to apply (no generation yet, learning off), -EAGAIN the copy
 * was rewritten under the read.  Site entries are left to hk_policy_apply. */
int hk_policy_peek(const char *name, const int64_t *trusted_uids, int n_uids, uint32_t domain,
                   uint64_t binary_hash, uint64_t command_hash, hk_policy_peeked *seen, char *why, int why_len);
/* 1 when the name now refers to another object (or to none) than the one
 * mapped; the caller closes and opens again. */
int hk_policy_replaced(const char *name);
void hk_policy_close(void);
/* The mapped header, NULL when none. */
const hkshm_header *hk_policy_header(void);

/* Reads the active copy under the read protocol and applies this domain's
 * entries: site policies (hk_site_set_policy) and the knobs of the entry
 * of this binary and command (hk_options_apply_binary; command_hash 0:
 * the entry of runs that name no command).  `region` (may be NULL) carries read_gen and
 * gen_seen.  1 applied, 0 nothing new, -EAGAIN the read raced a rewrite or
 * the generation moved (try again soon). */
int hk_policy_apply(uint32_t domain, uint64_t binary_hash, uint64_t command_hash, hkshm_region *region);
/* The report_every of the binary entry last read (1 when none). */
uint32_t hk_policy_report_every(void);
/* Forget what was applied, so the next apply reads again (a new region or
 * a new segment must be told gen_seen). */
void hk_policy_forget_generation(void);
/* Tests: the binary arm was taken ns_ago (UINT64_MAX: not taken yet, as in
 * a new process). */
void hk_policy_binary_since(uint64_t ns_ago);

/* For tests: called between reading the entries and checking the stamp
 * again (NULL outside tests). */
extern void (*hk_policy_mid_read_hook)(void);

#endif
