/* Learned state <-> protobuf <-> state file.
 *
 * State file layout: "HKMSTATE" | u32 payload length (LE) | u32 CRC32 of the
 * payload (LE) | payload (a serialized hakmem.policy.Policy).  A protobuf
 * cut at a field boundary still parses, so only the header tells a
 * truncated file from a short one. */
#include "persist.h"
#include "persist_binaries.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomic_file.h"
#include "grow.h"
#include "hakmem_shm.h"
#include "policy.pb-c.h"
#include "utf8.h"
#include "value.h"

static const char state_magic[8] = { 'H', 'K', 'M', 'S', 'T', 'A', 'T', 'E' };
#define STATE_HDR HKD_STATE_HEADER_BYTES
#define STATE_MAX HKD_STATE_MAX_BYTES

uint32_t hkd_crc32(const uint8_t *p, size_t n)
{
    static uint32_t table[256];
    static int ready;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

void hkd_site_state_of(hkd_site_state *s, const hkd_site_key *k, const hkd_learn *l)
{
    memset(s, 0, sizeof *s);
    s->key = *k;
    memcpy(s->pulls, l->pulls, sizeof s->pulls);
    memcpy(s->mean, l->mean, sizeof s->mean);
    s->ref_cost = l->ref_cost;
    s->current = (int8_t)l->current;
    s->pinned = (int8_t)l->pinned;
    s->sizes_known = l->sizes_known;
    s->size_lo = l->size_lo;
    s->size_hi = l->size_hi;
}

void hkd_site_state_learn(const hkd_site_state *s, hkd_learn *l)
{
    hkd_learn_init(l);
    uint64_t total = 0;
    for (int a = 0; a < HKD_N_ARMS; a++) {
        l->pulls[a] = s->pulls[a];
        l->mean[a] = s->mean[a];
        total += s->pulls[a];
    }
    l->total_pulls = total > UINT32_MAX ? UINT32_MAX : (uint32_t)total;
    l->current = s->current >= 0 && s->current < HKD_N_ARMS ? s->current : HKD_DEFAULT_ARM;
    l->pinned = s->pinned >= 0 && s->pinned < HKD_N_ARMS ? s->pinned : -1;
    l->ref_cost = s->ref_cost;
    if (s->sizes_known && s->size_lo <= s->size_hi && s->size_hi < HKSHM_HIST)
        hkd_learn_set_sizes(l, s->size_lo, s->size_hi);
}

int hkd_site_state_learned(const hkd_site_state *s)
{
    for (int a = 0; a < HKD_N_ARMS; a++)
        if (s->pulls[a])
            return 1;
    return s->pinned >= 0 || s->ref_cost > 0.0;
}

static int by_hash(const void *a, const void *b)
{
    const hkd_module_name *x = a, *y = b;
    return x->hash < y->hash ? -1 : x->hash > y->hash;
}

size_t hkd_module_names_unique(hkd_module_name *mods, size_t n)
{
    if (n < 2)
        return n;
    qsort(mods, n, sizeof *mods, by_hash);
    size_t k = 1;
    for (size_t i = 1; i < n; i++)
        if (mods[i].hash != mods[k - 1].hash)
            mods[k++] = mods[i];
    return k;
}

const char *hkd_module_path(const hkd_module_name *mods, size_t n, uint64_t hash)
{
    hkd_module_name key = { .hash = hash };
    const hkd_module_name *m = n ? bsearch(&key, mods, n, sizeof *mods, by_hash) : NULL;
    return m ? m->path : "";
}

/* ---- encoding ----
 *
 * The Policy message is written as its header fields followed by one
 * length-delimited field 5 per site: what packing the whole message would
 * write, without holding every site's message at once. */
#define SITES_TAG 0x2Au                  /* field 5, length-delimited */

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    for (; v >= 0x80; v >>= 7)
        n++;
    return n;
}

