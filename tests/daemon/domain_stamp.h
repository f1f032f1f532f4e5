/* For tests and benches: which user a simulated process runs as, said by
 * its module path ("/u<uid>/..." is uid's, anything else root's), through
 * a wrapper around the real collector (this ABI's collector says 0 for
 * everyone; a later one takes the uid from the process). */
#ifndef HKD_TEST_DOMAIN_STAMP_H
#define HKD_TEST_DOMAIN_STAMP_H

#include <ctype.h>

#include "collector.h"

static inline uint32_t stamp_uid_of_path(const char *path)
{
    uint32_t uid = 0;
    if (path && path[0] == '/' && path[1] == 'u')
        for (const char *c = path + 2; isdigit((unsigned char)*c); c++)
            uid = uid * 10 + (uint32_t)(*c - '0');
    return uid;
}

typedef struct stamp_fwd {
    const hkd_collect_ops *ops;
    void *arg;
} stamp_fwd;

/* The delta is the collector's own (non-const) local: set in place, as
 * the collector of a later ABI does, rather than copied per site. */
static inline void stamp_site(const hkd_site_delta *d, void **cookie, void *arg)
{
    const stamp_fwd *f = arg;
    ((hkd_site_delta *)d)->domain = stamp_uid_of_path(d->module);
    f->ops->site(d, cookie, f->arg);
}

static inline void stamp_proc(const hkd_proc_info *p, void *arg)
{
    const stamp_fwd *f = arg;
    if (f->ops->proc)
        f->ops->proc(p, f->arg);
}

/* An hkd_collect_fn for hkd_core_cfg.collect. */
static inline int stamped_collect(hkd_collector *c, hkshm_header *h, const hkd_collect_ops *ops, void *arg,
                                  hkd_collect_stats *st)
{
    stamp_fwd f = { ops, arg };
    hkd_collect_ops mine = { .site = stamp_site, .proc = stamp_proc };
    return hkd_collect(c, h, &mine, &f, st);
}

#endif
