/* Multi-threaded stress test of the allocator through its public API.
 *
 * One program, two name sets: built plainly it calls malloc/free/... and so
 * tests whatever allocator the process runs on (libhakmem.so linked or
 * LD_PRELOADed, or glibc); built with -DSTRESS_PREFIXED it calls hak_malloc/
 * hak_free/... so the prefixed library can run under ASan/UBSan or TSan.
 *
 * Every block carries a pattern derived from a per-block tag, written when
 * the block is obtained and verified before it is released, so two live
 * blocks that overlap, or a block the allocator scribbles on, are caught at
 * the latest when the block is freed.  Randomness is seeded and per-thread,
 * so a run's operation sequence per thread is reproducible (the interleaving
 * of threads is not).
 *
 * usage: stress MODE [-t threads] [-i iterations] [-r rounds] [-s seed]
 *                    [-m megabytes] [-H]
 * modes: churn remote align fork rssfall edge
 * -H: fail unless the process really runs on hakmem (standard-name build).
 * Exit status 0 when every check passed; otherwise the reason is the last
 * line on stderr. */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "stress.h"

/* ---- the shared hand-off slots ------------------------------------------- */
/* A slot holds a record (itself allocated by the allocator under test) that
 * names a block; exchanging records between threads makes the receiver free
 * blocks other threads allocated, i.e. the remote-free path. */
#define NSLOTS 256
static _Atomic(blk_t *) g_slots[NSLOTS];

static void handoff_free(blk_t *rec, const char *when)
{
    blk_free(rec, when);
    A_FREE(rec);
}

/* Puts b into a random slot; frees what was there. */
static void handoff(blk_t *b, rng_t *r)
{
    blk_t *rec = launder(A_MALLOC(sizeof *rec));
    if (!rec)
        fail("malloc(record) returned NULL");
    *rec = *b;
    b->p = NULL;
    blk_t *old = atomic_exchange_explicit(&g_slots[rnd_below(r, NSLOTS)], rec, memory_order_acq_rel);
    if (old)
        handoff_free(old, "cross-thread free");
}

static void take_one(rng_t *r)
{
    blk_t *old = atomic_exchange_explicit(&g_slots[rnd_below(r, NSLOTS)], NULL, memory_order_acq_rel);
    if (old)
        handoff_free(old, "cross-thread free");
}

static size_t drain_slots(void)
{
    size_t n = 0;
    for (size_t i = 0; i < NSLOTS; i++) {
        blk_t *old = atomic_exchange_explicit(&g_slots[i], NULL, memory_order_acq_rel);
        if (old) {
            handoff_free(old, "drain");
            n++;
        }
    }
    return n;
}

/* ---- workers --------------------------------------------------------------- */
enum profile { PROF_CHURN, PROF_REMOTE };

typedef struct worker {
    pthread_t th;
    unsigned id, round;
    uint64_t seed;
    unsigned long iters;          /* 0: until g_stop */
    enum profile prof;
    unsigned long ops, handoffs, reallocs;
} worker_t;

static atomic_bool g_stop;

