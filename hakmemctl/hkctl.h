/* hakmemctl's parts, shared between its files: talking to the daemon
 * (hakmemctl.c), and the commands each of the others implements.
 * Commands return 0 or an exit code after printing exactly one line on
 * stderr. */
#ifndef HAKMEMD_HKCTL_H
#define HAKMEMD_HKCTL_H

#include <stddef.h>
#include <stdint.h>

#include "control.pb-c.h"
#include "jsonw.h"

enum { EXIT_ERR = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

extern const char *g_socket;
extern int g_json;
extern int g_timeout_ms;

int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A connection to the daemon, or minus an exit code after printing why. */
int connect_daemon(void);
/* On an open connection: 0 with *out of the kind wanted, or an exit code
 * (why in msg, nothing printed). */
int exchange(int fd, Hakmem__Ctl__Request *rq, Hakmem__Ctl__Response__ResultCase want,
             Hakmem__Ctl__Response **out, char *msg, size_t cap);
/* One request, one response of the kind wanted (*out, free with
 * hakmem__ctl__response__free_unpacked), or an exit code. */
int call(Hakmem__Ctl__Request *rq, Hakmem__Ctl__Response__ResultCase want, Hakmem__Ctl__Response **out);
/* A streamed answer: fn gets each part of the kind wanted as it arrives
 * (last set on the final one) and returns 0 or an exit code. */
typedef int (*part_fn)(const Hakmem__Ctl__Response *resp, int last, void *arg);
int call_parts(Hakmem__Ctl__Request *rq, Hakmem__Ctl__Response__ResultCase want, part_fn fn, void *arg);

/* A string that came from the daemon (and so from a client or an
 * imported policy), fit for a terminal: see utf8.h. */
#define SAFE_MAX 512
const char *safe(const char *s, char buf[SAFE_MAX]);

const char *human_bytes(uint64_t v, char *buf, size_t cap);
const char *human_duration(uint64_t ms, char *buf, size_t cap);
int parse_u64(const char *s, uint64_t *v);

int get_status(Hakmem__Ctl__Response **out);
int get_procs(Hakmem__Ctl__Response **out);
void status_json(jw *w, const char *key, const Hakmem__Ctl__Status *s);

/* hkctl_user.c: a domain (uid) as its user's name when the system knows
 * it, else the number (cleaned for a terminal); a user given as a name or
 * a uid (0, or -1 when it is neither). */
const char *user_text(uint32_t uid, char *buf, size_t cap);
int parse_user(const char *s, uint32_t *uid);

/* hkctl_sites.c */
/* A site key as MODULEHASH:OFFSET (its user apart). */
void key_text(const Hakmem__Ctl__SiteKey *k, char *buf, size_t cap);
int cmd_sites(int argc, char **argv, int thresholds_only);
int cmd_watch(int argc, char **argv);
/* The index of the arm named name at the site, or an exit code (> 0) after
 * printing why. */
int find_arm(const Hakmem__Ctl__SiteKey *key, const char *name, int32_t *out);

/* hkctl_binaries.c */
int cmd_binaries(int argc, char **argv);
int cmd_pin_binary(int argc, char **argv, int unpin);
int cmd_reset_binary(int argc, char **argv);

/* hkctl_policy.c: export FILE, import FILE */
int cmd_export(int argc, char **argv);
int cmd_import(int argc, char **argv);

/* hkctl_fleet.c */
int cmd_fleet(int argc, char **argv);
/* hkctl_fleetctl.c: fleet pin / unpin / reset (argv[0] names which) */
int cmd_fleet_control(int argc, char **argv);
/* A site key as MODULEHASH:OFFSET (hex): 0, or -1. */
int parse_site_key(const char *s, uint64_t *hash, uint64_t *off);

#endif
