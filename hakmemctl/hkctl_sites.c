/* hakmemctl sites, thresholds and watch.  Sites arrive in parts (the
 * daemon streams them) and are shown as they come, so listing all of
 * 65,536 sites holds one part at a time here as in the daemon. */
#include "hkctl.h"
#include "symbolize.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- formatting ---- */

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s && s[1] ? s + 1 : path;
}

void key_text(const Hakmem__Ctl__SiteKey *k, char *buf, size_t cap)
{
    snprintf(buf, cap, "%016" PRIx64 ":%" PRIx64, k ? k->module_hash : 0, k ? k->offset : 0);
}

/* Whether k is the site (hash, off) of user domain. */
static int key_is(const Hakmem__Ctl__SiteKey *k, uint64_t hash, uint64_t off, uint32_t domain)
{
    return k && k->module_hash == hash && k->offset == off && k->domain == domain;
}

static uint32_t domain_of(const Hakmem__Ctl__Site *s)
{
    return s->key ? s->key->domain : 0;
}

/* Summary of a log2 histogram: the bucket holding the median and the
 * highest non-empty one, as their lower bounds. */
static void hist_summary(const uint64_t *h, size_t n, uint64_t *p50, uint64_t *max, uint64_t *count)
{
    uint64_t total = 0;
    *p50 = *max = 0;
    for (size_t i = 0; i < n; i++)
        total += h[i];
    *count = total;
    uint64_t run = 0;
    int got = 0;
    for (size_t i = 0; i < n && i < 64; i++) {
        run += h[i];
        if (!got && total && run * 2 >= total)
            *p50 = UINT64_C(1) << i, got = 1;
        if (h[i])
            *max = UINT64_C(1) << i;
    }
}

static double hit_rate(uint64_t hits, uint64_t misses)
{
    return hits + misses ? (double)hits / (double)(hits + misses) : -1.0;
}

/* "module+0xOFFSET" and the function there, both fit for a terminal: the
 * path came from a client and the symbol from a file it names. */
static void location(const Hakmem__Ctl__Site *s, char *loc, size_t lcap, char *fn, size_t fcap, int *has_fn)
{
    const char *mod = s->module ? s->module : "";
    uint64_t off = s->key ? s->key->offset : 0;
    char b[SAFE_MAX], sym[256];
    snprintf(loc, lcap, "%s+0x%" PRIx64, *mod ? safe(base_name(mod), b) : "?", off);
    *has_fn = *mod && hkc_symbolize(mod, off, sym, sizeof sym) == 1;
    snprintf(fn, fcap, "%s", *has_fn ? safe(sym, b) : "-");
}

/* The arm of the best mean reward, this host's pulls and the fleet's together. */
static int best_arm(const Hakmem__Ctl__Site *s)
{
    int best = -1;
    double best_mean = 0.0;
    for (size_t a = 0; a < s->n_arms; a++) {
        const Hakmem__Ctl__Arm *x = s->arms[a];
        double n = (double)x->pulls + (double)x->fleet_pulls;
        if (n <= 0)
            continue;
        double mean = ((double)x->pulls * x->mean_reward + (double)x->fleet_pulls * x->fleet_mean_reward) / n;
        if (best < 0 || mean > best_mean) {
            best = (int)a;
            best_mean = mean;
        }
    }
    return best;
}

