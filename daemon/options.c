/* hakmemd's options; see options.h. */
#include "options.h"
#include "binlearn.h"
#include "core.h"
#include "hakmem.h"
#include "persist.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: hakmemd [--foreground] [--shm NAME] [--socket PATH] [--state-dir DIR]\n"
            "               [--interval MS] [--metrics-file PATH] [--no-learn] [--no-socket] [--debug]\n"
            "               [--retention SECONDS] [--state-max-bytes N] [--max-sites-per-user N]\n"
            "               [--new-sites-per-interval N] [--memory-weight NS] [--arms NAME[,NAME...]]\n"
            "               [--settled-report-every N] [--list-arms] [--version]\n"
            "               [--fleet-endpoints URL[,URL...]] [--fleet-name NAME] [--host-id ID]\n"
            "               [--fleet-cacert FILE] [--fleet-cert FILE] [--fleet-key FILE]\n"
            "               [--fleet-user USER [--fleet-password-file FILE]]\n"
            "               [--fleet-sync MS] [--fleet-ttl SECONDS] [--help]\n"
            "  --shm NAME       shared-memory segment (default %s)\n"
            "  --socket PATH    control socket, where clients register (default %s)\n"
            "  --state-dir DIR  where learned state is kept (default /var/lib/hakmem)\n"
            "  --interval MS    collection interval (default 1000)\n"
            "  --no-learn       collect and report only; publish nothing\n"
            "  --no-socket      no control socket: clients cannot register, nothing is collected\n"
            "  --debug          log a summary of the merged view every interval\n"
            "  --metrics-file PATH  rewrite Prometheus metrics to PATH (atomically) every interval\n"
            "  --retention SECONDS  a site no process reports leaves memory after this long; what it\n"
            "                   learned is archived and comes back with it (default %u, a day)\n"
            "  --state-max-bytes N  the state file's cap (suffix K, M or G; default %uM, at most %uM):\n"
            "                   past it the least used sites are left out, users taking turns\n"
            "  --max-sites-per-user N  sites in memory of each user other than root and the\n"
            "                   daemon's (default %u; all such users together at most %u)\n"
            "  --new-sites-per-interval N  new sites each such user may add per interval (default %u)\n"
            "Policy is learned per user (the uid a process runs as).  At most %u sites are in\n"
            "memory in all; root's and the daemon's user's are never refused for another user's.\n"
            "  --memory-weight NS   what one MiB of RSS held for one second is worth, in ns of CPU,\n"
            "                   when a binary's arms are compared and what a site's BigCache holds\n"
            "                   idle is priced (default %.0f: cloud prices)\n"
            "  --arms NAME[,NAME...]  the per-binary arms the learner may run besides default\n"
            "                   (default: all but fast)\n"
            "  --settled-report-every N  once a binary and command's choice is settled, 1 in N of\n"
            "                   its processes registers young, the others from 1 s old (1..64; 1: all;\n"
            "                   default %u)\n"
            "  --list-arms      print each per-binary arm and the environment that sets it by hand\n"
            "  --fleet-endpoints URL[,URL...]  share what this host learns with a fleet of hosts\n"
            "                   through these etcd members (v3 API; https:// for TLS)\n"
            "  --fleet-name NAME    the fleet's keys in etcd: /hakmem/NAME/ (default \"default\")\n"
            "  --host-id ID     this host in the fleet (default the host name)\n"
            "  --fleet-cacert FILE  CA that signs etcd's certificates\n"
            "  --fleet-cert FILE, --fleet-key FILE  this host's client certificate and its key\n"
            "  --fleet-user USER    the etcd user this host is (etcd auth); its password is the\n"
            "                   first line of --fleet-password-file FILE, else $HAKMEM_FLEET_PASSWORD\n"
            "  --fleet-sync MS  between fleet syncs (default %u)\n"
            "  --fleet-ttl SECONDS  lease of this host's keys: after this long without the daemon\n"
            "                   its learning stops counting in the fleet (default %u)\n"
            "  --version        print the version and exit\n"
            "hakmemd always runs in the foreground; --foreground is accepted for clarity.\n",
            HKSHM_DEFAULT_NAME, HKSHM_DEFAULT_SOCKET, HKD_DEFAULT_RETENTION_S, HKD_DEFAULT_STATE_MAX >> 20,
            HKD_STATE_MAX_BYTES >> 20, HKD_DEFAULT_SITES_PER_USER, HKD_MAX_SITES / 2, HKD_DEFAULT_NEW_SITES,
            HKD_MAX_SITES, hkd_bin_default_cfg.memory_weight_ns, hkd_bin_default_cfg.settled_report_every, HKD_FLEET_DEFAULT_SYNC_MS, HKD_FLEET_DEFAULT_TTL_S);
}

/* One line per per-binary arm: its name, then what a person would set in
 * the environment to run a process on it without a daemon. */
