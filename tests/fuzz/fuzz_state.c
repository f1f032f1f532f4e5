/* Fuzzes the state-file loader (persist.c hkd_state_load) and what it
 * hands on (hkd_policy_decode): the input is written as state.pb in a
 * private directory.  Byte 0 bit 0 set: the harness gives the rest a valid
 * header (magic, length, CRC), so that the payload reaches the decoder;
 * clear: the rest is the file as it is. */
#include "clean_paths.h"
#include "persist.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

/* The directory and what the loader may have left in it (the state file,
 * one set aside), whenever the fuzzer exits. */
static void remove_dir(void)
{
    DIR *d = dir[0] ? opendir(dir) : NULL;
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
    if (rmdir(dir) != 0)
        fprintf(stderr, "fuzz_state: could not remove %s\n", dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/fuzz_state.XXXXXX", base);
    if (!mkdtemp(dir))
        abort();
    atexit(remove_dir);
    return 0;
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
        hkd_policy pol;
        if (hkd_policy_decode(buf, len, 0, &pol) == 0) {
            check_clean_paths(&pol);
            hkd_policy_free(&pol);
        }
        free(buf);
    }
    if (*aside == '/')
        unlink(aside);
    unlink(path);
    return 0;
}
