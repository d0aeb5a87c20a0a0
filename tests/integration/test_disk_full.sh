#!/usr/bin/env bash
# Disk full: pull, import, export, snapshot create (of a stopped VM) and clone
# on a small loop-mounted ext4 that runs out of space midway.  Each must fail
# with one line naming the lack of space, change nothing that was there (a
# VM's every file, the cache, the list), show nothing half-made and leave no
# temporary files behind; once space is freed, the same command succeeds.
# Needs root (loop mounts).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/registry.sh"
t_init
[ "$(id -u)" -eq 0 ] || t_skip "needs root to loop-mount a file system"
for t in mkfs.ext4 losetup python3; do command -v $t >/dev/null || t_skip "$t missing"; done
losetup -f >/dev/null 2>&1 || t_skip "no loop device can be had here"
reg_have_registry || t_skip "docker-registry or python3-cryptography missing"
export DOCKER_CONFIG=$T_TMP/docker VMM_CREDENTIALS_FILE=$T_TMP/credentials.json VMM_NO_AUTO_PRUNE=1
unset VMM_REGISTRY_USERNAME VMM_REGISTRY_PASSWORD TART_REGISTRY_USERNAME TART_REGISTRY_PASSWORD
MiB=$((1024 * 1024))
CASES=0
registry_start REG || { fail "start registry"; t_done; }

# The source material, on the big file system: a VM with 21 MiB of random
# data (a 64 MiB disk), pushed and exported.
BIG=$VMM_HOME
vmm create src --linux --disk-size 1
truncate -s $((64 * MiB)) "$BIG/vms/src/disk.img"
for off in 0 20 44; do
	head -c $((7 * MiB)) /dev/urandom | dd of="$BIG/vms/src/disk.img" bs=1M seek=$off conv=notrunc status=none
done
vmm push src "$REG/full/src:latest" --insecure
assert_rc 0 "push the source image"
vmm export src "$T_TMP/src.tar.zst"
assert_rc 0 "export the source archive"

# The small home: a 48 MiB ext4 holding a VM to keep (8 MiB of data).
small_fs 48M
export VMM_HOME=$MNT/home
vmm create keep --linux --disk-size 1
truncate -s $((64 * MiB)) "$VMM_HOME/vms/keep/disk.img"
head -c $((8 * MiB)) /dev/urandom | dd of="$VMM_HOME/vms/keep/disk.img" bs=1M seek=2 conv=notrunc status=none
sync

sums() { (cd "$VMM_HOME" && find vms cache -type f -print0 2>/dev/null | sort -z | xargs -0 -r sha256sum); }
# after a failure: one line about space, nothing changed, nothing left over
check_failed() { # what
	assert_rc 1 "$1: refused for want of space"
	assert_one_line_error "$1: in one line"
	assert_contains "$ERR" "no space left on the device" "$1: saying so"
	assert_eq "$(sums)" "$BEFORE" "$1: every file that was there is unchanged, nothing new appeared"
	vmm list
	assert_rc 0 "$1: list works"
	assert_eq "$(find "$VMM_HOME/vms" -name '*.tmp*' -o -name '.new-*' | wc -l)" 0 "$1: no temporary files in vms/"
	CASES=$((CASES + 1))
}

echo "# clone"
fill_to 3
BEFORE=$(sums)
vmm clone keep keep2
check_failed "clone"
assert_eq "$(ls "$VMM_HOME/tmp" | wc -l)" 0 "clone: nothing in tmp/"
rm -f "$MNT/filler"
vmm clone keep keep2
assert_rc 0 "clone: succeeds with space"
vmm delete keep2

echo "# snapshot create (stopped VM)"
fill_to 4
BEFORE=$(sums)
vmm snapshot create keep s1
check_failed "snapshot create"
assert_eq "$(ls -A "$VMM_HOME/vms/keep/snapshots" 2>/dev/null | wc -l)" 0 "snapshot create: no snapshot, no staging"
rm -f "$MNT/filler"
vmm snapshot create keep s1
assert_rc 0 "snapshot create: succeeds with space"
vmm snapshot delete keep s1

echo "# import"
fill_to 10
BEFORE=$(sums)
vmm import "$T_TMP/src.tar.zst" imp
check_failed "import"
assert_eq "$(ls "$VMM_HOME/tmp" | wc -l)" 0 "import: nothing in tmp/"
rm -f "$MNT/filler"
vmm import "$T_TMP/src.tar.zst" imp
assert_rc 0 "import: succeeds with space"
assert_true "import: the disk is whole" cmp -s "$BIG/vms/src/disk.img" "$VMM_HOME/vms/imp/disk.img"
vmm delete imp

echo "# export (onto the full file system)"
fill_to 2
BEFORE=$(sums)
vmm export keep "$MNT/keep.tar.zst"
check_failed "export"
assert_eq "$(ls "$MNT" | grep -c keep.tar)" 0 "export: no archive and no temporary file"
rm -f "$MNT/filler"
vmm export keep "$MNT/keep.tar.zst"
assert_rc 0 "export: succeeds with space"
rm -f "$MNT/keep.tar.zst"

echo "# pull"
fill_to 10
BEFORE=$(sums)
vmm pull "$REG/full/src:latest" --insecure
check_failed "pull"
assert_eq "$(find "$VMM_HOME/cache" -name 'sha256:*' | wc -l)" 0 "pull: nothing in the cache"
rm -f "$MNT/filler"
vmm pull "$REG/full/src:latest" --insecure
assert_rc 0 "pull: succeeds (resumes) with space"
cached=$(find "$VMM_HOME/cache" -name 'sha256:*' -type d)
assert_true "pull: the cached disk is whole" cmp -s "$BIG/vms/src/disk.img" "$cached/disk.img"
assert_eq "$(ls "$VMM_HOME/tmp" | wc -l)" 0 "pull: the staging directory was used up"

echo "disk-full cases run: $CASES"
t_done
