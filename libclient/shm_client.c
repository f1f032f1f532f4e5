/* The client's side of the daemon plane (include/hakmem_shm.h): when to
 * open the segment, register the report region, flush it and read policy.
 * The work itself is in three boxes: region (the report region),
 * registration (the control socket), policy_reader (the segment).
 *
 * Runs inside malloc's slow path and in fork children, so it never
 * allocates (static buffers, system calls), reads the environment only at
 * init, never enters the dynamic loader, and never blocks on a lock: one
 * try-lock guards all of it and a thread that finds it taken returns.  It
 * never waits for the daemon either: a registration's reply is taken at a
 * later step, given up at REGISTER_DEADLINE_NS. */
#include "shm_client.h"
#include "command.h"
#include "os.h"
#include "mix.h"
#include "modules.h"
#include "options.h"
#include "policy_reader.h"
#include "region.h"
#include "registration.h"
#include "site.h"
#include "text.h"
#include "hakmem_shm.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECOND_NS             1000000000ull
#define CHECK_NS              (2 * SECOND_NS)   /* daemon still there? segment replaced? */
#define RETRY_NS              (2 * SECOND_NS)   /* registration refused or no daemon */
#define RETRY_MAX_NS          (32 * SECOND_NS)  /* after repeated timeouts */
#define REGISTER_DEADLINE_NS  (2 * SECOND_NS)
#define APPLY_MIN_NS          (1000000ull)      /* generation checks at most every 1 ms */
#define MAP_AFTER_NS          (100000000ull)    /* a process that does not register maps from 100 ms */
#define SETTLED_REGISTER_NS   SECOND_NS         /* a process not drawn registers from 1 s (Sampling) */
#define FLUSH_DEFAULT_MS      250u
#define MS_NS                 1000000ull
#define STATE_TEXT            160
_Static_assert(2 * STATE_TEXT + 32 <= HK_SHM_DESCRIBE_MAX, "a description holds both states");

static struct {
    _Atomic int busy;               /* the one try-lock */
    int inited, disabled, verbose;
    _Atomic int closing;
    char name[64];
    char env_socket[HKSHM_SOCKET_PATH];
    char socket[HKSHM_SOCKET_PATH]; /* where the last registration went */
    uint64_t binary_hash;

    /* Registration. */
    hk_conn conn;
    int registered;
    uint64_t instance;              /* the daemon's, from Registered */
    uint64_t seg_instance;          /* the segment's `instance` when we registered */
    uint32_t registrations;         /* numbers used so far (see hakmem_shm.h, registration) */
    int region_sent;                /* the current region went to a daemon already */
    int pending;                    /* a request is out, its reply not taken yet */
    uint32_t pending_number;
    uint64_t pending_deadline;
    uint32_t domain;
    uint64_t retry_ns;

    /* Schedule (CLOCK_MONOTONIC); the tick reads next_due without the lock. */
    _Atomic uint64_t next_due;
    uint64_t next_register, next_check, next_segment, next_flush, next_apply;
    uint64_t map_at;                /* until then the segment is peeked at, not mapped */

    /* Sampling (hakmem_shm.h): this process's draw, when it started, and
     * the runs its registration stands for. */
    uint32_t draw;
    uint64_t started_ns;
    uint32_t report_every;

    /* What the last peek saw (peek_ok: it read a trusted header). */
    hk_policy_peeked peeked;
    int peek_ok;

    /* What was last said at HAKMEM_VERBOSE, one line per change. */
    char reg_state[STATE_TEXT];
    char seg_state[STATE_TEXT];

    /* What taking part costs the process: steps (registration, flushes,
     * policy reads) and the time spent in them. */
    uint64_t steps, step_ns;
} cs = { .conn = { .fd = -1 } };

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)


/* One line on stderr when `text` differs from what `last` holds. */
static void say_change(char *last, const char *text)
{
    if (strcmp(last, text) == 0)
        return;
    size_t n = strlen(text);
    memcpy(last, text, n + 1);
    if (!cs.verbose)
        return;
    char line[STATE_TEXT + 48];
    hk_text t = hk_text_on(line, sizeof line);
    hk_text_str(&t, "hakmem[");
    hk_text_u64(&t, (uint64_t)getpid());
    hk_text_str(&t, "]: ");
    hk_text_str(&t, text);
    hk_text_char(&t, '\n');
    ssize_t w = write(STDERR_FILENO, line, (size_t)t.used);
    (void)w;
}

