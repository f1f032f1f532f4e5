/* Domains: the users whose processes report sites, and the limits that
 * keep one user from crowding out the others.
 *
 * Root (uid 0) and the daemon's own user are trusted: no limit of their
 * own, room kept for them that no other user can take.  Every other user
 * may add so many new sites per interval and hold so many at once, and all
 * of them together a pool of their own.  A refused site is counted (per
 * user) and logged, one line per user per minute.  Each domain has its own
 * size-band learners for its thin sites.
 *
 * Slots are small integers the core keeps in each record; a domain with no
 * sites left gives its slot back.  Not thread-safe except where said: the
 * core calls it under its create lock (collecting threads) or its interval
 * lock. */
#ifndef HAKMEMD_DOMAINS_H
#define HAKMEMD_DOMAINS_H

#include <stdint.h>

#include "bands.h"
#include "core_api.h"
#include "learner.h"

#define HKD_DOMAINS_MAX 1024         /* users with sites at once */

typedef struct hkd_domain_limits {
    uint32_t self_uid;               /* the daemon's user */
    uint32_t max_sites_per_user;     /* each user but root and the daemon's */
    uint32_t new_per_interval;       /* new sites each such user may add per interval */
    uint32_t untrusted_max;          /* all such users' sites together */
    uint32_t max_sites;              /* everyone's */
} hkd_domain_limits;

typedef struct hkd_domains hkd_domains;

hkd_domains *hkd_domains_new(const hkd_domain_limits *lim);
void hkd_domains_free(hkd_domains *d);

/* uid's slot, made when new; -ENOSPC when every slot is taken (counted).
 * A slot stays uid's while it has sites; one left without any is given
 * back at the end of the interval. */
int  hkd_domains_slot(hkd_domains *d, uint32_t uid);
/* uid's slot when it has one, else -1 (never makes one). */
int  hkd_domains_find(const hkd_domains *d, uint32_t uid);
int  hkd_domains_trusted(const hkd_domains *d, int slot);

/* May slot's user add a site?  by_report: a process reports it (the
 * per-interval limit applies); otherwise state is being loaded or
 * imported.  0: yes, and counted.  -EAGAIN: its new sites for this
 * interval are used up.  -EDQUOT: it is at its cap (or its pool's, or
 * everyone's); room it makes by evicting its own idle sites is its to use
 * (hkd_domains_waiting).  Refusals by report are counted. */
int  hkd_domains_admit(hkd_domains *d, int slot, int by_report);
/* n more of slot's new sites refused by report, for the reason admit
 * last refused one, and counted as admit counts them.  Until an interval
 * ends, admissions only fill the limits, so a caller told no may take
 * the answer for the user's other new sites without asking again. */
void hkd_domains_refused_again(hkd_domains *d, int slot, uint64_t n);
/* Undoes an admission whose site could not be made. */
void hkd_domains_unadmit(hkd_domains *d, int slot, int by_report);
/* One of slot's sites is gone. */
void hkd_domains_evicted(hkd_domains *d, int slot);
/* How many idle sites each slot should give up so that the sites refused
 * this interval for want of room find it next interval: a user at its own
 * cap makes room from its own; when the users' pool or the whole daemon is
 * full, the user holding most (of the pool, or of all) does.  want[] has
 * HKD_DOMAINS_MAX entries; returns 1 when any is wanted. */
int  hkd_domains_room_wanted(const hkd_domains *d, uint32_t *want);
uint32_t hkd_domains_sites(const hkd_domains *d, int slot);
/* Sites of every user. */
uint32_t hkd_domains_live(const hkd_domains *d);

/* slot's band learners, made on first use (NULL: no memory); using them
 * enlists them for hkd_domains_bands_end_interval. */
hkd_bands *hkd_domains_bands(hkd_domains *d, int slot);
/* Ends the interval of every domain's bands that saw a thin site. */
void hkd_domains_bands_end_interval(hkd_domains *d, const hkd_learn_cfg *cfg);

/* Ends the interval: per-interval counts start over, refusals are logged,
 * empty domains give their slots back, and the copy readers see is
 * renewed.  now_ms: any clock in milliseconds. */
void hkd_domains_end_interval(hkd_domains *d, uint64_t now_ms);

/* From the readers' copy (any thread). */
int  hkd_domains_for_each(hkd_domains *d, int (*fn)(const hkd_domain_info *, void *), void *arg);
void hkd_domains_totals(hkd_domains *d, uint32_t *domains, uint64_t *refused, uint64_t *evicted);

#endif
