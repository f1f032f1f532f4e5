/* hakmemd: collects allocation statistics from every hakmem process on the
 * host, learns per-site policy, publishes it back.  The loop: wait for the
 * next interval (or a signal), run one core interval, tell systemd. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"
#include "binlearn.h"
#include "hakmem.h"
#include "core_api.h"
#include "ctl_server.h"
#include "fleet.h"
#include "log.h"
#include "metrics_file.h"
#include "persist.h"
#include "registry.h"
#include "sdnotify.h"
#include "segment.h"

#define SAVE_EVERY 10               /* intervals between state saves */

/* Each registration holds two descriptors (its connection and a pidfd):
 * the usual soft limit of 1,024 would refuse clients long before the cap. */
static void raise_fd_limit(void)
{
    const rlim_t want = 2 * (rlim_t)HKD_REG_MAX + 256;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < want)
        hkd_log(HKD_LOG_NOTICE, "descriptor limit %llu: about %llu clients can register (the cap is %u)",
                (unsigned long long)rl.rlim_cur, (unsigned long long)(rl.rlim_cur > 256 ? (rl.rlim_cur - 256) / 2 : 0),
                HKD_REG_MAX);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: hakmemd [--foreground] [--shm NAME] [--socket PATH] [--state-dir DIR]\n"
            "               [--interval MS] [--metrics-file PATH] [--no-learn] [--no-socket] [--debug]\n"
            "               [--retention SECONDS] [--state-max-bytes N] [--max-sites-per-user N]\n"
            "               [--new-sites-per-interval N] [--memory-weight NS] [--list-arms] [--version]\n"
            "               [--fleet-endpoints URL[,URL...]] [--fleet-name NAME] [--host-id ID]\n"
            "               [--fleet-cacert FILE] [--fleet-cert FILE] [--fleet-key FILE]\n"
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
            "                   when a binary's arms are compared (default %.0f: cloud prices)\n"
            "  --list-arms      print each per-binary arm and the environment that sets it by hand\n"
            "  --fleet-endpoints URL[,URL...]  share what this host learns with a fleet of hosts\n"
            "                   through these etcd members (v3 API; https:// for TLS)\n"
            "  --fleet-name NAME    the fleet's keys in etcd: /hakmem/NAME/ (default \"default\")\n"
            "  --host-id ID     this host in the fleet (default the host name)\n"
            "  --fleet-cacert FILE  CA that signs etcd's certificates\n"
            "  --fleet-cert FILE, --fleet-key FILE  this host's client certificate and its key\n"
            "  --fleet-sync MS  between fleet syncs (default %u)\n"
            "  --fleet-ttl SECONDS  lease of this host's keys: after this long without the daemon\n"
            "                   its learning stops counting in the fleet (default %u)\n"
            "  --version        print the version and exit\n"
            "hakmemd always runs in the foreground; --foreground is accepted for clarity.\n",
            HKSHM_DEFAULT_NAME, HKSHM_DEFAULT_SOCKET, HKD_DEFAULT_RETENTION_S, HKD_DEFAULT_STATE_MAX >> 20,
            HKD_STATE_MAX_BYTES >> 20, HKD_DEFAULT_SITES_PER_USER, HKD_MAX_SITES / 2, HKD_DEFAULT_NEW_SITES,
            HKD_MAX_SITES, hkd_bin_default_cfg.memory_weight_ns, HKD_FLEET_DEFAULT_SYNC_MS, HKD_FLEET_DEFAULT_TTL_S);
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

