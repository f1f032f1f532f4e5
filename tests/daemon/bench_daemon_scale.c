/* Scale bench for the daemon core (not a test: it reports, it does not judge).
 *
 * Part 1: P simulated processes x S sites each (report regions registered
 * in-process, beside a private segment); every
 * interval each site's counters move (so every pull completes and the
 * learner republishes: the worst case), then one core interval (collect,
 * learn, publish) is timed.  Run three times: sites shared by 16 binaries;
 * every process a different binary (P*S distinct keys); and half the
 * processes (root's, 16 binaries) next to a user whose other half report
 * P/2*S keys never seen before every interval (a flood: refused past the
 * user's limits, its own idle sites evicted to make room).
 *
 * Part 2: the daemon's CPU share with N real client processes (forked, each
 * flushing S sites into its region at the flush interval the daemon asks
 * for; registered with the child's pid, so a pidfd tells when it ends) at
 * the default 1 s interval.
 *
 *   bench_daemon_scale [procs sites intervals cpu_clients cpu_seconds] */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core.h"
#include "core_api.h"
#include "hakmem_shm.h"
#include "log.h"
#include "region_fixture.h"
#include "segment.h"

#define MAX_PROCS 256u

static char shm_name[64];

static const hkshm_header *map_segment(void)
{
    int fd = shm_open(shm_name, O_RDONLY, 0);
    if (fd < 0)
        return NULL;
    void *p = mmap(NULL, HKSHM_SEGMENT_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    return p == MAP_FAILED ? NULL : p;
}

static void remove_segment(void)
{
    char lock[96];
    snprintf(lock, sizeof lock, "/dev/shm%s.lock", shm_name);
    shm_unlink(shm_name);
    unlink(lock);
}

/* What a client's flush does: cumulative counters under the region's seq.
 * A flooder (a user other than root) reports new keys every round. */
static void flush(hkshm_region *s, uint32_t sites, uint64_t binary, uint64_t round, int flooder)
{
    region_write_begin(s);
    uint64_t hash = flooder ? 0xf100d00000000ull + (round << 16) + binary : 0x5000 + binary;
    s->n_modules = 1;
    s->modules[0].hash = hash;
    if (flooder)
        snprintf(s->modules[0].path, sizeof s->modules[0].path, "/tmp/flood");
    else
        snprintf(s->modules[0].path, sizeof s->modules[0].path, "/usr/bin/sim%llu", (unsigned long long)binary);
    for (uint32_t i = 0; i < sites; i++) {
        hkshm_site *d = &s->sites[i];
        uint64_t a = (round + 1) * (100 + i % 7);
        d->module_hash = hash;
        d->offset = 0x1000 + 16 * i;
        d->module = 0;
        d->allocs = a;
        d->frees = a - 1;
        d->bytes = a * (4096u << (i % 10));
        d->slow_ns = a * (300 + (i * 37 + round * 11) % 500);
        d->bigcache_hits = a / 2;
        d->bigcache_misses = a / 2;
        d->size_hist[12 + i % 10] = (uint32_t)a;
    }
    s->n_sites = sites;
    s->proc[HKSHM_PROC_PAGE_FAULTS] = round * 50;
    region_write_end(s);
}

static uint64_t process_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

#define FLOOD_UID 4242u

/* The last `flooders` of the processes flood, as FLOOD_UID; the others
 * are root's. */
static int part1(uint32_t procs, uint32_t sites, uint32_t intervals, uint32_t binaries, uint32_t flooders,
                 const char *what)
{
    snprintf(shm_name, sizeof shm_name, "/hkd-scale-%d", (int)getpid());
    remove_segment();
    char dir[] = "/tmp/hkd-scale-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    hkd_core_cfg cfg = { .shm_name = shm_name, .state_dir = dir, .interval_ms = 1000, .learning = 1,
                         .learn = hkd_learn_default_cfg, .daemon_uid = 999 };
    if (hkd_core_init(&cfg) < 0) {
        fprintf(stderr, "core init failed\n");
        return 1;
    }
    hkshm_region *slot[MAX_PROCS];
    char why[256];
    for (uint32_t p = 0; p < procs; p++) {
        char exe[32];
        snprintf(exe, sizeof exe, "/usr/bin/sim%u", p);
        uid_t uid = p >= procs - flooders ? FLOOD_UID : 0;
        if (!(slot[p] = region_register(0, uid, 1, exe, why, sizeof why))) {
            fprintf(stderr, "simulated process %u refused: %s\n", p, why);
            return 1;
        }
    }
    uint64_t *t = calloc(intervals, sizeof *t);
    uint64_t *cpu = calloc(intervals, sizeof *cpu);
    uint64_t phase_sum[3] = { 0, 0, 0 };
    for (uint32_t r = 0; r < intervals; r++) {
        for (uint32_t p = 0; p < procs; p++)
            flush(slot[p], sites, p < procs - flooders ? p % binaries : p, r, p >= procs - flooders);
        uint64_t c0 = process_cpu_ns();
        hkd_core_interval();
        cpu[r] = process_cpu_ns() - c0;
        hkd_status st;
        hkd_get_status(&st);
        t[r] = st.last_interval_ns;
        uint64_t ph[3];
        hkd_core_phase_ns(ph);
        for (int k = 0; r > 0 && k < 3; k++)
            phase_sum[k] += ph[k];
    }
    hkd_status st;
    hkd_get_status(&st);
    /* A full synchronous save (copy, encode, write, fsync, rename), then
     * what a periodic save costs the learner in steady state: the copy into
     * the buffer the first save left (the saver writes it meanwhile). */
    uint64_t t0 = hkd_now_ns();
    hkd_core_save();
    uint64_t save_ns = hkd_now_ns() - t0;
    t0 = hkd_now_ns();
    hkd_core_save_async();
    uint64_t async_ns = hkd_now_ns() - t0;
    /* The first interval only records history (a restart's view). */
    qsort(t + 1, intervals - 1, sizeof *t, cmp_u64);
    qsort(cpu + 1, intervals - 1, sizeof *cpu, cmp_u64);
    uint32_t n = intervals - 1;
    printf("%-34s %3u procs x %3u sites = %6u records, %6u keys: interval median %.2f ms, p95 %.2f ms, max %.2f ms; "
           "generation %llu; state save on the learner %.1f ms (full synchronous save %.1f ms)\n",
           what, procs, sites, procs * sites, st.sites, t[1 + n / 2] / 1e6, t[1 + n * 95 / 100] / 1e6,
           t[intervals - 1] / 1e6, (unsigned long long)st.generation, async_ns / 1e6, save_ns / 1e6);
    printf("%-34s mean phases: collect %.2f ms, learn %.2f ms, publish %.2f ms; "
           "CPU time per interval median %.2f ms, all threads (wall time includes waiting for a core)\n",
           "", phase_sum[0] / 1e6 / n, phase_sum[1] / 1e6 / n, phase_sum[2] / 1e6 / n, cpu[1 + n / 2] / 1e6);
    free(cpu);
    free(t);
    hkd_core_shutdown();
    for (uint32_t p = 0; p < procs; p++)
        munmap(slot[p], HKSHM_REGION_SIZE);
    remove_segment();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return 0;
}