static void site_json(jw *w, const Hakmem__Ctl__Site *s, int full)
{
    char key[48], loc[160], fn[256];
    int has_fn;
    key_text(s->key, key, sizeof key);
    location(s, loc, sizeof loc, fn, sizeof fn, &has_fn);
    jw_obj(w, NULL);
    jw_str(w, "site", key);
    jw_u64(w, "module_hash", s->key ? s->key->module_hash : 0);
    jw_u64(w, "offset", s->key ? s->key->offset : 0);
    jw_u64(w, "domain", domain_of(s));
    jw_str(w, "module", s->module);
    jw_str(w, "exe", base_name(s->module ? s->module : ""));
    jw_str(w, "location", loc);
    jw_str(w, "function", has_fn ? fn : NULL);
    if (full) {
        uint64_t p50, max, count;
        hist_summary(s->size_hist, s->n_size_hist, &p50, &max, &count);
        jw_u64(w, "processes", s->processes);
        jw_u64(w, "allocs", s->allocs);
        jw_u64(w, "frees", s->frees);
        jw_u64(w, "bytes", s->bytes);
        jw_u64(w, "live_bytes", s->live_bytes);
        jw_arr(w, "size_hist");
        for (size_t i = 0; i < s->n_size_hist; i++)
            jw_u64(w, NULL, s->size_hist[i]);
        jw_end_arr(w);
        jw_obj(w, "sizes");
        jw_u64(w, "sampled", count);
        jw_u64(w, "p50_bucket", p50);
        jw_u64(w, "max_bucket", max);
        jw_end_obj(w);
        jw_obj(w, "bigcache");
        jw_u64(w, "hits", s->bigcache_hits);
        jw_u64(w, "misses", s->bigcache_misses);
        jw_u64(w, "evictions", s->bigcache_evictions);
        double hr = hit_rate(s->bigcache_hits, s->bigcache_misses);
        if (hr < 0)
            jw_str(w, "hit_rate", NULL);
        else
            jw_dbl(w, "hit_rate", hr);
        jw_end_obj(w);
        jw_u64(w, "thp_blocks", s->thp_blocks);
        jw_u64(w, "slow_ns", s->slow_ns);
    }
    jw_obj(w, "thresholds");
    jw_u64(w, "large_threshold", s->thresholds ? s->thresholds->large_threshold : 0);
    jw_u64(w, "bigcache_slots", s->thresholds ? s->thresholds->bigcache_slots : 0);
    jw_bool(w, "thp", s->thresholds && s->thresholds->thp);
    jw_end_obj(w);
    jw_i64(w, "pinned_arm", s->pinned_arm);
    jw_bool(w, "fleet_pinned", s->fleet_pinned);
    jw_bool(w, "settled", s->settled);
    jw_bool(w, "thin", s->thin);
    jw_u64(w, "own_pulls", s->own_pulls);
    jw_u64(w, "fleet_pulls", s->fleet_pulls);
    if (full) {
        jw_arr(w, "arms");
        for (size_t a = 0; a < s->n_arms; a++) {
            jw_obj(w, NULL);
            jw_u64(w, "index", a);
            jw_str(w, "name", s->arms[a]->name);
            jw_u64(w, "pulls", s->arms[a]->pulls);
            jw_dbl(w, "mean_reward", s->arms[a]->mean_reward);
            jw_u64(w, "fleet_pulls", s->arms[a]->fleet_pulls);
            jw_dbl(w, "fleet_mean_reward", s->arms[a]->fleet_mean_reward);
            jw_end_obj(w);
        }
        jw_end_arr(w);
    }
    jw_end_obj(w);
}

