/* Policy reader and stats flush: the client's side of the shared-memory
 * plane (include/hakmem_shm.h).
 *
 * Runs inside malloc's slow path, so it never allocates (mmap, shm_open and
 * static buffers only, no stdio), never blocks (one try-lock guards all of
 * it; a thread that finds it taken simply returns) and trusts nothing in the
 * segment it has not checked: header fields, table sizes, stamps and values
 * are validated before use, because a daemon may die mid-write or a segment
 * may be garbage.  Without a segment it retries rarely and says nothing
 * unless HAKMEM_VERBOSE is set. */
#include "shm_client.h"
#include "site.h"
#include "hakmem_shm.h"

#include <elf.h>
#include <link.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ATTACH_RETRY_NS  (5ull * 1000000000ull)  /* no segment: look again this often */
#define RECHECK_NS       (5ull * 1000000000ull)  /* segment replaced by a new daemon? */
#define APPLY_MIN_NS     (1000000ull)            /* generation checks at most every 1 ms */
#define NO_POS           0xFFFFu

typedef struct pending_policy {
    uint32_t index;                 /* the allocator's site index */
    uint64_t module_hash, offset;
    hk_site_policy current;
} pending_policy;

static struct {
    _Atomic int busy;               /* the one try-lock */
    int inited, disabled, closing, verbose;
    char name[64];
    hkshm_header *hdr;
    dev_t dev;
    ino_t ino;
    hkshm_slot *slot;
    uint32_t slot_idx;
    uint32_t pid;
    uint64_t start_time;
    uint64_t next_attach_ns, next_flush_ns, next_recheck_ns, next_apply_ns;
    uint64_t gen_applied;
    uint32_t sites_at_apply;
    uint32_t sites_applied;
    const char *why;                /* static string: why not attached */
    uint16_t pos_of[HK_SITE_MAX];   /* site index -> position in the slot */
    uint32_t n_pos;
    uint32_t arm_of_pos[HKSHM_SLOT_SITES];
    pending_policy work[HK_SITE_MAX];
    uint32_t n_work;
} cs;

/* Fields the tick reads before taking the try-lock are accessed atomically
 * (relaxed): a stale value only delays work by one tick. */
#define LD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define ST(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

/* ---- small helpers that need no libc state ---- */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

typedef struct sbuf { char *p; int len, used; } sbuf;

static void put_s(sbuf *b, const char *s)
{
    while (*s && b->used < b->len - 1)
        b->p[b->used++] = *s++;
    b->p[b->used < b->len ? b->used : b->len - 1] = 0;
}

