/* Learned state <-> protobuf <-> state file.
 *
 * State file layout: "HKMSTATE" | u32 payload length (LE) | u32 CRC32 of the
 * payload (LE) | payload (a serialized hakmem.policy.Policy).  A protobuf
 * cut at a field boundary still parses, so only the header tells a
 * truncated file from a short one. */
#include "persist.h"

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
#include "policy.pb-c.h"
#include "utf8.h"

static const char state_magic[8] = { 'H', 'K', 'M', 'S', 'T', 'A', 'T', 'E' };
#define STATE_HDR 16u
#define STATE_MAX (256u << 20)

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

int hkd_policy_encode(const hkd_site_state *sites, size_t n, uint64_t generation,
                      uint8_t **out, size_t *len)
{
    return hkd_policy_encode_part(sites, n, 1, generation, out, len);
}

/* Fields at their defaults are not written (proto3): without the header
 * the bytes are the sites alone, which append to a policy as more sites. */
int hkd_policy_encode_part(const hkd_site_state *sites, size_t n, int with_header, uint64_t generation,
                           uint8_t **out, size_t *len)
{
    int rc = -ENOMEM;
    Hakmem__Policy__Policy pol = HAKMEM__POLICY__POLICY__INIT;
    Hakmem__Policy__SiteState *ss = calloc(n ? n : 1, sizeof *ss);
    Hakmem__Policy__SiteState **sp = calloc(n ? n : 1, sizeof *sp);
    Hakmem__Policy__ArmState *as = calloc((n ? n : 1) * HKD_N_ARMS, sizeof *as);
    Hakmem__Policy__ArmState **ap = calloc((n ? n : 1) * HKD_N_ARMS, sizeof *ap);
    char host[64] = "";
    if (!ss || !sp || !as || !ap)
        goto out;
    if (with_header) {
        gethostname(host, sizeof host - 1);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        pol.format = (char *)HKD_POLICY_FORMAT;
        pol.host = host;
        pol.saved_unix_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
        pol.generation = generation;
    }
    pol.n_sites = n;
    pol.sites = sp;
    for (size_t i = 0; i < n; i++) {
        const hkd_site_state *s = &sites[i];
        Hakmem__Policy__SiteState *o = &ss[i];
        hakmem__policy__site_state__init(o);
        o->module_hash = s->key.module_hash;
        o->offset = s->key.offset;
        o->module = (char *)s->module;
        o->current_arm = (char *)hkd_arms[s->learn.current].name;
        o->pinned_arm = s->learn.pinned >= 0 ? (char *)hkd_arms[s->learn.pinned].name : (char *)"";
        o->ref_cost_ns = s->learn.ref_cost;
        o->n_arms = HKD_N_ARMS;
        o->arms = &ap[i * HKD_N_ARMS];
        for (int a = 0; a < HKD_N_ARMS; a++) {
            Hakmem__Policy__ArmState *x = &as[i * HKD_N_ARMS + a];
            hakmem__policy__arm_state__init(x);
            x->name = (char *)hkd_arms[a].name;
            x->pulls = s->learn.pulls[a];
            x->reward_sum = hkd_learn_reward_sum(&s->learn, a);
            x->large_threshold = hkd_arms[a].large_threshold;
            x->bigcache_slots = hkd_arms[a].bigcache_slots;
            x->thp = hkd_arms[a].thp;
            ap[i * HKD_N_ARMS + a] = x;
        }
        sp[i] = o;
    }
    *len = hakmem__policy__policy__get_packed_size(&pol);
    *out = malloc(*len ? *len : 1);
    if (!*out)
        goto out;
    hakmem__policy__policy__pack(&pol, *out);
    rc = 0;
out:
    free(ss);
    free(sp);
    free(as);
    free(ap);
    return rc;
}

int hkd_policy_decode(const uint8_t *buf, size_t len, hkd_site_state **sites, size_t *n,
                      uint64_t *generation)
{
    *sites = NULL;
    *n = 0;
    Hakmem__Policy__Policy *pol = hakmem__policy__policy__unpack(NULL, len, buf);
    if (!pol)
        return -EBADMSG;
    int rc = -EBADMSG;
    if (!pol->format || strcmp(pol->format, HKD_POLICY_FORMAT) != 0)
        goto out;
    rc = -ENOMEM;
    hkd_site_state *out = calloc(pol->n_sites ? pol->n_sites : 1, sizeof *out);
    if (!out)
        goto out;
    for (size_t i = 0; i < pol->n_sites; i++) {
        const Hakmem__Policy__SiteState *s = pol->sites[i];
        hkd_site_state *d = &out[i];
        d->key.module_hash = s->module_hash;
        d->key.offset = s->offset;
        /* A path from another host or an edited file: bounded and
         * printable before anything here stores or shows it. */
        hk_text_clean(d->module, sizeof d->module, s->module, SIZE_MAX);
        hkd_learn_init(&d->learn);
        uint64_t pulls[HKD_N_ARMS] = { 0 };
        double rewards[HKD_N_ARMS] = { 0 };
        for (size_t a = 0; a < s->n_arms; a++) {
            const Hakmem__Policy__ArmState *x = s->arms[a];
            int idx = x->name ? hkd_arm_by_name(x->name) : -1;
            double mean = x->pulls ? x->reward_sum / (double)x->pulls : 0.0;
            /* Arms this build does not know are dropped; rewards outside
             * [0,1] mean a file that was not ours. */
            if (idx < 0 || !(mean >= 0.0 && mean <= 1.0))
                continue;
            pulls[idx] = x->pulls;
            rewards[idx] = x->reward_sum;
        }
        hkd_learn_set_counts(&d->learn, pulls, rewards);
        int cur = s->current_arm ? hkd_arm_by_name(s->current_arm) : -1;
        d->learn.current = cur >= 0 ? cur : HKD_DEFAULT_ARM;
        d->learn.pinned = s->pinned_arm && *s->pinned_arm ? hkd_arm_by_name(s->pinned_arm) : -1;
        d->learn.ref_cost = s->ref_cost_ns > 0.0 && s->ref_cost_ns < 1e12 ? s->ref_cost_ns : 0.0;
    }
    *sites = out;
    *n = pol->n_sites;
    if (generation)
        *generation = pol->generation;
    rc = 0;
out:
    hakmem__policy__policy__free_unpacked(pol, NULL);
    return rc;
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
