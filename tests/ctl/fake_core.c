/* TEST ONLY: a fake of daemon/core_api.h, so the control server, metrics
 * and hakmemctl can be tested with rich, predictable data (three sites with
 * arms, two processes) without a shared segment or client processes.  The
 * end-to-end tests use the real hakmemd; this exercises the protocol.
 * FAKE_CORE_SITES=N adds sites up to N in all (the learner leaves the extra
 * ones alone; their bytes follow a fixed scramble of their index, so that
 * an order by bytes is not the order of creation).
 *
 * Sites live in the fake daemon's own binary, at offsets inside the
 * functions fake_site_json/mir/vm, so hakmemctl's symbolization is checked
 * too.  A thread plays "learner": every 20 ms it pulls one arm per site
 * (the pinned one, if any) and republishes that arm's thresholds. */
#include "core_api.h"
#include "binaries.h"
#include "fleet.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NSITES 3
#define NARMS 3

__attribute__((noinline, used)) void *fake_site_json(void) { return malloc(64 << 10); }
__attribute__((noinline, used)) void *fake_site_mir(void) { return malloc(256 << 10); }
__attribute__((noinline, used)) void *fake_site_vm(void) { return malloc(2 << 20); }

static const hkd_thresholds arm_cfg[NARMS] = {
    { 256 << 10, 4, 0 }, { 1 << 20, 4, 1 }, { 1 << 20, 0, 0 },
};
static const char *arm_name[NARMS] = {
    "large=256K,slots=4,thp=off", "large=1M,slots=4,thp=on", "large=1M,slots=0,thp=off",
};
/* Fixed rewards per (site, arm) so the best arm is known in advance. */
static const double reward[NSITES][NARMS] = {
    { 0.9, 0.5, 0.2 }, { 0.3, 0.8, 0.1 }, { 0.2, 0.4, 0.95 },
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static hkd_site_info *sites;
static uint32_t nsites = NSITES;
static uint64_t generation, intervals;
static struct timespec started;
static pthread_t learner;
static int stop_learner;
static int registered;

static uint64_t ms_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)(now.tv_sec - t->tv_sec) * 1000 + (uint64_t)((now.tv_nsec - t->tv_nsec) / 1000000);
}

static void publish(hkd_site_info *s, int site)
{
    int arm = s->pinned_arm;
    if (arm < 0) {
        arm = 0;
        for (int a = 1; a < NARMS; a++)
            if (s->arms[a].pulls && s->arms[a].mean_reward > s->arms[arm].mean_reward)
                arm = a;
    }
    (void)site;
    s->thresholds = arm_cfg[arm];
}

static void *learner_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&mu);
        if (stop_learner) {
            pthread_mutex_unlock(&mu);
            return NULL;
        }
        for (int i = 0; i < NSITES; i++) {
            hkd_site_info *s = &sites[i];
            int a = s->pinned_arm >= 0 ? s->pinned_arm : (int)(intervals % NARMS);
            hkd_arm_stats *st = &s->arms[a];
            st->pulls++;
            st->mean_reward += (reward[i][a] - st->mean_reward) / (double)st->pulls;
            s->allocs += 10 * (uint64_t)(i + 1);
            s->frees += 10 * (uint64_t)(i + 1);
            uint64_t size = i == 0 ? 64 << 10 : i == 1 ? 256 << 10 : 2 << 20;
            s->bytes += 10 * (uint64_t)(i + 1) * size;
            s->size_hist[__builtin_ctzll(size)] += 10 * (uint64_t)(i + 1);
            if (i == 2) {
                s->bigcache_hits += 9;
                s->bigcache_misses += 1;
            }
            publish(s, i);
        }
        intervals++;
        generation++;
        pthread_mutex_unlock(&mu);
        struct timespec ts = { 0, 20 * 1000000 };
        nanosleep(&ts, NULL);
    }
}

/* The module path and load base of this binary, to make site keys that
 * name real functions in it. */
