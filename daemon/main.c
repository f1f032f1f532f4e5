/* hakmemd: collects allocation statistics from every hakmem process on the
 * host, learns per-site policy, publishes it back.  The loop: wait for the
 * next interval (or a signal), run one core interval, tell systemd. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"
#include "core_api.h"
#include "ctl_server.h"
#include "fleet.h"
#include "log.h"
#include "metrics_file.h"
#include "options.h"
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

/* Signals arrive through a descriptor so the wait cannot miss one; the
 * control-server threads inherit the mask.  -1 (logged) when it cannot. */
static int signals_fd(void)
{
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0)
        hkd_log(HKD_LOG_ERR, "signalfd: %s", strerror(errno));
    return sfd;
}

/* A missing state directory only costs persistence, so it is warned
 * about, never fatal. */
static void prepare_state_dir(const char *state)
{
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
}

/* 0, or -1 when the core cannot run (logged). */
static int start_core(const hkd_options *o)
{
    hkd_core_cfg cfg = {
        .shm_name = o->shm,
        .socket_path = o->use_socket ? o->socket : "",
        .state_dir = o->state_dir,
        .interval_ms = (uint32_t)o->interval_ms,
        .learning = o->learning,
        .learn = hkd_learn_default_cfg,
        .memory_weight_ns = o->memory_weight_ns,
        .arm_mask = o->arm_mask,
        .settled_report_every = (uint32_t)o->settled_report_every,
        .daemon_uid = (uint32_t)geteuid(),
        .max_sites_per_user = (uint32_t)o->max_sites_per_user,
        .new_sites_per_interval = (uint32_t)o->new_sites_per_interval,
        .retention_s = (uint32_t)o->retention_s,
        .state_max_bytes = o->state_max_bytes,
    };
    int rc = hkd_core_init(&cfg);
    if (rc < 0) {
        const char *why = hkd_core_init_error();
        if (why && *why)
            hkd_log(HKD_LOG_ERR, "%s", why);
        else
            hkd_log(HKD_LOG_ERR, "cannot set up segment %s: %s", o->shm, strerror(-rc));
        return -1;
    }
    return 0;
}

/* The daemon runs on without a control socket (logged); 1 when it has one. */
static int start_control(const hkd_options *o)
{
    if (!o->use_socket) {
        hkd_log(HKD_LOG_NOTICE, "--no-socket: clients cannot register, so no process will be collected");
        return 0;
    }
    int rc = hkd_ctl_start(o->socket, hkd_sd_listen_fd(NULL));
    if (rc < 0) {
        hkd_log(HKD_LOG_WARNING, "control socket %s unavailable: %s (continuing without it)", o->socket,
                strerror(-rc));
        return 0;
    }
    return 1;
}

/* One core interval every o->interval_ms until SIGTERM or SIGINT; SIGHUP
 * saves the learned state. */
static void run_intervals(int sfd, const hkd_options *o)
{
    uint64_t period = (uint64_t)o->interval_ms * 1000000ull;
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
            if (o->debug)
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
}

int main(int argc, char **argv)
{
    hkd_options o;
    int rc = hkd_options_parse(argc, argv, &o);
    if (rc != HKD_OPTIONS_RUN)
        return rc;
    hkd_log_init("hakmemd", o.debug ? HKD_LOG_DEBUG : HKD_LOG_INFO);
    raise_fd_limit();
    int sfd = signals_fd();
    if (sfd < 0)
        return 1;
    prepare_state_dir(o.state_dir);

    hkd_reader_thread_enter();
    if (start_core(&o) < 0)
        return 1;
    int ctl = start_control(&o);
    /* Off this loop, on its own thread: etcd never delays an interval. */
    if (o.fleet.endpoints) {
        char why[256];
        if ((rc = hkd_fleet_start(&o.fleet, why, sizeof why)) < 0) {
            hkd_log(HKD_LOG_ERR, "fleet: %s", why);
            if (ctl)
                hkd_ctl_stop();
            hkd_core_shutdown();
            return 1;
        }
    }
    /* For node_exporter's textfile collector; written off this loop. */
    if (o.metrics_file && (rc = hkd_metrics_file_start(o.metrics_file)) < 0)
        hkd_log(HKD_LOG_WARNING, "cannot write metrics to %s: %s (continuing without it)", o.metrics_file,
                strerror(-rc));
    hkd_log(HKD_LOG_INFO, "running: shm %s, interval %ld ms, learning %s, state %s", o.shm, o.interval_ms,
            o.learning ? "on" : "off", o.state_dir ? o.state_dir : "(none)");
    hkd_sd_ready();

    run_intervals(sfd, &o);

    hkd_sd_stopping();
    hkd_fleet_stop();
    hkd_metrics_file_stop();
    if (ctl)
        hkd_ctl_stop();
    hkd_core_save();
    hkd_core_shutdown();
    hkd_reader_thread_leave();
    close(sfd);
    hkd_log(HKD_LOG_INFO, "stopped; segment %s left for its clients", o.shm);
    return 0;
}