typedef struct site_msg {
    Hakmem__Policy__SiteState site;
    Hakmem__Policy__ArmState arms[HKD_N_ARMS];
    Hakmem__Policy__ArmState *ptrs[HKD_N_ARMS];
} site_msg;

/* Arms never pulled are left out: a reader takes a missing arm as unpulled. */
static void site_msg_of(site_msg *m, const hkd_site_state *s, const char *module)
{
    Hakmem__Policy__SiteState *o = &m->site;
    hakmem__policy__site_state__init(o);
    o->module_hash = s->key.module_hash;
    o->offset = s->key.offset;
    o->domain = s->key.domain;
    o->module = (char *)module;
    int cur = s->current >= 0 && s->current < HKD_N_ARMS ? s->current : HKD_DEFAULT_ARM;
    o->current_arm = (char *)hkd_arms[cur].name;
    o->pinned_arm = s->pinned >= 0 && s->pinned < HKD_N_ARMS ? (char *)hkd_arms[s->pinned].name : (char *)"";
    o->ref_cost_ns = s->ref_cost;
    o->last_seen_unix_s = s->last_seen;
    o->usage = s->usage;
    o->sizes_known = s->sizes_known != 0;
    o->size_lo = s->size_lo;
    o->size_hi = s->size_hi;
    o->n_arms = 0;
    o->arms = m->ptrs;
    for (int a = 0; a < HKD_N_ARMS; a++) {
        if (!s->pulls[a])
            continue;
        Hakmem__Policy__ArmState *x = &m->arms[o->n_arms];
        hakmem__policy__arm_state__init(x);
        x->name = (char *)hkd_arms[a].name;
        x->pulls = s->pulls[a];
        x->reward_sum = (double)s->mean[a] * s->pulls[a];
        x->large_threshold = hkd_arms[a].large_threshold;
        x->bigcache_slots = hkd_arms[a].bigcache_slots;
        x->thp = hkd_arms[a].thp;
        m->ptrs[o->n_arms++] = x;
    }
}

static void header_msg(Hakmem__Policy__Policy *pol, char host[64], uint64_t generation)
{
    hakmem__policy__policy__init(pol);
    memset(host, 0, 64);
    gethostname(host, 63);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    pol->format = (char *)HKD_POLICY_FORMAT;
    pol->host = host;
    pol->saved_unix_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    pol->generation = generation;
}

/* A site's field in the Policy: tag, length, message. */
static uint32_t field_bytes(size_t msg_len)
{
    return (uint32_t)(1 + varint_len(msg_len) + msg_len);
}

static hkd_worth worth_of(const hkd_site_state *s, uint32_t cost)
{
    return (hkd_worth){ .score = hkd_worth_score(s->last_seen, s->usage, s->pinned >= 0),
                        .domain = s->key.domain, .cost = cost };
}

/* keep[i] for the worthiest sites whose costs fit in budget (all when
 * budget is 0).  0 or -ENOMEM. */
static int keep_within(const hkd_site_state *sites, const uint32_t *cost, size_t n, uint64_t budget,
                       uint8_t *keep)
{
    if (!budget) {
        memset(keep, 1, n);
        return 0;
    }
    hkd_worth *w = malloc((n ? n : 1) * sizeof *w);
    if (!w)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        w[i] = worth_of(&sites[i], cost ? cost[i] : 1);
    int64_t rc = hkd_keep_worthiest(w, n, budget, keep);
    free(w);
    return rc < 0 ? (int)rc : 0;
}

/* Without the header (fields at their defaults are not written: proto3)
 * the bytes are the sites alone, which append to a policy as more sites. */