static void init_sites(void)
{
    const char *n = getenv("FAKE_CORE_SITES");
    if (n && atoi(n) > NSITES)
        nsites = (uint32_t)atoi(n);
    sites = calloc(nsites, sizeof *sites);
    if (!sites)
        abort();
    for (uint32_t i = NSITES; i < nsites; i++) {
        hkd_site_info *s = &sites[i];
        snprintf(s->module, sizeof s->module, "/usr/lib/fake/libextra%u.so", i % 7);
        s->key.module_hash = 0xe77a000000000000ull | (i % 7);
        s->key.offset = 0x1000 + (uint64_t)i * 16;
        s->processes = 1;
        s->allocs = s->frees = 1 + i % 13;
        s->bytes = ((uint64_t)i * 2654435761u) % 1000003 * 16;
        s->size_hist[4] = s->allocs;
        s->pinned_arm = -1;
        s->n_arms = NARMS;
        for (int a = 0; a < NARMS; a++) {
            snprintf(s->arms[a].name, sizeof s->arms[a].name, "%s", arm_name[a]);
            s->arms[a].pulls = (uint64_t)(i + a) % 5;
            s->arms[a].mean_reward = reward[i % NSITES][a];
        }
        s->thresholds = arm_cfg[i % NARMS];
    }
    void *fns[NSITES] = { (void *)fake_site_json, (void *)fake_site_mir, (void *)fake_site_vm };
    for (int i = 0; i < NSITES; i++) {
        hkd_site_info *s = &sites[i];
        memset(s, 0, sizeof *s);
        Dl_info di;
        uintptr_t base = 0;
        if (dladdr(fns[i], &di) && di.dli_fbase)
            base = (uintptr_t)di.dli_fbase;
        char exe[4096];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[n > 0 ? n : 0] = '\0';
        /* core_api.h carries at most 63 bytes of path; the suite runs
         * the fake from a short directory so nothing is cut. */
        size_t len = strnlen(exe, sizeof s->module - 1);
        memcpy(s->module, exe, len);
        s->module[len] = '\0';
        s->key.module_hash = 0x5eed000000000000ull | (uint64_t)0xabc;
        /* A return address a few bytes into the function, as a real call
         * site inside it would be. */
        s->key.offset = (uint64_t)((uintptr_t)fns[i] - base) + 4;
        s->processes = 1 + (uint32_t)i;
        s->pinned_arm = -1;
        s->n_arms = NARMS;
        for (int a = 0; a < NARMS; a++)
            snprintf(s->arms[a].name, sizeof s->arms[a].name, "%s", arm_name[a]);
        s->thresholds = arm_cfg[0];
    }
}

/* Binaries: the real per-binary box, fed once with made-up runs of two
 * binaries (one whose "compact" arm is 30% cheaper, one with an odd name
 * whose runs name the command "worker"). */
static hkd_binaries *bins;

static void init_binaries(void)
{
    bins = hkd_binaries_new(NULL);
    if (!bins)
        abort();
    static const char *const exes[2] = { "/usr/bin/fake-server", "/opt/o\nd\"q\\b\033[31m\xffx" };
    uint64_t serial = 1;
    hkshm_binary_policy pub[4];
    for (int run = 0; run < 24; run++) {
        for (int b = 0; b < 2; b++) {
            uint32_t n = hkd_binaries_fill(bins, pub, 4);
            uint32_t arm = HKSHM_NO_ARM;
            for (uint32_t k = 0; k < n; k++)
                if (pub[k].binary_hash == 0xb1a0000000000000ull + (uint64_t)b &&
                    pub[k].command_hash == (b == 1 ? hkshm_command_hash("worker", 6) : 0))
                    arm = pub[k].arm;
            double cost = b == 0 && arm == (uint32_t)hkd_bin_arm_by_name("compact") ? 0.7 : 1.0;
            hkd_proc_info p;
            memset(&p, 0, sizeof p);
            p.uid = b == 0 ? 0 : 1000;
            p.binary_hash = 0xb1a0000000000000ull + (uint64_t)b;
            snprintf(p.exe, sizeof p.exe, "%s", exes[b]);
            if (b == 1) {
                memcpy(p.command, "worker", 6);
                p.command_hash = hkshm_command_hash("worker", 6);
            }
            p.proc[HKSHM_PROC_CPU_NS] = (uint64_t)(2e9 * cost * (1.0 + 0.01 * (run % 3)));
            p.proc[HKSHM_PROC_WALL_NS] = p.proc[HKSHM_PROC_CPU_NS];
            p.proc[HKSHM_PROC_RSS_BYTES] = p.proc[HKSHM_PROC_PEAK_RSS_BYTES] = 40u << 20;
            p.proc[HKSHM_PROC_RSS_KIB_MS] = 40u * 1024 * 2000;
            p.proc[HKSHM_PROC_BYTES] = 100u << 20;
            hkd_binaries_proc(bins, serial++, &p, 1, arm, 1);
            hkd_binaries_end_interval(bins);
        }
    }
}