#define LOCAL_MAX 64

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    rng_t r = { mix64(w->seed ^ ((uint64_t)w->round << 32) ^ w->id) };
    uint64_t tagc = r.s;
    blk_t local[LOCAL_MAX];
    unsigned nlocal = 0;
    size_t max = w->prof == PROF_REMOTE ? 64 * KiB : 4 * MiB;
    /* In the remote profile half the threads only consume, so most blocks
     * die in a thread other than the one that made them. */
    bool consumer = w->prof == PROF_REMOTE && (w->id & 1);

    for (unsigned long it = 0; w->iters ? it < w->iters : !atomic_load_explicit(&g_stop, memory_order_relaxed); it++) {
        uint64_t op = rnd_below(&r, 100);
        w->ops++;
        if (consumer) {
            take_one(&r);
            if (op < 20) {   /* consumers allocate a little too, and hand it back */
                blk_t b;
                blk_new(&b, &r, 256, mix64(++tagc));
                handoff(&b, &r);
                w->handoffs++;
            }
            continue;
        }
        if (w->prof == PROF_REMOTE) {
            blk_t b;
            blk_new(&b, &r, rnd_below(&r, 50) ? 512 : max, mix64(++tagc));
            handoff(&b, &r);
            w->handoffs++;
            continue;
        }
        if (op < 40 || nlocal == 0) {
            if (nlocal == LOCAL_MAX) {
                unsigned k = (unsigned)rnd_below(&r, nlocal);
                blk_free(&local[k], "local free");
                local[k] = local[--nlocal];
            }
            blk_new(&local[nlocal++], &r, max, mix64(++tagc));
        } else if (op < 62) {
            unsigned k = (unsigned)rnd_below(&r, nlocal);
            blk_free(&local[k], "local free");
            local[k] = local[--nlocal];
        } else if (op < 75) {
            blk_realloc_chain(&local[rnd_below(&r, nlocal)], &r, max, &tagc);
            w->reallocs++;
        } else if (op < 80) {
            /* Zero-sized requests: a unique freeable pointer (or NULL). */
            void *p = launder(A_MALLOC(0));
            A_FREE(p);
        } else {
            unsigned k = (unsigned)rnd_below(&r, nlocal);
            handoff(&local[k], &r);
            local[k] = local[--nlocal];
            w->handoffs++;
        }
    }
    /* At exit half of what is left dies here, the rest outlives the thread
     * and is freed by others after its heap is gone. */
    for (unsigned k = 0; k < nlocal; k++) {
        if (rnd_below(&r, 2)) {
            blk_free(&local[k], "exit free");
        } else {
            handoff(&local[k], &r);
            w->handoffs++;
        }
    }
    return NULL;
}

static void start_workers(worker_t *ws, unsigned nt, unsigned round, uint64_t seed,
                          unsigned long iters, enum profile prof)
{
    for (unsigned t = 0; t < nt; t++) {
        ws[t] = (worker_t){ .id = t, .round = round, .seed = seed, .iters = iters, .prof = prof };
        int rc = pthread_create(&ws[t].th, NULL, worker_main, &ws[t]);
        if (rc)
            fail("pthread_create: %s", strerror(rc));
    }
}

static void join_workers(worker_t *ws, unsigned nt, unsigned long *ops, unsigned long *handoffs)
{
    for (unsigned t = 0; t < nt; t++) {
        pthread_join(ws[t].th, NULL);
        *ops += ws[t].ops;
        *handoffs += ws[t].handoffs;
    }
}

/* ---- modes ----------------------------------------------------------------- */
typedef struct opts {
    unsigned threads, rounds;
    unsigned long iters;
    uint64_t seed;
    unsigned mb;
} opts_t;

/* Threads are created and destroyed in rounds; memory a dead thread cached
 * must come back, so RSS after many rounds stays near RSS after the first. */
static int mode_rounds(const opts_t *o, enum profile prof)
{
    worker_t *ws = calloc(o->threads, sizeof *ws);
    unsigned long ops = 0, handoffs = 0;
    size_t rss_ref = 0, rss_last = 0;
    unsigned warm = o->rounds / 4 ? o->rounds / 4 : 1;
    if (!ws)
        fail("calloc(workers)");
    for (unsigned round = 0; round < o->rounds; round++) {
        start_workers(ws, o->threads, round, o->seed, o->iters, prof);
        join_workers(ws, o->threads, &ops, &handoffs);
        rss_last = rss_bytes();
        if (round < warm && rss_last > rss_ref)
            rss_ref = rss_last;
    }
    hakmem_stats st;
    bool have_stats = api_stats(&st);
    size_t left = drain_slots();
    printf("%s: threads=%u rounds=%u ops=%lu handoffs=%lu left_in_slots=%zu "
           "rss_after_warmup=%zuK rss_final=%zuK",
           g_mode, o->threads, o->rounds, ops, handoffs, left, rss_ref / KiB, rss_last / KiB);
    if (have_stats)
        printf(" threads_live=%u remote_frees_collected=%llu", st.threads_live,
               (unsigned long long)st.remote_frees_collected);
    printf("\n");
    /* Generous on purpose: this catches per-thread leaks (tens of MB per
     * round here), not fragmentation or tuning. */
    size_t bound = 2 * rss_ref + 128 * MiB;
    if (o->rounds > 2 * warm && rss_last > bound)
        fail("RSS grew with thread rounds: %zuK after round %u, %zuK after round %u (bound %zuK)",
             rss_ref / KiB, warm, rss_last / KiB, o->rounds, bound / KiB);
    /* Every worker has been joined: live thread count must not have grown
     * with the number of threads ever created. */
    if (have_stats && o->rounds > 1 && st.threads_live > o->threads + 1)
        fail("threads_live = %u after joining all %u x %u threads", st.threads_live,
             o->rounds, o->threads);
    free(ws);
    return 0;
}

