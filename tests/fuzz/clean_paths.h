/* For the policy fuzzers: every module path a decoded policy holds is
 * clean (utf8.h: terminated, bounded, printable), or the harness aborts. */
#ifndef HKD_FUZZ_CLEAN_PATHS_H
#define HKD_FUZZ_CLEAN_PATHS_H

#include <stdlib.h>
#include <string.h>

#include "persist.h"
#include "utf8.h"

static inline void check_clean_paths(const hkd_policy *p)
{
    for (size_t i = 0; i < p->n_modules; i++) {
        const char *path = p->modules[i].path;
        char copy[HKD_MODULE_MAX];
        if (memchr(path, 0, HKD_MODULE_MAX) == NULL)
            abort();
        hk_text_clean(copy, sizeof copy, path, HKD_MODULE_MAX);
        if (strcmp(copy, path) != 0)
            abort();
    }
}

#endif
