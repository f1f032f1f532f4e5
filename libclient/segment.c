/* Segment box.  Free space inside a segment is a bitmap of slots; dirty_slots
 * marks free slots whose memory is still resident, stamped in the slot's
 * descriptor with the time it became free.
 *
 * Empty segments are retained process-wide (the RETAINED_SEGMENTS knob): a
 * heap's segment that has no page left leaves the heap at its next
 * maintenance for the retained list, where any heap needing a segment finds
 * it before mapping one; its resident slots are purged after the delay like
 * everyone's.  Beyond the knob, empty segments are unmapped. */
#include "segment.h"
#include "chunk_map.h"
#include "knobs.h"
#include "lock.h"
#include "options.h"
#include "os.h"
#include "purge_pace.h"
#include "size_class.h"

#include <string.h>

#define ALL_SLOTS   (~(uint64_t)1)      /* slot 0 is the header */

static hk_lock abandoned_lock = HK_LOCK_INIT;
static hk_segment *abandoned;           /* singly linked through ->next */
static _Atomic uint64_t segments_live, bytes_purged, abandoned_used;

static hk_lock retained_lock = HK_LOCK_INIT;
static hk_segment *retained;            /* singly linked through ->next */
static _Atomic uint32_t retained_count;

uint64_t hk_segment_mapped_count(void) { return atomic_load(&segments_live); }
uint64_t hk_segment_purged_bytes(void) { return atomic_load(&bytes_purged); }
uint64_t hk_segment_abandoned_used(void) { return atomic_load(&abandoned_used); }
uint32_t hk_segment_retained_count(void) { return atomic_load(&retained_count); }

static void link_segment(hk_heap *heap, hk_segment *s)
{
    s->heap = heap;
    s->prev = NULL;
    s->next = heap->segments;
    if (heap->segments) heap->segments->prev = s;
    heap->segments = s;
}

static void unlink_segment(hk_heap *heap, hk_segment *s)
{
    if (s->prev) s->prev->next = s->next; else heap->segments = s->next;
    if (s->next) s->next->prev = s->prev;
    s->next = s->prev = NULL;
}

static void segment_unmap(hk_segment *s)
{
    hk_chunk_set((uintptr_t)s, HK_CHUNK_NONE);
    s->magic = 0;
    atomic_fetch_sub(&segments_live, 1);
    hk_os_unmap(s, HK_SEGMENT_SIZE);
}

/* ---- retained empty segments ------------------------------------------ */

static void purge_segment(hk_segment *s, uint64_t now, uint64_t delay, int force);

/* Keeps an empty segment for reuse if the knob allows one more; else unmaps
 * it.  purge: its free memory goes back first (when it will be kept). */
static void retain_or_unmap(hk_segment *s, int purge)
{
    s->heap = NULL;
    if (purge && atomic_load_explicit(&retained_count, memory_order_relaxed) < hk_knob(HK_KNOB_RETAINED_SEGMENTS))
        purge_segment(s, 0, 0, 1);
    hk_lock_acquire(&retained_lock);
    int keep = atomic_load_explicit(&retained_count, memory_order_relaxed) < hk_knob(HK_KNOB_RETAINED_SEGMENTS);
    if (keep) {
        s->next = retained;
        retained = s;
        atomic_fetch_add_explicit(&retained_count, 1, memory_order_relaxed);
    }
    hk_lock_release(&retained_lock);
    if (!keep) segment_unmap(s);
}

/* The retained segment with the most resident free memory (no faults), or
 * NULL; resident_only: NULL unless it has some. */
static hk_segment *take_retained(int resident_only)
{
    if (atomic_load_explicit(&retained_count, memory_order_relaxed) == 0) return NULL;
    hk_lock_acquire(&retained_lock);
    hk_segment **best = NULL;
    int most = resident_only ? 0 : -1;
    for (hk_segment **at = &retained; *at; at = &(*at)->next) {
        int resident = __builtin_popcountll((*at)->dirty_slots);
        if (resident > most) { most = resident; best = at; }
    }
    hk_segment *s = best ? *best : NULL;
    if (s) {
        *best = s->next;
        atomic_fetch_sub_explicit(&retained_count, 1, memory_order_relaxed);
    }
    hk_lock_release(&retained_lock);
    return s;
}

