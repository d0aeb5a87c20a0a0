#!/usr/bin/env python3
"""killtest.py — SIGKILL a vmm command at random moments and check what it leaves.

For one scenario (a vmm command and the home it starts from), many times:
restore the home, start the command, SIGKILL it after a random delay drawn
from a seeded generator, then check, as a user would:

  1. `vmm list` works (and, as every command but pull and clone does, runs
     the tmp GC and any recovery);
  2. every VM in vms/ and every image in the cache is exactly its old or its
     new version: the checksums of all its files equal those before the
     command or those after a run that was not killed (config.json is
     compared without its MAC address, which a clone or import draws at
     random); nothing else is visible (a directory in vms/ that is not a
     whole VM, a cached image that is not whole);
  3. the next command succeeds: the scenario's `finish` commands (the same
     command again, tolerant of it having happened) exit as allowed, and the
     home is then exactly the new version;
  4. leftovers are collected: after another `vmm list`, tmp/ is empty, no
     bundle holds `*.tmp-*` files, `snapshots/.new-*` or `.del-*`, and vms/
     holds no hidden entries; nothing `*.tmp*` is left beside an export.

With --power-loss, the home lives on a loop-mounted file system (--img,
--mnt, made by the caller) and the "kill" is a power cut: FS_IOC_SHUTDOWN
with NOLOGFLUSH (xfstests' godown: what the file system had not committed
is lost), then the command is killed, the file system unmounted and mounted
again (its journal replayed).  Besides the checks above, a command that had
already succeeded when the power went must find its new version there: what
it reported done must be durable.

A kill that lands after the command has exited is not counted; the loop
runs until --kills kills landed.  The seed is printed; --seed S replays a
run exactly (the delays, not the machine's timing).

  killtest.py --vmm BUILD/vmm --work DIR --scenario clone [--kills 50]
              [--seed N] [--registry HOST:PORT] [--xfail] [--list]

Exit 0 when every check held (or, with --xfail, whatever happened: the
findings are printed as KNOWN), 1 otherwise.  Prints "N passed, N failed".
"""
import argparse
import fcntl
import hashlib
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import time

MIB = 1 << 20


def log(*a):
    print(*a, flush=True)


# --- running vmm -----------------------------------------------------------------


