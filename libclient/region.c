/* Report region box (region.h). */
#include "region.h"
#include "command.h"
#include "os.h"
#include "modules.h"
#include "site.h"
#include "stats.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(HKSHM_REGION_SITES < 0xFFFFu, "region positions plus one fit 16 bits");

/* All zero at start, so that it takes no room in the library's data pages
 * and its tables stay untouched until a site is reported: positions and
 * arms are kept plus one (a zero is none; HKSHM_NO_ARM + 1 wraps to it). */
static struct {
    hkshm_region *map;
    int fd_plus1;                   /* 0: released or none */
    dev_t fd_dev;
    ino_t fd_ino;
    uint32_t n_pos;
    uint32_t sites_applied, binary_arm_plus1;
    uint64_t start_ns;              /* wall time counts from here */
    uint64_t sampled_ns;            /* RSS integral: last sample */
    uint64_t rss_kib_ms, rss_rem;   /* the integral, and KiB*ns not yet a whole KiB*ms */
    uint64_t flushes;
    uint64_t page_size;
    uint64_t plane_ns;              /* the shm client's steps so far (hk_region_note_plane_ns) */
    uint64_t attach_ns, report_every;   /* hk_region_note_sampling */
    /* Last, apart from the fields every flush writes. */
    uint16_t pos_of[HK_SITE_MAX];   /* site index -> region index + 1 */
    uint32_t arm_of_site[HK_SITE_MAX];  /* + 1 */
} rg;


static void counters_restart(void)
{
    rg.start_ns = rg.sampled_ns = hk_now_ns();
    rg.rss_kib_ms = rg.rss_rem = 0;
    rg.flushes = 0;
}

void hk_region_init(void)
{
    uint64_t page = getauxval(AT_PAGESZ);
    rg.page_size = page ? page : 4096;
    counters_restart();
}

/* Closes the descriptor only if it is still the memfd we made: a program
 * may have closed it and reused the number. */
static void close_own_fd(void)
{
    struct stat st;
    int fd = rg.fd_plus1 - 1;
    if (fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == rg.fd_dev && st.st_ino == rg.fd_ino)
        close(fd);
    rg.fd_plus1 = 0;
}

static void drop(void)
{
    if (rg.map)
        munmap(rg.map, HKSHM_REGION_SIZE);
    rg.map = NULL;
    close_own_fd();
}

static void write_identity(hkshm_region *r, uint32_t registration)
{
    r->magic = HKSHM_REGION_MAGIC;
    r->abi_version = HKSHM_ABI_VERSION;
    r->region_size = HKSHM_REGION_SIZE;
    int n = hk_module_exe_build_id(r->build_id, HKSHM_BUILD_ID_MAX);
    r->build_id_len = (uint8_t)n;
    r->binary_hash = n > 0 ? hk_module_hash(r->build_id, (size_t)n) : 0;
    r->registration = registration;
    r->command_hash = hk_command_hash();
    memcpy(r->command, hk_command_text(), HKSHM_COMMAND_MAX);
    char exe[256];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe);
    if (len > 0) {
        const char *tail = exe;
        if (len >= (ssize_t)HKSHM_EXE_MAX) {
            tail = exe + len - (HKSHM_EXE_MAX - 1);   /* the informative end */
            len = HKSHM_EXE_MAX - 1;
        }
        memcpy(r->exe, tail, (size_t)len);
    }
}