static void site_human(const Hakmem__Ctl__Site *s, size_t rank)
{
    char key[48], loc[160], fn[256], b1[16], b2[16], b3[16], b4[16], b5[16], nb[SAFE_MAX], user[64];
    int has_fn;
    key_text(s->key, key, sizeof key);
    location(s, loc, sizeof loc, fn, sizeof fn, &has_fn);
    uint64_t p50, max, count;
    hist_summary(s->size_hist, s->n_size_hist, &p50, &max, &count);
    printf("#%zu site %s  user %s  %s  %s\n", rank, key, user_text(domain_of(s), user, sizeof user), loc,
           has_fn ? fn : "(no symbol)");
    printf("   procs %u  allocs %" PRIu64 "  large frees %" PRIu64 "  bytes %s  live %s\n", s->processes,
           s->allocs, s->frees, human_bytes(s->bytes, b1, sizeof b1),
           human_bytes(s->live_bytes, b2, sizeof b2));
    double hr = hit_rate(s->bigcache_hits, s->bigcache_misses);
    char hrs[64];
    if (hr < 0)
        snprintf(hrs, sizeof hrs, "-");
    else
        snprintf(hrs, sizeof hrs, "%.1f%% (%" PRIu64 "/%" PRIu64 ")", hr * 100, s->bigcache_hits,
                 s->bigcache_hits + s->bigcache_misses);
    if (count)
        printf("   sizes p50 %s max %s  bigcache hit %s  evictions %" PRIu64 "  thp blocks %" PRIu64 "\n",
               human_bytes(p50, b3, sizeof b3), human_bytes(max, b4, sizeof b4), hrs,
               s->bigcache_evictions, s->thp_blocks);
    else
        printf("   sizes -  bigcache hit %s  evictions %" PRIu64 "  thp blocks %" PRIu64 "\n", hrs,
               s->bigcache_evictions, s->thp_blocks);
    const Hakmem__Ctl__Thresholds *t = s->thresholds;
    printf("   thresholds large>=%s slots=%u thp=%s  pinned: ",
           human_bytes(t ? t->large_threshold : 0, b5, sizeof b5), t ? t->bigcache_slots : 0,
           t && t->thp ? "on" : "off");
    if (s->pinned_arm >= 0)
        printf("arm %d%s\n", s->pinned_arm, s->fleet_pinned ? " (by the fleet)" : "");
    else
        printf("no  (%s%s)\n", s->settled ? "settled" : "exploring", s->thin ? ", with its size band" : "");
    if (s->fleet_pulls)
        printf("   pulls %" PRIu64 " of this host's, %" PRIu64 " from the fleet's other hosts\n", s->own_pulls,
               s->fleet_pulls);
    if (s->n_arms) {
        int fleet = s->fleet_pulls != 0;
        int best = s->pinned_arm >= 0 ? s->pinned_arm : best_arm(s);
        printf("     %3s  %-32s %10s  %s%s\n", "ARM", "NAME", "PULLS", "MEAN REWARD",
               fleet ? "  FLEET PULLS  FLEET MEAN" : "");
        for (size_t a = 0; a < s->n_arms; a++) {
            const Hakmem__Ctl__Arm *x = s->arms[a];
            printf("   %c %3zu  %-32s %10" PRIu64 "  %.4f", (int)a == best ? '*' : ' ', a, safe(x->name, nb), x->pulls,
                   x->mean_reward);
            if (fleet)
                printf("       %11" PRIu64 "  %.4f", x->fleet_pulls, x->fleet_mean_reward);
            putchar('\n');
        }
    }
}

static void threshold_row(const Hakmem__Ctl__Site *s)
{
    char key[48], loc[160], fn[256], b[16], pin[16], user[64];
    int has_fn;
    key_text(s->key, key, sizeof key);
    location(s, loc, sizeof loc, fn, sizeof fn, &has_fn);
    const Hakmem__Ctl__Thresholds *t = s->thresholds;
    snprintf(pin, sizeof pin, s->pinned_arm < 0 ? "-" : s->fleet_pinned ? "arm %d fleet" : "arm %d", s->pinned_arm);
    printf("%-34s %-12s %-28s %-28s %8s %5u %4s %s\n", key, user_text(domain_of(s), user, sizeof user), loc, fn,
           human_bytes(t ? t->large_threshold : 0, b, sizeof b), t ? t->bigcache_slots : 0,
           t && t->thp ? "on" : "off", pin);
}

/* ---- asking for sites ---- */

typedef struct site_filter {
    uint64_t top;
    int has_pid;
    uint64_t pid;
    const char *exe;
} site_filter;

static int parse_site_filter(int argc, char **argv, site_filter *f, const char *cmd)
{
    f->top = 20;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--top")) {
            if (parse_u64(v, &f->top) < 0)
                return usage_error("%s --top needs a number", cmd);
            i++;
        } else if (!strcmp(a, "--pid")) {
            if (parse_u64(v, &f->pid) < 0 || f->pid == 0 || f->pid > INT32_MAX)
                return usage_error("%s --pid needs a process id", cmd);
            f->has_pid = 1;
            i++;
        } else if (!strcmp(a, "--exe")) {
            if (!v || !*v)
                return usage_error("%s --exe needs a name", cmd);
            f->exe = v;
            i++;
        } else {
            return usage_error("%s: unexpected argument '%s'", cmd, a);
        }
    }
    if (f->has_pid && f->exe)
        return usage_error("%s: give --pid or --exe, not both", cmd);
    return 0;
}

