/* The daemon core: the interval loop body, start, shutdown and status.
 *
 * An interval, under g.lock: collection (core_collect.c) adds every
 * process's reports into the records' accumulators, the learn pass
 * (core_learn.c) learns from them and hands idle records to eviction
 * (core_store.c, which keeps the records), and the shared table
 * (core_table.c) is published.  Operations that change learned state from
 * other threads (reset, pin, import: core_ops.c) take g.lock too: they
 * wait for the learner, never the other way round.
 *
 * At 65,536 keys an interval is bound by the instructions and lines it
 * spends per site: the learn pass walks records in memory order and
 * touches each once.  Published entries are kept current in place, so
 * publishing copies one array; choosing which sites the table holds (and
 * sorting them) happens only when the set of records changed, or every few
 * intervals while there are more sites than the table holds. */
#include "core.h"
#include "core_api.h"
#include "core_rec.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "collector.h"
#include "core_binaries.h"
#include "core_collect.h"
#include "core_learn.h"
#include "core_store.h"
#include "hakmem.h"
#include "log.h"
#include "registry.h"
#include "saver.h"
#include "site_key.h"
#include "worker.h"

#define UNTRUSTED_MAX (MAX_SITES / 2)  /* users other than root and the daemon's, together */

core_state g = { .lock = PTHREAD_MUTEX_INITIALIZER, .create_lock = PTHREAD_MUTEX_INITIALIZER };

/* The interval's own state (the learner's, under g.lock). */
static struct {
    uint64_t last_ns, start_ns;
    _Atomic uint64_t last_interval_ns;
    _Atomic uint64_t phase_ns[3];    /* collect, learn, publish: last interval */
    _Atomic uint32_t n_procs, n_sites, n_registrations;
    int ready;
} iv;

/* ---- clocks ---- */

static uint64_t realtime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t core_clock_ms(void)
{
    return g.cfg.clock_ms ? g.cfg.clock_ms() : realtime_ms();
}

/* ---- lifecycle ---- */

static void default_limits(hkd_core_cfg *c)
{
    if (c->interval_ms == 0)
        c->interval_ms = 1000;
    if (c->reader_timeout_ms == 0)
        c->reader_timeout_ms = HKD_READER_TIMEOUT_MS;
    if (!c->max_sites_per_user)
        c->max_sites_per_user = HKD_DEFAULT_SITES_PER_USER;
    if (!c->new_sites_per_interval)
        c->new_sites_per_interval = HKD_DEFAULT_NEW_SITES;
    if (!c->retention_s)
        c->retention_s = HKD_DEFAULT_RETENTION_S;
    if (!c->state_max_bytes)
        c->state_max_bytes = HKD_DEFAULT_STATE_MAX;
    c->state_max_bytes = c->state_max_bytes < HKD_STATE_MIN         ? HKD_STATE_MIN
                         : c->state_max_bytes > HKD_STATE_MAX_BYTES ? HKD_STATE_MAX_BYTES
                                                                    : c->state_max_bytes;
}

