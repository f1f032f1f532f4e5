/* Placeholder until the shared-memory client lands (issue 4): never attaches. */
#include "shm_client.h"
#include <stdio.h>
#include <stdint.h>
void hk_shm_client_init(void) {}
void hk_shm_client_tick(uint64_t now_ns) { (void)now_ns; }
void hk_shm_client_after_fork_child(void) {}
void hk_shm_client_exit(void) {}
void hk_shm_client_describe(char *buf, int len) { snprintf(buf, len, "not attached (stub)"); }
