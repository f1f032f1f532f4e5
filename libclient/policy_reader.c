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

int hk_policy_open(const char *name, const int64_t *trusted_uids, int n_uids, char *why, int why_len)
{
    hk_text t = hk_text_on(why, why_len);
    hk_policy_close();
    int fd = shm_open(name, O_RDONLY, 0);
    if (fd < 0) {
        int e = errno;
        hk_text_str(&t, e == ENOENT ? "no segment" : e == EACCES ? "segment: permission denied" : "cannot open segment");
        return -e;
    }
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        hk_text_str(&t, "cannot stat segment");
    } else if (!S_ISREG(st.st_mode)) {
        rc = -EPERM;
        hk_text_str(&t, "segment refused: not a regular file");
    } else if (!trusted_owner(st.st_uid, trusted_uids, n_uids)) {
        rc = -EPERM;
        hk_text_str(&t, "segment refused: owned by uid ");
        hk_text_u64(&t, st.st_uid);
        hk_text_str(&t, ", neither root nor the daemon's user");
    } else if (st.st_mode & 022) {
        rc = -EPERM;
        hk_text_str(&t, "segment refused: writable by group or others (mode 0");
        hk_text_char(&t, (char)('0' + ((st.st_mode >> 6) & 7)));
        hk_text_char(&t, (char)('0' + ((st.st_mode >> 3) & 7)));
        hk_text_char(&t, (char)('0' + (st.st_mode & 7)));
        hk_text_str(&t, ")");
    } else if ((uint64_t)st.st_size != HKSHM_SEGMENT_SIZE) {
        rc = -EPROTO;
        describe_foreign(fd, (uint64_t)st.st_size, &t);
    }
    void *p = MAP_FAILED;
    if (rc == 0 && (p = mmap(NULL, HKSHM_SEGMENT_SIZE, PROT_READ, MAP_SHARED, fd, 0)) == MAP_FAILED) {
        rc = -errno;
        hk_text_str(&t, "cannot map segment");
    }
    close(fd);
    if (rc == 0) {
        const char *m = hkshm_header_mismatch(p, (uint64_t)st.st_size);
        if (m) {
            rc = -EPROTO;
            if (m[0] == 'A') {
                describe_abi(&t, ((const hkshm_header *)p)->abi_version);
            } else {
                hk_text_str(&t, "incompatible segment (");
                hk_text_str(&t, m);
                hk_text_str(&t, ")");
            }
            munmap(p, HKSHM_SEGMENT_SIZE);
        }
    }
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
    const hkshm_table *t;
    uint32_t domain;
    uint64_t hash, offset;          /* a binary's: offset is the command's hash */
} search_key;

static int site_at(uint32_t i, const void *key)
{
    const search_key *k = key;
    const hkshm_site_policy *e = &k->t->sites[i];
    return hkshm_site_cmp(e->domain, e->module_hash, e->offset, k->domain, k->hash, k->offset);
}

static int binary_at(uint32_t i, const void *key)
{
    const search_key *k = key;
    const hkshm_binary_policy *e = &k->t->binaries[i];
    return hkshm_binary_cmp(e->domain, e->binary_hash, e->command_hash, k->domain, k->hash, k->offset);
}

/* Site i's published entry, copied out and checked (key and values). */
static void read_site(const hkshm_table *t, uint32_t n, uint32_t domain, pending_policy *w)
{
    search_key key = { t, domain, w->module_hash, w->offset };
    int64_t at = search(n, site_at, &key);
    if (at < 0)
        return;
    const hkshm_site_policy *e = &t->sites[at];
    hkshm_site_policy c;
    memcpy(&c, e, sizeof c);
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
    uint32_t arm, set, knob[HKSHM_KNOBS];
} binary_read;

static void read_binary(const hkshm_table *t, uint32_t n, uint32_t domain, uint64_t hash, uint64_t command,
                        binary_read *b)
{
    memset(b, 0, sizeof *b);
    search_key key = { t, domain, hash, command };
    int64_t at = hash ? search(n, binary_at, &key) : -1;
    if (at < 0)
        return;
    const hkshm_binary_policy *e = &t->binaries[at];
    hkshm_binary_policy c;
    memcpy(&c, e, sizeof c);
    if (c.domain != domain || c.binary_hash != hash || c.command_hash != command)
        return;
    b->found = 1;
    b->arm = c.arm;
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
    int ok = atomic_load(&h->generation) == g;
    const hkshm_table *tab = NULL;
    uint32_t a = atomic_load(&h->active) % HKSHM_TABLES;
    for (uint32_t k = 0; ok && k < HKSHM_TABLES && !tab; k++) {
        const hkshm_table *t = hkshm_table_at(h, (a + k) % HKSHM_TABLES);
        if (atomic_load_explicit(&t->generation, memory_order_acquire) == g)
            tab = t;
    }
    ok = ok && tab;
    uint32_t n_sites = ok ? tab->n_sites : 0, n_bins = ok ? tab->n_binaries : 0;
    ok = ok && n_sites <= HKSHM_SITE_CAP && n_bins <= HKSHM_BINARY_CAP;
    binary_read bin;
    memset(&bin, 0, sizeof bin);
    if (ok) {
        for (uint32_t i = 0; i < pr.n_work; i++)
            read_site(tab, n_sites, domain, &pr.work[i]);
        read_binary(tab, n_bins, domain, binary_hash, command_hash, &bin);
        if (hk_policy_mid_read_hook)
            hk_policy_mid_read_hook();
        atomic_thread_fence(memory_order_acquire);
        /* Rewritten under us (the daemon gave up waiting for this reader): all of it is void. */
        ok = atomic_load_explicit(&tab->generation, memory_order_relaxed) == g;
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
