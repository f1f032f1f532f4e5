/* Standard multi-threaded allocator workloads.
 *
 *   churn     each thread replaces random slots of its own table with blocks
 *             of random small sizes (8 B - 1 KiB, log-uniform)
 *   prodcons  threads in pairs: the producer allocates, hands the block over
 *             a ring, the consumer checks and frees it: every free is remote
 *   server    waves of short-lived threads serve "requests": scratch blocks
 *             freed at once, session blocks kept for a while, cache entries
 *             published in a shared table where any later thread replaces
 *             and frees them; sessions outlive their thread in that table
 *   realloc   string builders (small appends) and vectors (doubling up to
 *             2 MiB) grown with realloc
 *   aligned   posix_memalign / aligned_alloc churn, alignments 16 B - 4 KiB
 *             (and some 64 KiB), every result checked
 *
 * Every block carries a tag that is checked before it is freed, so a broken
 * allocator fails the run (exit 72) instead of producing a number.
 * Output: one line of key=value pairs: ops (the operations named in the
 * header of each workload function), seconds, ops_per_sec, maxrss_kb. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

typedef struct config {
    unsigned threads;
    uint64_t ops;      /* per thread */
    uint64_t seed;
    unsigned rounds;   /* server: waves of threads */
} config;

typedef struct worker {
    pthread_t tid;
    unsigned id;
    const config *cfg;
    uint64_t done;     /* operations this thread performed */
    void *shared;      /* workload-specific */
} worker;

static pthread_barrier_t start_line;

static void corrupt(const char *what, const void *p)
{
    fprintf(stderr, "workloads: %s: block %p changed while it was live\n", what, p);
    exit(72);
}

static void out_of_memory(const char *what, size_t size)
{
    fprintf(stderr, "workloads: %s: allocation of %zu bytes failed\n", what, size);
    exit(71);
}

