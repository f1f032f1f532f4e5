/* Segment, collector and publisher against a real private shm segment:
 * the cross-process grace period, snapshot consistency under a concurrent
 * writer, slot claim and reap (with pid reuse). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "collector.h"
#include "hakmem_shm.h"
#include "publisher.h"
#include "segment.h"

static char name[64];
static hkd_segment seg;

static int setup(void **state)
{
    (void)state;
    snprintf(name, sizeof name, "/hkd-unit-%d", (int)getpid());
    shm_unlink(name);
    return hkd_segment_open(&seg, name) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    hkd_segment_close(&seg);
    shm_unlink(name);
    return 0;
}

static uint32_t dead_pid(void)
{
    pid_t p = fork();
    if (p == 0)
        _exit(0);
    waitpid(p, NULL, 0);
    return (uint32_t)p;
}

/* The client's claim protocol, as libclient/shm_client.c does it. */
static hkshm_slot *claim(uint32_t pid, uint64_t start_time, uint64_t heartbeat)
{
    for (uint32_t i = 0; i < HKSHM_MAX_SLOTS; i++) {
        hkshm_slot *s = hkshm_slot_at(seg.hdr, i);
        uint32_t zero = 0;
        if (atomic_compare_exchange_strong(&s->pid, &zero, pid)) {
            atomic_store(&s->state, HKSHM_SLOT_CLAIMING);
            s->start_time = start_time;
            atomic_store(&s->heartbeat_ns, heartbeat);
            atomic_store(&s->state, HKSHM_SLOT_LIVE);
            return s;
        }
    }
    return NULL;
}

static void segment_header_is_valid(void **state)
{
    (void)state;
    assert_null(hkshm_header_mismatch(seg.hdr, HKSHM_SEGMENT_SIZE));
    assert_int_equal(atomic_load(&seg.hdr->daemon_pid), (uint32_t)getpid());
    /* A second daemon on the segment is refused while the owner lives
     * (pid 1 stands in for another live hakmemd). */
    hkd_segment other;
    atomic_store(&seg.hdr->daemon_start_time, hkd_proc_start_time(1));
    atomic_store(&seg.hdr->daemon_pid, 1);
    assert_int_equal(hkd_segment_open(&other, name), -EBUSY);
    /* A recorded owner that is dead (or whose pid was reused) is not. */
    atomic_store(&seg.hdr->daemon_start_time, hkd_proc_start_time(1) + 99);
    /* After we step down it adopts, keeping the slots. */
    hkshm_slot *s = claim((uint32_t)getpid(), 1, hkd_now_ns());
    assert_non_null(s);
    atomic_store(&seg.hdr->daemon_pid, 0);
    assert_int_equal(hkd_segment_open(&other, name), 0);
    assert_int_equal(other.adopted, 1);
    assert_int_equal(atomic_load(&hkshm_slot_at(other.hdr, 0)->pid), (uint32_t)getpid());
    munmap(other.hdr, HKSHM_SEGMENT_SIZE);
    hkd_slot_reap(s, (uint32_t)getpid());
}

static void foreign_segment_is_replaced(void **state)
{
    (void)state;
    char n2[64];
    snprintf(n2, sizeof n2, "/hkd-unit-foreign-%d", (int)getpid());
    int fd = shm_open(n2, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 12345), 0);
    close(fd);
    hkd_segment s2;
    assert_int_equal(hkd_segment_open(&s2, n2), 0);
    assert_int_equal(s2.adopted, 0);
    assert_string_equal(s2.why_recreated, "segment size");
    assert_null(hkshm_header_mismatch(s2.hdr, HKSHM_SEGMENT_SIZE));
    hkd_segment_close(&s2);
    shm_unlink(n2);
}

static hkshm_policy entry(uint64_t h, uint64_t o)
{
    hkshm_policy e = { .module_hash = h, .offset = o, .large_threshold = 1 << 20, .bigcache_slots = 4, .thp = 1 };
    return e;
}