int hkd_core_init(const hkd_core_cfg *cfg)
{
    g.cfg = *cfg;
    default_limits(&g.cfg);
    g.init_error[0] = 0;
    if (cfg->state_dir) {
        snprintf(g.state_dir, sizeof g.state_dir, "%s", cfg->state_dir);
        g.cfg.state_dir = g.state_dir;
        hkd_saver_config(g.state_dir, (size_t)g.cfg.state_max_bytes);
    }
    hkd_domain_limits lim = { .self_uid = g.cfg.daemon_uid, .max_sites_per_user = g.cfg.max_sites_per_user,
                              .new_per_interval = g.cfg.new_sites_per_interval, .untrusted_max = UNTRUSTED_MAX,
                              .max_sites = MAX_SITES };
    /* The archive holds about what the state file can. */
    uint64_t arch = g.cfg.state_max_bytes / ARCHIVE_ENTRY_BYTES;
    /* Even and odd entries: registrations take the lowest free one, so both halves fill. */
    g.col = hkd_collector_new(0, COLLECTORS);
    g.col2 = hkd_collector_new(1, COLLECTORS);
    g.domains = hkd_domains_new(&lim);
    g.archive = hkd_archive_new(arch > MAX_SITES ? MAX_SITES : (uint32_t)arch);
    if (core_binaries_init(g.cfg.memory_weight_ns, g.cfg.arm_mask, g.cfg.settled_report_every) < 0)
        return -ENOMEM;
    /* Sites price the memory BigCache holds as binaries price their RSS. */
    if (g.cfg.memory_weight_ns >= 0)
        g.cfg.learn.memory_weight_ns = g.cfg.memory_weight_ns;
    g.entries = malloc(HKSHM_SITE_CAP * sizeof *g.entries);
    g.binaries = calloc(HKSHM_BINARY_CAP, sizeof *g.binaries);
    int ok = g.col && g.col2 && g.domains && g.archive && g.entries && g.binaries && core_store_init() == 0 &&
             core_learn_init() == 0;
    if (!ok) {
        snprintf(g.init_error, sizeof g.init_error, "out of memory setting up the core");
        return -ENOMEM;
    }
    int rc = hkd_segment_open(&g.seg, cfg->shm_name, cfg->socket_path, g.cfg.reader_timeout_ms, g.init_error,
                              sizeof g.init_error);
    if (rc < 0)
        return rc;
    rc = hkd_registry_init(HKD_REG_MAX, HKD_REG_PER_UID, geteuid());
    if (rc < 0) {
        snprintf(g.init_error, sizeof g.init_error, "cannot set up the registry: %s", strerror(-rc));
        hkd_segment_close(&g.seg);
        return rc;
    }
    hkshm_header *h = g.seg.hdr;
    if (g.seg.adopted)
        hkd_log(HKD_LOG_INFO, "adopted segment %s (generation %llu, instance %016llx)", cfg->shm_name,
                (unsigned long long)atomic_load(&h->generation), (unsigned long long)atomic_load(&h->instance));
    else if (g.seg.why_recreated[0])
        hkd_log(HKD_LOG_NOTICE, "replaced incompatible segment %s (%s)", cfg->shm_name, g.seg.why_recreated);
    else
        hkd_log(HKD_LOG_INFO, "created segment %s (%llu bytes)", cfg->shm_name,
                (unsigned long long)HKSHM_SEGMENT_SIZE);
    uint32_t flush = g.cfg.interval_ms / 4;
    atomic_store(&h->flush_interval_ms, flush < 1 ? 1 : flush > 1000 ? 1000 : flush);
    atomic_store(&h->learning, g.cfg.learning ? 1u : 0u);
    atomic_store(&g.generation, atomic_load(&h->generation));
    pthread_mutex_lock(&g.lock);
    g.now_s = (uint32_t)(core_clock_ms() / 1000);
    core_load_state();
    if (hkd_domains_live(g.domains))
        core_publish(1);
    hkd_domains_end_interval(g.domains, core_clock_ms());
    atomic_store(&iv.n_sites, hkd_domains_live(g.domains));
    pthread_mutex_unlock(&g.lock);
    iv.start_ns = iv.last_ns = hkd_now_ns();
    iv.ready = 1;
    return 0;
}

const char *hkd_core_init_error(void)
{
    return g.init_error;
}

int hkd_core_interval(void)
{
    pthread_mutex_lock(&g.lock);
    uint64_t t0 = hkd_now_ns();
    double seconds = (double)(t0 - iv.last_ns) / 1e9;
    iv.last_ns = t0;
    uint64_t wall_ms = core_clock_ms();
    g.now_s = (uint32_t)(wall_ms / 1000);

    /* Registrations queued since the last interval join; ended ones get
     * their last collection now and are dropped after it. */
    hkd_registry_begin_interval();
    hkd_collect_stats st;
    int rc = core_collect(&st);
    uint64_t t1 = hkd_now_ns();

    core_evict_plan();
    g.dirty |= core_learn_pass(seconds);
    hkd_domains_end_interval(g.domains, wall_ms);
    g.dirty |= core_binaries_end_interval();
    uint64_t t2 = hkd_now_ns();
    core_publish(0);
    uint64_t t3 = hkd_now_ns();
    atomic_store(&iv.phase_ns[0], t1 - t0);
    atomic_store(&iv.phase_ns[1], t2 - t1);
    atomic_store(&iv.phase_ns[2], t3 - t2);
    hkd_registry_end_interval();
    core_procs_publish();
    atomic_store(&g.seg.hdr->daemon_heartbeat_ns, hkd_now_ns());
    atomic_store(&iv.n_procs, st.live);
    atomic_store(&iv.n_registrations, hkd_registry_count());
    atomic_store(&iv.n_sites, hkd_domains_live(g.domains));
    atomic_fetch_add(&g.intervals, 1);
    atomic_store(&iv.last_interval_ns, hkd_now_ns() - t0);
    pthread_mutex_unlock(&g.lock);
    if (st.ended)
        hkd_log(HKD_LOG_DEBUG, "collected the last counters of %u ended registrations", st.ended);
    return rc;
}

static int site_bytes_desc(const void *a, const void *b)
{
    const site_rec *x = *(site_rec *const *)a, *y = *(site_rec *const *)b;
    if (x->bytes != y->bytes)
        return x->bytes < y->bytes ? 1 : -1;
    return hkd_site_key_cmp(&cold_of(x)->key, &cold_of(y)->key);
}

void hkd_core_phase_ns(uint64_t out[3])
{
    for (int i = 0; i < 3; i++)
        out[i] = atomic_load(&iv.phase_ns[i]);
}