static int encode(const hkd_site_state *sites, size_t n, const hkd_module_name *mods, size_t n_mods,
                  int with_header, uint64_t generation, size_t max_len, uint8_t **out, size_t *len,
                  size_t *n_kept)
{
    Hakmem__Policy__Policy pol;
    char host[64];
    if (with_header)
        header_msg(&pol, host, generation);
    else
        hakmem__policy__policy__init(&pol);
    size_t head = hakmem__policy__policy__get_packed_size(&pol);
    uint32_t *cost = malloc((n ? n : 1) * sizeof *cost);
    uint8_t *keep = malloc(n ? n : 1);
    site_msg *m = malloc(sizeof *m);
    int rc = -ENOMEM;
    *out = NULL;
    if (!cost || !keep || !m)
        goto out;
    for (size_t i = 0; i < n; i++) {
        site_msg_of(m, &sites[i], hkd_module_path(mods, n_mods, sites[i].key.module_hash));
        cost[i] = field_bytes(hakmem__policy__site_state__get_packed_size(&m->site));
    }
    /* A cap below the header keeps no site (and still writes the header). */
    uint64_t budget = !max_len ? 0 : max_len > head ? max_len - head : 1;
    if ((rc = keep_within(sites, cost, n, budget, keep)) < 0)
        goto out;
    if (max_len && max_len <= head)
        memset(keep, 0, n);
    size_t total = head, kept = 0;
    for (size_t i = 0; i < n; i++)
        if (keep[i]) {
            total += cost[i];
            kept++;
        }
    rc = -ENOMEM;
    if (!(*out = malloc(total ? total : 1)))
        goto out;
    size_t at = hakmem__policy__policy__pack(&pol, *out);
    for (size_t i = 0; i < n; i++) {
        if (!keep[i])
            continue;
        site_msg_of(m, &sites[i], hkd_module_path(mods, n_mods, sites[i].key.module_hash));
        size_t msg = hakmem__policy__site_state__get_packed_size(&m->site);
        (*out)[at++] = SITES_TAG;
        at += hkd_put_varint(*out + at, msg);
        at += hakmem__policy__site_state__pack(&m->site, *out + at);
    }
    *len = at;
    if (n_kept)
        *n_kept = kept;
    rc = at == total ? 0 : -EPROTO;
    if (rc < 0) {
        free(*out);
        *out = NULL;
    }
out:
    free(cost);
    free(keep);
    free(m);
    return rc;
}

int hkd_policy_encode(const hkd_site_state *sites, size_t n, const hkd_module_name *mods, size_t n_mods,
                      uint64_t generation, size_t max_len, uint8_t **out, size_t *len, size_t *n_kept)
{
    return encode(sites, n, mods, n_mods, 1, generation, max_len, out, len, n_kept);
}

int hkd_policy_encode_part(const hkd_site_state *sites, size_t n, const hkd_module_name *mods, size_t n_mods,
                           int with_header, uint64_t generation, uint8_t **out, size_t *len)
{
    return encode(sites, n, mods, n_mods, with_header, generation, 0, out, len, NULL);
}

/* ---- decoding ---- */

#define MODULE_NAMES_MAX 16384u          /* paths beyond are informational only: dropped */

static size_t get_varint(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
    uint64_t x = 0;
    for (size_t i = 0; i < 10 && p + i < end; i++) {
        x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *v = x;
            return i + 1;
        }
    }
    return 0;
}

/* A site as a file holds it, checked: arms this build does not know are
 * dropped, and rewards outside [0,1] mean a file that was not ours. */
