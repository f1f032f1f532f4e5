/* Fuzzes the state-file loader (persist.c hkd_state_load) and what it
 * hands on (hkd_policy_decode): the input is written as state.pb in a
 * private directory.  Byte 0 bit 0 set: the harness gives the rest a valid
 * header (magic, length, CRC), so that the payload reaches the decoder;
 * clear: the rest is the file as it is. */
#include "persist.h"
#include "utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/fuzz_state.XXXXXX", base);
    if (!mkdtemp(dir))
        abort();
    return 0;
}

/* Every module path the decoder hands out is clean (utf8.h). */
static void check_clean(const hkd_site_state *st, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char copy[HKD_MODULE_MAX];
        hk_text_clean(copy, sizeof copy, st[i].module, sizeof st[i].module);
        if (memchr(st[i].module, 0, sizeof st[i].module) == NULL || strcmp(copy, st[i].module) != 0)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int fix = data[0] & 1;
    data++, size--;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, HKD_STATE_FILE);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        abort();
    if (fix) {
        uint8_t hdr[16] = { 'H', 'K', 'M', 'S', 'T', 'A', 'T', 'E' };
        uint32_t len = (uint32_t)size, crc = hkd_crc32(data, size);
        for (int i = 0; i < 4; i++) {
            hdr[8 + i] = (uint8_t)(len >> (8 * i));
            hdr[12 + i] = (uint8_t)(crc >> (8 * i));
        }
        if (write(fd, hdr, sizeof hdr) != (ssize_t)sizeof hdr)
            abort();
    }
    if (size && write(fd, data, size) != (ssize_t)size)
        abort();
    close(fd);

    uint8_t *buf;
    size_t len;
    char aside[1024] = "";
    int r = hkd_state_load(dir, &buf, &len, aside, sizeof aside);
    if (r == 0) {
        hkd_site_state *st;
        size_t n;
        uint64_t gen;
        if (hkd_policy_decode(buf, len, &st, &n, &gen) == 0) {
            check_clean(st, n);
            free(st);
        }
        free(buf);
    }
    if (*aside == '/')
        unlink(aside);
    unlink(path);
    return 0;
}