void hkd_core_log_summary(int max_sites)
{
    pthread_mutex_lock(&g.lock);
    hkd_log(HKD_LOG_DEBUG,
            "interval %llu: %u processes, %u sites, generation %llu, %llu us (collect %llu, learn %llu, publish %llu)",
            (unsigned long long)atomic_load(&g.intervals), atomic_load(&iv.n_procs), hkd_domains_live(g.domains),
            (unsigned long long)atomic_load(&g.generation),
            (unsigned long long)atomic_load(&iv.last_interval_ns) / 1000,
            (unsigned long long)atomic_load(&iv.phase_ns[0]) / 1000,
            (unsigned long long)atomic_load(&iv.phase_ns[1]) / 1000,
            (unsigned long long)atomic_load(&iv.phase_ns[2]) / 1000);
    site_rec **v = malloc((g.n_idx ? g.n_idx : 1) * sizeof *v);
    if (v) {
        uint32_t n = 0;
        for (uint32_t i = 0; i < g.n_idx; i++)
            if (!rec_at(i)->free)
                v[n++] = rec_at(i);
        qsort(v, n, sizeof *v, site_bytes_desc);
        for (uint32_t i = 0; i < n && (int)i < max_sites; i++) {
            const site_rec *r = v[i];
            int arm = rec_arm(r);
            hkd_log(HKD_LOG_DEBUG,
                    "site %016llx:%llx module=%s procs=%u allocs=%llu bytes=%llu arm=%d(%s) pulls=%llu uid=%u",
                    (unsigned long long)cold_of(r)->key.module_hash, (unsigned long long)cold_of(r)->key.offset,
                    cold_of(r)->module, r->processes, (unsigned long long)r->allocs,
                    (unsigned long long)r->bytes, arm, hkd_arms[arm].name,
                    (unsigned long long)r->learn.total_pulls, cold_of(r)->key.domain);
        }
        free(v);
    }
    pthread_mutex_unlock(&g.lock);
}

void hkd_core_shutdown(void)
{
    if (!iv.ready)
        return;
    hkd_worker_stop();
    hkd_saver_stop();
    iv.ready = 0;
    hkd_registry_shutdown();
    hkd_segment_close(&g.seg);
    core_store_free();
    core_learn_free();
    core_fleet_free();
    g.n_entries = 0;
    g.over_cap = g.set_changed = g.dirty = 0;
    g.selected_at = 0;
    core_collect_free();
    core_table_free();
    hkd_collector_free(g.col);
    hkd_collector_free(g.col2);
    g.col = g.col2 = NULL;
    hkd_domains_free(g.domains);
    g.domains = NULL;
    hkd_archive_free(g.archive);
    g.archive = NULL;
    atomic_store(&g.n_archived, 0);
    free(g.entries);
    g.entries = NULL;
    free(g.binaries);
    g.binaries = NULL;
    g.n_binaries = 0;
    core_binaries_shutdown();
    atomic_store(&g.intervals, 0);
    atomic_store(&iv.n_sites, 0);
}

/* ---- what readers see (core_api.h) ---- */

void hkd_reader_thread_enter(void)
{
    rcu_register_thread();
}

void hkd_reader_thread_leave(void)
{
    rcu_unregister_thread();
}

int hkd_get_status(hkd_status *out)
{
    if (!out)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    snprintf(out->version, sizeof out->version, "%s", HAKMEM_VERSION);
    out->uptime_ms = (hkd_now_ns() - iv.start_ns) / 1000000;
    snprintf(out->shm_name, sizeof out->shm_name, "%s", g.seg.name);
    out->generation = atomic_load(&g.generation);
    out->processes = atomic_load(&iv.n_procs);
    out->sites = atomic_load(&iv.n_sites);
    out->interval_ms = g.cfg.interval_ms;
    out->intervals = atomic_load(&g.intervals);
    out->last_interval_ns = atomic_load(&iv.last_interval_ns);
    out->learning = g.cfg.learning;
    out->registrations = atomic_load(&iv.n_registrations);
    out->instance = g.seg.hdr ? atomic_load(&g.seg.hdr->instance) : 0;
    out->sites_archived = atomic_load_explicit(&g.n_archived, memory_order_relaxed);
    if (g.domains)
        hkd_domains_totals(g.domains, &out->domains, &out->sites_refused, &out->sites_evicted);
    return 0;
}

int hkd_register_client(int conn_fd, int region_fd, const struct ucred *cred, uint64_t *instance, char *why,
                        size_t whylen)
{
    int rc = hkd_registry_add(conn_fd, region_fd, cred, why, whylen);
    if (rc == 0 && instance)
        *instance = atomic_load(&g.seg.hdr->instance);
    return rc;
}

int hkd_for_each_domain(int (*fn)(const hkd_domain_info *, void *), void *arg)
{
    if (!fn)
        return -EINVAL;
    return g.domains ? hkd_domains_for_each(g.domains, fn, arg) : 0;
}
