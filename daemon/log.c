/* Daemon logging: one line per event.  Under systemd the line goes to the
 * journal with its priority as a field, so `journalctl -p warning -u
 * hakmemd` filters properly; otherwise it goes to stderr as one write(2),
 * so concurrent threads never interleave within a line.
 *
 * The journal is chosen when JOURNAL_STREAM names our stderr (systemd
 * connected it), or when stderr is a closed/null device, not a tty, and the
 * journal socket exists.  A daemon started by hand with stderr redirected
 * to a file keeps writing to that file.  HAKMEMD_LOG=stderr|journal forces
 * one. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

static int g_max_level = HKD_LOG_INFO;
static int g_journal;
static char g_ident[32] = "hakmemd";

static const char *level_name(int level)
{
    switch (level) {
    case HKD_LOG_ERR: return "error";
    case HKD_LOG_WARNING: return "warning";
    case HKD_LOG_NOTICE: return "notice";
    case HKD_LOG_INFO: return "info";
    default: return "debug";
    }
}

static int stderr_is_journal_stream(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    struct stat st;
    unsigned long long dev, ino;
    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
        return 0;
    if (fstat(STDERR_FILENO, &st) < 0)
        return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

static int stderr_is_nowhere(void)
{
    struct stat st;
    if (fstat(STDERR_FILENO, &st) < 0)
        return 1;
    /* /dev/null is the char device 1:3. */
    return S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3;
}

void hkd_log_init(const char *ident, int max_level)
{
    if (ident && *ident)
        snprintf(g_ident, sizeof g_ident, "%s", ident);
    g_max_level = max_level;
    const char *force = getenv("HAKMEMD_LOG");
    if (force && strcmp(force, "journal") == 0)
        g_journal = 1;
    else if (force && strcmp(force, "stderr") == 0)
        g_journal = 0;
    else if (stderr_is_journal_stream())
        g_journal = 1;
    else
        g_journal = !isatty(STDERR_FILENO) && stderr_is_nowhere()
                    && access("/run/systemd/journal/socket", W_OK) == 0;
}

void hkd_log(int level, const char *fmt, ...)
{
    if (level > g_max_level)
        return;
    int saved = errno;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* One event, one line: a newline inside a message would split it. */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';

    if (g_journal) {
        sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", level,
                        "SYSLOG_IDENTIFIER=%s", g_ident, NULL);
    } else {
        char line[1200];
        int n = snprintf(line, sizeof line, "%s: %s: %s\n", g_ident, level_name(level), msg);
        if (n > (int)sizeof line - 1)
            n = (int)sizeof line - 1, line[n - 1] = '\n';
        ssize_t w = write(STDERR_FILENO, line, (size_t)n);
        (void)w;
    }
    errno = saved;
}

int hkd_reason(char *why, size_t whylen, int rc, const char *fmt, ...)
{
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return rc;
}