/* HAKMEM_SOCKET, else the segment's socket_path when it is a NUL-terminated
 * absolute path, else the default. */
static const char *socket_path(char *buf)
{
    if (cs.env_socket[0])
        return cs.env_socket;
    const hkshm_header *h = hk_policy_header();
    if (h || cs.peek_ok) {
        memcpy(buf, h ? h->socket_path : cs.peeked.socket_path, HKSHM_SOCKET_PATH);
        if (buf[0] == '/' && memchr(buf, 0, HKSHM_SOCKET_PATH))
            return buf;
    }
    return HKSHM_DEFAULT_SOCKET;
}

static uint32_t flush_interval_ns(void)
{
    const hkshm_header *h = hk_policy_header();
    uint32_t ms = h ? atomic_load_explicit(&h->flush_interval_ms, memory_order_relaxed) : 0;
    if (ms < 1 || ms > 10000)
        ms = FLUSH_DEFAULT_MS;
    return ms * 1000000u;
}

/* ---- the segment ---- */

/* The uids that may own a trusted segment: ours, the socket's owner and
 * the peer behind our connection.  The trust anchor is the socket we
 * would use, checked before reading the segment. */
static void trusted_uids(int64_t uids[3])
{
    uids[0] = (int64_t)geteuid();
    uids[1] = -1;
    uids[2] = hk_conn_peer_uid(&cs.conn);
    struct stat st;
    const char *sock = cs.env_socket[0] ? cs.env_socket : HKSHM_DEFAULT_SOCKET;
    if (stat(sock, &st) == 0 && S_ISSOCK(st.st_mode))
        uids[1] = st.st_uid;
}

/* One line on what opening or peeking at the segment came to. */
static void say_segment(int rc, const char *why, const char *done)
{
    char line[STATE_TEXT];
    hk_text t = hk_text_on(line, sizeof line);
    hk_text_str(&t, "segment ");
    hk_text_str(&t, cs.name);
    if (rc < 0 && rc != -EAGAIN) {
        hk_text_str(&t, ": ");
        hk_text_str(&t, why);
        hk_text_str(&t, "; running on defaults");
    } else {
        hk_text_str(&t, done);
    }
    say_change(cs.seg_state, line);
}

static void segment_open(uint64_t now)
{
    cs.next_segment = now + CHECK_NS;
    int64_t uids[3];
    trusted_uids(uids);
    char why[STATE_TEXT - 64];
    int rc = hk_policy_open(cs.name, uids, 3, why, sizeof why);
    if (rc == 0) {
        hk_policy_forget_generation();
        cs.next_apply = now;
    }
    say_segment(rc, why, ": mapped read-only");
}

/* Before the process maps the segment: its binary's entry only, read
 * through the descriptor (policy_reader.h says why). */
static void segment_peek(uint64_t now)
{
    int64_t uids[3];
    trusted_uids(uids);
    char why[STATE_TEXT - 64];
    int rc = hk_policy_peek(cs.name, uids, 3, (uint32_t)geteuid(), cs.binary_hash, hk_command_hash(), &cs.peeked,
                            why, sizeof why);
    cs.peek_ok = rc >= 0;
    /* A read that raced a rewrite is tried again at the next step. */
    cs.next_segment = rc == -EAGAIN ? now + APPLY_MIN_NS : now + CHECK_NS;
    if (cs.next_segment > cs.map_at)
        cs.next_segment = cs.map_at;
    say_segment(rc, why, ": read (binary entry), not mapped");
}

static void segment_step(uint64_t now)
{
    if (now < cs.next_segment)
        return;
    if (hk_policy_header()) {
        if (!hk_policy_replaced(cs.name)) {
            cs.next_segment = now + CHECK_NS;
            return;
        }
        hk_policy_close();
    } else if (now < cs.map_at) {
        segment_peek(now);
        return;
    }
    segment_open(now);
}

/* ---- registration ---- */

