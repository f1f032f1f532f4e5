/* headroom_shim: counts the bytes a process has asked for and not yet
 * freed, and the peak of that count, for bench/headroom.sh.
 *
 * Preloaded in front of the allocator under test
 * (LD_PRELOAD="headroom_shim.so libhakmem.so"), it defines every
 * allocation entry point, passes each call on to the next definition
 * (dlsym RTLD_NEXT) and records the size asked for per pointer.  The peak
 * of live requested bytes is what a heap with no overhead at all would have
 * to hold at its fullest: the floor under any allocator's peak heap.  Added
 * to the pages no allocator decides (see "the floor" below), it is a floor
 * under the process's peak RSS.
 *
 * At exit it writes one line to $HAKMEM_HEADROOM_PEAKS.PID:
 *   pid= peak_live_bytes= live_at_exit_bytes= allocations= unknown_frees=
 *   floor_bytes= floor_fixed_bytes= floor_samples= table_full= hwm_kb= exe=
 * (floor_fixed_bytes: the pages no allocator decides at the floor's sample;
 * hwm_kb: the process's own peak RSS, the shim's table included).  A
 * process that ends in _exit or a signal writes nothing; one that execs
 * hands its pid to the new image, whose line replaces it.
 *
 * The shim allocates nothing from the allocator it measures: the table is
 * an mmap of its own, and the few calls dlsym makes while the next
 * definitions are being looked up are served from a static buffer. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* ---- the next allocator's entry points ---- */

/* The C entry points, looked up once (every process calls malloc early);
 * operator new and delete are looked up on first use, because the object
 * that defines them (libstdc++, or the allocator) may come later than the
 * first malloc. */
static void *(*next_malloc)(size_t);
static void (*next_free)(void *);
static void *(*next_calloc)(size_t, size_t);
static void *(*next_realloc)(void *, size_t);
static void *(*next_reallocarray)(void *, size_t, size_t);
static int (*next_posix_memalign)(void **, size_t, size_t);
static void *(*next_aligned_alloc)(size_t, size_t);
static void *(*next_memalign)(size_t, size_t);
static void *(*next_valloc)(size_t);
static void *(*next_pvalloc)(size_t);
static void *(*next_mmap)(void *, size_t, int, int, int, off_t);
static int (*next_munmap)(void *, size_t);
static void *(*next_mremap)(void *, size_t, size_t, int, ...);
/* The allocator's object: its mmap calls make heap, anyone else's do not. */
static void *allocator_base;

enum { RESOLVE_NONE, RESOLVE_BUSY, RESOLVE_DONE };
static atomic_int resolve_state;
/* Set on the thread doing the lookups: its allocations (dlsym's own) come
 * from the bootstrap buffer. */
static __thread int resolving;

static void die(const char *what)
{
    static const char prefix[] = "headroom_shim: ";
    ssize_t ignored = write(2, prefix, sizeof prefix - 1);
    ignored = write(2, what, strlen(what));
    ignored = write(2, "\n", 1);
    (void)ignored;
    abort();
}

static void *lookup_next(const char *name)
{
    return dlsym(RTLD_NEXT, name);
}

/* ---- the bootstrap buffer: dlsym's allocations, never freed ---- */

#define BOOT_BYTES (64 * 1024)
#define BOOT_HEADER 16 /* keeps the 16-byte alignment malloc promises; holds the size */
static _Alignas(16) unsigned char boot_buffer[BOOT_BYTES];
static atomic_size_t boot_used;

static void *boot_alloc(size_t size)
{
    size_t need = (size + BOOT_HEADER + 15) & ~(size_t)15;
    size_t at = atomic_fetch_add(&boot_used, need);
    if (at + need > BOOT_BYTES || need < size) die("bootstrap buffer exhausted");
    memcpy(boot_buffer + at, &size, sizeof size);
    return boot_buffer + at + BOOT_HEADER; /* static storage: already zero */
}

static int in_boot(const void *p)
{
    return (const unsigned char *)p >= boot_buffer && (const unsigned char *)p < boot_buffer + BOOT_BYTES;
}

static size_t boot_size(const void *p)
{
    size_t size;
    memcpy(&size, (const unsigned char *)p - BOOT_HEADER, sizeof size);
    return size;
}

