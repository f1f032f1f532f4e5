/* Segment box: spans of 64 KiB slots for pages, first-fit runs preferring
 * resident slots, purging after the idle delay, release of empty segments,
 * abandonment and adoption.  Driven through its own API on private heaps. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "chunk_map.h"
#include "knobs.h"
#include "options.h"
#include "os.h"
#include "purge_pace.h"
#include "segment.h"
#include "size_class.h"
#include "unit_util.h"

#define ALL_FREE (~(uint64_t)1)
#define MS 1000000ull
#define FAR_FUTURE ((uint64_t)1 << 62)

static uint64_t baseline_segments;
static hk_options saved_opt;

/* The first class whose pages span n slots. */
static unsigned class_with_span(unsigned n)
{
    for (unsigned c = 0; c < HK_CLASSES; c++) if (hk_classes[c].span == n) return c;
    fail_msg("no class spans %u slots", n);
    return 0;
}

static unsigned slot_of(const hk_page *pg)
{
    return (unsigned)(((uintptr_t)pg->start & HK_SEGMENT_MASK) >> HK_SLOT_SHIFT);
}

static int setup(void **state)
{
    hk_heap *h = ut_heap_new();
    saved_opt = hk_opt;
    baseline_segments = hk_segment_mapped_count();
    *state = h;
    return 0;
}

/* Every test leaves its heap without pages; a forced pass must then give
 * every segment back. */
static int teardown(void **state)
{
    hk_heap *h = *state;
    hk_segment_maintain(h, hk_coarse_ns(), 1);
    int leaked = h->segments != NULL || hk_segment_mapped_count() != baseline_segments;
    ut_heap_free(h);
    hk_opt = saved_opt;
    hk_knobs_reset();
    return leaked ? -1 : 0;
}

static void test_first_page_maps_segment(void **state)
{
    hk_heap *h = *state;
    unsigned cls = class_with_span(2);
    hk_page *pg = hk_segment_page_alloc(h, cls);
    assert_non_null(pg);
    assert_int_equal(hk_segment_mapped_count(), baseline_segments + 1);
    hk_segment *s = hk_segment_of(pg->start);
    assert_ptr_equal(h->segments, s);
    assert_true(s->magic == HK_SEGMENT_MAGIC);
    assert_ptr_equal(s->heap, h);
    assert_int_equal(hk_chunk_kind((uintptr_t)s), HK_CHUNK_SEGMENT);
    /* Slot 0 is the header: the first page starts at slot 1. */
    assert_ptr_equal(pg, &s->pages[1]);
    assert_ptr_equal(pg->start, (uint8_t *)s + HK_SLOT_SIZE);
    assert_int_equal(pg->span, 2);
    assert_int_equal(pg->cls, cls);
    assert_int_equal(pg->block_size, hk_classes[cls].block_size);
    assert_int_equal(pg->reserved, hk_classes[cls].blocks);
    assert_int_equal(pg->capacity, 0);
    assert_int_equal(pg->used, 0);
    assert_null(pg->free);
    assert_null(atomic_load(&pg->remote));
    assert_int_equal(pg->in_use, 1);
    assert_ptr_equal(atomic_load(&pg->heap), h);
    assert_ptr_equal(s->slot_page[1], pg);
    assert_ptr_equal(s->slot_page[2], pg);
    assert_ptr_equal(s->slot_page[3], &hk_invalid_page);
    assert_ptr_equal(s->slot_page[0], &hk_invalid_page);
    assert_true(s->free_slots == (ALL_FREE & ~(uint64_t)6));
    assert_int_equal(s->pages_in_use, 1);

    hk_segment_page_free(h, pg);
    assert_int_equal(pg->in_use, 0);
    assert_null(atomic_load(&pg->heap));
    assert_ptr_equal(s->slot_page[1], &hk_invalid_page);
    assert_ptr_equal(s->slot_page[2], &hk_invalid_page);
    assert_true(s->free_slots == ALL_FREE);
    assert_true((s->dirty_slots & 6) == 6);          /* freed, still resident */
    assert_int_equal(s->pages_in_use, 0);

    hk_segment_maintain(h, hk_coarse_ns(), 1);
    assert_null(h->segments);
    assert_int_equal(hk_segment_mapped_count(), baseline_segments);
    assert_int_equal(hk_chunk_kind((uintptr_t)s), HK_CHUNK_NONE);
}