static uint64_t tag_of(const void *p, uint64_t salt)
{
    return ((uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull) ^ salt;
}

/* Log-uniform in [8, 1024]: allocation sizes in real programs are mostly small. */
static size_t small_size(bench_rng *r)
{
    unsigned e = 3 + (unsigned)bench_rng_below(r, 7);
    size_t base = (size_t)1 << e;
    return base + (size_t)bench_rng_below(r, base + 1);
}

/* The head of a block (up to 8 bytes, never its last byte) holds a tag
 * derived from its address, the last byte the salt: a block handed out twice,
 * or overlapping another, is caught when either owner checks it. */
static size_t head_len(size_t size)
{
    return size - 1 < 8 ? size - 1 : 8;
}

static void stamp(void *p, size_t size, uint64_t salt)
{
    uint64_t t = tag_of(p, salt);
    memcpy(p, &t, head_len(size));
    ((unsigned char *)p)[size - 1] = (unsigned char)salt;
}

static int stamped(const void *p, size_t size, uint64_t salt)
{
    uint64_t t = tag_of(p, salt), got = 0;
    size_t n = head_len(size);
    memcpy(&got, p, n);
    if (n < 8)
        t &= (1ull << (8 * n)) - 1;
    return got == t && ((const unsigned char *)p)[size - 1] == (unsigned char)salt;
}

/* ---- churn: ops = malloc calls (each replacing, i.e. freeing, a slot) ---- */

#define CHURN_SLOTS 2048

static void *churn_thread(void *arg)
{
    worker *w = arg;
    bench_rng rng;
    bench_rng_seed(&rng, w->cfg->seed * 1000 + w->id);
    void **slot = bench_map(CHURN_SLOTS * sizeof *slot);
    uint32_t *len = bench_map(CHURN_SLOTS * sizeof *len);
    pthread_barrier_wait(&start_line);
    for (uint64_t i = 0; i < w->cfg->ops; i++) {
        unsigned j = (unsigned)bench_rng_below(&rng, CHURN_SLOTS);
        if (slot[j]) {
            if (!stamped(slot[j], len[j], j))
                corrupt("churn", slot[j]);
            free(slot[j]);
        }
        size_t size = small_size(&rng);
        void *p = malloc(size);
        if (!p)
            out_of_memory("churn", size);
        stamp(p, size, j);
        slot[j] = p;
        len[j] = (uint32_t)size;
    }
    for (unsigned j = 0; j < CHURN_SLOTS; j++) {
        if (slot[j]) {
            if (!stamped(slot[j], len[j], j))
                corrupt("churn", slot[j]);
            free(slot[j]);
        }
    }
    w->done = w->cfg->ops;
    bench_unmap(slot, CHURN_SLOTS * sizeof *slot);
    bench_unmap(len, CHURN_SLOTS * sizeof *len);
    return NULL;
}

/* ---- prodcons: ops = blocks handed from a producer to a consumer ---- */

#define RING 1024

typedef struct ring {
    _Alignas(64) _Atomic uint64_t head;   /* written by the producer */
    _Alignas(64) _Atomic uint64_t tail;   /* written by the consumer */
    _Alignas(64) void *item[RING];
    uint32_t len[RING];
} ring;

static void *producer_thread(void *arg)
{
    worker *w = arg;
    ring *q = w->shared;
    bench_rng rng;
    bench_rng_seed(&rng, w->cfg->seed * 1000 + w->id);
    uint64_t tail_seen = 0;
    pthread_barrier_wait(&start_line);
    for (uint64_t i = 0; i < w->cfg->ops; i++) {
        size_t size = 16 + (size_t)bench_rng_below(&rng, 497);
        void *p = malloc(size);
        if (!p)
            out_of_memory("producer", size);
        stamp(p, size, i);
        while (i - tail_seen >= RING) {
            tail_seen = atomic_load_explicit(&q->tail, memory_order_acquire);
            if (i - tail_seen >= RING)
                sched_yield();
        }
        q->item[i % RING] = p;
        q->len[i % RING] = (uint32_t)size;
        atomic_store_explicit(&q->head, i + 1, memory_order_release);
    }
    w->done = w->cfg->ops;
    return NULL;
}

static void *consumer_thread(void *arg)
{
    worker *w = arg;
    ring *q = w->shared;
    uint64_t head_seen = 0;
    pthread_barrier_wait(&start_line);
    for (uint64_t i = 0; i < w->cfg->ops; i++) {
        while (head_seen <= i) {
            head_seen = atomic_load_explicit(&q->head, memory_order_acquire);
            if (head_seen <= i)
                sched_yield();
        }
        void *p = q->item[i % RING];
        size_t size = q->len[i % RING];
        if (!stamped(p, size, i))
            corrupt("consumer", p);
        free(p);
        atomic_store_explicit(&q->tail, i + 1, memory_order_release);
    }
    w->done = 0;   /* the producer counts the hand-over */
    return NULL;
}

/* ---- server: ops = malloc calls of all workers; --ops is the budget of one
 * thread slot summed over all rounds ---- */

#define CACHE_SLOTS 4096
#define SESSIONS 64

typedef struct entry {
    uint32_t size;
    uint32_t salt;
} entry;

typedef struct server {
    _Atomic(entry *) cache[CACHE_SLOTS];
} server;

static entry *entry_new(size_t size, uint32_t salt)
{
    if (size < sizeof(entry) + 1)
        size = sizeof(entry) + 1;
    entry *e = malloc(size);
    if (!e)
        out_of_memory("server", size);
    e->size = (uint32_t)size;
    e->salt = salt;
    ((unsigned char *)e)[size - 1] = (unsigned char)salt;
    return e;
}

static void entry_free(entry *e)
{
    if (((unsigned char *)e)[e->size - 1] != (unsigned char)e->salt)
        corrupt("server", e);
    free(e);
}

/* Swaps e into a random cache slot and frees whatever was there, which was
 * usually allocated by another thread, possibly one that has exited. */
static void cache_put(server *sv, bench_rng *rng, entry *e)
{
    unsigned j = (unsigned)bench_rng_below(rng, CACHE_SLOTS);
    entry *old = atomic_exchange_explicit(&sv->cache[j], e, memory_order_acq_rel);
    if (old)
        entry_free(old);
}

static void *server_thread(void *arg)
{
    worker *w = arg;
    server *sv = w->shared;
    bench_rng rng;
    bench_rng_seed(&rng, w->cfg->seed * 1000 + w->id);
    entry *session[SESSIONS] = {0};
    entry *scratch[8];
    uint64_t mallocs = 0;
    pthread_barrier_wait(&start_line);
    uint64_t budget = w->cfg->ops / w->cfg->rounds + 1;
    for (uint64_t r = 0; mallocs < budget; r++) {
        unsigned n = 1 + (unsigned)bench_rng_below(&rng, 8);
        for (unsigned k = 0; k < n; k++) {
            /* One request in 16 needs a big buffer (a body, a page of output). */
            size_t size = bench_rng_below(&rng, 16) ? small_size(&rng)
                                                    : 4096 + (size_t)bench_rng_below(&rng, 28673);
            scratch[k] = entry_new(size, (uint32_t)(r + k));
        }
        mallocs += n;
        for (unsigned k = 0; k < n; k++)
            entry_free(scratch[k]);
        if (bench_rng_below(&rng, 4) == 0) {
            unsigned s = (unsigned)bench_rng_below(&rng, SESSIONS);
            if (session[s])
                entry_free(session[s]);
            session[s] = entry_new(64 + (size_t)bench_rng_below(&rng, 449), (uint32_t)r);
            mallocs++;
        }
        if (bench_rng_below(&rng, 16) == 0) {
            cache_put(sv, &rng, entry_new(small_size(&rng), (uint32_t)r));
            mallocs++;
        }
    }
    /* The thread ends but its sessions live on in the shared cache. */
    for (unsigned s = 0; s < SESSIONS; s++)
        if (session[s])
            cache_put(sv, &rng, session[s]);
    w->done = mallocs;
    return NULL;
}

/* ---- realloc: ops = realloc calls ---- */

static void *realloc_thread(void *arg)
{
    worker *w = arg;
    bench_rng rng;
    bench_rng_seed(&rng, w->cfg->seed * 1000 + w->id);
    uint64_t done = 0;
    pthread_barrier_wait(&start_line);
    while (done < w->cfg->ops) {
        if (bench_rng_below(&rng, 8)) {
            /* A string builder: appends of 1-64 bytes up to 1-64 KiB. */
            size_t limit = 1024 + (size_t)bench_rng_below(&rng, 63 * 1024);
            size_t len = 0;
            unsigned char *s = NULL;
            while (len < limit && done < w->cfg->ops) {
                size_t add = 1 + (size_t)bench_rng_below(&rng, 64);
                unsigned char *t = realloc(s, len + add);
                if (!t)
                    out_of_memory("realloc", len + add);
                if (len && (t[0] != 0xA5 || (len > 1 && t[len - 1] != (unsigned char)len)))
                    corrupt("realloc string", t);
                memset(t + len, (unsigned char)(len + add), add);
                t[0] = 0xA5;
                s = t;
                len += add;
                done++;
            }
            free(s);
        } else {
            /* A vector doubling from 16 B up to 64 KiB - 2 MiB. */
            size_t limit = (size_t)64 * 1024 << bench_rng_below(&rng, 6);
            size_t cap = 16;
            uint64_t *v = malloc(cap);
            if (!v)
                out_of_memory("realloc", cap);
            v[0] = 0x5A5A5A5A;
            v[1] = cap;
            while (cap < limit && done < w->cfg->ops) {
                uint64_t *t = realloc(v, cap * 2);
                if (!t)
                    out_of_memory("realloc", cap * 2);
                if (t[0] != 0x5A5A5A5A || t[cap / 8 - 1] != cap)
                    corrupt("realloc vector", t);
                cap *= 2;
                t[cap / 8 - 1] = cap;
                v = t;
                done++;
            }
            free(v);
        }
    }
    w->done = done;
    return NULL;
}

/* ---- aligned: ops = aligned allocations (each replacing a slot) ---- */

#define ALIGNED_SLOTS 1024

static void *aligned_thread(void *arg)
{
    worker *w = arg;
    bench_rng rng;
    bench_rng_seed(&rng, w->cfg->seed * 1000 + w->id);
    void **slot = bench_map(ALIGNED_SLOTS * sizeof *slot);
    uint32_t *len = bench_map(ALIGNED_SLOTS * sizeof *len);
    pthread_barrier_wait(&start_line);
    for (uint64_t i = 0; i < w->cfg->ops; i++) {
        unsigned j = (unsigned)bench_rng_below(&rng, ALIGNED_SLOTS);
        if (slot[j]) {
            if (!stamped(slot[j], len[j], j))
                corrupt("aligned", slot[j]);
            free(slot[j]);
        }
        size_t align = bench_rng_below(&rng, 64) ? (size_t)16 << bench_rng_below(&rng, 9)
                                                 : (size_t)65536;
        size_t size = 8 + (size_t)bench_rng_below(&rng, 4089);
        void *p = NULL;
        if (i & 1) {
            if (posix_memalign(&p, align, size) != 0)
                p = NULL;
        } else {
            size = (size + align - 1) / align * align;   /* C11's rule for aligned_alloc */
            p = aligned_alloc(align, size);
        }
        if (!p)
            out_of_memory("aligned", size);
        if ((uintptr_t)p % align) {
            fprintf(stderr, "workloads: aligned: %p is not aligned to %zu\n", p, align);
            exit(73);
        }
        stamp(p, size, j);
        slot[j] = p;
        len[j] = (uint32_t)size;
    }
    for (unsigned j = 0; j < ALIGNED_SLOTS; j++) {
        if (slot[j]) {
            if (!stamped(slot[j], len[j], j))
                corrupt("aligned", slot[j]);
            free(slot[j]);
        }
    }
    w->done = w->cfg->ops;
    bench_unmap(slot, ALIGNED_SLOTS * sizeof *slot);
    bench_unmap(len, ALIGNED_SLOTS * sizeof *len);
    return NULL;
}

/* ---- driver ---- */

static void spawn(worker *w, void *(*fn)(void *))
{
    int rc = pthread_create(&w->tid, NULL, fn, w);
    if (rc) {
        fprintf(stderr, "workloads: pthread_create: %s\n", strerror(rc));
        exit(70);
    }
}

/* Runs one wave of cfg->threads threads; returns the operations they did. */
static uint64_t wave(const config *cfg, unsigned first_id, void *(*even)(void *),
                     void *(*odd)(void *), void *shared, size_t shared_stride)
{
    worker *w = bench_map(cfg->threads * sizeof *w);
    pthread_barrier_init(&start_line, NULL, cfg->threads + 1);
    for (unsigned t = 0; t < cfg->threads; t++) {
        w[t].id = first_id + t;
        w[t].cfg = cfg;
        w[t].shared = shared ? (char *)shared + (t / 2) * shared_stride : NULL;
        spawn(&w[t], (t & 1) ? odd : even);
    }
    pthread_barrier_wait(&start_line);
    uint64_t ops = 0;
    for (unsigned t = 0; t < cfg->threads; t++) {
        pthread_join(w[t].tid, NULL);
        ops += w[t].done;
    }
    pthread_barrier_destroy(&start_line);
    bench_unmap(w, cfg->threads * sizeof *w);
    return ops;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: workloads --workload churn|prodcons|server|realloc|aligned\n"
            "                 [--threads N] [--ops N] [--rounds N] [--seed N]\n"
            "  --threads  threads (default 4; prodcons uses pairs, so it needs an even number)\n"
            "  --ops      operations per thread (default: churn 1000000, prodcons 2000000,\n"
            "             server 1200000, realloc 1000000, aligned 400000)\n"
            "  --rounds   server: waves of threads, each --threads strong (default 8)\n"
            "  --seed     seed of every thread's sequence (default 1)\n");
}

