/* One snapshot waits at most (a newer one replaces it); the buffers of the
 * last one written are kept for the next, so a periodic save does not
 * fault in fresh pages every time. */
#include "saver.h"
#include "persist_binaries.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    pthread_t thread;
    int started, stop;
    char dir[1024];
    size_t max_file;
    hkd_snapshot *pending;
    hkd_snapshot *spare;             /* a written snapshot's buffers, for the next */
    uint64_t ticket;                 /* of the newest snapshot handed over */
    uint64_t done_ticket;            /* of the newest snapshot written (or failed) */
    int done_rc;
    size_t dropped;                  /* sites the last save left out for size */
} sv = { .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER };

/* Room for n items of `size` in *p (some headroom: the table grows, and a
 * fresh buffer costs page faults). */
static int reserve(void **p, size_t *cap, size_t n, size_t size)
{
    if (n <= *cap)
        return 0;
    size_t c = n + n / 4;
    void *q = realloc(*p, c * size);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

int hkd_snapshot_reserve(hkd_snapshot *s, size_t n, size_t n_mods)
{
    if (reserve((void **)&s->sites, &s->cap, n, sizeof *s->sites) < 0 ||
        reserve((void **)&s->mods, &s->cap_mods, n_mods, sizeof *s->mods) < 0)
        return -ENOMEM;
    return 0;
}

void hkd_snapshot_free(hkd_snapshot *s)
{
    if (!s)
        return;
    free(s->sites);
    free(s->mods);
    free(s->binaries);
    free(s);
}

void hkd_saver_config(const char *dir, size_t max_file_bytes)
{
    pthread_mutex_lock(&sv.lock);
    snprintf(sv.dir, sizeof sv.dir, "%s", dir);
    sv.max_file = max_file_bytes;
    pthread_mutex_unlock(&sv.lock);
}

static int write_state(hkd_snapshot *s, const char *dir, size_t max_file)
{
    s->n_mods = hkd_module_names_unique(s->mods, s->n_mods);
    uint8_t *buf, *bins = NULL;
    size_t len, bins_len = 0, kept = 0;
    size_t payload = max_file > HKD_STATE_HEADER_BYTES ? max_file - HKD_STATE_HEADER_BYTES : 1;
    /* The binaries first (a few hundred bytes each, a few thousand at most):
     * the sites take what room is left. */
    int rc = hkd_binaries_encode(s->binaries, s->n_binaries, &bins, &bins_len);
    if (rc == 0 && bins_len >= payload)
        bins_len = 0;
    if (rc == 0)
        rc = hkd_policy_encode(s->sites, s->n, s->mods, s->n_mods, s->generation, payload - bins_len, &buf, &len,
                               &kept);
    if (rc == 0 && bins_len) {
        uint8_t *both = realloc(buf, len + bins_len);
        if (both) {
            memcpy(both + len, bins, bins_len);
            buf = both;
            len += bins_len;
        } else {
            rc = -ENOMEM;
            free(buf);
        }
    }
    free(bins);
    if (rc == 0) {
        rc = hkd_state_save(dir, buf, len);
        free(buf);
    }
    if (rc < 0) {
        hkd_log(HKD_LOG_WARNING, "saving learned state to %s failed: %s", dir, strerror(-rc));
        return rc;
    }
    /* Said when sites start and stop being left out, not every save. */
    size_t dropped = s->n - kept;
    if (dropped && !sv.dropped)
        hkd_log(HKD_LOG_NOTICE, "state file at its cap of %zu bytes: kept the %zu most used sites of %zu", max_file,
                kept, s->n);
    else if (!dropped && sv.dropped)
        hkd_log(HKD_LOG_INFO, "state file holds every learned site again (%zu)", s->n);
    sv.dropped = dropped;
    return 0;
}

static void *saver_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&sv.lock);
    for (;;) {
        while (!sv.pending && !sv.stop)
            pthread_cond_wait(&sv.wake, &sv.lock);
        if (!sv.pending)
            break;                   /* stop, and nothing left to write */
        hkd_snapshot *s = sv.pending;
        uint64_t ticket = sv.ticket;
        char dir[sizeof sv.dir];
        memcpy(dir, sv.dir, sizeof dir);
        size_t max_file = sv.max_file;
        sv.pending = NULL;
        pthread_mutex_unlock(&sv.lock);
        int rc = write_state(s, dir, max_file);
        pthread_mutex_lock(&sv.lock);
        if (!sv.spare)
            sv.spare = s;
        else
            hkd_snapshot_free(s);
        sv.done_ticket = ticket;
        sv.done_rc = rc;
        pthread_cond_broadcast(&sv.done);
    }
    pthread_mutex_unlock(&sv.lock);
    return NULL;
}

hkd_snapshot *hkd_saver_snapshot(void)
{
    pthread_mutex_lock(&sv.lock);
    hkd_snapshot *s = sv.spare;
    sv.spare = NULL;
    pthread_mutex_unlock(&sv.lock);
    if (!s)
        s = calloc(1, sizeof *s);
    if (s)
        s->n = s->n_mods = 0;
    return s;
}

int hkd_saver_submit(hkd_snapshot *s, uint64_t *ticket)
{
    pthread_mutex_lock(&sv.lock);
    if (!sv.started) {
        int rc = pthread_create(&sv.thread, NULL, saver_main, NULL);
        if (rc != 0) {
            pthread_mutex_unlock(&sv.lock);
            hkd_snapshot_free(s);
            return -rc;
        }
        sv.started = 1;
    }
    hkd_snapshot_free(sv.pending);   /* superseded before it was written */
    sv.pending = s;
    *ticket = ++sv.ticket;
    pthread_cond_signal(&sv.wake);
    pthread_mutex_unlock(&sv.lock);
    return 0;
}

int hkd_saver_wait(uint64_t ticket)
{
    pthread_mutex_lock(&sv.lock);
    while (sv.done_ticket < ticket)
        pthread_cond_wait(&sv.done, &sv.lock);
    int rc = sv.done_rc;
    pthread_mutex_unlock(&sv.lock);
    return rc;
}

void hkd_saver_stop(void)
{
    pthread_mutex_lock(&sv.lock);
    if (!sv.started) {
        pthread_mutex_unlock(&sv.lock);
        return;
    }
    sv.stop = 1;
    pthread_cond_signal(&sv.wake);
    pthread_mutex_unlock(&sv.lock);
    pthread_join(sv.thread, NULL);
    sv.started = 0;
    sv.stop = 0;
    hkd_snapshot_free(sv.spare);
    sv.spare = NULL;
    sv.dropped = 0;
}
