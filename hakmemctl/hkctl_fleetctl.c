/* hakmemctl fleet pin / unpin / reset: the fleet's controls, written to
 * etcd with the operator's own etcd credentials (fleet_control.h has the
 * keys).  No daemon is asked: etcd alone decides who may write them, by
 * its users and roles, and every daemon of the fleet applies what is
 * there at its next sync. */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "etcd.h"
#include "etcd_password.h"
#include "fleet_control.h"
#include "hkctl.h"
#include "learner.h"

typedef struct fleet_opts {
    hkd_etcd_cfg etcd;
    const char *name, *password_file;
    uint32_t domain;
    int all;                           /* reset: every site */
    const char *site_text;
    hkd_site_key key;
    int arm;
} fleet_opts;

static int option_value(int argc, char **argv, int *i, const char **out)
{
    if (*i + 1 >= argc || !*argv[*i + 1])
        return usage_error("fleet: %s needs a value", argv[*i]);
    *out = argv[++*i];
    return 0;
}

/* The options, then the command's own arguments (KEY [ARM]) in args. */
static int parse_opts(const char *cmd, int argc, char **argv, fleet_opts *o, char **args, int *nargs)
{
    static const char *const names[] = { "--fleet-endpoints", "--fleet-name", "--fleet-cacert", "--fleet-cert",
                                         "--fleet-key", "--fleet-user", "--fleet-password-file", "--user" };
    const char *v[8] = { getenv("HAKMEM_FLEET_ENDPOINTS"), NULL };
    *nargs = 0;
    for (int i = 0; i < argc; i++) {
        size_t k = 0;
        while (k < 8 && strcmp(argv[i], names[k]))
            k++;
        if (k == 8 && argv[i][0] == '-' && argv[i][1])
            return usage_error("fleet %s: unknown option '%s'", cmd, argv[i]);
        if (k == 8) {
            if (*nargs == 2)
                return usage_error("fleet %s: unexpected argument '%s'", cmd, argv[i]);
            args[(*nargs)++] = argv[i];
            continue;
        }
        int r = option_value(argc, argv, &i, &v[k]);
        if (r)
            return r;
    }
    *o = (fleet_opts){ .etcd = { .endpoints = v[0], .cacert = v[2], .cert = v[3], .key = v[4], .user = v[5],
                                 .timeout_ms = (uint32_t)g_timeout_ms },
                       .name = v[1] ? v[1] : "default", .password_file = v[6], .arm = -1 };
    if (!o->etcd.endpoints)
        return usage_error("fleet %s needs --fleet-endpoints URL[,URL...] (or HAKMEM_FLEET_ENDPOINTS)", cmd);
    if (!hkd_fleet_valid_id(o->name))
        return usage_error("fleet %s: fleet name '%.80s' is not 1-64 of A-Z a-z 0-9 . _ -", cmd, o->name);
    if (o->password_file && !o->etcd.user)
        return usage_error("fleet %s: --fleet-password-file goes with --fleet-user", cmd);
    if (v[7] && parse_user(v[7], &o->domain) < 0)
        return usage_error("fleet %s: no user '%s'", cmd, v[7]);
    return 0;
}

/* Who wrote a control, for people reading it: the etcd user, else the
 * login name, as letters, digits and . _ @ - only. */
static void who_am_i(const fleet_opts *o, char *out, size_t cap)
{
    const struct passwd *pw = o->etcd.user ? NULL : getpwuid(getuid());
    const char *s = o->etcd.user ? o->etcd.user : pw ? pw->pw_name : "unknown";
    size_t n = 0;
    for (; *s && n + 1 < cap; s++)
        out[n++] = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                           strchr("._@-", *s)
                       ? *s
                       : '_';
    out[n] = 0;
}

static int connect_etcd(const char *cmd, const fleet_opts *o, hkd_etcd **e)
{
    char password[HKD_ETCD_PASSWORD_MAX + 2] = "", why[512];
    hkd_etcd_cfg cfg = o->etcd;
    if (cfg.user) {
        if (hkd_etcd_password(cfg.user, o->password_file, password, sizeof password, why, sizeof why) < 0)
            return usage_error("fleet %s: %s", cmd, why);
        cfg.password = password;
    }
    int r = hkd_etcd_new(&cfg, e, why, sizeof why);
    explicit_bzero(password, sizeof password);
    return r < 0 ? usage_error("fleet %s: %s", cmd, why) : 0;
}

