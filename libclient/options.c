/* Environment knobs.  getenv() does not allocate, so this may run from the
 * very first malloc call; when the environment is not set up yet (inside the
 * dynamic loader) the defaults stand and the constructor reads again. */
#include "options.h"
#include "internal.h"
#include "knobs.h"
#include "hakmem_shm.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

hk_options hk_opt = {
    .stats = 0, .verbose = 0, .bigcache = 1, .thp = 1, .thp_default = 0, .baseline = 0,
    .large_threshold = 1u << 20, .bigcache_slots = 4,
    .sample_bytes = 256 * 1024, .purge_delay_ms = 20, .purge_delay_max_ms = 1000,
    .register_after_ms = 10, .moves_trap = -1,
    .shm_name = "/hakmem",
};

long hk_env_long(const char *name, long fallback, long lo, long hi)
{
    const char *s = getenv(name);
    if (!s || !*s) return fallback;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    int shift = 0;
    if (*end == 'k' || *end == 'K') { shift = 10; end++; }
    else if (*end == 'm' || *end == 'M') { shift = 20; end++; }
    int ok = errno == 0 && *end == '\0' && v >= 0 && v <= (LONG_MAX >> shift);
    if (ok) v <<= shift;
    if (!ok || v < lo || v > hi) {
        hk_log(0, "ignoring %s=%s (expected %ld..%ld)", name, s, lo, hi);
        return fallback;
    }
    return v;
}

void hk_options_load(void)
{
    hk_opt.stats = (int)hk_env_long("HAKMEM_STATS", hk_opt.stats, 0, 1);
    hk_opt.verbose = (int)hk_env_long("HAKMEM_VERBOSE", hk_opt.verbose, 0, 3);
    hk_opt.bigcache = (int)hk_env_long("HAKMEM_BIGCACHE", hk_opt.bigcache, 0, 1);
    int thp = (int)hk_env_long("HAKMEM_THP", -1, 0, 1);   /* -1: unset or ignored */
    if (thp >= 0) {
        hk_opt.thp = thp;
        hk_opt.thp_default = thp;
    }
    hk_opt.bigcache_slots = (uint32_t)hk_env_long("HAKMEM_BIGCACHE_SLOTS", hk_opt.bigcache_slots, 0, 4);
    hk_opt.large_threshold = (uint32_t)hk_env_long("HAKMEM_LARGE_THRESHOLD", hk_opt.large_threshold,
                                                64 * 1024, 1 << 20);
    hk_opt.sample_bytes = (uint32_t)hk_env_long("HAKMEM_SAMPLE_BYTES", hk_opt.sample_bytes,
                                             4096, 1 << 30);
    hk_opt.purge_delay_ms = (uint32_t)hk_env_long("HAKMEM_PURGE_DELAY_MS", hk_opt.purge_delay_ms,
                                               0, 60000);
    hk_opt.purge_delay_max_ms = (uint32_t)hk_env_long("HAKMEM_PURGE_DELAY_MAX_MS", hk_opt.purge_delay_max_ms,
                                                   0, 60000);
    hk_opt.register_after_ms = (uint32_t)hk_env_long("HAKMEM_REGISTER_AFTER_MS", hk_opt.register_after_ms,
                                                  0, 60000);
    hk_opt.moves_trap = (int)hk_env_long("HAKMEM_MOVES_TRAP", hk_opt.moves_trap, 0, 1);
    const char *mode = getenv("HAKMEM_MODE");
    if (mode) hk_opt.baseline = strcmp(mode, "baseline") == 0;
    const char *shm = getenv("HAKMEM_SHM");
    if (shm && *shm && strlen(shm) < sizeof hk_opt.shm_name) {
        strcpy(hk_opt.shm_name, shm);
    }
    const char *sock = getenv("HAKMEM_SOCKET");
    if (sock && *sock) {
        if (sock[0] == '/' && strlen(sock) < sizeof hk_opt.socket_path) strcpy(hk_opt.socket_path, sock);
        else hk_log(0, "ignoring HAKMEM_SOCKET=%s (expected an absolute path under %zu bytes)", sock,
                    sizeof hk_opt.socket_path);
    }
    hk_knobs_load_env();
}

/* The shared-memory ABI numbers its knobs as the knobs box does. */
_Static_assert(HKSHM_KNOBS == HK_KNOBS, "knob count");
_Static_assert((int)HKSHM_KNOB_PURGE_DELAY_MS == (int)HK_KNOB_PURGE_DELAY_MS &&
                   (int)HKSHM_KNOB_RETAINED_SEGMENTS == (int)HK_KNOB_RETAINED_SEGMENTS &&
                   (int)HKSHM_KNOB_PARTIAL_REUSE == (int)HK_KNOB_PARTIAL_REUSE &&
                   (int)HKSHM_KNOB_THP == (int)HK_KNOB_THP && HKSHM_THP_SMALL == HK_THP_SMALL &&
                   HKSHM_THP_LARGE == HK_THP_LARGE &&
                   (int)HKSHM_KNOB_LARGE_THRESHOLD == (int)HK_KNOB_LARGE_THRESHOLD &&
                   (int)HKSHM_KNOB_BIGCACHE_KIB == (int)HK_KNOB_BIGCACHE_KIB &&
                   (int)HKSHM_KNOB_MEDIUM_PAGE_BLOCKS == (int)HK_KNOB_MEDIUM_PAGE_BLOCKS,
               "knob numbers");

void hk_options_apply_binary(uint32_t set, const uint32_t knob[HKSHM_KNOBS])
{
    hk_knobs_publish(set, knob);
}

void hk_options_binary_defaults(void)
{
    hk_knobs_reset();
}
