/* ELF symbol lookup.  The file is mapped read-only and every header, index
 * and string offset is bounds-checked, since a module path may name any
 * file.  One module is cached, because sites arrive grouped by module. */
#include "symbolize.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static struct {
    char path[4096];
    const uint8_t *map;
    size_t size;
    int bad;
} C;

static int load(const char *module)
{
    if (C.map && strcmp(C.path, module) == 0)
        return 0;
    if (!C.map && C.bad && strcmp(C.path, module) == 0)
        return -ENOEXEC;
    if (C.map)
        munmap((void *)C.map, C.size);
    C.map = NULL;
    C.bad = 1;
    snprintf(C.path, sizeof C.path, "%s", module);
    /* A module path may name a FIFO or a device: never wait on it. */
    int fd = open(module, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof(Elf64_Ehdr)) {
        close(fd);
        return -ENOEXEC;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return -errno;
    const Elf64_Ehdr *eh = m;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64) {
        munmap(m, (size_t)st.st_size);
        return -ENOEXEC;
    }
    C.map = m;
    C.size = (size_t)st.st_size;
    C.bad = 0;
    return 0;
}

static int in_file(uint64_t off, uint64_t len)
{
    return off <= C.size && len <= C.size - off;
}

/* The lowest PT_LOAD address: offsets are relative to the load base, which
 * for a non-PIE executable is that address rather than 0. */
static uint64_t link_base(const Elf64_Ehdr *eh)
{
    if (eh->e_type != ET_EXEC || !in_file(eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr)))
        return 0;
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(C.map + eh->e_phoff);
    uint64_t base = UINT64_MAX;
    for (unsigned i = 0; i < eh->e_phnum; i++)
        if (ph[i].p_type == PT_LOAD && ph[i].p_vaddr < base)
            base = ph[i].p_vaddr & ~(uint64_t)0xfff;
    return base == UINT64_MAX ? 0 : base;
}

int hkc_symbolize(const char *module, uint64_t offset, char *name, size_t cap)
{
    if (!module || !*module || cap == 0)
        return -EINVAL;
    int r = load(module);
    if (r < 0)
        return r;
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)C.map;
    if (eh->e_shentsize != sizeof(Elf64_Shdr) ||
        !in_file(eh->e_shoff, (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr)))
        return 0;
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(C.map + eh->e_shoff);
    uint64_t base = link_base(eh);
    uint64_t addr = offset + (offset < base ? base : 0);
    if (addr > 0)
        addr--;

    /* .symtab first: it has static functions too; .dynsym as a fallback. */
    for (int pass = 0; pass < 2; pass++) {
        uint32_t want = pass == 0 ? SHT_SYMTAB : SHT_DYNSYM;
        for (unsigned i = 0; i < eh->e_shnum; i++) {
            if (sh[i].sh_type != want || sh[i].sh_entsize != sizeof(Elf64_Sym) ||
                sh[i].sh_link >= eh->e_shnum || !in_file(sh[i].sh_offset, sh[i].sh_size))
                continue;
            const Elf64_Shdr *strs = &sh[sh[i].sh_link];
            if (!in_file(strs->sh_offset, strs->sh_size) || strs->sh_size == 0)
                continue;
            const char *strtab = (const char *)C.map + strs->sh_offset;
            const Elf64_Sym *sym = (const Elf64_Sym *)(C.map + sh[i].sh_offset);
            size_t n = sh[i].sh_size / sizeof(Elf64_Sym);
            for (size_t k = 0; k < n; k++) {
                unsigned type = ELF64_ST_TYPE(sym[k].st_info);
                if ((type != STT_FUNC && type != STT_GNU_IFUNC) || sym[k].st_shndx == SHN_UNDEF)
                    continue;
                uint64_t lo = sym[k].st_value, sz = sym[k].st_size ? sym[k].st_size : 1;
                if (addr < lo || addr - lo >= sz || sym[k].st_name >= strs->sh_size)
                    continue;
                const char *nm = strtab + sym[k].st_name;
                size_t maxlen = strs->sh_size - sym[k].st_name;
                if (strnlen(nm, maxlen) == maxlen || !*nm)
                    continue;
                uint64_t into = offset + (offset < base ? base : 0) - lo;
                if (into)
                    snprintf(name, cap, "%s+0x%llx", nm, (unsigned long long)into);
                else
                    snprintf(name, cap, "%s", nm);
                return 1;
            }
        }
    }
    return 0;
}
