/* THP box: hk_thp_advice for every combination of process switch, site
 * wish, kernel mode (read, not changed: the test checks what the kernel
 * reports and applies the rules for that mode), alignment and size; and the
 * advice reaching a real large mapping (VmFlags "hg" in smaps), by a site's
 * policy or by the THP knob. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "init.h"
#include "knobs.h"
#include "large.h"
#include "options.h"
#include "os.h"
#include "thp.h"
#include "unit_util.h"

#define MiB ((size_t)1 << 20)
#define HUGE (2 * MiB)

static hk_options saved;

static int setup(void **state) { (void)state; hk_process_init(); saved = hk_opt; return 0; }
static int teardown(void **state) { (void)state; hk_opt = saved; return 0; }

/* Independent reading of the kernel's mode: the bracketed word. */
static int kernel_mode(void)
{
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (f == NULL) return 0;
    char buf[256] = "";
    if (fgets(buf, sizeof buf, f) == NULL) buf[0] = '\0';
    fclose(f);
    if (strstr(buf, "[always]")) return 2;
    if (strstr(buf, "[madvise]")) return 1;
    return 0;
}

static void test_reports_kernel_mode(void **state)
{
    (void)state;
    int mode = hk_os_thp_mode();
    assert_int_equal(mode, kernel_mode());
    assert_int_equal(hk_os_thp_mode(), mode);         /* cached, stable */
    print_message("kernel THP mode: %s\n", mode == 2 ? "always" : mode == 1 ? "madvise" : "never");
}

/* The documented rule, as an oracle. */
static size_t expected(int proc, int site, int mode, uintptr_t base, size_t size)
{
    if (!proc || !site || mode != 1) return 0;
    if (base % HUGE != 0 || size < HUGE) return 0;
    return size / HUGE * HUGE;
}

static void test_every_combination(void **state)
{
    (void)state;
    int mode = hk_os_thp_mode();
    static const uintptr_t bases[] = {
        0x200000000000ull, 0x200000200000ull, 0x200000400000ull,          /* 2 MiB-aligned */
        0x200000001000ull, 0x200000100000ull, 0x2000001ff000ull,          /* not */
    };
    static const size_t sizes[] = {
        4096, HUGE - 4096, HUGE, HUGE + 4096, 3 * MiB, 4 * MiB, 5 * MiB + 12288, 64 * MiB,
    };
    for (int proc = 0; proc <= 1; proc++) {
        hk_opt.thp = proc;
        for (int site = 0; site <= 1; site++) {
            for (unsigned b = 0; b < sizeof bases / sizeof bases[0]; b++) {
                for (unsigned s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
                    size_t got = hk_thp_advice(bases[b], sizes[s], site);
                    size_t want = expected(proc, site, mode, bases[b], sizes[s]);
                    if (got != want)
                        fail_msg("advice(proc %d, site %d, base %#lx, size %zu) = %zu, expected %zu",
                                 proc, site, (unsigned long)bases[b], sizes[s], got, want);
                }
            }
        }
    }
}

static void test_madvise_mode_cases(void **state)
{
    (void)state;
    if (hk_os_thp_mode() != 1) {
        /* "always" needs no advice and "never" ignores it. */
        hk_opt.thp = 1;
        assert_int_equal(hk_thp_advice(0x200000000000ull, 4 * MiB, 1), 0);
        print_message("skipped: the kernel's THP mode is \"%s\", not \"madvise\"\n",
                      hk_os_thp_mode() == 2 ? "always" : "never");
        skip();
    }
    hk_opt.thp = 1;
    assert_int_equal(hk_thp_advice(0x200000000000ull, 4 * MiB, 1), 4 * MiB);
    assert_int_equal(hk_thp_advice(0x200000200000ull, 5 * MiB, 1), 4 * MiB);       /* whole pages only */
    assert_int_equal(hk_thp_advice(0x200000200000ull, HUGE, 1), HUGE);
    assert_int_equal(hk_thp_advice(0x200000200000ull, HUGE - 1, 1), 0);
    assert_int_equal(hk_thp_advice(0x200000201000ull, 8 * MiB, 1), 0);             /* misaligned */
    assert_int_equal(hk_thp_advice(0x200000200000ull, 8 * MiB, 0), 0);             /* site off */
    hk_opt.thp = 0;
    assert_int_equal(hk_thp_advice(0x200000200000ull, 8 * MiB, 1), 0);             /* process off */
}

