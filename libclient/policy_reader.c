/* Policy reader box (policy_reader.h). */
#include "policy_reader.h"
#include "options.h"
#include "os.h"
#include "region.h"
#include "site.h"
#include "text.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct pending_policy {
    uint32_t index;                 /* the allocator's site index */
    uint64_t module_hash, offset;
    int found;
    uint32_t arm;
    hk_site_policy policy;
} pending_policy;

static struct {
    hkshm_header *hdr;
    dev_t dev;
    ino_t ino;
    uint64_t gen_applied;
    uint32_t sites_at_apply;
    pending_policy work[HK_SITE_MAX];
    uint32_t n_work;
    int binary_applied;             /* the knobs below are in force */
    uint32_t bin_set, bin_knob[HKSHM_KNOBS];
    int bin_decided;                /* the binary arm was chosen at bin_since_ns */
    uint64_t bin_since_ns;
    int bin_pending;                /* a different arm is published: taken once the hold is over */
} pr;
/* Apart from pr, which is all zero at start so that it takes no room in
 * the library's data pages (a small program's resident set counts them). */
static uint32_t pr_bin_arm = HKSHM_NO_ARM;
static uint32_t pr_report_every;     /* 0 until an entry says otherwise: every process */

uint32_t hk_policy_report_every(void) { return pr_report_every > 1 ? pr_report_every : 1; }

void (*hk_policy_mid_read_hook)(void);

/* ---- opening: trust, then compatibility ---- */

static int trusted_owner(uid_t owner, const int64_t *uids, int n)
{
    if (owner == 0)
        return 1;
    for (int i = 0; i < n; i++)
        if (uids[i] >= 0 && (uid_t)uids[i] == owner)
            return 1;
    return 0;
}

static void describe_abi(hk_text *t, uint32_t abi)
{
    hk_text_str(t, "incompatible segment (ABI version ");
    hk_text_u64(t, abi);
    hk_text_str(t, ", this library speaks ");
    hk_text_u64(t, HKSHM_ABI_VERSION);
    hk_text_str(t, ")");
}

/* Why a segment of the wrong size is not ours, read from its first bytes
 * (magic and ABI version sit at the same offsets in every ABI). */
