/* A client for the per-binary tests: prints, first thing in main, the
 * binary arm and knobs in force (so what the process ran from its first
 * allocation on), then does `rounds` rounds of a big-block churn (blocks of
 * 4-12 MiB, a few live at once, zero-filled) that the knobs change the cost
 * of, and checks what it wrote.
 *   knob_probe [COMMAND] [ROUNDS]  ->  "arm A knobs K0 K1 ... K7" then "rounds ok"
 * COMMAND, a word, is only there to name the command the daemon keys the
 * run's learning by (argv[1]). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hakmem.h"

int main(int argc, char **argv)
{
    hakmem_knobs k;
    hakmem_get_knobs(&k);
    printf("arm %d knobs", k.binary_arm);
    for (int i = 0; i < 9; i++)
        printf(" %u", k.value[i]);
    printf("\n");
    fflush(stdout);
    int at = argc > 1 && (argv[1][0] < '0' || argv[1][0] > '9') ? 2 : 1;
    int rounds = argc > at ? atoi(argv[at]) : 50;
    enum { LIVE = 6 };
    unsigned char *live[LIVE] = { 0 };
    size_t len[LIVE] = { 0 };
    uint64_t seed = 12345;
    for (int r = 0; r < rounds; r++) {
        int i = r % LIVE;
        if (live[i]) {
            for (size_t off = 0; off < len[i]; off += 4096)
                if (live[i][off] != (unsigned char)(i + 1)) {
                    fprintf(stderr, "knob_probe: block %d corrupted at %zu\n", i, off);
                    return 1;
                }
            free(live[i]);
        }
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        len[i] = ((4 + (seed >> 33) % 9) << 20);
        live[i] = calloc(1, len[i]);
        if (!live[i])
            return 1;
        for (size_t off = 0; off < len[i]; off += 4096)
            live[i][off] = (unsigned char)(i + 1);
    }
    for (int i = 0; i < LIVE; i++)
        free(live[i]);
    printf("rounds ok\n");
    return 0;
}
