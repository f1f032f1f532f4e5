/* The metrics file and its writer thread; see metrics_file.h. */
#include "metrics_file.h"
#include "atomic_file.h"
#include "core_api.h"
#include "log.h"
#include "metrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

typedef struct file_sink {
    hkd_atomic_file f;
    const atomic_int *cancel;          /* set: stop (the daemon is stopping) */
} file_sink;

static int to_file(const char *text, size_t len, void *arg)
{
    file_sink *fs = arg;
    if (fs->cancel && atomic_load(fs->cancel))
        return -ECANCELED;
    return hkd_atomic_write(&fs->f, text, len);
}

static int write_file(const char *path, const atomic_int *cancel)
{
    file_sink fs = { .cancel = cancel };
    hkd_atomic_file *f = &fs.f;
    int r = hkd_atomic_open(f, path, 0644);
    if (r < 0)
        return r;
    /* The daemon runs with UMask=0007; the collector may run as another
     * user, so the file is made world-readable explicitly. */
    if (fchmod(f->fd, 0644) < 0) {
        r = -errno;
        hkd_atomic_abort(f);
        return r;
    }
    r = hkd_metrics_stream(to_file, &fs);
    if (r < 0) {
        hkd_atomic_abort(f);
        return r;
    }
    return hkd_atomic_commit(f);
}

int hkd_metrics_write_file(const char *path)
{
    return write_file(path, NULL);
}

static struct {
    pthread_mutex_t mu;
    pthread_cond_t wake;
    pthread_t thread;
    atomic_int running, stop;
    int wanted;                        /* a trigger not yet taken */
    int busy;                          /* a write in progress */
    char path[HKD_PATH_MAX];
    _Atomic uint64_t written, failed, skipped, last_ns;
} W = { .mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER };

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *writer_main(void *arg)
{
    (void)arg;
    int failing = 0;
    hkd_reader_thread_enter();
    pthread_mutex_lock(&W.mu);
    for (;;) {
        while (!W.wanted && !W.stop)
            pthread_cond_wait(&W.wake, &W.mu);
        if (W.stop)
            break;
        W.wanted = 0;
        W.busy = 1;
        pthread_mutex_unlock(&W.mu);

        uint64_t t0 = mono_ns();
        int r = write_file(W.path, &W.stop);
        if (r != -ECANCELED) {
            atomic_store(&W.last_ns, mono_ns() - t0);
            atomic_fetch_add(r < 0 ? &W.failed : &W.written, 1);
            if (r < 0 && !failing)
                hkd_log(HKD_LOG_WARNING, "cannot write metrics to %s: %s", W.path, strerror(-r));
            else if (r == 0 && failing)
                hkd_log(HKD_LOG_INFO, "writing metrics to %s again", W.path);
            failing = r < 0;
        }
        pthread_mutex_lock(&W.mu);
        W.busy = 0;
    }
    pthread_mutex_unlock(&W.mu);
    hkd_reader_thread_leave();
    return NULL;
}

int hkd_metrics_file_start(const char *path)
{
    if (W.running)
        return -EALREADY;
    if ((size_t)snprintf(W.path, sizeof W.path, "%s", path) >= sizeof W.path)
        return -ENAMETOOLONG;
    int n = hkd_atomic_clean(path);
    if (n > 0)
        hkd_log(HKD_LOG_INFO, "removed %d temp file%s a killed metrics write left beside %s", n, n == 1 ? "" : "s",
                path);
    W.stop = W.wanted = W.busy = 0;
    int r = pthread_create(&W.thread, NULL, writer_main, NULL);
    if (r != 0)
        return -r;
    W.running = 1;
    return 0;
}

void hkd_metrics_file_trigger(void)
{
    if (!W.running)
        return;
    pthread_mutex_lock(&W.mu);
    if (W.busy || W.wanted) {
        uint64_t n = atomic_fetch_add(&W.skipped, 1) + 1;
        pthread_mutex_unlock(&W.mu);
        if (n == 1)
            hkd_log(HKD_LOG_NOTICE, "metrics file %s: a write still runs when the next is due; skipping "
                    "(counted in hakmem_metrics_file_writes_total{result=\"skipped\"})", W.path);
        return;
    }
    W.wanted = 1;
    pthread_cond_signal(&W.wake);
    pthread_mutex_unlock(&W.mu);
}

void hkd_metrics_file_stop(void)
{
    if (!W.running)
        return;
    pthread_mutex_lock(&W.mu);
    W.stop = 1;
    pthread_cond_signal(&W.wake);
    pthread_mutex_unlock(&W.mu);
    pthread_join(W.thread, NULL);
    W.running = 0;
}

int hkd_metrics_file_get_stats(hkd_metrics_file_stats *out)
{
    if (!W.running)
        return -ENOENT;
    out->written = atomic_load(&W.written);
    out->failed = atomic_load(&W.failed);
    out->skipped = atomic_load(&W.skipped);
    out->last_ns = atomic_load(&W.last_ns);
    return 0;
}
