/* Policy reader box: which segments are trusted (owner, mode, ABI and
 * layout), that the client maps it read-only, and what is applied from it:
 * only this domain's site and binary entries, only valid values, nothing
 * from a read whose copy was rewritten under it.  The test plays the
 * daemon, writing a segment the reader maps read-only. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "command.h"
#include "fake_daemon.h"
#include "hakmem.h"
#include "init.h"
#include "modules.h"
#include "knobs.h"
#include "options.h"
#include "os.h"
#include "policy_reader.h"
#include "region.h"
#include "shm_client.h"
#include "site.h"
#include "unit_util.h"

#define NOBODY 65534

static char name[64];
static hk_options saved;

static int setup(void **state)
{
    (void)state;
    hk_process_init();
    hk_region_init();
    saved = hk_opt;
    snprintf(name, sizeof name, "/hakmem-unit-policy-%d", (int)getpid());
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    hk_policy_close();
    shm_unlink(name);
    hk_opt = saved;
    hk_site_reset_policies();
    return 0;
}

static int open_seg(const int64_t *uids, int n, char *why)
{
    return hk_policy_open(name, uids, n, why, 160);
}

/* ---- trust ---- */

static void test_trusted_segment_maps_read_only(void **state)
{
    (void)state;
    void *seg = seg_create(name, HKSHM_SEGMENT_SIZE, 0600, -1, 1);
    char why[160];
    assert_int_equal(open_seg(NULL, 0, why), 0);
    const hkshm_header *h = hk_policy_header();
    assert_non_null(h);
    /* Mapped without write permission: a store would fault. */
    char maps[4096];
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    int found = 0;
    char want[96];
    snprintf(want, sizeof want, "/dev/shm%s", name);
    while (fgets(maps, sizeof maps, f)) {
        unsigned long lo;
        char perms[8];
        if (sscanf(maps, "%lx-%*x %7s", &lo, perms) == 2 && lo == (uintptr_t)h && strstr(maps, want)) {
            assert_string_equal(perms, "r--s");
            found = 1;
        }
    }
    fclose(f);
    assert_true(found);
    munmap(seg, HKSHM_SEGMENT_SIZE);
}

static void test_untrusted_segments_refused(void **state)
{
    (void)state;
    char why[160];
    void *seg = seg_create(name, HKSHM_SEGMENT_SIZE, 0666, -1, 1);
    assert_int_equal(open_seg(NULL, 0, why), -EPERM);
    assert_non_null(strstr(why, "writable by group or others (mode 0666)"));
    assert_null(hk_policy_header());
    munmap(seg, HKSHM_SEGMENT_SIZE);
    seg = seg_create(name, HKSHM_SEGMENT_SIZE, 0620, -1, 1);
    assert_int_equal(open_seg(NULL, 0, why), -EPERM);
    munmap(seg, HKSHM_SEGMENT_SIZE);
    if (geteuid() != 0) {
        print_message("skipped: handing a file to another uid needs root\n");
        skip();
    }
    seg = seg_create(name, HKSHM_SEGMENT_SIZE, 0600, NOBODY, 1);
    int64_t me = (int64_t)geteuid();
    assert_int_equal(open_seg(&me, 1, why), -EPERM);
    assert_non_null(strstr(why, "owned by uid 65534"));
    /* The same segment, when the daemon's uid (socket owner or peer) is nobody. */
    int64_t daemon_uid[2] = { me, NOBODY };
    assert_int_equal(open_seg(daemon_uid, 2, why), 0);
    munmap(seg, HKSHM_SEGMENT_SIZE);
}

