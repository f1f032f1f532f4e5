/* An etcd user's password (etcd_password.h). */
#include "etcd_password.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PASSWORD_ENV "HAKMEM_FLEET_PASSWORD"

static int from_file(const char *path, char *out, size_t cap, char *why, size_t whylen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        int err = errno;
        snprintf(why, whylen, "cannot read the password file %.200s: %s", path, strerror(err));
        return -err;
    }
    size_t n = fread(out, 1, cap - 1, f);
    int bad = ferror(f), more = !bad && fgetc(f) != EOF;
    fclose(f);
    out[n] = 0;
    out[strcspn(out, "\r\n")] = 0;
    if (bad || (more && strlen(out) == n) || !out[0]) {
        snprintf(why, whylen, "the password file %.200s is %s", path,
                 bad ? "unreadable" : out[0] ? "too long" : "empty");
        return -EINVAL;
    }
    return 0;
}

int hkd_etcd_password(const char *user, const char *file, char *out, size_t cap, char *why, size_t whylen)
{
    if (file)
        return from_file(file, out, cap, why, whylen);
    const char *env = getenv(PASSWORD_ENV);
    if (!env || !*env || strlen(env) >= cap) {
        snprintf(why, whylen, "etcd user %.80s needs a password (--fleet-password-file, or " PASSWORD_ENV ")", user);
        return -EINVAL;
    }
    snprintf(out, cap, "%s", env);
    return 0;
}
