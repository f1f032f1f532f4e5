/* Command box: which argv[1] names a command (plain words do; paths,
 * file names, numbers, long or unprintable ones do not), HAKMEM_COMMAND
 * over it, and argv taken from the constructor or else read from
 * /proc/self/cmdline (checked in a re-executed copy of this test, whose
 * command line is chosen). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "command.h"

static int takes(const char *arg, const char *want)
{
    char out[HKSHM_COMMAND_MAX];
    memset(out, 'x', sizeof out);
    size_t n = hk_command_word(arg, out);
    char zero[HKSHM_COMMAND_MAX] = { 0 };
    if (!want)
        return n == 0 && memcmp(out, zero, sizeof out) == 0;
    return n == strlen(want) && strcmp(out, want) == 0 && memcmp(out + n, zero, sizeof out - n) == 0 &&
           hkshm_command_valid(out) == n;
}

static void plain_words_are_commands(void **state)
{
    (void)state;
    assert_true(takes("add", "add"));
    assert_true(takes("rev-list", "rev-list"));
    assert_true(takes("-cmd", "-cmd"));
    assert_true(takes("-header", "-header"));
    assert_true(takes("--64", "--64"));
    assert_true(takes("-O2", "-O2"));
    assert_true(takes("a+b=c_d", "a+b=c_d"));
    assert_true(takes("abcdefghijklmnopqrstuvwx", "abcdefghijklmnopqrstuvwx"));   /* 24 bytes */
}

static void other_arguments_are_not(void **state)
{
    (void)state;
    assert_true(takes(NULL, NULL));
    assert_true(takes("", NULL));
    assert_true(takes("img123.png", NULL));           /* a file name */
    assert_true(takes("x.py", NULL));
    assert_true(takes("/usr/share/dict", NULL));      /* a path */
    assert_true(takes("dir/file", NULL));
    assert_true(takes("abcdefghijklmnopqrstuvwxy", NULL));   /* 25 bytes */
    assert_true(takes("1234", NULL));                 /* digits alone: a count, a pid */
    assert_true(takes("two words", NULL));
    assert_true(takes("tab\t", NULL));
    assert_true(takes("\033[31m", NULL));
    assert_true(takes("caf\xc3\xa9", NULL));
    assert_true(takes("quote\"", NULL));
    assert_true(takes("--opt=a,b", NULL));
}

static void argv_then_the_environment(void **state)
{
    (void)state;
    char *argv[] = { "git", "log", "--stat", NULL };
    hk_command_take_argv(3, argv);
    unsetenv("HAKMEM_COMMAND");
    hk_command_init();
    assert_string_equal(hk_command_text(), "log");
    assert_true(hk_command_hash() == hkshm_command_hash("log", 3));
    /* The operator names it. */
    setenv("HAKMEM_COMMAND", "nightly-build", 1);
    hk_command_init();
    assert_string_equal(hk_command_text(), "nightly-build");
    assert_true(hk_command_hash() == hkshm_command_hash("nightly-build", 13));
    /* Digits alone are the operator's to choose. */
    setenv("HAKMEM_COMMAND", "2024", 1);
    hk_command_init();
    assert_string_equal(hk_command_text(), "2024");
    /* Empty: none, whatever argv says. */
    setenv("HAKMEM_COMMAND", "", 1);
    hk_command_init();
    assert_string_equal(hk_command_text(), "");
    assert_true(hk_command_hash() == 0);
    /* Not a command: ignored, argv decides. */
    setenv("HAKMEM_COMMAND", "../etc", 1);
    hk_command_init();
    assert_string_equal(hk_command_text(), "log");
    setenv("HAKMEM_COMMAND", "abcdefghijklmnopqrstuvwxyz", 1);
    hk_command_init();
    assert_string_equal(hk_command_text(), "log");
    unsetenv("HAKMEM_COMMAND");
    /* A data file as argv[1]: none. */
    char *convert[] = { "convert", "img123.png", "out.jpg", NULL };
    hk_command_take_argv(3, convert);
    hk_command_init();
    assert_true(hk_command_hash() == 0);
    char *alone[] = { "top", NULL };
    hk_command_take_argv(1, alone);
    hk_command_init();
    assert_true(hk_command_hash() == 0);
}

/* This test run again as `argv0 arg1`, in the mode given: what it names. */
static void rerun(const char *mode, const char *argv0, const char *arg1, char *out, size_t len)
{
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fd[1], STDOUT_FILENO);
        close(fd[0]);
        setenv("UNIT_COMMAND_MODE", mode, 1);
        unsetenv("HAKMEM_COMMAND");
        char *const argv[] = { (char *)argv0, (char *)arg1, NULL };
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    close(fd[1]);
    ssize_t n = read(fd[0], out, len - 1);
    out[n > 0 ? n : 0] = 0;
    close(fd[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* In the copy: argv[1] is changed in place (as a program that rewrites
 * its title would), so the command the constructor took ("status") and
 * what /proc/self/cmdline says now ("Xtatus") differ. */
static int child(int argc, char **argv, const char *mode)
{
    if (argc >= 2 && argv[1][0])
        argv[1][0] = 'X';
    if (!strcmp(mode, "cmdline"))
        hk_command_take_argv(0, NULL);
    hk_command_init();
    printf("[%s]", hk_command_text());
    return 0;
}

static void argv_from_the_constructor_or_proc(void **state)
{
    (void)state;
    char out[128];
    rerun("argv", "unit_command", "status", out, sizeof out);
    assert_string_equal(out, "[status]");
    rerun("cmdline", "unit_command", "status", out, sizeof out);
    assert_string_equal(out, "[Xtatus]");
    /* An argv[0] far longer than the reading buffer is skipped whole. */
    static char long0[20000];
    memset(long0, 'p', sizeof long0 - 1);
    rerun("cmdline", long0, "status", out, sizeof out);
    assert_string_equal(out, "[Xtatus]");
    rerun("cmdline", "unit_command", "img123.png", out, sizeof out);
    assert_string_equal(out, "[]");
    rerun("cmdline", "unit_command", "abcdefghijklmnopqrstuvwxy", out, sizeof out);
    assert_string_equal(out, "[]");
    rerun("cmdline", "unit_command", "abcdefghijklmnopqrstuvwx", out, sizeof out);
    assert_string_equal(out, "[Xbcdefghijklmnopqrstuvwx]");
}

int main(int argc, char **argv)
{
    const char *mode = getenv("UNIT_COMMAND_MODE");
    if (mode)
        return child(argc, argv, mode);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_words_are_commands),
        cmocka_unit_test(other_arguments_are_not),
        cmocka_unit_test(argv_then_the_environment),
        cmocka_unit_test(argv_from_the_constructor_or_proc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
