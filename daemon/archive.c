/* Entries are dense (removal moves the last one into the hole) and found
 * through an open-addressing index of entry numbers, linear probing,
 * deletions shifting back the entries after them so lookups never need
 * tombstones.  Both grow by doubling up to the cap. */
#include "archive.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "site_key.h"
#include "value.h"

#define EMPTY UINT32_MAX
#define MIN_CAP 64u

struct hkd_archive {
    hkd_site_state *e;
    uint32_t n, cap_e, cap;
    uint32_t *slot;                  /* entry numbers, EMPTY when free */
    uint32_t mask;                   /* slots - 1; slots >= 2 * cap_e */
};

hkd_archive *hkd_archive_new(uint32_t cap)
{
    hkd_archive *a = calloc(1, sizeof *a);
    if (a)
        a->cap = cap < MIN_CAP ? MIN_CAP : cap;
    return a;
}

void hkd_archive_free(hkd_archive *a)
{
    if (!a)
        return;
    free(a->e);
    free(a->slot);
    free(a);
}

uint32_t hkd_archive_count(const hkd_archive *a)
{
    return a->n;
}

const hkd_site_state *hkd_archive_entries(const hkd_archive *a, uint32_t *n)
{
    *n = a->n;
    return a->e;
}

/* The slot holding k, or the empty slot where it would go. */
static uint32_t probe(const hkd_archive *a, const hkd_site_key *k)
{
    uint32_t s = (uint32_t)hkd_site_key_hash(k) & a->mask;
    while (a->slot[s] != EMPTY && !hkd_site_key_eq(&a->e[a->slot[s]].key, k))
        s = (s + 1) & a->mask;
    return s;
}

static int reindex(hkd_archive *a, uint32_t slots)
{
    uint32_t *n = malloc(slots * sizeof *n);
    if (!n)
        return -ENOMEM;
    memset(n, 0xff, slots * sizeof *n);
    free(a->slot);
    a->slot = n;
    a->mask = slots - 1;
    for (uint32_t i = 0; i < a->n; i++)
        a->slot[probe(a, &a->e[i].key)] = i;
    return 0;
}

/* Empties slot s, shifting back the run after it so every entry stays
 * reachable from its home slot. */
static void unslot(hkd_archive *a, uint32_t s)
{
    uint32_t hole = s;
    for (uint32_t j = (s + 1) & a->mask; a->slot[j] != EMPTY; j = (j + 1) & a->mask) {
        uint32_t home = (uint32_t)hkd_site_key_hash(&a->e[a->slot[j]].key) & a->mask;
        /* Movable when its home is not in (hole, j], cyclically. */
        if ((j > hole && (home <= hole || home > j)) || (j < hole && home <= hole && home > j)) {
            a->slot[hole] = a->slot[j];
            hole = j;
        }
    }
    a->slot[hole] = EMPTY;
}

/* Removes the entry in slot s; the last entry moves into its place. */
static void remove_at(hkd_archive *a, uint32_t s)
{
    uint32_t i = a->slot[s];
    unslot(a, s);
    uint32_t last = --a->n;
    if (i != last) {
        a->e[i] = a->e[last];
        a->slot[probe(a, &a->e[i].key)] = i;
    }
}

/* Drops the least valuable eighth (at least one). */
static int trim(hkd_archive *a)
{
    hkd_worth *w = malloc(a->n * sizeof *w);
    uint8_t *keep = malloc(a->n);
    int rc = -ENOMEM;
    if (w && keep) {
        for (uint32_t i = 0; i < a->n; i++)
            w[i] = (hkd_worth){ .score = hkd_worth_score(a->e[i].last_seen, a->e[i].usage, a->e[i].pinned >= 0),
                                .domain = a->e[i].key.domain, .cost = 1 };
        int64_t kept = hkd_keep_worthiest(w, a->n, a->n - 1 - a->n / 8, keep);
        if (kept >= 0) {
            uint32_t k = 0;
            for (uint32_t i = 0; i < a->n; i++)
                if (keep[i])
                    a->e[k++] = a->e[i];
            a->n = k;
            rc = reindex(a, a->mask + 1);
        }
    }
    free(w);
    free(keep);
    return rc;
}

int hkd_archive_put(hkd_archive *a, const hkd_site_state *s)
{
    if (a->slot) {
        uint32_t at = probe(a, &s->key);
        if (a->slot[at] != EMPTY) {
            a->e[a->slot[at]] = *s;
            return 0;
        }
    }
    if (a->n == a->cap) {
        int rc = trim(a);
        if (rc < 0)
            return rc;
    }
    if (a->n == a->cap_e) {
        uint32_t cap = a->cap_e ? a->cap_e * 2 : MIN_CAP;
        cap = cap > a->cap ? a->cap : cap;
        hkd_site_state *e = realloc(a->e, (size_t)cap * sizeof *e);
        if (!e)
            return -ENOMEM;
        a->e = e;
        a->cap_e = cap;
        uint32_t slots = 1;
        while (slots < 2 * cap)
            slots *= 2;
        if (!a->slot || slots != a->mask + 1) {
            int rc = reindex(a, slots);
            if (rc < 0)
                return rc;
        }
    }
    a->e[a->n] = *s;
    a->slot[probe(a, &s->key)] = a->n;
    a->n++;
    return 0;
}

/* The slot holding k, or EMPTY. */
static uint32_t slot_of(const hkd_archive *a, const hkd_site_key *k)
{
    if (!a->n)
        return EMPTY;
    uint32_t s = probe(a, k);
    return a->slot[s] == EMPTY ? EMPTY : s;
}

int hkd_archive_take(hkd_archive *a, const hkd_site_key *k, hkd_site_state *out)
{
    uint32_t s = slot_of(a, k);
    if (s == EMPTY)
        return 0;
    *out = a->e[a->slot[s]];
    remove_at(a, s);
    return 1;
}

uint32_t hkd_archive_forget(hkd_archive *a, const hkd_site_key *k)
{
    if (!k) {
        uint32_t n = a->n;
        a->n = 0;
        if (a->slot)
            memset(a->slot, 0xff, (size_t)(a->mask + 1) * sizeof *a->slot);
        return n;
    }
    uint32_t s = slot_of(a, k);
    if (s == EMPTY)
        return 0;
    remove_at(a, s);
    return 1;
}
