/* The two false-sharing probes after Hoard's cache-thrash and
 * cache-scratch: threads allocate small blocks and write them hard; an
 * allocator that places different threads' blocks on one cache line makes
 * every write a cache-line transfer between cores. */
#ifndef SUITE_CACHE_PROBE_H
#define SUITE_CACHE_PROBE_H

/* thrash: every thread allocates its own blocks.  scratch: the main thread
 * allocates one block per thread, next to each other, and hands them out;
 * each thread frees its block before allocating its own of the same size,
 * so an allocator that reuses the freed block in place keeps the sharing. */
int cache_probe_main(int argc, char **argv, int scratch);

#endif