static void lost_daemon(const char *why)
{
    hk_conn_close(&cs.conn);
    cs.registered = 0;
    char line[STATE_TEXT];
    hk_text t = hk_text_on(line, sizeof line);
    hk_text_str(&t, "daemon at ");
    hk_text_str(&t, cs.socket);
    hk_text_str(&t, " gone (");
    hk_text_str(&t, why);
    hk_text_str(&t, "): registering again");
    say_change(cs.reg_state, line);
}

static void registration_check(uint64_t now)
{
    if (now < cs.next_check)
        return;
    cs.next_check = now + CHECK_NS;
    const hkshm_header *h = hk_policy_header();
    uint64_t seg_instance = h ? atomic_load(&h->instance) : cs.seg_instance;
    if (h && seg_instance != cs.seg_instance && seg_instance != cs.instance)
        lost_daemon("the segment has a new instance");
    else if (!hk_conn_alive(&cs.conn))
        lost_daemon("connection closed");
    if (!cs.registered)
        cs.next_register = now;
}

/* What a registration came to: registered, or why not (retried later). */
static void registration_result(uint64_t now, int rc, const hk_reg_reply *reply)
{
    const char *path = cs.socket;
    char line[STATE_TEXT];
    hk_text t = hk_text_on(line, sizeof line);
    if (rc == 0) {
        cs.registered = 1;
        cs.instance = reply->instance;
        const hkshm_header *h = hk_policy_header();
        cs.seg_instance = h ? atomic_load(&h->instance) : reply->instance;
        cs.domain = (uint32_t)geteuid();
        cs.retry_ns = RETRY_NS;
        hk_region_release_fd();
        cs.next_check = now + CHECK_NS;
        cs.next_flush = now + flush_interval_ns();
        hk_policy_forget_generation();              /* the new region needs gen_seen */
        cs.next_apply = now;
        cs.next_segment = now;                      /* the daemon's uid may vouch for it now */
        hk_text_str(&t, "registered with the daemon at ");
        hk_text_str(&t, path);
        hk_text_str(&t, " (instance ");
        hk_text_hex(&t, reply->instance);
        hk_text_str(&t, ")");
        say_change(cs.reg_state, line);
        return;
    }
    /* Cheap failures (no daemon) retry at the same pace; slow ones back off. */
    if (rc == -ETIMEDOUT && cs.retry_ns < RETRY_MAX_NS)
        cs.retry_ns *= 2;
    else if (rc != -ETIMEDOUT)
        cs.retry_ns = RETRY_NS;
    cs.next_register = now + cs.retry_ns;
    hk_text_str(&t, "not registered with the daemon at ");
    hk_text_str(&t, path);
    hk_text_str(&t, ": ");
    if (rc == -EREMOTEIO) {
        hk_text_str(&t, "refused: ");
        hk_text_untrusted(&t, reply->error_text, HK_REG_TEXT_MAX);
    } else {
        hk_text_str(&t, rc == -ENOENT || rc == -ECONNREFUSED ? "no daemon"
                        : rc == -ETIMEDOUT                  ? "no reply in time"
                        : rc == -ECONNRESET                 ? "closed without a reply"
                        : rc == -EPROTO                     ? "malformed reply"
                        : rc == -EACCES || rc == -EPERM     ? "permission denied"
                        : rc == -EAGAIN                     ? "daemon busy"
                                                            : "cannot register");
    }
    hk_text_str(&t, "; retrying");
    say_change(cs.reg_state, line);
}

/* When a process (or a fork child) just started may first register.  Most
 * of what taking part costs is paid once, at registration: the region's
 * memfd and pages, resolving every site for the first report, the socket,
 * and the final flush at exit: 0.6-0.9 ms of CPU (quartiles of 30 runs
 * of a 40 ms process under a private daemon, the `daemon plane` line of
 * HAKMEM_STATS=1) on a 2-core VM where a page fault costs ~11 us.  A process that exits sooner
 * would pay it mostly to teach nothing: the daemon counts a run of a
 * binary only from 20 ms of CPU on, which takes 10 ms of wall time on two
 * cores.  It reads and applies the published policy from its first
 * allocation all the same. */
static uint64_t registration_start(uint64_t now)
{
    if (hk_opt.register_after_ms > 0) {
        hk_text t = hk_text_on(cs.reg_state, sizeof cs.reg_state);
        hk_text_str(&t, "not registered: a process registers once ");
        hk_text_u64(&t, hk_opt.register_after_ms);
        hk_text_str(&t, " ms old (HAKMEM_REGISTER_AFTER_MS)");
    }
    return now + (uint64_t)hk_opt.register_after_ms * MS_NS;
}