static void test_incompatible_segments_refused(void **state)
{
    (void)state;
    char why[160];
    /* An ABI-1 segment: its own magic and version, its own size. */
    uint64_t *old = seg_create(name, 18157696, 0600, -1, 0);
    old[0] = 0x314D48534D4B4148ull;
    ((uint32_t *)old)[2] = 1;
    assert_int_equal(open_seg(NULL, 0, why), -EPROTO);
    char want[96];
    snprintf(want, sizeof want, "incompatible segment (ABI version 1, this library speaks %u)", HKSHM_ABI_VERSION);
    assert_string_equal(why, want);
    munmap(old, 18157696);
    /* Right size, other layout; right size, magic not stored yet. */
    hkshm_header *h = seg_create(name, HKSHM_SEGMENT_SIZE, 0600, -1, 1);
    h->site_cap = 1;
    assert_int_equal(open_seg(NULL, 0, why), -EPROTO);
    assert_string_equal(why, "incompatible segment (layout)");
    munmap(h, HKSHM_SEGMENT_SIZE);
    h = seg_create(name, HKSHM_SEGMENT_SIZE, 0600, -1, 0);
    assert_int_equal(open_seg(NULL, 0, why), -EPROTO);
    assert_string_equal(why, "incompatible segment (magic)");
    munmap(h, HKSHM_SEGMENT_SIZE);
    /* Too small to say anything. */
    h = seg_create(name, 8, 0600, -1, 0);
    assert_int_equal(open_seg(NULL, 0, why), -EPROTO);
    assert_non_null(strstr(why, "8 bytes"));
    munmap(h, 8);
}

/* Through the client: the ABI-1 segment is said once at HAKMEM_VERBOSE=1. */
static void child_abi1(void *arg)
{
    (void)arg;
    setenv("HAKMEM_MODE", "learning", 1);   /* anything but baseline */
    setenv("HAKMEM_SHM", name, 1);
    setenv("HAKMEM_SOCKET", "/nonexistent/hakmem.sock", 1);
    setenv("HAKMEM_VERBOSE", "1", 1);
    hk_options_load();
    hk_shm_client_init();
    uint64_t now = hk_now_ns();
    for (unsigned i = 1; i <= 5; i++)
        hk_shm_client_tick(now + i * 3000000000ull);
}

static void test_abi1_said_once(void **state)
{
    (void)state;
    uint64_t *old = seg_create(name, 18157696, 0600, -1, 0);
    old[0] = 0x314D48534D4B4148ull;
    ((uint32_t *)old)[2] = 1;
    ut_child c;
    ut_run_child(child_abi1, NULL, &c);
    munmap(old, 18157696);
    assert_true(c.exited && c.exit_code == 0);
    char line[128];
    snprintf(line, sizeof line, "incompatible segment (ABI version 1, this library speaks %u); running on defaults\n",
             HKSHM_ABI_VERSION);
    const char *at = strstr(c.err, line);
    if (!at) fail_msg("stderr:\n%s", c.err);
    assert_null(strstr(at + 1, line));              /* once, not every retry */
}

/* ---- reading policy ---- */

typedef struct keyed {
    uint32_t index;
    uint64_t hash, offset;
} keyed;

static void find_cb(const hk_site_view *v, void *arg)
{
    keyed *k = arg;
    if (v->index == k->index) {
        k->hash = v->module_hash;
        k->offset = v->offset;
    }
}

/* Three sites at real code addresses (they resolve to this executable). */
static keyed sites[3];

static void make_sites(void)
{
    for (int i = 0; i < 3; i++) {
        sites[i].index = hk_site_of(NULL, (uintptr_t)&make_sites + 16 * (uintptr_t)(i + 1));
        assert_true(sites[i].index < HK_SITE_MAX);
        hk_site_for_each(find_cb, &sites[i]);
        assert_int_not_equal(sites[i].hash, 0);
    }
}

static hkshm_site_policy site_entry(uint32_t domain, const keyed *k, uint32_t thr, uint16_t slots, uint8_t thp, uint32_t arm)
{
    return (hkshm_site_policy){ .domain = domain, .module_hash = k->hash, .offset = k->offset,
                                .large_threshold = thr, .bigcache_slots = slots, .thp = thp, .arm = arm };
}

static uint64_t exe_hash(void)
{
    uint8_t id[HKSHM_BUILD_ID_MAX];
    int n = hk_module_exe_build_id(id, sizeof id);
    assert_true(n > 0);
    return hk_module_hash(id, (size_t)n);
}

