/* Invalid frees must fail fast: each case runs in a child process that must
 * die of SIGABRT after writing exactly one line to stderr that starts with
 * "hakmem: free(): " (or "hakmem: realloc(): ") and names the pointer.
 *
 * usage: badfree CASE     (exit 0 when the child behaved as required)
 * cases: free-stack free-interior free-wild double-free-large
 *        realloc-stack realloc-interior free-small-misaligned
 *        free-foreign-glibc free-foreign-glibc-large (a block of glibc's
 *        own allocator, still in every process: __libc_malloc)
 *        free-foreign-mimalloc (a block of mimalloc, loaded with dlopen)
 *        free-small-interior double-free-small (hardened library only)
 *        corrupt-link (hardened library only: "hakmem: malloc(): ") */
#include <dlfcn.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB ((size_t)1 << 20)

/* Keeps the compiler from seeing (and warning about, or folding) what the
 * pointers really are. */
static inline void *launder(void *p)
{
    __asm__ volatile("" : "+r"(p) : : "memory");
    return p;
}

/* glibc's allocator under its own name: LD_PRELOAD takes malloc from it,
 * not these. */
extern void *__libc_malloc(size_t size);

/* A block of another allocator in this process. */
static void *foreign_block(const char *name)
{
    if (!strcmp(name, "free-foreign-glibc"))
        return __libc_malloc(64);
    if (!strcmp(name, "free-foreign-glibc-large"))
        return __libc_malloc(4 * MiB);      /* glibc maps it on its own */
    void *lib = dlopen("libmimalloc.so.2", RTLD_NOW | RTLD_LOCAL);
    void *(*mi_malloc)(size_t) = lib ? (void *(*)(size_t))dlsym(lib, "mi_malloc") : NULL;
    if (mi_malloc == NULL) {
        fprintf(stderr, "badfree: no mimalloc: %s\n", dlerror());
        _exit(3);
    }
    return mi_malloc(64);
}

static void run_case(const char *name)
{
    char stack_buf[256];
    memset(stack_buf, 1, sizeof stack_buf);
    if (!strcmp(name, "free-stack")) {
        free(launder(stack_buf + 64));
    } else if (!strcmp(name, "free-interior")) {
        char *p = launder(malloc(2 * MiB));
        memset(p, 2, 2 * MiB);
        free(launder(p + MiB + 48));
    } else if (!strcmp(name, "free-small-misaligned")) {
        char *p = launder(malloc(64));
        free(launder(p + 8));
    } else if (!strcmp(name, "free-small-interior")) {
        char *p = launder(malloc(64));
        free(launder(p + 16));
    } else if (!strcmp(name, "double-free-small")) {
        char *p = launder(malloc(64));
        void *volatile again = p;
        free(p);
        free(again);
    } else if (!strcmp(name, "corrupt-link")) {
        /* A use after free overwrites a freed block's link with a pointer
         * of its choosing; allocating then pops it. */
        char *a = launder(malloc(64)), *b = launder(malloc(64));
        void **volatile link = (void **)a;
        free(b);
        free(a);
        *link = stack_buf;
        for (int i = 0; i < 3; i++) {
            void *volatile q = malloc(64);
            (void)q;
        }
    } else if (!strncmp(name, "free-foreign-", 13)) {
        char *p = launder(foreign_block(name));
        if (p == NULL) {
            fprintf(stderr, "badfree: the other allocator gave no block\n");
            _exit(3);
        }
        memset(p, 5, 64);
        free(p);
    } else if (!strcmp(name, "free-wild")) {
        free(launder((void *)0x7f0000001000));
    } else if (!strcmp(name, "double-free-large")) {
        char *p = launder(malloc(2 * MiB));
        memset(p, 3, 2 * MiB);
        void *volatile again = p;
        free(p);
        free(again);
    } else if (!strcmp(name, "realloc-stack")) {
        void *volatile q = realloc(launder(stack_buf + 64), 100);
        (void)q;
    } else if (!strcmp(name, "realloc-interior")) {
        char *p = launder(malloc(2 * MiB));
        memset(p, 4, 2 * MiB);
        void *volatile q = realloc(launder(p + MiB + 48), 4 * MiB);
        (void)q;
    } else {
        fprintf(stderr, "badfree: unknown case %s\n", name);
        _exit(3);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: badfree CASE\n");
        return 2;
    }
    const char *name = argv[1];
    const char *want = !strncmp(name, "realloc", 7) ? "hakmem: realloc(): "
                     : !strncmp(name, "corrupt", 7) ? "hakmem: malloc(): "
                                                    : "hakmem: free(): ";
    int pfd[2];
    if (pipe(pfd))
        return perror("pipe"), 2;
    pid_t pid = fork();
    if (pid < 0)
        return perror("fork"), 2;
    if (pid == 0) {
        struct rlimit no_core = { 0, 0 };
        setrlimit(RLIMIT_CORE, &no_core);   /* expected aborts need no dumps */
        dup2(pfd[1], 2);
        close(pfd[0]);
        close(pfd[1]);
        run_case(name);
        /* Only reached when the allocator accepted the bad pointer. */
        static const char msg[] = "badfree: call returned\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(0);
    }
    close(pfd[1]);
    char out[4096];
    size_t len = 0;
    ssize_t got;
    while ((got = read(pfd[0], out + len, sizeof out - 1 - len)) > 0)
        len += (size_t)got;
    out[len] = '\0';
    close(pfd[0]);
    int status;
    if (waitpid(pid, &status, 0) != pid)
        return perror("waitpid"), 2;

    char *nl = strchr(out, '\n');
    size_t lines = 0;
    for (char *c = out; *c; c++)
        lines += *c == '\n';
    if (nl)
        *nl = '\0';   /* report only the first line below */
    bool aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
    if (!aborted) {
        if (WIFSIGNALED(status))
            fprintf(stderr, "%s: child died of signal %d, want SIGABRT (stderr: %s)\n", name,
                    WTERMSIG(status), out);
        else
            fprintf(stderr, "%s: child exited %d, want SIGABRT (stderr: %s)\n", name,
                    WEXITSTATUS(status), out);
        return 1;
    }
    if (strncmp(out, want, strlen(want)) || !strstr(out, "0x")) {
        fprintf(stderr, "%s: aborted, but stderr starts \"%.200s\", want \"%s...0x...\"\n", name,
                out, want);
        return 1;
    }
    if (lines != 1 || !nl || nl[1] != '\0' ) {
        fprintf(stderr, "%s: stderr has %zu lines (%zu bytes), want exactly one\n", name, lines, len);
        return 1;
    }
    printf("%s: %s\n", name, out);
    return 0;
}