/* One-slot pages of small blocks begin past their slot's start by a whole
 * number of blocks, at offsets modulo 4 KiB that differ from class to
 * class and slot to slot; their blocks stay inside the slot and keep the
 * alignment of their size; pages of larger blocks begin at the slot. */
static void test_small_pages_coloured(void **state)
{
    hk_heap *h = *state;
    hk_page *pg[HK_SLOTS];
    unsigned n = 0, offsets = 0;
    uint64_t seen = 0;                               /* bit k: an offset in cache line k of 4 KiB */
    for (unsigned c = 0; c < HK_CLASSES && n < HK_SLOTS - 1; c++) {
        const hk_class_info *ci = &hk_classes[c];
        if (ci->span != 1 || ci->block_size > 512) continue;
        for (unsigned k = 0; k < 2; k++) {           /* two slots of each class */
            hk_page *p = pg[n++] = hk_segment_page_alloc(h, c);
            assert_non_null(p);
            uintptr_t slot = (uintptr_t)p->start & ~(uintptr_t)(HK_SLOT_SIZE - 1);
            size_t color = (uintptr_t)p->start - slot;
            assert_int_equal(color, hk_page_color(p));
            assert_true(color < HK_OS_PAGE);
            assert_int_equal(color % ci->block_size, 0);
            assert_int_equal(p->reserved, ci->blocks - color / ci->block_size);
            assert_true(color + (size_t)p->reserved * p->block_size <= HK_SLOT_SIZE);
            unsigned line = (unsigned)((uintptr_t)p->start % HK_OS_PAGE / 64);
            if (!(seen & ((uint64_t)1 << line))) offsets++;
            seen |= (uint64_t)1 << line;
        }
    }
    assert_true(offsets >= 8);
    unsigned big = hk_size_class(4096);
    assert_int_equal(hk_classes[big].span, 1);
    hk_page *p = hk_segment_page_alloc(h, big);
    assert_int_equal((uintptr_t)p->start & (HK_SLOT_SIZE - 1), 0);
    assert_int_equal(hk_page_color(p), 0);
    assert_int_equal(p->reserved, hk_classes[big].blocks);
    hk_segment_page_free(h, p);
    for (unsigned i = 0; i < n; i++) hk_segment_page_free(h, pg[i]);
}

/* First fit over runs of free slots: pages pack, a full segment spills into
 * a new one, a hole takes a span only if it is long enough. */
static void test_find_run(void **state)
{
    hk_heap *h = *state;
    unsigned c1 = class_with_span(1), c2 = class_with_span(2), c3 = class_with_span(3);
    hk_page *pg[HK_SLOTS];
    for (unsigned i = 1; i < HK_SLOTS; i++) {
        pg[i] = hk_segment_page_alloc(h, c1);
        assert_non_null(pg[i]);
        assert_int_equal(slot_of(pg[i]), i);
    }
    hk_segment *a = hk_segment_of(pg[1]->start);
    for (unsigned i = 1; i < HK_SLOTS; i++) assert_ptr_equal(hk_segment_of(pg[i]->start), a);
    assert_true(a->free_slots == 0);
    assert_int_equal(hk_segment_mapped_count(), baseline_segments + 1);

    /* Segment full: the next page comes from a new segment. */
    hk_page *spill = hk_segment_page_alloc(h, c1);
    assert_non_null(spill);
    hk_segment *b = hk_segment_of(spill->start);
    assert_ptr_not_equal(b, a);
    assert_int_equal(slot_of(spill), 1);
    assert_int_equal(hk_segment_mapped_count(), baseline_segments + 2);

    /* A two-slot hole in a takes a two-slot page. */
    hk_segment_page_free(h, pg[5]);
    hk_segment_page_free(h, pg[6]);
    hk_page *two = hk_segment_page_alloc(h, c2);
    assert_ptr_equal(hk_segment_of(two->start), a);
    assert_int_equal(slot_of(two), 5);
    assert_int_equal(two->span, 2);

    /* Two separate one-slot holes cannot. */
    hk_segment_page_free(h, pg[10]);
    hk_segment_page_free(h, pg[12]);
    hk_page *two_b = hk_segment_page_alloc(h, c2);
    assert_ptr_equal(hk_segment_of(two_b->start), b);
    assert_true(a->free_slots == (((uint64_t)1 << 10) | ((uint64_t)1 << 12)));

    /* Joined into a run of three, they take a three-slot page. */
    hk_segment_page_free(h, pg[11]);
    hk_page *three = hk_segment_page_alloc(h, c3);
    assert_ptr_equal(hk_segment_of(three->start), a);
    assert_int_equal(slot_of(three), 10);
    assert_true(a->free_slots == 0);
    for (unsigned i = 10; i < 13; i++) assert_ptr_equal(a->slot_page[i], three);

    hk_segment_page_free(h, three);
    hk_segment_page_free(h, two_b);
    hk_segment_page_free(h, two);
    hk_segment_page_free(h, spill);
    for (unsigned i = 1; i < HK_SLOTS; i++) {
        if (i == 5 || i == 6 || (i >= 10 && i <= 12)) continue;
        hk_segment_page_free(h, pg[i]);
    }
    assert_true(a->free_slots == ALL_FREE);
    assert_true(b->free_slots == ALL_FREE);
}

