/* The interval's second thread: runs one job at a time for the interval
 * thread (half of the collection, then half of the learn pass).  It is a
 * registered RCU reader, so jobs may look records up. */
#ifndef HAKMEMD_WORKER_H
#define HAKMEMD_WORKER_H

typedef void (*hkd_job_fn)(void *arg);

/* Runs fn(arg) on the worker, starting it on first use; when no thread can
 * be made, runs it right here (said once per run of the core). */
void hkd_worker_post(hkd_job_fn fn, void *arg);
/* Waits for the job posted last. */
void hkd_worker_wait(void);
/* 1 once the thread runs. */
int  hkd_worker_started(void);
/* Jobs the second thread has run since the process started (a job run
 * here, for want of a thread, is not counted). */
unsigned long hkd_worker_jobs(void);
void hkd_worker_stop(void);

#endif
