#!/usr/bin/env bash
# Clone benchmark: a VM with a 64 GiB disk holding 1 GiB of random data at
# scattered offsets, cloned by `vmm clone` and by cp in the same run,
# alternating, on loop-mounted file systems made here:
#   btrfs: vmm clone vs cp -r --reflink=always of the bundle
#          targets: median under 20 ms, at most 1.5x cp
#   ext4:  vmm clone vs cp -r --sparse=always of the bundle, and vs the same cp
#          with its data written back, the work vmm does (a clone's data is
#          on the device before the rename that shows it)
#          targets: at most 1.0x cp with write-back (plain cp's ratio is
#          shown), clone allocates no more than the source
# Prints medians, ratios and each target as met/missed; exits 1 if one is
# missed.  Env: VMM (binary), BENCH_RUNS_BTRFS (default 21),
# BENCH_RUNS_EXT4 (default 11).  Needs root (losetup, mount).
set -u
cd "$(dirname "$0")/../.."
VMM=${VMM:-$PWD/build/vmm}
RUNS_BTRFS=${BENCH_RUNS_BTRFS:-21}
RUNS_EXT4=${BENCH_RUNS_EXT4:-11}

if [ "$(id -u)" -ne 0 ]; then echo "SKIP: bench_clone needs root to loop-mount file systems"; exit 0; fi
for t in mkfs.btrfs mkfs.ext4 python3; do
	command -v "$t" >/dev/null || { echo "SKIP: $t missing (make deps)"; exit 0; }
done

TMP=$(mktemp -d /tmp/vmm-bench.XXXXXX)
MOUNTS=()
cleanup() {
	local m
	for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || umount -l "$m"; done
	rm -rf "$TMP"
}
trap cleanup EXIT
export CI=true

mkfs_mount() { # type size
	local img=$TMP/$1.img
	MNT=$TMP/mnt-$1
	truncate -s "$2" "$img"
	case $1 in
	btrfs) mkfs.btrfs -q -f "$img" >/dev/null 2>&1 ;;
	ext4) mkfs.ext4 -q -F -m 0 "$img" >/dev/null 2>&1 ;;
	esac || return 1
	mkdir -p "$MNT"
	mount -o loop "$img" "$MNT" || return 1
	MOUNTS+=("$MNT")
}

# make_vm HOME: vms/src with a 64 GiB disk and 1 GiB of random data in
# 64 pieces of 16 MiB, one in each GiB at a random offset
make_vm() {
	VMM_HOME=$1 "$VMM" create src --linux --disk-size 1 || return 1
	truncate -s 64G "$1/vms/src/disk.img"
	python3 - "$1/vms/src/disk.img" <<'PY'
import os, random, sys
r = random.Random(20260512)
fd = os.open(sys.argv[1], os.O_WRONLY)
piece = 16 << 20
for gib in range(64):
    off = (gib << 30) + r.randrange(0, (1 << 30) - piece, 4096)
    os.pwrite(fd, r.randbytes(piece), off)
os.fsync(fd)
PY
}

# race HOME RUNS CP_FLAG [wb]: alternate vmm clone and cp -r (and, with wb,
# "cp -r then write its data back", the same guarantee vmm gives: see
# vmm_copy_opts.write_back), print per-run times on stderr and the medians
# on stdout as "vmm_ms cp_ms [cp_wb_ms]".  Page cache is synced between runs
# so no run pays for another's writeback.
race() {
	python3 - "$VMM" "$1" "$2" "$3" "${4:-}" <<'PY'
import ctypes, os, shutil, statistics, subprocess, sys, time
vmm, home, runs, cp_flag, wb = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
env = dict(os.environ, VMM_HOME=home)
vms = os.path.join(home, "vms")
libc = ctypes.CDLL(None, use_errno=True)
libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
def write_back(d):
    for f in os.listdir(d):
        fd = os.open(os.path.join(d, f), os.O_RDONLY)
        libc.sync_file_range(fd, 0, 0, 1 | 2 | 4)  # WAIT_BEFORE | WRITE | WAIT_AFTER
        os.close(fd)
def timed(argv, after=None):
    t = time.perf_counter()
    subprocess.run(argv, env=env, check=True)
    if after:
        after()
    return (time.perf_counter() - t) * 1000
names = ["vmmclone", "cpclone"] + (["cpwb"] if wb else [])
def clean(only=None):
    for d in [only] if only else names:
        p = os.path.join(vms, d)
        if os.path.exists(p):
            shutil.rmtree(p)
    os.sync()
    time.sleep(0.1)
def run(which):
    if which == 0:
        return timed([vmm, "clone", "src", "vmmclone"])
    if which == 1:
        return timed(["cp", "-r", cp_flag, os.path.join(vms, "src"), os.path.join(vms, "cpclone")])
    dst = os.path.join(vms, "cpwb")
    return timed(["cp", "-r", cp_flag, os.path.join(vms, "src"), dst], lambda: write_back(dst))
res = [[] for _ in names]
clean()
for i in range(runs + 1):  # the first round warms up and is not counted
    order = list(range(len(names)))
    if i % 2:
        order.reverse()
    got = {}
    for which in order:
        got[which] = run(which)
        if which == 2:
            clean("cpwb")  # not needed for the allocation check
        else:
            os.sync()
    if i > 0:
        for k in got:
            res[k].append(got[k])
    if i < runs:  # the last clones stay for the allocation check
        clean()
for r in res:
    print(" ".join(f"{x:.1f}" for x in r), file=sys.stderr)
print(" ".join(f"{statistics.median(r):.2f}" for r in res))
PY
}

