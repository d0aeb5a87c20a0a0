#!/usr/bin/env bash
# Suspend/resume benchmark (make bench): one run, one guest, the same memory
# content for every method.  A 1 GiB guest holds ~400 MiB of realistic
# content (text: C headers and Python sources; binaries: shared libraries
# and programs; 10% random), copied from its disk with O_DIRECT.  Compared:
#   vmm   vmm suspend / vmm run (multi-threaded zstd through a pipe, fsync)
#   (a)   hypeman's standby: QMP stop + migrate exec:cat > FILE with QEMU's
#         default parameters, then fsync
#   (b)   tuned raw: bandwidth raised, uncompressed into FILE via fd:, fsync
# Targets: suspend ≤ 1.2x (b) and ≤ 0.4x (a); state ≤ 0.5x the raw stream;
# resume ≤ 1.2x (b)'s resume.  Prints medians of BENCH_RUNS (default 5) runs
# and the ratios; exits 1 if a target is missed.
set -u
cd "$(dirname "$0")/../.."
root=$PWD
VMM=${VMM:-$root/build/vmm}
RUNS=${BENCH_RUNS:-5}
guest=$(bash tests/guest/build.sh) || { echo "bench_suspend: cannot build the test guest"; exit 1; }

payload=$root/build/bench/payload.img
if [ ! -f "$payload" ]; then
	mkdir -p "$root/build/bench"
	{
		tar cf - /usr/include /usr/lib/python3* 2>/dev/null | head -c 160M
		cat /usr/lib/x86_64-linux-gnu/*.so* /usr/bin/* 2>/dev/null | head -c 200M
		head -c 40M /dev/urandom
	} >"$payload.tmp" && mv "$payload.tmp" "$payload"
fi

work=$(mktemp -d /tmp/vmm-bench.XXXXXX)
export VMM_HOME=$work/home CI=true
run_pid=""
cleanup() {
	[ -n "$run_pid" ] && kill "$run_pid" 2>/dev/null && wait "$run_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
die() { echo "bench_suspend: $*"; exit 1; }

"$VMM" create bench --kernel "$guest/vmlinuz" --initramfs "$guest/initramfs.img" \
	--cmdline "console=ttyS0 quiet vmmtest.fill=400 vmmtest.fillsrc=/dev/vda" --disk-size 1 ||
	die "create failed"
"$VMM" set bench --memory 1024 --cpu 2 --disk "$payload" || die "set failed"
dir=$VMM_HOME/vms/bench
state=$dir/state.vmmsave

now() { date +%s.%N; }
# count of a line on the console so far
seen() { local n; n=$(grep -c "$1" "$work/console" 2>/dev/null); echo "${n:-0}"; }
wait_for() { # pattern count timeout
	local end=$((SECONDS + $3))
	while [ "$(seen "$1")" -lt "$2" ]; do
		[ $SECONDS -gt $end ] && die "timed out waiting for '$1' (see $work/console)"
		kill -0 "$run_pid" 2>/dev/null || die "vmm run exited: $(tail -3 "$work/err")"
		sleep 0.1
	done
}
start_run() {
	"$VMM" run bench >>"$work/console" 2>>"$work/err" </dev/null &
	run_pid=$!
}

echo "booting the guest (1 GiB, ~400 MiB of content) ..."
start_run
wait_for "VMMTEST READY" 1 600
ticks=$(seen "VMMTEST TICK")
wait_for "VMMTEST TICK" $((ticks + 2)) 60

vs=() vr=()
for i in $(seq 1 "$RUNS"); do
	t0=$(now)
	"$VMM" suspend bench || die "vmm suspend failed"
	t1=$(now)
	wait "$run_pid"
	run_pid=""
	vs+=("$(awk "BEGIN{print $t1 - $t0}")")
	size=$(stat -c %s "$state")
	raw=$(python3 -c "import json,struct,sys; d=open(sys.argv[1],'rb').read(16384); print(json.loads(d[12:12+struct.unpack('<I',d[8:12])[0]])['rawSize'])" "$state")
	cp "$state" "$work/header.vmmsave"
	ticks=$(seen "VMMTEST TICK")
	t0=$(now)
	start_run
	while [ -e "$state" ] || [ -e "$state.resumed.tmp" ]; do
		kill -0 "$run_pid" 2>/dev/null || die "resume failed: $(tail -3 "$work/err")"
		sleep 0.005
	done
	t1=$(now)
	vr+=("$(awk "BEGIN{print $t1 - $t0}")")
	wait_for "VMMTEST TICK" $((ticks + 2)) 60
done
[ "$(seen "VMMTEST BOOT")" -eq 1 ] || die "the guest rebooted during the vmm runs"
"$VMM" stop bench >/dev/null || die "vmm stop failed"
wait "$run_pid"
run_pid=""

echo "baselines (same guest, same content) ..."
base=$(cd "$dir" && python3 "$root/tests/bench/qemu_baseline.py" "$work/header.vmmsave" "$RUNS") ||
	die "baseline run failed"

python3 - "$base" "$size" "$raw" "${vs[*]}" "${vr[*]}" <<'EOF'
import json, statistics, sys
b = json.loads(sys.argv[1])
size, raw = int(sys.argv[2]), int(sys.argv[3])
vs = [float(x) for x in sys.argv[4].split()]
vr = [float(x) for x in sys.argv[5].split()]
med = statistics.median
MiB = 1 << 20
ok = True
def row(name, runs):
    print(f"  {name:<34} median {med(runs):7.3f} s   runs: {' '.join(f'{x:.3f}' for x in runs)}")
def check(label, value, target):
    global ok
    good = value <= target
    ok &= good
    print(f"  {label:<40} {value:6.3f}  (target <= {target}: {'met' if good else 'MISSED'})")
print("suspend (until the state is durable)")
row("vmm suspend", vs)
row("(a) hypeman exec:cat + fsync", b["a_suspend"])
row("(b) tuned raw fd: + fsync", b["b_suspend"])
print("size")
print(f"  raw migration stream (vmm)          {raw / MiB:8.1f} MiB")
print(f"  (a) file                            {b['a_size'] / MiB:8.1f} MiB")
print(f"  (b) file                            {b['b_size'] / MiB:8.1f} MiB")
print(f"  vmm state.vmmsave                   {size / MiB:8.1f} MiB")
print("resume (until the guest runs again)")
row("vmm run (resume)", vr)
row("(a) exec:cat < FILE", b["a_resume"])
row("(b) fd: FILE", b["b_resume"])
print("ratios")
check("vmm suspend / (b) suspend", med(vs) / med(b["b_suspend"]), 1.2)
check("vmm suspend / (a) suspend", med(vs) / med(b["a_suspend"]), 0.4)
check("state size / raw stream", size / raw, 0.5)
check("vmm resume / (b) resume", med(vr) / med(b["b_resume"]), 1.2)
sys.exit(0 if ok else 1)
EOF