static void state_of_msg(const Hakmem__Policy__SiteState *s, hkd_site_state *d)
{
    hkd_learn l;
    hkd_learn_init(&l);
    uint64_t pulls[HKD_N_ARMS] = { 0 };
    double rewards[HKD_N_ARMS] = { 0 };
    for (size_t a = 0; a < s->n_arms; a++) {
        const Hakmem__Policy__ArmState *x = s->arms[a];
        int idx = x->name ? hkd_arm_by_name(x->name) : -1;
        double mean = x->pulls ? x->reward_sum / (double)x->pulls : 0.0;
        if (idx < 0 || !(mean >= 0.0 && mean <= 1.0))
            continue;
        pulls[idx] = x->pulls;
        rewards[idx] = x->reward_sum;
    }
    hkd_learn_set_counts(&l, pulls, rewards);
    int cur = s->current_arm ? hkd_arm_by_name(s->current_arm) : -1;
    l.current = cur >= 0 ? cur : HKD_DEFAULT_ARM;
    l.pinned = s->pinned_arm && *s->pinned_arm ? hkd_arm_by_name(s->pinned_arm) : -1;
    l.ref_cost = s->ref_cost_ns > 0.0 && s->ref_cost_ns < 1e12 ? s->ref_cost_ns : 0.0;
    if (s->sizes_known && s->size_lo <= s->size_hi && s->size_hi < HKSHM_HIST)
        hkd_learn_set_sizes(&l, (int)s->size_lo, (int)s->size_hi);
    hkd_site_key k = { .module_hash = s->module_hash, .offset = s->offset, .domain = s->domain };
    hkd_site_state_of(d, &k, &l);
    d->last_seen = s->last_seen_unix_s > UINT32_MAX ? UINT32_MAX : (uint32_t)s->last_seen_unix_s;
    d->usage = s->usage;
}

/* Keeps the sites with keep[i] set, in order. */
static void compact(hkd_policy *p, const uint8_t *keep)
{
    size_t k = 0;
    for (size_t i = 0; i < p->n; i++)
        if (keep[i]) {
            p->sites[k] = p->sites[i];
            p->site_bytes[k++] = p->site_bytes[i];
        }
    p->n = k;
}

/* Keeps the worthiest within budget (cost: bytes, or 1 each when by_count). */
static int trim_to(hkd_policy *p, uint64_t budget, int by_count)
{
    uint8_t *keep = malloc(p->n ? p->n : 1);
    if (!keep)
        return -ENOMEM;
    int rc = keep_within(p->sites, by_count ? NULL : p->site_bytes, p->n, budget ? budget : 1, keep);
    if (rc == 0)
        compact(p, keep);
    free(keep);
    return rc;
}

static int add_site(hkd_policy *p, size_t *cap, size_t *cap_bytes, size_t *cap_mods,
                    const Hakmem__Policy__SiteState *msg, uint32_t bytes, size_t max_sites)
{
    hkd_site_state st;
    state_of_msg(msg, &st);
    if (max_sites && p->n >= 2 * max_sites) {
        int rc = trim_to(p, max_sites, 1);
        if (rc < 0)
            return rc;
    }
    if (hkd_grow((void **)&p->sites, cap, p->n + 1, sizeof *p->sites) < 0 ||
        hkd_grow((void **)&p->site_bytes, cap_bytes, p->n + 1, sizeof *p->site_bytes) < 0)
        return -ENOMEM;
    p->sites[p->n] = st;
    p->site_bytes[p->n++] = bytes;
    /* Sites of one module are written together: a path per run of them. */
    if (msg->module && *msg->module &&
        (!p->n_modules || p->modules[p->n_modules - 1].hash != msg->module_hash)) {
        if (p->n_modules == MODULE_NAMES_MAX)
            p->n_modules = hkd_module_names_unique(p->modules, p->n_modules);
        if (p->n_modules < MODULE_NAMES_MAX) {
            if (hkd_grow((void **)&p->modules, cap_mods, p->n_modules + 1, sizeof *p->modules) < 0)
                return -ENOMEM;
            hkd_module_name *m = &p->modules[p->n_modules++];
            m->hash = msg->module_hash;
            /* A path from another host or an edited file: bounded and
             * printable before anything here stores or shows it. */
            hk_text_clean(m->path, sizeof m->path, msg->module, SIZE_MAX);
        }
    }
    return 0;
}

