/* Helpers shared by the allocator's unit tests: private heaps that do not
 * disturb the thread's own, child processes whose death and stderr can be
 * examined, and an oracle for "which module holds this address" that reads
 * /proc/self/maps instead of trusting the code under test. */
#ifndef UNIT_UTIL_H
#define UNIT_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "segment.h"

/* The first page of a block.  A large block served from cached memory
 * starts in the same first page as the block it reuses, at a cache-line
 * offset of its own (large.c), so tests compare pages, not pointers. */
#define UT_PAGE_OF(p) ((uintptr_t)(p) & ~(uintptr_t)4095)
/* Where an ordinary large block may start in its 4 MiB-aligned mapping. */
#define UT_LARGE_OFFSET_OK(p) \
    ((uintptr_t)(p) % ((uintptr_t)4 << 20) >= 64 && (uintptr_t)(p) % ((uintptr_t)4 << 20) < 4096 && \
     (uintptr_t)(p) % 64 == 0)

/* A heap no thread owns, set up the way a thread heap starts out, so a test
 * can drive the segment and site boxes without touching the thread's heap. */
hk_heap *ut_heap_new(void);
void ut_heap_free(hk_heap *h);

typedef struct ut_child {
    int exited;            /* 1: exited normally with exit_code */
    int exit_code;
    int signo;             /* signal that killed it, 0 if none */
    char err[2048];        /* everything it wrote to stderr */
} ut_child;

/* Runs fn(arg) in a forked child whose stderr goes into out->err; the child
 * exits 0 if fn returns.  SIGABRT is reset to its default first. */
void ut_run_child(void (*fn)(void *), void *arg, ut_child *out);

/* From /proc/self/maps: the file mapped at addr and its load bias (mapping
 * start minus file offset).  0 on success, -1 when addr is not file-backed. */
int ut_module_of(uintptr_t addr, char *path, size_t path_len, uintptr_t *bias);

/* FNV-1a of the GNU build-id of the ELF file at path, read from its
 * section headers on disk (not from what is mapped); 0 when it has none. */
uint64_t ut_file_build_id_hash(const char *path);
/* Sets one process-level knob (knobs.h), as the daemon's policy would. */
void ut_set_knob(unsigned knob, uint32_t value);

/* OS pages of [p, p + len) resident now, by mincore (p and len page-aligned);
 * a mincore failure aborts the test with one line on stderr. */
size_t ut_resident_pages(const void *p, size_t len);

/* This process's resident bytes now (/proc/self/statm); a read failure
 * aborts the test with one line on stderr. */
size_t ut_rss_bytes(void);

/* Makes the test process one that never took part in learning, whoever
 * runs it: the library's constructor reads HAKMEM_MODE before main, and a
 * test that plays the daemon to a child needs a parent whose shm client
 * stayed off.  Unless HAKMEM_MODE is baseline already, sets it and
 * re-executes the test (argv of main); returns only when it is. */
void ut_baseline_process(char **argv);

/* Number of newline-terminated lines in s. */
unsigned ut_count_lines(const char *s);

#endif