/* Resident free slots are reused before purged ones, even when a purged
 * slot comes first. */
static void test_resident_slots_preferred(void **state)
{
    hk_heap *h = *state;
    unsigned c1 = class_with_span(1);
    hk_page *pg[11];
    for (unsigned i = 1; i <= 10; i++) pg[i] = hk_segment_page_alloc(h, c1);
    hk_segment *s = hk_segment_of(pg[1]->start);
    hk_segment_page_free(h, pg[2]);
    hk_segment_maintain(h, FAR_FUTURE, 0);            /* slot 2: free and purged */
    assert_true((s->dirty_slots & 4) == 0);
    assert_true((s->free_slots & 4) == 4);
    hk_segment_page_free(h, pg[8]);                   /* slot 8: free and resident */
    hk_page *again = hk_segment_page_alloc(h, c1);
    assert_int_equal(slot_of(again), 8);
    hk_page *next = hk_segment_page_alloc(h, c1);     /* then the lowest free one */
    assert_int_equal(slot_of(next), 2);
    hk_segment_page_free(h, again);
    hk_segment_page_free(h, next);
    for (unsigned i = 1; i <= 10; i++) if (i != 2 && i != 8) hk_segment_page_free(h, pg[i]);
}

/* A page of one block (MEDIUM_PAGE_BLOCKS=1) takes the resident free slot
 * that fits it best: the least resident of those resident as far as it
 * reaches, else the most resident.  Taking the first would leave a slot
 * once held by a 60 KiB block pinned whole under a 40 KiB one, and every
 * slot resident whole in time. */
static void test_one_slot_page_takes_the_fitting_slot(void **state)
{
    hk_heap *h = *state;
    uint32_t k[HK_KNOBS] = { [HK_KNOB_MEDIUM_PAGE_BLOCKS] = 1 };
    hk_knobs_apply(1u << HK_KNOB_MEDIUM_PAGE_BLOCKS, k);
    unsigned c60 = hk_size_class(60 * 1024), c40 = hk_size_class(40 * 1024);
    assert_int_equal(hk_class_page(c60)->span, 1);
    assert_int_equal(hk_class_page(c40)->span, 1);
    assert_int_equal(hk_class_page(c40)->blocks, 1);
    hk_page *big = hk_segment_page_alloc(h, c60), *mid = hk_segment_page_alloc(h, c40);
    hk_page *small = hk_segment_page_alloc(h, hk_size_class(20 * 1024));
    unsigned big_slot = slot_of(big), mid_slot = slot_of(mid), small_slot = slot_of(small);
    assert_true(big_slot < mid_slot && mid_slot < small_slot);
    big->capacity = big->reserved;              /* each carved whole */
    mid->capacity = mid->reserved;
    small->capacity = 1;                        /* one 20 KiB block: 5 OS pages */
    hk_segment_page_free(h, big);
    hk_segment_page_free(h, mid);
    hk_segment_page_free(h, small);
    hk_page *fit40 = hk_segment_page_alloc(h, c40);
    assert_int_equal(slot_of(fit40), mid_slot);
    hk_page *fit60 = hk_segment_page_alloc(h, c60);
    assert_int_equal(slot_of(fit60), big_slot);
    /* Only the 20 KiB slot is left, resident short of a 60 KiB page's
     * reach: taken all the same (fewest faults), not a purged or fresh one. */
    hk_page *short_fit = hk_segment_page_alloc(h, c60);
    assert_int_equal(slot_of(short_fit), small_slot);
    hk_segment_page_free(h, fit40);
    hk_segment_page_free(h, fit60);
    hk_segment_page_free(h, short_fit);
}