/* Streams the sites to fn; --pid becomes the process's executable,
 * because sites are keyed fleet-wide by module, not by process. */
static int stream_sites(const site_filter *f, part_fn fn, void *arg)
{
    char exe[256] = "";
    if (f->has_pid) {
        Hakmem__Ctl__Response *pr;
        int r = get_procs(&pr);
        if (r)
            return r;
        for (size_t i = 0; i < pr->procs->n_procs; i++)
            if ((uint64_t)pr->procs->procs[i]->pid == f->pid)
                snprintf(exe, sizeof exe, "%s", pr->procs->procs[i]->exe);
        hakmem__ctl__response__free_unpacked(pr, NULL);
        if (!*exe)
            return fail(EXIT_ERR, "not found: no process %" PRIu64 " is attached to hakmemd", f->pid);
    } else if (f->exe) {
        snprintf(exe, sizeof exe, "%s", f->exe);
    }
    Hakmem__Ctl__Request rq = HAKMEM__CTL__REQUEST__INIT;
    Hakmem__Ctl__SitesRequest sr = HAKMEM__CTL__SITES_REQUEST__INIT;
    sr.top = f->top > UINT32_MAX ? UINT32_MAX : (uint32_t)f->top;
    sr.module = exe;
    rq.command_case = HAKMEM__CTL__REQUEST__COMMAND_SITES;
    rq.sites = &sr;
    return call_parts(&rq, HAKMEM__CTL__RESPONSE__RESULT_SITES, fn, arg);
}

/* ---- sites / thresholds ---- */

typedef struct listing {
    int thresholds_only;
    int started;
    size_t shown;
    jw w;
} listing;

static int list_part(const Hakmem__Ctl__Response *resp, int last, void *arg)
{
    listing *l = arg;
    const Hakmem__Ctl__Sites *ss = resp->sites;
    if (!l->started) {
        l->started = 1;
        if (g_json) {
            jw_init(&l->w, stdout);
            jw_obj(&l->w, NULL);
            jw_u64(&l->w, "total", ss->total);
            jw_arr(&l->w, "sites");
        } else if (l->thresholds_only) {
            printf("%-34s %-12s %-28s %-28s %8s %5s %4s %s\n", "SITE", "USER", "LOCATION", "FUNCTION", "LARGE",
                   "SLOTS", "THP", "PINNED");
        }
    }
    for (size_t i = 0; i < ss->n_sites; i++) {
        l->shown++;
        if (g_json)
            site_json(&l->w, ss->sites[i], !l->thresholds_only);
        else if (l->thresholds_only)
            threshold_row(ss->sites[i]);
        else
            site_human(ss->sites[i], l->shown);
    }
    if (last) {
        if (g_json) {
            jw_end_arr(&l->w);
            jw_end_obj(&l->w);
            jw_done(&l->w);
        } else {
            printf("(%zu of %u sites%s)\n", l->shown, ss->total, l->thresholds_only ? "" : ", by bytes");
        }
    }
    return 0;
}

int cmd_sites(int argc, char **argv, int thresholds_only)
{
    const char *cmd = thresholds_only ? "thresholds" : "sites";
    site_filter f = { 0 };
    int r = parse_site_filter(argc, argv, &f, cmd);
    if (r)
        return r;
    listing l = { .thresholds_only = thresholds_only };
    return stream_sites(&f, list_part, &l);
}

/* ---- pin by arm name ---- */

typedef struct arm_search {
    const Hakmem__Ctl__SiteKey *key;
    const char *name;
    int site_seen;
    int found;
} arm_search;

#define SEARCH_DONE 100                /* not an exit code: the search may stop */

