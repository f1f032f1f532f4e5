/* headroom_floor: the floor under a process's peak RSS that no allocator
 * setting could go below, for bench/headroom_shim.so (headroom_shim.c
 * says what the shim measures).  The floor is the largest sum, over
 * samples, of the live requested bytes and the pages no allocator decides:
 * those of the process's files, its main stack and the anonymous memory
 * it maps for itself, which this half keeps track of by defining mmap,
 * munmap and mremap. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "headroom_shim.h"

/* ---- the program's own anonymous mappings ----
 *
 * Memory a program maps for itself (gcc's collected heap, for one) is
 * anonymous like the allocator's heap, and a /proc/self/smaps line can hold
 * both when the kernel merges neighbours.  So the shim defines mmap, munmap
 * and mremap as well, keeps the ranges that anonymous mmap calls from
 * outside the allocator's object return, and counts their resident pages
 * with mincore.  Anything mapped over or unmapped leaves the set, whoever
 * does it, so an address the allocator reuses is never taken for the
 * program's; mappings libc makes inside itself (thread stacks) never enter
 * it: they count as reducible. */
#define PROGRAM_RANGES (1 << 16)
struct range {
    uintptr_t start, end;
};
static struct range program_ranges[PROGRAM_RANGES]; /* sorted, disjoint */
static unsigned program_range_count;
static atomic_int program_ranges_lock;

static void ranges_lock(void)
{
    for (unsigned spins = 0;; spins++) {
        if (atomic_exchange_explicit(&program_ranges_lock, 1, memory_order_acquire) == 0) return;
        if (spins > 64) sched_yield();
    }
}

static void ranges_unlock(void)
{
    atomic_store_explicit(&program_ranges_lock, 0, memory_order_release);
}

/* Takes [start, end) out of the set; called with the lock held.  A range
 * split in two when the set is full loses its upper piece: the set may
 * only ever hold less than the program's, never more. */
static void ranges_remove(uintptr_t start, uintptr_t end)
{
    for (unsigned i = 0; i < program_range_count; i++) {
        struct range *r = &program_ranges[i];
        if (r->end <= start || r->start >= end) continue;
        if (r->start < start && r->end > end) {
            struct range upper = {end, r->end};
            r->end = start;
            if (program_range_count < PROGRAM_RANGES) {
                memmove(r + 2, r + 1, (program_range_count - i - 1) * sizeof *r);
                r[1] = upper;
                program_range_count++;
            }
            return;
        }
        if (r->start < start) {
            r->end = start;
        } else if (r->end > end) {
            r->start = end;
        } else {
            memmove(r, r + 1, (program_range_count - i - 1) * sizeof *r);
            program_range_count--;
            i--;
        }
    }
}

/* Adds [start, end), which no range overlaps; with the lock held. */
static void ranges_add(uintptr_t start, uintptr_t end)
{
    if (program_range_count == PROGRAM_RANGES) return;
    unsigned i = program_range_count;
    while (i > 0 && program_ranges[i - 1].start > start) i--;
    memmove(&program_ranges[i + 1], &program_ranges[i], (program_range_count - i) * sizeof program_ranges[0]);
    program_ranges[i] = (struct range){start, end};
    program_range_count++;
}

static int from_allocator(const void *caller)
{
    Dl_info info;
    return hr_allocator_base != NULL && dladdr(caller, &info) && info.dli_fbase == hr_allocator_base;
}

static uintptr_t page_end(uintptr_t start, size_t length)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    return (start + length + page - 1) & ~(page - 1);
}

/* The resident KiB of the program's own anonymous mappings now. */
static long long program_resident_kb(void)
{
    static unsigned char resident[1 << 16];
    long page = sysconf(_SC_PAGESIZE);
    long long pages = 0;
    ranges_lock();
    for (unsigned i = 0; i < program_range_count; i++) {
        for (uintptr_t at = program_ranges[i].start; at < program_ranges[i].end;) {
            size_t n = (program_ranges[i].end - at) / (uintptr_t)page;
            if (n > sizeof resident) n = sizeof resident;
            if (mincore((void *)at, n * (size_t)page, resident) == 0)
                for (size_t k = 0; k < n; k++) pages += resident[k] & 1;
            at += n * (uintptr_t)page;
        }
    }
    ranges_unlock();
    return pages * page / 1024;
}

static void *mapped(void *p, size_t length, int flags, const void *caller)
{
    if (p == MAP_FAILED) return p;
    uintptr_t start = (uintptr_t)p, end = page_end(start, length);
    /* Asked before the lock: dladdr takes the dynamic linker's, and a
     * thread inside dlopen holds that one while its allocations map. */
    int programs = (flags & MAP_ANONYMOUS) && !from_allocator(caller);
    ranges_lock();
    ranges_remove(start, end); /* whatever was there is gone */
    if (programs) ranges_add(start, end);
    ranges_unlock();
    return p;
}

