/* systemd integration: readiness, status, watchdog, socket activation.
 * Each call is a no-op when the daemon is not run by systemd (no
 * NOTIFY_SOCKET / WATCHDOG_USEC / LISTEN_FDS). */
#ifndef HAKMEMD_SDNOTIFY_H
#define HAKMEMD_SDNOTIFY_H

#include <stdint.h>

void hkd_sd_ready(void);
void hkd_sd_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Pings the watchdog when one is configured; call every loop iteration. */
void hkd_sd_watchdog(void);
void hkd_sd_stopping(void);
/* Watchdog interval in microseconds, 0 when none. */
uint64_t hkd_sd_watchdog_usec(void);
/* A listening socket passed by systemd (named by FileDescriptorName=, or
 * any when name is NULL), or -1. */
int hkd_sd_listen_fd(const char *name);

#endif
