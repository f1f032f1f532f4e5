/* The live processes copied out of the core (core_api.h), for a reader
 * that formats them (metrics, hakmemctl procs).  They are few (bounded by
 * the segment's slots); at most HKD_PROCS_MAX are copied. */
#ifndef HAKMEMD_PROC_COPY_H
#define HAKMEMD_PROC_COPY_H

#include <stddef.h>

#include "core_api.h"

#define HKD_PROCS_MAX 4096

/* *out is malloc'd (caller frees), each exe NUL-terminated; *n how many.
 * 0 or -errno. */
int hkd_procs_copy(hkd_proc_info **out, size_t *n);

#endif