missed=0
verdict() { # description condition...
	local d=$1
	shift
	# one TARGET line each, as tests/bench/targets.sh prints them (run.sh collects them)
	if "$@"; then echo "TARGET $d: met"; else echo "TARGET $d: MISSED"; missed=1; fi
}
le() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)" "$1" "$2"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }

echo "## btrfs: vmm clone vs cp -r --reflink=always ($RUNS_BTRFS runs each, alternating)"
if mkfs_mount btrfs 4G && make_vm "$MNT/home"; then
	read -r vm cp < <(race "$MNT/home" "$RUNS_BTRFS" --reflink=always 2>"$TMP/btrfs.runs")
	echo "  vmm clone ms: $(sed -n 1p "$TMP/btrfs.runs")"
	echo "  cp        ms: $(sed -n 2p "$TMP/btrfs.runs")"
	r=$(ratio "$vm" "$cp")
	echo "  median: vmm clone $vm ms, cp --reflink=always $cp ms, ratio ${r}x"
	verdict "btrfs: clone median under 20 ms ($vm ms)" python3 -c "import sys; sys.exit(0 if $vm < 20 else 1)"
	verdict "btrfs: clone at most 1.5x cp (${r}x)" le "$r" 1.5
else
	echo "TARGET btrfs clone: could not set up btrfs: MISSED"; missed=1
fi

echo "## ext4: vmm clone vs cp -r --sparse=always ($RUNS_EXT4 runs each, alternating)"
if mkfs_mount ext4 5G && make_vm "$MNT/home"; then
	read -r vm cp cpwb < <(race "$MNT/home" "$RUNS_EXT4" --sparse=always wb 2>"$TMP/ext4.runs")
	echo "  vmm clone         ms: $(sed -n 1p "$TMP/ext4.runs")"
	echo "  cp                ms: $(sed -n 2p "$TMP/ext4.runs")"
	echo "  cp + write-back   ms: $(sed -n 3p "$TMP/ext4.runs")"
	r=$(ratio "$vm" "$cp")
	echo "  median: vmm clone $vm ms, cp --sparse=always $cp ms, ratio ${r}x"
	echo "  like for like: cp --sparse=always with its data written back $cpwb ms, ratio $(ratio "$vm" "$cpwb")x"
	echo "  (vmm writes a clone's data back before the rename that shows it, so a crash"
	echo "   never leaves a clone with missing data; plain cp leaves it in the page cache)"
	rw=$(ratio "$vm" "$cpwb")
	verdict "ext4: clone no slower than cp with its data written back (${rw}x <= 1.0)" le "$rw" 1.0
	src=$(stat -c %b "$MNT/home/vms/src/disk.img") dst=$(stat -c %b "$MNT/home/vms/vmmclone/disk.img")
	cpa=$(stat -c %b "$MNT/home/vms/cpclone/disk.img")
	echo "  allocated: source $((src / 2048)) MiB, vmm clone $((dst / 2048)) MiB, cp $((cpa / 2048)) MiB"
	verdict "ext4: clone allocates no more than the source" test "$dst" -le "$src"
else
	echo "TARGET ext4 clone: could not set up ext4: MISSED"; missed=1
fi
exit $missed
