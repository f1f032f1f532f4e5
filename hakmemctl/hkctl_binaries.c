/* hakmemctl's binaries: what the per-binary learner knows of each
 * binary and command (binaries), and steering it (pin-binary,
 * unpin-binary, reset-binary, each for every command of a binary or,
 * with --command, one). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hkctl.h"

static const char *arm_name(const Hakmem__Ctl__Binary *b, int32_t arm)
{
    return arm >= 0 && (size_t)arm < b->n_arms && b->arms[arm]->name ? b->arms[arm]->name : "?";
}

static const char *base_name(const char *path)
{
    const char *s = path ? strrchr(path, '/') : NULL;
    return s && s[1] ? s + 1 : path ? path : "";
}

static void binary_json(jw *w, const Hakmem__Ctl__Binary *b)
{
    char user[64], hash[24];
    snprintf(hash, sizeof hash, "%016" PRIx64, b->binary_hash);
    jw_obj(w, NULL);
    jw_str(w, "binary", hash);
    jw_u64(w, "domain", b->domain);
    jw_str(w, "user", user_text(b->domain, user, sizeof user));
    jw_str(w, "exe", b->exe);
    jw_str(w, "command", b->command && b->command[0] ? b->command : NULL);
    jw_u64(w, "live", b->live);
    jw_u64(w, "processes", b->processes);
    jw_u64(w, "observations", b->observations);
    jw_u64(w, "ignored", b->ignored);
    jw_str(w, "arm", arm_name(b, b->current));
    jw_str(w, "choice", arm_name(b, b->choice));
    jw_str(w, "pinned", b->pinned >= 0 ? arm_name(b, b->pinned) : NULL);
    jw_bool(w, "settled", b->settled);
    jw_str(w, "racing", b->racing && b->racing[0] ? b->racing : NULL);
    jw_dbl(w, "plane_share", b->plane_share);
    jw_arr(w, "arms");
    for (size_t a = 0; a < b->n_arms; a++) {
        const Hakmem__Ctl__BinaryArm *x = b->arms[a];
        jw_obj(w, NULL);
        jw_u64(w, "index", a);
        jw_str(w, "name", x->name);
        jw_dbl(w, "observations", x->observations);
        jw_dbl(w, "cost_ratio", x->cost_ratio);
        jw_dbl(w, "cpu_ratio", x->cpu_ratio);
        jw_dbl(w, "wall_ratio", x->wall_ratio);
        jw_dbl(w, "memory_ratio", x->memory_ratio);
        jw_dbl(w, "peak_ratio", x->peak_ratio);
        jw_end_obj(w);
    }
    jw_end_arr(w);
    jw_end_obj(w);
}

static void binary_human(const Hakmem__Ctl__Binary *b)
{
    char user[64], exe[SAFE_MAX], command[SAFE_MAX], racing[SAFE_MAX];
    printf("%016" PRIx64 "  %-10s %-24s %-12s live %u  runs %" PRIu64 " (%" PRIu64 " not counted)  arm %s",
           b->binary_hash, user_text(b->domain, user, sizeof user), safe(base_name(b->exe), exe),
           b->command && b->command[0] ? safe(b->command, command) : "-", b->live, b->observations, b->ignored,
           arm_name(b, b->current));
    if (b->pinned >= 0)
        printf(" (pinned)\n");
    else if (!b->settled)
        printf(" (exploring)\n");
    else if (b->racing && b->racing[0])
        printf(" (settled on %s, racing %s)\n", arm_name(b, b->choice), safe(b->racing, racing));
    else
        printf(" (settled on %s)\n", arm_name(b, b->choice));
    printf("     taking part cost its runs %.3f%% of their time\n", 100.0 * b->plane_share);
    printf("     %-10s %6s  %6s %6s %6s %6s %6s   (against default; below 1 is better)\n", "ARM", "RUNS", "COST",
           "CPU", "WALL", "MEMORY", "PEAK");
    for (size_t a = 0; a < b->n_arms; a++) {
        const Hakmem__Ctl__BinaryArm *x = b->arms[a];
        char mark = (int32_t)a == b->current ? '*' : ' ';
        if (x->observations <= 0) {
            printf("   %c %-10s %6.1f  %6s %6s %6s %6s %6s\n", mark, x->name, 0.0, "-", "-", "-", "-", "-");
            continue;
        }
        printf("   %c %-10s %6.1f  %6.3f %6.3f %6.3f %6.3f %6.3f\n", mark, x->name, x->observations, x->cost_ratio,
               x->cpu_ratio, x->wall_ratio, x->memory_ratio, x->peak_ratio);
    }
}

/* The daemon's binaries answer (freed by the caller), or an exit code. */
static int fetch_binaries(Hakmem__Ctl__Response **resp)
{
    Hakmem__Ctl__Request rq = HAKMEM__CTL__REQUEST__INIT;
    Hakmem__Ctl__BinariesRequest br = HAKMEM__CTL__BINARIES_REQUEST__INIT;
    rq.command_case = HAKMEM__CTL__REQUEST__COMMAND_BINARIES;
    rq.binaries = &br;
    return call(&rq, HAKMEM__CTL__RESPONSE__RESULT_BINARIES, resp);
}

