/* Simulated clients for the daemon's tests, benches and fuzzers: a report
 * region made as a client makes one (a memfd, sealed against shrinking and
 * growing, identity written), written through the caller's own mapping. */
#ifndef HKD_TEST_REGION_FIXTURE_H
#define HKD_TEST_REGION_FIXTURE_H

#include <dirent.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hakmem_shm.h"
#include "registry.h"
#include "segment.h"

/* A region writable through *out; its descriptor (the caller's to close),
 * or -1.  seals: what to seal it with (F_SEAL_SHRINK | F_SEAL_GROW is what
 * the daemon wants). */
static inline int region_make(hkshm_region **out, uint32_t registration, const char *exe, int seals)
{
    *out = NULL;
    int fd = memfd_create("hkd-test-region", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -1;
    void *p = MAP_FAILED;
    if (ftruncate(fd, HKSHM_REGION_SIZE) == 0)
        p = mmap(NULL, HKSHM_REGION_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED || (seals && fcntl(fd, F_ADD_SEALS, seals) < 0)) {
        if (p != MAP_FAILED)
            munmap(p, HKSHM_REGION_SIZE);
        close(fd);
        return -1;
    }
    hkshm_region *r = p;
    r->magic = HKSHM_REGION_MAGIC;
    r->abi_version = HKSHM_ABI_VERSION;
    r->region_size = HKSHM_REGION_SIZE;
    r->registration = registration;
    r->binary_hash = 0xb1;
    snprintf(r->exe, sizeof r->exe, "%s", exe ? exe : "/usr/bin/region-test");
    *out = r;
    return fd;
}

/* A region registered in-process (no connection) for pid/uid; NULL when
 * refused (why says why). */
static inline hkshm_region *region_register(pid_t pid, uid_t uid, uint32_t registration, const char *exe,
                                            char *why, size_t whylen)
{
    hkshm_region *r;
    int fd = region_make(&r, registration, exe, F_SEAL_SHRINK | F_SEAL_GROW);
    if (fd < 0) {
        snprintf(why, whylen, "cannot make a region");
        return NULL;
    }
    int rc = hkd_registry_add_local(fd, pid, uid, why, whylen);
    close(fd);
    if (rc < 0) {
        munmap(r, HKSHM_REGION_SIZE);
        return NULL;
    }
    return r;
}

/* A client's flush: odd seq, the writes, even seq. */
static inline void region_write_begin(hkshm_region *r)
{
    uint64_t seq = atomic_load_explicit(&r->seq, memory_order_relaxed);
    atomic_store_explicit(&r->seq, seq | 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

static inline void region_write_end(hkshm_region *r)
{
    uint64_t seq = atomic_load_explicit(&r->seq, memory_order_relaxed);
    r->flushes++;
    atomic_store_explicit(&r->seq, (seq | 1) + 1, memory_order_release);
    atomic_store(&r->heartbeat_ns, hkd_now_ns());
}

/* Descriptors this process has open (to show nothing leaked). */
static inline int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

#endif
