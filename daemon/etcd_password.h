/* The password of an etcd user (etcd.h), for hakmemd and hakmemctl alike:
 * the first line of a file, else $HAKMEM_FLEET_PASSWORD; never an
 * argument, which every user of the host can read. */
#ifndef HAKMEMD_ETCD_PASSWORD_H
#define HAKMEMD_ETCD_PASSWORD_H

#include <stddef.h>

/* The password of user into out (cap bytes: HKD_ETCD_PASSWORD_MAX + 2
 * tells one too long): from file when it is not NULL, else from the
 * environment.  0, or -errno with why in one line. */
int hkd_etcd_password(const char *user, const char *file, char *out, size_t cap, char *why, size_t whylen);

#endif
