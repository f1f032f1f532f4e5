/* Module box (modules.h): an address to its fleet-wide key, from the
 * loader in the original process, from /proc/self/maps in a fork child. */
#include "modules.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#define MAPS_MODULES 256            /* modules a fork child's table holds */
#define MODULE_LOADS 8              /* PT_LOAD ranges kept per module */
#define GROUP_RANGES 16             /* readable mappings looked at per file */
#define MAPS_LINE    8192           /* longer /proc/self/maps lines are skipped */

static int forked;                  /* set in a fork child, inherited by its children */
static pid_t owner_pid;             /* the process that may use the loader */
static _Atomic uint64_t loader_calls;

uint64_t hk_module_hash(const void *data, size_t n)
{
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* The GNU build-id among the notes in [p, end); NULL when there is none. */
static const uint8_t *find_build_id(const uint8_t *p, const uint8_t *end, size_t *len)
{
    while (p + sizeof(ElfW(Nhdr)) <= end) {
        const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
        const uint8_t *name = p + sizeof *nh;
        size_t namesz = ((size_t)nh->n_namesz + 3) & ~(size_t)3;
        size_t descsz = ((size_t)nh->n_descsz + 3) & ~(size_t)3;
        if (namesz > (size_t)(end - name) || descsz > (size_t)(end - name) - namesz)
            return NULL;
        const uint8_t *desc = name + namesz;
        if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
            *len = nh->n_descsz;
            return desc;
        }
        p = desc + descsz;
    }
    return NULL;
}

/* `readable(lo, hi, arg)` says whether [lo, hi) may be read; the loader's
 * view needs no check (NULL). */
typedef int (*readable_fn)(uintptr_t lo, uintptr_t hi, const void *arg);

static uint64_t module_hash_of(const ElfW(Phdr) *ph, unsigned phnum, uintptr_t bias, readable_fn readable,
                               const void *arg)
{
    for (unsigned i = 0; i < phnum; i++) {
        if (ph[i].p_type != PT_NOTE)
            continue;
        uintptr_t lo = bias + ph[i].p_vaddr, hi = lo + ph[i].p_memsz;
        if (hi < lo || (readable && !readable(lo, hi, arg)))
            continue;
        size_t len = 0;
        const uint8_t *id = find_build_id((const uint8_t *)lo, (const uint8_t *)hi, &len);
        if (id)
            return hk_module_hash(id, len);
    }
    return hk_module_hash(ph, (size_t)phnum * sizeof *ph);
}

