#!/usr/bin/env python3
"""make_payload.py FILE MIB: realistic guest memory content for bench_suspend.sh.

Each 400 MiB holds 160 MiB of text (a tar of C headers and Python sources),
200 MiB of binaries (shared libraries and programs) and 40 MiB of random
bytes: the content issue 9 measured with.  The text and binary streams go
on from block to block (and start over when they run out, hundreds of MiB
apart, far beyond any codec's window).  Written to FILE.tmp, then renamed.
"""
import os
import subprocess
import sys

path, mib = sys.argv[1], int(sys.argv[2])
M = 1 << 20


def text():
    while True:
        p = subprocess.Popen("tar cf - /usr/include /usr/lib/python3* 2>/dev/null",
                             shell=True, stdout=subprocess.PIPE)
        yield from iter(lambda: p.stdout.read(M), b"")
        p.wait()


def binaries():
    while True:
        p = subprocess.Popen("cat /usr/lib/$(uname -m)-linux-gnu/*.so* /usr/bin/* 2>/dev/null",
                             shell=True, stdout=subprocess.PIPE)
        yield from iter(lambda: p.stdout.read(M), b"")
        p.wait()


def copy(gen, n, f):
    """n bytes of gen into f; what is left of the last piece is pushed back."""
    global left
    while n > 0:
        piece = left.pop(gen, None) or next(gen)
        f.write(piece[:n])
        if len(piece) > n:
            left[gen] = piece[n:]
        n -= len(piece)


left = {}
t, b = text(), binaries()
with open(path + ".tmp", "wb") as f:
    done = 0
    while done < mib:
        copy(t, 160 * M, f)
        copy(b, 200 * M, f)
        f.write(os.urandom(40 * M))
        done += 400
os.truncate(path + ".tmp", mib * M)
os.rename(path + ".tmp", path)