/* Unmaps retained segments beyond `keep`. */
static void trim_retained_to(uint32_t keep)
{
    hk_segment *surplus = NULL;
    hk_lock_acquire(&retained_lock);
    while (atomic_load_explicit(&retained_count, memory_order_relaxed) > keep) {
        hk_segment *s = retained;
        retained = s->next;
        s->next = surplus;
        surplus = s;
        atomic_fetch_sub_explicit(&retained_count, 1, memory_order_relaxed);
    }
    hk_lock_release(&retained_lock);
    while (surplus) {
        hk_segment *s = surplus;
        surplus = s->next;
        segment_unmap(s);
    }
}

void hk_segment_trim_retained(void)
{
    trim_retained_to(hk_knob(HK_KNOB_RETAINED_SEGMENTS));
}

static void maintain_retained(uint64_t now, int force)
{
    if (atomic_load_explicit(&retained_count, memory_order_relaxed) == 0) return;
    if (force) {
        trim_retained_to(0);
        return;
    }
    uint64_t delay = hk_purge_delay_ns(now);
    hk_lock_acquire(&retained_lock);
    for (hk_segment *s = retained; s; s = s->next) {
        if (s->dirty_slots) purge_segment(s, now, delay, 0);
    }
    hk_lock_release(&retained_lock);
}

uint64_t hk_segment_retained_dirty_bytes(void)
{
    uint64_t slots = 0;
    hk_lock_acquire(&retained_lock);
    for (hk_segment *s = retained; s; s = s->next) slots += (uint64_t)__builtin_popcountll(s->dirty_slots);
    hk_lock_release(&retained_lock);
    return slots * HK_SLOT_SIZE;
}

/* ---- new segments ------------------------------------------------------ */

/* THP's small bit, for a segment about to join heap: huge pages asked for
 * (before the first touch of a fresh mapping, or the kernel places small
 * pages there) or, for a retained one advised earlier, no longer.  Only
 * once the heap owns HK_THP_SMALL_AFTER_SEGMENTS (segment.h): a huge page
 * is resident whole once any of its slots is touched, so a heap of a few
 * MiB would hold up to twice its pages (git: 9 -> 21 MiB peak, sqlite3
 * 8.6 -> 12.4, in bench/programs.sh), while one of hundreds of MiB, where
 * huge pages save the most faults, holds a few percent more.  Per heap,
 * not per process: each thread's heap has a segment of its own, and four
 * threads of a 2 MiB program held 2.2x its peak RSS with a process-wide
 * count (bash bench/arms.sh, cache-thrash). */
static int owns_at_least(const hk_heap *heap, unsigned n)
{
    const hk_segment *o = heap->segments;
    while (n > 0 && o) { o = o->next; n--; }
    return n == 0;
}

static int advise_huge(const hk_heap *heap, void *s, int advised)
{
    int want = (hk_knob(HK_KNOB_THP) & HK_THP_SMALL) && hk_os_thp_mode() == 1 &&
               owns_at_least(heap, HK_THP_SMALL_AFTER_SEGMENTS);
    if (want && !advised) return hk_os_advise_huge(s, HK_SEGMENT_SIZE) == 0;
    if (!want && advised) return hk_os_advise_no_huge(s, HK_SEGMENT_SIZE) != 0;
    return advised;
}

static hk_segment *reuse_retained(hk_heap *heap, int resident_only)
{
    hk_segment *s = take_retained(resident_only);
    if (s) {
        s->huge = (uint8_t)advise_huge(heap, s, s->huge);
        link_segment(heap, s);
    }
    return s;
}