static void copy_path_tail(char *dst, const char *src, size_t len)
{
    if (len >= HK_MODULE_PATH_MAX) {
        src += len - (HK_MODULE_PATH_MAX - 1);
        len = HK_MODULE_PATH_MAX - 1;
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* ---- the loader's view (a process that has not forked without exec) ---- */

typedef struct loader_ctx {
    uintptr_t ra;
    int found;
    hk_module_key *out;
} loader_ctx;

static int loader_visit(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    loader_ctx *c = arg;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (c->ra < lo || c->ra - lo >= ph->p_memsz)
            continue;
        const char *name = info->dlpi_name;
        char exe[HK_MODULE_PATH_MAX * 4];
        size_t len;
        if (name == NULL || name[0] == '\0') {
            ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
            len = n > 0 ? (size_t)n : 0;
            name = exe;
        } else {
            len = strlen(name);
        }
        copy_path_tail(c->out->path, name, len);
        c->out->hash = module_hash_of(info->dlpi_phdr, info->dlpi_phnum, info->dlpi_addr, NULL, NULL);
        c->out->offset = c->ra - info->dlpi_addr;
        c->found = 1;
        return 1;
    }
    return 0;
}

/* ---- a fork child's view: /proc/self/maps and the mapped ELF headers ---- */

typedef struct maps_module {
    uintptr_t lo, hi;               /* hull of the PT_LOAD ranges */
    uintptr_t bias;
    uint32_t n_loads;
    uintptr_t load_lo[MODULE_LOADS], load_hi[MODULE_LOADS];
    uint64_t hash;
    char path[HK_MODULE_PATH_MAX];
} maps_module;

/* The readable mappings of one file, in address order, while scanning. */
typedef struct file_group {
    int active;
    unsigned long dev_major, dev_minor, ino;
    uintptr_t base;                 /* where file offset 0 is mapped; 0: not seen */
    unsigned n;
    uintptr_t lo[GROUP_RANGES], hi[GROUP_RANGES];
    char path[HK_MODULE_PATH_MAX];
} file_group;

static _Atomic int table_busy;      /* try-lock of everything below */
static int table_valid;             /* built in this process since its fork */
static maps_module table[MAPS_MODULES];
static unsigned n_table;
static file_group group;
static char line_buf[MAPS_LINE];

static int group_readable(uintptr_t lo, uintptr_t hi, const void *arg)
{
    const file_group *g = arg;
    if (hi < lo)
        return 0;
    for (unsigned i = 0; i < g->n; i++)
        if (lo >= g->lo[i] && hi <= g->hi[i])
            return 1;
    return 0;
}

/* Turns the scanned group into a module when it holds a mapped ELF image. */
static void group_finish(void)
{
    file_group *g = &group;
    if (!g->active || g->base == 0 || n_table >= MAPS_MODULES)
        return;
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)g->base;
    if (!group_readable(g->base, g->base + sizeof *eh, g))
        return;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != (sizeof(void *) == 8 ? ELFCLASS64 : ELFCLASS32) ||
        eh->e_phentsize != sizeof(ElfW(Phdr)) || eh->e_phnum == 0 || eh->e_phoff > ((uintptr_t)1 << 32))
        return;
    uintptr_t ph_lo = g->base + eh->e_phoff, ph_hi = ph_lo + (uintptr_t)eh->e_phnum * sizeof(ElfW(Phdr));
    if (!group_readable(ph_lo, ph_hi, g))
        return;
    const ElfW(Phdr) *ph = (const ElfW(Phdr) *)ph_lo;
    uintptr_t page = (uintptr_t)getauxval(AT_PAGESZ);
    if (page == 0 || (page & (page - 1)) != 0)
        page = 4096;
    /* The kernel maps a PT_LOAD at bias + its page-aligned vaddr from its
     * page-aligned file offset; the one from offset 0 sits at base. */
    int have_bias = 0;
    uintptr_t bias = 0;
    for (unsigned i = 0; i < eh->e_phnum && !have_bias; i++)
        if (ph[i].p_type == PT_LOAD && (ph[i].p_offset & ~(page - 1)) == 0) {
            bias = g->base - (ph[i].p_vaddr & ~(page - 1));
            have_bias = 1;
        }
    if (!have_bias)
        return;
    maps_module *m = &table[n_table];
    memset(m, 0, sizeof *m);
    m->lo = UINTPTR_MAX;
    for (unsigned i = 0; i < eh->e_phnum && m->n_loads < MODULE_LOADS; i++) {
        if (ph[i].p_type != PT_LOAD)
            continue;
        uintptr_t lo = bias + ph[i].p_vaddr, hi = lo + ph[i].p_memsz;
        m->load_lo[m->n_loads] = lo;
        m->load_hi[m->n_loads++] = hi;
        if (lo < m->lo)
            m->lo = lo;
        if (hi > m->hi)
            m->hi = hi;
    }
    if (m->n_loads == 0)
        return;
    m->bias = bias;
    m->hash = module_hash_of(ph, eh->e_phnum, bias, group_readable, g);
    memcpy(m->path, g->path, sizeof m->path);
    n_table++;
}

static int hex_field(const char **s, unsigned long *out, char stop)
{
    const char *p = *s;
    unsigned long v = 0;
    int digits = 0;
    for (;; p++, digits++) {
        int d;
        if (*p >= '0' && *p <= '9') d = *p - '0';
        else if (*p >= 'a' && *p <= 'f') d = *p - 'a' + 10;
        else break;
        if (digits >= 16)
            return 0;
        v = v << 4 | (unsigned long)d;
    }
    if (digits == 0 || *p != stop)
        return 0;
    *out = v;
    *s = p + 1;
    return 1;
}

/* One line of /proc/self/maps:
 * "lo-hi perms offset major:minor inode   path". */
static void maps_line(const char *s)
{
    unsigned long lo, hi, off, major, minor, ino = 0;
    if (!hex_field(&s, &lo, '-') || !hex_field(&s, &hi, ' '))
        return;
    if (strlen(s) < 5 || s[4] != ' ')
        return;
    int readable = s[0] == 'r';
    s += 5;
    if (!hex_field(&s, &off, ' ') || !hex_field(&s, &major, ':') || !hex_field(&s, &minor, ' '))
        return;
    while (*s >= '0' && *s <= '9')
        ino = ino * 10 + (unsigned long)(*s++ - '0');
    while (*s == ' ')
        s++;
    if (*s != '/' || ino == 0)
        return;                     /* anonymous, [heap], [vdso], ...: not a module */
    file_group *g = &group;
    if (!g->active || g->dev_major != major || g->dev_minor != minor || g->ino != ino) {
        group_finish();
        memset(g, 0, sizeof *g);
        g->active = 1;
        g->dev_major = major;
        g->dev_minor = minor;
        g->ino = ino;
        copy_path_tail(g->path, s, strlen(s));
    }
    if (off == 0 && g->base == 0 && readable)
        g->base = lo;
    if (readable && g->n < GROUP_RANGES) {
        g->lo[g->n] = lo;
        g->hi[g->n++] = hi;
    }
}