static int all_bytes(const uint8_t *p, size_t n, uint8_t v)
{
    for (size_t i = 0; i < n; i += 512) if (p[i] != v) return 0;
    return p[n - 1] == v;
}

/* HAKMEM_PURGE_DELAY_MS (the PURGE_DELAY_MS knob): a freed span stays
 * resident until it has been idle that long, then its pages go back to the
 * OS (and read as zero). */
static void test_purge_after_delay(void **state)
{
    hk_heap *h = *state;
    setenv("HAKMEM_PURGE_DELAY_MS", "50", 1);
    hk_options_load();
    unsetenv("HAKMEM_PURGE_DELAY_MS");
    assert_int_equal(hk_knob(HK_KNOB_PURGE_DELAY_MS), 50);

    unsigned c4 = class_with_span(4);
    hk_page *keep = hk_segment_page_alloc(h, class_with_span(1));   /* keeps the segment busy */
    hk_page *pg = hk_segment_page_alloc(h, c4);
    hk_segment *s = hk_segment_of(pg->start);
    size_t len = 4 * HK_SLOT_SIZE;
    memset(pg->start, 0xA5, len);
    uint8_t *mem = pg->start;
    unsigned first = slot_of(pg);
    uint64_t mask = (uint64_t)0xF << first;
    uint64_t purged0 = hk_segment_purged_bytes();

    hk_segment_page_free(h, pg);
    uint64_t t = s->pages[first].idle_since_ns;
    assert_true(t != 0);

    hk_segment_maintain(h, t + 49 * MS, 0);
    assert_true((s->dirty_slots & mask) == mask);
    assert_int_equal(hk_segment_purged_bytes(), purged0);
    assert_true(all_bytes(mem, len, 0xA5));

    hk_segment_maintain(h, t + 51 * MS, 0);
    assert_true((s->dirty_slots & mask) == 0);
    assert_int_equal(hk_segment_purged_bytes(), purged0 + len);
    assert_true(all_bytes(mem, len, 0));
    assert_ptr_equal(h->segments, s);                 /* not empty: stays mapped */

    /* Delay 0: purged on the first pass. */
    ut_set_knob(HK_KNOB_PURGE_DELAY_MS, 0);
    hk_page *pg2 = hk_segment_page_alloc(h, c4);
    memset(pg2->start, 0x5A, len);
    hk_segment_page_free(h, pg2);
    hk_segment_maintain(h, hk_coarse_ns(), 0);
    assert_int_equal(hk_segment_purged_bytes(), purged0 + 2 * len);
    assert_true(all_bytes(pg2->start, len, 0));

    /* force purges however recent. */
    ut_set_knob(HK_KNOB_PURGE_DELAY_MS, 60000);
    hk_page *pg3 = hk_segment_page_alloc(h, c4);
    hk_segment_page_free(h, pg3);
    hk_segment_maintain(h, hk_coarse_ns(), 0);
    assert_int_equal(hk_segment_purged_bytes(), purged0 + 2 * len);
    hk_segment_page_free(h, keep);
    hk_segment_maintain(h, hk_coarse_ns(), 1);
    assert_int_equal(hk_segment_purged_bytes(), purged0 + 3 * len + HK_SLOT_SIZE);
    assert_null(h->segments);
}

