/* Daemon logging: one line per event, with a level.  To the journal when
 * running under systemd (JOURNAL_STREAM set, or the journal socket exists
 * and stderr is not a tty), to stderr otherwise ("hakmemd: <level>: ..."). */
#ifndef HAKMEMD_LOG_H
#define HAKMEMD_LOG_H

#include <stddef.h>

enum hkd_log_level { HKD_LOG_ERR = 3, HKD_LOG_WARNING = 4, HKD_LOG_NOTICE = 5,
                     HKD_LOG_INFO = 6, HKD_LOG_DEBUG = 7 };

/* Lines above max_level are dropped (default HKD_LOG_INFO). */
void hkd_log_init(const char *ident, int max_level);
void hkd_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes a one-line reason into why (when there is room) for the caller
 * that tells a person, and returns rc: `return hkd_reason(why, n, -EPERM, ...)`. */
int  hkd_reason(char *why, size_t whylen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
