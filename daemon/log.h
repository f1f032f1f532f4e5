/* Daemon logging: one line per event, with a level.  To the journal when
 * running under systemd (JOURNAL_STREAM set, or the journal socket exists
 * and stderr is not a tty), to stderr otherwise ("hakmemd: <level>: ..."). */
#ifndef HAKMEMD_LOG_H
#define HAKMEMD_LOG_H

enum hkd_log_level { HKD_LOG_ERR = 3, HKD_LOG_WARNING = 4, HKD_LOG_NOTICE = 5,
                     HKD_LOG_INFO = 6, HKD_LOG_DEBUG = 7 };

/* Lines above max_level are dropped (default HKD_LOG_INFO). */
void hkd_log_init(const char *ident, int max_level);
void hkd_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