int cmd_binaries(int argc, char **argv)
{
    const char *exe = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--exe") && i + 1 < argc && argv[i + 1][0])
            exe = argv[++i];
        else
            return usage_error("binaries: unexpected argument '%s'", argv[i]);
    }
    Hakmem__Ctl__Response *resp;
    int r = fetch_binaries(&resp);
    if (r)
        return r;
    const Hakmem__Ctl__Binaries *bs = resp->binaries;
    jw w;
    if (g_json) {
        jw_init(&w, stdout);
        jw_obj(&w, NULL);
        jw_dbl(&w, "memory_weight_ns", bs->memory_weight_ns);
        jw_arr(&w, "binaries");
    }
    size_t shown = 0;
    for (size_t i = 0; i < bs->n_binaries; i++) {
        const Hakmem__Ctl__Binary *b = bs->binaries[i];
        if (exe && strcmp(base_name(b->exe), base_name(exe)) != 0)
            continue;
        shown++;
        if (g_json)
            binary_json(&w, b);
        else
            binary_human(b);
    }
    if (g_json) {
        jw_end_arr(&w);
        jw_end_obj(&w);
        jw_done(&w);
    } else {
        printf("(%zu of %zu binaries and commands; cost = CPU + %.0f ns per MiB-second of RSS, per MiB allocated)\n", shown,
               bs->n_binaries, bs->memory_weight_ns);
    }
    hakmem__ctl__response__free_unpacked(resp, NULL);
    return 0;
}

/* HASH [--user USER] [--command WORD] and, for pin, an ARM (index or name). */
typedef struct binary_args {
    uint64_t hash;
    uint32_t domain;
    const char *arm;
    int by_command;
    const char *command;            /* by_command: "" is the runs that name none */
} binary_args;

static int parse_binary_args(const char *cmd, int argc, char **argv, int want_hash, int want_arm, binary_args *out)
{
    int positional = 0;
    out->domain = 0;
    out->hash = 0;
    out->arm = NULL;
    out->by_command = 0;
    out->command = "";
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--command")) {
            if (i + 1 >= argc)
                return usage_error("%s --command needs a command as 'binaries' prints it ('' for none)", cmd);
            out->by_command = 1;
            out->command = argv[++i];
        } else if (!strcmp(argv[i], "--user")) {
            if (i + 1 >= argc || parse_user(argv[i + 1], &out->domain) < 0)
                return usage_error("%s --user needs a user name or uid", cmd);
            i++;
        } else if (positional == 0 && want_hash) {
            char *end;
            errno = 0;
            out->hash = strtoull(argv[i], &end, 16);
            if (errno || *end || !*argv[i] || out->hash == 0)
                return usage_error("%s: '%s' is not a binary (its hash, as 'binaries' prints it)", cmd, argv[i]);
            positional++;
        } else if (positional == 1 && want_arm) {
            out->arm = argv[i];
            positional++;
        } else {
            return usage_error("%s: unexpected argument '%s'", cmd, argv[i]);
        }
    }
    if (want_hash == 1 && positional < 1)
        return usage_error("%s needs a binary (its hash, as 'binaries' prints it)", cmd);
    if (want_arm && positional < 2)
        return usage_error("%s needs a binary and an arm", cmd);
    if (out->by_command && !out->hash)
        return usage_error("%s --command needs a binary", cmd);
    return 0;
}

