/* Command box (command.h). */
#include "command.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CMDLINE_SCAN (64u << 10)    /* an argv[0] longer than this: no command */

static struct {
    int argv_taken;
    char argv_word[HKSHM_COMMAND_MAX];
    char text[HKSHM_COMMAND_MAX];
    uint64_t hash;
} cmd;

size_t hk_command_word(const char *arg, char out[HKSHM_COMMAND_MAX])
{
    if (!arg) {
        memset(out, 0, HKSHM_COMMAND_MAX);
        return 0;
    }
    size_t n = hkshm_command_field(out, arg);
    size_t digits = 0;
    while (digits < n && arg[digits] >= '0' && arg[digits] <= '9')
        digits++;
    if (n && digits == n) {
        memset(out, 0, HKSHM_COMMAND_MAX);
        return 0;
    }
    return n;
}

void hk_command_take_argv(int argc, char **argv)
{
    cmd.argv_taken = 0;
    if (argc < 1 || !argv)
        return;
    cmd.argv_taken = 1;
    hk_command_word(argc >= 2 ? argv[1] : NULL, cmd.argv_word);
}

/* argv[1] from /proc/self/cmdline ("argv0\0argv1\0..."), streamed through
 * a small buffer: argv[0] is skipped whatever its length (up to
 * CMDLINE_SCAN), argv[1] kept up to one byte past the longest command. */
static void word_from_cmdline(char out[HKSHM_COMMAND_MAX])
{
    memset(out, 0, HKSHM_COMMAND_MAX);
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char buf[256], arg[HKSHM_COMMAND_LEN + 2];
    size_t kept = 0, scanned = 0;
    int field = 0, done = 0;
    while (!done && scanned < CMDLINE_SCAN) {
        ssize_t got = read(fd, buf, sizeof buf);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        scanned += (size_t)got;
        for (ssize_t i = 0; i < got && !done; i++) {
            if (buf[i] == 0) {
                done = field == 1;
                field++;
            } else if (field == 1 && kept < sizeof arg - 1) {
                arg[kept++] = buf[i];
            }
        }
    }
    close(fd);
    if (field >= 1) {
        arg[kept] = 0;
        hk_command_word(arg, out);
    }
}

void hk_command_init(void)
{
    memset(cmd.text, 0, sizeof cmd.text);
    cmd.hash = 0;
    const char *env = getenv("HAKMEM_COMMAND");
    size_t n = 0;
    if (env && !*env)
        return;                     /* set empty: no command */
    if (env && !(n = hkshm_command_field(cmd.text, env)))
        hk_log(0, "ignoring HAKMEM_COMMAND=%.40s (expected 1..%u of [A-Za-z0-9_+=-], or empty for none)", env,
               HKSHM_COMMAND_LEN);
    if (!n && cmd.argv_taken)
        memcpy(cmd.text, cmd.argv_word, sizeof cmd.text);
    else if (!n)
        word_from_cmdline(cmd.text);
    n = hkshm_command_valid(cmd.text);
    cmd.hash = n ? hkshm_command_hash(cmd.text, n) : 0;
}

const char *hk_command_text(void) { return cmd.text; }
uint64_t hk_command_hash(void) { return cmd.hash; }