/* Every power-of-two alignment up to 1 MiB through each aligned entry point,
 * in several threads at once; each thread frees its neighbour's blocks. */
#define ALIGN_LOG_MAX 20
#define ALIGN_SIZES   5
#define ALIGN_FUNCS   3
#define ALIGN_PER_REP ((ALIGN_LOG_MAX + 1) * ALIGN_SIZES * ALIGN_FUNCS + 2 * ALIGN_SIZES)

typedef struct align_worker {
    pthread_t th;
    unsigned id, nt;
    uint64_t seed;
    unsigned long reps;
    blk_t *blocks;   /* ALIGN_PER_REP, read by the neighbour after the barrier */
} align_worker_t;

static pthread_barrier_t g_align_bar;
static align_worker_t *g_align_ws;

static void *align_main(void *arg)
{
    align_worker_t *w = arg;
    rng_t r = { mix64(w->seed ^ w->id) };
    uint64_t tagc = r.s;
    size_t ps = (size_t)page_size();
    for (unsigned long rep = 0; rep < w->reps; rep++) {
        unsigned nb = 0;
        for (unsigned k = 0; k <= ALIGN_LOG_MAX; k++) {
            size_t a = (size_t)1 << k;
            size_t sizes[ALIGN_SIZES] = { 1, a > 1 ? a - 1 : 2, a, a + 1, 1 + rnd_below(&r, 2 * a + 64) };
            for (unsigned s = 0; s < ALIGN_SIZES; s++) {
                size_t n = sizes[s];
                void *p = NULL;
                size_t pa = a < sizeof(void *) ? sizeof(void *) : a;
                int rc = A_POSIX_MEMALIGN(&p, pa, n);
                if (rc)
                    fail("posix_memalign(%zu, %zu) failed: %d", pa, n, rc);
                blk_adopt(&w->blocks[nb++], p, n, pa, mix64(++tagc), "posix_memalign");
                blk_adopt(&w->blocks[nb++], A_ALIGNED_ALLOC(a, n), n, a, mix64(++tagc), "aligned_alloc");
                blk_adopt(&w->blocks[nb++], A_MEMALIGN(a, n), n, a, mix64(++tagc), "memalign");
            }
        }
        size_t vs[ALIGN_SIZES] = { 1, ps - 1, ps, ps + 1, 1 + rnd_below(&r, 64 * KiB) };
        for (unsigned s = 0; s < ALIGN_SIZES; s++) {
            blk_adopt(&w->blocks[nb++], A_VALLOC(vs[s]), vs[s], ps, mix64(++tagc), "valloc");
            void *p = A_PVALLOC(vs[s]);
            size_t whole = (vs[s] + ps - 1) / ps * ps;
            /* pvalloc rounds the request up to whole pages: all are ours. */
            blk_adopt(&w->blocks[nb++], p, whole, ps, mix64(++tagc), "pvalloc");
        }
        if (nb != ALIGN_PER_REP)
            fail("internal: %u blocks, expected %u", nb, (unsigned)ALIGN_PER_REP);
        pthread_barrier_wait(&g_align_bar);
        blk_t *theirs = g_align_ws[(w->id + 1) % w->nt].blocks;
        for (unsigned i = 0; i < nb; i++) {
            /* Free in a scrambled order so neighbouring blocks die apart. */
            unsigned j = (unsigned)((i * 7919u + rep) % nb);
            while (!theirs[j].p)
                j = (j + 1) % nb;
            blk_free(&theirs[j], "aligned cross-thread free");
        }
        pthread_barrier_wait(&g_align_bar);
    }
    return NULL;
}

