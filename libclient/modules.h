/* Which loaded module holds an address, as a key every process of one
 * binary agrees on: (module hash, offset from the module's load bias).
 *
 * The hash is the FNV-1a of the module's GNU build-id; a module without one
 * is hashed by its program header table (the same bytes in every process
 * that maps that file, whatever path the loader found it by).
 *
 * Fork safety: the dynamic loader is asked (dl_iterate_phdr) only in a
 * process that has not forked without exec, where a thread holding the
 * loader's lock will release it.  A fork child may have inherited that lock
 * held by a thread it does not have, so there the box never enters the
 * loader: it builds its own table of modules from /proc/self/maps and the
 * ELF headers already mapped in memory (open/read/close only), and
 * rebuilds it when an address misses. */
#ifndef HK_MODULES_H
#define HK_MODULES_H

#include <stddef.h>
#include <stdint.h>

#define HK_MODULE_PATH_MAX 64       /* the tail of a module's path kept */

typedef struct hk_module_key {
    uint64_t hash, offset;
    char path[HK_MODULE_PATH_MAX];
} hk_module_key;

/* 1: found; 0: in no module (JIT code: key is (0, ra)); -EAGAIN: another
 * thread is rebuilding the table, try again later. */
int hk_module_resolve(uintptr_t ra, hk_module_key *out);

/* From the atfork child handler: from now on the loader is off limits. */
void hk_module_fork_child(void);
/* Once at start-up: the process that may use the loader. */
void hk_module_init(void);

/* The main executable's GNU build-id from the auxiliary vector (no loader,
 * no allocation): its length (0 when it has none), at most max bytes. */
int hk_module_exe_build_id(uint8_t *out, int max);
/* FNV-1a, the hash every module key is made of. */
uint64_t hk_module_hash(const void *data, size_t n);

/* Times this process asked the loader (tests prove a fork child never does). */
uint64_t hk_module_loader_calls(void);

#endif