int main(int argc, char **argv)
{
    const char *shm = HKSHM_DEFAULT_NAME, *sock = HKSHM_DEFAULT_SOCKET, *state = "/var/lib/hakmem";
    long interval = 1000;
    int learning = 1, debug = 0, use_socket = 1;
    const char *metrics_file = NULL;
    double memory_weight = -1;          /* unset: the learner's default */
    uint64_t retention = HKD_DEFAULT_RETENTION_S, state_max = HKD_DEFAULT_STATE_MAX;
    uint64_t per_user = HKD_DEFAULT_SITES_PER_USER, new_sites = HKD_DEFAULT_NEW_SITES;
    hkd_fleet_cfg fleet = { 0 };
    uint64_t fleet_sync = HKD_FLEET_DEFAULT_SYNC_MS, fleet_ttl = HKD_FLEET_DEFAULT_TTL_S;
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
        { "retention", required_argument, 0, 'R' },
        { "state-max-bytes", required_argument, 0, 'B' },
        { "max-sites-per-user", required_argument, 0, 'U' },
        { "new-sites-per-interval", required_argument, 0, 'W' },
        { "help", no_argument, 0, 'h' },
        { "version", no_argument, 0, 'V' },
        { "list-arms", no_argument, 0, 'L' },
        { "fleet-endpoints", required_argument, 0, 'E' },
        { "fleet-name", required_argument, 0, 'F' },
        { "host-id", required_argument, 0, 'H' },
        { "fleet-cacert", required_argument, 0, 'A' },
        { "fleet-cert", required_argument, 0, 'C' },
        { "fleet-key", required_argument, 0, 'K' },
        { "fleet-sync", required_argument, 0, 'Y' },
        { "fleet-ttl", required_argument, 0, 'T' },
        { 0, 0, 0, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "fs:S:d:i:nNDh", opts, NULL)) != -1) {
        switch (c) {
        case 'f': break;
        case 's': shm = optarg; break;
        case 'S': sock = optarg; break;
        case 'd': state = optarg; break;
        case 'i': {
            char *end;
            interval = strtol(optarg, &end, 10);
            if (*end || interval < 10 || interval > 3600000) {
                fprintf(stderr, "hakmemd: --interval must be 10..3600000 ms\n");
                return 2;
            }
            break;
        }
        case 'n': learning = 0; break;
        case 'N': use_socket = 0; break;
        case 'D': debug = 1; break;
        case 'M': metrics_file = optarg; break;
        case 'w': {
            char *end;
            errno = 0;
            memory_weight = strtod(optarg, &end);
            if (errno || *end || end == optarg || !(memory_weight >= 0 && memory_weight <= 1e12)) {
                fprintf(stderr, "hakmemd: --memory-weight must be 0..1e12 ns per MiB-second\n");
                return 2;
            }
            break;
        }
        case 'R':
            if (!parse_count(optarg, 0, 1, 10ull * 365 * 86400, &retention)) {
                fprintf(stderr, "hakmemd: --retention must be 1..315360000 seconds\n");
                return 2;
            }
            break;
        case 'B':
            if (!parse_count(optarg, 1, HKD_STATE_MIN, HKD_STATE_MAX_BYTES, &state_max)) {
                fprintf(stderr, "hakmemd: --state-max-bytes must be %u..%u bytes (K, M, G allowed)\n",
                        HKD_STATE_MIN, HKD_STATE_MAX_BYTES);
                return 2;
            }
            break;
        case 'U':
            if (!parse_count(optarg, 0, 1, HKD_MAX_SITES / 2, &per_user)) {
                fprintf(stderr, "hakmemd: --max-sites-per-user must be 1..%u\n", HKD_MAX_SITES / 2);
                return 2;
            }
            break;
        case 'W':
            if (!parse_count(optarg, 0, 1, HKD_MAX_SITES, &new_sites)) {
                fprintf(stderr, "hakmemd: --new-sites-per-interval must be 1..%u\n", HKD_MAX_SITES);
                return 2;
            }
            break;
        case 'E': fleet.endpoints = optarg; break;
        case 'F': fleet.name = optarg; break;
        case 'H': fleet.host_id = optarg; break;
        case 'A': fleet.cacert = optarg; break;
        case 'C': fleet.cert = optarg; break;
        case 'K': fleet.key = optarg; break;
        case 'Y':
            if (!parse_count(optarg, 0, 100, 3600000, &fleet_sync)) {
                fprintf(stderr, "hakmemd: --fleet-sync must be 100..3600000 ms\n");
                return 2;
            }
            break;
        case 'T':
            if (!parse_count(optarg, 0, 2, 3600, &fleet_ttl)) {
                fprintf(stderr, "hakmemd: --fleet-ttl must be 2..3600 seconds\n");
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("hakmemd %s\n", HAKMEM_VERSION); return 0;
        case 'L': return list_arms();
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    if (!fleet.endpoints && (fleet.name || fleet.host_id || fleet.cacert || fleet.cert || fleet.key)) {
        fprintf(stderr, "hakmemd: the --fleet-* and --host-id options need --fleet-endpoints\n");
        return 2;
    }
    fleet.sync_ms = (uint32_t)fleet_sync;
    fleet.ttl_s = (uint32_t)fleet_ttl;
    hkd_log_init("hakmemd", debug ? HKD_LOG_DEBUG : HKD_LOG_INFO);
    raise_fd_limit();

    /* Signals arrive through a descriptor so the wait cannot miss one; the
     * control-server threads inherit the mask. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        hkd_log(HKD_LOG_ERR, "signalfd: %s", strerror(errno));
        return 1;
    }

    struct stat st;
    if (state && stat(state, &st) < 0 && mkdir(state, 0750) < 0 && errno != EEXIST)
        hkd_log(HKD_LOG_WARNING, "cannot create state directory %s: %s (learned state will not persist)",
                state, strerror(errno));

    if (state) {
        int n = hkd_state_clean(state);
        if (n > 0)
            hkd_log(HKD_LOG_INFO, "removed %d temp file%s an interrupted save left in %s", n, n == 1 ? "" : "s",
                    state);
    }

    hkd_reader_thread_enter();
    hkd_core_cfg cfg = {
        .shm_name = shm,
        .socket_path = use_socket ? sock : "",
        .state_dir = state,
        .interval_ms = (uint32_t)interval,
        .learning = learning,
        .learn = hkd_learn_default_cfg,
        .memory_weight_ns = memory_weight,
        .daemon_uid = (uint32_t)geteuid(),
        .max_sites_per_user = (uint32_t)per_user,
        .new_sites_per_interval = (uint32_t)new_sites,
        .retention_s = (uint32_t)retention,
        .state_max_bytes = state_max,
    };
    int rc = hkd_core_init(&cfg);
    if (rc < 0) {
        const char *why = hkd_core_init_error();
        if (why && *why)
            hkd_log(HKD_LOG_ERR, "%s", why);
        else
            hkd_log(HKD_LOG_ERR, "cannot set up segment %s: %s", shm, strerror(-rc));
        return 1;
    }
    int ctl = 0;
    if (use_socket) {
        rc = hkd_ctl_start(sock, hkd_sd_listen_fd(NULL));
        if (rc < 0)
            hkd_log(HKD_LOG_WARNING, "control socket %s unavailable: %s (continuing without it)", sock,
                    strerror(-rc));
        else
            ctl = 1;
    } else {
        hkd_log(HKD_LOG_NOTICE, "--no-socket: clients cannot register, so no process will be collected");
    }
    /* Off this loop, on its own thread: etcd never delays an interval. */
    if (fleet.endpoints) {
        char why[256];
        if ((rc = hkd_fleet_start(&fleet, why, sizeof why)) < 0) {
            hkd_log(HKD_LOG_ERR, "fleet: %s", why);
            if (ctl)
                hkd_ctl_stop();
            hkd_core_shutdown();
            return 1;
        }
    }
    /* For node_exporter's textfile collector; written off this loop. */
    if (metrics_file && (rc = hkd_metrics_file_start(metrics_file)) < 0)
        hkd_log(HKD_LOG_WARNING, "cannot write metrics to %s: %s (continuing without it)", metrics_file,
                strerror(-rc));
    hkd_log(HKD_LOG_INFO, "running: shm %s, interval %ld ms, learning %s, state %s", shm, interval,
            learning ? "on" : "off", state ? state : "(none)");
    hkd_sd_ready();

    uint64_t period = (uint64_t)interval * 1000000ull;
    uint64_t next = hkd_now_ns() + period;
    /* Woken at least every quarter of the watchdog period (sdnotify.c
     * pings at most every eighth), so pings are never half a period apart
     * even after a slow interval. */
    uint64_t wd_ns = hkd_sd_watchdog_usec() * 1000ull / 4;
    uint64_t count = 0;
    int stop = 0;
    while (!stop) {
        uint64_t now = hkd_now_ns();
        if (now >= next) {
            hkd_core_interval();
            /* A slow interval does not cause a burst of catch-up intervals. */
            next += period;
            if (next <= now)
                next = now + period;
            hkd_status s;
            hkd_get_status(&s);
            hkd_sd_status("%u processes, %u sites, generation %llu", s.processes, s.sites,
                          (unsigned long long)s.generation);
            if (debug)
                hkd_core_log_summary(32);
            hkd_metrics_file_trigger();
            if (++count % SAVE_EVERY == 0)
                hkd_core_save_async();
            now = hkd_now_ns();
        }
        hkd_sd_watchdog();
        uint64_t wait = next > now ? next - now : 0;
        if (wd_ns && wait > wd_ns)
            wait = wd_ns;
        struct pollfd pfd = { .fd = sfd, .events = POLLIN };
        int timeout = (int)((wait + 999999) / 1000000);
        if (poll(&pfd, 1, timeout) > 0) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
                if (si.ssi_signo == SIGHUP) {
                    hkd_log(HKD_LOG_INFO, "SIGHUP: saving learned state");
                    hkd_core_save_async();
                } else {
                    hkd_log(HKD_LOG_INFO, "signal %u: shutting down", si.ssi_signo);
                    stop = 1;
                }
            }
        }
    }
    hkd_sd_stopping();
    hkd_fleet_stop();
    hkd_metrics_file_stop();
    if (ctl)
        hkd_ctl_stop();
    hkd_core_save();
    hkd_core_shutdown();
    hkd_reader_thread_leave();
    close(sfd);
    hkd_log(HKD_LOG_INFO, "stopped; segment %s left for its clients", shm);
    return 0;
}
