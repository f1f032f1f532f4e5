/* The fleet answer.  Hosts come from the fleet thread's last read, copied
 * out under its lock; a frame holds thousands of them, and a fleet larger
 * than the frame gets a TOO_LARGE error (hkc_send) rather than a cut list. */
#include "ctl_fleet.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "fleet.h"

static uint64_t ms_ago(uint64_t unix_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    return unix_ms && now > unix_ms ? now - unix_ms : 0;
}

int hkc_answer_fleet(const hkc_out *o)
{
    hkd_fleet_status st;
    hkd_fleet_host *hosts = NULL;
    size_t n = 0;
    int r = hkd_fleet_status_get(&st, &hosts, &n);
    if (r < 0)
        return hkc_send_core_error(o, "fleet", r);
    Hakmem__Ctl__FleetEndpoint ep[HKD_ETCD_ENDPOINTS_MAX], *epp[HKD_ETCD_ENDPOINTS_MAX];
    Hakmem__Ctl__FleetHost *h = calloc(n ? n : 1, sizeof *h);
    Hakmem__Ctl__FleetHost **hp = calloc(n ? n : 1, sizeof *hp);
    if (!h || !hp) {
        r = hkc_send_core_error(o, "fleet", -ENOMEM);
        goto out;
    }
    Hakmem__Ctl__Fleet f = HAKMEM__CTL__FLEET__INIT;
    f.configured = st.configured != 0;
    f.up = st.up != 0;
    f.name = st.name;
    f.host_id = st.host_id;
    f.n_endpoints = st.n_endpoints;
    f.endpoints = epp;
    for (size_t i = 0; i < st.n_endpoints; i++) {
        hakmem__ctl__fleet_endpoint__init(&ep[i]);
        ep[i].url = st.endpoints[i].url;
        ep[i].up = st.endpoints[i].up != 0;
        ep[i].checked_ms_ago = ms_ago(st.endpoints[i].checked_unix_ms);
        ep[i].error = st.endpoints[i].error;
        epp[i] = &ep[i];
    }
    f.n_hosts = n;
    f.hosts = hp;
    for (size_t i = 0; i < n; i++) {
        hakmem__ctl__fleet_host__init(&h[i]);
        h[i].id = hosts[i].id;
        h[i].written_unix = hosts[i].written_unix;
        h[i].sites = hosts[i].sites;
        h[i].shards = hosts[i].shards;
        h[i].rejected = hosts[i].rejected;
        hp[i] = &h[i];
    }
    f.synced = st.last_sync_unix_ms != 0;
    f.last_sync_ms_ago = ms_ago(st.last_sync_unix_ms);
    f.lease = (uint64_t)st.lease;
    f.ttl_s = st.ttl_s;
    f.sync_ms = st.sync_ms;
    f.bytes_written = st.bytes_written;
    f.keys_written = st.keys_written;
    f.values_rejected = st.values_rejected;
    f.syncs = st.syncs;
    f.own_sites = st.own_sites;
    f.own_shards = st.own_shards;
    f.sites_shared = st.sites_shared;
    f.sites_disagree = st.sites_disagree;
    f.last_error = st.last_error;
    Hakmem__Ctl__FleetDisagreement dis[HKD_FLEET_DISAGREE_TOP], *disp[HKD_FLEET_DISAGREE_TOP];
    Hakmem__Ctl__SiteKey keys[HKD_FLEET_DISAGREE_TOP];
    Hakmem__Ctl__FleetHostArm arms[HKD_FLEET_DISAGREE_TOP][HKD_FLEET_DISAGREE_HOSTS];
    Hakmem__Ctl__FleetHostArm *armp[HKD_FLEET_DISAGREE_TOP][HKD_FLEET_DISAGREE_HOSTS];
    f.n_disagree = st.n_disagree;
    f.disagree = disp;
    for (size_t i = 0; i < st.n_disagree; i++) {
        const hkd_fleet_disagreement *d = &st.disagree[i];
        hakmem__ctl__fleet_disagreement__init(&dis[i]);
        hakmem__ctl__site_key__init(&keys[i]);
        keys[i].module_hash = d->key.module_hash;
        keys[i].offset = d->key.offset;
        keys[i].domain = d->key.domain;
        dis[i].site = &keys[i];
        dis[i].pulls = d->pulls;
        dis[i].hosts = d->hosts;
        dis[i].n_host_arms = d->n;
        dis[i].host_arms = armp[i];
        for (size_t k = 0; k < d->n; k++) {
            hakmem__ctl__fleet_host_arm__init(&arms[i][k]);
            arms[i][k].host = (char *)d->host[k].id;
            arms[i][k].arm = d->host[k].arm;
            arms[i][k].pulls = d->host[k].pulls;
            armp[i][k] = &arms[i][k];
        }
        disp[i] = &dis[i];
    }
    Hakmem__Ctl__Response resp = HAKMEM__CTL__RESPONSE__INIT;
    resp.result_case = HAKMEM__CTL__RESPONSE__RESULT_FLEET;
    resp.fleet = &f;
    r = hkc_send(o, &resp);
out:
    free(h), free(hp), free(hosts);
    return r;
}
