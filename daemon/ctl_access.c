/* Roles, the limits on open control connections, and how often a refusal
 * is logged; see ctl_access.h. */
#include "ctl_access.h"
#include "frame.h"
#include "log.h"

#include <grp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define HKC_MAX_CONNS 64
#define HKC_ADMIN_RESERVED 8
#define HKC_CONNS_PER_UID 8          /* default; HAKMEMD_CTL_CONNS_PER_UID */

static struct {
    int per_uid;
    gid_t group;
    int have_group;
    uid_t self_uid;
    int64_t refusal_logged_ms;  /* refused connections: at most one line a second */
    unsigned refusals_unlogged;
} A;

int hkc_access_load(gid_t *group)
{
    const char *t = getenv("HAKMEMD_CTL_CONNS_PER_UID");
    A.per_uid = t && atoi(t) > 0 && atoi(t) <= HKC_MAX_CONNS ? atoi(t) : HKC_CONNS_PER_UID;
    A.self_uid = geteuid();
    struct group gr, *res = NULL;
    char gbuf[4096];
    A.have_group = getgrnam_r(HKC_GROUP, &gr, gbuf, sizeof gbuf, &res) == 0 && res;
    if (A.have_group)
        A.group = *group = gr.gr_gid;
    return A.have_group;
}

/* ---- roles ---- */

hkc_role hkc_role_of_cred(const struct ucred *cred)
{
    if (cred->uid == 0 || cred->uid == A.self_uid)
        return HKC_ROLE_ADMIN;
    if (A.have_group && cred->gid == A.group)
        return HKC_ROLE_READ;
    return HKC_ROLE_NONE;
}

hkc_role hkc_role_of(int fd, struct ucred *cred)
{
    socklen_t len = sizeof *cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, &len) < 0)
        return HKC_ROLE_NONE;
    hkc_role role = hkc_role_of_cred(cred);
    if (role != HKC_ROLE_NONE || !A.have_group)
        return role;
    gid_t groups[256];
    len = sizeof groups;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
        for (size_t i = 0; i < len / sizeof(gid_t); i++)
            if (groups[i] == A.group)
                return HKC_ROLE_READ;
    }
    return HKC_ROLE_NONE;
}

/* ---- connections ---- */

/* Root is limited only by the table; everyone else to A.per_uid
 * connections; all but root and the daemon's user together leave
 * HKC_ADMIN_RESERVED free. */
const char *hkc_admit(const hkc_conn *c, const hkc_conn *open, int n, char *why, size_t cap)
{
    if (n >= HKC_MAX_CONNS) {
        snprintf(why, cap, "all %d control connections are in use; try again", HKC_MAX_CONNS);
        return why;
    }
    if (c->cred.uid != 0) {
        int mine = 0;
        for (const hkc_conn *o = open; o; o = o->next)
            mine += o->cred.uid == c->cred.uid;
        if (mine >= A.per_uid) {
            snprintf(why, cap, "uid %u already has %d control connections open (the most one uid may); try again",
                     (unsigned)c->cred.uid, mine);
            return why;
        }
    }
    if (c->role != HKC_ROLE_ADMIN && n >= HKC_MAX_CONNS - HKC_ADMIN_RESERVED) {
        snprintf(why, cap, "the control connections left are kept for root and the daemon's user; try again");
        return why;
    }
    return NULL;
}

/* ---- refusals ---- */

/* At most once a second (a client retrying in a loop would flood the
 * log), with how many went unlogged before it. */
void hkc_log_refused_conn(const hkc_conn *c, const char *why)
{
    int64_t now = hkc_now_ms();
    if (now - A.refusal_logged_ms < 1000) {
        A.refusals_unlogged++;
        return;
    }
    if (A.refusals_unlogged)
        hkd_log(HKD_LOG_WARNING, "refused connection of uid %u (pid %d): %s (%u more refused since the last such line)",
                (unsigned)c->cred.uid, (int)c->cred.pid, why, A.refusals_unlogged);
    else
        hkd_log(HKD_LOG_WARNING, "refused connection of uid %u (pid %d): %s", (unsigned)c->cred.uid,
                (int)c->cred.pid, why);
    A.refusal_logged_ms = now;
    A.refusals_unlogged = 0;
}

#define REFUSAL_UIDS 64
#define REFUSAL_LOG_MS 60000

static struct {
    pthread_mutex_t mu;
    uid_t uid[REFUSAL_UIDS];
    int64_t at_ms[REFUSAL_UIDS];     /* 0: unused */
} refusals = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* The least recently logged uid gives way to a new one. */
int hkc_refusal_log_due(uid_t uid)
{
    int64_t now = hkc_now_ms();
    pthread_mutex_lock(&refusals.mu);
    int k = 0, due = 1;
    for (int i = 0; i < REFUSAL_UIDS; i++) {
        if (refusals.at_ms[i] && refusals.uid[i] == uid) {
            k = i;
            due = now - refusals.at_ms[i] >= REFUSAL_LOG_MS;
            break;
        }
        if (refusals.at_ms[i] < refusals.at_ms[k])
            k = i;
    }
    if (due) {
        refusals.uid[k] = uid;
        refusals.at_ms[k] = now ? now : 1;
    }
    pthread_mutex_unlock(&refusals.mu);
    return due;
}