/* ---- the table of live blocks: pointer -> size asked for ----
 *
 * Sharded open addressing: the shard is picked by the pointer's hash, each
 * shard has its own spin lock and linear probing with backward-shift
 * deletion (no tombstones, so churn does not slow lookups down).  All of it
 * is one MAP_NORESERVE mapping: only the pages a run touches become
 * resident. */
#define SHARD_BITS 11
#define SLOT_BITS 14
#define SHARDS (1u << SHARD_BITS)
#define SHARD_SLOTS (1u << SLOT_BITS)
/* Past 7/8 full, linear probing crawls: the shard refuses, and the run says
 * its count is incomplete (table_full=1) rather than wrong in silence. */
#define SHARD_LIMIT (SHARD_SLOTS / 8 * 7)

struct slot {
    uintptr_t key; /* 0: empty */
    size_t size;
};

struct shard {
    atomic_int lock;
    unsigned count;
    char pad[56]; /* a cache line each: the locks of two threads do not share one */
};

static struct shard shards[SHARDS];
static struct slot *slots; /* SHARDS x SHARD_SLOTS */

static atomic_llong live_bytes;
static atomic_llong peak_live_bytes;
static atomic_ullong allocations;
static atomic_ullong unknown_frees;
static atomic_int table_full;

static void table_map(void)
{
    void *m = next_mmap(NULL, (size_t)SHARDS * SHARD_SLOTS * sizeof(struct slot), PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) die("cannot map the table of live blocks");
    slots = m;
}

static uint64_t hash_pointer(uintptr_t p)
{
    return (uint64_t)(p >> 4) * 0x9E3779B97F4A7C15ull; /* blocks are 16-aligned */
}

static void shard_lock(struct shard *s)
{
    for (unsigned spins = 0;; spins++) {
        if (atomic_load_explicit(&s->lock, memory_order_relaxed) == 0 &&
            atomic_exchange_explicit(&s->lock, 1, memory_order_acquire) == 0) return;
        if (spins > 64) sched_yield();
    }
}

static void shard_unlock(struct shard *s)
{
    atomic_store_explicit(&s->lock, 0, memory_order_release);
}

/* The shard and home slot of a pointer: the hash's top bits pick the shard,
 * the next ones the slot, so the two are independent. */
static unsigned shard_of(uint64_t h) { return (unsigned)(h >> (64 - SHARD_BITS)); }
static unsigned home_of(uint64_t h) { return (unsigned)(h >> (64 - SHARD_BITS - SLOT_BITS)) & (SHARD_SLOTS - 1); }

static atomic_llong next_floor_sample_at;
static void sample_floor(void);

