/* Module box: an address's fleet-wide key, from the loader in the original
 * process and from /proc/self/maps in a fork child.  Checked against an
 * oracle (the module file read from disk, /proc/self/maps for the bias), a
 * fork child must give the parent's keys for modules the parent loaded at
 * any time, never ask the loader (its call counter does not move), and
 * resolve sites even while another parent thread held the loader's lock at
 * fork time, as the child of a multithreaded program does. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hakmem.h"
#include "init.h"
#include "modules.h"
#include "site.h"
#include "unit_util.h"

static void *zlib;

/* Addresses in three kinds of module: this executable, libc, and a library
 * dlopened after the process started (and after other resolutions). */
static uintptr_t addrs[3];

static void load_addresses(void)
{
    hk_module_key k;
    assert_int_equal(hk_module_resolve((uintptr_t)&load_addresses, &k), 1);   /* the loader's view, before */
    zlib = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
    assert_non_null(zlib);
    addrs[0] = (uintptr_t)&load_addresses + 4;
    addrs[1] = (uintptr_t)dlsym(RTLD_DEFAULT, "strlen") + 4;
    addrs[2] = (uintptr_t)dlsym(zlib, "zlibVersion") + 4;
    assert_true(addrs[1] > 4 && addrs[2] > 4);
}

static void test_parent_keys_match_oracle(void **state)
{
    (void)state;
    load_addresses();
    for (int i = 0; i < 3; i++) {
        hk_module_key k;
        uint64_t calls = hk_module_loader_calls();
        assert_int_equal(hk_module_resolve(addrs[i], &k), 1);
        assert_int_equal(hk_module_loader_calls(), calls + 1);   /* the parent uses the loader */
        char path[4096];
        uintptr_t bias;
        assert_int_equal(ut_module_of(addrs[i], path, sizeof path, &bias), 0);
        assert_int_equal(k.offset, addrs[i] - bias);
        uint64_t want = ut_file_build_id_hash(path);
        assert_int_not_equal(want, 0);
        assert_int_equal(k.hash, want);
    }
    hk_module_key k;
    int on_stack;
    assert_int_equal(hk_module_resolve((uintptr_t)&on_stack, &k), 0);
    assert_int_equal(k.hash, 0);
    assert_int_equal(k.offset, (uintptr_t)&on_stack);
}

/* In a fork child: the same keys as the parent, the loader never asked. */
static void child_resolve(void *arg)
{
    const hk_module_key *parent = arg;
    uint64_t calls = hk_module_loader_calls();
    for (int i = 0; i < 3; i++) {
        hk_module_key k;
        if (hk_module_resolve(addrs[i], &k) != 1) _exit(10 + i);
        if (k.hash != parent[i].hash || k.offset != parent[i].offset) {
            fprintf(stderr, "address %d: child %016llx+%llx, parent %016llx+%llx\n", i,
                    (unsigned long long)k.hash, (unsigned long long)k.offset,
                    (unsigned long long)parent[i].hash, (unsigned long long)parent[i].offset);
            _exit(20 + i);
        }
        if (strstr(parent[i].path, "libz") && !strstr(k.path, "libz")) _exit(30 + i);
    }
    int on_stack;
    hk_module_key k;
    if (hk_module_resolve((uintptr_t)&on_stack, &k) != 0 || k.offset != (uintptr_t)&on_stack) _exit(40);
    if (hk_module_loader_calls() != calls) _exit(50);
    /* A grandchild too (its table starts over). */
    pid_t pid = fork();
    if (pid == 0) {
        hk_module_key g;
        _exit(hk_module_resolve(addrs[2], &g) == 1 && g.hash == parent[2].hash && g.offset == parent[2].offset &&
              hk_module_loader_calls() == calls ? 0 : 60);
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) _exit(61);
    _exit(WEXITSTATUS(status));
}

static void test_fork_child_same_keys_without_loader(void **state)
{
    (void)state;
    if (!zlib) load_addresses();
    hk_module_key parent[3];
    for (int i = 0; i < 3; i++) assert_int_equal(hk_module_resolve(addrs[i], &parent[i]), 1);
    ut_child c;
    ut_run_child(child_resolve, parent, &c);
    if (!c.exited || c.exit_code != 0)
        fail_msg("child: exited %d code %d signal %d: %s", c.exited, c.exit_code, c.signo, c.err);
}

/* ---- the hang: a parent thread holds the loader lock across fork ---- */

static int hold_pipe[2], held_pipe[2];

static int hold_lock(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)info; (void)size; (void)arg;
    char c = 1;
    if (write(held_pipe[1], &c, 1) != 1) abort();       /* inside dl_iterate_phdr: lock held */
    if (read(hold_pipe[0], &c, 1) != 1) abort();        /* until the parent says */
    return 1;
}

static void *holder(void *arg)
{
    (void)arg;
    dl_iterate_phdr(hold_lock, NULL);
    return NULL;
}

static __attribute__((noinline)) void *fresh_site_alloc(size_t size)
{
    void *p = hak_malloc(size);
    __asm__ volatile("");
    return p;
}

static void count_sites(const hk_site_view *v, void *arg)
{
    unsigned *n = arg;
    if (v->module_hash != 0) (*n)++;
}

static void child_under_held_lock(void *arg)
{
    (void)arg;
    /* What hung: the first medium and large allocations of a fork child,
     * whose new sites must be resolved, and a thread of its own. */
    char *a = fresh_site_alloc(100000);
    char *b = fresh_site_alloc(2u << 20);
    if (!a || !b) _exit(2);
    unsigned n = 0;
    hk_site_for_each(count_sites, &n);
    if (n == 0) _exit(3);
    hk_module_key k;
    if (hk_module_resolve(addrs[2], &k) != 1) _exit(4);
    hak_free(a);
    hak_free(b);
    _exit(0);
}

static void test_fork_child_with_loader_lock_held(void **state)
{
    (void)state;
    if (!zlib) load_addresses();
    assert_int_equal(pipe(hold_pipe), 0);
    assert_int_equal(pipe(held_pipe), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, holder, NULL), 0);
    char c;
    assert_int_equal(read(held_pipe[0], &c, 1), 1);     /* the lock is held now */
    ut_child child;
    ut_run_child(child_under_held_lock, NULL, &child);  /* alarm(20): a hang is SIGALRM */
    c = 1;
    assert_int_equal(write(hold_pipe[1], &c, 1), 1);
    pthread_join(t, NULL);
    if (!child.exited || child.exit_code != 0)
        fail_msg("child: exited %d code %d signal %d%s: %s", child.exited, child.exit_code, child.signo,
                 child.signo == SIGALRM ? " (stuck on the loader lock)" : "", child.err);
    for (int i = 0; i < 2; i++) { close(hold_pipe[i]); close(held_pipe[i]); }
}

int main(void)
{
    hk_process_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parent_keys_match_oracle),
        cmocka_unit_test(test_fork_child_same_keys_without_loader),
        cmocka_unit_test(test_fork_child_with_loader_lock_held),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
