/* A bump allocator over 1 MiB mappings.  Bookkeeping is small and long-lived
 * (heaps are recycled through their own free pool), so nothing is freed. */
#include "meta.h"
#include "internal.h"
#include "lock.h"
#include "os.h"

#define META_CHUNK ((size_t)1 << 20)

static hk_lock meta_lock = HK_LOCK_INIT;
static uint8_t *meta_cur, *meta_end;

void *hk_meta_alloc(size_t size)
{
    size = (size + 63) & ~(size_t)63;
    hk_lock_acquire(&meta_lock);
    if (meta_cur == NULL || (size_t)(meta_end - meta_cur) < size) {
        size_t len = size > META_CHUNK ? (size + 4095) & ~(size_t)4095 : META_CHUNK;
        uint8_t *p = hk_os_map_aligned(len, 4096);
        if (p == NULL) { hk_lock_release(&meta_lock); return NULL; }
        meta_cur = p;
        meta_end = p + len;
    }
    void *r = meta_cur;
    meta_cur += size;
    hk_lock_release(&meta_lock);
    return r;
}

void hk_meta_fork_prepare(void) { hk_lock_acquire(&meta_lock); }
void hk_meta_fork_parent(void)  { hk_lock_release(&meta_lock); }
void hk_meta_fork_child(void)   { hk_lock_reinit(&meta_lock); }