static void note_peak(long long now)
{
    long long peak = atomic_load_explicit(&peak_live_bytes, memory_order_relaxed);
    while (now > peak &&
           !atomic_compare_exchange_weak_explicit(&peak_live_bytes, &peak, now, memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
    if (now > atomic_load_explicit(&next_floor_sample_at, memory_order_relaxed)) sample_floor();
}

static void remember(void *p, size_t size)
{
    if (p == NULL) return;
    uint64_t h = hash_pointer((uintptr_t)p);
    struct shard *s = &shards[shard_of(h)];
    struct slot *table = slots + (size_t)shard_of(h) * SHARD_SLOTS;
    shard_lock(s);
    if (s->count >= SHARD_LIMIT) {
        shard_unlock(s);
        atomic_store(&table_full, 1);
        return;
    }
    unsigned i = home_of(h);
    while (table[i].key != 0 && table[i].key != (uintptr_t)p) i = (i + 1) & (SHARD_SLOTS - 1);
    long long change = (long long)size;
    if (table[i].key == 0) {
        s->count++;
    } else { /* the allocator handed out a block it had not been given back: count it once */
        change -= (long long)table[i].size;
    }
    table[i].key = (uintptr_t)p;
    table[i].size = size;
    shard_unlock(s);
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    note_peak(atomic_fetch_add_explicit(&live_bytes, change, memory_order_relaxed) + change);
}

/* Takes p out of the table and its size out of the count; 1 with *size set
 * when p was there. */
static int take_out(void *p, size_t *size)
{
    if (p == NULL) return 0;
    uint64_t h = hash_pointer((uintptr_t)p);
    struct shard *s = &shards[shard_of(h)];
    struct slot *table = slots + (size_t)shard_of(h) * SHARD_SLOTS;
    const unsigned mask = SHARD_SLOTS - 1;
    shard_lock(s);
    unsigned i = home_of(h);
    while (table[i].key != 0 && table[i].key != (uintptr_t)p) i = (i + 1) & mask;
    if (table[i].key == 0) {
        /* Allocated before the shim could see it, or through a path it
         * does not define: not in the count, so not taken out of it. */
        shard_unlock(s);
        atomic_fetch_add_explicit(&unknown_frees, 1, memory_order_relaxed);
        return 0;
    }
    *size = table[i].size;
    s->count--;
    /* Backward shift: pull later entries of the probe run into the hole
     * unless their home lies cyclically after the hole and at or before them. */
    for (unsigned j = (i + 1) & mask; table[j].key != 0; j = (j + 1) & mask) {
        unsigned home = home_of(hash_pointer(table[j].key));
        int stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (stays) continue;
        table[i] = table[j];
        i = j;
    }
    table[i].key = 0;
    shard_unlock(s);
    atomic_fetch_sub_explicit(&live_bytes, (long long)*size, memory_order_relaxed);
    return 1;
}

static void forget(void *p)
{
    size_t size;
    take_out(p, &size);
}

/* ---- start-up ---- */

static void resolve_all(void)
{
    int expected = RESOLVE_NONE;
    if (atomic_compare_exchange_strong(&resolve_state, &expected, RESOLVE_BUSY)) {
        /* POSIX lets a function pointer be stored through a void pointer
         * (dlsym itself depends on it). */
        static const struct {
            const char *name;
            void **slot;
        } entries[] = {
            {"malloc", (void **)&next_malloc},
            {"free", (void **)&next_free},
            {"calloc", (void **)&next_calloc},
            {"realloc", (void **)&next_realloc},
            {"reallocarray", (void **)&next_reallocarray},
            {"posix_memalign", (void **)&next_posix_memalign},
            {"aligned_alloc", (void **)&next_aligned_alloc},
            {"memalign", (void **)&next_memalign},
            {"valloc", (void **)&next_valloc},
            {"pvalloc", (void **)&next_pvalloc},
            {"mmap", (void **)&next_mmap},
            {"munmap", (void **)&next_munmap},
            {"mremap", (void **)&next_mremap},
        };
        resolving = 1;
        for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++) *entries[i].slot = lookup_next(entries[i].name);
        Dl_info allocator;
        if (next_malloc && dladdr((void *)next_malloc, &allocator)) allocator_base = allocator.dli_fbase;
        resolving = 0;
        if (!next_malloc || !next_free || !next_calloc || !next_realloc || !next_posix_memalign)
            die("no allocator after the shim (dlsym RTLD_NEXT found no malloc, free, calloc, realloc "
                "or posix_memalign)");
        if (!next_mmap || !next_munmap || !next_mremap) die("no mmap, munmap or mremap after the shim");
        table_map();
        atomic_store_explicit(&resolve_state, RESOLVE_DONE, memory_order_release);
        return;
    }
    /* Another thread is looking them up; the first calls of a process come
     * from one thread, so this wait is short if it happens at all. */
    while (atomic_load_explicit(&resolve_state, memory_order_acquire) != RESOLVE_DONE) sched_yield();
}

/* 1 when the calls can be passed on; 0 while this thread is inside dlsym. */
static inline int ready(void)
{
    if (__builtin_expect(atomic_load_explicit(&resolve_state, memory_order_acquire) == RESOLVE_DONE, 1))
        return 1;
    if (resolving) return 0;
    resolve_all();
    return 1;
}

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
    return allocator_base != NULL && dladdr(caller, &info) && info.dli_fbase == allocator_base;
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
    if (!ready()) return (void *)syscall(SYS_mmap, addr, length, prot, flags, fd, offset);
    return mapped(next_mmap(addr, length, prot, flags, fd, offset), length, flags, __builtin_return_address(0));
}

/* The same function under its large-file name (off_t is 64-bit here). */
EXPORT void *mmap64(void *addr, size_t length, int prot, int flags, int fd, off_t offset) __attribute__((alias("mmap")));