/* One BinaryState; past HKD_BINARIES_MAX the rest are left out. */
static int add_binary(hkd_policy *out, const uint8_t *p, size_t len)
{
    if (out->n_binaries >= HKD_BINARIES_MAX)
        return 0;
    Hakmem__Policy__BinaryState *m = hakmem__policy__binary_state__unpack(NULL, len, p);
    if (!m)
        return -EBADMSG;
    if (!out->binaries && !(out->binaries = calloc(HKD_BINARIES_MAX, sizeof *out->binaries))) {
        hakmem__policy__binary_state__free_unpacked(m, NULL);
        return -ENOMEM;
    }
    int rc = hkd_binary_state_of_msg(m, &out->binaries[out->n_binaries]);
    hakmem__policy__binary_state__free_unpacked(m, NULL);
    if (rc < 0)
        return rc;
    out->n_binaries++;
    return 0;
}

int hkd_policy_decode(const uint8_t *buf, size_t len, size_t max_sites, hkd_policy *out)
{
    memset(out, 0, sizeof *out);
    size_t cap = 0, cap_bytes = 0, cap_mods = 0;
    const uint8_t *p = buf, *end = buf + len;
    int format_ok = 0, rc = 0;
    while (p < end && rc == 0) {
        uint64_t tag, v;
        size_t k = get_varint(p, end, &tag);
        if (!k || tag >> 3 == 0) {
            rc = -EBADMSG;
            break;
        }
        p += k;
        uint32_t field = (uint32_t)(tag >> 3);
        switch (tag & 7) {
        case 0:
            if (!(k = get_varint(p, end, &v)))
                rc = -EBADMSG;
            else if (field == 4)
                out->generation = v;
            p += k;
            break;
        case 1:
        case 5: {
            size_t w = (tag & 7) == 1 ? 8 : 4;
            if ((size_t)(end - p) < w)
                rc = -EBADMSG;
            p += w;
            break;
        }
        case 2:
            if (!(k = get_varint(p, end, &v)) || v > (uint64_t)(end - p - k)) {
                rc = -EBADMSG;
                break;
            }
            p += k;
            if (field == 1) {
                format_ok = v == strlen(HKD_POLICY_FORMAT) && memcmp(p, HKD_POLICY_FORMAT, v) == 0;
            } else if (field == 20) {
                rc = add_binary(out, p, (size_t)v);
            } else if (field == 5) {
                Hakmem__Policy__SiteState *s = hakmem__policy__site_state__unpack(NULL, v, p);
                if (!s) {
                    rc = -EBADMSG;
                    break;
                }
                rc = add_site(out, &cap, &cap_bytes, &cap_mods, s, field_bytes(v), max_sites);
                hakmem__policy__site_state__free_unpacked(s, NULL);
            }
            p += v;
            break;
        default:
            rc = -EBADMSG;       /* groups: never in a policy */
        }
    }
    if (rc == 0 && !format_ok)
        rc = -EBADMSG;
    if (rc == 0 && max_sites && out->n > max_sites)
        rc = trim_to(out, max_sites, 1);
    if (rc < 0) {
        hkd_policy_free(out);
        return rc;
    }
    out->n_modules = hkd_module_names_unique(out->modules, out->n_modules);
    return 0;
}

size_t hkd_policy_trim(hkd_policy *p, size_t max_len)
{
    Hakmem__Policy__Policy pol;
    char host[64];
    header_msg(&pol, host, p->generation);
    size_t head = hakmem__policy__policy__get_packed_size(&pol);
    size_t before = p->n;
    uint64_t all = 0;
    for (size_t i = 0; i < p->n; i++)
        all += p->site_bytes[i];
    if (head + all <= max_len)
        return 0;
    if (max_len <= head || trim_to(p, max_len - head, 0) < 0)
        p->n = 0;                    /* no room, or no memory to choose: keep nothing rather than too much */
    return before - p->n;
}

