/* hakmemctl export and import: the learned policy to a file and back.  An
 * export is written as its parts arrive and committed whole (or not at
 * all); an import is read whole, checked, and sent in parts on one
 * connection. */
#include "atomic_file.h"
#include "hkctl.h"
#include "policy.pb-c.h"
#include "policy_split.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* An import goes in parts of at most this many bytes (each a policy). */
#define IMPORT_PART_MAX (1u << 20)
/* Larger than any policy hakmemd can hold (a million sites). */
#define IMPORT_FILE_MAX (1ull << 30)

static int read_file(const char *path, uint8_t **out, size_t *len, size_t max)
{
    int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC) : STDIN_FILENO;
    if (fd < 0)
        return -errno;
    /* Opened without waiting (a FIFO named by mistake); read as usual. */
    if (fd != STDIN_FILENO)
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    size_t cap = 65536, n = 0;
    uint8_t *buf = malloc(cap);
    int r = buf ? 0 : -ENOMEM;
    while (r == 0) {
        if (n == cap) {
            if (cap > max) {
                r = -EFBIG;
                break;
            }
            uint8_t *p = realloc(buf, cap * 2);
            if (!p) {
                r = -ENOMEM;
                break;
            }
            buf = p, cap *= 2;
        }
        ssize_t k = read(fd, buf + n, cap - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            r = -errno;
        else if (k == 0)
            break;
        else
            n += (size_t)k;
    }
    if (fd != STDIN_FILENO)
        close(fd);
    if (r == 0 && n > max)
        r = -EFBIG;
    if (r < 0) {
        free(buf);
        return r;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* Export: the policy's pieces go to the file (or stdout) as they arrive. */
typedef struct export_out {
    hkd_atomic_file f;
    int to_stdout;
    size_t bytes;
    int err;
} export_out;

static int export_part(const Hakmem__Ctl__Response *resp, int last, void *arg)
{
    (void)last;
    export_out *e = arg;
    const ProtobufCBinaryData *d = &resp->policy->policy;
    if (e->to_stdout)
        e->err = fwrite(d->data, 1, d->len, stdout) == d->len ? 0 : -EIO;
    else
        e->err = hkd_atomic_write(&e->f, d->data, d->len);
    e->bytes += d->len;
    return e->err ? EXIT_ERR : 0;
}

int cmd_export(int argc, char **argv)
{
    if (argc != 1)
        return usage_error("export needs exactly one FILE (- for stdout)");
    export_out e = { .to_stdout = !strcmp(argv[0], "-") };
    if (!e.to_stdout && (e.err = hkd_atomic_open(&e.f, argv[0], 0644)) < 0)
        return fail(EXIT_ERR, "cannot write %s: %s", argv[0], strerror(-e.err));
    Hakmem__Ctl__Request rq = HAKMEM__CTL__REQUEST__INIT;
    Hakmem__Ctl__ExportRequest er = HAKMEM__CTL__EXPORT_REQUEST__INIT;
    rq.command_case = HAKMEM__CTL__REQUEST__COMMAND_EXPORT_POLICY;
    rq.export_policy = &er;
    int r = call_parts(&rq, HAKMEM__CTL__RESPONSE__RESULT_POLICY, export_part, &e);
    if (r == 0 && !e.to_stdout)
        e.err = hkd_atomic_commit(&e.f);
    else if (!e.to_stdout)
        hkd_atomic_abort(&e.f);
    else if (r == 0 && fflush(stdout) != 0)
        e.err = -EIO;
    if (e.err)
        return fail(EXIT_ERR, "cannot write %s: %s", argv[0], strerror(-e.err));
    if (r)
        return r;
    if (!e.to_stdout) {
        if (g_json) {
            jw w;
            jw_init(&w, stdout);
            jw_obj(&w, NULL);
            jw_str(&w, "file", argv[0]);
            jw_u64(&w, "bytes", e.bytes);
            jw_end_obj(&w);
            jw_done(&w);
        } else {
            printf("exported the learned policy (%zu bytes) to %s\n", e.bytes, argv[0]);
        }
    }
    return 0;
}

/* Import: a small file goes whole (the daemon judges what it is); a larger
 * one as parts that are each a policy, on one connection, after every part
 * was checked to parse, so a bad file merges nothing. */
typedef struct import_in {
    int fd;                            /* -1: only checking the parts */
    size_t parts, sent;
    uint64_t sites;
    int code;                          /* the exit code of a failed part, why in msg */
    char msg[SAFE_MAX + 128];
} import_in;

static int import_part(const uint8_t *part, size_t len, int last, void *arg)
{
    import_in *in = arg;
    if (in->fd < 0) {
        Hakmem__Policy__Policy *pol = hakmem__policy__policy__unpack(NULL, len, part);
        if (!pol)
            return -EBADMSG;
        hakmem__policy__policy__free_unpacked(pol, NULL);
        in->parts++;
        return 0;
    }
    Hakmem__Ctl__Request rq = HAKMEM__CTL__REQUEST__INIT;
    Hakmem__Ctl__ImportRequest ir = HAKMEM__CTL__IMPORT_REQUEST__INIT;
    ir.policy.data = (uint8_t *)part;
    ir.policy.len = len;
    ir.more = !last;
    rq.command_case = HAKMEM__CTL__REQUEST__COMMAND_IMPORT_POLICY;
    rq.import_policy = &ir;
    Hakmem__Ctl__Response *resp;
    in->code = exchange(in->fd, &rq, HAKMEM__CTL__RESPONSE__RESULT_DONE, &resp, in->msg, sizeof in->msg);
    if (in->code)
        return in->code;
    in->sent++;
    in->sites += resp->done->count > 0 ? (uint64_t)resp->done->count : 0;
    hakmem__ctl__response__free_unpacked(resp, NULL);
    return 0;
}

int cmd_import(int argc, char **argv)
{
    if (argc != 1)
        return usage_error("import needs exactly one FILE (- for stdin)");
    uint8_t *data = NULL;
    size_t len = 0;
    int r = read_file(argv[0], &data, &len, IMPORT_FILE_MAX);
    if (r == -EFBIG)
        return fail(EXIT_ERR, "%s is larger than any policy (%llu bytes)", argv[0], IMPORT_FILE_MAX);
    if (r < 0)
        return fail(EXIT_ERR, "cannot read %s: %s", argv[0], strerror(-r));
    import_in in = { .fd = -1 };
    if (len > IMPORT_PART_MAX) {
        r = hkc_policy_split(data, len, IMPORT_PART_MAX, import_part, &in);
        if (r < 0) {
            free(data);
            return fail(EXIT_ERR, "%s is not a hakmem policy: %s", argv[0],
                        r == -EMSGSIZE ? "one site is larger than a part" : "it does not parse");
        }
    }
    in.fd = connect_daemon();
    if (in.fd < 0) {
        free(data);
        return -in.fd;
    }
    if (len > IMPORT_PART_MAX)
        r = hkc_policy_split(data, len, IMPORT_PART_MAX, import_part, &in);
    else
        r = import_part(data, len, 1, &in);
    close(in.fd);
    free(data);
    if (r && in.code && in.sent)
        return fail(in.code, "%s (import stopped at part %zu of %zu; the %" PRIu64 " sites of the parts before "
                    "it were merged)", in.msg, in.sent + 1, in.parts, in.sites);
    if (r && in.code)
        return fail(in.code, "%s", in.msg);
    if (r)
        return fail(EXIT_ERR, "import failed: %s", strerror(r < 0 ? -r : EIO));
    if (g_json)
        printf("{\"imported_sites\":%" PRIu64 "}\n", in.sites);
    else
        printf("imported the policy of %" PRIu64 " sites\n", in.sites);
    return 0;
}
