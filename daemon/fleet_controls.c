/* Applying the fleet's controls (fleet_controls.h).
 *
 * The controls are read whole at each sync (a few keys: one range of at
 * most HKD_FLEET_CONTROLS_MAX), each key and value checked by
 * hkd_control_parse; one that does not check is skipped with one log line
 * (once per revision of it, not once per sync).  The pins in force go to
 * the core every sync (so a site made or evicted meanwhile is pinned
 * again); a reset goes once, at the first sync that sees its revision. */
#include "fleet_controls.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"
#include "core_fleet.h"
#include "fleet_control.h"
#include "fleet_peers.h"
#include "log.h"
#include "site_key.h"

#define RESETS_FILE "fleet-resets"
#define RESETS_MAGIC "hakmem fleet resets 1"
#define LINE_MAX_BYTES 128u

typedef struct applied_reset {
    hkd_site_key key;
    int64_t revision;
} applied_reset;

static struct {
    hkd_etcd *etcd;
    char fleet[80];
    char prefix[HKD_CONTROL_KEY_MAX];
    char path[HKD_PATH_MAX];               /* "": resets are not kept */
    applied_reset *resets;                 /* by key */
    size_t n_resets, cap_resets;
    int64_t all_revision;                  /* the newest reset of every site applied */
    hkd_fleet_pin *pins;
    size_t n_pins, cap_pins;
    int64_t logged_upto;                   /* skipped values up to this revision were said */
    int told_cap;
} fc;

static int by_key(const void *a, const void *b)
{
    return hkd_site_key_cmp(&((const applied_reset *)a)->key, &((const applied_reset *)b)->key);
}

static applied_reset *find_reset(const hkd_site_key *k)
{
    applied_reset x = { .key = *k };
    return fc.n_resets ? bsearch(&x, fc.resets, fc.n_resets, sizeof x, by_key) : NULL;
}

int64_t hkd_fleet_controls_reset_revision(const hkd_site_key *key)
{
    const applied_reset *r = find_reset(key);
    return r && r->revision > fc.all_revision ? r->revision : fc.all_revision;
}

/* ---- what was applied, kept across restarts ---- */

static int save_resets(void)
{
    if (!fc.path[0])
        return 0;
    hkd_atomic_file f;
    int rc = hkd_atomic_open(&f, fc.path, 0600);
    if (rc < 0)
        return rc;
    char line[LINE_MAX_BYTES];
    int n = snprintf(line, sizeof line, "%s\n%s\nall %" PRId64 "\n", RESETS_MAGIC, fc.fleet, fc.all_revision);
    rc = hkd_atomic_write(&f, line, (size_t)n);
    for (size_t i = 0; i < fc.n_resets && rc == 0; i++) {
        char site[HKD_CONTROL_SITE_TEXT_MAX];
        hkd_control_site_text(&fc.resets[i].key, site, sizeof site);
        n = snprintf(line, sizeof line, "%s %" PRId64 "\n", site, fc.resets[i].revision);
        rc = hkd_atomic_write(&f, line, (size_t)n);
    }
    if (rc < 0) {
        hkd_atomic_abort(&f);
        return rc;
    }
    return hkd_atomic_commit(&f);
}