static int list_arms(void)
{
    char env[512];
    for (int a = 0; a < HKD_BIN_ARMS; a++) {
        if (hkd_bin_arm_env(a, env, sizeof env) < 0) {
            fprintf(stderr, "hakmemd: arm %s does not fit in %zu bytes\n", hkd_bin_arms[a].name, sizeof env);
            return 1;
        }
        printf("%s%s%s\n", hkd_bin_arms[a].name, *env ? " " : "", env);
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

/* --arms: names from --list-arms, separated by commas; the default arm
 * always runs.  2 (reported) on a name no arm has. */
static int parse_arms(const char *arg, uint32_t *mask)
{
    uint32_t m = 1u << HKD_BIN_DEFAULT_ARM;
    const char *p = arg;
    for (;;) {
        size_t len = strcspn(p, ",");
        char name[32];
        int arm = -1;
        if (len > 0 && len < sizeof name) {
            memcpy(name, p, len);
            name[len] = 0;
            arm = hkd_bin_arm_by_name(name);
        }
        if (arm < 0) {
            fprintf(stderr, "hakmemd: --arms: no arm '%.*s' (hakmemd --list-arms names them)\n", (int)len, p);
            return 2;
        }
        m |= 1u << arm;
        if (p[len] == 0)
            break;
        p += len + 1;
    }
    *mask = m;
    return 0;
}

/* A whole number in [lo, hi], with an optional K, M or G suffix when
 * scaled; 0 when it is not. */
static int parse_count(const char *s, int scaled, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    if (!s || !*s || *s == '-')
        return 0;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return 0;
    unsigned shift = 0;
    if (scaled && *end) {
        const char *units = "KMG";
        const char *u = strchr(units, *end);
        if (!u || end[1])
            return 0;
        shift = 10u * (unsigned)(u - units + 1);
    } else if (*end) {
        return 0;
    }
    if (v > (hi >> shift) || (v << shift) < lo)
        return 0;
    *out = (uint64_t)v << shift;
    return 1;
}

/* Sets the option opt that takes a number from arg; 2 (reported) when arg
 * is not one in its range, else 0. */
static int set_number(int opt, const char *arg, hkd_options *o)
{
    switch (opt) {
    case 'i': {
        char *end;
        o->interval_ms = strtol(arg, &end, 10);
        if (*end || o->interval_ms < 10 || o->interval_ms > 3600000) {
            fprintf(stderr, "hakmemd: --interval must be 10..3600000 ms\n");
            return 2;
        }
        return 0;
    }
    case 'w': {
        char *end;
        errno = 0;
        o->memory_weight_ns = strtod(arg, &end);
        if (errno || *end || end == arg || !(o->memory_weight_ns >= 0 && o->memory_weight_ns <= 1e12)) {
            fprintf(stderr, "hakmemd: --memory-weight must be 0..1e12 ns per MiB-second\n");
            return 2;
        }
        return 0;
    }
    case 'e':
        if (!parse_count(arg, 0, 1, HKSHM_REPORT_EVERY_MAX, &o->settled_report_every)) {
            fprintf(stderr, "hakmemd: --settled-report-every must be 1..%u\n", HKSHM_REPORT_EVERY_MAX);
            return 2;
        }
        return 0;
    case 'R':
        if (!parse_count(arg, 0, 1, 10ull * 365 * 86400, &o->retention_s)) {
            fprintf(stderr, "hakmemd: --retention must be 1..315360000 seconds\n");
            return 2;
        }
        return 0;
    case 'B':
        if (!parse_count(arg, 1, HKD_STATE_MIN, HKD_STATE_MAX_BYTES, &o->state_max_bytes)) {
            fprintf(stderr, "hakmemd: --state-max-bytes must be %u..%u bytes (K, M, G allowed)\n",
                    HKD_STATE_MIN, HKD_STATE_MAX_BYTES);
            return 2;
        }
        return 0;
    case 'U':
        if (!parse_count(arg, 0, 1, HKD_MAX_SITES / 2, &o->max_sites_per_user)) {
            fprintf(stderr, "hakmemd: --max-sites-per-user must be 1..%u\n", HKD_MAX_SITES / 2);
            return 2;
        }
        return 0;
    case 'Y': {
        uint64_t v;
        if (!parse_count(arg, 0, 100, 3600000, &v)) {
            fprintf(stderr, "hakmemd: --fleet-sync must be 100..3600000 ms\n");
            return 2;
        }
        o->fleet.sync_ms = (uint32_t)v;
        return 0;
    }
    case 'T': {
        uint64_t v;
        if (!parse_count(arg, 0, 2, 3600, &v)) {
            fprintf(stderr, "hakmemd: --fleet-ttl must be 2..3600 seconds\n");
            return 2;
        }
        o->fleet.ttl_s = (uint32_t)v;
        return 0;
    }
    default: /* 'W' */
        if (!parse_count(arg, 0, 1, HKD_MAX_SITES, &o->new_sites_per_interval)) {
            fprintf(stderr, "hakmemd: --new-sites-per-interval must be 1..%u\n", HKD_MAX_SITES);
            return 2;
        }
        return 0;
    }
}

int hkd_options_parse(int argc, char **argv, hkd_options *out)
{
    *out = (hkd_options){
        .shm = HKSHM_DEFAULT_NAME,
        .socket = HKSHM_DEFAULT_SOCKET,
        .use_socket = 1,
        .state_dir = "/var/lib/hakmem",
        .interval_ms = 1000,
        .learning = 1,
        .memory_weight_ns = -1,
        .retention_s = HKD_DEFAULT_RETENTION_S,
        .state_max_bytes = HKD_DEFAULT_STATE_MAX,
        .max_sites_per_user = HKD_DEFAULT_SITES_PER_USER,
        .new_sites_per_interval = HKD_DEFAULT_NEW_SITES,
        .fleet = { .sync_ms = HKD_FLEET_DEFAULT_SYNC_MS, .ttl_s = HKD_FLEET_DEFAULT_TTL_S },
    };
    static const struct option opts[] = {
        { "foreground", no_argument, 0, 'f' },
        { "shm", required_argument, 0, 's' },
        { "socket", required_argument, 0, 'S' },
        { "state-dir", required_argument, 0, 'd' },
        { "interval", required_argument, 0, 'i' },
        { "no-learn", no_argument, 0, 'n' },
        { "no-socket", no_argument, 0, 'N' },
        { "debug", no_argument, 0, 'D' },
        { "metrics-file", required_argument, 0, 'M' },
        { "memory-weight", required_argument, 0, 'w' },
        { "settled-report-every", required_argument, 0, 'e' },
        { "retention", required_argument, 0, 'R' },
        { "state-max-bytes", required_argument, 0, 'B' },
        { "max-sites-per-user", required_argument, 0, 'U' },
        { "new-sites-per-interval", required_argument, 0, 'W' },
        { "help", no_argument, 0, 'h' },
        { "version", no_argument, 0, 'V' },
        { "list-arms", no_argument, 0, 'L' },
        { "arms", required_argument, 0, 'a' },
        { "fleet-endpoints", required_argument, 0, 'E' },
        { "fleet-name", required_argument, 0, 'F' },
        { "host-id", required_argument, 0, 'H' },
        { "fleet-cacert", required_argument, 0, 'A' },
        { "fleet-cert", required_argument, 0, 'C' },
        { "fleet-key", required_argument, 0, 'K' },
        { "fleet-sync", required_argument, 0, 'Y' },
        { "fleet-ttl", required_argument, 0, 'T' },
        { "fleet-user", required_argument, 0, 'u' },
        { "fleet-password-file", required_argument, 0, 'P' },
        { 0, 0, 0, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "fs:S:d:i:nNDh", opts, NULL)) != -1) {
        switch (c) {
        case 'f': break;
        case 's': out->shm = optarg; break;
        case 'S': out->socket = optarg; break;
        case 'd': out->state_dir = optarg; break;
        case 'n': out->learning = 0; break;
        case 'N': out->use_socket = 0; break;
        case 'D': out->debug = 1; break;
        case 'M': out->metrics_file = optarg; break;
        case 'E': out->fleet.endpoints = optarg; break;
        case 'F': out->fleet.name = optarg; break;
        case 'H': out->fleet.host_id = optarg; break;
        case 'A': out->fleet.cacert = optarg; break;
        case 'C': out->fleet.cert = optarg; break;
        case 'K': out->fleet.key = optarg; break;
        case 'u': out->fleet.user = optarg; break;
        case 'P': out->fleet.password_file = optarg; break;
        case 'i': case 'w': case 'e': case 'R': case 'B': case 'U': case 'W': case 'Y': case 'T':
            if (set_number(c, optarg, out))
                return 2;
            break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("hakmemd %s\n", HAKMEM_VERSION); return 0;
        case 'L': return list_arms();
        case 'a':
            if (parse_arms(optarg, &out->arm_mask))
                return 2;
            break;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    const hkd_fleet_cfg *f = &out->fleet;
    if (!f->endpoints && (f->name || f->host_id || f->cacert || f->cert || f->key || f->user || f->password_file)) {
        fprintf(stderr, "hakmemd: the --fleet-* and --host-id options need --fleet-endpoints\n");
        return 2;
    }
    if (f->password_file && !f->user) {
        fprintf(stderr, "hakmemd: --fleet-password-file goes with --fleet-user\n");
        return 2;
    }
    out->fleet.state_dir = out->state_dir;
    return HKD_OPTIONS_RUN;
}
