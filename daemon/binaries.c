/* The binaries and their learners (see binaries.h). */
#include "binaries.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define TRACK_SLOTS   8192u          /* > 2 x the registry's cap: probes stay short */
#define INDEX_SLOTS   8192u          /* > 2 x HKD_BINARIES_MAX */
#define PER_DOMAIN    256u           /* keys (binary, command) of a domain other than root's and ours */
#define NO_INDEX      UINT32_MAX

typedef struct binary {
    uint32_t domain;
    uint64_t hash;
    uint64_t command;                /* the command's hash, 0: none */
    char command_text[HKSHM_COMMAND_MAX];
    char exe[HKD_EXE_MAX];
    uint32_t live;                   /* registrations seen this interval */
    uint32_t live_building;
    uint64_t processes;
    uint64_t plane_ns, wall_ns;      /* of ended runs: what taking part cost them, of how long they ran */
    hkd_bin_learn learn;
} binary;

/* Where a registration's current observation started. */
typedef struct track {
    uint64_t serial;                 /* 0: free */
    uint32_t binary;                 /* index into b->recs, NO_INDEX: not tracked */
    uint32_t arm;                    /* the arm it ran when the window began */
    int seen;                        /* this interval */
    uint64_t cpu_ns, wall_ns, rss_kib_ms, bytes;
    uint64_t peak_sample;            /* largest RSS sampled in the window */
    int whole_run;                   /* the window began at the process's start */
} track;

struct hkd_binaries {
    pthread_mutex_t lock;
    hkd_binaries_cfg cfg;
    uid_t self_uid;
    binary *recs;
    uint32_t n;
    uint32_t index[INDEX_SLOTS];     /* open addressing into recs */
    track tracks[TRACK_SLOTS];
    uint64_t gone[TRACK_SLOTS];      /* scratch of end_interval */
    uint64_t refused;                /* processes of binaries past a cap */
    int commands_told;               /* a binary's command cap was logged */
};

hkd_binaries_cfg hkd_binaries_defaults(void)
{
    return (hkd_binaries_cfg){ .learn = hkd_bin_default_cfg, .window_s = 60.0 };
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    return x;
}

hkd_binaries *hkd_binaries_new(const hkd_binaries_cfg *cfg)
{
    hkd_binaries *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->recs = calloc(HKD_BINARIES_MAX, sizeof *b->recs);
    if (!b->recs) {
        free(b);
        return NULL;
    }
    pthread_mutex_init(&b->lock, NULL);
    b->cfg = cfg ? *cfg : hkd_binaries_defaults();
    b->self_uid = geteuid();
    memset(b->index, 0xFF, sizeof b->index);
    return b;
}

void hkd_binaries_free(hkd_binaries *b)
{
    if (!b)
        return;
    pthread_mutex_destroy(&b->lock);
    free(b->recs);
    free(b);
}

/* ---- the table of binaries ---- */

static uint32_t find_slot(const hkd_binaries *b, uint32_t domain, uint64_t hash, uint64_t command)
{
    uint32_t i = (uint32_t)mix(hash ^ mix(command) ^ ((uint64_t)domain << 32 | domain)) & (INDEX_SLOTS - 1);
    while (b->index[i] != NO_INDEX) {
        const binary *r = &b->recs[b->index[i]];
        if (r->domain == domain && r->hash == hash && r->command == command)
            break;
        i = (i + 1) & (INDEX_SLOTS - 1);
    }
    return i;
}

static uint32_t domain_count(const hkd_binaries *b, uint32_t domain)
{
    uint32_t c = 0;
    for (uint32_t i = 0; i < b->n; i++)
        c += b->recs[i].domain == domain;
    return c;
}

static uint32_t command_count(const hkd_binaries *b, uint32_t domain, uint64_t hash)
{
    uint32_t c = 0;
    for (uint32_t i = 0; i < b->n; i++)
        c += b->recs[i].domain == domain && b->recs[i].hash == hash && b->recs[i].command != 0;
    return c;
}

/* Whether a key may be added (under the lock): the caps, so that one
 * user's fake hashes cannot crowd out root's binaries, and one binary's
 * flood of commands cannot crowd out other binaries. */