static void describe_foreign(int fd, uint64_t size, hk_text *t)
{
    const void *p = size >= 16 ? mmap(NULL, 16, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
    if (p != MAP_FAILED) {
        uint64_t magic;
        uint32_t abi;
        memcpy(&magic, p, sizeof magic);
        memcpy(&abi, (const char *)p + 8, sizeof abi);
        munmap((void *)p, 16);
        if ((magic & 0x00FFFFFFFFFFFFFFull) == (HKSHM_MAGIC & 0x00FFFFFFFFFFFFFFull) && abi != HKSHM_ABI_VERSION) {
            describe_abi(t, abi);
            return;
        }
    }
    hk_text_str(t, "incompatible segment (");
    hk_text_u64(t, size);
    hk_text_str(t, " bytes, expected ");
    hk_text_u64(t, HKSHM_SEGMENT_SIZE);
    hk_text_str(t, ")");
}

/* Opens `name` if it is trusted and of this layout's size: the
 * descriptor, or -errno with the reason in t. */
static int open_trusted(const char *name, const int64_t *trusted_uids, int n_uids, struct stat *st, hk_text *t)
{
    int fd = shm_open(name, O_RDONLY, 0);
    if (fd < 0) {
        int e = errno;
        hk_text_str(t, e == ENOENT ? "no segment" : e == EACCES ? "segment: permission denied" : "cannot open segment");
        return -e;
    }
    int rc = 0;
    if (fstat(fd, st) < 0) {
        rc = -errno;
        hk_text_str(t, "cannot stat segment");
    } else if (!S_ISREG(st->st_mode)) {
        rc = -EPERM;
        hk_text_str(t, "segment refused: not a regular file");
    } else if (!trusted_owner(st->st_uid, trusted_uids, n_uids)) {
        rc = -EPERM;
        hk_text_str(t, "segment refused: owned by uid ");
        hk_text_u64(t, st->st_uid);
        hk_text_str(t, ", neither root nor the daemon's user");
    } else if (st->st_mode & 022) {
        rc = -EPERM;
        hk_text_str(t, "segment refused: writable by group or others (mode 0");
        hk_text_char(t, (char)('0' + ((st->st_mode >> 6) & 7)));
        hk_text_char(t, (char)('0' + ((st->st_mode >> 3) & 7)));
        hk_text_char(t, (char)('0' + (st->st_mode & 7)));
        hk_text_str(t, ")");
    } else if ((uint64_t)st->st_size != HKSHM_SEGMENT_SIZE) {
        rc = -EPROTO;
        describe_foreign(fd, (uint64_t)st->st_size, t);
    }
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

/* -EPROTO with the reason in t when h is not a header of this layout. */
static int check_header(const hkshm_header *h, hk_text *t)
{
    const char *m = hkshm_header_mismatch(h, HKSHM_SEGMENT_SIZE);
    if (!m)
        return 0;
    if (m[0] == 'A') {
        describe_abi(t, h->abi_version);
    } else {
        hk_text_str(t, "incompatible segment (");
        hk_text_str(t, m);
        hk_text_str(t, ")");
    }
    return -EPROTO;
}

int hk_policy_open(const char *name, const int64_t *trusted_uids, int n_uids, char *why, int why_len)
{
    hk_text t = hk_text_on(why, why_len);
    hk_policy_close();
    struct stat st;
    int fd = open_trusted(name, trusted_uids, n_uids, &st, &t);
    if (fd < 0)
        return fd;
    int rc = 0;
    void *p = mmap(NULL, HKSHM_SEGMENT_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        rc = -errno;
        hk_text_str(&t, "cannot map segment");
    }
    close(fd);
    if (rc == 0 && (rc = check_header(p, &t)) < 0)
        munmap(p, HKSHM_SEGMENT_SIZE);
    if (rc < 0)
        return rc;
    __atomic_store_n(&pr.hdr, (hkshm_header *)p, __ATOMIC_RELEASE);
    pr.dev = st.st_dev;
    pr.ino = st.st_ino;
    pr.gen_applied = 0;
    return 0;
}

int hk_policy_replaced(const char *name)
{
    int fd = shm_open(name, O_RDONLY, 0);
    struct stat st;
    int same = fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == pr.dev && st.st_ino == pr.ino;
    if (fd >= 0)
        close(fd);
    return !same;
}

void hk_policy_close(void)
{
    hkshm_header *h = pr.hdr;
    /* Other threads look at the pointer without the client's lock (a
     * stale value only costs them a try-lock). */
    __atomic_store_n(&pr.hdr, NULL, __ATOMIC_RELEASE);
    if (h)
        munmap(h, HKSHM_SEGMENT_SIZE);
}

const hkshm_header *hk_policy_header(void) { return __atomic_load_n(&pr.hdr, __ATOMIC_ACQUIRE); }

void hk_policy_forget_generation(void)
{
    pr.gen_applied = 0;
    pr.sites_at_apply = 0;
}

void hk_policy_binary_since(uint64_t ns_ago)
{
    if (ns_ago == UINT64_MAX) {
        pr.bin_decided = 0;
        pr.bin_pending = 0;
    } else {
        pr.bin_since_ns = hk_now_ns() - ns_ago;
    }
}

/* ---- reading the active copy ---- */

static void collect_site(const hk_site_view *v, void *arg)
{
    (void)arg;
    if (pr.n_work >= HK_SITE_MAX)
        return;
    pending_policy *w = &pr.work[pr.n_work++];
    w->index = v->index;
    w->module_hash = v->module_hash;
    w->offset = v->offset;
    w->found = 0;
}

/* Where a copy's entries come from: the mapped segment, or the segment's
 * descriptor (a peek, which maps nothing); off is the copy's offset. */
typedef struct table_src {
    const char *seg;                /* NULL: pread from fd */
    int fd;
    uint64_t off;
} table_src;

/* len bytes at `at` in the copy, into out; a short read leaves zeros,
 * which no key or value check passes. */
static void table_read(const table_src *s, size_t at, void *out, size_t len)
{
    if (s->seg) {
        memcpy(out, s->seg + s->off + at, len);
    } else if (pread(s->fd, out, len, (off_t)(s->off + at)) != (ssize_t)len) {
        memset(out, 0, len);
    }
}

/* The copy's stamp (an atomic load when mapped). */
static uint64_t stamp_of(const table_src *s, memory_order order)
{
    if (s->seg)
        return atomic_load_explicit(&((const hkshm_table *)(const void *)(s->seg + s->off))->generation, order);
    uint64_t g;
    table_read(s, 0, &g, sizeof g);
    return g;
}

/* Points src at the copy stamped g, looked for from `active` on, with its
 * counts; 0 when no copy bears g (rewritten since) or its counts are out
 * of bounds. */
static int find_copy(table_src *src, uint32_t active, uint64_t g, uint32_t *n_sites, uint32_t *n_bins)
{
    for (uint32_t k = 0; k < HKSHM_TABLES; k++) {
        src->off = HKSHM_TABLES_OFFSET + (uint64_t)((active + k) % HKSHM_TABLES) * sizeof(hkshm_table);
        if (stamp_of(src, memory_order_acquire) != g)
            continue;
        struct { uint32_t n_sites, n_binaries; } n;
        table_read(src, offsetof(hkshm_table, n_sites), &n, sizeof n);
        _Static_assert(offsetof(hkshm_table, n_binaries) == offsetof(hkshm_table, n_sites) + 4, "counts side by side");
        *n_sites = n.n_sites;
        *n_bins = n.n_binaries;
        return n.n_sites <= HKSHM_SITE_CAP && n.n_binaries <= HKSHM_BINARY_CAP;
    }
    return 0;
}

/* After the entries were read: whether the copy still bears g (a copy
 * rewritten under the read voids all of it). */
static int copy_unchanged(const table_src *src, uint64_t g)
{
    if (hk_policy_mid_read_hook)
        hk_policy_mid_read_hook();
    atomic_thread_fence(memory_order_acquire);
    return stamp_of(src, memory_order_relaxed) == g;
}

static void site_entry_at(const table_src *s, uint32_t i, hkshm_site_policy *e)
{
    table_read(s, offsetof(hkshm_table, sites) + (size_t)i * sizeof *e, e, sizeof *e);
}

static void binary_entry_at(const table_src *s, uint32_t i, hkshm_binary_policy *e)
{
    table_read(s, offsetof(hkshm_table, binaries) + (size_t)i * sizeof *e, e, sizeof *e);
}

/* Binary search over n sorted entries; cmp(i) orders entry i against the
 * key.  The index found, or -1. */
static int64_t search(uint32_t n, int (*cmp)(uint32_t i, const void *key), const void *key)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = cmp(mid, key);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

typedef struct search_key {
    const table_src *src;
    uint32_t domain;
    uint64_t hash, offset;          /* a binary's: offset is the command's hash */
} search_key;

static int site_at(uint32_t i, const void *key)
{
    const search_key *k = key;
    hkshm_site_policy e;
    site_entry_at(k->src, i, &e);
    return hkshm_site_cmp(e.domain, e.module_hash, e.offset, k->domain, k->hash, k->offset);
}

static int binary_at(uint32_t i, const void *key)
{
    const search_key *k = key;
    hkshm_binary_policy e;
    binary_entry_at(k->src, i, &e);
    return hkshm_binary_cmp(e.domain, e.binary_hash, e.command_hash, k->domain, k->hash, k->offset);
}

/* Site i's published entry, copied out and checked (key and values). */
static void read_site(const table_src *src, uint32_t n, uint32_t domain, pending_policy *w)
{
    search_key key = { src, domain, w->module_hash, w->offset };
    int64_t at = search(n, site_at, &key);
    if (at < 0)
        return;
    hkshm_site_policy c;
    site_entry_at(src, (uint32_t)at, &c);
    if (c.domain != domain || c.module_hash != w->module_hash || c.offset != w->offset ||
        c.large_threshold < HKSHM_THRESHOLD_MIN || c.large_threshold > HKSHM_THRESHOLD_MAX ||
        c.bigcache_slots > HKSHM_SLOTS_LIMIT || c.thp > 1)
        return;
    w->found = 1;
    w->arm = c.arm;
    w->policy = (hk_site_policy){ .large_threshold = c.large_threshold, .bigcache_slots = c.bigcache_slots,
                                  .thp = c.thp, .from_daemon = 1 };
}

typedef struct binary_read {
    int found;
    uint32_t arm, set, knob[HKSHM_KNOBS], report_every;
} binary_read;

static void read_binary(const table_src *src, uint32_t n, uint32_t domain, uint64_t hash, uint64_t command,
                        binary_read *b)
{
    memset(b, 0, sizeof *b);
    search_key key = { src, domain, hash, command };
    int64_t at = hash ? search(n, binary_at, &key) : -1;
    if (at < 0)
        return;
    hkshm_binary_policy c;
    binary_entry_at(src, (uint32_t)at, &c);
    if (c.domain != domain || c.binary_hash != hash || c.command_hash != command)
        return;
    b->found = 1;
    b->arm = c.arm;
    b->report_every = c.report_every < 1 ? 1 : c.report_every > HKSHM_REPORT_EVERY_MAX ? HKSHM_REPORT_EVERY_MAX : c.report_every;
    /* A knob out of its range (or a reserved one) counts as not set. */
    for (uint32_t k = 0; k < HKSHM_KNOBS; k++)
        if ((c.set & (1u << k)) && hkshm_knob_valid(k, c.knob[k])) {
            b->set |= 1u << k;
            b->knob[k] = c.knob[k];
        }
}

static int same_binary_policy(const binary_read *b)
{
    if (!b->found)
        return !pr.binary_applied && pr_bin_arm == HKSHM_NO_ARM;
    return pr.binary_applied && pr.bin_set == b->set && memcmp(pr.bin_knob, b->knob, sizeof b->knob) == 0;
}

/* A process keeps the binary arm it took for HKSHM_BINARY_HOLD_MS (from
 * its first read on): a short run is one clean observation of one arm,
 * and a long one changes arm only between the daemon's windows. */
static void apply_binary(const binary_read *b, uint64_t now_ns)
{
    pr_report_every = b->found ? b->report_every : 1;
    if (same_binary_policy(b)) {
        pr_bin_arm = b->found ? b->arm : HKSHM_NO_ARM;
        pr.bin_pending = 0;
        if (!pr.bin_decided) {
            pr.bin_decided = 1;         /* the first read decides, whatever it finds */
            pr.bin_since_ns = now_ns;
        }
        return;
    }
    if (pr.bin_decided && now_ns - pr.bin_since_ns < (uint64_t)HKSHM_BINARY_HOLD_MS * 1000000ull) {
        pr.bin_pending = 1;
        return;
    }
    pr.bin_decided = 1;
    pr.bin_since_ns = now_ns;
    pr.bin_pending = 0;
    if (!b->found) {
        if (pr.binary_applied || pr_bin_arm != HKSHM_NO_ARM)
            hk_options_binary_defaults();
        pr.binary_applied = 0;
        pr_bin_arm = HKSHM_NO_ARM;
        return;
    }
    hk_options_apply_binary(b->set, b->knob);
    pr.binary_applied = 1;
    pr_bin_arm = b->arm;
    pr.bin_set = b->set;
    memcpy(pr.bin_knob, b->knob, sizeof b->knob);
}

/* The header's fields up to `reserved`: all a peek reads of it. */
#define HEADER_USED offsetof(hkshm_header, reserved)

int hk_policy_peek(const char *name, const int64_t *trusted_uids, int n_uids, uint32_t domain,
                   uint64_t binary_hash, uint64_t command_hash, hk_policy_peeked *seen, char *why, int why_len)
{
    hk_text t = hk_text_on(why, why_len);
    memset(seen, 0, sizeof *seen);
    struct stat st;
    int fd = open_trusted(name, trusted_uids, n_uids, &st, &t);
    if (fd < 0)
        return fd;
    /* The header's first bytes only: a whole one would take a page of
     * the stack of whichever thread's slow path this runs in. */
    _Alignas(hkshm_header) unsigned char bytes[HEADER_USED];
    const hkshm_header *head = (const hkshm_header *)(void *)bytes;
    int rc = 0;
    if (pread(fd, bytes, HEADER_USED, 0) != (ssize_t)HEADER_USED) {
        rc = -EIO;
        hk_text_str(&t, "cannot read segment");
    }
    if (rc == 0)
        rc = check_header(head, &t);
    uint64_t g = rc == 0 ? head->generation : 0;
    if (rc == 0) {
        seen->generation = g;
        seen->learning = head->learning != 0;
        memcpy(seen->socket_path, head->socket_path, sizeof seen->socket_path);
    }
    if (rc == 0 && g != 0 && seen->learning) {
        /* The read protocol of hk_policy_apply, without a region to
         * announce the read in. */
        table_src src = { NULL, fd, 0 };
        uint32_t n_sites, n_bins;
        binary_read bin;
        rc = -EAGAIN;
        if (find_copy(&src, head->active, g, &n_sites, &n_bins)) {
            read_binary(&src, n_bins, domain, binary_hash, command_hash, &bin);
            if (copy_unchanged(&src, g)) {
                apply_binary(&bin, hk_now_ns());
                hk_region_set_applied(0, pr_bin_arm);
                rc = 1;
            }
        }
    }
    close(fd);
    return rc;
}

int hk_policy_apply(uint32_t domain, uint64_t binary_hash, uint64_t command_hash, hkshm_region *region)
{
    hkshm_header *h = __atomic_load_n(&pr.hdr, __ATOMIC_ACQUIRE);
    if (!h)
        return 0;
    uint64_t g = atomic_load_explicit(&h->generation, memory_order_acquire);
    uint32_t nsites = hk_site_count();
    uint64_t now = hk_now_ns();
    int hold_over = pr.bin_pending && now - pr.bin_since_ns >= (uint64_t)HKSHM_BINARY_HOLD_MS * 1000000ull;
    if (g == 0 || (g == pr.gen_applied && nsites == pr.sites_at_apply && !hold_over))
        return 0;
    if (!atomic_load_explicit(&h->learning, memory_order_relaxed))
        return 0;

    /* Our sites first (resolving new ones), outside the read, to keep it short. */
    pr.n_work = 0;
    hk_site_for_each(collect_site, NULL);

    if (region) {
        atomic_store(&region->read_gen, g);
        atomic_thread_fence(memory_order_seq_cst);
    }
    table_src src = { (const char *)h, -1, 0 };
    uint32_t n_sites = 0, n_bins = 0;
    int ok = atomic_load(&h->generation) == g && find_copy(&src, atomic_load(&h->active), g, &n_sites, &n_bins);
    binary_read bin;
    memset(&bin, 0, sizeof bin);
    if (ok) {
        for (uint32_t i = 0; i < pr.n_work; i++)
            read_site(&src, n_sites, domain, &pr.work[i]);
        read_binary(&src, n_bins, domain, binary_hash, command_hash, &bin);
        /* Rewritten under us (the daemon gave up waiting for this reader): all of it is void. */
        ok = copy_unchanged(&src, g);
    }
    if (region)
        atomic_store(&region->read_gen, 0);
    if (!ok)
        return -EAGAIN;

    uint32_t applied = 0;
    for (uint32_t i = 0; i < pr.n_work; i++) {
        pending_policy *w = &pr.work[i];
        if (!w->found)
            continue;
        hk_site_set_policy(w->index, &w->policy);
        hk_region_set_site_arm(w->index, w->arm);
        applied++;
    }
    apply_binary(&bin, now);
    hk_region_set_applied(applied, pr_bin_arm);
    pr.gen_applied = g;
    /* Sites not resolved yet are looked at again next time. */
    pr.sites_at_apply = pr.n_work < nsites ? pr.n_work : nsites;
    if (region)
        atomic_store(&region->gen_seen, g);
    return 1;
}
