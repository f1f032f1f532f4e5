/* The core's per-binary learning (binaries.h), as the interval uses it:
 * every registration the collectors report goes in, the entries to publish
 * come out.  Any thread may call these; the box locks itself. */
#ifndef HAKMEMD_CORE_BINARIES_H
#define HAKMEMD_CORE_BINARIES_H

#include <stddef.h>
#include <stdint.h>

#include "binaries.h"
#include "core_api.h"
#include "hakmem_shm.h"

/* memory_weight_ns < 0: the learner's default price; arm_mask 0: its
 * default arms; settled_report_every 0: its default sampling. */
int  core_binaries_init(double memory_weight_ns, uint32_t arm_mask, uint32_t settled_report_every);
void core_binaries_shutdown(void);
/* One registration as collected this interval (live or ended). */
void core_binaries_proc(const hkd_proc_info *p);
/* Ends the interval: 1 when a binary's published arm changed since the
 * last call (the table must be republished). */
int  core_binaries_end_interval(void);
/* The entries to publish, sorted by (domain, hash). */
uint32_t core_binaries_fill(hkshm_binary_policy *out, uint32_t cap);
/* Persistence: a malloc'd copy of every binary's learning, and its way back. */
hkd_binary_state *core_binaries_snapshot(size_t *n);
int  core_binaries_merge(const hkd_binary_state *in, size_t n, int restore);

#endif
