#!/usr/bin/env bash
# A short demo of vmm's main job, on throw-away homes and a local registry:
#
#   1. a golden VM boots once, warms up, and is suspended (compressed memory);
#   2. it is pushed to an OCI registry in Tart's format (plus vmm's state layer);
#   3. a "CI runner" (another vmm home, as another host would be) clones it
#      from the registry and resumes it in about a second: no boot;
#   4. the runner takes a snapshot, exports it as a portable archive, and
#      throws the clone away; clones cost no space until written.
#
# Each step prints the command it runs, then its output.  `make demo` builds
# vmm, installs what is missing and runs this (a few minutes under TCG).
#   VMM=path/to/vmm bash scripts/demo.sh
set -eu
cd "$(dirname "$0")/.."
VMM=${VMM:-$PWD/build/vmm}
export CI=true
# The guests' networks stay inside a network namespace made here (as root;
# otherwise vmm uses user-mode NAT): the guest is built (downloaded) first.
if [ -z "${VMM_DEMO_NETNS:-}" ] && [ "$(id -u)" -eq 0 ]; then
	bash tests/guest/build.sh >/dev/null
	exec unshare --net -- env VMM_DEMO_NETNS=1 bash -c 'ip link set lo up && exec bash "$0"' "$0"
fi
work=$(mktemp -d /tmp/vmm-demo.XXXXXX)
T_TMP=$work T_CLEANUP=() pids=()
t_defer() { T_CLEANUP=("$*" "${T_CLEANUP[@]}"); }
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for c in "${T_CLEANUP[@]}"; do eval "$c" >/dev/null 2>&1 || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
. tests/integration/registry.sh

golden_home=$work/golden-host runner_home=$work/runner-host
step() { # home command...
	local home=$1
	shift
	printf '\n[%s]$ vmm %s\n' "$(basename "$home")" "$*"
	VMM_HOME=$home "$VMM" "$@" 2>&1
}
say() { printf '\n# %s\n' "$*"; }
run_bg() { # home name
	printf '\n[%s]$ vmm run %s &\n' "$(basename "$1")" "$2"
	VMM_HOME=$1 "$VMM" run "$2" >>"$work/$2.console" 2>>"$work/$2.log" </dev/null &
	pids+=($!)
}
wait_for() { # name pattern
	for _ in $(seq 900); do grep -aq "$2" "$work/$1.console" 2>/dev/null && return; sleep 0.2; done
	echo "timed out waiting for '$2' on $1"; tail -5 "$work/$1.log"; exit 1
}
console() { printf '  [console of %s] %s\n' "$1" "$(grep -a VMMTEST "$work/$1.console" | tail -1)"; }
ms() { echo $((($(date +%s%N) - $1) / 1000000)); }

say "a local OCI registry (Debian's docker-registry) for the demo"
registry_start REG
echo "registry at $REG"

say "the guest: Debian's kernel and a busybox initramfs that counts on its serial console"
guest=$(bash tests/guest/build.sh)
step "$golden_home" create golden --kernel "$guest/vmlinuz" --initramfs "$guest/initramfs.img" \
	--cmdline "console=ttyS0 quiet vmmtest.fill=64 vmmtest.net=dhcp" --disk-size 20
step "$golden_home" set golden --memory 512 --cpu 1
echo "config.json is Tart's schema and format:"
sed 's/^/  /' "$golden_home/vms/golden/config.json"
echo

say "1. boot the golden VM once and let it warm up (TCG here if there is no KVM)"
start=$(date +%s%N)
run_bg "$golden_home" golden
wait_for golden "VMMTEST TICK 3"
echo "booted and warm after $(ms "$start") ms"
console golden
step "$golden_home" list

say "suspend it: QEMU's device state and the guest's RAM, in lz4 chunks on both cores, into state.vmmsave"
step "$golden_home" suspend golden
wait "${pids[-1]}"
state=$golden_home/vms/golden/state.vmmsave
raw=$(head -c 16384 "$state" | tail -c +13 | tr -d '\0' | grep -o '"rawSize":[0-9]*' | cut -d: -f2)
echo "state.vmmsave: $(stat -c %s "$state") bytes for $raw bytes of memory stream"

say "2. push it in Tart's format: config, disk as 512 MiB Apple-LZ4 layers, NVRAM, then vmm's layers"
step "$golden_home" push golden "$REG/ci/golden:warm" --insecure
echo "skopeo, an independent OCI client, reads the manifest (layers by media type: count, bytes):"
skopeo inspect --tls-verify=false --raw "docker://$REG/ci/golden:warm" | python3 -c '
import json, sys, collections
n, b = collections.Counter(), collections.Counter()
for l in json.load(sys.stdin)["layers"]:
    n[l["mediaType"]] += 1; b[l["mediaType"]] += l["size"]
for t in n: print("  %-42s %3d %12d" % (t, n[t], b[t]))'

say "3. on the runner (another home, as on another host): clone from the registry, resume"
step "$runner_home" clone "$REG/ci/golden:warm" job-1 --insecure
step "$runner_home" list
ticks=$(grep -a -c "VMMTEST TICK" "$work/golden.console")
start=$(date +%s%N)
run_bg "$runner_home" job-1
wait_for job-1 "VMMTEST TICK"
echo "resumed and ticking after $(ms "$start") ms; boots on its console: $(grep -a -c 'VMMTEST BOOT' "$work/job-1.console") (it was suspended after tick $ticks)"
console job-1
if [ "$(id -u)" -eq 0 ]; then
	say "the host reaches the resumed guest by address: it kept its DHCP lease from the golden host"
	step "$runner_home" ip job-1
	addr=$(VMM_HOME=$runner_home "$VMM" ip job-1)
	printf '\n$ curl http://%s/cgi-bin/info\n' "$addr"
	for _ in $(seq 50); do curl -s -m 2 "http://$addr/cgi-bin/info" && break; sleep 0.2; done
fi

say "4. a snapshot of the running clone (it pauses only for the memory save), exported as .tar.zst"
step "$runner_home" snapshot create job-1 after-tests
step "$runner_home" snapshot list job-1
step "$runner_home" stop job-1
wait "${pids[-1]}"
step "$runner_home" export job-1@after-tests "$work/after-tests.tar.zst"
echo "GNU tar lists it:"
tar --zstd -tvf "$work/after-tests.tar.zst" | sed 's/^/  /'

say "clones are copy-on-write (or hole-keeping copies): cheap to make and to throw away"
step "$runner_home" clone job-1 job-2
step "$runner_home" clone job-1 job-2 || echo "(exit $?: unlike Tart, vmm does not silently overwrite a VM)"
step "$runner_home" delete job-1 job-2
step "$runner_home" list
say "done"