int hkd_for_each_binary(int (*fn)(const hkd_binary_info *, void *), void *arg)
{
    return hkd_binaries_for_each(bins, fn, arg);
}

int hkd_binary_pin(const hkd_binary_sel *sel, int arm)
{
    int changed;
    return hkd_binaries_pin(bins, sel, arm, &changed);
}

int hkd_binary_reset(const hkd_binary_sel *sel)
{
    return hkd_binaries_reset(bins, sel);
}

double hkd_memory_weight_ns(void)
{
    return hkd_bin_default_cfg.memory_weight_ns;
}

__attribute__((constructor)) static void fake_core_start(void)
{
    clock_gettime(CLOCK_MONOTONIC, &started);
    init_sites();
    init_binaries();
    if (!getenv("FAKE_CORE_FROZEN"))
        pthread_create(&learner, NULL, learner_main, NULL);
}

void fake_core_stop(void)
{
    pthread_mutex_lock(&mu);
    stop_learner = 1;
    pthread_mutex_unlock(&mu);
    if (!getenv("FAKE_CORE_FROZEN"))
        pthread_join(learner, NULL);
}

void hkd_reader_thread_enter(void) { __atomic_add_fetch(&registered, 1, __ATOMIC_RELAXED); }
void hkd_reader_thread_leave(void) { __atomic_sub_fetch(&registered, 1, __ATOMIC_RELAXED); }

int hkd_get_status(hkd_status *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&mu);
    snprintf(out->version, sizeof out->version, "0.1.0-fake");
    out->uptime_ms = ms_since(&started);
    snprintf(out->shm_name, sizeof out->shm_name, "/fake");
    out->generation = generation;
    out->processes = 2;
    out->sites = nsites;
    out->interval_ms = 20;
    out->intervals = intervals;
    out->last_interval_ns = 12345;
    out->learning = 1;
    out->domains = 1;
    pthread_mutex_unlock(&mu);
    return 0;
}

int hkd_for_each_proc(int (*fn)(const hkd_proc_info *, void *), void *arg)
{
    hkd_proc_info p[2];
    memset(p, 0, sizeof p);
    p[0].pid = getpid();
    snprintf(p[0].exe, sizeof p[0].exe, "%s", sites[0].module);
    p[0].sites = nsites;
    p[0].bytes = 123456789;
    p[0].rss_bytes = 4 << 20;
    p[0].page_faults = 1026;
    p[0].last_heartbeat_ms_ago = 250;
    p[1].pid = getppid();
    snprintf(p[1].exe, sizeof p[1].exe, "/usr/bin/other \"quoted\"");
    p[1].sites = 0;
    for (int i = 0; i < 2; i++) {
        int r = fn(&p[i], arg);
        if (r < 0)
            return r;
    }
    return 0;
}

int hkd_site_page(uint32_t *cursor, hkd_site_info *out, uint32_t *at, size_t max)
{
    size_t k = 0;
    pthread_mutex_lock(&mu);
    for (; k < max && *cursor < nsites; k++, (*cursor)++) {
        out[k] = sites[*cursor];
        if (at)
            at[k] = *cursor;
    }
    pthread_mutex_unlock(&mu);
    return (int)k;
}

/* Every fake site is root's. */
int hkd_for_each_domain(int (*fn)(const hkd_domain_info *, void *), void *arg)
{
    hkd_domain_info d = { .domain = 0, .sites = nsites, .trusted = 1 };
    return fn(&d, arg);
}

static hkd_site_info *find(const hkd_site_key *k)
{
    for (uint32_t i = 0; i < nsites; i++)
        if (sites[i].key.module_hash == k->module_hash && sites[i].key.offset == k->offset &&
            sites[i].key.domain == k->domain)
            return &sites[i];
    return NULL;
}