static hk_segment *segment_new(hk_heap *heap)
{
    hk_segment *s = reuse_retained(heap, 0);
    if (s) return s;
    s = hk_os_map_aligned(HK_SEGMENT_SIZE, HK_SEGMENT_SIZE);
    if (s == NULL) return NULL;
    int huge = advise_huge(heap, s, 0);
    s->magic = HK_SEGMENT_MAGIC;
    s->huge = (uint8_t)huge;
    s->free_slots = ALL_SLOTS;
    s->dirty_slots = 0;
    s->purged_slots = 0;
    for (unsigned i = 0; i < HK_SLOTS; i++) s->slot_page[i] = &hk_invalid_page;
    atomic_fetch_add(&segments_live, 1);
    hk_chunk_set((uintptr_t)s, HK_CHUNK_SEGMENT);
    link_segment(heap, s);
    return s;
}

/* First slot of a run of n free slots, or -1. */
static int find_run(uint64_t free, unsigned n)
{
    uint64_t m = free;
    for (unsigned i = 1; i < n && m; i++) m &= free >> i;
    return m ? __builtin_ctzll(m) : -1;
}

static inline uint64_t run_mask(unsigned first, unsigned n)
{
    return (n >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << n) - 1)) << first;
}

/* First run of n free slots of an empty segment, resident ones preferred. */
static int best_run(const hk_segment *s, unsigned n)
{
    int first = find_run(s->dirty_slots & s->free_slots, n);
    return first >= 0 ? first : find_run(s->free_slots, n);
}

/* Gives n free resident slots from `first` back to the OS; a page that
 * takes them again refaults (note_refault). */
static void purge_run(hk_segment *s, unsigned first, unsigned n)
{
    hk_os_purge((uint8_t *)s + (size_t)first * HK_SLOT_SIZE, (size_t)n * HK_SLOT_SIZE);
    atomic_fetch_add_explicit(&bytes_purged, (uint64_t)n * HK_SLOT_SIZE, memory_order_relaxed);
    uint64_t m = run_mask(first, n);
    s->dirty_slots &= ~m;
    s->purged_slots |= m;
    memset(&s->resident_pages[first], 0, n);
}

/* ---- what of a free slot is resident ---------------------------------- */

/* A slot freed by a page of one size class and taken by a page of another
 * keeps resident whatever the first touched, and the second touches more
 * of it where it reaches further.  Taken at random, then, every free slot
 * of a heap whose pages change size (medium ones of a block each, above
 * all) tends to resident whole: grow-shrink under MEDIUM_PAGE_BLOCKS=1
 * crept from 222 to 257 MB over five cycles.  So each free slot remembers
 * how far it may be resident, and a one-slot page takes the slot that
 * fits it best. */

#define SLOT_OS_PAGES ((unsigned)(HK_SLOT_SIZE / HK_OS_PAGE))

/* OS pages of slot `i` of a run that `bytes` from the run's start cover. */
static unsigned pages_in_slot(size_t bytes, unsigned i)
{
    size_t from = (size_t)i * HK_SLOT_SIZE;
    if (bytes <= from) return 0;
    size_t in = bytes - from;
    return in >= HK_SLOT_SIZE ? SLOT_OS_PAGES : (unsigned)((in + HK_OS_PAGE - 1) / HK_OS_PAGE);
}

/* A dirty free slot for a one-slot page. */
typedef struct slot_fit {
    hk_segment *s;
    int slot;
    unsigned pages;     /* its resident_pages */
} slot_fit;

/* Whether a slot with r resident pages suits a page reaching `need` of
 * them better than `best`: the least resident of those resident enough
 * (no fault, least left idle), else the most resident (fewest faults). */
static int fits_better(unsigned r, unsigned need, const slot_fit *best)
{
    if (best->s == NULL) return 1;
    int fits = r >= need, best_fits = best->pages >= need;
    if (fits != best_fits) return fits;
    return fits ? r < best->pages : r > best->pages;
}

/* The heap's dirty free slot for a one-slot page reaching `need` OS pages
 * (s NULL: none): the best fit of the first segment that has one resident
 * enough, else the most resident of all. */
