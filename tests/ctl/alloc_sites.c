/* A client for the end-to-end tests: allocates from three distinct sites
 * (64 KiB, 256 KiB and 2 MiB blocks, as the bench scenarios do) for a
 * given number of seconds, so a daemon sees sites, arms and processes.
 * usage: alloc_sites SECONDS  (run with LD_PRELOAD=libhakmem.so) */
#include <stdlib.h>
#include <string.h>
#include <time.h>

__attribute__((noinline)) static char *site_json(void) { return malloc(64 << 10); }
__attribute__((noinline)) static char *site_mir(void) { return malloc(256 << 10); }
__attribute__((noinline)) static char *site_vm(void) { return malloc(2 << 20); }

int main(int argc, char **argv)
{
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
    } while ((double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9 < secs);
    return 0;
}