static void put_u(sbuf *b, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    char out[24];
    for (int i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = 0;
    put_s(b, out);
}

static void say(const char *what, const char *detail)
{
    if (!cs.verbose)
        return;
    char line[256];
    sbuf b = { line, sizeof line, 0 };
    put_s(&b, "hakmem: shm ");
    put_s(&b, cs.name);
    put_s(&b, ": ");
    put_s(&b, what);
    if (detail) {
        put_s(&b, " (");
        put_s(&b, detail);
        put_s(&b, ")");
    }
    put_s(&b, "\n");
    ssize_t w = write(STDERR_FILENO, line, (size_t)b.used);
    (void)w;
}

/* Reads a small /proc file into buf as a string; 0 when it cannot. */
static int read_small(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    return 1;
}

static uint64_t read_u64_field(const char *path, int field_after_paren)
{
    char buf[1024];
    if (!read_small(path, buf, sizeof buf))
        return 0;
    char *p = buf;
    int field = 1;
    if (field_after_paren) {
        /* /proc/<pid>/stat: comm may contain anything, count from the last ')'. */
        char *q = NULL;
        for (char *s = buf; *s; s++)
            if (*s == ')')
                q = s;
        if (!q)
            return 0;
        p = q;
        field = 2;
    }
    for (; *p && field < field_after_paren; p++)
        if (*p == ' ')
            field++;
    uint64_t v = 0;
    while (*p >= '0' && *p <= '9')
        v = v * 10 + (uint64_t)(*p++ - '0');
    return v;
}

static uint64_t self_start_time(void)
{
    return read_u64_field("/proc/self/stat", 22);
}

static uint64_t self_rss_bytes(void)
{
    /* statm: size resident ...; the second field, in pages. */
    char buf[128];
    if (!read_small("/proc/self/statm", buf, sizeof buf))
        return 0;
    char *p = buf;
    while (*p && *p != ' ')
        p++;
    uint64_t v = 0;
    while (*p == ' ')
        p++;
    while (*p >= '0' && *p <= '9')
        v = v * 10 + (uint64_t)(*p++ - '0');
    return v * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* The main executable's GNU build-id, found through the auxiliary vector
 * (no loader lock, no allocation). */
static int exe_build_id(uint8_t *out, int max)
{
    const ElfW(Phdr) *ph = (const ElfW(Phdr) *)getauxval(AT_PHDR);
    unsigned long phnum = getauxval(AT_PHNUM);
    if (!ph || !phnum)
        return 0;
    uintptr_t base = 0;
    for (unsigned long i = 0; i < phnum; i++)
        if (ph[i].p_type == PT_PHDR)
            base = (uintptr_t)ph - ph[i].p_vaddr;
    for (unsigned long i = 0; i < phnum; i++) {
        if (ph[i].p_type != PT_NOTE)
            continue;
        const char *p = (const char *)(base + ph[i].p_vaddr);
        const char *end = p + ph[i].p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
            const char *name = p + sizeof *nh;
            const uint8_t *desc = (const uint8_t *)name + ((nh->n_namesz + 3) & ~3u);
            if ((const char *)desc + nh->n_descsz > end)
                break;
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
                int n = (int)nh->n_descsz < max ? (int)nh->n_descsz : max;
                memcpy(out, desc, (size_t)n);
                return n;
            }
            p = (const char *)desc + ((nh->n_descsz + 3) & ~3u);
        }
    }
    return 0;
}

static int pid_dead(uint32_t pid)
{
    return pid != 0 && pid != HKSHM_PID_RESERVED && kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

/* ---- attach / claim ---- */

static void detach(void)
{
    if (cs.hdr)
        munmap(cs.hdr, HKSHM_SEGMENT_SIZE);
    cs.hdr = NULL;
    ST(cs.slot, NULL);
}

static int claim_slot(void)
{
    uint32_t me = cs.pid;
    hkshm_slot *got = NULL;
    uint32_t idx = 0;
    /* Free slots first; then those whose owner exited or died (the daemon
     * would reap them, but there may be no daemon). */
    for (int pass = 0; pass < 2 && !got; pass++) {
        for (uint32_t i = 0; i < HKSHM_MAX_SLOTS; i++) {
            hkshm_slot *s = hkshm_slot_at(cs.hdr, i);
            uint32_t cur = atomic_load_explicit(&s->pid, memory_order_relaxed);
            if (pass == 0 ? cur != 0
                          : !(atomic_load(&s->state) == HKSHM_SLOT_EXITED && cur != HKSHM_PID_RESERVED) &&
                                !pid_dead(cur))
                continue;
            if (pass == 1 && cur == 0)
                continue;
            if (atomic_compare_exchange_strong(&s->pid, &cur, me)) {
                got = s;
                idx = i;
                break;
            }
        }
    }
    if (!got)
        return -1;
    atomic_store(&got->state, HKSHM_SLOT_CLAIMING);
    atomic_store(&got->seq, 0);
    atomic_store(&got->read_gen, 0);
    atomic_store(&got->gen_seen, 0);
    got->start_time = cs.start_time;
    got->flushes = 0;
    got->n_sites = 0;
    got->n_modules = 0;
    got->sites_applied = 0;
    got->rss_bytes = got->page_faults = 0;
    char exe[256];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0)
        n = 0;
    exe[n] = 0;
    const char *e = exe;
    if (n >= (ssize_t)HKSHM_EXE_MAX)
        e = exe + n - (HKSHM_EXE_MAX - 1);   /* keep the informative tail */
    memset(got->exe, 0, sizeof got->exe);
    memcpy(got->exe, e, strlen(e));
    got->build_id_len = (uint8_t)exe_build_id(got->build_id, HKSHM_BUILD_ID_MAX);
    atomic_store(&got->heartbeat_ns, mono_ns());
    atomic_store_explicit(&got->state, HKSHM_SLOT_LIVE, memory_order_release);
    ST(cs.slot, got);
    cs.slot_idx = idx;
    memset(cs.pos_of, 0xFF, sizeof cs.pos_of);
    cs.n_pos = 0;
    for (uint32_t i = 0; i < HKSHM_SLOT_SITES; i++)
        cs.arm_of_pos[i] = UINT32_MAX;
    return 0;
}