static slot_fit fitting_slot(hk_heap *heap, unsigned need, uint64_t *resident_seen)
{
    slot_fit best = { NULL, -1, 0 };
    for (hk_segment *s = heap->segments; s; s = s->next) {
        uint64_t m = s->dirty_slots & s->free_slots;
        *resident_seen |= m;
        for (; m; m &= m - 1) {
            unsigned i = (unsigned)__builtin_ctzll(m), r = s->resident_pages[i];
            if (fits_better(r, need, &best)) best = (slot_fit){ s, (int)i, r };
        }
        if (best.s != NULL && best.pages >= need) break;
    }
    return best;
}

/* A page leaves its run: each slot may now be resident as far as the page
 * carved (or populated) into it, or as it was before the page took it. */
static void note_touched(hk_segment *s, const hk_page *page, unsigned first, unsigned n)
{
    size_t touched = (size_t)page->capacity * page->block_size;
    if (page->populated != UINT32_MAX && page->populated > touched) touched = page->populated;
    touched += hk_page_color(page);
    for (unsigned i = 0; i < n; i++) {
        unsigned t = pages_in_slot(touched, i);
        if (t > s->resident_pages[first + i]) s->resident_pages[first + i] = (uint8_t)t;
    }
}

/* A page about to fault in `faulting` slots while the heap keeps resident
 * free slots it could not use (too scattered for the page's run): as many
 * of those, idle for the floor delay at least, go back now, so a delay
 * raised by refaults does not raise the peak as well. */
static void trade_resident(hk_heap *heap, const hk_segment *taking, uint64_t run, unsigned faulting,
                           uint64_t resident_seen)
{
    uint64_t now = hk_coarse_ns();
    if (!resident_seen) {
        hk_purge_faulting(now);
        return;
    }
    uint64_t floor = hk_purge_floor_ns();
    for (hk_segment *s = heap->segments; s && faulting; s = s->next) {
        uint64_t idle = s->dirty_slots & s->free_slots & ~(s == taking ? run : 0);
        for (; idle && faulting; idle &= idle - 1) {
            unsigned i = (unsigned)__builtin_ctzll(idle);
            if (now - s->pages[i].idle_since_ns < floor) continue;
            purge_run(s, i, 1);
            faulting--;
        }
    }
    if (faulting) hk_purge_faulting(now);
}

/* Registers an abandoned segment's live pages with the adopting heap. */
void hk_heap_adopt_page(hk_heap *heap, hk_page *page);

static hk_segment *adopt_abandoned(hk_heap *heap)
{
    if (__atomic_load_n(&abandoned, __ATOMIC_RELAXED) == NULL) return NULL;
    hk_lock_acquire(&abandoned_lock);
    hk_segment *s = abandoned;
    if (s) __atomic_store_n(&abandoned, s->next, __ATOMIC_RELAXED);
    hk_lock_release(&abandoned_lock);
    if (s == NULL) return NULL;
    atomic_fetch_sub_explicit(&abandoned_used, s->abandoned_used, memory_order_relaxed);
    s->abandoned_used = 0;
    link_segment(heap, s);
    for (unsigned i = 1; i < HK_SLOTS;) {
        hk_page *pg = s->slot_page[i];
        if (pg == &s->pages[i]) {
            hk_heap_adopt_page(heap, pg);
            i += pg->span;
        } else {
            i++;
        }
    }
    return s;
}

int hk_segment_adopt_one(hk_heap *heap)
{
    return adopt_abandoned(heap) != NULL;
}

/* Slots purged while free are in use again: each OS page of them faults.
 * The most recently idled one tells how long a delay would have kept them. */
static void note_refault(const hk_segment *s, uint64_t slots)
{
    uint64_t idle_since = 0;
    for (uint64_t m = slots; m; m &= m - 1) {
        uint64_t t = s->pages[__builtin_ctzll(m)].idle_since_ns;
        if (t > idle_since) idle_since = t;
    }
    hk_purge_refaulted(hk_coarse_ns(), idle_since);
}

