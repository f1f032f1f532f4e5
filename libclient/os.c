/* OS layer.  Aligned mappings first try a hinted address that is already
 * aligned (one system call); only when the kernel places it elsewhere do we
 * over-map and trim. */
#include "os.h"
#include "counters.h"
#include "internal.h"
#include "vdso.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define HK_HINT_BASE ((uintptr_t)0x200000000000ull)   /* 32 TiB: far from brk and libraries */
#define HK_HINT_END  ((uintptr_t)0x600000000000ull)
static _Atomic uintptr_t hk_hint = HK_HINT_BASE;

/* Every system call the allocator makes for memory, counted and timed. */
static void *map_at(void *hint, size_t size)
{
    uint64_t t0 = hk_ticks();
    void *p = mmap(hint, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    hk_counters_syscall(HK_SYS_MMAP, hk_ticks() - t0);
    return p == MAP_FAILED ? NULL : p;
}

static int unmap(void *p, size_t size)
{
    uint64_t t0 = hk_ticks();
    int rc = munmap(p, size);
    hk_counters_syscall(HK_SYS_MUNMAP, hk_ticks() - t0);
    return rc;
}

static int advise(void *p, size_t size, int advice)
{
    uint64_t t0 = hk_ticks();
    int rc = madvise(p, size, advice);
    hk_counters_syscall(HK_SYS_MADVISE, hk_ticks() - t0);
    return rc;
}

static void *hinted_address(size_t size, size_t align)
{
    size_t step = (size + align - 1) & ~(align - 1);
    uintptr_t h = atomic_fetch_add_explicit(&hk_hint, step, memory_order_relaxed);
    h = (h + align - 1) & ~(uintptr_t)(align - 1);
    if (h + step > HK_HINT_END) {           /* wrap: old ranges are mostly free again */
        atomic_store_explicit(&hk_hint, HK_HINT_BASE, memory_order_relaxed);
        return NULL;
    }
    return (void *)h;
}

void *hk_os_map_aligned(size_t size, size_t align)
{
    void *hint = hinted_address(size, align);
    if (hint) {
        void *p = map_at(hint, size);
        if (p == NULL) return NULL;
        if (((uintptr_t)p & (align - 1)) == 0) return p;
        unmap(p, size);
    }
    size_t over = size + align;
    uint8_t *raw = map_at(NULL, over);
    if (raw == NULL) return NULL;
    uintptr_t start = ((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1);
    size_t head = start - (uintptr_t)raw;
    size_t tail = over - head - size;
    if (head) unmap(raw, head);
    if (tail) unmap((uint8_t *)start + size, tail);
    return (void *)start;
}

void hk_os_unmap(void *p, size_t size)
{
    if (unmap(p, size) != 0) hk_log(1, "munmap(%p, %zu) failed: errno %d", p, size, errno);
}

void hk_os_purge(void *p, size_t size)
{
    advise(p, size, MADV_DONTNEED);
}

void *hk_os_remap_aligned(void *p, size_t old_size, size_t new_size, size_t align)
{
    void *dest = hk_os_map_aligned(new_size, align);
    if (dest == NULL) return NULL;
    uint64_t t0 = hk_ticks();
    void *moved = mremap(p, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, dest);
    hk_counters_syscall(HK_SYS_MREMAP, hk_ticks() - t0);
    if (moved == MAP_FAILED) {
        unmap(dest, new_size);
        return NULL;
    }
    return moved;
}

int hk_os_move(void *from, size_t size, void *to)
{
    uint64_t t0 = hk_ticks();
    void *moved = mremap(from, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, to);
    int err = moved == MAP_FAILED ? errno : 0;
    hk_counters_syscall(HK_SYS_MREMAP, hk_ticks() - t0);
    return -err;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23          /* Linux 5.14 */
#endif

int hk_os_populate(void *p, size_t size)
{
    return advise(p, size, MADV_POPULATE_WRITE);
}

#define PROBE_PAGES 16

/* Pages faulted in, moved PROBE_PAGES pages along (one entry at a time: a
 * small range never moves a whole page-table page), then read twice: the
 * first pass pays what a moved page costs, the second what any resident
 * page does.  Read through a volatile pointer, so every load is made. */
static uint32_t probe_moved_touch(void)
{
    size_t n = PROBE_PAGES * (size_t)HK_OS_PAGE;
    uint8_t *r = mmap(NULL, 2 * n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) return 0;
    for (size_t i = 0; i < n; i += HK_OS_PAGE) r[i] = 1;
    volatile uint8_t *to = mremap(r, n, n, MREMAP_MAYMOVE | MREMAP_FIXED, r + n);
    if (to == MAP_FAILED) {
        unmap(r, 2 * n);
        return 0;
    }
    /* [r, r + n) is a hole now, which another thread's mapping may take:
     * only the moved pages are ours to unmap. */
    unsigned sum = 0;
    uint64_t t0 = hk_now_ns();
    for (size_t i = 0; i < n; i += HK_OS_PAGE) sum += to[i];
    uint64_t t1 = hk_now_ns();
    for (size_t i = 0; i < n; i += HK_OS_PAGE) sum += to[i];
    uint64_t t2 = hk_now_ns();
    unmap((void *)to, n);
    uint64_t first = t1 - t0, again = t2 - t1;
    if (sum != 2 * PROBE_PAGES) return 0;
    return first > again ? (uint32_t)((first - again) / PROBE_PAGES) : 1;
}

uint32_t hk_os_moved_page_touch_ns(void)
{
    static _Atomic uint32_t measured;     /* 0: not yet */
    uint32_t ns = atomic_load_explicit(&measured, memory_order_relaxed);
    if (ns != 0) return ns;
    /* The smaller of two: a preemption inside one pass cannot pass for a
     * trap per page. */
    uint32_t a = probe_moved_touch(), b = probe_moved_touch();
    ns = a < b ? a : b;
    if (ns == 0) ns = 1;
    atomic_store_explicit(&measured, ns, memory_order_relaxed);
    return ns;
}

int hk_os_advise_huge(void *p, size_t size)
{
    return advise(p, size, MADV_HUGEPAGE);
}

int hk_os_advise_no_huge(void *p, size_t size)
{
    return advise(p, size, MADV_NOHUGEPAGE);
}

/* The vDSO's clock, found at the first reading (every thread finds the
 * same); libc's where there is none. */
static int read_clock(clockid_t clock, struct timespec *ts)
{
    static _Atomic(hk_clock_fn) vdso_clock;
    static _Atomic int looked;
    hk_clock_fn fn = atomic_load_explicit(&vdso_clock, memory_order_acquire);
    if (fn == NULL && !atomic_load_explicit(&looked, memory_order_acquire)) {
        fn = hk_vdso_clock_gettime();
        atomic_store_explicit(&vdso_clock, fn, memory_order_release);
        atomic_store_explicit(&looked, 1, memory_order_release);
    }
    return fn != NULL ? fn(clock, ts) : clock_gettime(clock, ts);
}

uint64_t hk_now_ns(void)
{
    struct timespec ts;
    read_clock(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t hk_thread_cpu_ns(void)
{
    struct timespec ts;
    if (read_clock(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return hk_now_ns();
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t hk_coarse_ns(void)
{
    struct timespec ts;
    read_clock(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int hk_os_thp_mode(void)
{
    static _Atomic int mode = -1;         /* read by every thread; set by the first */
    int known = atomic_load_explicit(&mode, memory_order_relaxed);
    if (known >= 0) return known;
    int m = 0;
    int fd = open("/sys/kernel/mm/transparent_hugepage/enabled", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char buf[128];
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0) {
            buf[n] = 0;
            /* The active mode is the bracketed word. */
            for (ssize_t i = 0; i + 1 < n; i++) {
                if (buf[i] != '[') continue;
                if (buf[i + 1] == 'a') m = 2;
                else if (buf[i + 1] == 'm') m = 1;
                break;
            }
        }
    }
    atomic_store_explicit(&mode, m, memory_order_relaxed);
    return m;
}

uint64_t hk_os_page_faults(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (uint64_t)ru.ru_minflt + (uint64_t)ru.ru_majflt;
}
