/* systemd integration through libsystemd's sd-daemon.  Every call is a
 * no-op outside systemd, because sd_notify() does nothing without
 * NOTIFY_SOCKET and sd_listen_fds() finds nothing without LISTEN_FDS.
 *
 * Test hook (documented in hakmemd(8)): when HAKMEMD_TEST_HANG_FILE names a
 * path and that file appears, the next hkd_sd_watchdog() call removes it and
 * then blocks forever, which is exactly what a hung main loop looks like to
 * the watchdog.  Removing the file first makes one hang per file, so the
 * restarted daemon runs normally. */
#include "sdnotify.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

static pthread_once_t g_fds_once = PTHREAD_ONCE_INIT;
static int g_nfds;
static char **g_fd_names;

static pthread_once_t g_wd_once = PTHREAD_ONCE_INIT;
static uint64_t g_wd_usec;
static uint64_t g_wd_last_ns;
static const char *g_hang_file;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void wd_init(void)
{
    uint64_t usec = 0;
    /* unset_environment=0: children (none today) need not see it, but
     * tests that inspect /proc/PID/environ may. */
    if (sd_watchdog_enabled(0, &usec) > 0)
        g_wd_usec = usec;
    g_hang_file = getenv("HAKMEMD_TEST_HANG_FILE");
    if (g_hang_file && !*g_hang_file)
        g_hang_file = NULL;
}

void hkd_sd_ready(void)
{
    sd_notify(0, "READY=1");
}

void hkd_sd_status(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    sd_notifyf(0, "STATUS=%s", buf);
}

uint64_t hkd_sd_watchdog_usec(void)
{
    pthread_once(&g_wd_once, wd_init);
    return g_wd_usec;
}

void hkd_sd_watchdog(void)
{
    pthread_once(&g_wd_once, wd_init);
    if (g_hang_file && unlink(g_hang_file) == 0) {
        hkd_log(HKD_LOG_WARNING, "test hang requested through %s: main loop stops now", g_hang_file);
        for (;;)
            pause();
    }
    if (!g_wd_usec)
        return;
    /* The main loop may spin faster than needed; at most a ping per eighth
     * of the period (it wakes every quarter) keeps a wide margin without
     * flooding the manager. */
    uint64_t now = mono_ns();
    if (g_wd_last_ns && now - g_wd_last_ns < g_wd_usec * 1000 / 8)
        return;
    g_wd_last_ns = now;
    sd_notify(0, "WATCHDOG=1");
}

void hkd_sd_stopping(void)
{
    sd_notify(0, "STOPPING=1");
}

static void fds_init(void)
{
    int n = sd_listen_fds_with_names(1, &g_fd_names);
    g_nfds = n > 0 ? n : 0;
    if (n < 0)
        hkd_log(HKD_LOG_WARNING, "sd_listen_fds: %s", strerror(-n));
}

int hkd_sd_listen_fd(const char *name)
{
    pthread_once(&g_fds_once, fds_init);
    for (int i = 0; i < g_nfds; i++) {
        int fd = SD_LISTEN_FDS_START + i;
        if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0)
            continue;
        if (!name || (g_fd_names && g_fd_names[i] && strcmp(g_fd_names[i], name) == 0))
            return fd;
    }
    return -1;
}