static int mode_align(const opts_t *o)
{
    align_worker_t *ws = calloc(o->threads, sizeof *ws);
    if (!ws)
        fail("calloc(workers)");
    g_align_ws = ws;
    pthread_barrier_init(&g_align_bar, NULL, o->threads);
    for (unsigned t = 0; t < o->threads; t++) {
        ws[t] = (align_worker_t){ .id = t, .nt = o->threads, .seed = o->seed, .reps = o->iters };
        ws[t].blocks = calloc(ALIGN_PER_REP, sizeof(blk_t));
        if (!ws[t].blocks)
            fail("calloc(blocks)");
    }
    for (unsigned t = 0; t < o->threads; t++)
        if (pthread_create(&ws[t].th, NULL, align_main, &ws[t]))
            fail("pthread_create");
    for (unsigned t = 0; t < o->threads; t++)
        pthread_join(ws[t].th, NULL);
    for (unsigned t = 0; t < o->threads; t++)
        free(ws[t].blocks);
    pthread_barrier_destroy(&g_align_bar);
    free(ws);
    printf("align: threads=%u reps=%lu blocks=%lu\n", o->threads, o->iters,
           (unsigned long)o->threads * o->iters * ALIGN_PER_REP);
    return 0;
}

/* What a forked child does: allocate, free, realloc, reuse what the parent's
 * threads left in the slots (their owners do not exist in the child), start
 * a thread, and exit normally. */
static void *child_thread(void *arg)
{
    worker_t *w = arg;
    return worker_main(w);
}

static void child_work(uint64_t seed, unsigned n)
{
    worker_t w = { .id = 1000 + n, .seed = seed, .iters = 800, .prof = PROF_CHURN };
    worker_main(&w);
    for (unsigned i = 0; i < NSLOTS / 4; i++) {
        rng_t r = { mix64(seed + i) };
        take_one(&r);
    }
    if (CHILD_MAY_START_THREADS) {
        worker_t w2 = { .id = 2000 + n, .seed = seed, .iters = 300, .prof = PROF_CHURN };
        pthread_t th;
        if (pthread_create(&th, NULL, child_thread, &w2))
            fail("child: pthread_create");
        pthread_join(th, NULL);
    }
    exit(0);
}

static int mode_fork(const opts_t *o)
{
    worker_t *ws = calloc(o->threads, sizeof *ws);
    if (!ws)
        fail("calloc(workers)");
    atomic_store(&g_stop, false);
    start_workers(ws, o->threads, 0, o->seed, 0, PROF_CHURN);
    for (unsigned long f = 0; f < o->iters; f++) {
        struct timespec ts = { 0, 5 * 1000 * 1000 };
        nanosleep(&ts, NULL);
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0)
            fail("fork: %s", strerror(errno));
        if (pid == 0) {
            g_child = 0;
            child_work(o->seed + f, (unsigned)f);
        }
        g_child = pid;
        /* A child stuck on a lock some parent thread held at fork time
         * never exits: give it ample time, then call it a deadlock. */
        int status = 0;
        pid_t got = 0;
        for (int waited = 0; waited < 3000 && got == 0; waited++) {
            got = waitpid(pid, &status, WNOHANG);
            if (got == 0) {
                struct timespec tick = { 0, 10 * 1000 * 1000 };
                nanosleep(&tick, NULL);
            }
        }
        if (got == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            g_child = 0;
            fail("fork %lu: child %d still running after 30 s (deadlock after fork?)", f, (int)pid);
        }
        g_child = 0;
        if (got < 0)
            fail("waitpid: %s", strerror(errno));
        if (WIFSIGNALED(status))
            fail("fork %lu: child killed by signal %d", f, WTERMSIG(status));
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail("fork %lu: child exited with status %d", f, WEXITSTATUS(status));
    }
    atomic_store(&g_stop, true);
    unsigned long ops = 0, handoffs = 0;
    join_workers(ws, o->threads, &ops, &handoffs);
    drain_slots();
    free(ws);
    printf("fork: threads=%u forks=%lu parent_ops=%lu\n", o->threads, o->iters, ops);
    return 0;
}

/* Allocate ~mb MB in small and medium blocks, free 95%, collect: RSS must
 * drop by at least half of what was freed.  With -t N the blocks are made
 * by N threads that exit before main frees them (remote frees into the
 * heaps of dead threads). */
typedef struct rss_job {
    pthread_t th;
    uint64_t seed;
    size_t target;
    blk_t *blocks;
    size_t nb, cap, bytes;
} rss_job_t;

