/* Start-up, fork and exit.  Initialisation allocates nothing and calls
 * nothing that allocates, so a malloc arriving during it cannot recurse. */
#include "init.h"
#include "bigcache.h"
#include "command.h"
#include "counters.h"
#include "freelist.h"
#include "heap.h"
#include "internal.h"
#include "large.h"
#include "lock.h"
#include "meta.h"
#include "modules.h"
#include "options.h"
#include "packed.h"
#include "segment.h"
#include "shm_client.h"
#include "site.h"
#include "size_class.h"
#include "hakmem.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static _Atomic int init_state;            /* 0 not yet, 1 running, 2 done */

void hk_process_init(void)
{
    if (likely(atomic_load_explicit(&init_state, memory_order_acquire) == 2)) return;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&init_state, &expected, 1)) {
        while (atomic_load_explicit(&init_state, memory_order_acquire) != 2) sched_yield();
        return;
    }
    hk_module_init();
    hk_size_class_init();
    hk_counters_init();
    hk_freelist_init();
    hk_options_load();
    hk_heap_process_init();
    hk_large_init();
    atomic_store_explicit(&init_state, 2, memory_order_release);
}

static void fork_prepare(void)
{
    hk_heap_fork_prepare();
    hk_segment_fork_prepare();
    hk_bigcache_fork_prepare();
    hk_meta_fork_prepare();
    hk_packed_fork_prepare();
}

static void fork_parent(void)
{
    hk_packed_fork_parent();
    hk_meta_fork_parent();
    hk_bigcache_fork_parent();
    hk_segment_fork_parent();
    hk_heap_fork_parent();
}

static void fork_child(void)
{
    hk_module_fork_child();
    hk_packed_fork_child();
    hk_meta_fork_child();
    hk_bigcache_fork_child();
    hk_segment_fork_child();
    hk_heap_fork_child();
    hk_site_fork_child(hk_tls_heap);
    hk_counters_fork_child();
    hk_shm_client_after_fork_child();
}

/* glibc passes argc, argv and envp to ELF constructors, in shared objects
 * and static programs alike; elsewhere the command comes from
 * /proc/self/cmdline. */
#ifdef __GLIBC__
__attribute__((constructor(101))) static void hk_constructor(int argc, char **argv, char **envp)
{
    (void)envp;
    hk_command_take_argv(argc, argv);
#else
__attribute__((constructor(101))) static void hk_constructor(void)
{
#endif
    hk_process_init();
    hk_options_load();            /* the environment may not have been there before */
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    if (!hk_opt.baseline) hk_shm_client_init();
}

__attribute__((destructor(101))) static void hk_destructor(void)
{
    if (!hk_opt.baseline) hk_shm_client_exit();
    if (hk_opt.stats) hakmem_report(STDERR_FILENO);
}

/* ---- messages: formatted on the stack, written with one write(2) ------- */

void hk_fatal_pointer(const char *fn, const char *what, const void *p)
{
    char buf[160];
    int n = snprintf(buf, sizeof buf, "hakmem: %s: %s %p\n", fn, what, p);
    if (n > 0) {
        ssize_t w = write(STDERR_FILENO, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
        (void)w;
    }
    abort();
}

void hk_fatal(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n > sizeof buf - 2) n = sizeof buf - 2;
    buf[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, "hakmem: ", 8);
    w = write(STDERR_FILENO, buf, (size_t)n);
    (void)w;
    abort();
}

void hk_log(int level, const char *fmt, ...)
{
    if (hk_opt.verbose < level) return;
    char buf[256];
    int n = snprintf(buf, sizeof buf, "hakmem[%d]: ", (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) m = 0;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof buf - 2) len = sizeof buf - 2;
    buf[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, buf, len);
    (void)w;
}
