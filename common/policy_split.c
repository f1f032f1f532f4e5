/* Policy splitting; see policy_split.h. */
#include "policy_split.h"
#include "policy.pb-c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The bytes of one top-level field, from its key to its end. */
typedef struct field {
    uint32_t number;
    size_t start, end;
} field;

static int read_varint(const uint8_t *buf, size_t len, size_t *pos, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*pos >= len)
            return -EBADMSG;
        uint8_t b = buf[(*pos)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 0;
    }
    return -EBADMSG;
}

/* The field at *pos; *pos moves past it. */
static int next_field(const uint8_t *buf, size_t len, size_t *pos, field *f)
{
    f->start = *pos;
    uint64_t key, n;
    /* Field 0 is not valid protobuf, but the decoder (protobuf-c) skips it
     * as an unknown field; so does this, keeping it with the header. */
    if (read_varint(buf, len, pos, &key) < 0 || key >> 3 > UINT32_MAX)
        return -EBADMSG;
    f->number = (uint32_t)(key >> 3);
    switch (key & 7) {
    case 0:
        if (read_varint(buf, len, pos, &n) < 0)
            return -EBADMSG;
        break;
    case 1:
    case 5:
        n = (key & 7) == 1 ? 8 : 4;
        if (len - *pos < n)
            return -EBADMSG;
        *pos += n;
        break;
    case 2:
        if (read_varint(buf, len, pos, &n) < 0 || n > len - *pos)
            return -EBADMSG;
        *pos += n;
        break;
    default:                     /* groups (3, 4) are not in our messages; 6, 7 do not exist */
        return -EBADMSG;
    }
    f->end = *pos;
    return 0;
}

static uint32_t sites_field(void)
{
    const ProtobufCFieldDescriptor *d =
        protobuf_c_message_descriptor_get_field_by_name(&hakmem__policy__policy__descriptor, "sites");
    return d ? d->id : 0;
}

int hkc_policy_split(const uint8_t *buf, size_t len, size_t max, hkc_policy_part_fn fn, void *arg)
{
    uint32_t sites = sites_field();
    field f;
    size_t pos = 0, header = 0;
    /* First the header: every field that is not a site, wherever it is. */
    while (pos < len) {
        if (next_field(buf, len, &pos, &f) < 0)
            return -EBADMSG;
        if (f.number != sites)
            header += f.end - f.start;
    }
    if (header > max)
        return -EMSGSIZE;
    uint8_t *part = malloc(max ? max : 1);
    if (!part)
        return -ENOMEM;
    size_t n = 0;
    for (pos = 0; pos < len;) {
        next_field(buf, len, &pos, &f);
        if (f.number != sites) {
            memcpy(part + n, buf + f.start, f.end - f.start);
            n += f.end - f.start;
        }
    }
    int r = 0;
    size_t used = n;
    for (pos = 0; pos < len && r == 0;) {
        next_field(buf, len, &pos, &f);
        if (f.number != sites)
            continue;
        size_t k = f.end - f.start;
        if (header + k > max) {
            r = -EMSGSIZE;
            break;
        }
        if (used + k > max) {
            r = fn(part, used, 0, arg);
            used = header;
        }
        if (r == 0) {
            memcpy(part + used, buf + f.start, k);
            used += k;
        }
    }
    if (r == 0)
        r = fn(part, used, 1, arg);
    free(part);
    return r;
}