/* A span purged and then used again faults in every page: the delay rises
 * to twice the time the span had been idle, so the next span idle that long
 * stays resident; after 16 quiet delays it halves, down to the floor. */
static void test_refault_raises_delay(void **state)
{
    hk_heap *h = *state;
    ut_set_knob(HK_KNOB_PURGE_DELAY_MS, 20);
    hk_opt.purge_delay_max_ms = 1000;
    hk_purge_pace_reset();
    uint64_t refaults0 = hk_purge_refaults();
    unsigned c1 = class_with_span(1);
    hk_page *keep = hk_segment_page_alloc(h, c1);
    hk_page *pg = hk_segment_page_alloc(h, c1);
    hk_segment *s = hk_segment_of(pg->start);
    unsigned slot = slot_of(pg);
    uint64_t bit = (uint64_t)1 << slot;

    hk_segment_page_free(h, pg);
    uint64_t now = hk_coarse_ns();
    s->pages[slot].idle_since_ns = now - 300 * MS;    /* it fell idle 300 ms ago */
    hk_segment_maintain(h, now, 0);
    assert_true((s->dirty_slots & bit) == 0);
    assert_true((s->purged_slots & bit) == bit);
    assert_int_equal(hk_purge_refaults(), refaults0);

    hk_page *again = hk_segment_page_alloc(h, c1);
    assert_int_equal(slot_of(again), slot);
    assert_true((s->purged_slots & bit) == 0);
    assert_int_equal(hk_purge_refaults(), refaults0 + 1);
    /* The refault itself faulted memory nothing resident paid for: for the
     * floor delay the floor holds, then the raised delay. */
    now = hk_coarse_ns();
    assert_int_equal(hk_purge_delay_ns(now), 20 * MS);
    uint64_t delay = hk_purge_delay_ns(now + 25 * MS);
    print_message("refault after 300 ms idle: delay %llu ms\n", (unsigned long long)(delay / MS));
    assert_true(delay >= 600 * MS && delay <= 660 * MS);

    hk_segment_page_free(h, again);
    now = hk_coarse_ns() + 25 * MS;
    s->pages[slot].idle_since_ns = now - 300 * MS;
    hk_segment_maintain(h, now, 0);                   /* idle 300 ms < the raised delay: kept */
    assert_true((s->dirty_slots & bit) == bit);
    hk_segment_maintain(h, now + 400 * MS, 0);        /* idle 700 ms: purged */
    assert_true((s->dirty_slots & bit) == 0);

    /* A heap faulting fresh memory puts the floor back for the floor delay. */
    hk_purge_faulting(now + 500 * MS);
    assert_int_equal(hk_purge_delay_ns(now + 510 * MS), 20 * MS);
    assert_true(hk_purge_delay_ns(now + 521 * MS) >= 600 * MS);

    /* Quiet: it halves each 16 delays, to the floor and no lower. */
    uint64_t t = now + 600 * MS;
    for (unsigned i = 0; i < 8; i++) {
        uint64_t before = hk_purge_delay_ns(t);
        t += 16 * before;
        uint64_t after = hk_purge_delay_ns(t);
        if (before > 20 * MS) assert_true(after == before / 2 || after == 20 * MS);
        else assert_true(after == 20 * MS);
    }
    assert_int_equal(hk_purge_delay_ns(t), 20 * MS);
    hk_segment_page_free(h, keep);
}

/* What a refault cannot raise: idle a ceiling or longer (no delay up to it
 * would have kept the span), a ceiling at or under the floor (adaptation
 * off), a floor of 0 (memory goes back at once); and a new floor starts
 * from itself. */
