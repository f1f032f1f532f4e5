/* Which learned state is worth keeping when not all of it fits (the
 * archive's entries, the state file's bytes).
 *
 * Within a domain, entries are worth more the more recently a process
 * reported them (by the day), then the more they were used; pinned sites
 * first of all.  Across domains the budget is shared in turns: every
 * domain's most valuable entry before any domain's second, and so on, so
 * one user's junk can take at most its turns and never push out another
 * user's history. */
#ifndef HAKMEMD_VALUE_H
#define HAKMEMD_VALUE_H

#include <stddef.h>
#include <stdint.h>

typedef struct hkd_worth {
    uint64_t score;                  /* larger is worth more, within its domain */
    uint32_t domain;
    uint32_t cost;                   /* what keeping it takes of the budget (bytes, or 1) */
} hkd_worth;

/* The score of learned state last reported at unix second last_seen,
 * used `usage` times (allocations). */
uint64_t hkd_worth_score(uint32_t last_seen, uint64_t usage, int pinned);

/* Sets keep[i] to 1 for the entries kept within budget, in the order
 * above, stopping at the first that does not fit (so nothing worth more
 * is ever dropped for something worth less); 0 for the others.  Returns
 * the cost kept, or -ENOMEM. */
int64_t hkd_keep_worthiest(const hkd_worth *w, size_t n, uint64_t budget, uint8_t *keep);

#endif
