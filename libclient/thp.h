/* Transparent huge pages: whether to ask for them on a large block. */
#ifndef HK_THP_H
#define HK_THP_H

#include <stddef.h>
#include <stdint.h>

/* Bytes from base to advise with MADV_HUGEPAGE (0: do not): only when THP
 * is enabled by the process and the site, the kernel is in "madvise" mode
 * ("always" needs no advice, "never" ignores it), base is 2 MiB-aligned
 * and the block holds at least one whole huge page. */
size_t hk_thp_advice(uintptr_t base, size_t map_size, int site_wants_thp);

#endif
