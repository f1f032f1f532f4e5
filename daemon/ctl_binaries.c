/* The control server's answers about binaries: the per-binary learner's
 * view (hkd_for_each_binary), and pinning or resetting a binary.  A host
 * has at most HKD_BINARIES_MAX binaries, each a few hundred bytes here, so
 * the answer is one frame. */
#include "ctl_binaries.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "binaries.h"
#include "core_api.h"

typedef struct collected {
    hkd_binary_info *v;
    size_t n, cap;
} collected;

static int collect(const hkd_binary_info *b, void *arg)
{
    collected *c = arg;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        hkd_binary_info *v = realloc(c->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n++] = *b;
    return 0;
}

static double ratio(const hkd_binary_info *b, int arm, enum hkd_bin_measure measure)
{
    double r = hkd_bin_stats_ratio(b->arms, arm, measure);
    return isnan(r) ? 1.0 : r;
}

int hkc_answer_binaries(const hkc_out *o)
{
    collected c = { 0 };
    int r = hkd_for_each_binary(collect, &c);
    if (r < 0) {
        free(c.v);
        return hkc_send_core_error(o, "binaries", r);
    }
    size_t n = c.n;
    Hakmem__Ctl__Binary *bins = calloc(n ? n : 1, sizeof *bins);
    Hakmem__Ctl__Binary **bptr = calloc(n ? n : 1, sizeof *bptr);
    Hakmem__Ctl__BinaryArm *arms = calloc((n ? n : 1) * HKD_BIN_ARMS, sizeof *arms);
    Hakmem__Ctl__BinaryArm **aptr = calloc((n ? n : 1) * HKD_BIN_ARMS, sizeof *aptr);
    if (!bins || !bptr || !arms || !aptr) {
        r = hkc_send_core_error(o, "binaries", -ENOMEM);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const hkd_binary_info *b = &c.v[i];
        Hakmem__Ctl__Binary *m = &bins[i];
        hakmem__ctl__binary__init(m);
        m->domain = b->domain;
        m->binary_hash = b->binary_hash;
        m->exe = (char *)b->exe;
        m->command = (char *)b->command;
        m->command_hash = b->command_hash;
        m->live = b->live;
        m->processes = b->processes;
        m->observations = b->observations;
        m->ignored = b->ignored;
        m->current = b->current;
        m->choice = b->choice;
        m->pinned = b->pinned;
        m->settled = b->settled != 0;
        m->racing = (char *)(b->racing >= 0 && b->racing < HKD_BIN_ARMS ? hkd_bin_arms[b->racing].name : "");
        m->plane_share = b->plane_share;
        m->n_arms = HKD_BIN_ARMS;
        m->arms = &aptr[i * HKD_BIN_ARMS];
        for (int a = 0; a < HKD_BIN_ARMS; a++) {
            Hakmem__Ctl__BinaryArm *x = &arms[i * HKD_BIN_ARMS + a];
            hakmem__ctl__binary_arm__init(x);
            x->name = (char *)hkd_bin_arms[a].name;
            x->observations = b->arms[a].n;
            x->cost_ratio = ratio(b, a, HKD_BIN_COST);
            x->cpu_ratio = ratio(b, a, HKD_BIN_CPU);
            x->wall_ratio = ratio(b, a, HKD_BIN_WALL);
            x->memory_ratio = ratio(b, a, HKD_BIN_MEM);
            x->peak_ratio = ratio(b, a, HKD_BIN_PEAK);
            x->mean_log_cost = b->arms[a].mean[HKD_BIN_COST];
            aptr[i * HKD_BIN_ARMS + a] = x;
        }
        bptr[i] = m;
    }
    Hakmem__Ctl__Response resp = HAKMEM__CTL__RESPONSE__INIT;
    Hakmem__Ctl__Binaries msg = HAKMEM__CTL__BINARIES__INIT;
    msg.n_binaries = n;
    msg.binaries = bptr;
    msg.memory_weight_ns = hkd_memory_weight_ns();
    resp.result_case = HAKMEM__CTL__RESPONSE__RESULT_BINARIES;
    resp.binaries = &msg;
    r = hkc_send(o, &resp);
out:
    free(bins), free(bptr), free(arms), free(aptr), free(c.v);
    return r;
}
