#!/usr/bin/env python3
"""The baseline of bench_suspend.sh: the same guest suspended and resumed by plain QEMU.

Usage: qemu_baseline.py STATE_HEADER WORKDIR
Runs QEMU with the guest-defining arguments from a vmm state's header (its
"model": the same machine, devices, kernel and disk as vmm runs), its RAM as
QEMU allocates it by default, in WORKDIR (which holds kernel, initramfs and
disk.img, and gets the saved stream).  Reads one command per line on stdin and
answers one line on stdout:

  boot       start the guest, wait until it has filled its memory and ticks
             -> "ok"
  suspend    the tuned raw save: QMP stop, max-bandwidth raised, migrate into
             a file through fd:, fsync, quit, wait for QEMU's exit
             -> "<seconds> <bytes of the saved stream>"
  resume     QEMU started with -incoming defer, migrate-incoming from the
             file through fd:, cont -> "<seconds>"; then (untimed) wait until
             the guest ticks again
  quit       stop the guest and exit

The timings cover what `vmm suspend` and `vmm run` cover: from the request
until the state is durable and QEMU has exited, and from starting QEMU until
the guest runs.
"""
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time

HEADER, WORK = sys.argv[1], sys.argv[2]
STREAM = os.path.join(WORK, "raw.state")
LOG = os.path.join(WORK, "console.log")


class QMP:
    def __init__(self, path, timeout=60):
        self.s = socket.socket(socket.AF_UNIX)
        end = time.monotonic() + timeout
        while True:
            try:
                self.s.connect(path)
                break
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.002)
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
            line = self.f.readline()
            if not line:
                raise RuntimeError(f"{name}: QEMU closed QMP")
            r = json.loads(line)
            if "event" in r:
                continue
            if "error" in r:
                raise RuntimeError(f"{name}: {r['error']}")
            return r.get("return")

    def wait_migration(self):
        while True:
            st = self.cmd("query-migrate").get("status")
            if st == "completed":
                return
            if st in ("failed", "cancelled"):
                raise RuntimeError("migration " + st)
            time.sleep(0.005)


def load_model():
    with open(HEADER, "rb") as f:
        d = f.read(16384)
    n = struct.unpack("<I", d[8:12])[0]
    return json.loads(d[12:12 + n])["model"]


MODEL = load_model()
SOCK = os.path.join(WORK, "qmp.sock")


def start(incoming):
    args = [shutil.which(MODEL[0])]
    for a in MODEL[1:]:
        if a.startswith("stdio,id=console"):
            a = f"file,id=console,path={LOG}"
        elif a.startswith("tap,id=net0"):
            # the network's backend is not in the saved state: user-mode NAT,
            # restricted, makes no interface on the host (no qemu-ifup)
            a = "user,id=net0,restrict=on"
        args.append(a)
    args += ["-display", "none", "-no-user-config", "-qmp", f"unix:{SOCK},server=on,wait=off",
             "-S"]
    if incoming:
        args += ["-incoming", "defer"]
    if os.path.exists(SOCK):
        os.unlink(SOCK)
    p = subprocess.Popen(args, cwd=WORK, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    CHILD[:] = [p]
    return p, QMP(SOCK)


def count(needle):
    try:
        with open(LOG, "rb") as f:
            return f.read().count(needle.encode())
    except FileNotFoundError:
        return 0


def wait_serial(needle, n, timeout=1800):
    end = time.monotonic() + timeout
    while count(needle) < n:
        if time.monotonic() > end:
            raise RuntimeError(f"{needle} not seen x{n}")
        time.sleep(0.1)


CHILD = []


def main():
    proc = q = None
    for line in sys.stdin:
        c = line.strip()
        if c == "boot":
            proc, q = start(False)
            q.cmd("cont")
            wait_serial("VMMTEST READY", 1)
            wait_serial("VMMTEST TICK", count("VMMTEST TICK") + 2)
            out = "ok"
        elif c == "suspend":
            fd = os.open(STREAM, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            t = time.monotonic()
            q.cmd("stop")
            q.cmd("migrate-set-parameters", {"max-bandwidth": 1 << 40})
            q.cmd("getfd", {"fdname": "b"}, fd=fd)
            q.cmd("migrate", {"uri": "fd:b"})
            q.wait_migration()
            os.fsync(fd)
            q.cmd("quit")
            proc.wait()
            dt = time.monotonic() - t
            os.close(fd)
            out = f"{dt:.6f} {os.path.getsize(STREAM)}"
        elif c == "resume":
            ticks = count("VMMTEST TICK")
            t = time.monotonic()
            proc, q = start(True)
            fd = os.open(STREAM, os.O_RDONLY)
            q.cmd("getfd", {"fdname": "b"}, fd=fd)
            os.close(fd)
            q.cmd("migrate-incoming", {"uri": "fd:b"})
            q.wait_migration()
            q.cmd("cont")
            dt = time.monotonic() - t
            wait_serial("VMMTEST TICK", ticks + 2, 120)
            out = f"{dt:.6f}"
        elif c == "quit":
            break
        else:
            out = "error unknown command"
        print(out, flush=True)
    if proc and proc.poll() is None:
        try:
            q.cmd("quit")
        except Exception:
            proc.kill()
        proc.wait()
    if os.path.exists(STREAM):
        os.unlink(STREAM)


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in CHILD:
            if p.poll() is None:
                p.kill()
                p.wait()
