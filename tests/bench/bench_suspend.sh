#!/usr/bin/env bash
# Suspend, resume and snapshots of running VMs (make bench), against QEMU's
# own tuned raw save in the same run, for 0.5, 1, 2 and 4 GiB of guest
# content (BENCH_SIZES, MiB).
#
# Each size boots the test guest twice from the same disk: once under vmm,
# once under plain QEMU with the guest-defining arguments vmm used
# (tests/bench/qemu_baseline.py).  The guest fills its RAM with realistic
# content (tests/bench/make_payload.py: text, binaries, 10% random) read
# from its disk with O_DIRECT.  Then, alternating the order every round,
# each side does cycles of resume, two ticks of the guest, suspend:
#   vmm               `vmm run` (resume) and `vmm suspend` after a resume:
#                     unchanged stretches of RAM stay in the state file
#   vmm, every page   the same with VMM_STATE_REUSE=0: every page compressed
#   vmm, saved ahead  the same with VMM_STATE_REUSE=0 and VMM_SAVE_AHEAD=1: the
#                     RAM compressed while the guest runs (a first suspend
#                     after a boot, of a VM run with --save-ahead), the
#                     suspend once vmm run says it has caught up
#   raw               QEMU: stop, max-bandwidth raised, migrate fd: into a
#                     file, fsync, quit; resume: -incoming, fd: of the file
# Both sides time the same work: a suspend until the state is durable and
# QEMU has exited, a resume from starting the process until the guest runs.
# vmm's guest runs before its memory is all in (a lazy resume, vm/lazy.h):
# the "every page" cycle waits for vmm run's "memory is restored" before its
# suspend, as after a boot, and the time until then ("memory in", as vmm run
# reports it from the start of the resume) is shown beside the raw resume,
# which has all of it.
# Files live on the real disk (build/bench), never tmpfs.  Then, with the
# guest running, snapshots of it (`vmm checkpoint`, its disk grown to 64 GB):
# how long the guest paused (QEMU's STOP to RESUME); then, as root, the same
# with the guest's RAM in 2 MiB huge pages (VMM_HUGEPAGES=1, the host's pool
# sized for it and put back after).  At 1 GiB the VM is pushed to a local
# registry to weigh its state layer.
#
# Targets (medians): suspend <= 1.1x raw (each of the three); resume <= 0.5x raw; state at rest
# <= 0.5x the raw stream; pushed state layer <= 0.35x; pause <= 50 ms (with
# ordinary pages and with huge pages).
# Prints the table and one TARGET line per target; exits 1 if one is missed.
#   BENCH_SIZES="512 1024 2048 4096"  BENCH_RUNS=5 (3 above 1 GiB)  BENCH_PAUSES=5 (3 above)
set -u
cd "$(dirname "$0")/../.."
root=$PWD
VMM=${VMM:-$root/build/vmm}
source tests/integration/lib.sh
source tests/integration/registry.sh
source tests/bench/targets.sh
t_init
SIZES=${BENCH_SIZES:-512 1024 2048 4096}
die() { echo "bench_suspend: $*"; exit 1; }
guest=$(bash tests/guest/build.sh) || die "cannot build the test guest"
# built (downloaded) first; then in a network namespace of its own: the VMs'
# networks (vm/net.h) and the registry stay off the machine's own network
t_netns "$@"

mkdir -p build/bench
assert_real_disk build/bench
max=0
for s in $SIZES; do [ "$s" -gt $max ] && max=$s; done
payload=$root/build/bench/payload-$max.img
if [ ! -f "$payload" ]; then
	echo "making $max MiB of guest content ..."
	python3 tests/bench/make_payload.py "$payload" "$max" || die "cannot make the payload"
fi
work=$(mktemp -d "$root/build/bench/suspend.XXXXXX")
# the host's pool of 2 MiB huge pages, sized per guest, put back at the end
hp_pool=/proc/sys/vm/nr_hugepages
hp_was=""
if [ "$(id -u)" -eq 0 ] && [ -w "$hp_pool" ]; then
	hp_was=$(cat "$hp_pool")
	t_defer "echo $hp_was >$hp_pool"
fi
t_defer "rm -rf '$work'"
export VMM_HOME=$work/home

run_pid="" base_pid=""
t_defer 'stop_all'
stop_all() {
	[ -n "$run_pid" ] && kill "$run_pid" 2>/dev/null && wait "$run_pid" 2>/dev/null
	[ -n "$base_pid" ] && kill "$base_pid" 2>/dev/null && wait "$base_pid" 2>/dev/null
	run_pid="" base_pid=""
}