static void *rss_alloc_main(void *arg)
{
    rss_job_t *j = arg;
    rng_t r = { mix64(j->seed) };
    while (j->bytes < j->target) {
        if (j->nb == j->cap)
            fail("internal: rss block table full");
        /* By bytes, about half small (16..2K) and half medium (16K..512K). */
        size_t n = rnd_below(&r, 2) ? 16 + rnd_below(&r, 2 * KiB) : 16 * KiB + rnd_below(&r, 496 * KiB);
        if (n < 16 * KiB) {
            for (int k = 0; k < 255 && j->bytes < j->target && j->nb < j->cap; k++) {
                n = 16 + rnd_below(&r, 2 * KiB);
                blk_adopt(&j->blocks[j->nb], A_MALLOC(n), n, 0, mix64(j->nb + j->seed), "malloc");
                j->nb++;
                j->bytes += n;
            }
            continue;
        }
        blk_adopt(&j->blocks[j->nb], A_MALLOC(n), n, 0, mix64(j->nb + j->seed), "malloc");
        j->nb++;
        j->bytes += n;
    }
    return NULL;
}

static int mode_rssfall(const opts_t *o)
{
    unsigned nj = o->threads ? o->threads : 1;
    size_t target = (size_t)o->mb * MiB;
    rss_job_t *jobs = calloc(nj, sizeof *jobs);
    if (!jobs)
        fail("calloc(jobs)");
    size_t rss0 = rss_bytes();
    for (unsigned t = 0; t < nj; t++) {
        jobs[t].seed = o->seed + t;
        jobs[t].target = target / nj;
        jobs[t].cap = jobs[t].target / 512 + 1024;
        jobs[t].blocks = calloc(jobs[t].cap, sizeof(blk_t));
        if (!jobs[t].blocks)
            fail("calloc(blocks)");
        if (o->threads) {
            if (pthread_create(&jobs[t].th, NULL, rss_alloc_main, &jobs[t]))
                fail("pthread_create");
        } else {
            rss_alloc_main(&jobs[t]);
        }
    }
    if (o->threads)
        for (unsigned t = 0; t < nj; t++)
            pthread_join(jobs[t].th, NULL);
    size_t rss_full = rss_bytes(), total = 0, freed = 0;
    /* Keep 5%: the newest small blocks (one contiguous run) and every 20th
     * medium block (scattered, so medium frees must be purged page-wise). */
    for (unsigned t = 0; t < nj; t++) {
        rss_job_t *j = &jobs[t];
        size_t small_seen = 0, medium_seen = 0, small_total = 0;
        for (size_t i = 0; i < j->nb; i++)
            if (j->blocks[i].n < 16 * KiB)
                small_total += j->blocks[i].n;
        for (size_t i = 0; i < j->nb; i++) {
            blk_t *b = &j->blocks[i];
            total += b->n;
            bool keep;
            if (b->n < 16 * KiB) {
                small_seen += b->n;
                keep = small_seen > small_total / 20 * 19;
            } else {
                keep = medium_seen++ % 20 == 0;
            }
            if (!keep) {
                freed += b->n;
                blk_free(b, "rssfall free");
            }
        }
    }
    api_collect();
    size_t rss_after = rss_bytes();
    printf("rssfall: threads=%u allocated=%zuM freed=%zuM rss_start=%zuM rss_full=%zuM rss_after_collect=%zuM\n",
           o->threads, total / MiB, freed / MiB, rss0 / MiB, rss_full / MiB, rss_after / MiB);
    if (rss_full < rss0 + total / 2)
        fail("RSS rose only %zuM for %zuM written: measurement broken", (rss_full - rss0) / MiB, total / MiB);
    if (rss_after > rss_full || rss_full - rss_after < freed / 2)
        fail("RSS fell only from %zuM to %zuM after freeing %zuM and collecting",
             rss_full / MiB, rss_after / MiB, freed / MiB);
    for (unsigned t = 0; t < nj; t++) {
        for (size_t i = 0; i < jobs[t].nb; i++)
            if (jobs[t].blocks[i].p)
                blk_free(&jobs[t].blocks[i], "rssfall final free");
        free(jobs[t].blocks);
    }
    free(jobs);
    return 0;
}