static int search_part(const Hakmem__Ctl__Response *resp, int last, void *arg)
{
    (void)last;
    arm_search *as = arg;
    const Hakmem__Ctl__Sites *ss = resp->sites;
    for (size_t i = 0; i < ss->n_sites; i++) {
        const Hakmem__Ctl__Site *s = ss->sites[i];
        if (!key_is(s->key, as->key->module_hash, as->key->offset, as->key->domain))
            continue;
        as->site_seen = 1;
        for (size_t a = 0; a < s->n_arms && as->found < 0; a++)
            if (!strcmp(s->arms[a]->name, as->name))
                as->found = (int)a;
        return SEARCH_DONE;
    }
    return 0;
}

int find_arm(const Hakmem__Ctl__SiteKey *key, const char *name, int32_t *out)
{
    site_filter f = { .top = 0 };
    arm_search as = { .key = key, .name = name, .found = -1 };
    int r = stream_sites(&f, search_part, &as);
    if (r && r != SEARCH_DONE)
        return r;
    char b[SAFE_MAX];
    if (!as.site_seen)
        return fail(EXIT_ERR, "not found: hakmemd knows no such site");
    if (as.found < 0)
        return fail(EXIT_ERR, "not found: the site has no arm named '%s'", safe(name, b));
    *out = as.found;
    return 0;
}

/* ---- watch ---- */

static volatile sig_atomic_t g_quit;
static void on_signal(int sig) { (void)sig; g_quit = 1; }

typedef struct prev_site {
    uint64_t hash, off, allocs, bytes;
    uint32_t domain;
} prev_site;

typedef struct round_view {
    prev_site *prev, *next;            /* last round's sites; this round's, as they come */
    size_t nprev, capprev, nnext, capnext;
    double dt;                         /* seconds since the last round, 0 on the first */
    jw w;
} round_view;

static void watch_row(const round_view *rv, const Hakmem__Ctl__Site *x)
{
    char key[48], loc[160], fn[256], b1[16], b2[16], b3[16], hr[16], arm[16], ar[24];
    int has_fn;
    key_text(x->key, key, sizeof key);
    location(x, loc, sizeof loc, fn, sizeof fn, &has_fn);
    double ra = -1, rb = -1;
    for (size_t p = 0; p < rv->nprev && rv->dt > 0; p++)
        if (key_is(x->key, rv->prev[p].hash, rv->prev[p].off, rv->prev[p].domain)) {
            ra = (double)(x->allocs - rv->prev[p].allocs) / rv->dt;
            rb = (double)(x->bytes - rv->prev[p].bytes) / rv->dt;
        }
    if (ra >= 0)
        snprintf(ar, sizeof ar, "%.0f", ra);
    else
        snprintf(ar, sizeof ar, "-");
    double h = hit_rate(x->bigcache_hits, x->bigcache_misses);
    snprintf(hr, sizeof hr, h < 0 ? "-" : "%.1f%%", h * 100);
    int b = x->pinned_arm >= 0 ? x->pinned_arm : best_arm(x);
    snprintf(arm, sizeof arm, b < 0 ? "-" : x->fleet_pinned ? "%d (fleet)" : x->pinned_arm >= 0 ? "%d (pin)" : "%d", b);
    const Hakmem__Ctl__Thresholds *t = x->thresholds;
    printf("%-34s %-26.26s %10s %10s %9s %7s %8s %5u %4s %s\n", key, has_fn ? fn : loc, ar,
           rb >= 0 ? human_bytes((uint64_t)rb, b1, sizeof b1) : "-", human_bytes(x->live_bytes, b2, sizeof b2), hr,
           human_bytes(t ? t->large_threshold : 0, b3, sizeof b3), t ? t->bigcache_slots : 0,
           t && t->thp ? "on" : "off", arm);
}

