/* headroom_shim: counts the bytes a process has asked for and not yet
 * freed, and the peak of that count, for bench/headroom.sh.
 *
 * Preloaded in front of the allocator under test
 * (LD_PRELOAD="headroom_shim.so libhakmem.so"), it defines every
 * allocation entry point, passes each call on to the next definition
 * (dlsym RTLD_NEXT) and records the size asked for per pointer.  The peak
 * of live requested bytes is what a heap with no overhead at all would have
 * to hold at its fullest: the floor under any allocator's peak heap.  Added
 * to the pages no allocator decides (headroom_floor.c), it is a floor
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
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "headroom_shim.h"

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
void *(*hr_next_mmap)(void *, size_t, int, int, int, off_t);
int (*hr_next_munmap)(void *, size_t);
void *(*hr_next_mremap)(void *, size_t, size_t, int, ...);
void *hr_allocator_base;

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
long long hr_live_bytes(void) { return atomic_load_explicit(&live_bytes, memory_order_relaxed); }
static atomic_llong peak_live_bytes;
static atomic_ullong allocations;
static atomic_ullong unknown_frees;
static atomic_int table_full;

static void table_map(void)
{
    void *m = hr_next_mmap(NULL, (size_t)SHARDS * SHARD_SLOTS * sizeof(struct slot), PROT_READ | PROT_WRITE,
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

static void note_peak(long long now)
{
    long long peak = atomic_load_explicit(&peak_live_bytes, memory_order_relaxed);
    while (now > peak &&
           !atomic_compare_exchange_weak_explicit(&peak_live_bytes, &peak, now, memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
    hr_floor_note(now);
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
            {"mmap", (void **)&hr_next_mmap},
            {"munmap", (void **)&hr_next_munmap},
            {"mremap", (void **)&hr_next_mremap},
        };
        resolving = 1;
        for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++) *entries[i].slot = lookup_next(entries[i].name);
        Dl_info allocator;
        if (next_malloc && dladdr((void *)next_malloc, &allocator)) hr_allocator_base = allocator.dli_fbase;
        resolving = 0;
        if (!next_malloc || !next_free || !next_calloc || !next_realloc || !next_posix_memalign)
            die("no allocator after the shim (dlsym RTLD_NEXT found no malloc, free, calloc, realloc "
                "or posix_memalign)");
        if (!hr_next_mmap || !hr_next_munmap || !hr_next_mremap) die("no mmap, munmap or mremap after the shim");
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

int hr_ready(void) { return ready(); }

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
    hr_floor_fork_prepare();
    for (unsigned i = 0; i < SHARDS; i++) shard_lock(&shards[i]);
}

static void fork_parent(void)
{
    for (unsigned i = SHARDS; i-- > 0;) shard_unlock(&shards[i]);
    hr_floor_fork_parent();
}

static void fork_child(void)
{
    fork_parent();
    hr_floor_fork_child();
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
    hr_floor f = hr_floor_at_exit();
    long long peak = atomic_load(&peak_live_bytes);
    long long floor = f.bytes > peak ? f.bytes : peak; /* the peak alone is a floor too */
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
    at = put_number(at, end, floor == peak && f.bytes < peak ? 0 : (unsigned long long)f.fixed_bytes);
    at = put_text(at, end, " floor_samples=");
    at = put_number(at, end, f.samples);
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