console=""
seen() { local n; n=$(grep -a -c "$1" "$console" 2>/dev/null); echo "${n:-0}"; }
wait_for() { # pattern count timeout
	local end=$((SECONDS + $3))
	while [ "$(seen "$1")" -lt "$2" ]; do
		[ $SECONDS -gt $end ] && die "timed out waiting for '$1' (see $console)"
		kill -0 "$run_pid" 2>/dev/null || die "vmm run exited: $(tail -3 "$work/err")"
		sleep 0.1
	done
}
# vmm run NAME in the background (ENV... first)
start_run() {
	env "$@" "$VMM" run "$vm" >>"$console" 2>>"$work/err" </dev/null &
	run_pid=$!
}
# one vmm cycle: resume (timed), two ticks, suspend (timed); "$1" is the env of that run;
# with MEMORY_IN=1, the suspend waits until the memory is all in (M: since the resume began);
# with AHEAD=1, until vmm run says it has saved the memory ahead
restored="the VM's memory is restored" lazy="the VM runs while its memory is restored"
caught="the VM's memory is saved ahead"
vmm_cycle() {
	local st=$VMM_HOME/vms/$vm/state.vmmsave ticks t0 n l c
	ticks=$(seen "VMMTEST TICK")
	n=$(grep -a -c "$restored" "$work/err")
	l=$(grep -a -c "$lazy" "$work/err")
	c=$(grep -a -c "$caught" "$work/err")
	t0=$(now)
	start_run "$@"
	while [ -e "$st" ]; do
		kill -0 "$run_pid" 2>/dev/null || die "resume failed: $(tail -3 "$work/err")"
		sleep 0.005
	done
	R=$(since "$t0") M=$R
	# (not lazy, as an ordinary user: all of the memory was in before the guest ran)
	if [ "${MEMORY_IN:-0}" = 1 ] && [ "$(grep -a -c "$lazy" "$work/err")" -gt "$l" ]; then
		# (as vmm run measures it: polling here would take the CPU the fill needs)
		while [ "$(grep -a -c "$restored" "$work/err")" -le "$n" ]; do
			kill -0 "$run_pid" 2>/dev/null || die "vmm run exited: $(tail -3 "$work/err")"
			sleep 0.1
		done
		M=$(grep -a -o "$restored ([0-9.]* s" "$work/err" | tail -1 | grep -o '[0-9.]* s' | cut -d' ' -f1)
	fi
	wait_for "VMMTEST TICK" $((ticks + 2)) 120
	if [ "${AHEAD:-0}" = 1 ]; then
		while [ "$(grep -a -c "$caught" "$work/err")" -le "$c" ]; do
			kill -0 "$run_pid" 2>/dev/null || die "vmm run exited: $(tail -3 "$work/err")"
			sleep 0.2
		done
	fi
	t0=$(now)
	"$VMM" suspend "$vm" || die "vmm suspend failed"
	S=$(since "$t0")
	wait "$run_pid"
	run_pid=""
}
# resume the VM (ENV... after the first two), snapshot it running $pauses
# times into the array named $2 (the pauses, s), suspend it again
snapshots() { # what array [ENV...]
	local -n into=$2
	local what=$1 out i
	shift 2
	echo "   snapshots of the running guest$what ($pauses) ..."
	start_run "$@"
	while [ -e "$st" ]; do sleep 0.01; done
	wait_for "VMMTEST TICK" $(($(seen "VMMTEST TICK") + 2)) 120
	grep -a "huge pages:" "$work/err" && die "no huge pages for the guest"
	into=()
	for i in $(seq 1 "$pauses"); do
		mkdir "$work/ck"
		out=$("$VMM" checkpoint "$vm" "$work/ck" --stats) || die "vmm checkpoint failed"
		into+=("$(awk '{print $2}' <<<"$out")")
		rm -rf "$work/ck"
	done
	echo "   pauses: ${into[*]} s"
	"$VMM" suspend "$vm" >/dev/null || die "vmm suspend failed"
	wait "$run_pid"
	run_pid=""
}
# the baseline's helper: one command, one answer line
base() {
	echo "$1" >&"${BASE[1]}"
	read -r -t 1800 A <&"${BASE[0]}" || die "the baseline did not answer '$1'"
	case $A in error*) die "baseline: $A" ;; esac
}
base_cycle() {
	base resume
	R=$A
	base suspend
	S=${A% *} RAW=${A#* }
}

declare -A T_SUS T_FULL T_AHEAD T_RES T_MEM T_RAWS T_RAWR T_STATE T_FRESH T_RAW T_PAUSE T_HPAUSE
push_ratio=""
for size in $SIZES; do
	vm=b$size
	mem=$((size + size / 8 + 256))
	runs=${BENCH_RUNS:-5} pauses=${BENCH_PAUSES:-5}
	if [ "$size" -gt 1024 ]; then runs=${BENCH_RUNS_LARGE:-3} pauses=${BENCH_PAUSES_LARGE:-3}; fi
	console=$work/$vm.console
	echo "== $size MiB of content in a $mem MiB guest: booting it under vmm and under QEMU ..."
	"$VMM" create "$vm" --kernel "$guest/vmlinuz" --initramfs "$guest/initramfs.img" \
		--cmdline "console=ttyS0 quiet vmmtest.fill=$size vmmtest.fillsrc=/dev/vda" \
		--disk-size 1 >/dev/null || die "create failed"
	"$VMM" set "$vm" --memory $mem --cpu 2 --disk "$payload" >/dev/null || die "set failed"
	"$VMM" set "$vm" --disk-size 64 >/dev/null || die "set --disk-size failed"
	start_run
	wait_for "VMMTEST READY" 1 1800
	wait_for "VMMTEST TICK" $(($(seen "VMMTEST TICK") + 2)) 120
	"$VMM" suspend "$vm" || die "vmm suspend failed"
	wait "$run_pid"
	run_pid=""
	st=$VMM_HOME/vms/$vm/state.vmmsave
	fresh=$(stat -c %s "$st")
	# the baseline runs what vmm ran: the guest-defining arguments from the state's header
	bdir=$work/base-$vm
	mkdir "$bdir"
	head -c 16384 "$st" >"$bdir/header"
	ln -s "$VMM_HOME/vms/$vm/kernel" "$bdir/kernel"
	ln -s "$VMM_HOME/vms/$vm/initramfs" "$bdir/initramfs"
	ln -s "$payload" "$bdir/disk.img"
	coproc BASE { exec python3 "$root/tests/bench/qemu_baseline.py" "$bdir/header" "$bdir"; }
	base_pid=$BASE_PID
	base boot
	base suspend
	raw=${A#* }

	sus=() full=() ahead=() res=() mem_in=() raws=() rawr=() state_now=0
	for i in $(seq 1 "$runs"); do
		# every round in another order: neither side always finds the caches warm
		case $((i % 4)) in
		1) order="vmm full ahead raw" ;;
		2) order="raw vmm full ahead" ;;
		3) order="ahead raw vmm full" ;;
		0) order="full ahead raw vmm" ;;
		esac
		for side in $order; do
			case $side in
			vmm) vmm_cycle && sus+=("$S") res+=("$R") state_now=$(allocated "$st") ;;
			full) MEMORY_IN=1 vmm_cycle VMM_STATE_REUSE=0 && full+=("$S") res+=("$R") mem_in+=("$M") fresh=$(stat -c %s "$st") ;;
			ahead) MEMORY_IN=1 AHEAD=1 vmm_cycle VMM_STATE_REUSE=0 VMM_SAVE_AHEAD=1 && ahead+=("$S") res+=("$R") ;;
			raw) base_cycle && raws+=("$S") rawr+=("$R") raw=$RAW ;;
			esac
		done
		echo "   round $i ($order): vmm suspend ${sus[-1]} s, every page ${full[-1]} s, saved ahead ${ahead[-1]} s, raw ${raws[-1]} s; resume vmm ${res[-1]} s (memory in ${mem_in[-1]} s), raw ${rawr[-1]} s"
	done
	[ "$(seen "VMMTEST BOOT")" -eq 1 ] || die "the guest rebooted during the vmm runs"

	snapshots "" pause
	hpause=()
	if [ -n "$hp_was" ]; then
		echo $((hp_was + mem / 2)) >"$hp_pool"
		snapshots " in huge pages" hpause VMM_HUGEPAGES=1
		echo "$hp_was" >"$hp_pool"
	fi

	if [ "$size" -eq 1024 ] && reg_have_registry; then
		registry_start REG || die "cannot start a registry"
		"$VMM" push "$vm" "$REG/bench/$vm:s" --insecure >/dev/null || die "vmm push failed"
		layer=$(curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
			"http://$REG/v2/bench/$vm/manifests/s" | python3 -c 'import json,sys
m = json.load(sys.stdin)
print([l["size"] for l in m["layers"] if l["mediaType"].startswith("application/vnd.vmm.state")][0])')
		push_ratio=$(ratio "$layer" "$raw")
		echo "   pushed state layer: $layer bytes for a raw stream of $raw"
	fi
	echo quit >&"${BASE[1]}"
	wait "$base_pid" 2>/dev/null
	base_pid=""
	"$VMM" delete "$vm" >/dev/null

	T_SUS[$size]=$(printf '%s\n' "${sus[@]}" | median)
	T_FULL[$size]=$(printf '%s\n' "${full[@]}" | median)
	T_AHEAD[$size]=$(printf '%s\n' "${ahead[@]}" | median)
	T_RES[$size]=$(printf '%s\n' "${res[@]}" | median)
	T_MEM[$size]=$(printf '%s\n' "${mem_in[@]}" | median)
	T_RAWS[$size]=$(printf '%s\n' "${raws[@]}" | median)
	T_RAWR[$size]=$(printf '%s\n' "${rawr[@]}" | median)
	T_RAW[$size]=$raw
	T_FRESH[$size]=$fresh
	T_STATE[$size]=$state_now
	T_PAUSE[$size]=$(printf '%s\n' "${pause[@]}" | median)
	T_HPAUSE[$size]=nan
	[ ${#hpause[@]} -gt 0 ] && T_HPAUSE[$size]=$(printf '%s\n' "${hpause[@]}" | median)
done

echo
echo "medians; suspend until durable and QEMU exited, resume until the guest runs (seconds)"
echo "(memory in: vmm's resume until all of the memory is in, over the raw resume; no target)"
printf '%-9s| %-30s| %-21s| %-21s| %-24s| %-17s| %-26s| %s\n' "content" "suspend: vmm  raw  vmm/raw" \
	"every page   /raw" "saved ahead  /raw" "resume: vmm  raw  /raw" "memory in  /raw" "state/raw: new  in place" "pause ms: 4K  huge"
for size in $SIZES; do
	printf '%5s MiB | %6.3f %6.3f  %6s        | %6.3f  %6s       | %6.3f  %6s       | %6.3f %6.3f  %6s   | %6.3f  %6s  | %8s  %8s        |      %6.1f %6.1f\n' \
		"$size" "${T_SUS[$size]}" "${T_RAWS[$size]}" "$(ratio "${T_SUS[$size]}" "${T_RAWS[$size]}")" \
		"${T_FULL[$size]}" "$(ratio "${T_FULL[$size]}" "${T_RAWS[$size]}")" \
		"${T_AHEAD[$size]}" "$(ratio "${T_AHEAD[$size]}" "${T_RAWS[$size]}")" \
		"${T_RES[$size]}" "${T_RAWR[$size]}" "$(ratio "${T_RES[$size]}" "${T_RAWR[$size]}")" \
		"${T_MEM[$size]}" "$(ratio "${T_MEM[$size]}" "${T_RAWR[$size]}")" \
		"$(ratio "${T_FRESH[$size]}" "${T_RAW[$size]}")" "$(ratio "${T_STATE[$size]}" "${T_RAW[$size]}")" \
		"$(awk -v p="${T_PAUSE[$size]}" 'BEGIN { print p * 1000 }')" \
		"$(awk -v p="${T_HPAUSE[$size]}" 'BEGIN { print p * 1000 }')"
done
echo "(raw stream: $(for s in $SIZES; do printf '%s MiB: %.0f MiB  ' "$s" "$(awk -v b="${T_RAW[$s]}" 'BEGIN { print b / 1048576 }')"; done))"
echo
for size in $SIZES; do
	target "$size MiB: vmm suspend after a resume / raw" "$(ratio "${T_SUS[$size]}" "${T_RAWS[$size]}")" "<=" 1.1
	target "$size MiB: vmm suspend of every page / raw" "$(ratio "${T_FULL[$size]}" "${T_RAWS[$size]}")" "<=" 1.1
	target "$size MiB: vmm first suspend, saved ahead / raw" "$(ratio "${T_AHEAD[$size]}" "${T_RAWS[$size]}")" "<=" 1.1
	target "$size MiB: vmm resume / raw" "$(ratio "${T_RES[$size]}" "${T_RAWR[$size]}")" "<=" 0.5
	st=${T_FRESH[$size]}
	[ "${T_STATE[$size]}" -gt "$st" ] && st=${T_STATE[$size]}
	target "$size MiB: state at rest / raw stream" "$(ratio "$st" "${T_RAW[$size]}")" "<=" 0.5
	target "$size MiB: guest paused by a snapshot (s)" "${T_PAUSE[$size]}" "<=" 0.05
	if [ -n "$hp_was" ]; then
		target "$size MiB: guest paused by a snapshot, huge pages (s)" "${T_HPAUSE[$size]}" "<=" 0.05
	else
		echo "TARGET $size MiB: guest paused by a snapshot, huge pages: not run (the pool is root's to size)"
	fi
done
[ -n "$push_ratio" ] && target "1024 MiB: pushed state layer / raw stream" "$push_ratio" "<=" 0.35
bench_exit
