#!/usr/bin/env bash
# A short demo of vmm's main job on a throw-away home: make a VM, clone it,
# look at both, change one, delete them.  Each step prints the command it
# runs, then its output.  `make demo` builds vmm and runs this.
#   VMM=path/to/vmm bash scripts/demo.sh
set -eu
cd "$(dirname "$0")/.."
VMM=${VMM:-$PWD/build/vmm}
export VMM_HOME
VMM_HOME=$(mktemp -d /tmp/vmm-demo.XXXXXX)
trap 'rm -rf "$VMM_HOME"' EXIT
export CI=true

step() { # command...
	printf '\n$ vmm %s\n' "$*"
	"$VMM" "$@" 2>&1
}
say() { printf '\n# %s\n' "$*"; }

say "vmm keeps Tart-format VMs in \$VMM_HOME=$VMM_HOME"
say "a Linux VM with a 20 GB disk (sparse: it takes no space yet)"
step create debian --linux --disk-size 20
say "its config.json is Tart's, byte for byte in Tart's format"
printf '\n$ cat $VMM_HOME/vms/debian/config.json\n'
cat "$VMM_HOME/vms/debian/config.json"
echo

say "pretend the guest wrote 128 MiB to its disk"
printf '\n$ dd if=/dev/urandom of=$VMM_HOME/vms/debian/disk.img bs=1M count=128 seek=1024 conv=notrunc\n'
dd if=/dev/urandom of="$VMM_HOME/vms/debian/disk.img" bs=1M count=128 seek=1024 conv=notrunc status=none

say "clone it: copy-on-write where the file system can (btrfs, XFS), a hole-keeping copy elsewhere; the clone gets its own MAC"
start=$(date +%s%N)
step clone debian runner-1
echo "(took $((($(date +%s%N) - start) / 1000000)) ms on $(findmnt -n -o FSTYPE -T "$VMM_HOME"))"
step list
step get runner-1
step get runner-1 --format json
grep -h '"macAddress"' "$VMM_HOME"/vms/*/config.json | sed 's/^ */  /'

say "give the clone more CPUs and memory, and grow its disk (disks only grow)"
step set runner-1 --cpu 2 --memory 2048 --disk-size 30
step get runner-1
say "shrinking is refused, as Tart refuses it"
step set runner-1 --disk-size 10 || echo "(exit $?)"

say "unlike Tart, vmm does not silently overwrite a VM"
step clone debian runner-1 || echo "(exit $?)"
step clone debian runner-1 --force

say "rename and delete"
step rename runner-1 runner-2
step delete runner-2 debian
step list
say "done"