/* Pages of small blocks begin a few cache lines into their slot, by an
 * amount that varies with the class and the slot (slab colouring).  With
 * every page at a 64 KiB boundary, the first blocks of all pages share one
 * offset modulo 4 KiB: their hot blocks crowd the same L1 sets, and a load
 * from one block waits on a store to another that differs from it by a
 * multiple of 4 KiB (4K aliasing: cache-thrash --threads 1 --size 4, which
 * writes two blocks while reading its settings from a third, ran 4-5%
 * slower than under mimalloc).  A whole number of blocks, so that every block
 * keeps the alignment its size gives it; the blocks skipped are never
 * touched. */
#define COLOR_STEP 64u          /* a cache line */
#define COLOR_STEPS 16u
#define COLOR_MAX_BLOCK 512u    /* larger blocks would give up too much of a page */

static uint32_t page_color(const hk_class_info *ci, unsigned cls, unsigned slot)
{
    if (ci->span != 1 || ci->block_size > COLOR_MAX_BLOCK) return 0;
    uint32_t want = ((cls * 7u + slot * 5u) % COLOR_STEPS) * COLOR_STEP;
    return want / ci->block_size * ci->block_size;
}

hk_page *hk_segment_page_alloc(hk_heap *heap, unsigned cls)
{
    const hk_class_info *ci = hk_class_page(cls);
    unsigned n = ci->span;
    hk_segment *s;
    int first = -1;
    uint64_t resident_seen = 0;
    /* Prefer resident (dirty) free slots, the heap's own or a retained
     * segment's: no page faults, and untouched memory stays untouched. */
    if (n == 1) {
        slot_fit fit = fitting_slot(heap, pages_in_slot((size_t)ci->blocks * ci->block_size, 0), &resident_seen);
        s = fit.s;
        first = fit.slot;
    } else {
        for (s = heap->segments; s; s = s->next) {
            resident_seen |= s->dirty_slots & s->free_slots;
            first = find_run(s->dirty_slots & s->free_slots, n);
            if (first >= 0) break;
        }
    }
    if (first < 0 && (s = reuse_retained(heap, 1)) != NULL) first = best_run(s, n);
    if (first < 0) {
        for (s = heap->segments; s; s = s->next) {
            first = find_run(s->free_slots, n);
            if (first >= 0) break;
        }
    }
    while (first < 0) {
        s = adopt_abandoned(heap);
        if (s == NULL) break;
        first = find_run(s->free_slots, n);
    }
    if (first < 0) {
        s = segment_new(heap);
        if (s == NULL) return NULL;
        first = best_run(s, n);
    }
    uint64_t mask = run_mask((unsigned)first, n);
    if (s->purged_slots & mask) note_refault(s, s->purged_slots & mask);
    if (mask & ~s->dirty_slots)
        trade_resident(heap, s, mask, (unsigned)__builtin_popcountll(mask & ~s->dirty_slots), resident_seen);
    s->free_slots &= ~mask;
    s->dirty_slots &= ~mask;
    s->purged_slots &= ~mask;
    s->pages_in_use++;

    hk_page *pg = &s->pages[first];
    pg->free = NULL;
    pg->used = 0;
    pg->capacity = 0;
    pg->populated = 0;
    uint32_t color = page_color(ci, cls, (unsigned)first);
    pg->reserved = ci->blocks - color / ci->block_size;
    pg->block_size = ci->block_size;
    pg->block_inv = hk_block_inv(ci->block_size);
    atomic_store_explicit(&pg->remote, 0, memory_order_relaxed);
    pg->remote_hollowed = 0;
    pg->start = (uint8_t *)s + (size_t)first * HK_SLOT_SIZE + color;
    pg->next = pg->prev = NULL;
    pg->cls = (uint8_t)cls;
    pg->span = (uint8_t)n;
    pg->in_use = 1;
    for (unsigned i = 0; i < n; i++) s->slot_page[first + i] = pg;
    atomic_store_explicit(&pg->heap, heap, memory_order_release);
    return pg;
}

