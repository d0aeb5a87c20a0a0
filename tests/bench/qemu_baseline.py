#!/usr/bin/env python3
"""Baselines for bench_suspend.sh: suspend and resume the same guest with plain QEMU.

Run in a VM's bundle directory after `vmm` has written a state there: the
guest-defining QEMU arguments come from that state's header ("model"), so the
baselines run exactly the device model vmm runs.  Methods:
  (a) hypeman's standby: QMP stop + migrate "exec:cat > FILE" with QEMU's
      default parameters (128 MiB/s cap), polling query-migrate every 50 ms,
      then fsync FILE; resume with -incoming "exec:cat < FILE".
  (b) tuned raw: bandwidth raised, QEMU writes the raw stream into FILE
      through fd: (getfd), then fsync; resume with fd: of the file.
Prints one JSON object with every timing (seconds) and size (bytes).
"""
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time

RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
HEADER = sys.argv[1]


class QMP:
    def __init__(self, path, timeout=60):
        self.s = socket.socket(socket.AF_UNIX)
        end = time.time() + timeout
        while True:
            try:
                self.s.connect(path)
                break
            except OSError:
                if time.time() > end:
                    raise
                time.sleep(0.01)
        self.f = self.s.makefile("rb")
        self.f.readline()
        self.cmd("qmp_capabilities")

    def cmd(self, name, args=None, fd=None):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        data = (json.dumps(msg) + "\n").encode()
        if fd is None:
            self.s.sendall(data)
        else:
            self.s.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))])
        while True:
            r = json.loads(self.f.readline())
            if "event" in r:
                continue
            if "error" in r:
                raise RuntimeError(f"{name}: {r['error']}")
            return r.get("return")

    def wait_migration(self, interval):
        while True:
            st = self.cmd("query-migrate").get("status")
            if st == "completed":
                return
            if st in ("failed", "cancelled"):
                raise RuntimeError("migration " + st)
            time.sleep(interval)


def load_model():
    with open(HEADER, "rb") as f:
        d = f.read(16384)
    n = struct.unpack("<I", d[8:12])[0]
    return json.loads(d[12:12 + n])["model"]


def qemu_args(model, tag, serial):
    args = [shutil.which(model[0])]
    for a in model[1:]:
        args.append(f"file,id=console,path={serial}" if a.startswith("stdio,id=console") else a)
    return args + ["-display", "none", "-no-user-config",
                   "-qmp", f"unix:bench-{tag}.sock,server=on,wait=off", "-S"]


CHILDREN = []


def start(model, tag, extra=()):
    sock = f"bench-{tag}.sock"
    if os.path.exists(sock):
        os.unlink(sock)
    p = subprocess.Popen(qemu_args(model, tag, f"bench-{tag}.log") + list(extra),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    CHILDREN.append(p)
    return p, QMP(sock)


def wait_serial(path, needle, after=0, timeout=600):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with open(path, "rb") as f:
                data = f.read()
            if data.count(needle.encode()) > after:
                return
        except FileNotFoundError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{needle} not seen on {path}")


def fsync_file(path):
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def suspend_a(q, path):
    if os.path.exists(path):
        os.unlink(path)
    q.cmd("migrate-set-parameters", {"max-bandwidth": 134217728})  # QEMU's default
    t = time.monotonic()
    q.cmd("stop")
    q.cmd("migrate", {"uri": f"exec:cat > {path}"})
    q.wait_migration(0.05)
    fsync_file(path)
    return time.monotonic() - t


def suspend_b(q, path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    t = time.monotonic()
    q.cmd("stop")
    q.cmd("migrate-set-parameters", {"max-bandwidth": 1 << 40})
    q.cmd("getfd", {"fdname": "bench"}, fd=fd)
    q.cmd("migrate", {"uri": "fd:bench"})
    q.wait_migration(0.01)
    os.fsync(fd)
    dt = time.monotonic() - t
    os.close(fd)
    return dt


def resume(model, method, path):
    t = time.monotonic()
    p, q = start(model, "resume", ["-incoming", "defer"])
    if method == "a":
        q.cmd("migrate-incoming", {"uri": f"exec:cat < {path}"})
        q.wait_migration(0.05)
    else:
        fd = os.open(path, os.O_RDONLY)
        q.cmd("getfd", {"fdname": "bench"}, fd=fd)
        os.close(fd)
        q.cmd("migrate-incoming", {"uri": "fd:bench"})
        q.wait_migration(0.01)
    q.cmd("cont")
    dt = time.monotonic() - t
    q.cmd("quit")
    p.wait()
    return dt


def main():
    model = load_model()
    p, q = start(model, "src")
    q.cmd("cont")
    wait_serial("bench-src.log", "VMMTEST READY")
    wait_serial("bench-src.log", "VMMTEST TICK", after=2)
    out = {"a_suspend": [], "b_suspend": [], "a_resume": [], "b_resume": []}
    for _ in range(RUNS):
        for m, fn in (("a", suspend_a), ("b", suspend_b)):
            path = f"bench-{m}.raw"
            out[f"{m}_suspend"].append(fn(q, path))
            out[f"{m}_size"] = os.path.getsize(path)
            # the source stays paused (its disk released) while another QEMU resumes
            out[f"{m}_resume"].append(resume(model, m, path))
            q.cmd("cont")
    q.cmd("quit")
    p.wait()
    for f in ("bench-a.raw", "bench-b.raw"):
        os.unlink(f)
    print(json.dumps(out))


if __name__ == "__main__":
    try:
        main()
    finally:
        for c in CHILDREN:
            if c.poll() is None:
                c.kill()
                c.wait()
