/* Metadata memory: thread heaps and other bookkeeping come from here, never
 * from malloc, so the allocator can run before it is itself ready. */
#ifndef HK_META_H
#define HK_META_H

#include <stddef.h>

/* Zeroed memory for bookkeeping, 64-byte aligned; never returned.  NULL when
 * the OS refuses. */
void *hk_meta_alloc(size_t size);


/* fork(): hold the lock across, reinitialise in the child. */
void hk_meta_fork_prepare(void);
void hk_meta_fork_parent(void);
void hk_meta_fork_child(void);

#endif