static void test_refault_bounds(void **state)
{
    (void)state;
    ut_set_knob(HK_KNOB_PURGE_DELAY_MS, 20);
    hk_opt.purge_delay_max_ms = 1000;
    hk_purge_pace_reset();
    uint64_t now = hk_coarse_ns() + 10000 * MS;
    uint64_t refaults0 = hk_purge_refaults();

    hk_purge_refaulted(now, now - 1000 * MS);
    assert_int_equal(hk_purge_delay_ns(now), 20 * MS);
    assert_int_equal(hk_purge_refaults(), refaults0);

    hk_purge_refaulted(now, now - 900 * MS);          /* twice 900 ms: capped */
    assert_int_equal(hk_purge_delay_ns(now), 1000 * MS);
    assert_int_equal(hk_purge_refaults(), refaults0 + 1);
    hk_purge_refaulted(now, now - 100 * MS);          /* counted; never lowers it */
    assert_int_equal(hk_purge_delay_ns(now), 1000 * MS);
    assert_int_equal(hk_purge_refaults(), refaults0 + 2);

    ut_set_knob(HK_KNOB_PURGE_DELAY_MS, 30);          /* a new floor */
    assert_int_equal(hk_purge_delay_ns(now), 30 * MS);

    hk_opt.purge_delay_max_ms = 30;
    hk_purge_refaulted(now, now - 100 * MS);
    assert_int_equal(hk_purge_delay_ns(now), 30 * MS);

    hk_opt.purge_delay_max_ms = 1000;
    ut_set_knob(HK_KNOB_PURGE_DELAY_MS, 0);
    hk_purge_refaulted(now, now - 100 * MS);
    assert_int_equal(hk_purge_delay_ns(now), 0);
    assert_int_equal(hk_purge_refaults(), refaults0 + 2);
}

/* A page whose run holds no resident slot faults in fresh ones: as many of
 * the heap's resident free slots as it faults, idle for the floor delay,
 * go back at once; a slot freed just now stays. */
static void test_fresh_run_trades_idle_resident_slots(void **state)
{
    hk_heap *h = *state;
    ut_set_knob(HK_KNOB_PURGE_DELAY_MS, 20);
    hk_purge_pace_reset();
    unsigned c1 = class_with_span(1), c8 = class_with_span(8);
    hk_page *pg[12];
    for (unsigned i = 1; i <= 11; i++) pg[i] = hk_segment_page_alloc(h, c1);
    hk_segment *s = hk_segment_of(pg[1]->start);
    assert_int_equal(slot_of(pg[1]), 1);
    uint64_t now = hk_coarse_ns();
    uint64_t old = 0;
    for (unsigned i = 2; i <= 8; i += 2) {            /* scattered, idle 100 ms */
        hk_segment_page_free(h, pg[i]);
        s->pages[i].idle_since_ns = now - 100 * MS;
        old |= (uint64_t)1 << i;
    }
    hk_segment_page_free(h, pg[9]);                   /* idle since now */
    uint64_t young = (uint64_t)1 << 9;
    uint64_t purged0 = hk_segment_purged_bytes();

    hk_page *big = hk_segment_page_alloc(h, c8);      /* eight fresh slots from 12 */
    assert_int_equal(slot_of(big), 12);
    assert_true((s->dirty_slots & old) == 0);
    assert_true((s->purged_slots & old) == old);
    assert_true((s->dirty_slots & young) == young);
    assert_int_equal(hk_segment_purged_bytes(), purged0 + 4 * HK_SLOT_SIZE);

    hk_page *small = hk_segment_page_alloc(h, c1);    /* a resident slot fits: nothing traded */
    assert_int_equal(slot_of(small), 9);
    assert_int_equal(hk_segment_purged_bytes(), purged0 + 4 * HK_SLOT_SIZE);

    hk_segment_page_free(h, small);
    hk_segment_page_free(h, big);
    for (unsigned i = 1; i <= 11; i++) if (i == 1 || i == 3 || i == 5 || i == 7 || i >= 10) hk_segment_page_free(h, pg[i]);
}

/* Empty segments leave their heap at its next maintenance for the retained
 * list, up to RETAINED_SEGMENTS of them (the rest are unmapped), with their
 * memory resident until the purge delay; a heap needing a segment takes the
 * one with the most resident memory before mapping any; a forced pass
 * unmaps them all. */
