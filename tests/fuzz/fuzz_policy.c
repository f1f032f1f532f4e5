/* Fuzzes the import parser (persist.c hkd_policy_decode), which takes
 * whatever an admin's file holds: what it accepts must come out clean
 * (bounded, printable module paths), encode again, and decode again to
 * the same sites. */
#include "clean_paths.h"
#include "persist.h"
#include "site_key.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hkd_policy a;
    if (hkd_policy_decode(data, size, 0, &a) != 0)
        return 0;
    check_clean_paths(&a);
    uint8_t *again;
    size_t len;
    if (hkd_policy_encode(a.sites, a.n, a.modules, a.n_modules, a.generation, 0, &again, &len, NULL) != 0)
        abort();
    hkd_policy b;
    if (hkd_policy_decode(again, len, 0, &b) != 0 || b.n != a.n || b.generation != a.generation)
        abort();
    for (size_t i = 0; i < a.n; i++) {
        const hkd_site_state *x = &a.sites[i], *y = &b.sites[i];
        if (!hkd_site_key_eq(&x->key, &y->key) || x->pinned != y->pinned || x->current != y->current ||
            strcmp(hkd_module_path(a.modules, a.n_modules, x->key.module_hash),
                   hkd_module_path(b.modules, b.n_modules, y->key.module_hash)) != 0)
            abort();
    }
    hkd_policy_free(&b);
    free(again);
    hkd_policy_free(&a);
    return 0;
}