static int room_for(hkd_binaries *b, uint32_t domain, uint64_t hash, uint64_t command, const char *exe)
{
    if (b->n >= HKD_BINARIES_MAX)
        return 0;
    if (domain != 0 && domain != (uint32_t)b->self_uid && domain_count(b, domain) >= PER_DOMAIN)
        return 0;
    if (command != 0 && command_count(b, domain, hash) >= HKD_BINARY_COMMANDS) {
        if (!b->commands_told) {
            b->commands_told = 1;
            hkd_log(HKD_LOG_NOTICE,
                    "binary %016" PRIx64 " of uid %u (%s) runs %u commands, the most learned apart: "
                    "runs of further commands are not learned (said once)",
                    hash, (unsigned)domain, exe && exe[0] ? exe : "?", HKD_BINARY_COMMANDS);
        }
        return 0;
    }
    return 1;
}

/* A key's record, made on first sight; NULL past the caps.  command_text
 * is valid (or all NUL) when it comes here. */
static binary *get(hkd_binaries *b, uint32_t domain, uint64_t hash, uint64_t command, const char *command_text,
                   const char *exe)
{
    uint32_t slot = find_slot(b, domain, hash, command);
    if (b->index[slot] != NO_INDEX)
        return &b->recs[b->index[slot]];
    if (!room_for(b, domain, hash, command, exe))
        return NULL;
    binary *r = &b->recs[b->n];
    memset(r, 0, sizeof *r);
    r->domain = domain;
    r->hash = hash;
    r->command = command;
    if (command && command_text)
        memcpy(r->command_text, command_text, sizeof r->command_text);
    if (exe)
        memcpy(r->exe, exe, sizeof r->exe - 1);
    hkd_bin_init(&r->learn);
    b->index[slot] = b->n++;
    return r;
}

/* ---- registrations ---- */

/* The track of a registration; *made says it is new (NULL: table full). */
static track *track_of(hkd_binaries *b, uint64_t serial, int *made)
{
    uint32_t i = (uint32_t)mix(serial) & (TRACK_SLOTS - 1);
    for (uint32_t probe = 0; probe < TRACK_SLOTS; probe++, i = (i + 1) & (TRACK_SLOTS - 1)) {
        if (b->tracks[i].serial == serial) {
            *made = 0;
            return &b->tracks[i];
        }
        if (b->tracks[i].serial == 0) {
            memset(&b->tracks[i], 0, sizeof b->tracks[i]);
            b->tracks[i].serial = serial;
            *made = 1;
            return &b->tracks[i];
        }
    }
    return NULL;
}

/* Backward-shift deletion keeps every probe sequence whole without tombstones. */
static void track_drop(hkd_binaries *b, track *t)
{
    uint32_t i = (uint32_t)(t - b->tracks);
    for (;;) {
        b->tracks[i].serial = 0;
        uint32_t j = i;
        for (;;) {
            j = (j + 1) & (TRACK_SLOTS - 1);
            if (b->tracks[j].serial == 0)
                return;
            uint32_t home = (uint32_t)mix(b->tracks[j].serial) & (TRACK_SLOTS - 1);
            /* j may move to i when its home is not in (i, j]. */
            if (i <= j ? (home <= i || home > j) : (home <= i && home > j))
                break;
        }
        b->tracks[i] = b->tracks[j];
        i = j;
    }
}

static void window_start(track *t, const hkd_proc_info *p, uint32_t arm, int from_zero)
{
    t->arm = arm;
    t->whole_run = from_zero;
    t->cpu_ns = from_zero ? 0 : p->proc[HKSHM_PROC_CPU_NS];
    t->wall_ns = from_zero ? 0 : p->proc[HKSHM_PROC_WALL_NS];
    t->rss_kib_ms = from_zero ? 0 : p->proc[HKSHM_PROC_RSS_KIB_MS];
    t->bytes = from_zero ? 0 : p->proc[HKSHM_PROC_BYTES];
    t->peak_sample = p->proc[HKSHM_PROC_RSS_BYTES];
}

static double since(uint64_t now, uint64_t start)
{
    return now >= start ? (double)(now - start) : -1.0;
}

/* Settled and running its choice: its entry is published even on the
 * default, for the sampling its report_every asks for. */
static int sampled(const hkd_binaries *b, const hkd_bin_learn *l)
{
    return b->cfg.learn.settled_report_every > 1 && l->pinned < 0 && hkd_bin_settled(l, &b->cfg.learn) &&
           l->current == hkd_bin_choice(l, &b->cfg.learn);
}

