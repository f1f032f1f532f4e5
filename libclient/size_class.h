/* Size classes: 16, 32, 48, 64, then four per power of two (80, 96, 112,
 * 128, 160, ...) up to 1 MiB, so no class wastes more than a quarter,
 * except from 512 B to 8 KiB: eight per power of two there (576, 640,
 * ..., 4096, 4608, ...), so none wastes more than an eighth.  A page and
 * a header (4096 + 272, say) is how programs size the blocks they keep
 * many of, and blocks of some hundred bytes are where a program's small
 * objects weigh most: with four classes from 512 B to 2 KiB, mstress's
 * blocks of 8 B - 1 KiB lost 7.6% to rounding, 4.5% with eight (bash
 * bench/before_after.sh --rev 2e296cb --runs 3: its peak RSS 1.034 ->
 * 0.955x glibc's, larson's 0.785 -> 0.816, the suite's 1.005 -> 0.997).
 * More classes than that cost resident memory: each is another partly
 * used page per thread (eighths from 128 B cost larson 7% more).
 * Each class also fixes how many 64 KiB slots its pages span. */
#ifndef HK_SIZE_CLASS_H
#define HK_SIZE_CLASS_H

#include "internal.h"

/* The classes where eight per power of two begin and end: of
 * 2^HK_FINE_FROM_LOG2 bytes and of 8 KiB. */
#define HK_CLASS_FINE_FROM (3u + (HK_FINE_FROM_LOG2 - 6u) * 4u)
#define HK_CLASS_8K (HK_CLASS_FINE_FROM + (13u - HK_FINE_FROM_LOG2) * 8u)

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
    if (w <= HK_FINE_FROM_LOG2) return 3u + (w - 7u) * 4u + ((unsigned)(s >> (w - 3)) - 3u);     /* + 1..4 */
    if (w <= 13) return HK_CLASS_FINE_FROM + (w - HK_FINE_FROM_LOG2 - 1u) * 8u + ((unsigned)(s >> (w - 4)) - 7u);   /* + 1..8 */
    return HK_CLASS_8K + (w - 14u) * 4u + ((unsigned)(s >> (w - 3)) - 3u);       /* + 1..4 */
}

/* Smallest class whose block size is a multiple of align (a power of two
 * <= 64 KiB) and holds size; HK_CLASSES when none. */
unsigned hk_aligned_class(size_t size, size_t align);

#endif
