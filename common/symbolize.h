/* Names the function that contains an offset in an ELF module, from its
 * .symtab (or .dynsym when stripped), for hakmemctl's site listing.  Runs in
 * hakmemctl, with the operator's view of the filesystem, never in the
 * daemon: module paths come from clients and are not trusted there. */
#ifndef HAKMEMD_SYMBOLIZE_H
#define HAKMEMD_SYMBOLIZE_H

#include <stddef.h>
#include <stdint.h>

/* offset: address minus the module's load base (a return address: the
 * call is looked up one byte earlier).  Writes "function" or
 * "function+0xN" into name.  1 found, 0 not found, -errno. */
int hkc_symbolize(const char *module, uint64_t offset, char *name, size_t cap);

#endif
