/* Process-wide start-up and shutdown: options, tables, fork handlers, the
 * exit report.  Every first allocation goes through hk_process_init(), so
 * the allocator works before constructors run and inside the loader. */
#ifndef HK_INIT_H
#define HK_INIT_H

void hk_process_init(void);

#endif