static void test_applies_own_domain_only(void **state)
{
    (void)state;
    make_sites();
    uint32_t me = (uint32_t)geteuid(), other = me + 1000;
    uint64_t bh = exe_hash();
    assert_int_equal(bh, oracle_exe_hash());
    void *seg = seg_create(name, HKSHM_SEGMENT_SIZE, 0600, -1, 1);
    hkshm_site_policy s[] = {
        site_entry(me, &sites[0], 256 << 10, 2, 1, 5),
        site_entry(other, &sites[0], 512 << 10, 3, 0, 6),      /* another user's */
        site_entry(me, &sites[1], 1024, 2, 0, 7),              /* threshold below the minimum */
        site_entry(me, &sites[2], 256 << 10, 99, 0, 8),        /* too many slots */
        site_entry(other, &sites[2], 128 << 10, 1, 0, 9),
    };
    s[4].thp = 7;
    hkshm_binary_policy b[2] = {
        { .domain = me, .arm = 3, .binary_hash = bh, .set = 1u << HKSHM_KNOB_PURGE_DELAY_MS | 1u << HKSHM_KNOB_LARGE_THRESHOLD | 1u << 7,
          .knob = { [HKSHM_KNOB_PURGE_DELAY_MS] = 777, [HKSHM_KNOB_LARGE_THRESHOLD] = 128 << 10, [7] = 1 } },
        { .domain = other, .arm = 4, .binary_hash = bh, .set = 1u << HKSHM_KNOB_PURGE_DELAY_MS,
          .knob = { [HKSHM_KNOB_PURGE_DELAY_MS] = 555 } },
    };
    seg_publish(seg, 1, 5, s, 5, b, 2);
    char why[160];
    assert_int_equal(open_seg(NULL, 0, why), 0);
    assert_int_equal(hk_region_create(1), 0);
    hkshm_region *r = hk_region_get();
    uint32_t default_threshold = hk_knob(HK_KNOB_LARGE_THRESHOLD);

    assert_int_equal(hk_policy_apply(me, bh, 0, r), 1);
    hk_site_policy p0 = hk_site_policy_get(sites[0].index);
    assert_true(p0.from_daemon);
    assert_int_equal(p0.large_threshold, 256 << 10);
    assert_int_equal(p0.bigcache_slots, 2);
    assert_int_equal(p0.thp, 1);
    assert_false(hk_site_policy_get(sites[1].index).from_daemon);
    assert_false(hk_site_policy_get(sites[2].index).from_daemon);
    assert_int_equal(hk_knob(HK_KNOB_PURGE_DELAY_MS), 777);
    assert_int_equal(hk_knob(HK_KNOB_LARGE_THRESHOLD), 128 << 10);
    assert_int_equal(atomic_load(&r->gen_seen), 5);
    assert_int_equal(atomic_load(&r->read_gen), 0);
    hk_region_flush(0);
    assert_int_equal(r->binary_arm, 3);
    assert_int_equal(r->sites_applied, 1);
    assert_int_equal(hk_policy_apply(me, bh, 0, r), 0);    /* nothing new */

    /* The other domain's process sees the other entries. */
    hk_site_reset_policies();
    hk_policy_forget_generation();
    hk_policy_binary_since(UINT64_MAX);
    assert_int_equal(hk_policy_apply(other, bh, 0, r), 1);
    assert_int_equal(hk_site_policy_get(sites[0].index).large_threshold, 512 << 10);
    assert_false(hk_site_policy_get(sites[2].index).from_daemon);    /* thp 7 */
    assert_int_equal(hk_knob(HK_KNOB_PURGE_DELAY_MS), 555);
    assert_int_equal(hk_knob(HK_KNOB_LARGE_THRESHOLD), default_threshold);     /* knob not set: the default */

    /* A new generation without this binary: the process keeps its arm for
     * the hold, and then goes back to the defaults. */
    seg_publish(seg, 0, 6, s, 5, NULL, 0);
    assert_int_equal(hk_policy_apply(other, bh, 0, r), 1);
    assert_int_equal(hk_knob(HK_KNOB_PURGE_DELAY_MS), 555);
    hk_region_flush(0);
    assert_int_equal(r->binary_arm, 4);
    assert_int_equal(hk_policy_apply(other, bh, 0, r), 0);         /* nothing new, hold not over */
    hk_policy_binary_since((uint64_t)HKSHM_BINARY_HOLD_MS * 1000000ull);
    assert_int_equal(hk_policy_apply(other, bh, 0, r), 1);         /* the same generation, read again */
    assert_int_equal(hk_knob(HK_KNOB_PURGE_DELAY_MS), saved.purge_delay_ms);
    hk_region_flush(0);
    assert_int_equal(r->binary_arm, HKSHM_NO_ARM);

    /* A value out of range is not applied (a new process reads it). */
    b[0].knob[HKSHM_KNOB_PURGE_DELAY_MS] = 70000;
    seg_publish(seg, 1, 7, s, 5, b, 2);
    hk_policy_binary_since(UINT64_MAX);
    assert_int_equal(hk_policy_apply(me, bh, 0, r), 1);
    assert_int_equal(hk_knob(HK_KNOB_PURGE_DELAY_MS), saved.purge_delay_ms);
    assert_int_equal(hk_knob(HK_KNOB_LARGE_THRESHOLD), 128 << 10);
    munmap(seg, HKSHM_SEGMENT_SIZE);
}

