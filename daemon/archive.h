/* The archive: learned state of sites no process reports any more.
 *
 * When the core evicts a site (aged out, or its user needed the room) what
 * it learned comes here, compactly (hkd_site_state, no module path), keyed
 * by (domain, module_hash, offset); a new record for the same key takes it
 * back.  Bounded: a full archive first drops the least valuable eighth of
 * its entries (value.h: oldest, least used, domains taking turns).  Not
 * thread-safe: the core calls it under its locks. */
#ifndef HAKMEMD_ARCHIVE_H
#define HAKMEMD_ARCHIVE_H

#include <stdint.h>

#include "persist.h"

typedef struct hkd_archive hkd_archive;

/* At most cap entries (at least 64). */
hkd_archive *hkd_archive_new(uint32_t cap);
void hkd_archive_free(hkd_archive *a);
uint32_t hkd_archive_count(const hkd_archive *a);
/* Keeps s in place of anything kept for its key.  0 or -ENOMEM. */
int hkd_archive_put(hkd_archive *a, const hkd_site_state *s);
/* Moves what is kept for k into *out: 1, or 0 when nothing is. */
int hkd_archive_take(hkd_archive *a, const hkd_site_key *k, hkd_site_state *out);
/* Forgets k, or everything when k is NULL; returns how many entries went. */
uint32_t hkd_archive_forget(hkd_archive *a, const hkd_site_key *k);
/* The entries, contiguous, valid until the archive next changes. */
const hkd_site_state *hkd_archive_entries(const hkd_archive *a, uint32_t *n);

#endif
