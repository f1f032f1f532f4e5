/* Picking the sites the shared table holds when there are more than it
 * can: the heaviest, with every domain's heaviest taken before any
 * domain's next, so one user's many sites get only the room the others
 * leave.  Linear in the number of candidates (selection, not sorting). */
#ifndef HAKMEMD_PICK_H
#define HAKMEMD_PICK_H

#include <stddef.h>
#include <stdint.h>

typedef struct hkd_pick {
    uint64_t weight;                 /* heavier matters more */
    uint32_t domain;                 /* < n_domains */
    uint32_t id;                     /* the caller's */
} hkd_pick;

/* Reorders v so that its first min(n, k) entries are the picks (in no
 * particular order).  Returns that count, or -ENOMEM. */
int64_t hkd_pick_fair(hkd_pick *v, size_t n, size_t k, uint32_t n_domains);

#endif
