/* Fork children of a process whose main thread keeps the dynamic loader
 * busy.  The main thread loops dlopen/dlclose of a library it has not
 * loaded before (libz) and dlopen/dlsym/dlclose of one it has (libm), so at
 * any fork the loader's lock may be held by a thread the child does not
 * have.  Two threads fork and wait; each child allocates on the medium and
 * large paths (malloc(1000), malloc(2 MiB), strdup), starts and joins a
 * thread, and exits.  A child that touches the loader lock, or any lock
 * another parent thread held at fork time, never exits: alarm() turns that
 * into a SIGALRM death, counted as a failure.
 *
 * usage: fork_dlopen [FORKS] [-H]
 *   FORKS  children in all (default 1000), split between the two forkers
 *   -H     fail unless malloc resolves into libhakmem
 * Prints one summary line; exit status 0 only when every child exited 0. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define FORKERS        2
#define CHILD_ALARM_S  20     /* a child alive this long is stuck */

static atomic_int forkers_running = FORKERS;
static atomic_ulong forks_done, children_ok, loader_cycles;

static void *child_thread(void *arg)
{
    char *s = malloc(64 * 1024);
    if (s)
        s[0] = 1;
    free(s);
    return arg;
}

/* Runs in the child: everything a forked server does before exec or exit. */
static void child_body(void)
{
    alarm(CHILD_ALARM_S);
    char *a = malloc(1000);
    char *b = malloc(2u << 20);
    if (!a || !b)
        _exit(2);
    memset(a, 0x5a, 1000);
    b[0] = 1;
    b[(2u << 20) - 1] = 2;
    char *s = strdup("forked child");
    if (!s)
        _exit(3);
    pthread_t t;
    if (pthread_create(&t, NULL, child_thread, s) != 0)
        _exit(4);
    void *ret = NULL;
    if (pthread_join(t, &ret) != 0 || ret != s)
        _exit(5);
    free(s);
    free(b);
    free(a);
    _exit(0);
}

static void *forker(void *arg)
{
    unsigned long n = (unsigned long)(uintptr_t)arg;
    for (unsigned long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "fork_dlopen: fork: %s\n", strerror(errno));
            break;
        }
        if (pid == 0)
            child_body();
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        atomic_fetch_add(&forks_done, 1);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
            atomic_fetch_add(&children_ok, 1);
        else if (WIFSIGNALED(status))
            fprintf(stderr, "fork_dlopen: child %d killed by signal %d%s\n", (int)pid,
                    WTERMSIG(status), WTERMSIG(status) == SIGALRM ? " (stuck after fork)" : "");
        else
            fprintf(stderr, "fork_dlopen: child %d exited %d\n", (int)pid, WEXITSTATUS(status));
    }
    atomic_fetch_sub(&forkers_running, 1);
    return NULL;
}

static int runs_on_hakmem(void)
{
    Dl_info info;
    void *(*volatile m)(size_t) = malloc;
    return dlsym(RTLD_DEFAULT, "hakmem_get_stats") && dladdr((void *)m, &info) && info.dli_fname &&
           strstr(info.dli_fname, "libhakmem");
}

int main(int argc, char **argv)
{
    unsigned long forks = 1000;
    int require_hakmem = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-H") == 0) {
            require_hakmem = 1;
            continue;
        }
        char *end;
        forks = strtoul(argv[i], &end, 10);
        if (*end || forks == 0) {
            fprintf(stderr, "usage: fork_dlopen [FORKS] [-H]\n");
            return 2;
        }
    }
    if (require_hakmem && !runs_on_hakmem()) {
        fprintf(stderr, "fork_dlopen: malloc does not resolve into libhakmem\n");
        return 1;
    }
    pthread_t t[FORKERS];
    for (int i = 0; i < FORKERS; i++) {
        unsigned long share = forks / FORKERS + (i < (int)(forks % FORKERS));
        if (pthread_create(&t[i], NULL, forker, (void *)(uintptr_t)share) != 0) {
            fprintf(stderr, "fork_dlopen: pthread_create failed\n");
            return 1;
        }
    }
    while (atomic_load(&forkers_running) > 0) {
        void *z = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
        if (z)
            dlclose(z);
        void *m = dlopen("libm.so.6", RTLD_NOW | RTLD_LOCAL);
        if (m) {
            volatile void *sym = dlsym(m, "cos");
            (void)sym;
            dlclose(m);
        }
        atomic_fetch_add(&loader_cycles, 1);
    }
    for (int i = 0; i < FORKERS; i++)
        pthread_join(t[i], NULL);
    unsigned long done = atomic_load(&forks_done), ok = atomic_load(&children_ok);
    printf("fork_dlopen: %lu forks done, %lu children exited 0, %lu loader cycles\n", done, ok,
           atomic_load(&loader_cycles));
    return done == forks && ok == done ? 0 : 1;
}
