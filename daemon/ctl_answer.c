/* Control answers; see ctl_answer.h. */
#include "ctl_answer.h"
#include "core_api.h"
#include "frame.h"
#include "metrics.h"
#include "site_key.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SITES_PER_PART 128         /* a Site packs to 1.5 KiB at most: a part stays far below a frame */
#define SELECT_PAGE 64             /* sites read at a time while choosing */
#define POLICY_SITES_PER_PART 512  /* some 450 bytes each */
/* Not streaming: all parts in one frame, with room for the response around them. */
#define ONE_FRAME_MAX (HKC_FRAME_MAX - 64)

/* ---- single responses ---- */

int hkc_send(const hkc_out *o, Hakmem__Ctl__Response *resp)
{
    resp->version = HKC_PROTOCOL_VERSION;
    size_t n = hakmem__ctl__response__get_packed_size(resp);
    if (n > HKC_FRAME_MAX) {
        /* Too big to send: say so instead (the client may narrow it). */
        Hakmem__Ctl__Response small = HAKMEM__CTL__RESPONSE__INIT;
        Hakmem__Ctl__Error err = HAKMEM__CTL__ERROR__INIT;
        err.code = HAKMEM__CTL__ERROR__CODE__TOO_LARGE;
        err.text = "answer exceeds the maximum frame size; narrow it (e.g. sites --top N)";
        small.result_case = HAKMEM__CTL__RESPONSE__RESULT_ERROR;
        small.error = &err;
        return hkc_send(o, &small);
    }
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return -ENOMEM;
    hakmem__ctl__response__pack(resp, buf);
    int r = hkc_frame_write(o->fd, buf, n, o->timeout_ms);
    free(buf);
    return r;
}

int hkc_send_errorv(const hkc_out *o, Hakmem__Ctl__Error__Code code, const char *fmt, va_list ap)
{
    char text[512];
    vsnprintf(text, sizeof text, fmt, ap);
    Hakmem__Ctl__Response resp = HAKMEM__CTL__RESPONSE__INIT;
    Hakmem__Ctl__Error err = HAKMEM__CTL__ERROR__INIT;
    err.code = code;
    err.text = text;
    resp.result_case = HAKMEM__CTL__RESPONSE__RESULT_ERROR;
    resp.error = &err;
    return hkc_send(o, &resp);
}

