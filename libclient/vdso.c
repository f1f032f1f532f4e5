/* Finds __vdso_clock_gettime in the vDSO the kernel maps into every
 * process (getauxval(AT_SYSINFO_EHDR)): its dynamic section names the
 * symbol and string tables, and its SysV hash table how many symbols
 * there are.  The kernel builds it with both hash styles; one without
 * DT_HASH is not searched, and the caller falls back to libc. */
#include "vdso.h"

#include <elf.h>
#include <string.h>
#include <sys/auxv.h>

hk_clock_fn hk_vdso_clock_gettime(void)
{
    uintptr_t base = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
    if (base == 0) return NULL;
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)base;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_phentsize != sizeof(Elf64_Phdr))
        return NULL;
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(base + eh->e_phoff);
    uintptr_t bias = 0;
    const Elf64_Dyn *dyn = NULL;
    int loaded = 0;
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type == PT_LOAD && !loaded) {
            bias = base + ph[i].p_offset - ph[i].p_vaddr;
            loaded = 1;
        } else if (ph[i].p_type == PT_DYNAMIC) {
            dyn = (const Elf64_Dyn *)(base + ph[i].p_offset);
        }
    }
    if (!loaded || dyn == NULL) return NULL;
    const Elf64_Sym *sym = NULL;
    const char *str = NULL;
    const Elf32_Word *hash = NULL;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        if (dyn->d_tag == DT_SYMTAB) sym = (const Elf64_Sym *)(bias + dyn->d_un.d_ptr);
        else if (dyn->d_tag == DT_STRTAB) str = (const char *)(bias + dyn->d_un.d_ptr);
        else if (dyn->d_tag == DT_HASH) hash = (const Elf32_Word *)(bias + dyn->d_un.d_ptr);
    }
    if (sym == NULL || str == NULL || hash == NULL) return NULL;
    for (Elf32_Word i = 0; i < hash[1]; i++) {     /* hash[1]: the symbol count */
        if (ELF64_ST_TYPE(sym[i].st_info) == STT_FUNC && sym[i].st_shndx != SHN_UNDEF &&
            strcmp(str + sym[i].st_name, "__vdso_clock_gettime") == 0)
            return (hk_clock_fn)(bias + sym[i].st_value);
    }
    return NULL;
}
