/* Users (domains) as hakmemctl shows and takes them; see hkctl.h. */
#include "hkctl.h"
#include "utf8.h"

#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>

const char *user_text(uint32_t uid, char *buf, size_t cap)
{
    struct passwd pw, *res = NULL;
    char tmp[1024];
    if (getpwuid_r((uid_t)uid, &pw, tmp, sizeof tmp, &res) == 0 && res && res->pw_name)
        hk_text_clean(buf, cap, res->pw_name, SIZE_MAX);
    else
        snprintf(buf, cap, "%" PRIu32, uid);
    return buf;
}

int parse_user(const char *s, uint32_t *uid)
{
    struct passwd pw, *res = NULL;
    char tmp[1024];
    char *end;
    if (!s || !*s)
        return -1;
    if (getpwnam_r(s, &pw, tmp, sizeof tmp, &res) == 0 && res) {
        *uid = (uint32_t)res->pw_uid;
        return 0;
    }
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || *s == '-' || v > UINT32_MAX)
        return -1;
    *uid = (uint32_t)v;
    return 0;
}