/* Whether a process of a settled binary and command registers now
 * (hakmem_shm.h, Sampling): young only when its draw falls on 1 in
 * report_every, else once a second old.  What registering is for goes
 * to the region. */
static int drawn_to_register(uint64_t now)
{
    uint32_t every = hk_policy_report_every();
    uint64_t old_enough = cs.started_ns + SETTLED_REGISTER_NS;
    int young = now < old_enough;
    if (every > 1 && young && cs.draw % every != 0) {
        cs.next_register = old_enough;
        char line[STATE_TEXT];
        hk_text t = hk_text_on(line, sizeof line);
        hk_text_str(&t, "not registered: its binary and command are settled; 1 in ");
        hk_text_u64(&t, every);
        hk_text_str(&t, " of their processes registers young, the others once 1 s old");
        say_change(cs.reg_state, line);
        return 0;
    }
    cs.report_every = every > 1 && young ? every : 1;
    hk_region_note_sampling(cs.step_ns, cs.report_every);
    return 1;
}

/* A fresh draw, for a new process or a fork child. */
static void draw_anew(uint64_t now)
{
    uint64_t seed = ((uint64_t)getpid() << 32) ^ now;
    cs.draw = (uint32_t)hk_splitmix64(&seed);
    cs.started_ns = now;
    cs.report_every = 1;
}

/* The region registration `number` sends: a fresh one when there is none
 * or the one there went to an earlier registration, else the one there,
 * renumbered.  0, or the -errno of making it. */
static int region_to_send(uint64_t now, uint32_t number)
{
    if (hk_region_get() && !cs.region_sent) {
        hk_region_get()->registration = number;
        return 0;
    }
    cs.region_sent = 0;
    /* A fresh region says which generation its process applied only once a
     * read has written it there: read again at the next step. */
    hk_policy_forget_generation();
    cs.next_apply = now;
    return hk_region_create(number);
}

/* A registration in two halves, so the process never waits for the daemon:
 * the request goes out at one step, and later steps take the reply once it
 * has arrived (or give up at the deadline). */
static void register_attempt(uint64_t now)
{
    hk_reg_reply reply;
    memset(&reply, 0, sizeof reply);
    if (cs.pending) {
        int rc = hk_register_poll(&cs.conn, &reply);
        if (rc == -EAGAIN && now < cs.pending_deadline) {
            cs.next_register = now;     /* look again at the next step */
            return;
        }
        if (rc == -EAGAIN)
            rc = -ETIMEDOUT;
        cs.pending = 0;
        if (rc < 0)
            hk_conn_close(&cs.conn);
        /* A request the daemon may have taken (sent, not refused) used its number. */
        if (rc != -EREMOTEIO)
            cs.registrations = cs.pending_number;
        registration_result(now, rc, &reply);
        return;
    }
    if (!drawn_to_register(now))
        return;
    /* A process that registers reads the segment from then on: its sites'
     * entries too, and the segment's instance and flush interval. */
    if (!hk_policy_header()) {
        cs.map_at = now;
        segment_open(now);
    }
    char path_buf[HKSHM_SOCKET_PATH];
    const char *path = socket_path(path_buf);
    size_t plen = strlen(path);
    memcpy(cs.socket, path, plen + 1);

    /* Connected first: with no daemon, a process makes no region, and
     * holds no descriptor or page for one. */
    uint32_t number = cs.registrations + 1;
    int rc = hk_register_connect(path, &cs.conn);
    if (rc == 0 && (rc = region_to_send(now, number)) < 0)
        hk_conn_close(&cs.conn);
    if (rc == 0) {
        hk_region_flush(0);         /* the daemon's first look sees where we are */
        rc = hk_register_request(&cs.conn, hk_region_fd(), HKSHM_REGION_SIZE);
    }
    if (rc == 0) {
        cs.region_sent = 1;
        cs.pending = 1;
        cs.pending_number = number;
        cs.pending_deadline = now + REGISTER_DEADLINE_NS;
        cs.next_register = now;
        return;
    }
    registration_result(now, rc, &reply);
}

