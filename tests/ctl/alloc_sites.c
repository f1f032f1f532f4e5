/* A client for the end-to-end tests: allocates from three distinct sites
 * (64 KiB, 256 KiB and 2 MiB blocks, as the bench scenarios do) for a
 * given number of seconds, so a daemon sees sites, arms and processes.
 * usage: alloc_sites SECONDS  (run with LD_PRELOAD=libhakmem.so) */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The empty asm after each call keeps it from becoming a tail call, so the
 * return address (the site) lies inside these functions, not in main. */
#define SITE(name, size)                                    \
    __attribute__((noinline)) static char *name(void)       \
    {                                                       \
        char *p = malloc(size);                             \
        __asm__ volatile("" : : "r"(p) : "memory");         \
        return p;                                           \
    }
SITE(site_json, 64 << 10)
SITE(site_mir, 256 << 10)
SITE(site_vm, 2 << 20)

static volatile sig_atomic_t quit;
static void on_term(int sig) { (void)sig; quit = 1; }

/* SIGTERM ends the loop, so the process exits normally (and flushes). */
int main(int argc, char **argv)
{
    signal(SIGTERM, on_term);
    double secs = argc > 1 ? atof(argv[1]) : 3;
    struct timespec t0, now, nap = { 0, 5 * 1000000 };
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        for (int i = 0; i < 20; i++) {
            char *p = site_json();
            memset(p, i, 4096);
            free(p);
        }
        for (int i = 0; i < 4; i++) {
            char *p = site_mir();
            memset(p, i, 4096);
            free(p);
        }
        char *p = site_vm();
        memset(p, 1, 1 << 20);
        free(p);
        nanosleep(&nap, NULL);
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (!quit && (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9 < secs);
    return 0;
}
