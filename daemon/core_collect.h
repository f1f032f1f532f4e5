/* Collection (core_collect.c): the interval's reports from every
 * registration into the records' accumulators, and the list of processes
 * that reported.  Private to the core; the learner's, under g.lock. */
#ifndef HAKMEMD_CORE_COLLECT_H
#define HAKMEMD_CORE_COLLECT_H

#include "collector.h"

/* Collects every registration, half of them on the worker thread once the
 * fleet is big: 0 or -errno, what was collected in *st. */
int  core_collect(hkd_collect_stats *st);
/* Hands readers (hkd_for_each_proc) the processes the last collection saw. */
void core_procs_publish(void);
/* Frees the process lists; nothing collects any more. */
void core_collect_free(void);

#endif