/* ---- one step of everything that is due ---- */

static void schedule(void)
{
    uint64_t due = cs.next_segment;
    if (cs.registered) {
        if (cs.next_check < due) due = cs.next_check;
        if (cs.next_flush < due) due = cs.next_flush;
    } else if (cs.next_register < due) {
        due = cs.next_register;
    }
    if (hk_policy_header() && cs.next_apply < due)
        due = cs.next_apply;
    atomic_store_explicit(&cs.next_due, due, memory_order_relaxed);
}

static void step_body(uint64_t now);

/* Every step is timed: what a process pays for having a daemon is what
 * the exit report says it is.  In CPU time, as the process's own time it
 * is compared with: a wall clock would also count the time the thread was
 * preempted in a step, which on a busy machine is most of it. */
static void step(uint64_t now)
{
    uint64_t t0 = hk_thread_cpu_ns();
    step_body(now);
    cs.steps++;
    cs.step_ns += hk_thread_cpu_ns() - t0;
    hk_region_note_plane_ns(cs.step_ns);
}

static void step_body(uint64_t now)
{
    segment_step(now);
    /* Policy before registering: the region's first flush, the one the
     * daemon reads first, already says which binary arm the process runs. */
    if (hk_policy_header() && now >= cs.next_apply) {
        int rc = hk_policy_apply(cs.registered ? cs.domain : (uint32_t)geteuid(), cs.binary_hash, hk_command_hash(),
                                 hk_region_get());
        cs.next_apply = now + APPLY_MIN_NS;
        if (rc < 0)
            cs.next_apply = now;    /* a raced read: again at the next tick */
    }
    if (cs.registered)
        registration_check(now);
    if (!cs.registered && now >= cs.next_register)
        register_attempt(now);
    if (cs.registered && now >= cs.next_flush) {
        cs.next_flush = now + flush_interval_ns();
        hk_region_flush(0);
    }
    schedule();
}

static int try_lock(void)
{
    int expect = 0;
    return atomic_compare_exchange_strong_explicit(&cs.busy, &expect, 1, memory_order_acquire,
                                                   memory_order_relaxed);
}

static void unlock(void) { atomic_store_explicit(&cs.busy, 0, memory_order_release); }

/* ---- the entry points ---- */

void hk_shm_client_init(void)
{
    if (cs.inited)
        return;
    cs.inited = 1;
    cs.verbose = hk_opt.verbose >= 1;
    if (hk_opt.baseline) {
        cs.disabled = 1;
        return;
    }
    memcpy(cs.name, hk_opt.shm_name, sizeof cs.name);
    cs.name[sizeof cs.name - 1] = 0;
    memcpy(cs.env_socket, hk_opt.socket_path, sizeof cs.env_socket);
    cs.env_socket[sizeof cs.env_socket - 1] = 0;
    uint8_t id[HKSHM_BUILD_ID_MAX];
    int n = hk_module_exe_build_id(id, sizeof id);
    cs.binary_hash = n > 0 ? hk_module_hash(id, (size_t)n) : 0;
    cs.retry_ns = RETRY_NS;
    hk_command_init();
    hk_region_init();
    cs.map_at = hk_now_ns() + MAP_AFTER_NS;
    draw_anew(hk_now_ns());
    cs.next_register = registration_start(hk_now_ns());
    if (try_lock()) {
        step(hk_now_ns());            /* a known binary runs its arm from the start */
        unlock();
    }
}

void hk_shm_client_tick(uint64_t now_ns)
{
    if (!cs.inited || cs.disabled || LD(cs.closing))
        return;
    if (now_ns < LD(cs.next_due))
        return;                     /* the common case: one load */
    if (!try_lock())
        return;
    if (!LD(cs.closing))
        step(now_ns);
    unlock();
}

void hk_shm_client_sites_added(uint64_t now_ns)
{
    if (!cs.inited || cs.disabled || !hk_policy_header())
        return;
    if (!try_lock())
        return;
    cs.next_apply = 0;
    if (!LD(cs.closing))
        step(now_ns);
    unlock();
}