int hk_region_create(uint32_t registration)
{
    /* The process still runs the generation it applied: a new region says so. */
    uint64_t seen = rg.map ? atomic_load(&rg.map->gen_seen) : 0;
    drop();
    int fd = memfd_create("hakmem-report", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    struct stat st;
    int rc = 0;
    void *p = MAP_FAILED;
    if (ftruncate(fd, HKSHM_REGION_SIZE) < 0 || fstat(fd, &st) < 0)
        rc = -errno;
    else if ((p = mmap(NULL, HKSHM_REGION_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED)
        rc = -errno;
    if (rc == 0) {
        write_identity(p, registration);
        atomic_store(&((hkshm_region *)p)->gen_seen, seen);
        if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
            rc = -errno;
    }
    if (rc < 0) {
        if (p != MAP_FAILED)
            munmap(p, HKSHM_REGION_SIZE);
        close(fd);
        return rc;
    }
    rg.map = p;
    rg.fd_plus1 = fd + 1;
    rg.fd_dev = st.st_dev;
    rg.fd_ino = st.st_ino;
    return 0;
}

hkshm_region *hk_region_get(void) { return rg.map; }
int hk_region_fd(void) { return rg.fd_plus1 - 1; }
void hk_region_release_fd(void) { close_own_fd(); }

void hk_region_set_site_arm(uint32_t site, uint32_t arm)
{
    if (site < HK_SITE_MAX)
        rg.arm_of_site[site] = arm + 1;
}

uint32_t hk_region_binary_arm(void)
{
    return rg.binary_arm_plus1 - 1;
}

void hk_region_set_applied(uint32_t sites_applied, uint32_t binary_arm)
{
    rg.sites_applied = sites_applied;
    rg.binary_arm_plus1 = binary_arm + 1;
}

void hk_region_fork_child(void)
{
    /* munmap and close are all this does: nothing here may block. */
    drop();
    counters_restart();
}

/* ---- flushing ---- */

static void st64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }

static uint16_t module_index(hkshm_region *r, uint64_t hash, const char *path)
{
    for (uint32_t i = 0; i < r->n_modules && i < HKSHM_REGION_MODULES; i++)
        if (r->modules[i].hash == hash)
            return (uint16_t)i;
    if (r->n_modules >= HKSHM_REGION_MODULES)
        return HKSHM_NO_MODULE;
    hkshm_module *m = &r->modules[r->n_modules];
    m->hash = hash;
    size_t len = strlen(path);
    const char *src = len >= HKSHM_MODULE_PATH ? path + len - (HKSHM_MODULE_PATH - 1) : path;
    memset(m->path, 0, sizeof m->path);
    memcpy(m->path, src, strlen(src));
    return (uint16_t)r->n_modules++;
}

static void flush_site(const hk_site_view *v, void *arg)
{
    hkshm_region *r = arg;
    if (v->index >= HK_SITE_MAX)
        return;
    uint16_t pos = (uint16_t)(rg.pos_of[v->index] - 1);
    if (rg.pos_of[v->index] == 0) {
        if (rg.n_pos >= HKSHM_REGION_SITES)
            return;                 /* the region is full: later sites go unreported */
        pos = (uint16_t)rg.n_pos++;
        rg.pos_of[v->index] = (uint16_t)(pos + 1);
    }
    hkshm_site *d = &r->sites[pos];
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
    d->module = module_index(r, v->module_hash, v->module);
    d->flags = v->policy.from_daemon;
    d->policy_arm = rg.arm_of_site[v->index] - 1;
    for (uint32_t b = 0; b < HKSHM_HIST && b < HK_SITE_HIST; b++)
        __atomic_store_n(&d->size_hist[b], (uint32_t)c->size_hist[b], __ATOMIC_RELAXED);
}

static uint64_t rss_bytes(void)
{
    /* statm: "size resident ...", in pages. */
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    const char *p = buf;
    while (*p && *p != ' ')
        p++;
    while (*p == ' ')
        p++;
    uint64_t pages = 0;
    while (*p >= '0' && *p <= '9')
        pages = pages * 10 + (uint64_t)(*p++ - '0');
    return pages * rg.page_size;
}

static void proc_counters(uint64_t *proc, uint64_t now, int exiting)
{
    uint64_t rss = rss_bytes();
    /* The integral: this RSS over the time since the last sample. */
    unsigned __int128 kib_ns = (unsigned __int128)(rss >> 10) * (now - rg.sampled_ns) + rg.rss_rem;
    rg.rss_kib_ms += (uint64_t)(kib_ns / 1000000u);
    rg.rss_rem = (uint64_t)(kib_ns % 1000000u);
    rg.sampled_ns = now;

    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    getrusage(RUSAGE_SELF, &ru);
    uint64_t cpu = ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000ull +
                   ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000ull;
    uint64_t alloc_ns, syscalls, allocs, bytes;
    hk_stats_proc_counters(&alloc_ns, &syscalls, &allocs, &bytes);

    st64(&proc[HKSHM_PROC_RSS_BYTES], rss);
    st64(&proc[HKSHM_PROC_PEAK_RSS_BYTES], (uint64_t)ru.ru_maxrss * 1024u);
    st64(&proc[HKSHM_PROC_RSS_KIB_MS], rg.rss_kib_ms);
    st64(&proc[HKSHM_PROC_PAGE_FAULTS], (uint64_t)ru.ru_minflt + (uint64_t)ru.ru_majflt);
    st64(&proc[HKSHM_PROC_CPU_NS], cpu);
    st64(&proc[HKSHM_PROC_WALL_NS], now - rg.start_ns);
    st64(&proc[HKSHM_PROC_ALLOC_NS], alloc_ns);
    st64(&proc[HKSHM_PROC_SYSCALLS], syscalls);
    st64(&proc[HKSHM_PROC_ALLOCS], allocs);
    st64(&proc[HKSHM_PROC_BYTES], bytes);
    st64(&proc[HKSHM_PROC_EXITED], exiting ? 1 : 0);
    st64(&proc[HKSHM_PROC_PLANE_NS], rg.plane_ns);
    st64(&proc[HKSHM_PROC_ATTACH_NS], rg.attach_ns);
    st64(&proc[HKSHM_PROC_REPORT_EVERY], rg.report_every);
}

void hk_region_note_plane_ns(uint64_t ns)
{
    rg.plane_ns = ns;
}

void hk_region_note_sampling(uint64_t attach_ns, uint32_t report_every)
{
    rg.attach_ns = attach_ns;
    rg.report_every = report_every;
}

void hk_region_flush(int exiting)
{
    hkshm_region *r = rg.map;
    if (!r)
        return;
    uint64_t now = hk_now_ns();
    uint64_t seq = atomic_load_explicit(&r->seq, memory_order_relaxed);
    atomic_store_explicit(&r->seq, seq | 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    hk_site_for_each(flush_site, r);
    r->n_sites = rg.n_pos;
    r->sites_applied = rg.sites_applied;
    r->binary_arm = rg.binary_arm_plus1 - 1;
    proc_counters(r->proc, now, exiting);
    st64(&r->flushes, ++rg.flushes);
    atomic_store_explicit(&r->seq, (seq | 1) + 1, memory_order_release);
    atomic_store_explicit(&r->heartbeat_ns, now, memory_order_relaxed);
}
