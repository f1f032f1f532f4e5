/* Fuzzes the import parser (persist.c hkd_policy_decode), which takes
 * whatever an admin's file holds: what it accepts must come out clean
 * (bounded, printable module paths), encode again, and decode again to
 * the same sites. */
#include "persist.h"
#include "utf8.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hkd_site_state *st;
    size_t n;
    uint64_t gen;
    if (hkd_policy_decode(data, size, &st, &n, &gen) != 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char copy[HKD_MODULE_MAX];
        if (memchr(st[i].module, 0, sizeof st[i].module) == NULL)
            abort();
        hk_text_clean(copy, sizeof copy, st[i].module, sizeof st[i].module);
        if (strcmp(copy, st[i].module) != 0)
            abort();
    }
    uint8_t *again;
    size_t len;
    if (hkd_policy_encode(st, n, gen, &again, &len) != 0)
        abort();
    hkd_site_state *st2;
    size_t n2;
    uint64_t gen2;
    if (hkd_policy_decode(again, len, &st2, &n2, &gen2) != 0 || n2 != n || gen2 != gen)
        abort();
    for (size_t i = 0; i < n; i++)
        if (memcmp(&st[i].key, &st2[i].key, sizeof st[i].key) != 0 || strcmp(st[i].module, st2[i].module) != 0 ||
            st[i].learn.pinned != st2[i].learn.pinned || st[i].learn.current != st2[i].learn.current)
            abort();
    free(st2);
    free(again);
    free(st);
    return 0;
}