static int watch_part(const Hakmem__Ctl__Response *resp, int last, void *arg)
{
    round_view *rv = arg;
    const Hakmem__Ctl__Sites *ss = resp->sites;
    for (size_t i = 0; i < ss->n_sites; i++) {
        const Hakmem__Ctl__Site *x = ss->sites[i];
        if (g_json)
            site_json(&rv->w, x, 1);
        else
            watch_row(rv, x);
        if (rv->nnext == rv->capnext) {
            size_t cap = rv->capnext ? rv->capnext * 2 : 64;
            prev_site *n = realloc(rv->next, cap * sizeof *n);
            if (!n)
                return fail(EXIT_ERR, "out of memory");
            rv->next = n;
            rv->capnext = cap;
        }
        rv->next[rv->nnext++] = (prev_site){ x->key ? x->key->module_hash : 0, x->key ? x->key->offset : 0,
                                             x->allocs, x->bytes, domain_of(x) };
    }
    (void)last;
    return 0;
}

int cmd_watch(int argc, char **argv)
{
    uint64_t interval = 1000, count = 0, top = 10;
    for (int i = 0; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t *dst = !strcmp(argv[i], "--interval") ? &interval
                      : !strcmp(argv[i], "--count")    ? &count
                      : !strcmp(argv[i], "--top")      ? &top : NULL;
        if (!dst)
            return usage_error("watch: unexpected argument '%s'", argv[i]);
        if (parse_u64(v, dst) < 0)
            return usage_error("watch %s needs a number", argv[i]);
        i++;
    }
    if (interval < 100)
        return usage_error("watch --interval must be at least 100 ms");
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int tty = isatty(STDOUT_FILENO);
    round_view rv = { 0 };
    struct timespec last = { 0 };
    int r = 0;
    for (uint64_t round = 0; !g_quit && (count == 0 || round < count); round++) {
        if (round > 0) {
            struct timespec ts = { .tv_sec = (time_t)(interval / 1000),
                                   .tv_nsec = (long)(interval % 1000) * 1000000 };
            while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !g_quit)
                ;
            if (g_quit)
                break;
        }
        Hakmem__Ctl__Response *st;
        if ((r = get_status(&st)) != 0)
            break;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        rv.dt = round ? (double)(now.tv_sec - last.tv_sec) + (double)(now.tv_nsec - last.tv_nsec) / 1e9 : 0;
        last = now;
        if (g_json) {
            jw_init(&rv.w, stdout);
            jw_obj(&rv.w, NULL);
            jw_u64(&rv.w, "round", round);
            status_json(&rv.w, "status", st->status);
            jw_arr(&rv.w, "sites");
        } else {
            const Hakmem__Ctl__Status *s = st->status;
            char up[32], v[SAFE_MAX];
            if (tty)
                fputs("\033[H\033[2J", stdout);
            printf("hakmemd %s  up %s  generation %" PRIu64 "  processes %u  sites %u  interval %u ms  learning %s\n",
                   safe(s->version, v), human_duration(s->uptime_ms, up, sizeof up), s->generation, s->processes,
                   s->sites, s->interval_ms, s->learning ? "on" : "off");
            printf("%-34s %-26s %10s %10s %9s %7s %8s %5s %4s %s\n", "SITE", "FUNCTION", "ALLOCS/s", "BYTES/s",
                   "LIVE", "BC-HIT", "LARGE", "SLOTS", "THP", "ARM");
        }
        hakmem__ctl__response__free_unpacked(st, NULL);
        site_filter f = { .top = top };
        rv.nnext = 0;
        if ((r = stream_sites(&f, watch_part, &rv)) != 0)
            break;
        if (g_json) {
            jw_end_arr(&rv.w);
            jw_end_obj(&rv.w);
            jw_done(&rv.w);
        } else {
            if (tty)
                printf("(every %.1f s; Ctrl-C quits)\n", (double)interval / 1000.0);
            fflush(stdout);
        }
        prev_site *t = rv.prev;
        size_t cap = rv.capprev;
        rv.prev = rv.next, rv.nprev = rv.nnext, rv.capprev = rv.capnext;
        rv.next = t, rv.capnext = cap;
    }
    free(rv.prev);
    free(rv.next);
    return r;
}
