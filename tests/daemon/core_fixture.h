/* For test binaries that drive the daemon core in their own process: a
 * private segment name and state directory, made before the tests and
 * removed after, and the segment mapped as a client would map it. */
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
#include "segment.h"

static char dir[256], shm[64];

/* 0, or -1 when the state directory cannot be made. */
static inline int core_fixture_begin(const char *name)
{
    hkd_log_init(name, HKD_LOG_ERR);
    snprintf(dir, sizeof dir, "/tmp/hkd-%s-XXXXXX", name);
    if (!mkdtemp(dir))
        return -1;
    snprintf(shm, sizeof shm, "/hkd-%s-%d", name, (int)getpid());
    shm_unlink(shm);
    hkd_reader_thread_enter();
    return 0;
}

/* The tests' result, made a failure when cleaning up fails. */
static inline int core_fixture_end(int rc)
{
    hkd_reader_thread_leave();
    shm_unlink(shm);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0 && rc == 0)
        rc = 1;
    return rc;
}

/* The segment hkd_core_init created, or NULL. */
static inline hkshm_header *core_fixture_map(void)
{
    int fd = shm_open(shm, O_RDWR, 0);
    if (fd < 0)
        return NULL;
    void *p = mmap(NULL, HKSHM_SEGMENT_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    return p == MAP_FAILED ? NULL : p;
}

/* Slot 0 of the segment, owned by this (live) process as a client's. */
static inline hkshm_slot *core_fixture_claim(hkshm_header *h)
{
    hkshm_slot *s = hkshm_slot_at(h, 0);
    atomic_store(&s->pid, (uint32_t)getpid());
    s->start_time = hkd_proc_start_time(getpid());
    atomic_store(&s->state, HKSHM_SLOT_LIVE);
    return s;
}

/* Slots [0, n) owned by this (live) process, as n clients' would be. */
static inline void core_fixture_claim_slots(hkshm_header *h, uint32_t n)
{
    uint64_t start = hkd_proc_start_time(getpid());
    for (uint32_t p = 0; p < n; p++) {
        hkshm_slot *s = hkshm_slot_at(h, p);
        atomic_store(&s->pid, (uint32_t)getpid());
        s->start_time = start;
        atomic_store(&s->state, HKSHM_SLOT_LIVE);
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

/* The core on the fixture's segment (100 ms intervals, default learner),
 * and the segment mapped; NULL when either fails. */
static inline hkshm_header *core_fixture_start(int learning, const char *state_dir)
{
    hkd_core_cfg cfg = { .shm_name = shm, .state_dir = state_dir, .interval_ms = 100, .learning = learning,
                         .learn = hkd_learn_default_cfg };
    if (hkd_core_init(&cfg) != 0)
        return NULL;
    return core_fixture_map();
}

/* Stops the core, gives back slots [0, n) and unmaps the segment. */
static inline void core_fixture_stop(hkshm_header *h, uint32_t n)
{
    hkd_core_shutdown();
    for (uint32_t p = 0; p < n; p++)
        atomic_store(&hkshm_slot_at(h, p)->pid, 0);
    munmap(h, HKSHM_SEGMENT_SIZE);
}

#endif
