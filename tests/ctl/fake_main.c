/* TEST ONLY: fake_hakmemd, the real control server (ctl_*.c,
 * metrics.c, log.c, sdnotify.c) over the fake core in fake_core.c.
 * usage: fake_hakmemd SOCKET [METRICS_FILE]; stops on SIGTERM/SIGINT. */
#include "ctl_server.h"
#include "log.h"
#include "metrics_file.h"
#include "sdnotify.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void fake_core_stop(void);

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: fake_hakmemd SOCKET [METRICS_FILE]\n");
        return 2;
    }
    hkd_log_init("fake_hakmemd", HKD_LOG_DEBUG);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    int r = hkd_ctl_start(argv[1], hkd_sd_listen_fd("ctl"));
    if (r < 0) {
        fprintf(stderr, "fake_hakmemd: hkd_ctl_start: %s\n", strerror(-r));
        return 1;
    }
    if (argc > 2 && (r = hkd_metrics_write_file(argv[2])) < 0)
        fprintf(stderr, "fake_hakmemd: metrics file: %s\n", strerror(-r));
    hkd_sd_ready();
    int sig;
    sigwait(&set, &sig);
    hkd_sd_stopping();
    hkd_ctl_stop();
    fake_core_stop();
    hkd_log(HKD_LOG_INFO, "stopped on signal %d", sig);
    return 0;
}