/* The window from t to p as an observation; the learner rejects what does
 * not measure (a counter that ran backwards gives a negative value).  1
 * when the binary's published entry changes: its arm, or its sampling (a
 * binary that settles on the default changes no arm, and its processes
 * would go on registering every run until something else republished). */
static int observe(hkd_binaries *b, binary *r, const track *t, const hkd_proc_info *p, int ended)
{
    uint64_t peak = t->peak_sample;
    if (ended && t->whole_run && p->proc[HKSHM_PROC_PEAK_RSS_BYTES] > peak)
        peak = p->proc[HKSHM_PROC_PEAK_RSS_BYTES];
    hkd_bin_obs o = {
        .arm = t->arm,
        .cpu_s = since(p->proc[HKSHM_PROC_CPU_NS], t->cpu_ns) / 1e9,
        .wall_s = since(p->proc[HKSHM_PROC_WALL_NS], t->wall_ns) / 1e9,
        .rss_mib_s = since(p->proc[HKSHM_PROC_RSS_KIB_MS], t->rss_kib_ms) / 1024.0 / 1000.0,
        .peak_mib = (double)peak / 1048576.0,
        .work_mib = since(p->proc[HKSHM_PROC_BYTES], t->bytes) / 1048576.0,
    };
    int was_sampled = sampled(b, &r->learn);
    int moved = hkd_bin_observe(&r->learn, &b->cfg.learn, &o) == 1;
    return moved || sampled(b, &r->learn) != was_sampled;
}

static uint32_t arm_of(uint32_t reported)
{
    return reported < HKD_BIN_ARMS ? reported : HKD_BIN_DEFAULT_ARM;
}

int hkd_binaries_proc(hkd_binaries *b, uint64_t serial, const hkd_proc_info *p, uint32_t registration,
                      uint32_t arm_reported, int ended)
{
    if (!b || !serial || !p->binary_hash)
        return 0;
    pthread_mutex_lock(&b->lock);
    int changed = 0;
    int made;
    track *t = track_of(b, serial, &made);
    if (!t)
        goto out;
    uint32_t arm = arm_of(arm_reported);
    if (made) {
        /* A process's first registration is counted from its start; a
         * later one's earlier counts belong to another daemon. */
        binary *r = get(b, p->uid, p->binary_hash, p->command_hash, p->command, p->exe);
        t->binary = r ? (uint32_t)(r - b->recs) : NO_INDEX;
        if (r)
            r->processes++;
        else
            b->refused++;
        window_start(t, p, arm, registration == 1);
    }
    t->seen = 1;
    if (t->binary == NO_INDEX) {
        if (ended)
            track_drop(b, t);
        goto out;
    }
    binary *r = &b->recs[t->binary];
    r->live_building += !ended;
    if (p->proc[HKSHM_PROC_RSS_BYTES] > t->peak_sample)
        t->peak_sample = p->proc[HKSHM_PROC_RSS_BYTES];
    if (arm != t->arm) {
        /* The process moved to another arm mid-window: what it measured
         * belongs to neither; a new window starts on the new arm. */
        r->learn.ignored++;
        window_start(t, p, arm, 0);
    } else if (ended) {
        changed = observe(b, r, t, p, 1);
    } else if (since(p->proc[HKSHM_PROC_WALL_NS], t->wall_ns) >= b->cfg.window_s * 1e9) {
        changed = observe(b, r, t, p, 0);
        window_start(t, p, arm, 0);
    }
    if (ended) {
        /* Reported by the process itself: bounded, so a liar skews only its own binary's figure. */
        uint64_t plane = p->proc[HKSHM_PROC_PLANE_NS], wall = p->proc[HKSHM_PROC_WALL_NS];
        uint64_t attach = p->proc[HKSHM_PROC_ATTACH_NS], every = p->proc[HKSHM_PROC_REPORT_EVERY];
        if (plane <= wall && wall < (1ull << 50) && attach <= plane) {
            /* A run drawn to register stands for `every` runs that only
             * read their entry (hakmem_shm.h, Sampling). */
            every = every < 1 ? 1 : every > HKSHM_REPORT_EVERY_MAX ? HKSHM_REPORT_EVERY_MAX : every;
            r->plane_ns += attach * every + (plane - attach);
            r->wall_ns += wall * every;
        }
        track_drop(b, t);
    }
out:
    pthread_mutex_unlock(&b->lock);
    return changed;
}

