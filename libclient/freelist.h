/* Free-list links: how a free block's first two words hold its page's list.
 *
 * Default build: the first word is the next pointer as it is; nothing is
 * checked (the fast paths stay as short as they can be).
 *
 * Hardened build (HAKMEM_HARDENED), in the spirit of glibc's safe-linking and
 * mimalloc's secure mode:
 *  - the next pointer is stored encoded with a per-process secret and the
 *    address it is stored at:  word = (next ^ at ^ key.mask) * key.mul, with
 *    key.mul odd.  Every pop decodes it and checks that the result is NULL or
 *    the start of a carved block of the same page; anything else (a stray
 *    write into a freed block, a forged pointer) aborts with one line instead
 *    of handing out a wild pointer.  The multiplication carries a change of
 *    any stored bit into every higher bit of the decoded pointer, so even a
 *    one-byte overwrite of the low end decodes far outside the page.
 *  - the second word holds the block's free tag (at ^ key.tag) while the
 *    block is free, and 0 once it is handed out again: free() of a block that
 *    still carries its tag is a double free, whether it sits on the page's
 *    own list or on its remote list.  Blocks are at least 16 bytes, so both
 *    words always exist.
 * The secret comes from getrandom() (AT_RANDOM when that fails) before the
 * first heap exists; a fork child keeps it, as its heap is a copy.  It stops
 * an attacker who can write into freed memory but not read it; one who can
 * read a freed block and knows its address and its successor's learns the
 * mask for that multiplier, as with every keyed scheme of this kind. */
#ifndef HK_FREELIST_H
#define HK_FREELIST_H

#include "internal.h"

/* Whether p is the start of one of pg's first `carved` blocks.  An address
 * below pg->start wraps to a huge offset and fails the bound; the offset
 * arithmetic is exact below 2^21 (internal.h), and no offset beyond the
 * span can pass both tests. */
static inline int hk_page_has_block(const hk_page *pg, uintptr_t p, uint32_t carved)
{
    uint64_t off = (uint64_t)(p - (uintptr_t)pg->start);
    uint64_t idx = (off * pg->block_inv) >> HK_INV_SHIFT;
    return idx < carved && idx * pg->block_size == off;
}

/* Fills the secret (hardened build; nothing to do otherwise).  Once, from
 * process initialisation, before any block is freed. */
void hk_freelist_init(void);

#ifdef HAKMEM_HARDENED

typedef struct hk_freelist_key {
    uint64_t mul, mul_inv, mask, tag;
} hk_freelist_key;
extern hk_freelist_key hk_fl_key;

__attribute__((noreturn, cold)) void hk_freelist_corrupt(const hk_block *at);

static inline void hk_block_link(hk_block *b, hk_block *next)
{
    b->next = (hk_block *)((((uintptr_t)next ^ (uintptr_t)b ^ hk_fl_key.mask)) * hk_fl_key.mul);
    b->freed = (uintptr_t)b ^ hk_fl_key.tag;
}

/* b's successor, decoded and proven to be one of pg's blocks (or NULL). */
static inline hk_block *hk_block_next_checked(const hk_page *pg, const hk_block *b, uint32_t carved)
{
    uintptr_t n = ((uintptr_t)b->next * hk_fl_key.mul_inv) ^ (uintptr_t)b ^ hk_fl_key.mask;
    if (n != 0 && unlikely(!hk_page_has_block(pg, n, carved))) hk_freelist_corrupt(b);
    return (hk_block *)n;
}

static inline int hk_block_is_free(const hk_block *b)
{
    return b->freed == ((uintptr_t)b ^ hk_fl_key.tag);
}

#else

static inline void hk_block_link(hk_block *b, hk_block *next) { b->next = next; }

static inline hk_block *hk_block_next_checked(const hk_page *pg, const hk_block *b, uint32_t carved)
{
    (void)pg;
    (void)carved;
    return b->next;
}

#endif

/* Takes b, the head of pg's free list, off the list (owner thread only). */
static inline void hk_block_pop(hk_page *pg, hk_block *b)
{
    pg->free = hk_block_next_checked(pg, b, pg->capacity);
#ifdef HAKMEM_HARDENED
    b->freed = 0;
#endif
}

/* A page's remote list is one word: the number of blocks on it in the high
 * half, the head block's offset in its segment in the low half (0: the list
 * is empty; no block starts at offset 0, the segment header does).  Pushes
 * compare and swap the whole word, so the count always matches the list,
 * and the owner takes both with one exchange: collecting does not walk the
 * blocks, whose lines the freeing threads wrote last. */
static inline hk_block *hk_remote_head(uintptr_t segment, uintptr_t word)
{
    uint32_t off = (uint32_t)word;
    return off ? (hk_block *)(segment + off) : NULL;
}

static inline uint32_t hk_remote_count(uintptr_t word) { return (uint32_t)(word >> 32); }

/* b pushed on the list `word` describes. */
static inline uintptr_t hk_remote_word_with(uintptr_t segment, const hk_block *b, uintptr_t word)
{
    return ((uintptr_t)(hk_remote_count(word) + 1) << 32) | ((uintptr_t)b - segment);
}

/* Pushes b on pg's own free list (owner thread only). */
static inline void hk_block_push(hk_page *pg, hk_block *b)
{
    hk_block_link(b, pg->free);
    pg->free = b;
}

#endif