static int add_reset(const hkd_site_key *k, int64_t revision)
{
    applied_reset *r = find_reset(k);
    if (r) {
        r->revision = revision;
        return 0;
    }
    if (fc.n_resets >= HKD_FLEET_CONTROLS_MAX)
        return -ENOSPC;
    if (fc.n_resets == fc.cap_resets) {
        size_t cap = fc.cap_resets ? fc.cap_resets * 2 : 16;
        applied_reset *v = realloc(fc.resets, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        fc.resets = v;
        fc.cap_resets = cap;
    }
    fc.resets[fc.n_resets++] = (applied_reset){ *k, revision };
    qsort(fc.resets, fc.n_resets, sizeof *fc.resets, by_key);
    return 0;
}

/* The file is ours, but read as carefully as any input: a line that does
 * not parse ends the reading, and what was read before it stays. */
static void load_resets(void)
{
    FILE *f = fopen(fc.path, "re");
    if (!f)
        return;
    char line[LINE_MAX_BYTES];
    int ok = fgets(line, sizeof line, f) && !strcmp(line, RESETS_MAGIC "\n");
    char fleet[sizeof fc.fleet + 2];
    /* Revisions are one cluster's and one fleet's: another fleet's resets say nothing here. */
    ok = ok && fgets(fleet, sizeof fleet, f) && strcspn(fleet, "\n") == strlen(fc.fleet) &&
         !strncmp(fleet, fc.fleet, strlen(fc.fleet));
    while (ok && fgets(line, sizeof line, f)) {
        char *sp = strchr(line, ' '), *end;
        if (!sp)
            break;
        errno = 0;
        long long rev = strtoll(sp + 1, &end, 10);
        if (errno || end == sp + 1 || *end != '\n' || rev < 0)
            break;
        hkd_site_key k;
        if (sp - line == 3 && !strncmp(line, "all", 3))
            fc.all_revision = rev;
        else if (hkd_control_site_parse(line, (size_t)(sp - line), &k) < 0 || add_reset(&k, rev) < 0)
            break;
    }
    fclose(f);
}

int hkd_fleet_controls_init(hkd_etcd *e, const char *fleet, const char *state_dir)
{
    fc.etcd = e;
    snprintf(fc.fleet, sizeof fc.fleet, "%s", fleet);
    int rc = hkd_control_prefix(fleet, fc.prefix, sizeof fc.prefix);
    if (rc < 0)
        return rc;
    if (state_dir && *state_dir) {
        snprintf(fc.path, sizeof fc.path, "%s/%s", state_dir, RESETS_FILE);
        load_resets();
    }
    return 0;
}

/* ---- one sync ---- */

typedef struct reading {
    hkd_fleet_control *v;
    size_t n;
} reading;

static int take_control(const hkd_etcd_kv *kv, void *arg)
{
    reading *rd = arg;
    if (rd->n >= HKD_FLEET_CONTROLS_MAX) {
        if (!fc.told_cap++)
            hkd_log(HKD_LOG_WARNING, "fleet: more than %u control keys; the rest are left out",
                    HKD_FLEET_CONTROLS_MAX);
        return 0;
    }
    char why[96];
    if (hkd_control_parse(fc.prefix, kv->key, kv->key_len, kv->value, kv->value_len, &rd->v[rd->n], why,
                          sizeof why) < 0) {
        if (kv->mod_revision > fc.logged_upto) {
            char key[HKD_CONTROL_KEY_MAX + 1];
            size_t n = kv->key_len < HKD_CONTROL_KEY_MAX ? kv->key_len : HKD_CONTROL_KEY_MAX;
            for (size_t i = 0; i < n; i++)
                key[i] = kv->key[i] >= 0x20 && kv->key[i] < 0x7f ? (char)kv->key[i] : '?';
            key[n] = 0;
            hkd_log(HKD_LOG_WARNING, "fleet: skipped control %s (revision %" PRId64 "): %s", key, kv->mod_revision,
                    why);
        }
        return 0;
    }
    rd->v[rd->n++].revision = kv->mod_revision;
    return 0;
}

/* Applies a reset not applied before: 1 when it was, 0 when it was old,
 * or -errno. */
static int apply_reset(const hkd_fleet_control *c)
{
    char site[HKD_CONTROL_SITE_TEXT_MAX] = "";
    if (c->all) {
        if (c->revision <= fc.all_revision)
            return 0;
        fc.all_revision = c->revision;
    } else {
        if (c->revision <= hkd_fleet_controls_reset_revision(&c->key))
            return 0;
        int rc = add_reset(&c->key, c->revision);
        if (rc < 0)
            return rc;
        hkd_control_site_text(&c->key, site, sizeof site);
    }
    hkd_fleet_reset(c->all ? NULL : &c->key);
    hkd_log(HKD_LOG_NOTICE, "fleet: reset %s%s (control revision %" PRId64 ")", c->all ? "every site" : "site ", site,
            c->revision);
    return 1;
}

int hkd_fleet_controls_sync(void)
{
    uint8_t end[HKD_CONTROL_KEY_MAX];
    size_t plen = strlen(fc.prefix), elen = hkd_etcd_prefix_end(fc.prefix, plen, end);
    reading rd = { .v = malloc(HKD_FLEET_CONTROLS_MAX * sizeof *rd.v) };
    if (!rd.v)
        return -ENOMEM;
    hkd_etcd_range r = { .limit = HKD_FLEET_CONTROLS_MAX + 1 };
    int64_t rev = 0;
    int more = 0;
    int rc = hkd_etcd_get(fc.etcd, fc.prefix, plen, end, elen, &r, take_control, &rd, &rev, &more);
    if (rc < 0) {
        free(rd.v);
        return rc;
    }
    if (rev > fc.logged_upto)
        fc.logged_upto = rev;
    /* Resets first, so that a site reset and pinned at once ends pinned. */
    int reset = 0;
    fc.n_pins = 0;
    for (size_t i = 0; i < rd.n && rc >= 0; i++) {
        const hkd_fleet_control *c = &rd.v[i];
        if (c->kind == HKD_CONTROL_RESET) {
            rc = apply_reset(c);
            reset |= rc > 0;
        } else if (fc.n_pins < HKD_FLEET_CONTROLS_MAX) {
            if (fc.n_pins == fc.cap_pins) {
                size_t cap = fc.cap_pins ? fc.cap_pins * 2 : 16;
                hkd_fleet_pin *v = realloc(fc.pins, cap * sizeof *v);
                if (!v) {
                    rc = -ENOMEM;
                    break;
                }
                fc.pins = v;
                fc.cap_pins = cap;
            }
            fc.pins[fc.n_pins++] = (hkd_fleet_pin){ c->key, c->arm };
        }
    }
    free(rd.v);
    if (reset) {
        int saved = save_resets();
        if (saved < 0)
            hkd_log(HKD_LOG_WARNING, "fleet: cannot keep the resets applied in %s: %s; a restart applies them again",
                    fc.path, strerror(-saved));
        hkd_fleet_peers_resum();
    }
    if (rc < 0)
        return rc;
    rc = hkd_fleet_pins(fc.pins, fc.n_pins);
    return rc < 0 ? rc : 0;
}

void hkd_fleet_controls_free(void)
{
    free(fc.resets);
    free(fc.pins);
    memset(&fc, 0, sizeof fc);
}
