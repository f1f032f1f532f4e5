/* Persistence of the learned state (proto/policy.proto).
 *
 * encode/decode convert between the learner's per-site state and the bare
 * protobuf (also the export/import format).  save/load put it on disk under
 * the state directory behind a header with a CRC, written atomically
 * (temp file, fsync, rename, fsync of the directory).  A file that fails
 * any check is renamed aside and reported; it is never fatal. */
#ifndef HAKMEMD_PERSIST_H
#define HAKMEMD_PERSIST_H

#include <stddef.h>
#include <stdint.h>

#include "core_api.h"
#include "learner.h"

#define HKD_POLICY_FORMAT "hakmem.policy.v1"
#define HKD_STATE_FILE "state.pb"

typedef struct hkd_site_state {
    hkd_site_key key;
    char module[HKD_MODULE_MAX];
    hkd_learn learn;
} hkd_site_state;

/* *out is malloc'd. */
int hkd_policy_encode(const hkd_site_state *sites, size_t n, uint64_t generation,
                      uint8_t **out, size_t *len);
/* The same, a page at a time: without the header the bytes are only the
 * sites, and appending them to a policy adds those sites to it. */
int hkd_policy_encode_part(const hkd_site_state *sites, size_t n, int with_header, uint64_t generation,
                           uint8_t **out, size_t *len);
/* Module paths are cleaned (utf8.h: hk_text_clean) on the way in.
 * *sites is malloc'd (may be NULL when *n is 0).  -EBADMSG: not a policy. */
int hkd_policy_decode(const uint8_t *buf, size_t len, hkd_site_state **sites, size_t *n,
                      uint64_t *generation);

int hkd_state_save(const char *dir, const uint8_t *buf, size_t len);
/* -ENOENT: no state yet.  -EBADMSG: corrupt, truncated or foreign;
 * -EMEDIUMTYPE: not a regular file (a FIFO, symlink, directory, device);
 * in both cases it was moved to aside_path (which holds its new name).
 * Never waits on what it finds at the name. */
int hkd_state_load(const char *dir, uint8_t **buf, size_t *len, char *aside_path, size_t aside_len);

/* Removes temp files an interrupted save left in dir (atomic_file.h:
 * hkd_atomic_clean).  How many, or -errno. */
int hkd_state_clean(const char *dir);

/* Moves the state file aside (a payload that does not decode). */
int hkd_state_set_aside(const char *dir, char *aside_path, size_t aside_len);

uint32_t hkd_crc32(const uint8_t *p, size_t n);

#endif
