#include "unit_util.h"
#include "init.h"
#include "knobs.h"
#include "options.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

hk_heap *ut_heap_new(void)
{
    hk_process_init();
    hk_heap *h = calloc(1, sizeof *h);
    if (h == NULL) abort();
    for (unsigned b = 0; b <= HK_DIRECT_MAX / HK_ALIGN; b++) h->direct[b] = &hk_empty_page;
    for (unsigned c = 0; c < HK_CLASSES; c++) h->current[c] = &hk_empty_page;
    h->sample_left = (int64_t)hk_opt.sample_bytes;
    return h;
}

void ut_heap_free(hk_heap *h) { free(h); }

void ut_run_child(void (*fn)(void *), void *arg, ut_child *out)
{
    memset(out, 0, sizeof *out);
    int fds[2];
    if (pipe(fds) != 0) abort();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) abort();
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        close(fds[1]);
        signal(SIGABRT, SIG_DFL);
        signal(SIGSEGV, SIG_DFL);
        alarm(20);                 /* a hung child must not hang the suite */
        fn(arg);
        _exit(0);
    }
    close(fds[1]);
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fds[0], out->err + len, sizeof out->err - 1 - len);
        if (n <= 0) break;
        len += (size_t)n;
        if (len == sizeof out->err - 1) break;
    }
    out->err[len] = '\0';
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0) {}
    if (WIFEXITED(status)) { out->exited = 1; out->exit_code = WEXITSTATUS(status); }
    if (WIFSIGNALED(status)) out->signo = WTERMSIG(status);
}

int ut_module_of(uintptr_t addr, char *path, size_t path_len, uintptr_t *bias)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (f == NULL) return -1;
    char line[4096];
    int rc = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi, off;
        int name_at = 0;
        if (sscanf(line, "%lx-%lx %*s %lx %*s %*s %n", &lo, &hi, &off, &name_at) < 3) continue;
        if (addr < lo || addr >= hi) continue;
        char *name = line + name_at;
        name[strcspn(name, "\n")] = '\0';
        if (name[0] != '/') break;
        snprintf(path, path_len, "%s", name);
        *bias = lo - off;
        rc = 0;
        break;
    }
    fclose(f);
    return rc;
}

unsigned ut_count_lines(const char *s)
{
    unsigned n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

uint64_t ut_file_build_id_hash(const char *path)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) return 0;
    uint8_t *f = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f == MAP_FAILED) return 0;
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)f;
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(f + eh->e_shoff);
    uint64_t hash = 0;
    for (unsigned i = 0; i < eh->e_shnum && !hash; i++) {
        if (sh[i].sh_type != SHT_NOTE) continue;
        const uint8_t *p = f + sh[i].sh_offset, *end = p + sh[i].sh_size;
        while (p + sizeof(Elf64_Nhdr) <= end) {
            const Elf64_Nhdr *nh = (const Elf64_Nhdr *)p;
            const uint8_t *name = p + sizeof *nh;
            const uint8_t *desc = name + ((nh->n_namesz + 3) & ~3u);
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
                hash = 0xcbf29ce484222325ull;
                for (unsigned k = 0; k < nh->n_descsz; k++) { hash ^= desc[k]; hash *= 0x100000001b3ull; }
                break;
            }
            p = desc + ((nh->n_descsz + 3) & ~3u);
        }
    }
    munmap(f, (size_t)st.st_size);
    return hash;
}

void ut_set_knob(unsigned knob, uint32_t value)
{
    uint32_t knobs[HK_KNOBS] = { 0 };
    knobs[knob] = value;
    hk_knobs_apply(1u << knob, knobs);
}

size_t ut_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (f == NULL || fscanf(f, "%lu %lu", &size, &resident) != 2) {
        fprintf(stderr, "cannot read /proc/self/statm\n");
        abort();
    }
    fclose(f);
    return resident * (size_t)sysconf(_SC_PAGESIZE);
}

size_t ut_resident_pages(const void *p, size_t len)
{
    unsigned char vec[256];
    const size_t chunk = sizeof vec * 4096;
    size_t n = 0;
    for (size_t off = 0; off < len; off += chunk) {
        size_t part = len - off < chunk ? len - off : chunk;
        if (mincore((char *)p + off, part, vec) != 0) {
            fprintf(stderr, "mincore(%p, %zu) failed\n", (const void *)((const char *)p + off), part);
            abort();
        }
        for (size_t i = 0; i < part / 4096; i++) n += vec[i] & 1;
    }
    return n;
}

void ut_baseline_process(char **argv)
{
    const char *mode = getenv("HAKMEM_MODE");
    if (mode != NULL && strcmp(mode, "baseline") == 0)
        return;
    setenv("HAKMEM_MODE", "baseline", 1);
    execv("/proc/self/exe", argv);
    fprintf(stderr, "cannot re-execute %s under HAKMEM_MODE=baseline: %s\n", argv[0], strerror(errno));
    exit(70);
}
