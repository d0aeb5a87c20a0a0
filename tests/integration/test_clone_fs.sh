#!/usr/bin/env bash
# Clones on real file systems, loop-mounted from images this test makes:
#   btrfs and XFS (reflink=1): the clone shares every extent with the source
#     (filefrag's "shared" flag) and free space barely moves;
#   ext4: the fallback keeps holes (allocates no more than the source) and
#     the bytes are identical; a clone that runs out of space fails with a
#     clear error and leaves nothing behind;
# and Tart's MAC rule: a new MAC, except that a suspended source (a
# state.vmmsave file) keeps its MAC and state.  Needs root (losetup, mount).
. "$(dirname "$0")/lib.sh"
t_init

[ "$(id -u)" -eq 0 ] || t_skip "needs root to loop-mount file systems"
for t in mkfs.btrfs mkfs.xfs mkfs.ext4 filefrag losetup python3; do
	command -v "$t" >/dev/null || t_skip "$t missing (make deps installs it)"
done
losetup -f >/dev/null 2>&1 || t_skip "no loop device can be had here"

MiB=$((1 << 20))

# mkfs_mount TYPE SIZE_MIB: make an image, loop-mount it (unmounted at
# exit; the loop device goes with it); sets MNT
mkfs_mount() {
	local type=$1 size=$2 img=$T_TMP/$1.img
	MNT=$T_TMP/mnt-$1
	truncate -s "${size}M" "$img"
	case $type in
	btrfs) mkfs.btrfs -q -f "$img" >/dev/null 2>&1 ;;
	xfs) mkfs.xfs -q -f -m reflink=1 "$img" >/dev/null 2>&1 ;;
	ext4) mkfs.ext4 -q -F -m 0 "$img" >/dev/null 2>&1 ;; # no blocks reserved for root
	esac || { echo "mkfs.$type failed" >&2; return 1; }
	mkdir -p "$MNT"
	mount -o loop "$img" "$MNT" || return 1
	t_defer "umount $MNT || umount -l $MNT"
}

# write_random FILE: 8 MiB of random data at each of 8 scattered offsets,
# three of them past 4 GiB (64 MiB in all)
write_random() {
	python3 - "$1" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
for gib in (0.001, 0.7, 1.5, 2.2, 3.9, 4.3, 5.5, 7.3):  # the disk is 8 GB (7.45 GiB)
    off = int(gib * (1 << 30)) // 65536 * 65536
    os.pwrite(fd, os.urandom(8 << 20), off)
os.fsync(fd)
PY
}

mac_of() { sed -n 's/.*"macAddress" : "\([^"]*\)".*/\1/p' "$1/config.json"; }
avail() { sync -f "$1"; df -B1 --output=avail "$1" | tail -1 | tr -d ' '; }
# extents of FILE that filefrag flags as shared, and all its extents
shared_extents() { filefrag -v "$1" | grep -c 'shared'; }
all_extents() { filefrag -v "$1" | grep -cE '^ *[0-9]+:'; }