int main(int argc, char **argv)
{
    const char *name = NULL;
    config cfg = {.threads = 4, .ops = 0, .seed = 1, .rounds = 8};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--workload") && v) {
            name = v;
            i++;
        } else if (!strcmp(a, "--threads")) {
            cfg.threads = (unsigned)bench_parse_u64("workloads", a, v);
            i++;
        } else if (!strcmp(a, "--ops")) {
            cfg.ops = bench_parse_u64("workloads", a, v);
            i++;
        } else if (!strcmp(a, "--rounds")) {
            cfg.rounds = (unsigned)bench_parse_u64("workloads", a, v);
            i++;
        } else if (!strcmp(a, "--seed")) {
            cfg.seed = bench_parse_u64("workloads", a, v);
            i++;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 64;
        }
    }
    if (!name || cfg.threads > 1024) {
        usage(stderr);
        return 64;
    }

    uint64_t t0, t1, ops = 0;
    if (!strcmp(name, "churn")) {
        cfg.ops = cfg.ops ? cfg.ops : 1000000;
        t0 = bench_now_ns();
        ops = wave(&cfg, 0, churn_thread, churn_thread, NULL, 0);
        t1 = bench_now_ns();
    } else if (!strcmp(name, "prodcons")) {
        if (cfg.threads % 2) {
            fprintf(stderr, "workloads: prodcons needs an even number of threads\n");
            return 64;
        }
        cfg.ops = cfg.ops ? cfg.ops : 2000000;
        size_t bytes = (cfg.threads / 2) * sizeof(ring);
        ring *rings = bench_map(bytes);
        t0 = bench_now_ns();
        ops = wave(&cfg, 0, producer_thread, consumer_thread, rings, sizeof(ring));
        t1 = bench_now_ns();
        bench_unmap(rings, bytes);
    } else if (!strcmp(name, "server")) {
        cfg.ops = cfg.ops ? cfg.ops : 1200000;
        server *sv = bench_map(sizeof *sv);
        t0 = bench_now_ns();
        for (unsigned r = 0; r < cfg.rounds; r++)
            ops += wave(&cfg, r * cfg.threads, server_thread, server_thread, sv, 0);
        t1 = bench_now_ns();
        for (unsigned j = 0; j < CACHE_SLOTS; j++) {
            entry *e = atomic_load(&sv->cache[j]);
            if (e)
                entry_free(e);
        }
        bench_unmap(sv, sizeof *sv);
    } else if (!strcmp(name, "realloc")) {
        cfg.ops = cfg.ops ? cfg.ops : 1000000;
        t0 = bench_now_ns();
        ops = wave(&cfg, 0, realloc_thread, realloc_thread, NULL, 0);
        t1 = bench_now_ns();
    } else if (!strcmp(name, "aligned")) {
        cfg.ops = cfg.ops ? cfg.ops : 400000;
        t0 = bench_now_ns();
        ops = wave(&cfg, 0, aligned_thread, aligned_thread, NULL, 0);
        t1 = bench_now_ns();
    } else {
        fprintf(stderr, "workloads: unknown workload '%s'\n", name);
        return 64;
    }

    double secs = (double)(t1 - t0) / 1e9;
    printf("workload=%s threads=%u ops=%llu seconds=%.6f ops_per_sec=%.0f maxrss_kb=%ld\n",
           name, cfg.threads, (unsigned long long)ops, secs, secs > 0 ? (double)ops / secs : 0.0,
           bench_maxrss_kb());
    return fflush(stdout) == 0 ? 0 : 74;
}