void hkd_binaries_end_interval(hkd_binaries *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->lock);
    /* Unseen registrations are gone.  Dropped by key in a second pass: a
     * drop shifts later entries back, some already visited. */
    uint64_t *gone = b->gone;
    uint32_t n_gone = 0;
    for (uint32_t i = 0; i < TRACK_SLOTS; i++) {
        track *t = &b->tracks[i];
        if (t->serial && !t->seen)
            gone[n_gone++] = t->serial;
        t->seen = 0;
    }
    for (uint32_t k = 0; k < n_gone; k++) {
        int made;
        track *t = track_of(b, gone[k], &made);
        if (t)
            track_drop(b, t);
    }
    for (uint32_t i = 0; i < b->n; i++) {
        b->recs[i].live = b->recs[i].live_building;
        b->recs[i].live_building = 0;
    }
    pthread_mutex_unlock(&b->lock);
}

/* ---- publishing and reading ---- */

static int key_cmp(const void *x, const void *y)
{
    const binary *a = *(binary *const *)x, *c = *(binary *const *)y;
    return hkshm_binary_cmp(a->domain, a->hash, a->command, c->domain, c->hash, c->command);
}

/* Pointers to every record in key order (under the lock); NULL on ENOMEM. */
static binary **sorted(hkd_binaries *b)
{
    binary **v = malloc((b->n ? b->n : 1) * sizeof *v);
    if (!v)
        return NULL;
    for (uint32_t i = 0; i < b->n; i++)
        v[i] = &b->recs[i];
    qsort(v, b->n, sizeof *v, key_cmp);
    return v;
}

uint32_t hkd_binaries_fill(hkd_binaries *b, hkshm_binary_policy *out, uint32_t cap)
{
    if (!b)
        return 0;
    pthread_mutex_lock(&b->lock);
    binary **v = sorted(b);
    uint32_t n = 0;
    for (uint32_t i = 0; v && i < b->n && n < cap; i++) {
        const hkd_bin_learn *l = &v[i]->learn;
        int arm = l->current;
        int sampling = sampled(b, l);
        if (arm == HKD_BIN_DEFAULT_ARM && !sampling)
            continue;
        hkshm_binary_policy *e = &out[n++];
        memset(e, 0, sizeof *e);
        e->domain = v[i]->domain;
        e->binary_hash = v[i]->hash;
        e->command_hash = v[i]->command;
        e->report_every = sampling ? b->cfg.learn.settled_report_every : 1;
        e->arm = (uint32_t)arm;
        e->set = hkd_bin_arms[arm].set;
        memcpy(e->knob, hkd_bin_arms[arm].knob, sizeof e->knob);
    }
    free(v);
    pthread_mutex_unlock(&b->lock);
    return n;
}

int hkd_binaries_for_each(hkd_binaries *b, int (*fn)(const hkd_binary_info *, void *), void *arg)
{
    if (!b || !fn)
        return -EINVAL;
    pthread_mutex_lock(&b->lock);
    binary **v = sorted(b);
    uint32_t n = b->n;
    hkd_binary_info *infos = v ? malloc((n ? n : 1) * sizeof *infos) : NULL;
    for (uint32_t i = 0; infos && i < n; i++) {
        const binary *r = v[i];
        hkd_binary_info *o = &infos[i];
        memset(o, 0, sizeof *o);
        o->domain = r->domain;
        o->binary_hash = r->hash;
        o->command_hash = r->command;
        memcpy(o->command, r->command_text, sizeof o->command);
        memcpy(o->exe, r->exe, sizeof o->exe);
        o->exe[sizeof o->exe - 1] = 0;
        o->live = r->live;
        o->processes = r->processes;
        o->plane_share = r->wall_ns ? (double)r->plane_ns / (double)r->wall_ns : 0.0;
        o->observations = r->learn.observations;
        o->ignored = r->learn.ignored;
        o->current = r->learn.current;
        o->choice = hkd_bin_choice(&r->learn, &b->cfg.learn);
        o->pinned = r->learn.pinned;
        o->settled = hkd_bin_settled(&r->learn, &b->cfg.learn);
        o->racing = hkd_bin_racing(&r->learn, &b->cfg.learn);
        memcpy(o->arms, r->learn.arm, sizeof o->arms);
    }
    free(v);
    pthread_mutex_unlock(&b->lock);
    if (!infos)
        return -ENOMEM;
    /* The callback runs outside the lock: a slow reader never holds up
     * an interval. */
    int rc = 0;
    for (uint32_t i = 0; i < n && rc == 0; i++)
        rc = fn(&infos[i], arg);
    free(infos);
    return rc;
}

