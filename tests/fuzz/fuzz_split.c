/* Fuzzes hakmemctl's splitting of a policy file for import in parts
 * (common/policy_split.c), which reads any file an admin names.  Byte 0
 * sets the part size (64 bytes and up).  Every part fits it; when the
 * whole input is a policy, every part is one too and the parts hold its
 * sites exactly once. */
#include "policy.pb-c.h"
#include "policy_split.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct seen {
    size_t max, sites, parts;
    int whole_ok, last_seen;
} seen;

static int on_part(const uint8_t *part, size_t len, int last, void *arg)
{
    seen *s = arg;
    if (len > s->max || s->last_seen)
        abort();
    s->last_seen = last;
    s->parts++;
    Hakmem__Policy__Policy *pol = hakmem__policy__policy__unpack(NULL, len, part);
    if (s->whole_ok && !pol)
        abort();
    if (pol) {
        s->sites += pol->n_sites;
        hakmem__policy__policy__free_unpacked(pol, NULL);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    seen s = { .max = 64 + (size_t)data[0] * 16 };
    data++, size--;
    Hakmem__Policy__Policy *whole = hakmem__policy__policy__unpack(NULL, size, data);
    s.whole_ok = whole != NULL;
    int r = hkc_policy_split(data, size, s.max, on_part, &s);
    if (r == 0 && !s.last_seen)
        abort();
    if (whole) {
        /* A policy the daemon would take is never refused as malformed. */
        if (r == -EBADMSG || (r == 0 && s.sites != whole->n_sites))
            abort();
        hakmem__policy__policy__free_unpacked(whole, NULL);
    }
    return 0;
}
