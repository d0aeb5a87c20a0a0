#!/usr/bin/env bash
# A short demo of running VMs on QEMU on a throw-away home: build the test
# guest, boot it, suspend it (compressed memory state), resume it, clone the
# suspended VM and resume the clone from the same memory (a fork).  Each step
# prints the command it runs, then its output.
#   VMM=path/to/vmm bash scripts/demo-qemu.sh
set -eu
cd "$(dirname "$0")/.."
VMM=${VMM:-$PWD/build/vmm}
export VMM_HOME CI=true
VMM_HOME=$(mktemp -d /tmp/vmm-demo-qemu.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait; rm -rf "$VMM_HOME"' EXIT

step() { printf '\n$ vmm %s\n' "$*"; "$VMM" "$@" 2>&1; }
say() { printf '\n# %s\n' "$*"; }
run_bg() { # name: vmm run in the background, console in $VMM_HOME/<name>.console
	printf '\n$ vmm run %s &\n' "$1"
	"$VMM" run "$1" >>"$VMM_HOME/$1.console" 2>>"$VMM_HOME/$1.log" </dev/null &
	pids+=($!)
}
wait_for() { # name pattern
	for _ in $(seq 600); do grep -q "$2" "$VMM_HOME/$1.console" 2>/dev/null && return; sleep 0.2; done
	echo "timed out waiting for $2"; exit 1
}
console() { printf '  [console of %s] %s\n' "$1" "$(grep -a VMMTEST "$VMM_HOME/$1.console" | tail -1)"; }

say "the test guest: Debian's kernel and a busybox initramfs that counts on its serial console"
guest=$(bash tests/guest/build.sh)
step create demo --kernel "$guest/vmlinuz" --initramfs "$guest/initramfs.img" \
	--cmdline "console=ttyS0 quiet vmmtest.fill=64"
step set demo --memory 512 --cpu 1

say "boot it (no KVM here? then TCG, and vmm says so)"
run_bg demo
wait_for demo "VMMTEST TICK 3"
console demo
step list

say "suspend: QEMU's memory goes through a pipe into multi-threaded zstd, fsync, rename, QEMU exits"
step suspend demo
wait "${pids[-1]}"
step list
raw=$(head -c 16384 "$VMM_HOME/vms/demo/state.vmmsave" | tail -c +13 | tr -d '\0' |
	grep -o '"rawSize":[0-9]*' | cut -d: -f2)
echo "state.vmmsave: $(stat -c %s "$VMM_HOME/vms/demo/state.vmmsave") bytes for a raw stream of $raw bytes"

say "clone the suspended VM: the clone keeps MAC and state, so it is a fork of the same memory"
step clone demo fork
step list

say "resume the original: the counter goes on, no reboot"
before=$(grep -a -c "VMMTEST TICK" "$VMM_HOME/demo.console")
run_bg demo
wait_for demo "VMMTEST TICK $((before + 2))"
console demo
echo "boots seen on demo's console: $(grep -a -c "VMMTEST BOOT" "$VMM_HOME/demo.console")"
step stop demo
wait "${pids[-1]}"

say "resume the fork: it goes on from the same memory, without booting"
run_bg fork
wait_for fork "VMMTEST TICK $((before + 2))"
console fork
echo "boots seen on fork's console: $(grep -a -c "VMMTEST BOOT" "$VMM_HOME/fork.console")"
step stop fork
wait "${pids[-1]}"
step list
say "done"