/* One binary published for three keys: its runs without a command and
 * two commands.  A process takes its own command's entry and no other;
 * one of a command the daemon has no entry for runs the defaults.  Its
 * region names the command. */
static void test_takes_its_own_commands_entry(void **state)
{
    (void)state;
    uint32_t me = (uint32_t)geteuid();
    uint64_t bh = exe_hash();
    uint64_t add = hkshm_command_hash("add", 3), log = hkshm_command_hash("log", 3);
    void *seg = seg_create(name, HKSHM_SEGMENT_SIZE, 0600, -1, 1);
    hkshm_binary_policy b[3] = {
        { .domain = me, .arm = 3, .binary_hash = bh, .set = 1u << HKSHM_KNOB_PURGE_DELAY_MS,
          .knob = { [HKSHM_KNOB_PURGE_DELAY_MS] = 777 } },
        { .domain = me, .arm = 1, .binary_hash = bh, .command_hash = add, .set = 1u << HKSHM_KNOB_PURGE_DELAY_MS,
          .knob = { [HKSHM_KNOB_PURGE_DELAY_MS] = 111 } },
        { .domain = me, .arm = 2, .binary_hash = bh, .command_hash = log, .set = 1u << HKSHM_KNOB_PURGE_DELAY_MS,
          .knob = { [HKSHM_KNOB_PURGE_DELAY_MS] = 222 } },
    };
    seg_publish(seg, 1, 5, NULL, 0, b, 3);
    char why[160];
    assert_int_equal(open_seg(NULL, 0, why), 0);
    char *argv[] = { "git", "add", "-A", NULL };
    hk_command_take_argv(3, argv);
    unsetenv("HAKMEM_COMMAND");
    hk_command_init();
    assert_int_equal(hk_region_create(1), 0);
    hkshm_region *r = hk_region_get();
    assert_true(r->command_hash == add);
    assert_string_equal(r->command, "add");
    assert_int_equal(hkshm_command_valid(r->command), 3);
    const struct { uint64_t command; uint32_t purge, arm; } cases[] = {
        { add, 111, 1 }, { log, 222, 2 }, { 0, 777, 3 },
        { hkshm_command_hash("gc", 2), saved.purge_delay_ms, HKSHM_NO_ARM },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hk_policy_forget_generation();
        hk_policy_binary_since(UINT64_MAX);
        assert_int_equal(hk_policy_apply(me, bh, cases[i].command, r), 1);
        assert_int_equal(hk_knob(HK_KNOB_PURGE_DELAY_MS), cases[i].purge);
        hk_region_flush(0);
        assert_int_equal(r->binary_arm, cases[i].arm);
    }
    munmap(seg, HKSHM_SEGMENT_SIZE);
}

static void *race_seg;
static hkshm_region *race_region;
static int hook_calls;

static void rewrite_under_reader(void)
{
    hook_calls++;
    /* The reader announced its read (a peek has no region to announce it in). */
    if (race_region)
        assert_int_equal(atomic_load(&race_region->read_gen), atomic_load(&((hkshm_header *)race_seg)->generation));
    hkshm_table *t = hkshm_table_at(race_seg, atomic_load(&((hkshm_header *)race_seg)->active));
    atomic_store(&t->generation, 0);              /* a daemon that gave up waiting rewrites it */
}

