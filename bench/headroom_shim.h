/* The two halves of bench/headroom_shim.so and what each offers the other:
 * headroom_shim.c, the allocation entry points and the table of live
 * requested bytes; headroom_floor.c, the program's own mappings and the
 * floor under the peak RSS.  Nothing here is exported from the object but
 * the entry points a program calls. */
#ifndef HEADROOM_SHIM_H
#define HEADROOM_SHIM_H

#include <stddef.h>
#include <sys/types.h>

#define EXPORT __attribute__((visibility("default")))
#pragma GCC visibility push(hidden)

/* ---- headroom_shim.c ---- */

/* 1 when calls can be passed on to the next definitions (looking them up
 * first if need be); 0 while this thread is inside dlsym. */
int hr_ready(void);
extern void *(*hr_next_mmap)(void *, size_t, int, int, int, off_t);
extern int (*hr_next_munmap)(void *, size_t);
extern void *(*hr_next_mremap)(void *, size_t, size_t, int, ...);
/* The allocator's object: its mmap calls make heap, anyone else's do not. */
extern void *hr_allocator_base;
/* The bytes asked for and not yet freed, now. */
long long hr_live_bytes(void);

/* ---- headroom_floor.c ---- */

/* Live bytes have reached `live`: a sample of the floor is taken when they
 * pass the last sample's by a 256th (and 64 KiB). */
void hr_floor_note(long long live);

typedef struct hr_floor {
    long long bytes;       /* the largest sample */
    long long fixed_bytes; /* the file, stack and program pages of that sample */
    unsigned samples;
} hr_floor;

/* A last sample, then the floor found. */
hr_floor hr_floor_at_exit(void);

/* The floor's lock, held across a fork (pthread_atfork's three calls). */
void hr_floor_fork_prepare(void);
void hr_floor_fork_parent(void);
void hr_floor_fork_child(void);

#pragma GCC visibility pop

#endif
