/* The fleet's controls in etcd (fleet_control.c): the keys hakmemctl
 * writes with an operator's own etcd user, and every daemon of the fleet
 * reads and applies.  Shared by both, so the layout has one definition.
 *
 *   /hakmem/<fleet>/controls/pin/<site>     value "arm=N by=WHO at=UNIX"
 *   /hakmem/<fleet>/controls/reset/<site>   value "by=WHO at=UNIX"
 *   /hakmem/<fleet>/controls/reset/all      the same, for every site
 *
 * <site> is "<uid>:<module hash, hex>:<offset, hex>" (the uid first: a
 * site's key holds the user its processes run as).  A reset is one reset
 * per revision of its key: writing the key again is another reset.  Only
 * the arm of a pin is acted on; "by" and "at" are for people.  Every key
 * and value is read as untrusted input: bounded and checked whole. */
#ifndef HAKMEMD_FLEET_CONTROL_H
#define HAKMEMD_FLEET_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include "core_api.h"

#define HKD_CONTROL_VALUE_MAX 256u
#define HKD_CONTROL_KEY_MAX 256u
#define HKD_CONTROL_SITE_TEXT_MAX 48u      /* "4294967295:ffffffffffffffff:ffffffffffffffff" */

typedef enum { HKD_CONTROL_PIN, HKD_CONTROL_RESET } hkd_control_kind;

typedef struct hkd_fleet_control {
    hkd_control_kind kind;
    int all;                           /* a reset of every site (key unset) */
    hkd_site_key key;
    int arm;                           /* a pin's */
    int64_t revision;                  /* the key's mod_revision */
} hkd_fleet_control;

#define HKD_FLEET_ID_MAX 64                /* fleet names and host ids: [A-Za-z0-9._-]{1,64} */

/* A fleet name or host id: 1 to HKD_FLEET_ID_MAX of A-Z a-z 0-9 . _ -
 * (and neither "." nor ".."). */
int  hkd_fleet_valid_id(const char *s);
/* "/hakmem/<fleet>/controls/" into out: its length, or -ENAMETOOLONG. */
int  hkd_control_prefix(const char *fleet, char *out, size_t cap);
/* The key of a control (key NULL: a reset of all sites) into out. */
int  hkd_control_key(const char *fleet, hkd_control_kind kind, const hkd_site_key *key, char *out, size_t cap);
/* A site as a control key names it, and back: 0, or -EINVAL. */
int  hkd_control_site_text(const hkd_site_key *k, char *out, size_t cap);
int  hkd_control_site_parse(const char *s, size_t n, hkd_site_key *k);
/* A control's value: arm < 0 for a reset's.  Its length, or -EINVAL when
 * who is not printable. */
int  hkd_control_value(int arm, const char *who, uint64_t unix_s, char *out, size_t cap);
/* A key read under prefix (the controls prefix) and its value: 0 and
 * *out, or -EBADMSG with why (one phrase). */
int  hkd_control_parse(const char *prefix, const uint8_t *key, size_t klen, const uint8_t *value, size_t vlen,
                       hkd_fleet_control *out, char *why, size_t whylen);

#endif