static void attach(uint64_t now)
{
    ST(cs.next_attach_ns, now + ATTACH_RETRY_NS);
    int fd = shm_open(cs.name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
        const char *why = errno == ENOENT ? "no daemon segment" : errno == EACCES ? "permission denied" : "cannot open segment";
        if (why != cs.why)
            say("not attached", why);
        cs.why = why;
        return;
    }
    struct stat st;
    const char *why = NULL;
    void *p = MAP_FAILED;
    if (fstat(fd, &st) < 0)
        why = "cannot stat segment";
    else if ((uint64_t)st.st_size != HKSHM_SEGMENT_SIZE)
        why = "incompatible segment (size)";
    else if ((p = mmap(NULL, HKSHM_SEGMENT_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED)
        why = "cannot map segment";
    close(fd);
    if (!why) {
        const char *m = hkshm_header_mismatch(p, (uint64_t)st.st_size);
        if (m)
            why = m[0] == 'm' ? "incompatible segment (magic)" : m[0] == 'A' ? "incompatible segment (ABI version)"
                                                                             : "incompatible segment (layout)";
    }
    if (why) {
        if (p != MAP_FAILED)
            munmap(p, HKSHM_SEGMENT_SIZE);
        if (why != cs.why)
            say("not attached", why);
        cs.why = why;
        return;
    }
    cs.hdr = p;
    cs.dev = st.st_dev;
    cs.ino = st.st_ino;
    if (claim_slot() < 0) {
        detach();
        if (cs.why != (const char *)"no free slot")
            say("not attached", "no free slot");
        cs.why = "no free slot";
        return;
    }
    cs.why = NULL;
    cs.gen_applied = 0;
    ST(cs.next_flush_ns, now);
    cs.next_recheck_ns = now + RECHECK_NS;
    ST(cs.next_apply_ns, 0);
    say("attached", NULL);
}

/* A new daemon may have replaced the segment (a different object under the
 * same name); our mapping would then be an orphan nobody reads. */
static void recheck(uint64_t now)
{
    cs.next_recheck_ns = now + RECHECK_NS;
    int fd = shm_open(cs.name, O_RDONLY | O_CLOEXEC, 0);
    struct stat st;
    int same = fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == cs.dev && st.st_ino == cs.ino;
    if (fd >= 0)
        close(fd);
    if (same)
        return;
    say("segment replaced, re-attaching", NULL);
    detach();
    ST(cs.next_attach_ns, now);
}

/* ---- flushing ---- */

static void st64(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

static uint16_t module_index(hkshm_slot *s, uint64_t hash, const char *path)
{
    for (uint32_t i = 0; i < s->n_modules && i < HKSHM_SLOT_MODULES; i++)
        if (s->modules[i].hash == hash)
            return (uint16_t)i;
    if (s->n_modules >= HKSHM_SLOT_MODULES)
        return HKSHM_NO_MODULE;
    hkshm_module *m = &s->modules[s->n_modules];
    m->hash = hash;
    size_t len = strlen(path);
    const char *src = len >= HKSHM_MODULE_PATH ? path + len - (HKSHM_MODULE_PATH - 1) : path;
    memset(m->path, 0, sizeof m->path);
    memcpy(m->path, src, strlen(src));
    return (uint16_t)s->n_modules++;
}

static void flush_site(const hk_site_view *v, void *arg)
{
    hkshm_slot *s = arg;
    if (v->index >= HK_SITE_MAX)
        return;
    uint16_t pos = cs.pos_of[v->index];
    if (pos == NO_POS) {
        if (cs.n_pos >= HKSHM_SLOT_SITES)
            return;                 /* the slot is full: later sites go unreported */
        pos = (uint16_t)cs.n_pos++;
        cs.pos_of[v->index] = pos;
    }
    hkshm_site *d = &s->sites[pos];
    const hk_site_counters *c = &v->counters;
    st64(&d->module_hash, v->module_hash);
    st64(&d->offset, v->offset);
    st64(&d->allocs, c->allocs);
    st64(&d->frees, c->frees);
    st64(&d->bytes, c->bytes);
    st64(&d->live_bytes, c->live_bytes);
    st64(&d->bigcache_hits, c->bigcache_hits);
    st64(&d->bigcache_misses, c->bigcache_misses);
    st64(&d->bigcache_evictions, c->bigcache_evictions);
    st64(&d->thp_blocks, c->thp_blocks);
    st64(&d->slow_ns, c->slow_ns);
    d->module = module_index(s, v->module_hash, v->module);
    d->flags = v->policy.from_daemon;
    d->policy_arm = cs.arm_of_pos[pos];
    for (uint32_t b = 0; b < HKSHM_HIST && b < HK_SITE_HIST; b++)
        __atomic_store_n(&d->size_hist[b], (uint32_t)c->size_hist[b], __ATOMIC_RELAXED);
}

static void flush(uint64_t now)
{
    hkshm_slot *s = LD(cs.slot);
    uint32_t fi = atomic_load_explicit(&cs.hdr->flush_interval_ms, memory_order_relaxed);
    if (fi < 1 || fi > 10000)
        fi = 250;
    ST(cs.next_flush_ns, now + (uint64_t)fi * 1000000ull);

    struct rusage ru;
    uint64_t faults = getrusage(RUSAGE_SELF, &ru) == 0 ? (uint64_t)(ru.ru_minflt + ru.ru_majflt) : 0;
    uint64_t rss = self_rss_bytes();

    uint64_t seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
    atomic_store_explicit(&s->seq, seq | 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    hk_site_for_each(flush_site, s);
    s->n_sites = cs.n_pos;
    s->sites_applied = cs.sites_applied;
    st64(&s->page_faults, faults);
    st64(&s->rss_bytes, rss);
    st64(&s->flushes, s->flushes + 1);
    atomic_store_explicit(&s->seq, (seq | 1) + 1, memory_order_release);
    atomic_store_explicit(&s->heartbeat_ns, now, memory_order_relaxed);
}

/* ---- applying published thresholds ---- */

static void collect_site(const hk_site_view *v, void *arg)
{
    (void)arg;
    if (cs.n_work >= HK_SITE_MAX)
        return;
    pending_policy *w = &cs.work[cs.n_work++];
    w->index = v->index;
    w->module_hash = v->module_hash;
    w->offset = v->offset;
    w->current = v->policy;
}

static const hkshm_policy *find(const hkshm_policy *e, uint32_t n, uint64_t h, uint64_t o)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = hkshm_key_cmp(e[mid].module_hash, e[mid].offset, h, o);
        if (c == 0)
            return &e[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int valid_policy(const hkshm_policy *p)
{
    return p->large_threshold >= HKSHM_THRESHOLD_MIN && p->large_threshold <= HKSHM_THRESHOLD_MAX &&
           p->bigcache_slots <= HKSHM_SLOTS_LIMIT && p->thp <= 1;
}

static void apply(uint64_t now)
{
    hkshm_header *h = cs.hdr;
    hkshm_slot *s = LD(cs.slot);
    ST(cs.next_apply_ns, now + APPLY_MIN_NS);
    uint64_t g = atomic_load_explicit(&h->generation, memory_order_acquire);
    uint32_t nsites = hk_site_count();
    if (g == 0 || (g == cs.gen_applied && nsites == cs.sites_at_apply))
        return;
    if (!atomic_load_explicit(&h->learning, memory_order_relaxed))
        return;

    /* Our sites first, outside the read section, to keep it short. */
    cs.n_work = 0;
    hk_site_for_each(collect_site, NULL);

    /* Read-side critical section (see hakmem_shm.h). */
    atomic_store(&s->read_gen, g);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&h->generation) != g) {
        atomic_store(&s->read_gen, 0);
        return;
    }
    hkshm_table *tab = NULL;
    uint32_t a = atomic_load(&h->active) % HKSHM_TABLES;
    for (uint32_t k = 0; k < HKSHM_TABLES && !tab; k++) {
        hkshm_table *t = hkshm_table_at(h, (a + k) % HKSHM_TABLES);
        if (atomic_load_explicit(&t->generation, memory_order_acquire) == g)
            tab = t;
    }
    uint32_t n = tab ? tab->n_entries : 0;
    int ok = tab && n <= HKSHM_TABLE_CAP;
    uint32_t found = 0;
    for (uint32_t i = 0; ok && i < cs.n_work; i++) {
        pending_policy *w = &cs.work[i];
        const hkshm_policy *e = find(tab->entries, n, w->module_hash, w->offset);
        hkshm_policy copy;
        if (e) {
            memcpy(&copy, e, sizeof copy);
            e = valid_policy(&copy) && copy.module_hash == w->module_hash && copy.offset == w->offset ? &copy : NULL;
        }
        /* Stash the result in place: index stays, key fields become the verdict. */
        if (e) {
            w->module_hash = 1;
            w->offset = (uint64_t)copy.arm;
            w->current.large_threshold = copy.large_threshold;
            w->current.bigcache_slots = copy.bigcache_slots;
            w->current.thp = copy.thp;
            w->current.from_daemon = 1;
            found++;
        } else {
            w->module_hash = 0;
        }
    }
    atomic_thread_fence(memory_order_acquire);
    if (ok && atomic_load_explicit(&tab->generation, memory_order_relaxed) != g)
        ok = 0;                     /* rewritten under us: the daemon broke the grace period */
    atomic_store(&s->read_gen, 0);
    if (!ok)
        return;

    uint32_t applied = 0;
    for (uint32_t i = 0; i < cs.n_work; i++) {
        pending_policy *w = &cs.work[i];
        if (!w->module_hash)
            continue;
        hk_site_set_policy(w->index, &w->current);
        applied++;
        uint16_t pos = w->index < HK_SITE_MAX ? cs.pos_of[w->index] : NO_POS;
        if (pos != NO_POS)
            cs.arm_of_pos[pos] = (uint32_t)w->offset;
    }
    (void)found;
    cs.sites_applied = applied;
    cs.gen_applied = g;
    cs.sites_at_apply = nsites;
    atomic_store(&s->gen_seen, g);
}

/* ---- the entry points ---- */

void hk_shm_client_init(void)
{
    if (cs.inited)
        return;
    cs.inited = 1;
    const char *v = getenv("HAKMEM_VERBOSE");
    cs.verbose = v && *v && *v != '0';
    const char *mode = getenv("HAKMEM_MODE");
    if (mode && strcmp(mode, "baseline") == 0) {
        cs.disabled = 1;
        cs.why = "baseline mode: daemon ignored";
        return;
    }
    const char *name = getenv("HAKMEM_SHM");
    if (!name || !*name)
        name = HKSHM_DEFAULT_NAME;
    size_t len = strlen(name);
    if (len >= sizeof cs.name) {
        cs.disabled = 1;
        cs.why = "HAKMEM_SHM name too long";
        return;
    }
    memcpy(cs.name, name, len + 1);
    cs.pid = (uint32_t)getpid();
    cs.start_time = self_start_time();
    memset(cs.pos_of, 0xFF, sizeof cs.pos_of);
    int expect = 0;
    if (atomic_compare_exchange_strong(&cs.busy, &expect, 1)) {
        uint64_t now = mono_ns();
        attach(now);
        if (LD(cs.slot)) {
            flush(now);
            apply(now);
        }
        atomic_store_explicit(&cs.busy, 0, memory_order_release);
    }
}

void hk_shm_client_tick(uint64_t now_ns)
{
    if (!cs.inited || cs.disabled || LD(cs.closing))
        return;
    /* The common case costs a few loads and no atomic write. */
    if (LD(cs.slot) && now_ns < LD(cs.next_flush_ns) && now_ns < LD(cs.next_apply_ns))
        return;
    if (!LD(cs.slot) && now_ns < LD(cs.next_attach_ns))
        return;
    int expect = 0;
    if (!atomic_compare_exchange_strong_explicit(&cs.busy, &expect, 1, memory_order_acquire,
                                                 memory_order_relaxed))
        return;
    if (!LD(cs.closing)) {
        if (!LD(cs.slot)) {
            if (now_ns >= LD(cs.next_attach_ns))
                attach(now_ns);
        } else if (now_ns >= cs.next_recheck_ns) {
            recheck(now_ns);
            if (!LD(cs.slot))
                attach(now_ns);
        }
        if (LD(cs.slot)) {
            if (now_ns >= LD(cs.next_flush_ns))
                flush(now_ns);
            if (now_ns >= LD(cs.next_apply_ns))
                apply(now_ns);
        }
    }
    atomic_store_explicit(&cs.busy, 0, memory_order_release);
}

void hk_shm_client_sites_added(uint64_t now_ns)
{
    if (!cs.inited || cs.disabled || !LD(cs.slot))
        return;
    ST(cs.next_apply_ns, 0);
    hk_shm_client_tick(now_ns);
}

void hk_shm_client_after_fork_child(void)
{
    if (!cs.inited || cs.disabled)
        return;
    /* Only this thread exists now; whatever held the lock in the parent is gone.
     * The mapping is shared with the parent, and so is its slot: leave it. */
    atomic_store(&cs.busy, 0);
    ST(cs.slot, NULL);
    cs.pid = (uint32_t)getpid();
    cs.start_time = self_start_time();
    cs.sites_applied = 0;
    uint64_t now = mono_ns();
    if (cs.hdr) {
        if (claim_slot() == 0) {
            cs.gen_applied = 0;
            ST(cs.next_flush_ns, now);
            ST(cs.next_apply_ns, 0);
            cs.next_recheck_ns = now + RECHECK_NS;
        } else {
            detach();
            cs.why = "no free slot";
            ST(cs.next_attach_ns, now + ATTACH_RETRY_NS);
        }
    } else {
        ST(cs.next_attach_ns, now);
    }
}

void hk_shm_client_exit(void)
{
    if (!cs.inited || cs.disabled)
        return;
    /* Exit is not malloc's fast path: waiting a moment for a flush in
     * another thread is fine, waiting forever is not. */
    int got = 0;
    for (int i = 0; i < 1000 && !got; i++) {
        int expect = 0;
        got = atomic_compare_exchange_strong(&cs.busy, &expect, 1);
        if (!got)
            sched_yield();
    }
    if (!got)
        return;                     /* the daemon reaps the slot once we are gone */
    ST(cs.closing, 1);
    if (LD(cs.slot) && atomic_load(&LD(cs.slot)->pid) == cs.pid) {
        flush(mono_ns());
        atomic_store_explicit(&LD(cs.slot)->state, HKSHM_SLOT_EXITED, memory_order_release);
    }
    ST(cs.slot, NULL);
    atomic_store_explicit(&cs.busy, 0, memory_order_release);
}

void hk_shm_client_describe(char *buf, int len)
{
    if (!buf || len <= 0)
        return;
    sbuf b = { buf, len, 0 };
    buf[0] = 0;
    if (!cs.inited) {
        put_s(&b, "shm client not initialised");
        return;
    }
    if (cs.disabled) {
        put_s(&b, cs.why ? cs.why : "disabled");
        return;
    }
    hkshm_header *h = cs.hdr;
    if (!h || (!LD(cs.slot) && !LD(cs.closing))) {
        put_s(&b, "not attached to ");
        put_s(&b, cs.name);
        put_s(&b, ": ");
        put_s(&b, cs.why ? cs.why : "not yet tried");
        put_s(&b, "; running on defaults");
        return;
    }
    put_s(&b, "attached to ");
    put_s(&b, cs.name);
    put_s(&b, " (slot ");
    put_u(&b, cs.slot_idx);
    put_s(&b, "), generation ");
    put_u(&b, cs.gen_applied);
    put_s(&b, ", ");
    put_u(&b, cs.sites_applied);
    put_s(&b, " sites applied");
    uint32_t dp = atomic_load(&h->daemon_pid);
    if (!dp || pid_dead(dp))
        put_s(&b, ", daemon not running");
    else if (!atomic_load(&h->learning))
        put_s(&b, ", daemon not learning");
}
