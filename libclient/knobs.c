/* Process-level knobs (knobs.h): the current values, the environment's, and
 * the changes that cannot wait for a slow path's next look. */
#include "knobs.h"
#include "bigcache.h"
#include "internal.h"
#include "options.h"
#include "purge_pace.h"
#include "segment.h"

typedef struct knob_range {
    uint32_t lo, hi;
} knob_range;

static const knob_range range[HK_KNOBS] = {
    [HK_KNOB_PURGE_DELAY_MS] = { 0, 60000 },
    [HK_KNOB_RETAINED_SEGMENTS] = { 0, 256 },
    [HK_KNOB_PARTIAL_REUSE] = { 0, 3 },
    [HK_KNOB_THP] = { 0, HK_THP_SMALL | HK_THP_LARGE },
    [HK_KNOB_LARGE_THRESHOLD] = { HK_SAMPLED_MAX + 1, HK_CLASS_MAX },
    [HK_KNOB_BIGCACHE_KIB] = { 0, 16u << 20 },
    [HK_KNOB_MEDIUM_PAGE_BLOCKS] = { 1, HK_MEDIUM_PAGE_BLOCKS_MAX },
    [HK_KNOB_POPULATE_KIB] = { 0, 1024 },
    [HK_KNOB_PACKED_KIB] = { 0, 63 },
};
#define KNOBS_USED ((1u << HK_KNOBS) - 1)

/* Built-in defaults until the environment is read (knobs.h says why). */
#define DEFAULTS                                   \
    {                                              \
        [HK_KNOB_PURGE_DELAY_MS] = 20,             \
        [HK_KNOB_RETAINED_SEGMENTS] = 8,           \
        [HK_KNOB_PARTIAL_REUSE] = 1,               \
        [HK_KNOB_THP] = 0,                         \
        [HK_KNOB_LARGE_THRESHOLD] = 1u << 20,      \
        [HK_KNOB_BIGCACHE_KIB] = 128u << 10,       \
        [HK_KNOB_MEDIUM_PAGE_BLOCKS] = HK_MEDIUM_PAGE_BLOCKS_MAX, \
        [HK_KNOB_POPULATE_KIB] = 0,                \
        [HK_KNOB_PACKED_KIB] = 4,                  \
    }
static uint32_t from_env[HK_KNOBS] = DEFAULTS;
_Atomic uint32_t hk_knob_value[HK_KNOBS] = DEFAULTS;

static uint32_t clamp(unsigned k, uint32_t v)
{
    return v < range[k].lo ? range[k].lo : v > range[k].hi ? range[k].hi : v;
}

static void store(uint32_t set, const uint32_t *v)
{
    uint32_t purge_delay = hk_knob(HK_KNOB_PURGE_DELAY_MS);
    for (unsigned k = 0; k < HK_KNOBS; k++) {
        if (((set & KNOBS_USED) >> k) & 1)
            atomic_store_explicit(&hk_knob_value[k], clamp(k, v[k]), memory_order_relaxed);
    }
    /* A new floor starts from itself, not from what the old one learned. */
    if (hk_knob(HK_KNOB_PURGE_DELAY_MS) != purge_delay) hk_purge_pace_reset();
    /* What is over a lowered limit goes now, not at some later free. */
    if (set & (1u << HK_KNOB_RETAINED_SEGMENTS)) hk_segment_trim_retained();
    if (set & (1u << HK_KNOB_BIGCACHE_KIB)) hk_bigcache_fit_budget();
}

void hk_knobs_apply(uint32_t set, const uint32_t knob[HK_KNOBS])
{
    store(set, knob);
}

void hk_knobs_reset(void)
{
    store(KNOBS_USED, from_env);
}

void hk_knobs_publish(uint32_t set, const uint32_t knob[HK_KNOBS])
{
    uint32_t v[HK_KNOBS];
    for (unsigned k = 0; k < HK_KNOBS; k++)
        v[k] = (set >> k & 1u) ? knob[k] : from_env[k];
    store(KNOBS_USED, v);
}

void hk_knobs_load_env(void)
{
    from_env[HK_KNOB_PURGE_DELAY_MS] = hk_opt.purge_delay_ms;
    from_env[HK_KNOB_LARGE_THRESHOLD] = hk_opt.large_threshold;
    from_env[HK_KNOB_RETAINED_SEGMENTS] = (uint32_t)hk_env_long(
        "HAKMEM_RETAINED_SEGMENTS", from_env[HK_KNOB_RETAINED_SEGMENTS], 0,
        range[HK_KNOB_RETAINED_SEGMENTS].hi);
    from_env[HK_KNOB_PARTIAL_REUSE] = (uint32_t)hk_env_long(
        "HAKMEM_PARTIAL_REUSE", from_env[HK_KNOB_PARTIAL_REUSE], 0, range[HK_KNOB_PARTIAL_REUSE].hi);
    uint32_t thp = from_env[HK_KNOB_THP];
    if (hk_env_long("HAKMEM_SMALL_THP", thp & HK_THP_SMALL, 0, 1)) thp |= HK_THP_SMALL;
    else thp &= ~HK_THP_SMALL;
    if (hk_env_long("HAKMEM_LARGE_THP", (thp & HK_THP_LARGE) != 0, 0, 1)) thp |= HK_THP_LARGE;
    else thp &= ~HK_THP_LARGE;
    from_env[HK_KNOB_THP] = thp;
    from_env[HK_KNOB_MEDIUM_PAGE_BLOCKS] = (uint32_t)hk_env_long(
        "HAKMEM_MEDIUM_PAGE_BLOCKS", from_env[HK_KNOB_MEDIUM_PAGE_BLOCKS], range[HK_KNOB_MEDIUM_PAGE_BLOCKS].lo,
        range[HK_KNOB_MEDIUM_PAGE_BLOCKS].hi);
    from_env[HK_KNOB_POPULATE_KIB] = (uint32_t)hk_env_long(
        "HAKMEM_POPULATE_KIB", from_env[HK_KNOB_POPULATE_KIB], 0, range[HK_KNOB_POPULATE_KIB].hi);
    from_env[HK_KNOB_PACKED_KIB] = (uint32_t)hk_env_long(
        "HAKMEM_PACKED_KIB", from_env[HK_KNOB_PACKED_KIB], 0, range[HK_KNOB_PACKED_KIB].hi);
    long budget = hk_env_long("HAKMEM_BIGCACHE_BYTES", (long)from_env[HK_KNOB_BIGCACHE_KIB] << 10, 0,
                              (long)range[HK_KNOB_BIGCACHE_KIB].hi << 10);
    from_env[HK_KNOB_BIGCACHE_KIB] = (uint32_t)((budget + 1023) >> 10);
    hk_knobs_reset();
}