static void test_raced_read_thrown_away(void **state)
{
    (void)state;
    make_sites();
    uint32_t me = (uint32_t)geteuid();
    race_seg = seg_create(name, HKSHM_SEGMENT_SIZE, 0600, -1, 1);
    hkshm_site_policy s[] = { site_entry(me, &sites[0], 128 << 10, 1, 0, 2) };
    seg_publish(race_seg, 0, 9, s, 1, NULL, 0);
    char why[160];
    assert_int_equal(open_seg(NULL, 0, why), 0);
    assert_int_equal(hk_region_create(1), 0);
    race_region = hk_region_get();
    uint64_t seen_before = atomic_load(&race_region->gen_seen);
    hk_site_reset_policies();
    hk_policy_forget_generation();
    hook_calls = 0;
    hk_policy_mid_read_hook = rewrite_under_reader;
    assert_int_equal(hk_policy_apply(me, 0, 0, race_region), -EAGAIN);
    hk_policy_mid_read_hook = NULL;
    assert_int_equal(hook_calls, 1);
    assert_false(hk_site_policy_get(sites[0].index).from_daemon);
    assert_int_equal(atomic_load(&race_region->gen_seen), seen_before);
    assert_int_equal(atomic_load(&race_region->read_gen), 0);
    /* Published again: now it applies. */
    seg_publish(race_seg, 1, 10, s, 1, NULL, 0);
    assert_int_equal(hk_policy_apply(me, 0, 0, race_region), 1);
    assert_int_equal(hk_site_policy_get(sites[0].index).large_threshold, 128 << 10);
    assert_int_equal(atomic_load(&race_region->gen_seen), 10);
    munmap(race_seg, HKSHM_SEGMENT_SIZE);
}

static void test_garbage_counts_ignored(void **state)
{
    (void)state;
    make_sites();
    uint32_t me = (uint32_t)geteuid();
    void *seg = seg_create(name, HKSHM_SEGMENT_SIZE, 0600, -1, 1);
    hkshm_site_policy s[] = { site_entry(me, &sites[0], 128 << 10, 1, 0, 2) };
    seg_publish(seg, 0, 3, s, 1, NULL, 0);
    hkshm_table_at(seg, 0)->n_sites = HKSHM_SITE_CAP + 1;
    char why[160];
    assert_int_equal(open_seg(NULL, 0, why), 0);
    hk_site_reset_policies();
    hk_policy_forget_generation();
    assert_int_equal(hk_policy_apply(me, 0, 0, NULL), -EAGAIN);
    assert_false(hk_site_policy_get(sites[0].index).from_daemon);
    /* Learning off: nothing to apply. */
    hkshm_table_at(seg, 0)->n_sites = 1;
    atomic_store(&((hkshm_header *)seg)->learning, 0);
    assert_int_equal(hk_policy_apply(me, 0, 0, NULL), 0);
    assert_false(hk_site_policy_get(sites[0].index).from_daemon);
    munmap(seg, HKSHM_SEGMENT_SIZE);
}

/* ---- peeking: the binary's entry without a mapping ---- */

static int peek(uint32_t domain, uint64_t bh, uint64_t command, hk_policy_peeked *seen, char *why)
{
    return hk_policy_peek(name, NULL, 0, domain, bh, command, seen, why, 160);
}

/* Whether this process has the segment mapped (/proc/self/maps). */
static int segment_mapped(void)
{
    char line[4096], want[96];
    snprintf(want, sizeof want, "/dev/shm%s", name);
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    int found = 0;
    while (fgets(line, sizeof line, f))
        found |= strstr(line, want) != NULL;
    fclose(f);
    return found;
}

static void test_peek_applies_binary_entry_unmapped(void **state)
{
    (void)state;
    uint32_t me = (uint32_t)geteuid();
    uint64_t bh = exe_hash();
    hkshm_binary_policy b[] = {
        { .domain = me, .arm = 3, .binary_hash = bh, .command_hash = 0,
          .set = 1u << HKSHM_KNOB_PURGE_DELAY_MS, .knob = { [HKSHM_KNOB_PURGE_DELAY_MS] = 333 } },
        { .domain = me, .arm = 4, .binary_hash = bh, .command_hash = 77,
          .set = 1u << HKSHM_KNOB_PURGE_DELAY_MS, .knob = { [HKSHM_KNOB_PURGE_DELAY_MS] = 444 } },
    };
    hkshm_header *seg = seg_create(name, HKSHM_SEGMENT_SIZE, 0600, -1, 1);
    memcpy(seg->socket_path, "/run/elsewhere.sock", 20);
    seg_publish(seg, 1, 12, NULL, 0, b, 2);
    munmap(seg, HKSHM_SEGMENT_SIZE);            /* only the reader may have it mapped now */
    hk_policy_binary_since(UINT64_MAX);
    char why[160];
    hk_policy_peeked seen;
    assert_int_equal(peek(me, bh, 77, &seen, why), 1);
    assert_int_equal(hk_knob(HK_KNOB_PURGE_DELAY_MS), 444);
    assert_int_equal(hk_region_binary_arm(), 4);
    assert_int_equal(seen.generation, 12);
    assert_true(seen.learning);
    assert_string_equal(seen.socket_path, "/run/elsewhere.sock");
    assert_null(hk_policy_header());
    assert_false(segment_mapped());
    /* Another user's process finds no entry of its own. */
    hk_policy_binary_since(UINT64_MAX);
    assert_int_equal(peek(me + 1000, bh, 77, &seen, why), 1);
    assert_int_equal(hk_knob(HK_KNOB_PURGE_DELAY_MS), saved.purge_delay_ms);
    assert_int_equal(hk_region_binary_arm(), HKSHM_NO_ARM);
}