/* A forked client: writes the region the parent registered for it. */
static void client(hkshm_region *s, uint32_t sites, uint64_t binary, double seconds)
{
    const hkshm_header *h = map_segment();
    if (!h)
        _exit(1);
    uint64_t end = hkd_now_ns() + (uint64_t)(seconds * 1e9);
    for (uint64_t r = 0; hkd_now_ns() < end; r++) {
        flush(s, sites, binary, r, 0);
        uint32_t ms = atomic_load(&h->flush_interval_ms);
        struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
    }
    _exit(0);
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int part2(uint32_t clients, uint32_t sites, double seconds)
{
    snprintf(shm_name, sizeof shm_name, "/hkd-scale-cpu-%d", (int)getpid());
    remove_segment();
    hkd_core_cfg cfg = { .shm_name = shm_name, .state_dir = NULL, .interval_ms = 1000, .learning = 1,
                         .learn = hkd_learn_default_cfg };
    if (hkd_core_init(&cfg) < 0)
        return 1;
    pid_t *kids = calloc(clients, sizeof *kids);
    for (uint32_t i = 0; i < clients; i++) {
        hkshm_region *r;
        int fd = region_make(&r, 1, "/usr/bin/sim-client", F_SEAL_SHRINK | F_SEAL_GROW);
        if (fd < 0)
            return 1;
        kids[i] = fork();
        if (kids[i] == 0)
            client(r, sites, i % 8, seconds + 1.0);
        char why[256];
        if (kids[i] < 0 || hkd_registry_add_local(fd, kids[i], getuid(), why, sizeof why) < 0)
            fprintf(stderr, "client %u not registered: %s\n", i, kids[i] < 0 ? "fork failed" : why);
        close(fd);
        munmap(r, HKSHM_REGION_SIZE);
    }
    double c0 = cpu_s();
    uint64_t w0 = hkd_now_ns();
    uint64_t next = w0;
    uint32_t n = 0;
    while (hkd_now_ns() - w0 < (uint64_t)(seconds * 1e9)) {
        next += 1000000000ull;
        hkd_core_interval();
        n++;
        uint64_t now = hkd_now_ns();
        if (next > now) {
            uint64_t d = next - now;
            struct timespec ts = { (time_t)(d / 1000000000ull), (long)(d % 1000000000ull) };
            nanosleep(&ts, NULL);
        }
    }
    double cpu = cpu_s() - c0;
    double wall = (hkd_now_ns() - w0) / 1e9;
    hkd_status st;
    hkd_get_status(&st);
    printf("daemon CPU with %u clients x %u sites at 1 s interval: %.3f%% of one core "
           "(%.1f ms CPU over %.1f s, %u intervals, %u processes seen, %u sites)\n",
           clients, sites, 100.0 * cpu / wall, cpu * 1e3, wall, n, st.processes, st.sites);
    for (uint32_t i = 0; i < clients; i++)
        waitpid(kids[i], NULL, 0);
    free(kids);
    hkd_core_shutdown();
    remove_segment();
    return 0;
}

int main(int argc, char **argv)
{
    uint32_t procs = argc > 1 ? (uint32_t)atoi(argv[1]) : 256;
    uint32_t sites = argc > 2 ? (uint32_t)atoi(argv[2]) : 256;
    uint32_t intervals = argc > 3 ? (uint32_t)atoi(argv[3]) : 30;
    uint32_t cpu_clients = argc > 4 ? (uint32_t)atoi(argv[4]) : 64;
    double cpu_seconds = argc > 5 ? atof(argv[5]) : 20.0;
    if (procs > MAX_PROCS || sites > HKSHM_REGION_SITES || intervals < 3 || cpu_clients > MAX_PROCS) {
        fprintf(stderr, "usage: bench_daemon_scale [procs<=256 sites<=256 intervals>=3 cpu_clients cpu_seconds]\n");
        return 2;
    }
    hkd_log_init("bench_daemon_scale", HKD_LOG_WARNING);
    hkd_reader_thread_enter();
    int rc = part1(procs, sites, intervals, 16, 0, "16 binaries (keys shared):");
    rc |= part1(procs, sites, intervals, procs, 0, "every process its own binary:");
    rc |= part1(procs, sites, intervals, 16, procs / 2, "half of them a user's flood of keys:");
    if (cpu_clients && cpu_seconds > 0)
        rc |= part2(cpu_clients, sites, cpu_seconds);
    hkd_reader_thread_leave();
    return rc;
}
