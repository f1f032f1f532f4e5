/* For test binaries that drive the daemon core in their own process: a
 * private segment name and state directory, made before the tests and
 * removed after, the segment mapped read-only as a client maps it, and
 * simulated clients registered in-process (region_fixture.h). */
#ifndef HKD_TEST_CORE_FIXTURE_H
#define HKD_TEST_CORE_FIXTURE_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core.h"
#include "core_api.h"
#include "hakmem_shm.h"
#include "log.h"
#include "persist.h"
#include "region_fixture.h"
#include "segment.h"

static char dir[256], shm[64], shm_lock[96];

/* 0, or -1 when the state directory cannot be made. */
static inline int core_fixture_begin(const char *name)
{
    hkd_log_init(name, HKD_LOG_ERR);
    snprintf(dir, sizeof dir, "/tmp/hkd-%s-XXXXXX", name);
    if (!mkdtemp(dir))
        return -1;
    snprintf(shm, sizeof shm, "/hkd-%s-%d", name, (int)getpid());
    snprintf(shm_lock, sizeof shm_lock, "/dev/shm%s.lock", shm);
    shm_unlink(shm);
    hkd_reader_thread_enter();
    return 0;
}

/* The tests' result, made a failure when cleaning up fails. */
static inline int core_fixture_end(int rc)
{
    hkd_reader_thread_leave();
    shm_unlink(shm);
    unlink(shm_lock);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0 && rc == 0)
        rc = 1;
    return rc;
}

/* The segment hkd_core_init made, mapped read-only; NULL on failure. */
static inline const hkshm_header *core_fixture_map(void)
{
    int fd = shm_open(shm, O_RDONLY, 0);
    if (fd < 0)
        return NULL;
    void *p = mmap(NULL, HKSHM_SEGMENT_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    return p == MAP_FAILED ? NULL : p;
}

/* n simulated processes (pid 0: no liveness of their own, uid 1000 + i %
 * uids), first registrations; fails the test binary when one is refused. */
static inline void core_fixture_clients(hkshm_region **out, uint32_t n, uint32_t uids)
{
    char why[256];
    for (uint32_t i = 0; i < n; i++) {
        char exe[32];
        snprintf(exe, sizeof exe, "/usr/bin/sim%u", i);
        out[i] = region_register(0, 1000 + i % (uids ? uids : 1), 1, exe, why, sizeof why);
        if (!out[i]) {
            fprintf(stderr, "simulated client %u refused: %s\n", i, why);
            exit(1);
        }
    }
}

/* The state file in the fixture's directory, decoded (it must be there). */
static inline hkd_policy core_fixture_read_state(void)
{
    uint8_t *buf;
    size_t len;
    char aside[512];
    assert_int_equal(hkd_state_load(dir, &buf, &len, aside, sizeof aside), 0);
    hkd_policy pol;
    assert_int_equal(hkd_policy_decode(buf, len, 0, &pol), 0);
    free(buf);
    return pol;
}

/* The core on the fixture's segment (100 ms intervals, default learner,
 * users' limits as wide as they go: test_domains is about those), and the
 * segment mapped; NULL when either fails. */
static inline const hkshm_header *core_fixture_start(int learning, const char *state_dir)
{
    hkd_core_cfg cfg = { .shm_name = shm, .state_dir = state_dir, .interval_ms = 100, .learning = learning,
                         .learn = hkd_learn_default_cfg, .max_sites_per_user = HKD_MAX_SITES / 2,
                         .new_sites_per_interval = HKD_MAX_SITES };
    if (hkd_core_init(&cfg) != 0)
        return NULL;
    return core_fixture_map();
}

/* Stops the core (dropping every registration) and unmaps the segment and
 * the n regions. */
static inline void core_fixture_stop(const hkshm_header *h, hkshm_region **regions, uint32_t n)
{
    hkd_core_shutdown();
    for (uint32_t p = 0; p < n; p++)
        munmap(regions[p], HKSHM_REGION_SIZE);
    munmap((void *)h, HKSHM_SEGMENT_SIZE);
}

#endif