static void test_peek_trusts_as_open_does(void **state)
{
    (void)state;
    char why[160], why_open[160];
    hk_policy_peeked seen;
    void *seg = seg_create(name, HKSHM_SEGMENT_SIZE, 0666, -1, 1);
    assert_int_equal(peek(0, 1, 0, &seen, why), -EPERM);
    assert_int_equal(open_seg(NULL, 0, why_open), -EPERM);
    assert_string_equal(why, why_open);
    munmap(seg, HKSHM_SEGMENT_SIZE);
    hkshm_header *h = seg_create(name, HKSHM_SEGMENT_SIZE, 0600, -1, 1);
    h->site_cap = 1;
    assert_int_equal(peek(0, 1, 0, &seen, why), -EPROTO);
    assert_string_equal(why, "incompatible segment (layout)");
    munmap(h, HKSHM_SEGMENT_SIZE);
    shm_unlink(name);
    assert_int_equal(peek(0, 1, 0, &seen, why), -ENOENT);
    assert_string_equal(why, "no segment");
    assert_false(segment_mapped());
}

static void test_peek_raced_or_not_learning_applies_nothing(void **state)
{
    (void)state;
    uint32_t me = (uint32_t)geteuid();
    uint64_t bh = exe_hash();
    hkshm_binary_policy b[] = {
        { .domain = me, .arm = 2, .binary_hash = bh, .set = 1u << HKSHM_KNOB_PURGE_DELAY_MS,
          .knob = { [HKSHM_KNOB_PURGE_DELAY_MS] = 222 } },
    };
    race_seg = seg_create(name, HKSHM_SEGMENT_SIZE, 0600, -1, 1);
    seg_publish(race_seg, 0, 9, NULL, 0, b, 1);
    char why[160];
    hk_policy_peeked seen;
    hk_policy_binary_since(UINT64_MAX);
    hook_calls = 0;
    race_region = NULL;
    hk_policy_mid_read_hook = rewrite_under_reader;
    assert_int_equal(peek(me, bh, 0, &seen, why), -EAGAIN);
    hk_policy_mid_read_hook = NULL;
    assert_int_equal(hook_calls, 1);
    assert_int_equal(hk_knob(HK_KNOB_PURGE_DELAY_MS), saved.purge_delay_ms);
    /* Learning off: nothing applied, and the peek says so. */
    seg_publish(race_seg, 1, 10, NULL, 0, b, 1);
    atomic_store(&((hkshm_header *)race_seg)->learning, 0);
    assert_int_equal(peek(me, bh, 0, &seen, why), 0);
    assert_false(seen.learning);
    assert_int_equal(hk_knob(HK_KNOB_PURGE_DELAY_MS), saved.purge_delay_ms);
    /* Learning on: the entry applies. */
    atomic_store(&((hkshm_header *)race_seg)->learning, 1);
    assert_int_equal(peek(me, bh, 0, &seen, why), 1);
    assert_int_equal(hk_knob(HK_KNOB_PURGE_DELAY_MS), 222);
    munmap(race_seg, HKSHM_SEGMENT_SIZE);
}

int main(int argc, char **argv)
{
    (void)argc;
    ut_baseline_process(argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_trusted_segment_maps_read_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_untrusted_segments_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incompatible_segments_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abi1_said_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_applies_own_domain_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_takes_its_own_commands_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raced_read_thrown_away, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_counts_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peek_applies_binary_entry_unmapped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peek_trusts_as_open_does, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peek_raced_or_not_learning_applies_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