EXPORT void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
{
    /* Before the lookups (or inside them), straight to the kernel. */
    if (!hr_ready()) return (void *)syscall(SYS_mmap, addr, length, prot, flags, fd, offset);
    return mapped(hr_next_mmap(addr, length, prot, flags, fd, offset), length, flags, __builtin_return_address(0));
}

/* The same function under its large-file name (off_t is 64-bit here). */
EXPORT void *mmap64(void *addr, size_t length, int prot, int flags, int fd, off_t offset) __attribute__((alias("mmap")));

EXPORT int munmap(void *addr, size_t length)
{
    if (!hr_ready()) return (int)syscall(SYS_munmap, addr, length);
    int rc = hr_next_munmap(addr, length);
    if (rc == 0) {
        ranges_lock();
        ranges_remove((uintptr_t)addr, page_end((uintptr_t)addr, length));
        ranges_unlock();
    }
    return rc;
}

EXPORT void *mremap(void *old, size_t old_length, size_t new_length, int flags, ...)
{
    void *wanted = NULL;
    if (flags & MREMAP_FIXED) {
        va_list ap;
        va_start(ap, flags);
        wanted = va_arg(ap, void *);
        va_end(ap);
    }
    if (!hr_ready()) return (void *)syscall(SYS_mremap, old, old_length, new_length, flags, wanted);
    void *p = hr_next_mremap(old, old_length, new_length, flags, wanted);
    if (p == MAP_FAILED) return p;
    uintptr_t start = (uintptr_t)old, end = page_end(start, old_length);
    ranges_lock();
    /* The program's if all of the old range was. */
    int owned = 0;
    for (unsigned i = 0; i < program_range_count; i++)
        if (program_ranges[i].start <= start && end <= program_ranges[i].end) owned = 1;
    if (!(flags & MREMAP_DONTUNMAP)) ranges_remove(start, end);
    ranges_remove((uintptr_t)p, page_end((uintptr_t)p, new_length));
    if (owned) ranges_add((uintptr_t)p, page_end((uintptr_t)p, new_length));
    ranges_unlock();
    return p;
}

/* ---- the floor: memory no allocator could give back ----
 *
 * At any moment a process's RSS holds at least its live requested bytes
 * (counted as resident) and the pages no allocator decides: those of its
 * files (code, data, files it maps), its main stack and the anonymous
 * memory it maps for itself.  The largest sum of the two over the samples
 * is a floor under the peak RSS any allocator setting could reach.  All
 * other anonymous memory is counted as reducible (thread stacks, libc's
 * own mappings), as are shared-memory and memfd files (an allocator may
 * keep its heap there) and the shim's own pages: the floor can only come
 * out low, never high.  Samples are taken each time live bytes grow by a
 * 256th (and 64 KiB) past the last sample, so one falls within 0.4% of the
 * peak of live bytes, and at exit. */
static atomic_int floor_sampler_busy;
static long long floor_bytes;       /* the largest sample */
static long long floor_fixed_bytes; /* the file and stack pages of that sample */
static unsigned floor_samples;
static char shim_path[4096];

/* /proc files read a line at a time, through one static buffer. */
static struct {
    int fd;
    size_t length, at;
    char buf[1 << 16];
} proc_reader;

static int proc_open(const char *path)
{
    proc_reader.fd = open(path, O_RDONLY | O_CLOEXEC);
    proc_reader.length = proc_reader.at = 0;
    return proc_reader.fd >= 0;
}

/* The next line, NUL-terminated in place; NULL at the end. */
static char *proc_line(void)
{
    for (;;) {
        char *start = proc_reader.buf + proc_reader.at;
        char *newline = memchr(start, '\n', proc_reader.length - proc_reader.at);
        if (newline) {
            *newline = '\0';
            proc_reader.at = (size_t)(newline - proc_reader.buf) + 1;
            return start;
        }
        /* Move the partial line to the front and read more after it. */
        size_t partial = proc_reader.length - proc_reader.at;
        memmove(proc_reader.buf, start, partial);
        proc_reader.length = partial;
        proc_reader.at = 0;
        if (partial == sizeof proc_reader.buf - 1) partial = 0, proc_reader.length = 0; /* no line is that long */
        ssize_t n = read(proc_reader.fd, proc_reader.buf + proc_reader.length,
                         sizeof proc_reader.buf - 1 - proc_reader.length);
        if (n <= 0) {
            if (proc_reader.length == 0) return NULL;
            proc_reader.buf[proc_reader.length] = '\0'; /* a last line without a newline */
            proc_reader.at = proc_reader.length;
            return proc_reader.buf;
        }
        proc_reader.length += (size_t)n;
    }
}

static void proc_close(void)
{
    close(proc_reader.fd);
}

