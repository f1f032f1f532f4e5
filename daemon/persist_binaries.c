/* Per-binary state in a policy (see persist_binaries.h). */
#include "persist_binaries.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "utf8.h"

#define BINARIES_TAG 0xA2u           /* field 20, length-delimited: 0xA2 0x01 */

size_t hkd_put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    for (; v >= 0x80; v >>= 7)
        p[n++] = (uint8_t)(v | 0x80);
    p[n++] = (uint8_t)v;
    return n;
}

typedef struct binary_msg {
    Hakmem__Policy__BinaryState m;
    Hakmem__Policy__BinaryArmState arms[HKD_BIN_ARMS];
    Hakmem__Policy__BinaryArmState *ptrs[HKD_BIN_ARMS];
    char exe[HKD_EXE_MAX];
    char command[HKSHM_COMMAND_MAX + 1];
} binary_msg;

static void fill(binary_msg *b, const hkd_binary_state *s)
{
    hakmem__policy__binary_state__init(&b->m);
    b->m.domain = s->domain;
    b->m.binary_hash = s->binary_hash;
    memcpy(b->exe, s->exe, sizeof b->exe);
    b->exe[sizeof b->exe - 1] = 0;
    b->m.exe = b->exe;
    memcpy(b->command, s->command, HKSHM_COMMAND_MAX);
    b->command[HKSHM_COMMAND_MAX] = 0;
    b->m.command = b->command;
    b->m.observations = s->learn.observations;
    b->m.ignored = s->learn.ignored;
    b->m.pinned_arm = s->learn.pinned >= 0 && s->learn.pinned < HKD_BIN_ARMS ? (char *)hkd_bin_arms[s->learn.pinned].name
                                                                             : "";
    b->m.n_arms = HKD_BIN_ARMS;
    b->m.arms = b->ptrs;
    for (int a = 0; a < HKD_BIN_ARMS; a++) {
        Hakmem__Policy__BinaryArmState *x = &b->arms[a];
        hakmem__policy__binary_arm_state__init(x);
        x->name = (char *)hkd_bin_arms[a].name;
        x->observations = s->learn.arm[a].n;
        x->n_mean = x->n_m2 = HKD_BIN_MEASURES;
        x->mean = (double *)s->learn.arm[a].mean;
        x->m2 = (double *)s->learn.arm[a].m2;
        x->with_work = s->learn.arm[a].with_work;
        x->mean_work = s->learn.arm[a].mean_work;
        x->sxx = s->learn.arm[a].sxx;
        x->n_sxy = HKD_BIN_MEASURES;
        x->sxy = (double *)s->learn.arm[a].sxy;
        b->ptrs[a] = x;
    }
}

int hkd_binaries_encode(const hkd_binary_state *v, size_t n, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (n == 0)
        return 0;
    binary_msg *b = malloc(sizeof *b);
    if (!b)
        return -ENOMEM;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        fill(b, &v[i]);
        total += 2 + 10 + hakmem__policy__binary_state__get_packed_size(&b->m);
    }
    uint8_t *buf = malloc(total);
    if (!buf) {
        free(b);
        return -ENOMEM;
    }
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        fill(b, &v[i]);
        size_t k = hakmem__policy__binary_state__get_packed_size(&b->m);
        buf[at++] = BINARIES_TAG;
        buf[at++] = 0x01;
        at += hkd_put_varint(buf + at, k);
        at += hakmem__policy__binary_state__pack(&b->m, buf + at);
    }
    free(b);
    *out = buf;
    *len = at;
    return 0;
}

static int arm_named(const char *name)
{
    return name ? hkd_bin_arm_by_name(name) : -1;
}

int hkd_binary_state_of_msg(const Hakmem__Policy__BinaryState *m, hkd_binary_state *out)
{
    memset(out, 0, sizeof *out);
    if (!m->binary_hash)
        return -EBADMSG;
    out->domain = m->domain;
    out->binary_hash = m->binary_hash;
    if (m->exe)
        hk_text_clean(out->exe, sizeof out->exe, m->exe, strlen(m->exe));
    if (m->command && m->command[0]) {
        size_t n = hkshm_command_field(out->command, m->command);
        if (!n)
            return -EBADMSG;
        out->command_hash = hkshm_command_hash(out->command, n);
    }
    hkd_bin_init(&out->learn);
    out->learn.observations = m->observations;
    out->learn.ignored = m->ignored;
    int pinned = arm_named(m->pinned_arm);
    out->learn.pinned = pinned;
    for (size_t i = 0; i < m->n_arms; i++) {
        const Hakmem__Policy__BinaryArmState *x = m->arms[i];
        int a = arm_named(x->name);
        if (a < 0)
            continue;               /* an arm this daemon does not have */
        if (!(x->observations >= 0 && x->observations <= 1e9) || x->n_mean != HKD_BIN_MEASURES ||
            x->n_m2 != HKD_BIN_MEASURES)
            return -EBADMSG;
        for (int k = 0; k < HKD_BIN_MEASURES; k++)
            if (!isfinite(x->mean[k]) || !(x->m2[k] >= 0 && isfinite(x->m2[k])))
                return -EBADMSG;
        out->learn.arm[a].n = x->observations;
        memcpy(out->learn.arm[a].mean, x->mean, sizeof out->learn.arm[a].mean);
        memcpy(out->learn.arm[a].m2, x->m2, sizeof out->learn.arm[a].m2);
        if (x->n_sxy == 0)
            continue;               /* kept by a daemon without the covariate: compared unadjusted */
        if (x->n_sxy != HKD_BIN_MEASURES || !(x->with_work >= 0 && x->with_work <= x->observations) ||
            !isfinite(x->mean_work) || !(x->sxx >= 0 && isfinite(x->sxx)))
            return -EBADMSG;
        for (int k = 0; k < HKD_BIN_MEASURES; k++)
            if (!isfinite(x->sxy[k]))
                return -EBADMSG;
        out->learn.arm[a].with_work = x->with_work;
        out->learn.arm[a].mean_work = x->mean_work;
        out->learn.arm[a].sxx = x->sxx;
        memcpy(out->learn.arm[a].sxy, x->sxy, sizeof out->learn.arm[a].sxy);
    }
    return 0;
}