void hk_shm_client_after_fork_child(void)
{
    if (!cs.inited || cs.disabled)
        return;
    /* Only this thread exists now; whoever held the lock in the parent is
     * gone.  The parent's region and connection are the parent's: unmap,
     * close (after proving the descriptors ours), and register anew at the
     * next tick.  Nothing here blocks. */
    atomic_store(&cs.busy, 0);
    hk_region_fork_child();
    hk_conn_close(&cs.conn);
    cs.registered = 0;
    cs.pending = 0;
    cs.registrations = 0;
    cs.region_sent = 0;
    cs.instance = 0;
    cs.retry_ns = RETRY_NS;
    draw_anew(hk_now_ns());
    hk_region_note_sampling(0, 1);
    cs.next_register = registration_start(hk_now_ns());
    cs.next_apply = 0;
    hk_policy_forget_generation();
    atomic_store_explicit(&cs.next_due, 0, memory_order_relaxed);
}

void hk_shm_client_exit(void)
{
    if (!cs.inited || cs.disabled)
        return;
    /* Exit is not malloc's fast path: waiting a moment for a flush in
     * another thread is fine, waiting forever is not. */
    int got = 0;
    for (int i = 0; i < 1000 && !(got = try_lock()); i++)
        sched_yield();
    if (!got)
        return;
    atomic_store(&cs.closing, 1);
    /* A reply already here is taken; one still on its way is not waited
     * for: the daemon has the region and reads this final flush either way. */
    if (cs.pending) {
        hk_reg_reply reply;
        memset(&reply, 0, sizeof reply);
        if (hk_register_poll(&cs.conn, &reply) == 0) {
            cs.pending = 0;
            cs.registrations = cs.pending_number;
            registration_result(hk_now_ns(), 0, &reply);
        }
    }
    /* A drawn process that lived past the age at which it would have
     * registered anyway stands for itself alone. */
    if (cs.report_every > 1 && hk_now_ns() >= cs.started_ns + SETTLED_REGISTER_NS)
        hk_region_note_sampling(0, 1);
    /* The connection stays open until the process is gone: the daemon reads
     * this final flush when it sees the exit. */
    if (cs.registered || cs.pending)
        hk_region_flush(1);
    unlock();
}

void hk_shm_client_cost(uint64_t *steps, uint64_t *ns)
{
    *steps = cs.steps;
    *ns = cs.step_ns;
}

void hk_shm_client_describe(char *buf, int len)
{
    if (!buf || len <= 0)
        return;
    hk_text t = hk_text_on(buf, len);
    if (!cs.inited) {
        hk_text_str(&t, "shm client not initialised");
        return;
    }
    if (cs.disabled) {
        hk_text_str(&t, "baseline mode: daemon ignored");
        return;
    }
    if (cs.registered) {
        hk_text_str(&t, "registered with ");
        hk_text_str(&t, cs.socket);
        hk_text_str(&t, " (registration ");
        hk_text_u64(&t, cs.registrations);
        hk_text_str(&t, ")");
    } else if (cs.pending) {
        hk_text_str(&t, "registration sent to ");
        hk_text_str(&t, cs.socket);
        hk_text_str(&t, ", no reply yet");
    } else {
        hk_text_str(&t, cs.reg_state[0] ? cs.reg_state : "not registered");
    }
    const hkshm_header *h = hk_policy_header();
    hkshm_region *r = hk_region_get();
    if (h) {
        hk_text_str(&t, "; segment ");
        hk_text_str(&t, cs.name);
        hk_text_str(&t, ", generation ");
        hk_text_u64(&t, r ? atomic_load(&r->gen_seen) : atomic_load(&h->generation));
        if (r) {
            hk_text_str(&t, ", ");
            hk_text_u64(&t, r->sites_applied);
            hk_text_str(&t, " sites applied");
        }
        if (!atomic_load(&h->learning))
            hk_text_str(&t, ", daemon not learning");
    } else if (cs.peek_ok) {
        hk_text_str(&t, "; segment ");
        hk_text_str(&t, cs.name);
        hk_text_str(&t, ", generation ");
        hk_text_u64(&t, cs.peeked.generation);
        hk_text_str(&t, " (read, not mapped)");
        if (!cs.peeked.learning)
            hk_text_str(&t, ", daemon not learning");
    } else {
        hk_text_str(&t, "; ");
        hk_text_str(&t, cs.seg_state[0] ? cs.seg_state : "no segment");
    }
}
