#include "worker.h"

#include <pthread.h>
#include <string.h>

#include <urcu.h>

#include "log.h"

static struct {
    pthread_t tid;
    pthread_mutex_t m;
    pthread_cond_t go, done;
    hkd_job_fn fn;                   /* set: a job to run; NULL: idle */
    void *arg;
    int started, stop, failed;
    unsigned long jobs;
} worker = { .m = PTHREAD_MUTEX_INITIALIZER, .go = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER };

static void *worker_main(void *arg)
{
    (void)arg;
    rcu_register_thread();
    pthread_mutex_lock(&worker.m);
    for (;;) {
        while (!worker.fn && !worker.stop)
            pthread_cond_wait(&worker.go, &worker.m);
        if (worker.stop)
            break;
        hkd_job_fn fn = worker.fn;
        void *job = worker.arg;
        pthread_mutex_unlock(&worker.m);
        fn(job);
        pthread_mutex_lock(&worker.m);
        worker.jobs++;
        worker.fn = NULL;
        pthread_cond_signal(&worker.done);
    }
    pthread_mutex_unlock(&worker.m);
    rcu_unregister_thread();
    return NULL;
}

void hkd_worker_post(hkd_job_fn fn, void *arg)
{
    if (!worker.started && !worker.failed) {
        int err = pthread_create(&worker.tid, NULL, worker_main, NULL);
        worker.started = err == 0;
        worker.failed = err != 0;    /* tried and said once per run of the core */
        if (err)
            hkd_log(HKD_LOG_WARNING, "the interval stays on one thread: %s", strerror(err));
    }
    if (!worker.started) {
        fn(arg);
        return;
    }
    pthread_mutex_lock(&worker.m);
    worker.fn = fn;
    worker.arg = arg;
    pthread_cond_signal(&worker.go);
    pthread_mutex_unlock(&worker.m);
}

void hkd_worker_wait(void)
{
    if (!worker.started)
        return;
    pthread_mutex_lock(&worker.m);
    while (worker.fn)
        pthread_cond_wait(&worker.done, &worker.m);
    pthread_mutex_unlock(&worker.m);
}

int hkd_worker_started(void)
{
    return worker.started;
}

unsigned long hkd_worker_jobs(void)
{
    pthread_mutex_lock(&worker.m);
    unsigned long n = worker.jobs;
    pthread_mutex_unlock(&worker.m);
    return n;
}

void hkd_worker_stop(void)
{
    worker.failed = 0;
    if (!worker.started)
        return;
    pthread_mutex_lock(&worker.m);
    worker.stop = 1;
    pthread_cond_signal(&worker.go);
    pthread_mutex_unlock(&worker.m);
    pthread_join(worker.tid, NULL);
    worker.started = worker.stop = 0;
}