static int picked(const binary *r, const hkd_binary_sel *sel)
{
    if (!sel->binary_hash)
        return 1;
    return r->domain == sel->domain && r->hash == sel->binary_hash &&
           (!sel->by_command || r->command == sel->command_hash);
}

int hkd_binaries_pin(hkd_binaries *b, const hkd_binary_sel *sel, int arm, int *changed)
{
    *changed = 0;
    if (!b || !sel->binary_hash || arm >= HKD_BIN_ARMS)
        return -EINVAL;
    pthread_mutex_lock(&b->lock);
    int found = 0, rc = 0;
    for (uint32_t i = 0; i < b->n && rc >= 0; i++) {
        binary *r = &b->recs[i];
        if (!picked(r, sel))
            continue;
        int was_sampled = sampled(b, &r->learn);
        rc = hkd_bin_pin(&r->learn, &b->cfg.learn, arm);
        *changed |= rc == 1 || sampled(b, &r->learn) != was_sampled;
        found++;
    }
    pthread_mutex_unlock(&b->lock);
    return rc < 0 ? rc : found ? found : -ENOENT;
}

int hkd_binaries_reset(hkd_binaries *b, const hkd_binary_sel *sel)
{
    if (!b)
        return -EINVAL;
    pthread_mutex_lock(&b->lock);
    int found = 0;
    for (uint32_t i = 0; i < b->n; i++) {
        binary *r = &b->recs[i];
        if (!picked(r, sel))
            continue;
        hkd_bin_init(&r->learn);
        found++;
    }
    pthread_mutex_unlock(&b->lock);
    return sel->binary_hash && !found ? -ENOENT : found;
}

uint64_t hkd_binaries_refused(hkd_binaries *b)
{
    pthread_mutex_lock(&b->lock);
    uint64_t n = b->refused;
    pthread_mutex_unlock(&b->lock);
    return n;
}

hkd_binary_state *hkd_binaries_snapshot(hkd_binaries *b, size_t *n)
{
    pthread_mutex_lock(&b->lock);
    hkd_binary_state *out = malloc((b->n ? b->n : 1) * sizeof *out);
    if (out) {
        for (uint32_t i = 0; i < b->n; i++) {
            out[i].domain = b->recs[i].domain;
            out[i].binary_hash = b->recs[i].hash;
            out[i].command_hash = b->recs[i].command;
            memcpy(out[i].command, b->recs[i].command_text, sizeof out[i].command);
            memcpy(out[i].exe, b->recs[i].exe, sizeof out[i].exe);
            out[i].learn = b->recs[i].learn;
        }
        *n = b->n;
    }
    pthread_mutex_unlock(&b->lock);
    return out;
}

int hkd_binaries_merge(hkd_binaries *b, const hkd_binary_state *in, size_t n, int restore)
{
    int count = 0;
    pthread_mutex_lock(&b->lock);
    for (size_t i = 0; i < n; i++) {
        binary *r = get(b, in[i].domain, in[i].binary_hash, in[i].command_hash, in[i].command, in[i].exe);
        if (!r)
            continue;
        if (restore || r->learn.observations == 0) {
            r->learn = in[i].learn;
        } else {
            for (int a = 0; a < HKD_BIN_ARMS; a++)
                hkd_bin_stat_merge(&r->learn.arm[a], &in[i].learn.arm[a]);
            r->learn.observations += in[i].learn.observations;
            if (in[i].learn.pinned >= 0)
                r->learn.pinned = in[i].learn.pinned;
        }
        r->learn.current = r->learn.pinned >= 0 ? r->learn.pinned : hkd_bin_choice(&r->learn, &b->cfg.learn);
        count++;
    }
    pthread_mutex_unlock(&b->lock);
    return count;
}