/* Failure paths the API promises: NULL/errno, untouched old block. */
static int mode_edge(const opts_t *o)
{
    (void)o;
    volatile size_t huge = SIZE_MAX - 4096, half = SIZE_MAX / 2 + 2;
    errno = 0;
    if (A_MALLOC(huge))
        fail("malloc(SIZE_MAX - 4096) did not fail");
    if (errno != ENOMEM)
        fail("malloc(huge): errno %d, want ENOMEM", errno);
    errno = 0;
    if (A_CALLOC(half, 2))
        fail("calloc overflowing size_t did not fail");
    if (errno != ENOMEM)
        fail("calloc(overflow): errno %d, want ENOMEM", errno);
    blk_t b;
    blk_adopt(&b, A_MALLOC(1000), 1000, 0, 0x1234, "malloc");
    errno = 0;
    if (A_REALLOC(b.p, huge))
        fail("realloc(p, huge) did not fail");
    if (errno != ENOMEM)
        fail("realloc(huge): errno %d, want ENOMEM", errno);
    blk_verify(&b, "after failed realloc");
    errno = 0;
    if (A_REALLOCARRAY(b.p, half, 2))
        fail("reallocarray overflowing size_t did not fail");
    if (errno != ENOMEM)
        fail("reallocarray(overflow): errno %d, want ENOMEM", errno);
    blk_verify(&b, "after failed reallocarray");
    void *p = (void *)1;
    volatile size_t bad_align[] = { 0, 3, 12, sizeof(void *) / 2 };
    for (size_t i = 0; i < sizeof bad_align / sizeof bad_align[0]; i++) {
        if (A_POSIX_MEMALIGN(&p, bad_align[i], 64) != EINVAL)
            fail("posix_memalign(alignment %zu) did not return EINVAL", bad_align[i]);
    }
    if (p != (void *)1)
        fail("failed posix_memalign wrote its out-parameter");
    int rc = A_POSIX_MEMALIGN(&p, 64, huge);
    if (rc != ENOMEM)
        fail("posix_memalign(64, huge) returned %d, want ENOMEM", rc);
    blk_free(&b, "edge free");
    /* free(NULL) and realloc(NULL) are ordinary. */
    A_FREE(NULL);
    blk_adopt(&b, A_REALLOC(NULL, 33), 33, 0, 0x77, "realloc(NULL)");
    blk_free(&b, "edge free");
    printf("edge: ok\n");
    return 0;
}

/* ---- main -------------------------------------------------------------- */
static void usage(void)
{
    fprintf(stderr, "usage: stress churn|remote|align|fork|rssfall|edge [-t threads] [-i iters] "
                    "[-r rounds] [-s seed] [-m MB] [-H]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    opts_t o = { .threads = 8, .rounds = 10, .iters = 2000, .seed = 42, .mb = 200 };
    bool need_hakmem = false;
    if (argc < 2)
        usage();
    g_mode = argv[1];
    optind = 2;
    int c;
    while ((c = getopt(argc, argv, "t:i:r:s:m:H")) != -1) {
        switch (c) {
        case 't': o.threads = (unsigned)strtoul(optarg, NULL, 0); break;
        case 'i': o.iters = strtoul(optarg, NULL, 0); break;
        case 'r': o.rounds = (unsigned)strtoul(optarg, NULL, 0); break;
        case 's': o.seed = strtoull(optarg, NULL, 0); break;
        case 'm': o.mb = (unsigned)strtoul(optarg, NULL, 0); break;
        case 'H': need_hakmem = true; break;
        default: usage();
        }
    }
    if (need_hakmem) {
        const char *why = "";
        if (!api_is_hakmem(&why))
            fail("%s", why);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(g_mode, "churn"))   return o.threads ? mode_rounds(&o, PROF_CHURN) : (usage(), 2);
    if (!strcmp(g_mode, "remote"))  return o.threads >= 2 ? mode_rounds(&o, PROF_REMOTE) : (usage(), 2);
    if (!strcmp(g_mode, "align"))   return o.threads ? mode_align(&o) : (usage(), 2);
    if (!strcmp(g_mode, "fork"))    return mode_fork(&o);
    if (!strcmp(g_mode, "rssfall")) return mode_rssfall(&o);
    if (!strcmp(g_mode, "edge"))    return mode_edge(&o);
    usage();
    return 2;
}
