#include "thp.h"
#include "options.h"
#include "os.h"

#define HUGE_PAGE ((size_t)2 << 20)

size_t hk_thp_advice(uintptr_t base, size_t map_size, int site_wants_thp)
{
    if (!hk_opt.thp || !site_wants_thp) return 0;
    if (hk_os_thp_mode() != 1) return 0;
    if ((base & (HUGE_PAGE - 1)) != 0 || map_size < HUGE_PAGE) return 0;
    return map_size & ~(HUGE_PAGE - 1);
}