static int etcd_failed(const char *cmd, int rc, hkd_etcd *e)
{
    char why[600];
    snprintf(why, sizeof why, "%s", hkd_etcd_error(e));
    hkd_etcd_free(e);
    if (rc == -EACCES)
        return fail(EXIT_ERR, "fleet %s: etcd refused it: %s", cmd, why);
    if (rc == -EHOSTUNREACH)
        return fail(EXIT_UNREACHABLE, "fleet %s: etcd unreachable: %s", cmd, why);
    return fail(EXIT_ERR, "fleet %s: etcd did not take it: %s", cmd, why);
}

int cmd_fleet_control(int argc, char **argv)
{
    const char *cmd = argv[0];
    int pin = !strcmp(cmd, "pin"), unpin = !strcmp(cmd, "unpin");
    char *args[2];
    int nargs;
    fleet_opts o;
    int r = parse_opts(cmd, argc - 1, argv + 1, &o, args, &nargs);
    if (r)
        return r;
    if (nargs != (pin ? 2 : 1))
        return usage_error(pin ? "fleet pin needs a site KEY and an ARM" : unpin ? "fleet unpin needs a site KEY"
                                                                               : "fleet reset needs a site KEY or all");
    o.site_text = args[0];
    o.all = !pin && !unpin && !strcmp(args[0], "all");
    if (!o.all && parse_site_key(args[0], &o.key.module_hash, &o.key.offset) < 0)
        return usage_error("fleet %s: '%s' is not a site key (MODULEHASH:OFFSET)", cmd, args[0]);
    o.key.domain = o.domain;
    if (pin) {
        uint64_t arm;
        if (parse_u64(args[1], &arm) < 0 || arm >= HKD_N_ARMS)
            return usage_error("fleet pin: arm '%s' is not 0-%d (the index in hakmemctl sites)", args[1],
                               HKD_N_ARMS - 1);
        o.arm = (int)arm;
    }
    char key[HKD_CONTROL_KEY_MAX], value[HKD_CONTROL_VALUE_MAX], who[65];
    int klen = hkd_control_key(o.name, pin || unpin ? HKD_CONTROL_PIN : HKD_CONTROL_RESET, o.all ? NULL : &o.key, key,
                               sizeof key);
    who_am_i(&o, who, sizeof who);
    int vlen = hkd_control_value(o.arm, who, (uint64_t)time(NULL), value, sizeof value);
    if (klen < 0 || vlen < 0)
        return fail(EXIT_ERR, "fleet %s: the key or value does not fit", cmd);
    hkd_etcd *e;
    if ((r = connect_etcd(cmd, &o, &e)))
        return r;
    int rc = unpin ? hkd_etcd_delete(e, key, (size_t)klen, NULL, 0)
                   : hkd_etcd_put(e, key, (size_t)klen, value, (size_t)vlen, 0);
    if (rc < 0)
        return etcd_failed(cmd, rc, e);
    hkd_etcd_free(e);
    char site[HKD_CONTROL_SITE_TEXT_MAX];
    hkd_control_site_text(&o.key, site, sizeof site);
    if (g_json) {
        /* The fleet name and the key are checked: letters, digits, . _ - : / only. */
        printf("{\"fleet\":\"%s\",\"key\":\"%s\",", o.name, key);
        if (pin)
            printf("\"pinned_arm\":%d}\n", o.arm);
        else
            printf("\"%s\":true}\n", unpin ? "unpinned" : "reset");
    } else if (pin)
        printf("fleet %s: site %s pinned to arm %d on every host (%s)\n", o.name, site, o.arm, key);
    else if (unpin)
        printf("fleet %s: site %s no longer pinned by the fleet; its hosts learn it again\n", o.name, site);
    else
        printf("fleet %s: %s%s reset on every host at its next sync (%s)\n", o.name, o.all ? "every site" : "site ",
               o.all ? "" : site, key);
    return 0;
}
