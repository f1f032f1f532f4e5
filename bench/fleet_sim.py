#!/usr/bin/python3
"""The measuring half of bench/fleet_sim.sh: given a running etcd cluster
and N running hakmemd hosts of one fleet, seeds each host with learned
sites, measures a steady window and how fast a newly settled site
propagates, and writes the README piece.

usage: fleet_sim.py --hosts-file F --members-file F --tls DIR --ctl HAKMEMCTL
                    --sites K --seconds W --sync-ms S --probes P --out DIR --command CMD

--hosts-file: a line per host, "ID PID SOCKET"; --members-file: a line per
etcd member, "CLIENT_URL PID"; --tls DIR holds ca.crt, host.crt, host.key.

The workload.  Every host runs the same binaries, so all share the same K
site keys (root's), each site with its sizes known (256 KiB to 1 MiB: the
three arms that matter for it pulled) and settled on the same arm, with
pulls and rewards of the host's own.  Seeding is `hakmemctl import` of a
policy per host.  In the steady window each host's counts move as a busy
host's do: once per refresh period (HKD_FLEET_REFRESH_SYNCS syncs) every
one of its sites gains a pull of its arm (`hakmemctl import` of a delta,
staggered over the hosts), so every host rewrites its shards about once a
refresh period, as the README's arithmetic assumes; choices never change.
Seeding spreads the hosts over a refresh period, so their rewrites are
not in step, and the window is a whole number of refresh periods.
Propagation: after the window, once no host has published anything for
two syncs, a site no host knows is imported, settled, into one host; every
other host is polled until its publication's generation moves (the
fleet's apply makes the site's record and publishes its arm in one step,
and nothing else moves in a quiet fleet), and at the end every host must
publish the arm the source settled on, from the fleet's pulls alone."""
import argparse
import concurrent.futures as cf
import datetime
import json
import os
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ctl"))
import gen_policy as gp  # noqa: E402

REFRESH_SYNCS = 12                      # daemon/fleet.h HKD_FLEET_REFRESH_SYNCS
SIZE_LO, SIZE_HI = 18, 19               # 256 KiB .. 1 MiB: arms 0, 4 and 6 differ
PULLED = (0, 4, 6)
SITE_BYTES = 33 + 12 * len(PULLED)      # daemon/fleet_codec.h
HEADER_BYTES = 20
SITES_PER_MODULE = 512
DESIGN_SITES = 4096                     # the README's design point, sites a host
PROBE_MODULE = 0x5F1EE7FF00000000
ETCD_METRICS = ("etcd_mvcc_put_total", "etcd_mvcc_range_total", "etcd_network_client_grpc_received_bytes_total",
                 "etcd_network_client_grpc_sent_bytes_total", "etcd_disk_wal_fsync_duration_seconds_count",
                 "etcd_network_peer_sent_bytes_total", "etcd_mvcc_db_total_size_in_bytes")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"fleet-sim: {msg}", file=sys.stderr, flush=True)


# ---- the policies: hand-encoded protobuf (tests/ctl/gen_policy.py's encoder) ----