static void grace_period_holds_for_live_reader(void **state)
{
    (void)state;
    hkshm_header *h = seg.hdr;
    hkshm_policy e[2] = { entry(1, 1), entry(1, 2) };
    uint64_t g1, g2, g3;
    assert_int_equal(hkd_publish(h, e, 2, &g1), 0);
    hkshm_slot *reader = claim((uint32_t)getpid(), hkd_proc_start_time(getpid()), hkd_now_ns());
    assert_non_null(reader);
    /* The reader enters a read of g1 and never leaves it. */
    atomic_store(&reader->read_gen, g1);
    assert_int_equal(hkd_publish(h, e, 2, &g2), 0);   /* goes to the other copy */
    assert_true(g2 == g1 + 1);
    uint32_t t_g1 = (atomic_load(&h->active) + 1) % HKSHM_TABLES;
    assert_int_equal(atomic_load(&hkshm_table_at(h, t_g1)->generation), g1);
    uint32_t holder = 0;
    assert_int_equal(hkd_grace_passed(h, t_g1, &holder), 0);
    assert_int_equal(holder, (uint32_t)getpid());
    for (int i = 0; i < 5; i++)
        assert_int_equal(hkd_publish(h, e, 2, &g3), -EAGAIN);
    /* Its copy was not touched. */
    assert_int_equal(atomic_load(&hkshm_table_at(h, t_g1)->generation), g1);
    assert_int_equal(atomic_load(&h->generation), g2);
    /* Moving on to the newer generation (or leaving the read) releases it. */
    atomic_store(&reader->read_gen, g2);
    assert_int_equal(hkd_publish(h, e, 2, &g3), 0);
    assert_true(g3 == g2 + 1);
    atomic_store(&reader->read_gen, 0);
    hkd_slot_reap(reader, (uint32_t)getpid());
}

static void grace_period_ignores_dead_reader(void **state)
{
    (void)state;
    hkshm_header *h = seg.hdr;
    hkshm_policy e[1] = { entry(9, 9) };
    uint64_t g, g2;
    assert_int_equal(hkd_publish(h, e, 1, &g), 0);
    uint32_t dp = dead_pid();
    hkshm_slot *reader = claim(dp, 777, hkd_now_ns());
    assert_non_null(reader);
    atomic_store(&reader->read_gen, g);
    assert_int_equal(hkd_publish(h, e, 1, &g2), 0);
    assert_int_equal(hkd_publish(h, e, 1, &g2), 0);   /* would reuse the copy it "holds" */
    hkd_slot_reap(reader, dp);
}

/* ---- snapshot consistency ---- */

static _Atomic int stop_writer;
static hkshm_slot *wslot;

static void *writer(void *arg)
{
    (void)arg;
    uint64_t v = 0;
    while (!atomic_load(&stop_writer)) {
        v++;
        uint64_t seq = atomic_load_explicit(&wslot->seq, memory_order_relaxed);
        atomic_store_explicit(&wslot->seq, seq + 1, memory_order_relaxed);
        atomic_thread_fence(memory_order_release);
        for (int i = 0; i < 64; i++) {
            hkshm_site *s = &wslot->sites[i];
            __atomic_store_n(&s->allocs, v, __ATOMIC_RELAXED);
            __atomic_store_n(&s->bytes, v * 3, __ATOMIC_RELAXED);
            __atomic_store_n(&s->slow_ns, v * 7, __ATOMIC_RELAXED);
            __atomic_store_n(&s->size_hist[5], (uint32_t)v, __ATOMIC_RELAXED);
        }
        __atomic_store_n(&wslot->page_faults, v, __ATOMIC_RELAXED);
        wslot->n_sites = 64;
        atomic_store_explicit(&wslot->seq, seq + 2, memory_order_release);
    }
    return NULL;
}

static void snapshot_is_consistent_under_writer(void **state)
{
    (void)state;
    wslot = claim((uint32_t)getpid(), hkd_proc_start_time(getpid()), hkd_now_ns());
    assert_non_null(wslot);
    static hkshm_slot snap;
    atomic_store(&stop_writer, 0);
    pthread_t th;
    pthread_create(&th, NULL, writer, NULL);
    int ok = 0, busy = 0;
    for (int n = 0; n < 20000; n++) {
        if (hkd_slot_snapshot(wslot, &snap, 64) < 0) {
            busy++;
            continue;
        }
        ok++;
        uint64_t v = snap.page_faults;
        if (snap.n_sites == 0)
            continue;
        assert_int_equal(snap.n_sites, 64);
        for (int i = 0; i < 64; i++) {
            assert_int_equal(snap.sites[i].allocs, v);
            assert_int_equal(snap.sites[i].bytes, v * 3);
            assert_int_equal(snap.sites[i].slow_ns, v * 7);
            assert_int_equal(snap.sites[i].size_hist[5], (uint32_t)v);
        }
    }
    atomic_store(&stop_writer, 1);
    pthread_join(th, NULL);
    assert_true(ok > 0);
    /* A writer that died mid-flush leaves an odd sequence: never a torn copy. */
    atomic_store(&wslot->seq, 11);
    assert_int_equal(hkd_slot_snapshot(wslot, &snap, 4), -EBUSY);
    atomic_store(&wslot->seq, 12);
    (void)busy;
    hkd_slot_reap(wslot, (uint32_t)getpid());
}