static int send_error(const hkc_out *o, Hakmem__Ctl__Error__Code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int send_error(const hkc_out *o, Hakmem__Ctl__Error__Code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = hkc_send_errorv(o, code, fmt, ap);
    va_end(ap);
    return r;
}

static Hakmem__Ctl__Error__Code code_of(int err)
{
    switch (err) {
    case -ENOENT: case -ESRCH: return HAKMEM__CTL__ERROR__CODE__NOT_FOUND;
    case -EINVAL: case -EBADMSG: case -ERANGE: case -EPROTO:
        return HAKMEM__CTL__ERROR__CODE__INVALID_ARGUMENT;
    case -EPERM: case -EACCES: return HAKMEM__CTL__ERROR__CODE__PERMISSION_DENIED;
    case -EMSGSIZE: case -E2BIG: return HAKMEM__CTL__ERROR__CODE__TOO_LARGE;
    case -EBUSY: case -EAGAIN: return HAKMEM__CTL__ERROR__CODE__BUSY;
    default: return HAKMEM__CTL__ERROR__CODE__INTERNAL;
    }
}

int hkc_send_core_error(const hkc_out *o, const char *what, int err)
{
    return send_error(o, code_of(err), "%s: %s", what, strerror(-err));
}

/* ---- answers in parts ---- */

typedef struct parts {
    const hkc_out *o;
    uint8_t *acc;                /* not streaming: the parts so far (and a NUL) */
    size_t len, cap;
    int over;                    /* not streaming: more than one frame holds */
    int send_err;                /* a send failed: the connection is done */
} parts;

/* Streaming: resp goes out now, with more set. */
static int part_send(parts *p, Hakmem__Ctl__Response *resp)
{
    resp->more = 1;
    int r = hkc_send(p->o, resp);
    if (r < 0)
        p->send_err = r;
    return r;
}

/* Not streaming: the bytes join the one answer, while a frame holds it. */
static int part_keep(parts *p, const void *data, size_t len)
{
    if (p->len + len > ONE_FRAME_MAX) {
        p->over = 1;
        return -EMSGSIZE;
    }
    if (p->len + len + 1 > p->cap) {
        size_t cap = p->cap ? p->cap : 65536;
        while (cap < p->len + len + 1)
            cap *= 2;
        uint8_t *n = realloc(p->acc, cap);
        if (!n)
            return -ENOMEM;
        p->acc = n;
        p->cap = cap;
    }
    memcpy(p->acc + p->len, data, len);
    p->len += len;
    p->acc[p->len] = 0;
    return 0;
}

/* How an answer in parts ends when it could not be completed: the
 * connection's own failure closes it; otherwise the client is told. */
static int parts_failed(parts *p, const char *what, int err)
{
    free(p->acc);
    if (p->send_err)
        return p->send_err;
    if (p->over)
        return send_error(p->o, HAKMEM__CTL__ERROR__CODE__TOO_LARGE,
                          "%s: the answer exceeds one frame (%u bytes); a client that streams (hakmemctl) "
                          "gets it whole, or narrow it (e.g. sites --top N)", what, HKC_FRAME_MAX);
    return hkc_send_core_error(p->o, what, err);
}

/* ---- metrics ---- */

static int metrics_piece(const char *text, size_t len, void *arg)
{
    parts *p = arg;
    if (!p->o->stream)
        return part_keep(p, text, len);
    Hakmem__Ctl__Response resp = HAKMEM__CTL__RESPONSE__INIT;
    Hakmem__Ctl__Metrics m = HAKMEM__CTL__METRICS__INIT;
    m.text = (char *)text;
    resp.result_case = HAKMEM__CTL__RESPONSE__RESULT_METRICS;
    resp.metrics = &m;
    return part_send(p, &resp);
}

int hkc_answer_metrics(const hkc_out *o)
{
    parts p = { .o = o };
    int r = hkd_metrics_stream(metrics_piece, &p);
    if (r < 0)
        return parts_failed(&p, "metrics", r);
    Hakmem__Ctl__Response resp = HAKMEM__CTL__RESPONSE__INIT;
    Hakmem__Ctl__Metrics m = HAKMEM__CTL__METRICS__INIT;
    m.text = p.acc ? (char *)p.acc : "";
    resp.result_case = HAKMEM__CTL__RESPONSE__RESULT_METRICS;
    resp.metrics = &m;
    r = hkc_send(o, &resp);
    free(p.acc);
    return r;
}

/* ---- export ---- */

static int policy_piece(parts *p, uint8_t *data, size_t len)
{
    if (!p->o->stream)
        return part_keep(p, data, len);
    Hakmem__Ctl__Response resp = HAKMEM__CTL__RESPONSE__INIT;
    Hakmem__Ctl__Policy pol = HAKMEM__CTL__POLICY__INIT;
    pol.policy.data = data;
    pol.policy.len = len;
    resp.result_case = HAKMEM__CTL__RESPONSE__RESULT_POLICY;
    resp.policy = &pol;
    return part_send(p, &resp);
}

int hkc_answer_export(const hkc_out *o)
{
    parts p = { .o = o };
    uint32_t cursor = 0;
    int r;
    do {
        uint8_t *buf = NULL;
        size_t len = 0;
        r = hkd_policy_export_page(&cursor, POLICY_SITES_PER_PART, &buf, &len);
        if (r >= 0 && len > 0) {
            int s = policy_piece(&p, buf, len);
            if (s < 0)
                r = s;
        }
        free(buf);
    } while (r > 0);
    if (r < 0)
        return parts_failed(&p, "export", r);
    Hakmem__Ctl__Response resp = HAKMEM__CTL__RESPONSE__INIT;
    Hakmem__Ctl__Policy pol = HAKMEM__CTL__POLICY__INIT;
    pol.policy.data = p.acc;
    pol.policy.len = p.len;
    resp.result_case = HAKMEM__CTL__RESPONSE__RESULT_POLICY;
    resp.policy = &pol;
    r = hkc_send(o, &resp);
    free(p.acc);
    return r;
}

/* ---- sites ----
 *
 * By bytes, largest first: one pass over the sites keeps only (bytes,
 * place, key) of those that may be shown, in a heap of `top` when there is
 * a top; the chosen ones are then read again by place, a part at a time
 * (one whose place another site took meanwhile is left out). */

typedef struct pick {
    uint64_t bytes;
    uint32_t idx;
    hkd_site_key key;
} pick;

typedef struct picks {
    pick *v;
    size_t n, cap;
    size_t limit;                /* 0: every site */
    const char *module;          /* filter, NULL or "" for none */
    uint32_t seen;               /* sites known, before top and the filter */
} picks;

/* Larger bytes first; among equals, the older site. */
static int ahead(const pick *a, const pick *b)
{
    return a->bytes != b->bytes ? a->bytes > b->bytes : a->idx < b->idx;
}

static int by_rank(const void *a, const void *b)
{
    return ahead(a, b) ? -1 : ahead(b, a) ? 1 : 0;
}

/* With a limit, v is a heap whose root is the last of those kept. */
static void sift_down(picks *ps, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, last = i;
        if (l < ps->n && ahead(&ps->v[last], &ps->v[l]))
            last = l;
        if (r < ps->n && ahead(&ps->v[last], &ps->v[r]))
            last = r;
        if (last == i)
            return;
        pick t = ps->v[i];
        ps->v[i] = ps->v[last];
        ps->v[last] = t;
        i = last;
    }
}

