/* The command a process runs, as the daemon's per-binary learning keys it
 * (include/hakmem_shm.h, Command): one binary run as `git add` and as
 * `git log` costs differently per unit of work, so each command of a
 * binary learns its own arm.
 *
 * The rule: HAKMEM_COMMAND, when set, names the command (empty: none; a
 * value that is not 1..24 bytes of [A-Za-z0-9_+=-] is ignored with a
 * message).  Otherwise argv[1] is the command when it is a plain word:
 * 1..24 bytes, each of [A-Za-z0-9_+=-] (so no '/' nor '.': not a path nor
 * a file name) and not digits alone (a count, a pid, a port); anything
 * else, or no argv[1], is no command.  A data file as argv[1] thus keeps
 * runs pooled under the binary, and distinct inputs never become
 * distinct keys.
 *
 * argv comes from the loader (glibc passes argc and argv to ELF
 * constructors) or, when the constructor did not get it, from
 * /proc/self/cmdline read through a bounded buffer.  System calls and
 * static storage only: safe inside malloc's slow path. */
#ifndef HK_COMMAND_H
#define HK_COMMAND_H

#include "hakmem_shm.h"

#include <stddef.h>
#include <stdint.h>

/* argv as the constructor got it (argc 0 or argv NULL: not given, the
 * command then comes from /proc/self/cmdline). */
void hk_command_take_argv(int argc, char **argv);
/* Decides the command (HAKMEM_COMMAND, the argv taken, else
 * /proc/self/cmdline); once, before the first registration. */
void hk_command_init(void);
/* The command's text NUL-padded to HKSHM_COMMAND_MAX ("" when none) and
 * its hash (0 when none). */
const char *hk_command_text(void);
uint64_t hk_command_hash(void);

/* The rule for argv[1]: its length when arg is a plain word, copied to
 * out NUL-padded; else 0 and out all NUL. */
size_t hk_command_word(const char *arg, char out[HKSHM_COMMAND_MAX]);

#endif
