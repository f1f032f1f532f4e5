/* The core's per-binary learning: one hkd_binaries (binaries.h) fed by the
 * collectors' process reports, read by the publisher and the control
 * server.  The box locks itself, so its hooks are safe from either
 * collecting thread. */
#include "core_binaries.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "binaries.h"
#include "core_api.h"
#include "log.h"

static hkd_binaries *bins;
static double weight_ns;
static _Atomic int changed;          /* a binary's published arm moved this interval */

/* Whether the kernel gives huge pages to the memory a process asks for
 * them with madvise, and only to it: "[madvise]" in sysfs.  Under
 * "always" every segment gets them anyway, under "never" none does, and
 * the client's small-object THP knob then changes nothing. */
static int thp_on_request(void)
{
    char buf[128] = { 0 };
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, "[madvise]") != NULL;
}

int core_binaries_init(double memory_weight_ns, uint32_t arm_mask, uint32_t settled_report_every)
{
    hkd_binaries_cfg cfg = hkd_binaries_defaults();
    if (memory_weight_ns >= 0)
        cfg.learn.memory_weight_ns = memory_weight_ns;
    if (arm_mask)
        cfg.learn.arm_mask = arm_mask;
    if (settled_report_every)
        cfg.learn.settled_report_every = settled_report_every;
    if (!thp_on_request()) {
        cfg.learn.arm_mask = hkd_bin_arms_without_small_thp(cfg.learn.arm_mask);
        hkd_log(HKD_LOG_INFO, "transparent huge pages are not given on request here: "
                              "no binary explores the small-object huge-page arm");
    }
    weight_ns = cfg.learn.memory_weight_ns;
    bins = hkd_binaries_new(&cfg);
    return bins ? 0 : -ENOMEM;
}

void core_binaries_shutdown(void)
{
    hkd_binaries_free(bins);
    bins = NULL;
}

void core_binaries_proc(const hkd_proc_info *p)
{
    if (hkd_binaries_proc(bins, p->serial, p, p->registration, p->binary_arm, p->ended) == 1)
        atomic_store_explicit(&changed, 1, memory_order_relaxed);
}

int core_binaries_end_interval(void)
{
    hkd_binaries_end_interval(bins);
    return atomic_exchange_explicit(&changed, 0, memory_order_relaxed);
}

uint32_t core_binaries_fill(hkshm_binary_policy *out, uint32_t cap)
{
    return hkd_binaries_fill(bins, out, cap);
}

hkd_binary_state *core_binaries_snapshot(size_t *n)
{
    *n = 0;
    return bins ? hkd_binaries_snapshot(bins, n) : NULL;
}

int core_binaries_merge(const hkd_binary_state *in, size_t n, int restore)
{
    return bins ? hkd_binaries_merge(bins, in, n, restore) : 0;
}

/* ---- core_api.h ---- */

int hkd_for_each_binary(int (*fn)(const hkd_binary_info *, void *), void *arg)
{
    return bins ? hkd_binaries_for_each(bins, fn, arg) : 0;
}

int hkd_binary_pin(const hkd_binary_sel *sel, int arm)
{
    int moved = 0;
    int rc = bins ? hkd_binaries_pin(bins, sel, arm, &moved) : -ENOENT;
    if (moved)
        atomic_store_explicit(&changed, 1, memory_order_relaxed);
    return rc;
}

int hkd_binary_reset(const hkd_binary_sel *sel)
{
    int rc = bins ? hkd_binaries_reset(bins, sel) : -ENOENT;
    if (rc > 0)
        atomic_store_explicit(&changed, 1, memory_order_relaxed);
    return rc;
}

double hkd_memory_weight_ns(void)
{
    return weight_ns;
}
