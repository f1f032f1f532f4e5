/* The hardened build's free lists (freelist.h): a corrupted or forged link
 * aborts when it is popped instead of handing out a wild pointer, a small
 * block freed twice aborts (whichever thread frees it), and a fork child
 * still reads the lists its parent wrote.  Each case runs in a forked child
 * whose signal and stderr are examined.  Linked against the hardened
 * prefixed library only. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "hakmem.h"
#include "unit_util.h"

/* Keeps the compiler from seeing through the pointers it is given. */
static inline void *launder(void *p)
{
    __asm__ volatile("" : "+r"(p) : : "memory");
    return p;
}

static void expect_one_line_abort(void (*fn)(void *), void *arg, const char *want)
{
    ut_child c;
    ut_run_child(fn, arg, &c);
    if (c.signo != SIGABRT)
        fail_msg("child %s %d, stderr \"%s\"; want SIGABRT and \"%s\"", c.signo ? "died of signal" : "exited with",
                 c.signo ? c.signo : c.exit_code, c.err, want);
    assert_int_equal(ut_count_lines(c.err), 1);
    assert_string_equal(c.err, want);
}

/* Two freed blocks a -> b on the free list; `damage` writes into a's link
 * (a use after free), then the page is allocated from until a is popped. */
typedef struct link_case {
    void (*damage)(unsigned char *a, void *b);
} link_case;

static void forge(unsigned char *a, void *b)
{
    static char elsewhere[64];
    (void)b;
    memcpy(a, &(void *){ elsewhere }, sizeof(void *));
}

static void flip_low_byte(unsigned char *a, void *b)
{
    (void)b;
    a[0] ^= 0x40;                  /* one block further on, in a plain link */
}

static void write_plain_pointer(unsigned char *a, void *b)
{
    memcpy(a, &b, sizeof b);       /* the successor itself, unencoded */
}

static void damaged_link_child(void *arg)
{
    link_case *lc = arg;
    unsigned char *a = launder(hak_malloc(64));
    void *b = launder(hak_malloc(64));
    hak_free(b);
    hak_free(a);
    lc->damage(a, b);
    for (int i = 0; i < 4; i++) {
        void *volatile p = hak_malloc(64);
        (void)p;
    }
}

static void expect_link_abort(void (*damage)(unsigned char *, void *))
{
    /* The child's blocks are where the parent's next two would be. */
    unsigned char *a = hak_malloc(64);
    void *b = hak_malloc(64);
    hak_free(b);
    hak_free(a);
    char want[160];
    snprintf(want, sizeof want, "hakmem: malloc(): corrupted free list at %p\n", (void *)a);
    link_case lc = { damage };
    expect_one_line_abort(damaged_link_child, &lc, want);
}

static void test_forged_link_aborts(void **state)
{
    (void)state;
    expect_link_abort(forge);
}

static void test_flipped_link_byte_aborts(void **state)
{
    (void)state;
    expect_link_abort(flip_low_byte);
}

/* What a plain-list allocator would accept: a valid block address. */
static void test_unencoded_link_aborts(void **state)
{
    (void)state;
    expect_link_abort(write_plain_pointer);
}

static void *double_free_target;

static void double_free_child(void *arg)
{
    (void)arg;
    hak_free(double_free_target);
    hak_free(double_free_target);
}

static void test_double_free_small_aborts(void **state)
{
    (void)state;
    double_free_target = hak_malloc(48);
    char want[160];
    snprintf(want, sizeof want, "hakmem: free(): double free %p\n", double_free_target);
    expect_one_line_abort(double_free_child, NULL, want);
    hak_free(double_free_target);
}

/* A block on the remote list: its first free came from another thread, the
 * second from that thread again, or from the owner. */
static void *free_on_thread(void *arg)
{
    hak_free(arg);
    return NULL;
}

static void remote_double_free_child(void *arg)
{
    int owner_frees_second = *(int *)arg;
    pthread_t t;
    if (pthread_create(&t, NULL, free_on_thread, double_free_target) != 0) return;
    pthread_join(t, NULL);
    if (owner_frees_second) {
        hak_free(double_free_target);
    } else if (pthread_create(&t, NULL, free_on_thread, double_free_target) == 0) {
        pthread_join(t, NULL);
    }
}

static void test_double_free_remote_aborts(void **state)
{
    (void)state;
    double_free_target = hak_malloc(48);
    char want[160];
    snprintf(want, sizeof want, "hakmem: free(): double free %p\n", double_free_target);
    int owner_frees_second = 0;
    expect_one_line_abort(remote_double_free_child, &owner_frees_second, want);
    owner_frees_second = 1;
    expect_one_line_abort(remote_double_free_child, &owner_frees_second, want);
    hak_free(double_free_target);
}

/* Freed, handed out again, freed again: no double free. */
static void test_reuse_is_no_double_free(void **state)
{
    (void)state;
    for (int round = 0; round < 3; round++) {
        void *p[64];
        for (int i = 0; i < 64; i++) p[i] = hak_malloc(32);
        for (int i = 0; i < 64; i++) hak_free(p[i]);
    }
    pthread_t t;
    void *q = hak_malloc(32);
    assert_int_equal(pthread_create(&t, NULL, free_on_thread, q), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    void *again[256];
    for (int i = 0; i < 256; i++) again[i] = hak_malloc(32);
    for (int i = 0; i < 256; i++) hak_free(again[i]);
}

/* The child pops links its parent encoded: the secret survives fork. */
static void pop_parent_links_child(void *arg)
{
    void **kept = arg;
    for (int i = 0; i < 64; i++) hak_free(kept[i]);
    void *p[200];
    for (int i = 0; i < 200; i++) p[i] = hak_malloc(80);
    for (int i = 0; i < 200; i++) hak_free(p[i]);
}

static void test_fork_child_keeps_secret(void **state)
{
    (void)state;
    void *p[200], *kept[64];
    for (int i = 0; i < 200; i++) p[i] = hak_malloc(80);
    for (int i = 0; i < 64; i++) kept[i] = p[i];
    for (int i = 64; i < 200; i++) hak_free(p[i]);     /* links the child will pop */
    ut_child c;
    ut_run_child(pop_parent_links_child, kept, &c);
    if (!c.exited || c.exit_code != 0) fail_msg("child: signal %d, stderr \"%s\"", c.signo, c.err);
    for (int i = 0; i < 64; i++) hak_free(kept[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forged_link_aborts),
        cmocka_unit_test(test_flipped_link_byte_aborts),
        cmocka_unit_test(test_unencoded_link_aborts),
        cmocka_unit_test(test_double_free_small_aborts),
        cmocka_unit_test(test_double_free_remote_aborts),
        cmocka_unit_test(test_reuse_is_no_double_free),
        cmocka_unit_test(test_fork_child_keeps_secret),
    };
    return cmocka_run_group_tests_name("hardened", tests, NULL, NULL);
}
