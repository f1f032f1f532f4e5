/* Cache-thrash false-sharing probe: see cache_probe.h. */
#include "cache_probe.h"

int main(int argc, char **argv)
{
    return cache_probe_main(argc, argv, 0);
}