static void test_retain_empty_segments(void **state)
{
    hk_heap *h = *state;
    ut_set_knob(HK_KNOB_PURGE_DELAY_MS, 50);
    ut_set_knob(HK_KNOB_RETAINED_SEGMENTS, 2);
    uint32_t retained0 = hk_segment_retained_count();
    assert_int_equal(retained0, 0);
    unsigned c1 = class_with_span(1);
    enum { N = 3 * (HK_SLOTS - 1) + 1 };              /* four segments */
    hk_page **pg = calloc(N, sizeof *pg);
    hk_segment *segs[4];
    unsigned nseg = 0;
    for (unsigned i = 0; i < N; i++) {
        pg[i] = hk_segment_page_alloc(h, c1);
        assert_non_null(pg[i]);
        hk_segment *s = hk_segment_of(pg[i]->start);
        if (nseg == 0 || segs[nseg - 1] != s) { assert_true(nseg < 4); segs[nseg++] = s; }
    }
    assert_int_equal(nseg, 4);
    assert_int_equal(hk_segment_mapped_count(), baseline_segments + 4);
    for (unsigned i = 0; i < N; i++) hk_segment_page_free(h, pg[i]);
    free(pg);
    uint64_t t = hk_coarse_ns();

    hk_segment_maintain(h, t, 0);                     /* two retained, resident; two unmapped */
    assert_null(h->segments);
    assert_int_equal(hk_segment_retained_count(), 2);
    assert_int_equal(hk_segment_mapped_count(), baseline_segments + 2);
    uint64_t resident = hk_segment_retained_dirty_bytes();
    assert_true(resident >= (HK_SLOTS - 1) * HK_SLOT_SIZE);    /* a full segment at least */

    hk_segment_maintain(h, t + 1000 * MS, 0);         /* idle past the delay: purged, kept */
    assert_int_equal(hk_segment_retained_count(), 2);
    assert_int_equal(hk_segment_retained_dirty_bytes(), 0);

    /* Taken back before mapping, then handed over again. */
    hk_page *again = hk_segment_page_alloc(h, c1);
    hk_segment *s = hk_segment_of(again->start);
    assert_int_equal(hk_segment_mapped_count(), baseline_segments + 2);
    assert_int_equal(hk_segment_retained_count(), 1);
    assert_true(s == segs[0] || s == segs[1] || s == segs[2] || s == segs[3]);
    assert_true(s->magic == HK_SEGMENT_MAGIC);
    hk_segment_page_free(h, again);
    hk_segment_maintain(h, t + 2000 * MS, 0);
    assert_int_equal(hk_segment_retained_count(), 2);

    /* Lowering the knob unmaps the surplus at once. */
    ut_set_knob(HK_KNOB_RETAINED_SEGMENTS, 1);
    assert_int_equal(hk_segment_retained_count(), 1);
    assert_int_equal(hk_segment_mapped_count(), baseline_segments + 1);

    hk_segment_maintain(h, t + 2000 * MS, 1);
    assert_int_equal(hk_segment_retained_count(), 0);
    assert_int_equal(hk_segment_mapped_count(), baseline_segments);
    for (unsigned i = 0; i < 4; i++) assert_int_equal(hk_chunk_kind((uintptr_t)segs[i]), HK_CHUNK_NONE);
}

/* RETAINED_SEGMENTS 0: an empty segment goes back to the OS at the heap's
 * next maintenance, resident or not. */
static void test_release_empty_segments(void **state)
{
    hk_heap *h = *state;
    ut_set_knob(HK_KNOB_RETAINED_SEGMENTS, 0);
    ut_set_knob(HK_KNOB_PURGE_DELAY_MS, 60000);
    hk_page *pg = hk_segment_page_alloc(h, class_with_span(1));
    hk_segment *s = hk_segment_of(pg->start);
    assert_int_equal(hk_segment_mapped_count(), baseline_segments + 1);
    hk_segment_page_free(h, pg);
    hk_segment_maintain(h, hk_coarse_ns(), 0);
    assert_null(h->segments);
    assert_int_equal(hk_segment_retained_count(), 0);
    assert_int_equal(hk_segment_mapped_count(), baseline_segments);
    assert_int_equal(hk_chunk_kind((uintptr_t)s), HK_CHUNK_NONE);
}

/* Abandoning: empty segments go back to the OS (with no segment retained),
 * the others wait (purged) for another heap, which adopts them with their
 * live pages. */
