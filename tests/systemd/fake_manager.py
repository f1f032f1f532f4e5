#!/usr/bin/env python3
"""TEST ONLY: a stand-in for systemd's service manager, for hakmemd's
sd_notify protocol.  Binds an AF_UNIX datagram socket with SO_PASSCRED,
runs the daemon with NOTIFY_SOCKET and WATCHDOG_USEC set, and records every
datagram with its sender pid and arrival time.

usage: fake_manager.py OUT.json WATCHDOG_USEC RUN_SECONDS [--hang-file F
       --hang-after S] -- DAEMON ARGS...
After RUN_SECONDS it sends SIGTERM and waits (up to 10 s) for the daemon to
exit.  With --hang-file, it creates F after S seconds (the daemon's test
hook then stops its main loop) and, at the end, kills the daemon with
SIGKILL instead of SIGTERM (a hung daemon would not stop on SIGTERM).
OUT.json: {"pid": N, "exit": code, "events": [[t, pid, "MSG"], ...],
           "hang_at": t or null, "hang_file_consumed": bool}"""
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time


def main():
    argv = sys.argv[1:]
    sep = argv.index("--")
    opts, cmd = argv[:sep], argv[sep + 1:]
    out, wd_usec, run_s = opts[0], int(opts[1]), float(opts[2])
    hang_file = hang_after = None
    if "--hang-file" in opts:
        hang_file = opts[opts.index("--hang-file") + 1]
        hang_after = float(opts[opts.index("--hang-after") + 1])

    d = tempfile.mkdtemp(prefix="hkfm.")
    path = os.path.join(d, "notify")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    s.bind(path)
    s.settimeout(0.05)
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC=str(wd_usec))
    env.pop("WATCHDOG_PID", None)
    if hang_file:
        env["HAKMEMD_TEST_HANG_FILE"] = hang_file
    p = subprocess.Popen(cmd, env=env)
    env_pid = p.pid
    t0 = time.monotonic()
    events, hang_at = [], None
    ucred = struct.calcsize("3i")

    def drain(until):
        while time.monotonic() < until:
            try:
                msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(ucred))
            except socket.timeout:
                if p.poll() is not None:
                    return
                continue
            pid = -1
            for lvl, typ, data in anc:
                if lvl == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", data[:ucred])[0]
            for line in msg.decode(errors="replace").splitlines():
                events.append([round(time.monotonic() - t0, 3), pid, line])

    if hang_file:
        drain(t0 + hang_after)
        open(hang_file, "w").close()
        hang_at = round(time.monotonic() - t0, 3)
    drain(t0 + run_s)
    if p.poll() is None:
        p.send_signal(signal.SIGKILL if hang_file else signal.SIGTERM)
    drain(time.monotonic() + 10)
    try:
        code = p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        code = p.wait()
    s.close()
    os.unlink(path)
    os.rmdir(d)
    consumed = bool(hang_file) and not os.path.exists(hang_file)
    with open(out, "w") as f:
        json.dump({"pid": env_pid, "exit": code, "events": events,
                   "hang_at": hang_at, "hang_file_consumed": consumed}, f)


main()
