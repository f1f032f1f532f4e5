/* The purge delay, raised by refaults of memory purged too soon
 * (purge_pace.h). */
#include "purge_pace.h"
#include "knobs.h"
#include "options.h"
#include "os.h"

#include <stdatomic.h>

#define MS 1000000ull
#define DECAY_DELAYS 16     /* quiet delays before the raised delay halves */

static _Atomic uint64_t raised_ns;          /* 0: at the floor */
static _Atomic uint64_t quiet_since_ns;     /* last refault, or last halving */
static _Atomic uint64_t refaults;
static _Atomic uint64_t faulting_since_ns;  /* last fault of slots no trade paid for */

static uint64_t ceiling_ns(uint64_t floor)
{
    uint64_t cap = (uint64_t)hk_opt.purge_delay_max_ms * MS;
    return cap > floor ? cap : floor;
}

uint64_t hk_purge_floor_ns(void) { return (uint64_t)hk_knob(HK_KNOB_PURGE_DELAY_MS) * MS; }

uint64_t hk_purge_ceiling_ns(void) { return ceiling_ns(hk_purge_floor_ns()); }

uint64_t hk_purge_delay_ns(uint64_t now)
{
    uint64_t floor = hk_purge_floor_ns();
    uint64_t r = atomic_load_explicit(&raised_ns, memory_order_relaxed);
    if (floor == 0 || r <= floor) return floor;
    uint64_t faulting = atomic_load_explicit(&faulting_since_ns, memory_order_relaxed);
    if (now >= faulting && now - faulting < floor) return floor;
    uint64_t quiet = atomic_load_explicit(&quiet_since_ns, memory_order_relaxed);
    if (now > quiet && now - quiet >= DECAY_DELAYS * r &&
        atomic_compare_exchange_strong_explicit(&raised_ns, &r, r / 2, memory_order_relaxed,
                                                memory_order_relaxed)) {
        atomic_store_explicit(&quiet_since_ns, now, memory_order_relaxed);
        r /= 2;
    }
    r = r < ceiling_ns(floor) ? r : ceiling_ns(floor);
    return r > floor ? r : floor;
}

void hk_purge_refaulted(uint64_t now, uint64_t idle_since)
{
    uint64_t floor = hk_purge_floor_ns();
    uint64_t cap = ceiling_ns(floor);
    uint64_t idle = now > idle_since ? now - idle_since : 0;
    if (floor == 0 || cap <= floor || idle >= cap) return;
    atomic_fetch_add_explicit(&refaults, 1, memory_order_relaxed);
    atomic_store_explicit(&quiet_since_ns, now, memory_order_relaxed);
    uint64_t want = 2 * idle < cap ? 2 * idle : cap;
    uint64_t r = atomic_load_explicit(&raised_ns, memory_order_relaxed);
    while (r < want &&
           !atomic_compare_exchange_weak_explicit(&raised_ns, &r, want, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

void hk_purge_faulting(uint64_t now)
{
    if (atomic_load_explicit(&faulting_since_ns, memory_order_relaxed) != now)
        atomic_store_explicit(&faulting_since_ns, now, memory_order_relaxed);
}

void hk_purge_pace_reset(void)
{
    atomic_store_explicit(&raised_ns, 0, memory_order_relaxed);
}

uint32_t hk_purge_delay_current_ms(void)
{
    return (uint32_t)(hk_purge_delay_ns(hk_coarse_ns()) / MS);
}

uint64_t hk_purge_refaults(void) { return atomic_load_explicit(&refaults, memory_order_relaxed); }