/* VmFlags of the mapping holding p: does it carry "hg" (MADV_HUGEPAGE)? */
static int vma_has_hugepage_flag(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (f == NULL) return -1;
    char line[512];
    int inside = 0, found = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
            continue;
        }
        if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            found = strstr(line, " hg") != NULL;
            break;
        }
    }
    fclose(f);
    return found;
}

static void test_large_block_advised(void **state)
{
    (void)state;
    int mode = hk_os_thp_mode();
    hk_opt.thp = 1;
    hk_site_policy on = { .large_threshold = 1 << 20, .bigcache_slots = 4, .thp = 1 };
    hk_site_policy off = { .large_threshold = 1 << 20, .bigcache_slots = 4, .thp = 0 };
    hk_large_stats s0, s1;
    int z;

    hk_large_get_stats(&s0);
    void *p = hk_large_alloc(4 * MiB, 0, 1010, &on, &z);
    hk_large_get_stats(&s1);
    assert_int_equal(s1.thp_blocks, s0.thp_blocks + (mode == 1));
    assert_int_equal(vma_has_hugepage_flag(p), mode == 1);
    hk_large_free(p, "free()");

    /* A site that does not want huge pages gets none. */
    void *q = hk_large_alloc(4 * MiB, 0, 1011, &off, &z);
    assert_int_equal(vma_has_hugepage_flag(q), 0);
    hk_large_get_stats(&s0);
    assert_int_equal(s0.thp_blocks, s1.thp_blocks);
    hk_large_free(q, "free()");                        /* cached for site 1011 */

    /* Reused from BigCache by a site that now wants them: advised then. */
    void *r = hk_large_alloc(4 * MiB, 0, 1011, &on, &z);
    assert_int_equal(UT_PAGE_OF(r), UT_PAGE_OF(q));
    assert_int_equal(vma_has_hugepage_flag(r), mode == 1);
    hk_large_free(r, "free()");

    /* HAKMEM_THP=0 forbids them whatever the site says. */
    hk_opt.thp = 0;
    void *t = hk_large_alloc(4 * MiB, 0, 1012, &on, &z);
    assert_int_equal(vma_has_hugepage_flag(t), 0);
    hk_large_free(t, "free()");
}

/* The THP knob's large bit asks for huge pages on every large block, over
 * a site policy that does not; cleared, the site's policy rules again. */
static void test_knob_advises_every_large_block(void **state)
{
    (void)state;
    int mode = hk_os_thp_mode();
    hk_opt.thp = 1;
    hk_site_policy off = { .large_threshold = 1 << 20, .bigcache_slots = 0, .thp = 0 };
    uint32_t k[HK_KNOBS] = { [HK_KNOB_THP] = HK_THP_LARGE };
    int z;
    hk_knobs_apply(1u << HK_KNOB_THP, k);
    void *p = hk_large_alloc(4 * MiB, 0, 1020, &off, &z);
    assert_int_equal(vma_has_hugepage_flag(p), mode == 1);
    hk_large_free(p, "free()");

    k[HK_KNOB_THP] = HK_THP_SMALL;                     /* small-object segments only */
    hk_knobs_apply(1u << HK_KNOB_THP, k);
    void *q = hk_large_alloc(4 * MiB, 0, 1020, &off, &z);
    assert_int_equal(vma_has_hugepage_flag(q), 0);
    hk_large_free(q, "free()");
    hk_knobs_reset();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reports_kernel_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_combination, setup, teardown),
        cmocka_unit_test_setup_teardown(test_madvise_mode_cases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_block_advised, setup, teardown),
        cmocka_unit_test_setup_teardown(test_knob_advises_every_large_block, setup, teardown),
    };
    return cmocka_run_group_tests_name("thp", tests, NULL, NULL);
}
