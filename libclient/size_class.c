/* The class table is computed at compile time by a generator-free rule: the
 * span of a class is the smallest number of slots that holds at least eight
 * blocks (or one block, for blocks over 128 KiB), widened by up to a quarter
 * when that wastes less of the span's tail.  Classes from 16 KiB to 128 KiB
 * have a layout for each value of the MEDIUM_PAGE_BLOCKS knob too: at least
 * that many blocks instead of eight. */
#include "size_class.h"
#include "knobs.h"

#define KB(x) ((uint32_t)(x) * 1024u)

_Static_assert(HK_CLASS_8K + 1 + 7 * 4 == HK_CLASSES,
               "four classes per power of two to 512 B, eight to 8 KiB, four to 1 MiB");

static uint32_t class_size(unsigned c)
{
    if (c < 4) return 16u * (c + 1);
    unsigned q, w, per;            /* bracket (2^(w-1), 2^w], per classes in it */
    if (c <= HK_CLASS_FINE_FROM) {
        q = c - 4, w = 7 + q / 4, per = 4;
    } else if (c <= HK_CLASS_8K) {
        q = c - HK_CLASS_FINE_FROM - 1, w = HK_FINE_FROM_LOG2 + 1 + q / 8, per = 8;
    } else {
        q = c - HK_CLASS_8K - 1, w = 14 + q / 4, per = 4;
    }
    return (1u << (w - 1)) + (q % per + 1) * ((1u << (w - 1)) / per);
}

/* Classes whose pages follow the MEDIUM_PAGE_BLOCKS knob. */
static int knob_sized(uint32_t bs) { return bs >= KB(16) && bs <= KB(128); }

/* medium: the fewest blocks a page of a class of 16 KiB to 128 KiB holds. */
static void fill_table(hk_class_info *t, unsigned medium)
{
    for (unsigned c = 0; c < HK_CLASSES; c++) {
        uint32_t bs = class_size(c);
        uint64_t want = bs > KB(128) ? bs : (uint64_t)(knob_sized(bs) ? medium : 8) * bs;
        unsigned min_span = (unsigned)((want + HK_SLOT_SIZE - 1) / HK_SLOT_SIZE);
        unsigned best = min_span;
        uint64_t best_waste = (uint64_t)best * HK_SLOT_SIZE % bs;
        for (unsigned n = min_span + 1; n <= min_span + min_span / 4 && n < HK_SLOTS; n++) {
            uint64_t waste = (uint64_t)n * HK_SLOT_SIZE % bs;
            /* compare waste fractions: waste/n against best_waste/best */
            if (waste * best < best_waste * n) { best = n; best_waste = waste; }
        }
        t[c].block_size = bs;
        t[c].span = (uint8_t)best;
        t[c].blocks = (uint32_t)((uint64_t)best * HK_SLOT_SIZE / bs);
    }
}

/* Filled by the process-wide init, which every first malloc goes through. */
hk_class_info hk_classes[HK_CLASSES];
static hk_class_info medium_layout[HK_MEDIUM_PAGE_BLOCKS_MAX + 1][HK_CLASSES];
static void fill_aligned(void);

void hk_size_class_init(void)
{
    if (hk_classes[0].block_size == 0) {
        for (unsigned n = 1; n <= HK_MEDIUM_PAGE_BLOCKS_MAX; n++) fill_table(medium_layout[n], n);
        fill_table(hk_classes, HK_MEDIUM_PAGE_BLOCKS_MAX);
        fill_aligned();
    }
}

const hk_class_info *hk_class_page(unsigned cls)
{
    unsigned n = hk_knob(HK_KNOB_MEDIUM_PAGE_BLOCKS);
    if (n == 0 || n > HK_MEDIUM_PAGE_BLOCKS_MAX) n = HK_MEDIUM_PAGE_BLOCKS_MAX;
    return &medium_layout[n][cls];
}

/* aligned_next[c][k]: the first class from c on whose block size is a
 * multiple of 2^(k+5) (alignments 32 B .. 64 KiB), or HK_CLASSES. */
static uint8_t aligned_next[HK_CLASSES][12];

static void fill_aligned(void)
{
    for (unsigned k = 0; k < 12; k++) {
        uint32_t align = 32u << k;
        unsigned next = HK_CLASSES;
        for (int c = HK_CLASSES - 1; c >= 0; c--) {
            if (hk_classes[c].block_size % align == 0) next = (unsigned)c;
            aligned_next[c][k] = (uint8_t)next;
        }
    }
}

unsigned hk_aligned_class(size_t size, size_t align)
{
    if (align <= HK_ALIGN) return hk_size_class(size);
    if (align > HK_SLOT_SIZE || (size > HK_CLASS_MAX && align < size)) return HK_CLASSES;
    unsigned c = hk_size_class(size < align ? align : size);
    unsigned k = (unsigned)__builtin_ctzl(align) - 5;
    return aligned_next[c][k];
}