static int rebuild_table(void)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    n_table = 0;
    memset(&group, 0, sizeof group);
    size_t used = 0;
    int skipping = 0;               /* inside a line too long for the buffer */
    for (;;) {
        ssize_t n = read(fd, line_buf + used, sizeof line_buf - 1 - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        used += (size_t)n;
        line_buf[used] = '\0';
        char *start = line_buf;
        for (char *nl; (nl = memchr(start, '\n', used - (size_t)(start - line_buf))) != NULL; start = nl + 1) {
            *nl = '\0';
            if (!skipping)
                maps_line(start);
            skipping = 0;
        }
        used -= (size_t)(start - line_buf);
        memmove(line_buf, start, used);
        if (used == sizeof line_buf - 1) {
            used = 0;
            skipping = 1;
        }
    }
    close(fd);
    group_finish();
    table_valid = 1;
    return 0;
}

static int table_lookup(uintptr_t ra, hk_module_key *out)
{
    for (unsigned i = 0; i < n_table; i++) {
        const maps_module *m = &table[i];
        if (ra < m->lo || ra >= m->hi)
            continue;
        for (unsigned k = 0; k < m->n_loads; k++)
            if (ra >= m->load_lo[k] && ra < m->load_hi[k]) {
                out->hash = m->hash;
                out->offset = ra - m->bias;
                memcpy(out->path, m->path, sizeof out->path);
                return 1;
            }
    }
    return 0;
}

static int resolve_from_maps(uintptr_t ra, hk_module_key *out)
{
    int expect = 0;
    if (!atomic_compare_exchange_strong(&table_busy, &expect, 1))
        return -EAGAIN;
    int found = table_valid ? table_lookup(ra, out) : 0;
    if (!found) {
        int rc = rebuild_table();
        found = rc < 0 ? rc : table_lookup(ra, out);
    }
    atomic_store_explicit(&table_busy, 0, memory_order_release);
    return found;
}

/* ---- the entry points ---- */

void hk_module_init(void)
{
    if (owner_pid == 0)
        owner_pid = getpid();
}

void hk_module_fork_child(void)
{
    __atomic_store_n(&forked, 1, __ATOMIC_RELAXED);
    /* Whoever held the try-lock in the parent does not exist here; the
     * parent's table (if it was itself a fork child) may be stale. */
    atomic_store(&table_busy, 0);
    table_valid = 0;
}

int hk_module_resolve(uintptr_t ra, hk_module_key *out)
{
    memset(out, 0, sizeof *out);
    int found;
    if (!__atomic_load_n(&forked, __ATOMIC_RELAXED) && owner_pid != 0 && getpid() == owner_pid) {
        atomic_fetch_add_explicit(&loader_calls, 1, memory_order_relaxed);
        loader_ctx c = { .ra = ra, .out = out };
        dl_iterate_phdr(loader_visit, &c);
        found = c.found;
    } else {
        /* Forked (or cloned without the fork handlers): never the loader. */
        found = resolve_from_maps(ra, out);
    }
    if (found == 0) {
        out->hash = 0;
        out->offset = ra;
        memcpy(out->path, "?", 2);
    }
    return found < 0 ? -EAGAIN : found;
}

int hk_module_exe_build_id(uint8_t *out, int max)
{
    const ElfW(Phdr) *ph = (const ElfW(Phdr) *)getauxval(AT_PHDR);
    unsigned long phnum = getauxval(AT_PHNUM);
    if (!ph || !phnum)
        return 0;
    uintptr_t bias = 0;
    for (unsigned long i = 0; i < phnum; i++)
        if (ph[i].p_type == PT_PHDR)
            bias = (uintptr_t)ph - ph[i].p_vaddr;
    for (unsigned long i = 0; i < phnum; i++) {
        if (ph[i].p_type != PT_NOTE)
            continue;
        const uint8_t *p = (const uint8_t *)(bias + ph[i].p_vaddr);
        size_t len = 0;
        const uint8_t *id = find_build_id(p, p + ph[i].p_memsz, &len);
        if (id) {
            int n = (int)len < max ? (int)len : max;
            memcpy(out, id, (size_t)n);
            return n;
        }
    }
    return 0;
}

uint64_t hk_module_loader_calls(void)
{
    return atomic_load_explicit(&loader_calls, memory_order_relaxed);
}