EXPORT int munmap(void *addr, size_t length)
{
    if (!ready()) return (int)syscall(SYS_munmap, addr, length);
    int rc = next_munmap(addr, length);
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
    if (!ready()) return (void *)syscall(SYS_mremap, old, old_length, new_length, flags, wanted);
    void *p = next_mremap(old, old_length, new_length, flags, wanted);
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

static void sample_floor(void)
{
    if (atomic_exchange_explicit(&floor_sampler_busy, 1, memory_order_acquire)) return;
    int saved = errno;
    long long live = atomic_load_explicit(&live_bytes, memory_order_relaxed);
    atomic_store_explicit(&next_floor_sample_at, live + live / 256 + 65536, memory_order_relaxed);
    long long fixed_kb = fixed_resident_kb();
    long long mapped_kb = program_resident_kb();
    if (fixed_kb >= 0) {
        fixed_kb += mapped_kb;
        /* Live bytes again, after the read: the smaller of the two, so the
         * sum is one both moments had at least. */
        long long after = atomic_load_explicit(&live_bytes, memory_order_relaxed);
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

/* ---- the report at exit ---- */

static char report_path[4096];

static char *put_text(char *at, char *end, const char *text)
{
    while (*text && at < end) *at++ = *text++;
    return at;
}

static char *put_number(char *at, char *end, unsigned long long n)
{
    char digits[24];
    int k = 0;
    do digits[k++] = (char)('0' + n % 10); while ((n /= 10) != 0);
    while (k > 0 && at < end) *at++ = digits[--k];
    return at;
}

/* The process's own peak RSS (VmHWM), in KiB; 0 if /proc cannot say. */
static unsigned long long own_hwm_kb(void)
{
    char buf[8192];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    const char *at = strstr(buf, "\nVmHWM:");
    if (at == NULL) return 0;
    at += 7;
    while (*at == ' ' || *at == '\t') at++;
    unsigned long long kb = 0;
    while (*at >= '0' && *at <= '9') kb = kb * 10 + (unsigned long long)(*at++ - '0');
    return kb;
}

/* A fork taken while another thread holds a lock of the shim would leave
 * the child's copy locked for good: all are held across the fork.  A
 * sample under way in another thread does not go on in the child: its
 * flag is cleared there. */
static void fork_prepare(void)
{
    ranges_lock();
    for (unsigned i = 0; i < SHARDS; i++) shard_lock(&shards[i]);
}

static void fork_parent(void)
{
    for (unsigned i = SHARDS; i-- > 0;) shard_unlock(&shards[i]);
    ranges_unlock();
}

static void fork_child(void)
{
    fork_parent();
    atomic_store(&floor_sampler_busy, 0);
}

/* Where the line goes is read before main: a program may change its own
 * environment on the way. */
__attribute__((constructor)) static void headroom_start(void)
{
    const char *prefix = getenv("HAKMEM_HEADROOM_PEAKS");
    if (prefix && strlen(prefix) < sizeof report_path - 32) strcpy(report_path, prefix);
    if (!ready()) return;
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

__attribute__((destructor)) static void headroom_report(void)
{
    if (report_path[0] == '\0') return;
    char path[sizeof report_path];
    char *end = path + sizeof path - 1;
    char *at = put_text(path, end, report_path);
    at = put_text(at, end, ".");
    at = put_number(at, end, (unsigned long long)getpid());
    *at = '\0';

    char line[4096 + 512];
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    /* The exit's sample waits a little for one under way in another
     * thread, never for good: a thread may be stopped inside one. */
    for (int tries = 0; tries < 10000 && atomic_load(&floor_sampler_busy); tries++) sched_yield();
    sample_floor();
    long long peak = atomic_load(&peak_live_bytes);
    long long floor = floor_bytes > peak ? floor_bytes : peak; /* the peak alone is a floor too */
    long long live = atomic_load(&live_bytes);
    end = line + sizeof line - 1;
    at = put_text(line, end, "pid=");
    at = put_number(at, end, (unsigned long long)getpid());
    at = put_text(at, end, " peak_live_bytes=");
    at = put_number(at, end, (unsigned long long)atomic_load(&peak_live_bytes));
    at = put_text(at, end, " live_at_exit_bytes=");
    at = put_number(at, end, live > 0 ? (unsigned long long)live : 0);
    at = put_text(at, end, " allocations=");
    at = put_number(at, end, atomic_load(&allocations));
    at = put_text(at, end, " unknown_frees=");
    at = put_number(at, end, atomic_load(&unknown_frees));
    at = put_text(at, end, " floor_bytes=");
    at = put_number(at, end, (unsigned long long)floor);
    at = put_text(at, end, " floor_fixed_bytes=");
    at = put_number(at, end, floor == peak && floor_bytes < peak ? 0 : (unsigned long long)floor_fixed_bytes);
    at = put_text(at, end, " floor_samples=");
    at = put_number(at, end, floor_samples);
    at = put_text(at, end, " table_full=");
    at = put_number(at, end, (unsigned long long)atomic_load(&table_full));
    at = put_text(at, end, " hwm_kb=");
    at = put_number(at, end, own_hwm_kb());
    at = put_text(at, end, " exe=");
    at = put_text(at, end, exe);
    at = put_text(at, end, "\n");

    int saved = errno;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        ssize_t ignored = write(fd, line, (size_t)(at - line));
        (void)ignored;
        close(fd);
    }
    errno = saved;
}

/* ---- the C entry points ---- */

EXPORT void *malloc(size_t size)
{
    if (!ready()) return boot_alloc(size);
    void *p = next_malloc(size);
    remember(p, size);
    return p;
}

EXPORT void free(void *p)
{
    if (p == NULL || in_boot(p)) return;
    if (!ready()) return;
    forget(p);
    next_free(p);
}

EXPORT void *calloc(size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    if (!ready()) return boot_alloc(total);
    void *p = next_calloc(n, size);
    remember(p, total);
    return p;
}

static void *realloc_tracked(void *p, size_t size, void *(*call)(void *, size_t, size_t), size_t n, size_t unit)
{
    if (in_boot(p)) {
        void *q = malloc(size);
        if (q) memcpy(q, p, boot_size(p) < size ? boot_size(p) : size);
        return q;
    }
    if (!ready()) die("realloc of a block while the shim was starting");
    /* Out of the table before the call: once the allocator has the block
     * back, another thread may be handed the same address. */
    size_t old = 0;
    int known = take_out(p, &old);
    void *q = call(p, n, unit);
    if (q) {
        remember(q, size);
    } else if (p && size != 0 && known) {
        remember(p, old); /* failed: the old block is still the caller's */
    }
    return q;
}

static void *call_realloc(void *p, size_t n, size_t unit)
{
    (void)unit;
    return next_realloc(p, n);
}

static void *call_reallocarray(void *p, size_t n, size_t unit)
{
    return next_reallocarray(p, n, unit);
}

EXPORT void *realloc(void *p, size_t size)
{
    if (!ready() && !in_boot(p)) return p ? NULL : boot_alloc(size);
    return realloc_tracked(p, size, call_realloc, size, 1);
}

EXPORT void *reallocarray(void *p, size_t n, size_t unit)
{
    size_t total;
    if (__builtin_mul_overflow(n, unit, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    if (!ready() && !in_boot(p)) return p ? NULL : boot_alloc(total);
    if (next_reallocarray == NULL) return realloc_tracked(p, total, call_realloc, total, 1);
    return realloc_tracked(p, total, call_reallocarray, n, unit);
}

EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
    if (!ready()) die("posix_memalign while the shim was starting");
    int rc = next_posix_memalign(out, align, size);
    if (rc == 0) remember(*out, size);
    return rc;
}

/* The rarer aligned forms: passed on when the next allocator has them. */
#define ALIGNED_ENTRY(NAME, PARAMS, ARGS, SIZE)                              \
    EXPORT void *NAME PARAMS                                                 \
    {                                                                        \
        if (!ready()) die(#NAME " while the shim was starting");             \
        if (next_##NAME == NULL) die("no " #NAME " after the shim");         \
        void *p = next_##NAME ARGS;                                          \
        remember(p, SIZE);                                                   \
        return p;                                                            \
    }
ALIGNED_ENTRY(aligned_alloc, (size_t align, size_t size), (align, size), size)
ALIGNED_ENTRY(memalign, (size_t align, size_t size), (align, size), size)
ALIGNED_ENTRY(valloc, (size_t size), (size), size)
ALIGNED_ENTRY(pvalloc, (size_t size), (size), size)

/* ---- C++ operator new and delete, by their mangled names ----
 * Each is passed to the next definition of the same name: the allocator's
 * own if it has them, else libstdc++'s (which calls malloc, so its blocks
 * would be counted twice: once here, once in malloc; with hakmem that
 * cannot happen, it defines them all). */
static void *next_named(void *_Atomic *slot, const char *name)
{
    void *fn = atomic_load_explicit(slot, memory_order_acquire);
    if (fn == NULL) {
        if (!ready()) die("operator new or delete while the shim was starting");
        fn = lookup_next(name);
        if (fn == NULL) die("no operator new or delete after the shim");
        atomic_store_explicit(slot, fn, memory_order_release);
    }
    return fn;
}

#define NEW_ENTRY(NAME, PARAMS, ARGTYPES, ARGS)                              \
    EXPORT void *NAME PARAMS;                                                \
    EXPORT void *NAME PARAMS                                                 \
    {                                                                        \
        static void *_Atomic next;                                           \
        void *(*fn) ARGTYPES = (void *(*) ARGTYPES)next_named(&next, #NAME); \
        void *p = fn ARGS;                                                   \
        remember(p, size);                                                   \
        return p;                                                            \
    }
#define DELETE_ENTRY(NAME, PARAMS, ARGTYPES, ARGS)                           \
    EXPORT void NAME PARAMS;                                                 \
    EXPORT void NAME PARAMS                                                  \
    {                                                                        \
        static void *_Atomic next;                                           \
        void (*fn) ARGTYPES = (void (*) ARGTYPES)next_named(&next, #NAME);   \
        forget(p);                                                           \
        fn ARGS;                                                             \
    }

NEW_ENTRY(_Znwm, (size_t size), (size_t), (size))
NEW_ENTRY(_Znam, (size_t size), (size_t), (size))
NEW_ENTRY(_ZnwmRKSt9nothrow_t, (size_t size, const void *nt), (size_t, const void *), (size, nt))
NEW_ENTRY(_ZnamRKSt9nothrow_t, (size_t size, const void *nt), (size_t, const void *), (size, nt))
NEW_ENTRY(_ZnwmSt11align_val_t, (size_t size, size_t al), (size_t, size_t), (size, al))
NEW_ENTRY(_ZnamSt11align_val_t, (size_t size, size_t al), (size_t, size_t), (size, al))
NEW_ENTRY(_ZnwmSt11align_val_tRKSt9nothrow_t, (size_t size, size_t al, const void *nt),
          (size_t, size_t, const void *), (size, al, nt))
NEW_ENTRY(_ZnamSt11align_val_tRKSt9nothrow_t, (size_t size, size_t al, const void *nt),
          (size_t, size_t, const void *), (size, al, nt))

DELETE_ENTRY(_ZdlPv, (void *p), (void *), (p))
DELETE_ENTRY(_ZdaPv, (void *p), (void *), (p))
DELETE_ENTRY(_ZdlPvm, (void *p, size_t n), (void *, size_t), (p, n))
DELETE_ENTRY(_ZdaPvm, (void *p, size_t n), (void *, size_t), (p, n))
DELETE_ENTRY(_ZdlPvRKSt9nothrow_t, (void *p, const void *nt), (void *, const void *), (p, nt))
DELETE_ENTRY(_ZdaPvRKSt9nothrow_t, (void *p, const void *nt), (void *, const void *), (p, nt))
DELETE_ENTRY(_ZdlPvSt11align_val_t, (void *p, size_t al), (void *, size_t), (p, al))
DELETE_ENTRY(_ZdaPvSt11align_val_t, (void *p, size_t al), (void *, size_t), (p, al))
DELETE_ENTRY(_ZdlPvmSt11align_val_t, (void *p, size_t n, size_t al), (void *, size_t, size_t), (p, n, al))
DELETE_ENTRY(_ZdaPvmSt11align_val_t, (void *p, size_t n, size_t al), (void *, size_t, size_t), (p, n, al))
DELETE_ENTRY(_ZdlPvSt11align_val_tRKSt9nothrow_t, (void *p, size_t al, const void *nt),
             (void *, size_t, const void *), (p, al, nt))
DELETE_ENTRY(_ZdaPvSt11align_val_tRKSt9nothrow_t, (void *p, size_t al, const void *nt),
             (void *, size_t, const void *), (p, al, nt))
