/* Size classes: 16, 32, 48, 64, then four per power of two (80, 96, 112,
 * 128, 160, ...) up to 1 MiB, so no class wastes more than a quarter,
 * except from 2 KiB to 8 KiB: eight per power of two there (2304, 2560,
 * ..., 4096, 4608, ...), so none wastes more than an eighth, because a
 * page and a header (4096 + 272, say) is how programs size the blocks
 * they keep many of.  More classes than that cost resident memory: each
 * is another partly used page per thread.
 * Each class also fixes how many 64 KiB slots its pages span. */
#ifndef HK_SIZE_CLASS_H
#define HK_SIZE_CLASS_H

#include "internal.h"

/* The classes of 2 KiB and 8 KiB blocks, where eight per power of two
 * begin and end. */
#define HK_CLASS_2K 23u
#define HK_CLASS_8K 39u

typedef struct hk_class_info {
    uint32_t block_size;
    uint8_t  span;          /* slots per page */
    uint32_t blocks;        /* blocks per page */
} hk_class_info;

/* The layout of each class with the built-in page sizes. */
extern hk_class_info hk_classes[HK_CLASSES];
/* Fills the tables; idempotent, allocation-free. */
void hk_size_class_init(void);
/* The layout a new page of class cls gets now: the built-in one, except
 * for classes of 16 KiB to 128 KiB, whose pages hold at least the
 * MEDIUM_PAGE_BLOCKS knob's number of blocks (knobs.h).  A page keeps the
 * layout it was made with. */
const hk_class_info *hk_class_page(unsigned cls);

/* Class of a size in 1..HK_CLASS_MAX (0 counts as 1). */
static inline unsigned hk_size_class(size_t size)
{
    if (size <= 64) return size <= 16 ? 0 : (unsigned)((size - 1) >> 4);
    size_t s = size - 1;
    unsigned w = 64u - (unsigned)__builtin_clzl(s);          /* s in [2^(w-1), 2^w) */
    if (w <= 11) return 3u + (w - 7u) * 4u + ((unsigned)(s >> (w - 3)) - 3u);     /* + 1..4 */
    if (w <= 13) return HK_CLASS_2K + (w - 12u) * 8u + ((unsigned)(s >> (w - 4)) - 7u);   /* + 1..8 */
    return HK_CLASS_8K + (w - 14u) * 4u + ((unsigned)(s >> (w - 3)) - 3u);       /* + 1..4 */
}

/* Smallest class whose block size is a multiple of align (a power of two
 * <= 64 KiB) and holds size; HK_CLASSES when none. */
unsigned hk_aligned_class(size_t size, size_t align);

#endif