reflink_fs() { # TYPE
	local type=$1 mnt
	echo "# $type (reflink)"
	if ! mkfs_mount "$type" 1024; then
		fail "$type: could not make and mount a loop file system"
		return
	fi
	mnt=$MNT
	export VMM_HOME=$mnt/home
	vmm create src --linux --disk-size 8
	assert_rc 0 "$type: create"
	local src=$VMM_HOME/vms/src
	write_random "$src/disk.img"
	local mac_src
	mac_src=$(mac_of "$src")
	local before after
	before=$(avail "$mnt")
	vmm clone src dst
	assert_rc 0 "$type: clone"
	after=$(avail "$mnt")
	local dst=$VMM_HOME/vms/dst
	assert_true "$type: bytes identical" sparse_cmp "$src/disk.img" "$dst/disk.img"
	local shared total
	shared=$(shared_extents "$dst/disk.img")
	total=$(all_extents "$dst/disk.img")
	assert_true "$type: every data extent of the clone is shared ($shared of $total)" \
		test "$shared" -gt 0 -a "$shared" -eq "$total"
	assert_true "$type: the source's extents are shared too" test "$(shared_extents "$src/disk.img")" -gt 0
	assert_true "$type: free space moved by $(((before - after) / 1024)) KiB for 64 MiB of data (< 4 MiB)" \
		test $((before - after)) -lt $((4 * MiB))
	assert_true "$type: new MAC for a local clone" test "$(mac_of "$dst")" != "$mac_src"
	assert_true "$type: nvram.bin equal" cmp -s "$src/nvram.bin" "$dst/nvram.bin"

	# suspended source: a fork keeps MAC and state, shared as well
	python3 -c "import os,sys; open(sys.argv[1],'wb').write(os.urandom(4<<20))" "$src/state.vmmsave"
	sync -f "$mnt"
	vmm clone src fork
	assert_rc 0 "$type: clone a suspended VM"
	local fork=$VMM_HOME/vms/fork
	assert_eq "$(mac_of "$fork")" "$mac_src" "$type: the fork keeps the MAC"
	assert_true "$type: config.json byte for byte" cmp -s "$src/config.json" "$fork/config.json"
	assert_true "$type: state carried" cmp -s "$src/state.vmmsave" "$fork/state.vmmsave"
	assert_true "$type: state shared, not copied" test "$(shared_extents "$fork/state.vmmsave")" -gt 0
	vmm list
	assert_true "$type: both suspended" test "$(grep -c suspended <<<"$OUT")" -eq 2

	# --force over an existing clone reflinks as well
	rm "$src/state.vmmsave"
	vmm clone src dst --force
	assert_rc 0 "$type: clone --force"
	assert_true "$type: replaced clone shares extents" test "$(shared_extents "$VMM_HOME/vms/dst/disk.img")" -gt 0
	assert_eq "$(ls -A "$VMM_HOME/tmp")" "" "$type: tmp/ empty afterwards"
	unset VMM_HOME
}

ext4_fallback() {
	echo "# ext4 (sparse copy fallback)"
	local mnt
	if ! mkfs_mount ext4 512; then
		fail "ext4: could not make and mount a loop file system"
		return
	fi
	mnt=$MNT
	export VMM_HOME=$mnt/home
	vmm create src --linux --disk-size 8
	local src=$VMM_HOME/vms/src
	write_random "$src/disk.img"
	vmm clone src dst
	assert_rc 0 "ext4: clone"
	local dst=$VMM_HOME/vms/dst
	assert_true "ext4: bytes identical" sparse_cmp "$src/disk.img" "$dst/disk.img"
	assert_true "ext4: clone allocates $(($(allocated "$dst/disk.img") / MiB)) MiB, source $(($(allocated "$src/disk.img") / MiB)) MiB (holes kept)" \
		test "$(allocated "$dst/disk.img")" -le "$(allocated "$src/disk.img")"
	assert_eq "$(stat -c %s "$dst/disk.img")" 8000000000 "ext4: apparent size kept"
	assert_true "ext4: no extent shared (no reflink here)" test "$(shared_extents "$dst/disk.img")" -eq 0
	assert_true "ext4: new MAC" test "$(mac_of "$dst")" != "$(mac_of "$src")"

	echo "# ext4: running out of space mid-clone"
	vmm delete dst
	# fill the file system so that less than the disk's 64 MiB remains
	local free
	free=$(avail "$mnt")
	fallocate -l $((free - 24 * MiB)) "$mnt/filler"
	vmm clone src full
	assert_rc 1 "ext4: clone on a full file system: exit 1"
	assert_one_line_error "ext4: one-line error"
	assert_contains "$ERR" "no space left on the device" "ext4: says the device is full"
	assert_contains "$ERR" 'clone "src" to "full"' "ext4: says which clone failed"
	assert_true "ext4: nothing in vms/ for it" test ! -e "$VMM_HOME/vms/full"
	assert_eq "$(ls -A "$VMM_HOME/tmp")" "" "ext4: staging removed"
	assert_eq "$(ls -A "$VMM_HOME/vms")" "src" "ext4: vms/ as before"
	rm "$mnt/filler"
	vmm clone src full
	assert_rc 0 "ext4: with space again the clone succeeds"
	unset VMM_HOME
}

reflink_fs btrfs
reflink_fs xfs
ext4_fallback
t_done