static void test_abandon_and_adopt(void **state)
{
    hk_heap *h2 = *state;
    ut_set_knob(HK_KNOB_RETAINED_SEGMENTS, 0);
    hk_heap *h1 = ut_heap_new();
    unsigned c1 = class_with_span(1);
    hk_page *pg[HK_SLOTS];
    for (unsigned i = 1; i < HK_SLOTS; i++) pg[i] = hk_segment_page_alloc(h1, c1);
    hk_page *in_b = hk_segment_page_alloc(h1, c1);
    hk_segment *a = hk_segment_of(pg[1]->start), *b = hk_segment_of(in_b->start);
    assert_ptr_not_equal(a, b);
    assert_int_equal(hk_segment_mapped_count(), baseline_segments + 2);
    hk_segment_page_free(h1, in_b);                  /* b: empty */
    for (unsigned i = 1; i < HK_SLOTS; i++) if (i != 3) hk_segment_page_free(h1, pg[i]);
    hk_page *live = pg[3];
    live->used = 1;                                  /* one block still handed out */
    uint64_t purged0 = hk_segment_purged_bytes();

    hk_segment_abandon_all(h1);
    assert_null(h1->segments);
    assert_int_equal(hk_segment_mapped_count(), baseline_segments + 1);
    assert_int_equal(hk_chunk_kind((uintptr_t)b), HK_CHUNK_NONE);
    assert_null(a->heap);
    assert_null(atomic_load(&live->heap));
    assert_int_equal(live->in_use, 1);
    assert_true((a->dirty_slots & a->free_slots) == 0);
    assert_int_equal(hk_segment_purged_bytes(), purged0 + (HK_SLOTS - 2) * HK_SLOT_SIZE);
    ut_heap_free(h1);

    /* h2 has no segment: it adopts a rather than mapping a new one. */
    hk_page *np = hk_segment_page_alloc(h2, c1);
    assert_non_null(np);
    assert_ptr_equal(hk_segment_of(np->start), a);
    assert_int_equal(hk_segment_mapped_count(), baseline_segments + 1);
    assert_ptr_equal(a->heap, h2);
    assert_ptr_equal(h2->segments, a);
    assert_ptr_equal(atomic_load(&live->heap), h2);
    assert_ptr_equal(h2->queue[live->cls], live);     /* the live page joins its queue */

    hk_segment_page_free(h2, np);
    live->used = 0;
    hk_segment_page_free(h2, live);
    h2->queue[live->cls] = NULL;
}

/* A page whose blocks were all freed (remotely) while its segment was
 * abandoned goes back as a free span on adoption instead of joining a queue. */
static void test_adopt_frees_emptied_pages(void **state)
{
    hk_heap *h2 = *state;
    hk_heap *h1 = ut_heap_new();
    unsigned c1 = class_with_span(1);
    hk_page *keep = hk_segment_page_alloc(h1, c1);
    hk_page *emptied = hk_segment_page_alloc(h1, c1);
    keep->used = 1;
    emptied->used = 1;
    hk_segment *a = hk_segment_of(keep->start);
    hk_segment_abandon_all(h1);
    ut_heap_free(h1);
    emptied->used = 0;                               /* its last block came back remotely */

    assert_int_equal(hk_segment_adopt_one(h2), 1);
    assert_ptr_equal(a->heap, h2);
    assert_int_equal(emptied->in_use, 0);
    assert_ptr_equal(a->slot_page[(emptied->start - (uint8_t *)a) / HK_SLOT_SIZE], &hk_invalid_page);
    assert_ptr_equal(h2->queue[c1], keep);
    assert_ptr_equal(keep->next, keep);              /* the only page in its queue */

    keep->used = 0;
    hk_segment_page_free(h2, keep);
    h2->queue[c1] = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_page_maps_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_pages_coloured, setup, teardown),
        cmocka_unit_test_setup_teardown(test_find_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resident_slots_preferred, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_slot_page_takes_the_fitting_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge_after_delay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refault_raises_delay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refault_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fresh_run_trades_idle_resident_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retain_empty_segments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_empty_segments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abandon_and_adopt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adopt_frees_emptied_pages, setup, teardown),
    };
    return cmocka_run_group_tests_name("segment", tests, NULL, NULL);
}