class Vmm:
    def __init__(self, binary, home, registry):
        self.binary = binary
        self.home = home
        self.registry = registry
        self.env = dict(os.environ, VMM_HOME=home, CI="true",
                        ASAN_OPTIONS="detect_leaks=0:abort_on_error=0")
        self.env.pop("TART_HOME", None)
        self.sanitizer = []

    def argv(self, args):
        return [self.binary] + [a.replace("@REG@", self.registry or "") for a in args]

    def run(self, args, check=True):
        p = subprocess.run(self.argv(args), env=self.env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if re.search(r"AddressSanitizer|runtime error:|LeakSanitizer", p.stderr):
            self.sanitizer.append("vmm %s: %s" % (" ".join(args), p.stderr[:2000]))
        if check and p.returncode != 0:
            raise RuntimeError("vmm %s: exit %d: %s" % (" ".join(args), p.returncode,
                                                        p.stderr.strip()))
        return p

    def start(self, args):
        return subprocess.Popen(self.argv(args), env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


# --- what a home holds -------------------------------------------------------------


def file_digest(path, name):
    """SHA-256 of the logical content: holes and written zeros hash alike."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        data_hint = f.read(0)
        size = os.fstat(f.fileno()).st_size
        h.update(b"size %d\n" % size)
        if name == "config.json":
            text = f.read()
            try:
                cfg = json.loads(text)
                cfg.pop("macAddress", None)
                text = json.dumps(cfg, sort_keys=True).encode()
            except ValueError:
                pass  # a torn config hashes as it is: it will not match
            h.update(text)
            return h.hexdigest()
        fd = f.fileno()
        pos = 0
        zero = bytes(64 * 1024)
        while pos < size:
            try:
                d = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            e = os.lseek(fd, d, os.SEEK_HOLE)
            off = d
            while off < e:
                n = min(e - off, 64 * 1024)
                buf = os.pread(fd, n, off)
                if buf != zero[:len(buf)]:
                    h.update(b"%d:" % off)
                    h.update(buf)
                off += n
            pos = e
        del data_hint
    return h.hexdigest()


def tree(path):
    """{relative path: digest} of every regular file under path; hidden
    directories (snapshots/.new-*, unfinished work) are not part of a VM."""
    out = {}
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in sorted(files):
            p = os.path.join(root, n)
            if n == "vmm.sock" or not os.path.isfile(p) or os.path.islink(p):
                continue
            out[os.path.relpath(p, path)] = file_digest(p, n)
    return out


def is_vm(d):
    return all(os.path.exists(os.path.join(d, f))
               for f in ("config.json", "disk.img", "nvram.bin"))


def capture(home):
    """{"vm:<name>" / "img:<path>": files or "HALF"} for everything a user sees."""
    seen = {}
    vms = os.path.join(home, "vms")
    if os.path.isdir(vms):
        for n in sorted(os.listdir(vms)):
            if n.startswith("."):
                continue
            d = os.path.join(vms, n)
            seen["vm:" + n] = tree(d) if is_vm(d) else "HALF"
    ocis = os.path.join(home, "cache", "OCIs")
    for root, dirs, files in os.walk(ocis):
        for n in list(dirs):
            if n.startswith("sha256:"):
                d = os.path.join(root, n)
                dirs.remove(n)
                if os.path.islink(d):
                    continue
                seen["img:" + os.path.relpath(d, ocis)] = tree(d) if is_vm(d) else "HALF"
    return seen


def leftovers(home, extra_dirs):
    found = []
    tmp = os.path.join(home, "tmp")
    if os.path.isdir(tmp) and os.listdir(tmp):
        found += ["tmp/" + n for n in os.listdir(tmp)]
    vms = os.path.join(home, "vms")
    if os.path.isdir(vms):
        found += ["vms/" + n for n in os.listdir(vms) if n.startswith(".")]
        for root, dirs, files in os.walk(vms):
            rel = os.path.relpath(root, home)
            found += [rel + "/" + n for n in files if ".tmp-" in n]
            if os.path.basename(root) == "snapshots":
                found += [rel + "/" + n for n in dirs
                          if n.startswith(".new-") or n.startswith(".del-")]
    for d in extra_dirs:
        if os.path.isdir(d):
            found += [os.path.join(d, n) for n in os.listdir(d) if ".tmp" in n]
    return found


def compare(old, new, seen):
    """Violations of "each VM and image is its old or its new version"."""
    bad = []
    for k in sorted(set(old) | set(new) | set(seen)):
        v = seen.get(k)
        if v == "HALF":
            bad.append("%s is visible half-made" % k)
        elif v != old.get(k) and v != new.get(k):
            what = "missing" if v is None else "neither its old nor its new version"
            if v is not None:
                o, n = old.get(k) or {}, new.get(k) or {}
                diff = sorted(f for f in set(v) | set(o) | set(n)
                              if v.get(f) != o.get(f) and v.get(f) != n.get(f))
                if diff:
                    what += " (files %s)" % ", ".join(diff[:6])
                else:  # each file is one or the other: a mix of the two
                    olds = sorted(f for f in v if v.get(f) == o.get(f) != n.get(f))
                    news = sorted(f for f in v if v.get(f) == n.get(f) != o.get(f))
                    what += " but torn: old %s, new %s" % (", ".join(olds[:4]),
                                                           ", ".join(news[:4]))
            bad.append("%s is %s" % (k, what))
    return bad


# --- scenarios ----------------------------------------------------------------------
#
# setup: vmm commands and ("data", vm, seed) steps (random bytes into a VM's
# 64 MiB disk), ("shrink", vm) (disk.img cut to 64 MiB), run once into a
# template home.  cmd: what is killed.  finish: what must then succeed, with
# the exit codes allowed.  out: a directory outside the home the command
# writes to (checked for leftovers).

def vm_setup(*names):
    steps = []
    for i, n in enumerate(names):
        steps += [["create", n, "--linux", "--disk-size", "1"], ("shrink", n), ("data", n, i + 1)]
    return steps


SCENARIOS = {
    # durable=False: a clone is crash-consistent, not crash-durable (no
    # flushes, vm/ops.h): a power cut may lose a clone that was reported done
    "clone": dict(setup=vm_setup("a"), cmd=["clone", "a", "b"], durable=False,
                  finish=[(["clone", "a", "b", "--force"], {0})]),
    "pull": dict(setup=vm_setup("src") + [["push", "src", "@REG@/kill/pull:latest", "--insecure"],
                                          ["delete", "src"]],
                 cmd=["pull", "@REG@/kill/pull:latest", "--insecure"],
                 finish=[(["pull", "@REG@/kill/pull:latest", "--insecure"], {0})],
                 registry=True),
    "push": dict(setup=vm_setup("a"), cmd=["push", "a", "@REG@/kill/push:latest", "--insecure"],
                 finish=[(["push", "a", "@REG@/kill/push:latest", "--insecure"], {0})],
                 registry=True),
    "import": dict(setup=vm_setup("a") + [["export", "a", "@OUT@/a.tar.zst"], ["delete", "a"]],
                   cmd=["import", "@OUT@/a.tar.zst", "a"],
                   finish=[(["import", "@OUT@/a.tar.zst", "a", "--force"], {0})]),
    "export": dict(setup=vm_setup("a"), cmd=["export", "a", "@OUT@/a.tar.zst"],
                   finish=[(["export", "a", "@OUT@/a.tar.zst"], {0})], out=True),
    "snapshot-create": dict(setup=vm_setup("a"), cmd=["snapshot", "create", "a", "s"],
                            finish=[(["snapshot", "create", "a", "s"], {0, 1})]),
    "snapshot-restore": dict(setup=vm_setup("a") + [["snapshot", "create", "a", "s"],
                                                    ("data", "a", 9), ["set", "a", "--cpu", "3"]],
                             cmd=["snapshot", "restore", "a", "s"],
                             finish=[(["snapshot", "restore", "a", "s"], {0})]),
    "snapshot-delete": dict(setup=vm_setup("a") + [["snapshot", "create", "a", "s"]],
                            cmd=["snapshot", "delete", "a", "s"],
                            finish=[(["snapshot", "delete", "a", "s"], {0, 2})]),
    "set-disk-size": dict(setup=vm_setup("a"), cmd=["set", "a", "--disk-size", "2"],
                          finish=[(["set", "a", "--disk-size", "2"], {0})]),
    "rename-force": dict(setup=vm_setup("a", "b"), cmd=["rename", "a", "b", "--force"],
                         finish=[(["rename", "a", "b", "--force"], {0, 64})]),
    "prune": dict(setup=vm_setup("x", "y") + [
        ["push", "x", "@REG@/kill/prune-x:latest", "--insecure"],
        ["push", "y", "@REG@/kill/prune-y:latest", "--insecure"],
        ["pull", "@REG@/kill/prune-x:latest", "--insecure"],
        ["pull", "@REG@/kill/prune-y:latest", "--insecure"]],
        cmd=["prune", "--entries", "caches", "--older-than", "0"],
        finish=[(["prune", "--entries", "caches", "--older-than", "0"], {0})], registry=True),
}


def archive_content(vmm, path):
    """What an archive holds, as a VM imported from it (its bytes carry times)."""
    scratch = vmm.home + "-archive"
    if os.path.exists(scratch):
        shutil.rmtree(scratch)
    env = dict(vmm.env, VMM_HOME=scratch)
    p = subprocess.run([vmm.binary, "import", path, "x"], env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    content = tree(os.path.join(scratch, "vms", "x")) if p.returncode == 0 else \
        "unreadable: " + p.stderr.strip()[:200]
    shutil.rmtree(scratch, ignore_errors=True)
    return content


def outputs(vmm, out):
    return {f: archive_content(vmm, os.path.join(out, f)) for f in sorted(os.listdir(out))}


def subst(args, out):
    return [a.replace("@OUT@", out) for a in args]


def build_template(vmm, sc, out):
    for step in sc["setup"]:
        if isinstance(step, tuple) and step[0] == "shrink":
            os.truncate(os.path.join(vmm.home, "vms", step[1], "disk.img"), 64 * MIB)
        elif isinstance(step, tuple) and step[0] == "data":
            rng = random.Random(step[2])
            with open(os.path.join(vmm.home, "vms", step[1], "disk.img"), "r+b") as f:
                for off in (0, 5 * MIB, 40 * MIB):  # data, holes between
                    f.seek(off)
                    f.write(rng.randbytes(2 * MIB))
                f.seek(20 * MIB)
                f.write(b"text of a guest\n" * (MIB // 16))
        else:
            vmm.run(subst(step, out))


FS_IOC_SHUTDOWN = 0x8004587D  # _IOR('X', 125, __u32)
FS_SHUTDOWN_FLAGS_NOLOGFLUSH = 2


def power_cut(mnt):
    fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, FS_IOC_SHUTDOWN, struct.pack("I", FS_SHUTDOWN_FLAGS_NOLOGFLUSH))
    finally:
        os.close(fd)


def remount(img, mnt):
    for _ in range(50):
        if subprocess.run(["umount", mnt], stderr=subprocess.DEVNULL).returncode == 0:
            break
        time.sleep(0.1)
    subprocess.run(["mount", "-o", "loop", img, mnt], check=True)


def copy_home(src, dst):
    if os.path.exists(dst):
        shutil.rmtree(dst)
    subprocess.run(["cp", "-a", "--sparse=always", "--reflink=auto", src, dst], check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vmm", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--scenario")
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--registry")
    ap.add_argument("--xfail", action="store_true",
                    help="report findings as KNOWN and exit 0 (defects owned elsewhere)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--power-loss", action="store_true")
    ap.add_argument("--img", help="--power-loss: the file system image, mounted at --mnt")
    ap.add_argument("--mnt")
    a = ap.parse_args()
    if a.list:
        print(" ".join(SCENARIOS))
        return 0
    sc = SCENARIOS[a.scenario]
    if sc.get("registry") and not a.registry:
        log("SKIP %s: needs --registry" % a.scenario)
        return 77
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 32)
    log("killtest %s: seed %d (replay with --seed %d), %d kills" % (a.scenario, seed, seed,
                                                                   a.kills))
    rng = random.Random(seed)
    work = os.path.abspath(a.work)
    os.makedirs(work, exist_ok=True)
    template, home, out = (os.path.join(work, n) for n in ("template", "home", "out"))
    if a.power_loss:
        home, out = os.path.join(a.mnt, "home"), os.path.join(a.mnt, "out")
        log("  power cuts (FS_IOC_SHUTDOWN, NOLOGFLUSH) on %s" % a.mnt)
    for d in (template, home, out):
        if os.path.exists(d):
            shutil.rmtree(d)
    os.makedirs(out)
    os.makedirs(template)
    vmm = Vmm(os.path.abspath(a.vmm), template, a.registry)
    build_template(vmm, sc, out)
    vmm.run(["list"])  # the template's tmp GC done before the snapshot
    old = capture(template)
    cmd = subst(sc["cmd"], out)
    extra = [out] if sc.get("out") else []

    # the new version, and how long an undisturbed run takes
    durations = []
    for _ in range(3):
        copy_home(template, home)
        for f in os.listdir(out):
            if sc.get("out"):
                os.unlink(os.path.join(out, f))
        vmm.home = home
        vmm.env["VMM_HOME"] = home
        t = time.monotonic()
        vmm.run(cmd)
        durations.append(time.monotonic() - t)
    new = capture(home)
    new_out = outputs(vmm, out) if sc.get("out") else {}
    span = min(durations)
    log("  an undisturbed run takes %.3f s (the fastest of 3)" % span)

    passed = failed = kills = missed = 0
    findings = []
    t_end = time.monotonic() + max(60.0, a.kills * (span * 20 + 2))
    while kills < a.kills and time.monotonic() < t_end:
        copy_home(template, home)
        if sc.get("out"):
            for f in os.listdir(out):
                os.unlink(os.path.join(out, f))
        if a.power_loss:
            os.sync()  # the starting point is on the disk
        delay = rng.uniform(0, span * (1.3 if a.power_loss else 0.9))
        p = vmm.start(cmd)
        time.sleep(delay)
        alive = p.poll() is None
        done = not alive and p.returncode == 0
        if a.power_loss:
            power_cut(a.mnt)
        if alive:
            p.send_signal(signal.SIGKILL)
        p.wait()
        p.stderr.close()
        if a.power_loss:
            remount(a.img, a.mnt)
        elif not alive:
            missed += 1
            continue
        kills += 1
        problems = []
        if done and sc.get("durable", True) and compare(new, new, capture(home)):
            problems.append("the command had succeeded, but after the power cut its "
                            "result is gone: " + "; ".join(compare(new, new, capture(home))))
        r = vmm.run(["list"], check=False)
        if r.returncode != 0:
            problems.append("list failed after the kill: " + r.stderr.strip())
        problems += compare(old, new, capture(home))
        if sc.get("out"):
            for f in os.listdir(out):
                if ".tmp" not in f and archive_content(vmm, os.path.join(out, f)) != \
                        new_out.get(f):
                    problems.append("%s outside the home is half-written" % f)
        for args, allowed in sc["finish"]:
            r = vmm.run(subst(args, out), check=False)
            if r.returncode not in allowed:
                problems.append("next command `vmm %s` failed (exit %d): %s" %
                                (" ".join(args), r.returncode, r.stderr.strip()[:300]))
        vmm.run(["list"], check=False)
        after = capture(home)
        for k in sorted(set(after) | set(new)):
            if after.get(k) != new.get(k):
                problems.append("after the next command, %s is not the new version" % k)
        if sc.get("out") and outputs(vmm, out) != new_out:
            problems.append("after the next command, the export is not the new one")
        left = leftovers(home, extra)
        if left:
            problems.append("leftovers not collected: " + ", ".join(sorted(left)[:8]))
        if problems:
            failed += 1
            findings.append((kills, delay, problems))
            log("  kill %d at %.4f s: %s" % (kills, delay, "; ".join(problems)))
        else:
            passed += 1
    if a.power_loss:
        log("  %d power cuts" % kills)
    else:
        log("  %d kills landed, %d after the command had finished (not counted)" %
            (kills, missed))
    for s in vmm.sanitizer[:3]:
        log("  sanitizer: " + s)
    if kills < a.kills:
        log("  only %d of %d kills landed in the time allowed" % (kills, a.kills))
        failed += 1
    failed += len(vmm.sanitizer)
    if a.xfail and failed:
        log("  KNOWN: %d findings for %s, reported, not failed (--xfail)" % (failed, a.scenario))
        log("%d passed, 0 failed" % passed)
        return 0
    log("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