/* An arm by index, or by name as the daemon lists them for the binary. */
static int binary_arm(const binary_args *a, int32_t *out)
{
    uint64_t v;
    if (parse_u64(a->arm, &v) == 0) {
        *out = v > INT32_MAX ? INT32_MAX : (int32_t)v;
        return 0;
    }
    Hakmem__Ctl__Response *resp;
    int r = fetch_binaries(&resp);
    if (r)
        return r;
    int found = -1;
    for (size_t i = 0; i < resp->binaries->n_binaries && found < 0; i++) {
        const Hakmem__Ctl__Binary *b = resp->binaries->binaries[i];
        if (b->binary_hash != a->hash || b->domain != a->domain ||
            (a->by_command && strcmp(b->command ? b->command : "", a->command) != 0))
            continue;
        for (size_t k = 0; k < b->n_arms; k++)
            if (b->arms[k]->name && !strcmp(b->arms[k]->name, a->arm))
                found = (int)k;
    }
    hakmem__ctl__response__free_unpacked(resp, NULL);
    if (found < 0)
        return fail(EXIT_ERR, "not found: no arm named '%s' for that binary", a->arm);
    *out = found;
    return 0;
}

int cmd_pin_binary(int argc, char **argv, int unpin)
{
    const char *cmd = unpin ? "unpin-binary" : "pin-binary";
    binary_args a;
    int r = parse_binary_args(cmd, argc, argv, 1, !unpin, &a);
    if (r)
        return r;
    Hakmem__Ctl__BinaryPinRequest pr = HAKMEM__CTL__BINARY_PIN_REQUEST__INIT;
    pr.domain = a.domain;
    pr.binary_hash = a.hash;
    pr.arm = -1;
    pr.by_command = a.by_command;
    pr.command = (char *)a.command;
    if (!unpin && (r = binary_arm(&a, &pr.arm)))
        return r;
    Hakmem__Ctl__Request rq = HAKMEM__CTL__REQUEST__INIT;
    rq.command_case = HAKMEM__CTL__REQUEST__COMMAND_BINARY_PIN;
    rq.binary_pin = &pr;
    Hakmem__Ctl__Response *resp;
    if ((r = call(&rq, HAKMEM__CTL__RESPONSE__RESULT_DONE, &resp)))
        return r;
    int n = resp->done ? resp->done->count : 0;
    hakmem__ctl__response__free_unpacked(resp, NULL);
    char which[SAFE_MAX + 16], safe_cmd[SAFE_MAX];
    if (a.by_command && a.command[0])
        snprintf(which, sizeof which, " (command %s)", safe(a.command, safe_cmd));
    else if (a.by_command)
        snprintf(which, sizeof which, " (no command)");
    else if (n != 1)
        snprintf(which, sizeof which, " (%d commands)", n);
    else
        which[0] = 0;
    if (g_json)
        printf("{\"binary\":\"%016" PRIx64 "\",\"domain\":%" PRIu32 ",\"pinned_arm\":%d,\"keys\":%d}\n", a.hash,
               a.domain, pr.arm, n);
    else if (unpin)
        printf("binary %016" PRIx64 "%s unpinned: the learner chooses again\n", a.hash, which);
    else
        printf("binary %016" PRIx64 "%s pinned to arm %d\n", a.hash, which, pr.arm);
    return 0;
}

int cmd_reset_binary(int argc, char **argv)
{
    binary_args a;
    int r = parse_binary_args("reset-binary", argc, argv, 2, 0, &a);
    if (r)
        return r;
    Hakmem__Ctl__BinaryResetRequest br = HAKMEM__CTL__BINARY_RESET_REQUEST__INIT;
    br.domain = a.domain;
    br.binary_hash = a.hash;
    br.by_command = a.by_command;
    br.command = (char *)a.command;
    Hakmem__Ctl__Request rq = HAKMEM__CTL__REQUEST__INIT;
    rq.command_case = HAKMEM__CTL__REQUEST__COMMAND_BINARY_RESET;
    rq.binary_reset = &br;
    Hakmem__Ctl__Response *resp;
    if ((r = call(&rq, HAKMEM__CTL__RESPONSE__RESULT_DONE, &resp)))
        return r;
    int n = resp->done ? resp->done->count : 0;
    hakmem__ctl__response__free_unpacked(resp, NULL);
    if (g_json)
        printf("{\"reset_binaries\":%d}\n", n);
    else
        printf("reset the learning of %d binar%s\n", n, n == 1 ? "y" : "ies");
    return 0;
}