/* The path field of a maps or smaps header line ("" for anonymous memory),
 * and the start of its range. */
static const char *mapping_path(const char *line, uintptr_t *start)
{
    uintptr_t a = 0;
    const char *at = line;
    for (; (*at >= '0' && *at <= '9') || (*at >= 'a' && *at <= 'f'); at++)
        a = a * 16 + (uintptr_t)(*at <= '9' ? *at - '0' : *at - 'a' + 10);
    *start = a;
    for (int field = 0; field < 5; field++) {
        while (*at && *at != ' ') at++;
        while (*at == ' ') at++;
    }
    return at;
}

static int is_header(const char *line)
{
    return (*line >= '0' && *line <= '9') || (*line >= 'a' && *line <= 'f');
}

static int has_prefix(const char *text, const char *prefix)
{
    return strncmp(text, prefix, strlen(prefix)) == 0;
}

/* Pages that no allocator setting decides. */
static int is_fixed(const char *path)
{
    if (path[0] == '/')
        return !has_prefix(path, "/memfd:") && !has_prefix(path, "/dev/shm/") && !has_prefix(path, "/SYSV") &&
               strcmp(path, shim_path) != 0;
    return strcmp(path, "[stack]") == 0 || strcmp(path, "[vdso]") == 0 || strcmp(path, "[vvar]") == 0 ||
           strcmp(path, "[vsyscall]") == 0;
}

/* The shim's own file, found once from the mapping that holds its code. */
static void find_shim_path(void)
{
    uintptr_t here = (uintptr_t)&find_shim_path;
    if (!proc_open("/proc/self/maps")) return;
    for (char *line; (line = proc_line()) != NULL;) {
        uintptr_t start;
        const char *path = mapping_path(line, &start);
        const char *dash = strchr(line, '-');
        uintptr_t end = 0;
        for (const char *at = dash ? dash + 1 : ""; (*at >= '0' && *at <= '9') || (*at >= 'a' && *at <= 'f'); at++)
            end = end * 16 + (uintptr_t)(*at <= '9' ? *at - '0' : *at - 'a' + 10);
        if (start <= here && here < end && strlen(path) < sizeof shim_path) {
            strcpy(shim_path, path);
            break;
        }
    }
    proc_close();
}

/* The resident KiB of file and stack pages now; -1 if /proc cannot say. */
static long long fixed_resident_kb(void)
{
    if (shim_path[0] == '\0') find_shim_path();
    if (!proc_open("/proc/self/smaps")) return -1;
    long long kb = 0;
    int fixed = 0;
    for (char *line; (line = proc_line()) != NULL;) {
        if (is_header(line)) {
            uintptr_t start;
            fixed = is_fixed(mapping_path(line, &start));
        } else if (fixed && has_prefix(line, "Rss:")) {
            kb += strtoll(line + 4, NULL, 10);
        }
    }
    proc_close();
    return kb;
}

static atomic_llong next_floor_sample_at;

static void sample_floor(void)
{
    if (atomic_exchange_explicit(&floor_sampler_busy, 1, memory_order_acquire)) return;
    int saved = errno;
    long long live = hr_live_bytes();
    atomic_store_explicit(&next_floor_sample_at, live + live / 256 + 65536, memory_order_relaxed);
    long long fixed_kb = fixed_resident_kb();
    long long mapped_kb = program_resident_kb();
    if (fixed_kb >= 0) {
        fixed_kb += mapped_kb;
        /* Live bytes again, after the read: the smaller of the two, so the
         * sum is one both moments had at least. */
        long long after = hr_live_bytes();
        long long sum = fixed_kb * 1024 + (after < live ? after : live);
        floor_samples++;
        if (sum > floor_bytes) {
            floor_bytes = sum;
            floor_fixed_bytes = fixed_kb * 1024;
        }
    }
    errno = saved;
    atomic_store_explicit(&floor_sampler_busy, 0, memory_order_release);
}

void hr_floor_note(long long live)
{
    if (live > atomic_load_explicit(&next_floor_sample_at, memory_order_relaxed)) sample_floor();
}

hr_floor hr_floor_at_exit(void)
{
    /* The exit's sample waits a little for one under way in another
     * thread, never for good: a thread may be stopped inside one. */
    for (int tries = 0; tries < 10000 && atomic_load(&floor_sampler_busy); tries++) sched_yield();
    sample_floor();
    return (hr_floor){ .bytes = floor_bytes, .fixed_bytes = floor_fixed_bytes, .samples = floor_samples };
}

void hr_floor_fork_prepare(void) { ranges_lock(); }
void hr_floor_fork_parent(void) { ranges_unlock(); }

/* A sample under way in another thread does not go on in the child. */
void hr_floor_fork_child(void)
{
    atomic_store(&floor_sampler_busy, 0);
}
