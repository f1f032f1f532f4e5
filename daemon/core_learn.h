/* The learn pass (core_learn.c): every record learns from its interval's
 * sums, thin sites through their size bands.  Private to the core; the
 * learner's, under g.lock, after collection. */
#ifndef HAKMEMD_CORE_LEARN_H
#define HAKMEMD_CORE_LEARN_H

/* Its per-record bitmap and idle list: 0 or -ENOMEM. */
int  core_learn_init(void);
void core_learn_free(void);
/* Learns from every record's interval and evicts what has to go
 * (core_evict_idle); 1 when something must be republished. */
int  core_learn_pass(double seconds);

#endif
