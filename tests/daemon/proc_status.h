/* For tests: a field of /proc/self/status in bytes (VmRSS, VmHWM, ...). */
#ifndef HKD_TEST_PROC_STATUS_H
#define HKD_TEST_PROC_STATUS_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static inline uint64_t proc_status_bytes(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    uint64_t kb = 0;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':' && sscanf(line + n + 1, "%lu", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb << 10;
}

#endif
