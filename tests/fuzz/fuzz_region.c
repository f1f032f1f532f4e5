/* libFuzzer harness: a client's report region, as the daemon reads it.
 *
 * Each input is one registration of a sealed memfd region and a few
 * snapshots of its content, fed through the code the daemon runs every
 * interval: the registry (begin, end), the collector (snapshot, bounds,
 * differences, the last collection of an ended registration) and the
 * publisher's look at the region's read_gen.  The input:
 *
 *   byte 0   snapshots (low 2 bits + 1), registration 1 or 2 (bit 2),
 *            keep an odd seq (bit 3), end the registration at the last (bit 4)
 *   rest     split evenly among the snapshots; each is copied over the
 *            region from its start (the identity included: the owner may
 *            rewrite it after registering), what it does not cover stays
 *
 * The callbacks check what the daemon's core relies on: module paths and
 * exe names terminated inside their fields and free of control bytes. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "collector.h"
#include "hakmem_shm.h"
#include "log.h"
#include "publisher.h"
#include "registry.h"

static hkshm_region *region;         /* the owner's mapping */
static int region_fd = -1;
static hkd_collector *collector;
static hkshm_header *header;         /* a private one: the publisher's side */
uint64_t hist_sink;                  /* every reported histogram count is read into it */

static void check_string(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    if (len == n)
        abort();                     /* unterminated */
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
            abort();
}

static void on_site(const hkd_site_delta *d, void **cookie, void *arg)
{
    (void)arg;
    check_string(d->module, HKSHM_MODULE_PATH);
    for (uint32_t b = 0; d->changed && d->has_hist && b < HKSHM_HIST; b++)
        hist_sink += d->hist[b];
    if (!*cookie)
        *cookie = (void *)d;         /* any pointer: the collector only prefetches it */
}

static void on_proc(const hkd_proc_info *p, void *arg)
{
    (void)arg;
    check_string(p->exe, sizeof p->exe);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    hkd_log_init("fuzz_region", HKD_LOG_ERR);
    region_fd = memfd_create("fuzz-region", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (region_fd < 0 || ftruncate(region_fd, HKSHM_REGION_SIZE) < 0 ||
        fcntl(region_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
        abort();
    region = mmap(NULL, HKSHM_REGION_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, region_fd, 0);
    header = mmap(NULL, HKSHM_SEGMENT_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    collector = hkd_collector_new(0, 1);
    if (region == MAP_FAILED || header == MAP_FAILED || !collector || hkd_registry_init(4, 4, 0) < 0)
        abort();
    header->reader_timeout_ms = 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t ctl = data[0];
    uint32_t snaps = (ctl & 3u) + 1;
    data++, size--;
    memset(region, 0, HKSHM_REGION_SIZE);
    region->magic = HKSHM_REGION_MAGIC;
    region->abi_version = HKSHM_ABI_VERSION;
    region->region_size = HKSHM_REGION_SIZE;
    region->registration = ctl & 4 ? 2 : 1;
    char why[256];
    if (hkd_registry_add_local(region_fd, 0, 1000, why, sizeof why) < 0)
        abort();
    hkd_collect_ops ops = { .site = on_site, .proc = on_proc };
    size_t chunk = size / snaps;
    if (chunk > HKSHM_REGION_SIZE)
        chunk = HKSHM_REGION_SIZE;
    for (uint32_t k = 0; k < snaps; k++) {
        memcpy(region, data + k * chunk, chunk);
        if (!(ctl & 8))
            region->seq &= ~1ull;
        hkd_registry_begin_interval();
        if (k + 1 == snaps && (ctl & 16))
            hkd_registry_end(0);
        hkd_collect_stats st;
        hkd_collect(collector, &ops, NULL, &st);
        hkd_grace_passed(header, k % HKSHM_TABLES, (uint64_t)k * 2000000, NULL);
        hkd_registry_end_interval();
    }
    /* The next input is a new registration at the same entry. */
    hkd_registry_end(0);
    hkd_registry_begin_interval();
    hkd_registry_end_interval();
    if (hkd_registry_count() != 0)
        abort();
    return 0;
}
