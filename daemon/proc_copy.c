/* Copying the process list; see proc_copy.h. */
#include "proc_copy.h"

#include <errno.h>
#include <stdlib.h>

typedef struct proc_list {
    hkd_proc_info *v;
    size_t n;
} proc_list;

static int collect(const hkd_proc_info *p, void *arg)
{
    proc_list *l = arg;
    if (l->n < HKD_PROCS_MAX) {
        l->v[l->n] = *p;
        l->v[l->n].exe[HKD_EXE_MAX - 1] = '\0';
        l->n++;
    }
    return 0;
}

int hkd_procs_copy(hkd_proc_info **out, size_t *n)
{
    proc_list l = { .v = malloc(HKD_PROCS_MAX * sizeof *l.v) };
    *out = NULL;
    *n = 0;
    if (!l.v)
        return -ENOMEM;
    int r = hkd_for_each_proc(collect, &l);
    if (r < 0) {
        free(l.v);
        return r;
    }
    *out = l.v;
    *n = l.n;
    return 0;
}