void hk_segment_page_free(hk_heap *heap, hk_page *page)
{
    hk_segment *s = hk_segment_of(page);
    unsigned first = (unsigned)(page - s->pages);
    unsigned n = page->span;
    note_touched(s, page, first, n);
    atomic_store_explicit(&page->heap, NULL, memory_order_relaxed);
    page->in_use = 0;
    page->free = NULL;
    page->block_size = 0;
    for (unsigned i = 0; i < n; i++) s->slot_page[first + i] = &hk_invalid_page;
    uint64_t now = hk_coarse_ns();
    for (unsigned i = 0; i < n; i++) s->pages[first + i].idle_since_ns = now;
    uint64_t mask = run_mask(first, n);
    s->free_slots |= mask;
    s->dirty_slots |= mask;
    s->pages_in_use--;
    (void)heap;
}

static void purge_segment(hk_segment *s, uint64_t now, uint64_t delay, int force)
{
    uint64_t dirty = s->dirty_slots & s->free_slots;
    while (dirty) {
        unsigned i = (unsigned)__builtin_ctzll(dirty);
        unsigned j = i;
        while (j < HK_SLOTS && (dirty & ((uint64_t)1 << j)) &&
               (force || now - s->pages[j].idle_since_ns >= delay)) j++;
        if (j == i) { dirty &= ~((uint64_t)1 << i); continue; }
        purge_run(s, i, j - i);
        dirty &= ~run_mask(i, j - i);
    }
}

void hk_segment_purge_span(const hk_page *page)
{
    hk_segment *s = hk_segment_of(page);
    unsigned first = (unsigned)(page - s->pages);
    uint64_t mask = run_mask(first, page->span);
    if ((s->free_slots & mask) != mask || (s->dirty_slots & mask) != mask) return;
    purge_run(s, first, page->span);
}

void hk_segment_maintain(hk_heap *heap, uint64_t now, int force)
{
    uint64_t delay = hk_purge_delay_ns(now);
    hk_segment *next;
    for (hk_segment *s = heap->segments; s; s = next) {
        next = s->next;
        if (s->dirty_slots & s->free_slots) purge_segment(s, now, delay, force);
        if (s->free_slots == ALL_SLOTS) {
            unlink_segment(heap, s);
            if (force) segment_unmap(s);
            else retain_or_unmap(s, 0);
        }
    }
    maintain_retained(now, force);
}

/* Bytes of the blocks handed out from a segment's pages (mallinfo). */
static uint64_t used_bytes(const hk_segment *s)
{
    uint64_t bytes = 0;
    for (unsigned i = 1; i < HK_SLOTS;) {
        const hk_page *pg = s->slot_page[i];
        if (pg == &s->pages[i]) {
            bytes += (uint64_t)pg->used * pg->block_size;
            i += pg->span;
        } else {
            i++;
        }
    }
    return bytes;
}

void hk_segment_abandon_all(hk_heap *heap)
{
    hk_segment *s;
    while ((s = heap->segments) != NULL) {
        unlink_segment(heap, s);
        /* Purged now: no thread may run maintenance after this one. */
        if (s->free_slots == ALL_SLOTS) {
            retain_or_unmap(s, 1);
            continue;
        }
        purge_segment(s, 0, 0, 1);
        s->heap = NULL;
        s->abandoned_used = used_bytes(s);
        atomic_fetch_add_explicit(&abandoned_used, s->abandoned_used, memory_order_relaxed);
        for (unsigned i = 1; i < HK_SLOTS; i++) {
            hk_page *pg = s->slot_page[i];
            if (pg != &hk_invalid_page) atomic_store_explicit(&pg->heap, NULL, memory_order_release);
        }
        hk_lock_acquire(&abandoned_lock);
        s->next = abandoned;
        __atomic_store_n(&abandoned, s, __ATOMIC_RELAXED);   /* adopters peek without the lock */
        hk_lock_release(&abandoned_lock);
    }
}

void hk_segment_fork_prepare(void)
{
    hk_lock_acquire(&abandoned_lock);
    hk_lock_acquire(&retained_lock);
}
void hk_segment_fork_parent(void)
{
    hk_lock_release(&retained_lock);
    hk_lock_release(&abandoned_lock);
}
void hk_segment_fork_child(void)
{
    hk_lock_reinit(&retained_lock);
    hk_lock_reinit(&abandoned_lock);
}