void hkd_policy_free(hkd_policy *p)
{
    free(p->binaries);
    free(p->sites);
    free(p->site_bytes);
    free(p->modules);
    memset(p, 0, sizeof *p);
}

int hkd_state_save(const char *dir, const uint8_t *buf, size_t len)
{
    char path[HKD_PATH_MAX];
    if (len > STATE_MAX)
        return -EFBIG;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, HKD_STATE_FILE) >= sizeof path)
        return -ENAMETOOLONG;
    uint8_t hdr[STATE_HDR];
    uint32_t l32 = (uint32_t)len, crc = hkd_crc32(buf, len);
    memcpy(hdr, state_magic, 8);
    for (int i = 0; i < 4; i++) {
        hdr[8 + i] = (uint8_t)(l32 >> (8 * i));
        hdr[12 + i] = (uint8_t)(crc >> (8 * i));
    }
    hkd_atomic_file f;
    int rc = hkd_atomic_open(&f, path, 0640);
    if (rc < 0)
        return rc;
    rc = hkd_atomic_write(&f, hdr, sizeof hdr);
    if (!rc)
        rc = hkd_atomic_write(&f, buf, len);
    if (rc < 0) {
        hkd_atomic_abort(&f);
        return rc;
    }
    return hkd_atomic_commit(&f);
}

int hkd_state_clean(const char *dir)
{
    char path[HKD_PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, HKD_STATE_FILE) >= sizeof path)
        return -ENAMETOOLONG;
    return hkd_atomic_clean(path);
}

static int set_aside(const char *path, char *aside, size_t aside_len)
{
    char tmp[HKD_PATH_MAX + 64];
    snprintf(tmp, sizeof tmp, "%s.corrupt-%lld", path, (long long)time(NULL));
    if (aside && aside_len)
        snprintf(aside, aside_len, "%s", tmp);
    if (rename(path, tmp) < 0 && aside && aside_len)
        snprintf(aside, aside_len, "(could not rename %s: %s)", path, strerror(errno));
    return -EBADMSG;
}

int hkd_state_load(const char *dir, uint8_t **buf, size_t *len, char *aside, size_t aside_len)
{
    char path[HKD_PATH_MAX];
    *buf = NULL;
    *len = 0;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, HKD_STATE_FILE) >= sizeof path)
        return -ENAMETOOLONG;
    /* Whatever sits at the name is opened without waiting (a FIFO would
     * block until a writer came) and without following a symlink. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
    if (fd < 0 && errno == ELOOP) {
        set_aside(path, aside, aside_len);
        return -EMEDIUMTYPE;
    }
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        set_aside(path, aside, aside_len);
        return -EMEDIUMTYPE;
    }
    if (st.st_size < (off_t)STATE_HDR || st.st_size > (off_t)(STATE_MAX + STATE_HDR)) {
        close(fd);
        return set_aside(path, aside, aside_len);
    }
    size_t size = (size_t)st.st_size;
    uint8_t *data = malloc(size);
    if (!data) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, data + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    uint32_t l32 = 0, crc = 0;
    for (int i = 0; i < 4; i++) {
        l32 |= (uint32_t)data[8 + i] << (8 * i);
        crc |= (uint32_t)data[12 + i] << (8 * i);
    }
    if (got != size || memcmp(data, state_magic, 8) != 0 || (size_t)l32 != size - STATE_HDR ||
        hkd_crc32(data + STATE_HDR, l32) != crc) {
        free(data);
        return set_aside(path, aside, aside_len);
    }
    /* Callers get the payload alone; the header has done its job. */
    memmove(data, data + STATE_HDR, l32);
    *buf = data;
    *len = l32;
    return 0;
}

int hkd_state_set_aside(const char *dir, char *aside, size_t aside_len)
{
    char path[HKD_PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, HKD_STATE_FILE) >= sizeof path)
        return -ENAMETOOLONG;
    return set_aside(path, aside, aside_len);
}
