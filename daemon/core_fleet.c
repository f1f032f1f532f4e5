/* The core's side of a fleet (core_fleet.h): copying out what this host
 * learned, and taking in what the others learned as per-record priors.
 *
 * Both take g.lock, as the control operations do, so they run between
 * intervals and hold the lock only for a walk over memory: the fleet
 * thread does every request to etcd before or after, never under it. */
#include "core_fleet.h"
#include "core_rec.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "site_key.h"

core_prior *core_prior_chunks[N_CHUNKS];
static uint32_t apply_gen;           /* g.lock's */

int hkd_fleet_snapshot(hkd_fleet_site **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&g.lock);
    size_t cap = 0;
    for (uint32_t i = 0; i < g.n_idx; i++) {
        const site_rec *r = rec_at(i);
        cap += !r->free && r->learn.total_pulls > 0;
    }
    hkd_fleet_site *v = cap ? malloc(cap * sizeof *v) : NULL;
    if (cap && !v) {
        pthread_mutex_unlock(&g.lock);
        return -ENOMEM;
    }
    size_t k = 0;
    for (uint32_t i = 0; i < g.n_idx && k < cap; i++) {
        const site_rec *r = rec_at(i);
        const hkd_learn *l = &r->learn;
        if (r->free || l->total_pulls == 0)
            continue;
        hkd_fleet_site *s = &v[k++];
        s->key = cold_of(r)->key;
        s->sizes_known = l->sizes_known;
        s->size_lo = l->size_lo;
        s->size_hi = l->size_hi;
        s->arm = (int8_t)rec_arm(r);
        s->ref_cost = l->ref_cost > 0 ? l->ref_cost : 0.0;
        for (int a = 0; a < HKD_N_ARMS; a++) {
            s->pulls[a] = l->pulls[a];
            s->reward_sum[a] = l->pulls[a] ? hkd_learn_reward_sum(l, a) : 0.0;
        }
    }
    pthread_mutex_unlock(&g.lock);
    *out = v;
    *n = k;
    return 0;
}

/* Record idx's prior, its chunk made when it is the first (released: a
 * reader that sees the chunk sees it zeroed). */
static core_prior *prior_slot(uint32_t idx)
{
    core_prior **at = &core_prior_chunks[idx / CHUNK_RECS];
    core_prior *c = *at;
    if (!c) {
        if (!(c = calloc(CHUNK_RECS, sizeof *c)))
            return NULL;
        __atomic_store_n(at, c, __ATOMIC_RELEASE);
    }
    return &c[idx % CHUNK_RECS];
}

