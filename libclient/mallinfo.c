/* mallinfo2() and mallinfo(): glibc's fields, filled from what hakmem knows.
 *
 *   arena     bytes of segments and packed chunks mapped (4 MiB each,
 *             retained empty segments too)
 *   ordblks   free blocks carved in pages (on free lists) and free packed
 *             blocks
 *   smblks    large blocks waiting for reuse: in BigCache or kept by the
 *             thread that freed them
 *   hblks     large blocks handed out (each mapped on its own)
 *   hblkhd    bytes mapped for them
 *   usmblks   0, as in glibc
 *   fsmblks   bytes of the blocks waiting for reuse (mapped, free)
 *   uordblks  bytes of segment and packed blocks handed out (block sizes,
 *             headers included, not requests)
 *   fordblks  arena - uordblks: free blocks, never-carved page room, free
 *             slots and segment headers
 *   keepcost  bytes malloc_trim(0) would give back: free slots still resident
 *
 * As in glibc, uordblks + hblkhd is what the program holds and uordblks +
 * fordblks is arena.  The calling thread's figures are taken at the call;
 * every other thread refreshes its own at its next maintenance after a call
 * (within a millisecond while it allocates), so a call sees them as of the
 * previous one; exited threads' blocks count as of their exit; a block
 * freed by another thread counts as in use until its owner collects it. */
#include "mallinfo.h"
#include "bigcache.h"
#include "heap.h"
#include "large.h"
#include "packed.h"
#include "segment.h"

#include <limits.h>
#include <string.h>

typedef struct heap_figures {
    uint64_t used, free_blocks, dirty;
} heap_figures;

static void add_figures(const hk_heap_counts *counts, const hk_heap_info *info, void *arg)
{
    (void)counts;
    if (info == NULL) return;
    heap_figures *f = arg;
    f->used += atomic_load_explicit(&info->used_bytes, memory_order_relaxed);
    f->free_blocks += atomic_load_explicit(&info->free_blocks, memory_order_relaxed);
    f->dirty += atomic_load_explicit(&info->dirty_bytes, memory_order_relaxed);
}

void hk_mallinfo(struct mallinfo2 *out)
{
    hk_heap *me = hk_tls_heap;
    if (me != &hk_empty_heap) hk_heap_info_publish(me);
    hk_heap_info_request();
    heap_figures f = { 0 };
    hk_heap_visit(add_figures, &f);
    hk_bigcache_stats bc;
    hk_large_stats ls;
    hk_bigcache_get_stats(&bc);
    hk_large_get_stats(&ls);
    hk_packed_figures pk;
    hk_packed_figures_get(&pk);

    memset(out, 0, sizeof *out);
    out->arena = (hk_segment_mapped_count() + pk.chunks) * HK_SEGMENT_SIZE;
    out->uordblks = f.used + hk_segment_abandoned_used() + pk.used_bytes;
    if (out->uordblks > out->arena) out->uordblks = out->arena;
    out->fordblks = out->arena - out->uordblks;
    out->ordblks = f.free_blocks + pk.free_blocks;
    out->keepcost = f.dirty + hk_segment_retained_dirty_bytes();
    uint64_t waiting = bc.cached_bytes + ls.kept_bytes;
    out->smblks = bc.cached_blocks + ls.kept_blocks;
    out->fsmblks = waiting;
    out->hblks = ls.allocs - ls.frees;
    out->hblkhd = ls.mapped_bytes > waiting ? ls.mapped_bytes - waiting : 0;
}

static int clamp_int(size_t v) { return v > INT_MAX ? INT_MAX : (int)v; }

void hk_mallinfo_int(struct mallinfo *out)
{
    struct mallinfo2 m;
    hk_mallinfo(&m);
    out->arena = clamp_int(m.arena);
    out->ordblks = clamp_int(m.ordblks);
    out->smblks = clamp_int(m.smblks);
    out->hblks = clamp_int(m.hblks);
    out->hblkhd = clamp_int(m.hblkhd);
    out->usmblks = clamp_int(m.usmblks);
    out->fsmblks = clamp_int(m.fsmblks);
    out->uordblks = clamp_int(m.uordblks);
    out->fordblks = clamp_int(m.fordblks);
    out->keepcost = clamp_int(m.keepcost);
}