/* The fake's own policy format (the real core uses proto/policy.proto):
 * "FAKEPOL1", then per site: key, thresholds, and each arm's pulls/mean. */
typedef struct rec {
    hkd_site_key key;
    hkd_thresholds th;
    uint64_t pulls[NARMS];
    double mean[NARMS];
} rec;

int hkd_policy_export_page(uint32_t *cursor, size_t max_sites, uint8_t **out, size_t *len)
{
    pthread_mutex_lock(&mu);
    uint32_t from = *cursor, n = 0;
    while (n < max_sites && from + n < nsites)
        n++;
    size_t head = from == 0 ? 8 : 0, size = head + n * sizeof(rec);
    uint8_t *buf = calloc(1, size ? size : 1);
    if (!buf) {
        pthread_mutex_unlock(&mu);
        return -ENOMEM;
    }
    memcpy(buf, "FAKEPOL1", head);
    for (uint32_t i = 0; i < n; i++) {
        const hkd_site_info *s = &sites[from + i];
        rec r = { .key = s->key, .th = s->thresholds };
        for (int a = 0; a < NARMS; a++)
            r.pulls[a] = s->arms[a].pulls, r.mean[a] = s->arms[a].mean_reward;
        memcpy(buf + head + (size_t)i * sizeof r, &r, sizeof r);
    }
    pthread_mutex_unlock(&mu);
    *cursor = from + n;
    *out = buf;
    *len = size;
    return (int)n;
}

int hkd_policy_import(const uint8_t *buf, size_t len)
{
    if (len < 8 || memcmp(buf, "FAKEPOL1", 8) != 0 || (len - 8) % sizeof(rec) != 0)
        return -EINVAL;
    int n = 0;
    pthread_mutex_lock(&mu);
    for (size_t off = 8; off < len; off += sizeof(rec)) {
        rec r;
        memcpy(&r, buf + off, sizeof r);
        hkd_site_info *s = find(&r.key);
        if (!s)
            continue;
        for (int a = 0; a < NARMS; a++)
            s->arms[a].pulls = r.pulls[a], s->arms[a].mean_reward = r.mean[a];
        s->thresholds = r.th;
        n++;
    }
    generation++;
    pthread_mutex_unlock(&mu);
    return n;
}

int hkd_reset(const hkd_site_key *key)
{
    pthread_mutex_lock(&mu);
    hkd_site_info *one = key ? find(key) : NULL;
    if (key && !one) {
        pthread_mutex_unlock(&mu);
        return -ENOENT;
    }
    for (uint32_t i = 0; i < nsites; i++) {
        if (one && one != &sites[i])
            continue;
        for (int a = 0; a < NARMS; a++)
            sites[i].arms[a].pulls = 0, sites[i].arms[a].mean_reward = 0;
        sites[i].pinned_arm = -1;
        sites[i].thresholds = arm_cfg[0];
    }
    generation++;
    pthread_mutex_unlock(&mu);
    return 0;
}

int hkd_pin(const hkd_site_key *key, int arm)
{
    pthread_mutex_lock(&mu);
    hkd_site_info *s = find(key);
    int r = 0;
    if (!s)
        r = -ENOENT;
    else if (arm >= NARMS)
        r = -EINVAL;
    else {
        s->pinned_arm = arm < 0 ? -1 : arm;
        publish(s, 0);
        generation++;
    }
    pthread_mutex_unlock(&mu);
    return r;
}

/* The fake has no segment: it refuses registrations, as a core that takes
 * none would. */
int hkd_register_client(int conn_fd, int region_fd, const struct ucred *cred, uint64_t *instance, char *why,
                        size_t whylen)
{
    (void)conn_fd, (void)region_fd, (void)cred, (void)instance;
    snprintf(why, whylen, "this fake daemon takes no registrations");
    return -ENODEV;
}

/* The fake is no member of a fleet: it learns alone, as hakmemd does
 * without --fleet-endpoints. */
int hkd_fleet_status_get(hkd_fleet_status *out, hkd_fleet_host **hosts, size_t *n)
{
    memset(out, 0, sizeof *out);
    if (hosts) {
        *hosts = NULL;
        *n = 0;
    }
    return 0;
}