static void prior_write(core_prior *p, const hkd_site_key *key, const hkd_prior *prior, uint32_t gen)
{
    atomic_store_explicit(&p->seq, p->seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    if (key)
        p->key = *key;
    if (prior)
        p->prior = *prior;
    else
        memset(&p->prior, 0, sizeof p->prior);
    p->gen = gen;
    atomic_store_explicit(&p->seq, p->seq + 1, memory_order_release);
}

/* A record takes the fleet's sizes and reference cost when it has none of
 * its own (so its rewards are on the fleet's scale), and, while no pull of
 * its own has begun, the arm the fleet's statistics choose
 * (hkd_learn_next_with: a host that joins exploits what the fleet learned
 * before it explores).  Once it has pulled the site, its arm moves only as
 * a pull of its own ends, which weighs the prior too: chosen again at every
 * change of another host's sums, an idle site would take each of UCB1's
 * explorations at once, on every idle host of the fleet together, with no
 * process there to measure it.  1 when the arm it runs changed. */
static int take_prior(site_rec *r, const hkd_fleet_sum *s, const hkd_prior *prior)
{
    hkd_learn *l = &r->learn;
    int before = rec_arm(r);
    wbegin(r);
    if (!l->sizes_known && s->sizes_known)
        hkd_learn_set_sizes(l, s->size_lo, s->size_hi);
    if (l->ref_cost <= 0.0 && s->ref_cost > 0.0)
        l->ref_cost = s->ref_cost;
    if (l->pinned < 0 && l->total_pulls == 0 && l->acc_allocs == 0 && l->settle == 0) {
        int next = hkd_learn_next_with(l, prior, g.cfg.learn.explore);
        if (next != l->current) {
            l->current = next;
            hkd_learn_resume(l, r->processes ? g.cfg.learn.settle_intervals : 0);
        }
    }
    int changed = rec_arm(r) != before;
    if (changed)
        core_set_published(r);
    wend(r);
    return changed;
}

/* The users whose sites the fleet may add here (see hkd_fleet_apply). */
static int fleet_may_add(uint32_t uid)
{
    return uid == 0 || uid == g.cfg.daemon_uid || hkd_domains_find(g.domains, uid) >= 0;
}

int hkd_fleet_apply(const hkd_fleet_sum *v, size_t n)
{
    int made = 0, changed = 0, no_room = 0;
    pthread_mutex_lock(&g.lock);
    if (!g.ht || !g.cfg.learning) {
        pthread_mutex_unlock(&g.lock);
        return 0;
    }
    uint32_t gen = ++apply_gen ? apply_gen : ++apply_gen;
    rcu_read_lock();
    for (size_t i = 0; i < n; i++) {
        /* A uid names a user only on hosts that share a user database:
         * the fleet adds sites for users this host knows (who have sites
         * here), and for root and the daemon's own user, never a user of
         * its own making. */
        if (!fleet_may_add(v[i].key.domain))
            continue;
        uint32_t before = g.n_idx - g.n_free;
        site_rec *r = core_get_or_add(&v[i].key, NULL, 0, NULL);
        if (!r)
            continue;                /* refused by the user's limits, or no memory */
        made += g.n_idx - g.n_free != before;
        core_prior *p = prior_slot(r->idx);
        if (!p) {
            no_room = 1;
            continue;
        }
        prior_write(p, &v[i].key, &v[i].prior, gen);
        changed += take_prior(r, &v[i], &p->prior);
    }
    rcu_read_unlock();
    /* What no host sends any more no longer counts. */
    for (uint32_t ci = 0; ci < N_CHUNKS; ci++) {
        core_prior *c = core_prior_chunks[ci];
        for (uint32_t k = 0; c && k < CHUNK_RECS; k++)
            if (c[k].gen && c[k].gen != gen)
                prior_write(&c[k], NULL, NULL, 0);
    }
    if (made || changed) {
        g.dirty = 1;
        core_publish(0);
    }
    pthread_mutex_unlock(&g.lock);
    if (no_room)
        hkd_log(HKD_LOG_WARNING, "fleet: no memory for what other hosts learned of some sites; they learn alone");
    return made;
}

int hkd_fleet_pins(const hkd_fleet_pin *v, size_t n)
{
    static uint32_t pin_gen;         /* g.lock's */
    int changed = 0;
    pthread_mutex_lock(&g.lock);
    if (!g.ht) {
        pthread_mutex_unlock(&g.lock);
        return 0;
    }
    uint32_t gen = ++pin_gen ? pin_gen : ++pin_gen;
    rcu_read_lock();
    for (size_t i = 0; i < n; i++) {
        if (!fleet_may_add(v[i].key.domain) || v[i].arm < 0 || v[i].arm >= HKD_N_ARMS)
            continue;
        site_rec *r = core_get_or_add(&v[i].key, NULL, 0, NULL);
        core_prior *p = r ? prior_slot(r->idx) : NULL;
        if (!p)
            continue;
        p->pin_gen = gen;
        if (atomic_load_explicit(&p->pin, memory_order_relaxed) == v[i].arm + 1 && r->learn.pinned == v[i].arm)
            continue;
        atomic_store_explicit(&p->pin, (uint8_t)(v[i].arm + 1), memory_order_release);
        core_pin_record(r, v[i].arm);
        changed++;
    }
    rcu_read_unlock();
    /* Pins the fleet no longer names: the site learns again. */
    for (uint32_t ci = 0; ci < N_CHUNKS; ci++) {
        core_prior *c = core_prior_chunks[ci];
        for (uint32_t k = 0; c && k < CHUNK_RECS; k++) {
            if (!atomic_load_explicit(&c[k].pin, memory_order_relaxed) || c[k].pin_gen == gen)
                continue;
            atomic_store_explicit(&c[k].pin, 0, memory_order_release);
            site_rec *r = rec_at(ci * CHUNK_RECS + k);
            if (!r->free) {
                core_pin_record(r, -1);
                changed++;
            }
        }
    }
    pthread_mutex_unlock(&g.lock);
    return changed;
}

void hkd_fleet_reset(const hkd_site_key *key)
{
    hkd_reset(key);                  /* -ENOENT: nothing of it here, nothing to forget */
    pthread_mutex_lock(&g.lock);
    if (key) {
        rcu_read_lock();
        site_rec *r = g.ht ? core_lookup(key) : NULL;
        rcu_read_unlock();
        if (r)
            core_fleet_forget(r->idx);
    } else {
        for (uint32_t ci = 0; ci < N_CHUNKS; ci++)
            for (uint32_t k = 0; core_prior_chunks[ci] && k < CHUNK_RECS; k++)
                if (core_prior_chunks[ci][k].gen)
                    prior_write(&core_prior_chunks[ci][k], NULL, NULL, 0);
    }
    pthread_mutex_unlock(&g.lock);
}

int core_fleet_pinned(uint32_t idx)
{
    if (idx >= MAX_SITES)
        return 0;
    core_prior *c = __atomic_load_n(&core_prior_chunks[idx / CHUNK_RECS], __ATOMIC_ACQUIRE);
    return c && atomic_load_explicit(&c[idx % CHUNK_RECS].pin, memory_order_acquire) != 0;
}

int hkd_fleet_read_prior(uint32_t idx, const hkd_site_key *key, hkd_prior *out)
{
    if (idx >= MAX_SITES)
        return 0;
    core_prior *c = __atomic_load_n(&core_prior_chunks[idx / CHUNK_RECS], __ATOMIC_ACQUIRE);
    if (!c)
        return 0;
    core_prior *p = &c[idx % CHUNK_RECS];
    for (int tries = 0;; tries++) {
        uint32_t s1 = atomic_load_explicit(&p->seq, memory_order_acquire);
        if (s1 & 1) {
            if (tries > 1000)
                sched_yield();
            continue;
        }
        int have = p->gen && hkd_site_key_eq(&p->key, key);
        if (have)
            *out = p->prior;
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&p->seq, memory_order_relaxed) == s1)
            return have;
    }
}

void core_fleet_forget(uint32_t idx)
{
    core_prior *c = core_prior_chunks[idx / CHUNK_RECS];
    if (c && c[idx % CHUNK_RECS].gen)
        prior_write(&c[idx % CHUNK_RECS], NULL, NULL, 0);
    if (c)
        atomic_store_explicit(&c[idx % CHUNK_RECS].pin, 0, memory_order_release);
}

void core_fleet_free(void)
{
    for (uint32_t ci = 0; ci < N_CHUNKS; ci++) {
        free(core_prior_chunks[ci]);
        core_prior_chunks[ci] = NULL;
    }
}