static int picks_add(picks *ps, pick x)
{
    if (ps->limit && ps->n == ps->limit) {
        if (ahead(&x, &ps->v[0])) {
            ps->v[0] = x;
            sift_down(ps, 0);
        }
        return 0;
    }
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 256;
        if (ps->limit && cap > ps->limit)
            cap = ps->limit;
        pick *n = realloc(ps->v, cap * sizeof *n);
        if (!n)
            return -ENOMEM;
        ps->v = n;
        ps->cap = cap;
    }
    size_t i = ps->n++;
    ps->v[i] = x;
    while (ps->limit && i > 0 && ahead(&ps->v[(i - 1) / 2], &ps->v[i])) {
        pick t = ps->v[i];
        ps->v[i] = ps->v[(i - 1) / 2];
        ps->v[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
    return 0;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s && s[1] ? s + 1 : path;
}

static int module_matches(const char *module, const char *want)
{
    return strcmp(module, want) == 0 || strcmp(base_name(module), base_name(want)) == 0;
}

static int choose(picks *ps)
{
    hkd_site_info *page = malloc(SELECT_PAGE * sizeof *page);
    uint32_t *at = malloc(SELECT_PAGE * sizeof *at);
    if (!page || !at) {
        free(page);
        free(at);
        return -ENOMEM;
    }
    uint32_t cursor = 0;
    int k, r = 0;
    while (r == 0 && (k = hkd_site_page(&cursor, page, at, SELECT_PAGE)) > 0) {
        for (int i = 0; i < k && r == 0; i++) {
            ps->seen++;
            page[i].module[HKD_MODULE_MAX - 1] = '\0';
            if (ps->module && *ps->module && !module_matches(page[i].module, ps->module))
                continue;
            r = picks_add(ps, (pick){ page[i].bytes, at[i], page[i].key });
        }
    }
    free(page);
    free(at);
    if (r == 0 && k < 0)
        r = k;
    if (r == 0 && ps->n > 1)
        qsort(ps->v, ps->n, sizeof *ps->v, by_rank);
    return r;
}

/* One part of the answer: protobuf views of up to SITES_PER_PART sites. */
typedef struct site_part {
    hkd_site_info info[SITES_PER_PART];
    Hakmem__Ctl__Site site[SITES_PER_PART];
    Hakmem__Ctl__Site *sptr[SITES_PER_PART];
    Hakmem__Ctl__SiteKey key[SITES_PER_PART];
    Hakmem__Ctl__Thresholds th[SITES_PER_PART];
    Hakmem__Ctl__Arm arm[SITES_PER_PART][HKD_MAX_ARMS];
    Hakmem__Ctl__Arm *aptr[SITES_PER_PART][HKD_MAX_ARMS];
    size_t n;
} site_part;

static void view_site(site_part *sp, size_t i)
{
    hkd_site_info *si = &sp->info[i];
    Hakmem__Ctl__Site *s = &sp->site[i];
    hakmem__ctl__site__init(s);
    hakmem__ctl__site_key__init(&sp->key[i]);
    hakmem__ctl__thresholds__init(&sp->th[i]);
    si->module[HKD_MODULE_MAX - 1] = '\0';
    sp->key[i].module_hash = si->key.module_hash;
    sp->key[i].offset = si->key.offset;
    sp->key[i].domain = si->key.domain;
    s->key = &sp->key[i];
    s->module = si->module;
    s->processes = si->processes;
    s->allocs = si->allocs;
    s->frees = si->frees;
    s->bytes = si->bytes;
    s->live_bytes = si->live_bytes;
    s->n_size_hist = 32;
    s->size_hist = si->size_hist;
    s->bigcache_hits = si->bigcache_hits;
    s->bigcache_misses = si->bigcache_misses;
    s->bigcache_evictions = si->bigcache_evictions;
    s->thp_blocks = si->thp_blocks;
    s->slow_ns = si->slow_ns;
    sp->th[i].large_threshold = si->thresholds.large_threshold;
    sp->th[i].bigcache_slots = si->thresholds.bigcache_slots;
    sp->th[i].thp = si->thresholds.thp != 0;
    s->thresholds = &sp->th[i];
    s->pinned_arm = si->pinned_arm;
    s->fleet_pinned = si->fleet_pinned != 0;
    s->settled = si->settled;
    s->thin = si->thin;
    s->own_pulls = si->own_pulls;
    s->fleet_pulls = si->fleet_pulls;
    uint32_t na = si->n_arms < HKD_MAX_ARMS ? si->n_arms : HKD_MAX_ARMS;
    s->n_arms = na;
    s->arms = sp->aptr[i];
    for (uint32_t a = 0; a < na; a++) {
        Hakmem__Ctl__Arm *arm = &sp->arm[i][a];
        hakmem__ctl__arm__init(arm);
        si->arms[a].name[HKD_ARM_NAME_MAX - 1] = '\0';
        arm->name = si->arms[a].name;
        arm->pulls = si->arms[a].pulls;
        arm->mean_reward = si->arms[a].mean_reward;
        arm->fleet_pulls = si->arms[a].fleet_pulls;
        arm->fleet_mean_reward = si->arms[a].fleet_mean_reward;
        sp->aptr[i][a] = arm;
    }
    sp->sptr[i] = s;
}

static int send_site_part(parts *p, site_part *sp, uint32_t total, int last)
{
    Hakmem__Ctl__Sites msg = HAKMEM__CTL__SITES__INIT;
    msg.total = total;
    msg.n_sites = sp->n;
    msg.sites = sp->sptr;
    sp->n = 0;
    if (p->o->stream) {
        Hakmem__Ctl__Response resp = HAKMEM__CTL__RESPONSE__INIT;
        resp.result_case = HAKMEM__CTL__RESPONSE__RESULT_SITES;
        resp.sites = &msg;
        if (!last)
            return part_send(p, &resp);
        int r = hkc_send(p->o, &resp);
        if (r < 0)
            p->send_err = r;
        return r;
    }
    /* Sites messages appended are one message with all their sites. */
    size_t n = hakmem__ctl__sites__get_packed_size(&msg);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return -ENOMEM;
    hakmem__ctl__sites__pack(&msg, buf);
    int r = part_keep(p, buf, n);
    free(buf);
    return r;
}

/* Not streaming: the kept parts become one Sites answer. */
static int send_kept_sites(parts *p)
{
    Hakmem__Ctl__Sites *msg = hakmem__ctl__sites__unpack(NULL, p->len, p->acc);
    free(p->acc);
    p->acc = NULL;
    if (!msg)
        return hkc_send_core_error(p->o, "sites", -ENOMEM);
    Hakmem__Ctl__Response resp = HAKMEM__CTL__RESPONSE__INIT;
    resp.result_case = HAKMEM__CTL__RESPONSE__RESULT_SITES;
    resp.sites = msg;
    int r = hkc_send(p->o, &resp);
    hakmem__ctl__sites__free_unpacked(msg, NULL);
    return r;
}

int hkc_answer_sites(const hkc_out *o, const Hakmem__Ctl__SitesRequest *rq)
{
    picks ps = { .limit = rq->top, .module = rq->module };
    parts p = { .o = o };
    site_part *sp = NULL;
    int r = choose(&ps);
    if (r == 0 && !(sp = malloc(sizeof *sp)))
        r = -ENOMEM;
    if (r == 0) {
        sp->n = 0;
        for (size_t i = 0; i < ps.n && r == 0; i++) {
            uint32_t cursor = ps.v[i].idx;
            if (hkd_site_page(&cursor, &sp->info[sp->n], NULL, 1) == 1 &&
                hkd_site_key_eq(&sp->info[sp->n].key, &ps.v[i].key))
                view_site(sp, sp->n++);
            if (sp->n == SITES_PER_PART && i + 1 < ps.n)
                r = send_site_part(&p, sp, ps.seen, 0);
        }
        if (r == 0)
            r = send_site_part(&p, sp, ps.seen, 1);
    }
    free(sp);
    free(ps.v);
    if (r < 0)
        return parts_failed(&p, "sites", r);
    return o->stream ? 0 : send_kept_sites(&p);
}
