#!/usr/bin/env bash
# Automatic pruning before a pull, on a real small file system (a 256 MiB
# tmpfs): a pull that needs its disk size + 128 MiB deletes the least recently
# used cache entry when the free space falls short, unless TART_NO_AUTO_PRUNE
# (or VMM_NO_AUTO_PRUNE) is set; local VMs are never touched.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/registry.sh"
t_init
reg_have_registry || t_skip "docker-registry or python3-cryptography missing"
[ "$(id -u)" -eq 0 ] || t_skip "mounting a tmpfs needs root"
export DOCKER_CONFIG=$T_TMP/docker VMM_CREDENTIALS_FILE=$T_TMP/credentials.json
unset VMM_NO_AUTO_PRUNE TART_NO_AUTO_PRUNE
MiB=$((1024 * 1024))
registry_start REG || { fail "start registry"; t_done; }

# two images, built in a roomy home
vmm create big --linux --disk-size 1
head -c $((100 * MiB)) /dev/urandom | dd of="$VMM_HOME/vms/big/disk.img" bs=1M conv=notrunc status=none
vmm create small --linux --disk-size 1
truncate -s $((64 * MiB)) "$VMM_HOME/vms/small/disk.img"
head -c $((10 * MiB)) /dev/urandom | dd of="$VMM_HOME/vms/small/disk.img" bs=1M conv=notrunc status=none
vmm push big "$REG/p/big:latest" --insecure
assert_rc 0 "push big"
vmm push small "$REG/p/small:latest" --insecure
assert_rc 0 "push small"

FS=$T_TMP/fs
mkdir -p "$FS"
mount -t tmpfs -o size=256M vmm-prune-test "$FS" || t_skip "cannot mount a tmpfs"
t_defer "umount -l $FS"
run_case() { # env-assignment-or-empty
	rm -rf "${FS:?}"/home
	export VMM_HOME=$FS/home
	vmm pull "$REG/p/big:latest" --insecure
	assert_rc 0 "pull 100 MiB of data into the 256 MiB file system"
	vmm create local-vm --linux --disk-size 1
	touch -a -d '2001-01-01' "$VMM_HOME/vms/local-vm"
	env $1 "$VMM" pull "$REG/p/small:latest" --insecure >"$T_TMP/out" 2>&1
	RC=$?
	assert_eq "$RC" 0 "pull of a 64 MiB disk, which needs 192 MiB ($1)"
}

# ~150 MiB free < 64 MiB + 128 MiB: the older entry goes
run_case ""
vmm list --source oci --quiet
assert_not_contains "$OUT" "p/big" "the least recently used image was pruned"
assert_contains "$OUT" "p/small:latest" "the new image is there"
assert_true "a local VM is never auto-pruned" test -d "$VMM_HOME/vms/local-vm"

run_case "TART_NO_AUTO_PRUNE="
vmm list --source oci --quiet
assert_contains "$OUT" "p/big:latest" "TART_NO_AUTO_PRUNE keeps it"
run_case "VMM_NO_AUTO_PRUNE=1"
vmm list --source oci --quiet
assert_contains "$OUT" "p/big:latest" "VMM_NO_AUTO_PRUNE keeps it"
t_done