/* ---- claim and reap ---- */

typedef struct seen {
    uint64_t allocs;
    int calls;
    uint32_t procs;
} seen;

static void on_site(const hkd_site_delta *d, void **cookie, void *arg)
{
    (void)cookie;
    seen *s = arg;
    if (d->changed && d->key.module_hash == 0xABC) {
        s->allocs += d->allocs;
        s->calls++;
    }
}

static void on_proc(const hkd_proc_info *p, void *arg)
{
    (void)p;
    ((seen *)arg)->procs++;
}

static void set_site(hkshm_slot *s, uint64_t allocs)
{
    atomic_fetch_add(&s->seq, 1);
    s->sites[0].module_hash = 0xABC;
    s->sites[0].offset = 0x10;
    s->sites[0].allocs = allocs;
    s->n_sites = 1;
    s->flushes++;
    atomic_fetch_add(&s->seq, 1);
    atomic_store(&s->heartbeat_ns, hkd_now_ns());
}

static void claim_and_reap_with_pid_reuse(void **state)
{
    (void)state;
    hkshm_header *h = seg.hdr;
    hkd_collector *c = hkd_collector_new();
    hkd_collect_ops ops = { .site = on_site, .proc = on_proc };
    hkd_collect_stats st;
    seen sn = { 0 };
    uint32_t me = (uint32_t)getpid();
    uint64_t my_start = hkd_proc_start_time(getpid());
    assert_true(my_start > 0);

    hkshm_slot *live = claim(me, my_start, hkd_now_ns());
    set_site(live, 100);
    /* Our pid, but another start time: a dead process whose pid we reused.
     * Its heartbeat is old, so the daemon checks /proc. */
    hkshm_slot *reused = claim(me, my_start + 12345, 1);
    uint32_t dp = dead_pid();
    hkshm_slot *dead = claim(dp, 42, 1);
    assert_non_null(live);
    assert_non_null(reused);
    assert_non_null(dead);

    /* First pass: what it finds is history (no deltas), the dead go. */
    assert_int_equal(hkd_collect(c, h, &ops, &sn, &st), 0);
    assert_int_equal(sn.allocs, 0);
    assert_int_equal(atomic_load(&dead->pid), 0);
    assert_int_equal(atomic_load(&live->pid), me);

    set_site(live, 250);
    int reaped_at = -1;
    for (int pass = 0; pass < 20; pass++) {
        atomic_store(&live->heartbeat_ns, hkd_now_ns());
        hkd_collect(c, h, &ops, &sn, &st);
        if (reaped_at < 0 && atomic_load(&reused->pid) == 0)
            reaped_at = pass;
    }
    assert_true(reaped_at >= 0);
    assert_int_equal(atomic_load(&live->pid), me);
    assert_int_equal(sn.allocs, 150);            /* 250 - 100, counted once */

    /* A freed slot can be claimed again with one CAS. */
    hkshm_slot *again = claim(me, my_start, hkd_now_ns());
    assert_non_null(again);

    /* Exit: the final counters are collected, then the slot is freed. */
    set_site(live, 400);
    atomic_store(&live->state, HKSHM_SLOT_EXITED);
    sn.allocs = 0;
    hkd_collect(c, h, &ops, &sn, &st);
    assert_int_equal(sn.allocs, 150);
    assert_int_equal(atomic_load(&live->pid), 0);
    assert_true(st.reaped >= 1);

    hkd_slot_reap(again, me);
    hkd_collector_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(segment_header_is_valid),
        cmocka_unit_test(foreign_segment_is_replaced),
        cmocka_unit_test(grace_period_holds_for_live_reader),
        cmocka_unit_test(grace_period_ignores_dead_reader),
        cmocka_unit_test(snapshot_is_consistent_under_writer),
        cmocka_unit_test(claim_and_reap_with_pid_reuse),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