def site_key(i):
    return 0x5F1EE70000000000 | (i // SITES_PER_MODULE), 0x1000 + (i % SITES_PER_MODULE) * 32


def site_msg(module_hash, offset, module, arms, best):
    """A SiteState: arms is [(arm index, pulls, reward sum)]."""
    out = gp.f_fixed64(1, module_hash) + gp.f_fixed64(2, offset) + gp.f_bytes(3, module)
    for a, pulls, rsum in arms:
        out += gp.f_bytes(4, gp.f_bytes(1, gp.ARMS[a][0].encode()) + gp.f_varint(2, pulls) + gp.f_double(3, rsum))
    out += gp.f_bytes(5, gp.ARMS[best][0].encode()) + gp.f_double(7, 50.0)
    return out + gp.f_varint(11, 1) + gp.f_varint(12, SIZE_LO) + gp.f_varint(13, SIZE_HI)


def policy(sites):
    head = gp.f_bytes(1, b"hakmem.policy.v1") + gp.f_bytes(2, b"fleet-sim") + gp.f_varint(4, 1)
    return head + b"".join(gp.f_bytes(5, s) for s in sites)


def host_means(h, i):
    """The host's mean reward per pulled arm of site i, multiples of 1/64
    (exact in the daemon's float means); the best arm is the same on every
    host and far ahead of the others."""
    best = PULLED[i % len(PULLED)]
    return best, {a: ((44 + (h + i) % 5) if a == best else (18 + (h * 3 + i + a) % 9)) / 64 for a in PULLED}


def write_policies(tmp, hosts, k):
    """Per host: seed.pol (its K sites) and delta.pol (a pull more of each
    site's arm, at its mean: the means and the choice stay)."""
    module = [f"/usr/lib/fleet-sim/libmod{m:03d}.so".encode() for m in range(k // SITES_PER_MODULE + 1)]
    for h, host in enumerate(hosts):
        seed, delta = [], []
        for i in range(k):
            mh, off = site_key(i)
            best, mean = host_means(h, i)
            pulls = {a: (200 + (h * 7 + i) % 50 if a == best else 20 + (h + i + a) % 10) for a in PULLED}
            mod = module[i // SITES_PER_MODULE]
            seed.append(site_msg(mh, off, mod, [(a, pulls[a], pulls[a] * mean[a]) for a in PULLED], best))
            delta.append(site_msg(mh, off, mod, [(best, 1, mean[best])], best))
        host["seed"] = os.path.join(tmp, f"{host['id']}.seed.pol")
        host["delta"] = os.path.join(tmp, f"{host['id']}.delta.pol")
        for path, sites in ((host["seed"], seed), (host["delta"], delta)):
            with open(path, "wb") as f:
                f.write(policy(sites))


# ---- talking to the hosts and the members ----

class Fleet:
    def __init__(self, a):
        self.a = a
        self.hosts = []
        with open(a.hosts_file) as f:
            for line in f:
                hid, pid, sock = line.split()
                self.hosts.append({"id": hid, "pid": int(pid), "socket": sock})
        self.members = []
        with open(a.members_file) as f:
            for line in f:
                url, pid = line.split()
                self.members.append({"url": url, "pid": int(pid)})
        self.tls = ssl.create_default_context(cafile=os.path.join(a.tls, "ca.crt"))
        self.tls.load_cert_chain(os.path.join(a.tls, "host.crt"), os.path.join(a.tls, "host.key"))
        self.pool = cf.ThreadPoolExecutor(max_workers=4)

    def ctl(self, host, *args, timeout=30):
        r = subprocess.run([self.a.ctl, "--socket", host["socket"], *args], capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"hakmemctl {' '.join(args)} on host {host['id']}: {r.stderr.strip()[:300]}")
        return r.stdout

    def ctl_json(self, host, *args, timeout=30):
        return json.loads(self.ctl(host, "--json", *args, timeout=timeout))

    def on_all(self, fn, hosts=None):
        return list(self.pool.map(fn, hosts if hosts is not None else self.hosts))

    def member_metrics(self, m):
        with urllib.request.urlopen(m["url"] + "/metrics", context=self.tls, timeout=10) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith("#") or not line:
                continue
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in ETCD_METRICS:
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        return out

    def trouble(self):
        """Lines the hosts logged of a lease that expired (etcd too slow to
        keep it alive) and of etcd unreachable, all hosts together."""
        n = {"expired": 0, "unreachable": 0}
        for h in self.hosts:
            with open(os.path.join(self.a.tmp, h["id"] + ".log"), errors="replace") as f:
                for line in f:
                    n["expired"] += "fleet: lease" in line and "expired" in line
                    n["unreachable"] += "fleet: etcd unreachable" in line
        return n

    def etcdctl(self, *args):
        tls = ["--cacert", os.path.join(self.a.tls, "ca.crt"), "--cert", os.path.join(self.a.tls, "host.crt"),
               "--key", os.path.join(self.a.tls, "host.key")]
        r = subprocess.run(["etcdctl", "--endpoints", ",".join(m["url"] for m in self.members), *tls,
                            "--dial-timeout", "3s", "--command-timeout", "20s", *args],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(args)}: {r.stderr.strip()[:300]}")
        return r.stdout


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def snapshot(fl):
    """Counters at one moment: etcd's (each member's), the hosts' own and
    CPU seconds."""
    s = {"t": time.monotonic(), "load": loadavg()}
    s["members"] = [fl.member_metrics(m) for m in fl.members]
    s["hosts"] = fl.on_all(lambda h: fl.ctl_json(h, "fleet"))
    s["trouble"] = fl.trouble()
    s["cpu_members"] = sum(cpu_s(m["pid"]) for m in fl.members)
    s["cpu_hosts"] = sum(cpu_s(h["pid"]) for h in fl.hosts)
    return s


def member_delta(a, b, name, how):
    d = [y.get(name, 0.0) - x.get(name, 0.0) for x, y in zip(a["members"], b["members"])]
    return max(d) if how == "max" else sum(d)


# ---- the phases ----

def seed(fl, period):
    """Imports each host's sites, the hosts spread over a refresh period
    (hosts of a fleet start and learn at times of their own, so their
    rewrites are not in step)."""
    t0 = time.monotonic()
    for i, h in enumerate(fl.hosts):
        time.sleep(max(0.0, t0 + i * period / len(fl.hosts) - time.monotonic()))
        fl.ctl(h, "import", h["seed"], timeout=120)
    return time.monotonic() - t0


def wait_warm(fl, k, limit):
    """Until every host is up and reads every other host's K sites."""
    n = len(fl.hosts)
    end = time.monotonic() + limit
    pending = list(fl.hosts)
    while pending:
        def warm(h):
            j = fl.ctl_json(h, "fleet")
            return j["up"] and j["own_sites"] >= k and len(j["hosts"]) == n - 1 and \
                all(o["sites"] >= k for o in j["hosts"])
        done = fl.on_all(warm, pending)
        pending = [h for h, ok in zip(pending, done) if not ok]
        if pending and time.monotonic() > end:
            j = fl.ctl_json(pending[0], "fleet")
            raise RuntimeError(f"{len(pending)} hosts not warm after {limit} s; host {pending[0]['id']}: up "
                               f"{j['up']}, {len(j['hosts'])} other hosts, {j['last_error']!r}")
        if pending:
            time.sleep(0.5)


def churn(fl, period, stop, errors):
    """Each host's counts move once a period, the hosts staggered."""
    n = len(fl.hosts)
    start = time.monotonic()
    i = 0
    while not stop.is_set():
        due = start + i * period / n
        if stop.wait(max(0.0, due - time.monotonic())):
            break
        try:
            fl.ctl(fl.hosts[i % n], "import", fl.hosts[i % n]["delta"], timeout=60)
        except Exception as e:  # noqa: BLE001 - reported after the window
            errors.append(str(e))
        i += 1


def window(fl, seconds, period):
    """The counts move from now on; after a refresh period (every host's
    rewrites in step with them) the counters are taken over `seconds`."""
    stop, errors = threading.Event(), []
    t = threading.Thread(target=churn, args=(fl, period, stop, errors), daemon=True)
    t.start()
    try:
        time.sleep(period)
        a = snapshot(fl)
        time.sleep(seconds)
        b = snapshot(fl)
    finally:
        stop.set()
        t.join(120)
    if errors:
        raise RuntimeError(f"{len(errors)} delta imports failed: {errors[0]}")
    return a, b


def generations(fl, hosts):
    return dict(zip((h["id"] for h in hosts), fl.on_all(lambda h: fl.ctl_json(h, "status")["generation"], hosts)))


def wait_quiet(fl, sync_s, limit):
    """Until no host has published anything for two syncs: then a new
    publication is the probe's."""
    end = time.monotonic() + limit
    before = generations(fl, fl.hosts)
    while True:
        time.sleep(2 * sync_s)
        now = generations(fl, fl.hosts)
        if now == before:
            return now
        if time.monotonic() > end:
            moved = [h for h in now if now[h] != before[h]]
            raise RuntimeError(f"hosts {' '.join(moved[:5])} still publish after {limit} s without a change")
        before = now


def probe(fl, n, src, base, limit):
    """Imports a settled site no host knows into src; the seconds until each
    other host has published a new table ({host id: seconds}; the fleet's
    apply publishes the new site's arm the moment it makes its record, and
    nothing else moves in a quiet fleet) and the poll round's length."""
    others = [h for h in fl.hosts if h is not src]
    mh, off = PROBE_MODULE | n, 0x2000
    best = PULLED[n % len(PULLED)]
    arms = [(a, 300 if a == best else 30, (300 if a == best else 30) * (0.75 if a == best else 0.25)) for a in PULLED]
    path = os.path.join(fl.a.tmp, f"probe{n}.pol")
    with open(path, "wb") as f:
        f.write(policy([site_msg(mh, off, b"/usr/lib/fleet-sim/probe.so", arms, best)]))
    fl.ctl(src, "import", path)
    t0 = time.monotonic()
    seen, rounds = {}, []
    while len(seen) < len(others):
        r0 = time.monotonic()
        pending = [h for h in others if h["id"] not in seen]
        gens = fl.on_all(lambda h: (fl.ctl_json(h, "status")["generation"], time.monotonic()), pending)
        for h, (gen, at) in zip(pending, gens):
            if gen != base[h["id"]]:
                seen[h["id"]] = at - t0
        rounds.append(time.monotonic() - r0)
        if len(seen) < len(others):
            if time.monotonic() - t0 > limit:
                raise RuntimeError(f"site {mh:x}:{off:x} from host {src['id']} reached {len(seen)} of "
                                   f"{len(others)} hosts in {limit} s")
            time.sleep(0.02)
    return {"key": f"{mh:x}:{off:x}", "arm": best, "src": src["id"], "seen": seen,
            "poll_s": statistics.median(rounds)}


def check_published(fl, p):
    """Every host but the source publishes the probe site's arm from the
    fleet's pulls alone."""
    _, large, slots, thp = gp.ARMS[p["arm"]]
    want = json.dumps({"large_threshold": large, "bigcache_slots": slots, "thp": bool(thp)})
    bad = []

    def one(h):
        s = next((s for s in fl.ctl_json(h, "sites", "--top", "0", timeout=60)["sites"] if s["site"] == p["key"]), {})
        t = s.get("thresholds") or {}
        got = json.dumps({k: t.get(k) for k in ("large_threshold", "bigcache_slots", "thp")})
        if h["id"] != p["src"] and not (got == want and s.get("own_pulls") == 0 and s.get("fleet_pulls", 0) > 0):
            bad.append(f"{h['id']}: {json.dumps(s)[:300]}")
    fl.on_all(one)
    if bad:
        raise RuntimeError(f"{len(bad)} hosts do not publish the probe's arm {want}; {bad[0]}")


# ---- the figures ----

def shards_of(k):
    """How many shards a host's K sites take (daemon/fleet.c: a power of
    two, each near 256 KiB)."""
    shards = 1
    while shards * (256 << 10) < k * SITE_BYTES:
        shards *= 2
    return shards


def paper(n, k, sync_ms):
    """The README's arithmetic for this fleet: a host's shards hold its K
    sites, each host puts them once a refresh period and every other host
    reads them."""
    per_host = k * SITE_BYTES + HEADER_BYTES * shards_of(k)
    period = REFRESH_SYNCS * sync_ms / 1000
    return {"live": n * per_host, "write_Bps": n * per_host / period, "read_Bps": n * (n - 1) * per_host / period,
            "puts": n * shards_of(k) / period}


def human(b):
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if b >= div:
            return f"{b / div:.3g} {unit}"
    return f"{b:.0f} B"


def figures(fl, a, b, status, k, sync_ms):
    dt = b["t"] - a["t"]
    n = len(fl.hosts)
    hw = sum(y["bytes_written"] - x["bytes_written"] for x, y in zip(a["hosts"], b["hosts"]))
    hk = sum(y["keys_written"] - x["keys_written"] for x, y in zip(a["hosts"], b["hosts"]))
    f = {"seconds": dt, "host_puts": hk / dt, "host_write_Bps": hw / dt,
         "etcd_puts": member_delta(a, b, "etcd_mvcc_put_total", "max") / dt,
         "etcd_ranges": member_delta(a, b, "etcd_mvcc_range_total", "sum") / dt,
         "grpc_in_Bps": member_delta(a, b, "etcd_network_client_grpc_received_bytes_total", "sum") / dt,
         "grpc_out_Bps": member_delta(a, b, "etcd_network_client_grpc_sent_bytes_total", "sum") / dt,
         "fsyncs": member_delta(a, b, "etcd_disk_wal_fsync_duration_seconds_count", "sum") / dt,
         "peer_Bps": member_delta(a, b, "etcd_network_peer_sent_bytes_total", "sum") / dt,
         "db_growth_Bph": member_delta(a, b, "etcd_mvcc_db_total_size_in_bytes", "max") / dt * 3600,
         "cpu_members": (b["cpu_members"] - a["cpu_members"]) / dt, "cpu_hosts": (b["cpu_hosts"] - a["cpu_hosts"]) / dt,
         "db": max(int(s["Status"]["dbSize"]) for s in status),
         "db_in_use": max(int(s["Status"].get("dbSizeInUse", 0)) for s in status),
         "leases_expired": b["trouble"]["expired"] - a["trouble"]["expired"],
         "unreachable": b["trouble"]["unreachable"] - a["trouble"]["unreachable"],
         "keys": None, "load": a["load"], "load_end": b["load"], "own_shards": b["hosts"][0]["own_shards"]}
    f["paper"] = paper(n, k, sync_ms)
    return f


def propagation(f, probes):
    med = [statistics.median(p["seen"].values()) for p in probes]
    f["prop_median"], f["prop_max"] = statistics.median(med), max(max(p["seen"].values()) for p in probes)
    f["prop_poll"] = statistics.median(p["poll_s"] for p in probes)


def section(f, n, k, sync_ms, probes, command):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    p = f["paper"]
    cores = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    L = [f"<sub>Generated by `{command}` on {now} · {cores} cores, {mem:.0f} GiB · load average {f['load']} at "
         f"the window's start, {f['load_end']} at its end · {n} `hakmemd` hosts (one process each) and a "
         f"3-member etcd cluster with TLS on this one machine · {k} sites a host, `--fleet-sync {sync_ms}` · "
         f"a steady window of {f['seconds']:.0f} s, then {len(probes)} sites propagated.</sub>", "",
         "| figure | measured | the arithmetic above, for this fleet |", "|---|---:|---:|",
         f"| puts a second (hosts' `keys_written`; etcd's `etcd_mvcc_put_total`) | {f['host_puts']:.2f}; "
         f"{f['etcd_puts']:.2f} | {p['puts']:.2f} |",
         f"| bytes written a second (hosts' `bytes_written`) | {human(f['host_write_Bps'])}/s | "
         f"{human(p['write_Bps'])}/s |",
         f"| bytes the members received / sent to clients a second (gRPC) | {human(f['grpc_in_Bps'])}/s / "
         f"{human(f['grpc_out_Bps'])}/s | — / {human(p['read_Bps'])}/s read |",
         f"| ranges a second, all members; WAL fsyncs a second; peer traffic | {f['etcd_ranges']:.1f}; "
         f"{f['fsyncs']:.1f}; {human(f['peer_Bps'])}/s | — |",
         f"| etcd database (`dbSize` / `dbSizeInUse`, no compaction; keys) | {human(f['db'])} / "
         f"{human(f['db_in_use'])}; {f['keys']} | {human(p['live'])} live; {n * shards_of(k)} |",
         f"| etcd database's growth, no compaction (all history kept) | {human(f['db_growth_Bph'])} an hour | "
         f"{human(p['write_Bps'] * 3600)} an hour written |",
         f"| in the window: hosts' leases that expired / times a host logged `etcd unreachable` | "
         f"{f['leases_expired']} / "
         f"{f['unreachable']} | 0 / 0 |",
         f"| CPU: the 3 members / the {n} hosts | {f['cpu_members']:.2f} / {f['cpu_hosts']:.2f} cores | — |",
         f"| a site settled on one host, until every other host publishes its arm: median over hosts "
         f"(median of {len(probes)} sites) / slowest host of all | {f['prop_median']:.1f} s / {f['prop_max']:.1f} s | "
         f"up to 2 syncs ({2 * sync_ms / 1000:g} s) |", ""]
    ratio = f["host_write_Bps"] / p["write_Bps"] if p["write_Bps"] else 0
    L.append(f"Writes came to {ratio:.2f} of the arithmetic's for these {n} hosts of {k} sites (each host rewrote "
             f"its {f['own_shards']} shard(s) about once a refresh period, {REFRESH_SYNCS} syncs); what the "
             f"members sent to clients, {human(f['grpc_out_Bps'])}/s, is the reading of every other host's "
             f"changed shards the arithmetic puts at {human(p['read_Bps'])}/s. Propagation was polled (each "
             f"host's publication generation, a poll round {f['prop_poll']:.2f} s), so it is late by up to a round: a "
             f"site waits for its host's next sync and then for each reader's, up to two syncs and the requests.")
    if k < DESIGN_SITES and f["grpc_out_Bps"] >= 1e6:   # reading then takes most of the CPU
        per = (f["cpu_members"] + f["cpu_hosts"]) / (f["grpc_out_Bps"] / 1e6)
        d = paper(n, DESIGN_SITES, sync_ms)
        L.append(f"Reads grow as the hosts squared times the sites: at the design point of {DESIGN_SITES:,} sites "
                 f"these {n} hosts would read {human(d['read_Bps'])}/s, which at this run's CPU per byte read "
                 f"(members and hosts together, {per:.3f} cores per MB/s) is about {per * d['read_Bps'] / 1e6:.1f} "
                 f"cores on this machine of {os.cpu_count()}.")
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser()
    for o in ("hosts-file", "members-file", "tls", "ctl", "out", "command", "tmp"):
        ap.add_argument("--" + o, required=True)
    for o in ("sites", "seconds", "sync-ms", "probes"):
        ap.add_argument("--" + o, type=int, required=True)
    a = ap.parse_args()
    fl = Fleet(a)
    n, k = len(fl.hosts), a.sites
    period = REFRESH_SYNCS * a.sync_ms / 1000
    seconds = max(1, -(-a.seconds // period)) * period
    log(f"{n} hosts, {k} sites each: writing their policies")
    write_policies(a.tmp, fl.hosts, k)
    log(f"seeded the hosts over {seed(fl, period):.1f} s; waiting until each reads all the others")
    t0 = time.monotonic()
    wait_warm(fl, k, max(30, n * 6))
    log(f"warm after {time.monotonic() - t0:.1f} s; counts moving for a refresh period ({period:g} s), then "
        f"a window of {seconds:g} s")
    pa, pb = window(fl, seconds, period)
    f = figures(fl, pa, pb, json.loads(fl.etcdctl("endpoint", "status", "-w", "json")), k, a.sync_ms)
    f["keys"] = int(json.loads(fl.etcdctl("get", "--prefix", "/hakmem/", "--keys-only", "-w", "json"))["count"])
    os.makedirs(os.path.join(a.out, "sections"), exist_ok=True)
    out = {"hosts": n, "sites": k, "sync_ms": a.sync_ms, "figures": f, "probes": []}

    def save():
        with open(os.path.join(a.out, "figures.json"), "w") as fh:
            json.dump(out, fh, indent=1)
    save()   # the window's figures stand even when propagation fails
    log(f"window: {f['host_puts']:.2f} puts/s, {human(f['host_write_Bps'])}/s written, {human(f['grpc_out_Bps'])}/s "
        f"sent by the members, CPU {f['cpu_members']:.2f} + {f['cpu_hosts']:.2f} cores, {f['leases_expired']} "
        f"leases expired, {f['unreachable']} times etcd lost")
    for i in range(a.probes):
        src = fl.hosts[(i * 37) % n]
        base = wait_quiet(fl, a.sync_ms / 1000, max(60, 4 * period))
        p = probe(fl, i, src, base, max(60, 10 * a.sync_ms / 1000))
        log(f"site {p['key']} from host {src['id']}: every other host in {max(p['seen'].values()):.2f} s")
        out["probes"].append(p)
        save()
    check_published(fl, out["probes"][-1])
    propagation(f, out["probes"])
    save()
    with open(os.path.join(a.out, "sections", "fleet-sim.md"), "w") as fh:
        fh.write(section(f, n, k, a.sync_ms, out["probes"], a.command))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, OSError, subprocess.TimeoutExpired, KeyError, ValueError) as e:
        log(str(e))
        sys.exit(1)
