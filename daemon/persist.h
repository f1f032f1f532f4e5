/* Persistence of the learned state (proto/policy.proto).
 *
 * encode/decode convert between what is kept of each site's learning and
 * the bare protobuf (also the export/import format).  Both stream: one
 * site's message at a time, so neither holds a second copy of the whole
 * state.  The encoding can be held to a size: the worthiest sites are kept
 * (value.h), so a state file never outgrows its cap.  save/load put it on
 * disk under the state directory behind a header with a CRC, written
 * atomically (temp file, fsync, rename, fsync of the directory).  A file
 * that fails any check is renamed aside and reported; it is never fatal. */
#ifndef HAKMEMD_PERSIST_H
#define HAKMEMD_PERSIST_H

#include <stddef.h>
#include <stdint.h>

#include "core_api.h"
#include "learner.h"

#define HKD_POLICY_FORMAT "hakmem.policy.v1"
#define HKD_STATE_FILE "state.pb"
#define HKD_STATE_HEADER_BYTES 16u
#define HKD_STATE_MAX_BYTES (256u << 20)   /* the largest state file written or read */

/* What is kept of a site's learning: in state files, exports and the
 * archive (120 bytes; the learner's pull in progress is not kept). */
typedef struct hkd_site_state {
    hkd_site_key key;
    uint32_t pulls[HKD_N_ARMS];
    float    mean[HKD_N_ARMS];
    double   ref_cost;
    uint64_t usage;                  /* allocations counted over its learned life */
    uint32_t last_seen;              /* unix seconds of the last report; 0: unknown */
    int8_t   current, pinned;        /* arm being published; pinned arm or -1 */
    uint8_t  sizes_known, size_lo, size_hi;
} hkd_site_state;

void hkd_site_state_of(hkd_site_state *s, const hkd_site_key *k, const hkd_learn *l);
/* A learner that starts from what s kept (no pull in progress). */
void hkd_site_state_learn(const hkd_site_state *s, hkd_learn *l);
/* 1 when s holds anything learned (a pull, a pin, a reference cost). */
int  hkd_site_state_learned(const hkd_site_state *s);

/* Module paths, one per module hash (sites of a module share it). */
typedef struct hkd_module_name {
    uint64_t hash;
    char     path[HKD_MODULE_MAX];
} hkd_module_name;

/* Sorts by hash and keeps one name per hash; returns the count left. */
size_t hkd_module_names_unique(hkd_module_name *mods, size_t n);
/* The path of module `hash` in mods (sorted), or "". */
const char *hkd_module_path(const hkd_module_name *mods, size_t n, uint64_t hash);

typedef struct hkd_policy {
    hkd_site_state  *sites;
    uint32_t        *site_bytes;     /* what each site took in the encoding */
    size_t           n;
    hkd_module_name *modules;        /* sorted by hash */
    size_t           n_modules;
    uint64_t         generation;
    struct hkd_binary_state *binaries;   /* the per-binary learners (persist_binaries.h) */
    size_t           n_binaries;
} hkd_policy;

/* *out is malloc'd.  max_len > 0 holds the encoding to that many bytes:
 * when not every site fits, the worthiest do; *n_kept (may be NULL) says
 * how many. */
int hkd_policy_encode(const hkd_site_state *sites, size_t n, const hkd_module_name *mods, size_t n_mods,
                      uint64_t generation, size_t max_len, uint8_t **out, size_t *len, size_t *n_kept);
/* The same, a page at a time and whole: without the header the bytes are
 * only the sites, and appending them to a policy adds those sites to it. */
int hkd_policy_encode_part(const hkd_site_state *sites, size_t n, const hkd_module_name *mods, size_t n_mods,
                           int with_header, uint64_t generation, uint8_t **out, size_t *len);
/* Decodes into *out (hkd_policy_free() it).  Module paths are cleaned
 * (utf8.h: hk_text_clean) on the way in.  With max_sites > 0 at most
 * about that many sites are kept, the worthiest, so a hostile buffer
 * cannot make the daemon hold more than it would ever keep.  -EBADMSG:
 * not a policy. */
int hkd_policy_decode(const uint8_t *buf, size_t len, size_t max_sites, hkd_policy *out);
/* Keeps the worthiest sites whose encoding fits in max_len bytes (with a
 * header); returns how many were dropped. */
size_t hkd_policy_trim(hkd_policy *p, size_t max_len);
void hkd_policy_free(hkd_policy *p);

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
