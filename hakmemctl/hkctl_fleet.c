/* hakmemctl fleet: the fleet link as the daemon sees it (its etcd
 * endpoints and their health, the other hosts and when each last wrote,
 * the sites they share), or that this host learns alone. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "hkctl.h"

static uint64_t age_ms(uint64_t unix_s)
{
    time_t now = time(NULL);
    return unix_s && (uint64_t)now > unix_s ? ((uint64_t)now - unix_s) * 1000 : 0;
}

static void fleet_json(const Hakmem__Ctl__Fleet *f)
{
    jw w;
    jw_init(&w, stdout);
    jw_obj(&w, NULL);
    jw_bool(&w, "configured", f->configured);
    if (f->configured) {
        jw_str(&w, "fleet", f->name);
        jw_str(&w, "host", f->host_id);
        jw_bool(&w, "up", f->up);
        jw_bool(&w, "synced", f->synced);
        jw_u64(&w, "last_sync_ms_ago", f->last_sync_ms_ago);
        jw_u64(&w, "lease", f->lease);
        jw_u64(&w, "ttl_s", f->ttl_s);
        jw_u64(&w, "sync_ms", f->sync_ms);
        jw_u64(&w, "syncs", f->syncs);
        jw_u64(&w, "bytes_written", f->bytes_written);
        jw_u64(&w, "keys_written", f->keys_written);
        jw_u64(&w, "values_rejected", f->values_rejected);
        jw_u64(&w, "own_sites", f->own_sites);
        jw_u64(&w, "own_shards", f->own_shards);
        jw_u64(&w, "sites_shared", f->sites_shared);
        jw_u64(&w, "sites_disagree", f->sites_disagree);
        jw_str(&w, "last_error", f->last_error);
        jw_arr(&w, "endpoints");
        for (size_t i = 0; i < f->n_endpoints; i++) {
            const Hakmem__Ctl__FleetEndpoint *e = f->endpoints[i];
            jw_obj(&w, NULL);
            jw_str(&w, "url", e->url);
            jw_bool(&w, "up", e->up);
            jw_u64(&w, "checked_ms_ago", e->checked_ms_ago);
            jw_str(&w, "error", e->error);
            jw_end_obj(&w);
        }
        jw_end_arr(&w);
        jw_arr(&w, "hosts");
        for (size_t i = 0; i < f->n_hosts; i++) {
            const Hakmem__Ctl__FleetHost *h = f->hosts[i];
            jw_obj(&w, NULL);
            jw_str(&w, "id", h->id);
            jw_u64(&w, "written_unix", h->written_unix);
            jw_u64(&w, "sites", h->sites);
            jw_u64(&w, "shards", h->shards);
            jw_u64(&w, "rejected", h->rejected);
            jw_end_obj(&w);
        }
        jw_end_arr(&w);
        jw_arr(&w, "disagree");
        for (size_t i = 0; i < f->n_disagree; i++) {
            const Hakmem__Ctl__FleetDisagreement *d = f->disagree[i];
            char key[48];
            key_text(d->site, key, sizeof key);
            jw_obj(&w, NULL);
            jw_str(&w, "site", key);
            jw_u64(&w, "domain", d->site ? d->site->domain : 0);
            jw_u64(&w, "pulls", d->pulls);
            jw_u64(&w, "hosts", d->hosts);
            jw_arr(&w, "arms");
            for (size_t k = 0; k < d->n_host_arms; k++) {
                jw_obj(&w, NULL);
                jw_str(&w, "host", d->host_arms[k]->host);
                jw_i64(&w, "arm", d->host_arms[k]->arm);
                jw_u64(&w, "pulls", d->host_arms[k]->pulls);
                jw_end_obj(&w);
            }
            jw_end_arr(&w);
            jw_end_obj(&w);
        }
        jw_end_arr(&w);
    }
    jw_end_obj(&w);
    jw_done(&w);
}

static void fleet_human(const Hakmem__Ctl__Fleet *f)
{
    char b1[SAFE_MAX], b2[SAFE_MAX], d[32], sz[16];
    if (!f->configured) {
        printf("no fleet: this host learns alone (hakmemd --fleet-endpoints joins one)\n");
        return;
    }
    printf("fleet %s, host %s: %s", safe(f->name, b1), safe(f->host_id, b2), f->up ? "up" : "DOWN");
    if (f->synced)
        printf(" (last sync %s ago)\n", human_duration(f->last_sync_ms_ago, d, sizeof d));
    else
        printf(" (never synced)\n");
    if (!f->up && f->last_error && *f->last_error)
        printf("  last error: %s\n", safe(f->last_error, b1));
    printf("  lease %" PRIx64 ", ttl %us, sync every %ums; written %" PRIu64 " keys, %s; %u sites of this host in %u "
           "shard%s\n",
           f->lease, f->ttl_s, f->sync_ms, f->keys_written, human_bytes(f->bytes_written, sz, sizeof sz), f->own_sites,
           f->own_shards, f->own_shards == 1 ? "" : "s");
    printf("  endpoints:\n");
    for (size_t i = 0; i < f->n_endpoints; i++) {
        const Hakmem__Ctl__FleetEndpoint *e = f->endpoints[i];
        printf("    %-40s %-5s", safe(e->url, b1), e->up ? "up" : "down");
        if (e->checked_ms_ago || e->up)
            printf(" checked %s ago", human_duration(e->checked_ms_ago, d, sizeof d));
        if (!e->up && e->error && *e->error)
            printf("  %s", safe(e->error, b2));
        printf("\n");
    }
    printf("  other hosts: %zu; sites they share %u (%u where they run different arms); values skipped %" PRIu64 "\n",
           f->n_hosts, f->sites_shared, f->sites_disagree, f->values_rejected);
    for (size_t i = 0; i < f->n_hosts; i++) {
        const Hakmem__Ctl__FleetHost *h = f->hosts[i];
        printf("    %-24s wrote %s ago  %u sites in %u shard%s", safe(h->id, b1),
               human_duration(age_ms(h->written_unix), d, sizeof d), h->sites, h->shards, h->shards == 1 ? "" : "s");
        if (h->rejected)
            printf("  (%u skipped: did not check)", h->rejected);
        printf("\n");
    }
    if (f->n_disagree)
        printf("  sites where the hosts run different arms, most pulls first%s:\n",
               f->n_disagree < f->sites_disagree ? " (the top ones)" : "");
    for (size_t i = 0; i < f->n_disagree; i++) {
        const Hakmem__Ctl__FleetDisagreement *d = f->disagree[i];
        char key[48], user[64];
        key_text(d->site, key, sizeof key);
        printf("    %s %-12s %8" PRIu64 " pulls ", key, user_text(d->site ? d->site->domain : 0, user, sizeof user),
               d->pulls);
        for (size_t k = 0; k < d->n_host_arms; k++)
            printf(" %s: arm %d", safe(d->host_arms[k]->host, b1), d->host_arms[k]->arm);
        if (d->hosts > d->n_host_arms)
            printf(" (and %zu more hosts)", (size_t)d->hosts - d->n_host_arms);
        printf("\n");
    }
}

int cmd_fleet(int argc, char **argv)
{
    if (argc > 0 && (!strcmp(argv[0], "pin") || !strcmp(argv[0], "unpin") || !strcmp(argv[0], "reset")))
        return cmd_fleet_control(argc, argv);
    if (argc > 0)
        return usage_error("fleet: unexpected argument '%s'", argv[0]);
    Hakmem__Ctl__Request rq = HAKMEM__CTL__REQUEST__INIT;
    Hakmem__Ctl__FleetRequest fr = HAKMEM__CTL__FLEET_REQUEST__INIT;
    rq.command_case = HAKMEM__CTL__REQUEST__COMMAND_FLEET;
    rq.fleet = &fr;
    Hakmem__Ctl__Response *resp;
    int r = call(&rq, HAKMEM__CTL__RESPONSE__RESULT_FLEET, &resp);
    if (r)
        return r;
    if (g_json)
        fleet_json(resp->fleet);
    else
        fleet_human(resp->fleet);
    hakmem__ctl__response__free_unpacked(resp, NULL);
    return ferror(stdout) ? fail(EXIT_ERR, "cannot write the output: %s", strerror(errno)) : 0;
}
