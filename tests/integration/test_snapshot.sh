#!/usr/bin/env bash
# Snapshots of stopped and suspended VMs: create, list, restore, delete, export, import.
. "$(dirname "$0")/lib.sh"
t_init
V=$VMM_HOME/vms
write_disk() { printf '%s' "$2" | dd of="$V/$1/disk.img" bs=1 seek=1048576 conv=notrunc status=none; }
read_disk() { dd if="$V/$1/disk.img" bs=1 skip=1048576 count="$2" status=none; }

vmm create vm --linux --disk-size 1
write_disk vm "version-one"
vmm snapshot create vm one
assert_rc 0 "snapshot create"
assert_true "snapshot is a bundle of its own" test -f "$V/vm/snapshots/one/config.json" -a -f "$V/vm/snapshots/one/disk.img"
write_disk vm "version-two"
vmm snapshot list vm
assert_rc 0 "snapshot list"
assert_contains "$OUT" "one" "list shows the snapshot"
assert_contains "$(head -1 <<<"$OUT")" "Name Created" "list has Tart-style headers"
vmm snapshot list vm --format json
assert_contains "$OUT" '"Memory" : false' "json list says no memory state"

vmm snapshot restore vm one
assert_rc 0 "snapshot restore"
assert_eq "$(read_disk vm 11)" "version-one" "restore brings the disk back"
vmm snapshot list vm -q 2>/dev/null
vmm snapshot list vm
assert_contains "$OUT" "one" "the snapshot stays after restore"
vmm list -q
assert_eq "$OUT" "vm" "snapshots are not listed as VMs"

vmm snapshot create vm one
assert_rc 1 "a second snapshot of the same name is refused"
assert_contains "$ERR" 'already has a snapshot "one"' "... saying so"
vmm snapshot restore vm nope
assert_rc 2 "restore of a missing snapshot exits 2"
vmm snapshot create vm ../evil
assert_rc 64 "bad snapshot names are usage errors"
vmm snapshot create missing x
assert_rc 2 "snapshot of a missing VM exits 2"

# a suspended VM's snapshot carries its memory state; restoring a snapshot
# without memory drops the VM's (it belongs to another disk)
printf 'memory-A' >"$V/vm/state.vmmsave"
vmm snapshot create vm suspended
assert_true "memory state carried" cmp -s "$V/vm/snapshots/suspended/state.vmmsave" <(printf 'memory-A')
vmm snapshot list vm --format json
assert_contains "$OUT" '"Memory" : true' "list marks the memory state"
vmm snapshot restore vm one
assert_true "restoring a disk-only snapshot drops the VM's memory state" test ! -e "$V/vm/state.vmmsave"
vmm get vm
assert_contains "$OUT" "stopped" "... and the VM is stopped"
vmm snapshot restore vm suspended
assert_true "restoring a suspended snapshot brings its memory" cmp -s "$V/vm/state.vmmsave" <(printf 'memory-A')
vmm get vm
assert_contains "$OUT" "suspended" "... and the VM is suspended again"

# export and import as a portable archive
vmm snapshot export vm one "$T_TMP/one.tar.zst"
assert_rc 0 "snapshot export"
assert_contains "$(tar --zstd -tf "$T_TMP/one.tar.zst")" "disk.img" "GNU tar reads the snapshot archive"
vmm create other --linux --disk-size 1
vmm snapshot import "$T_TMP/one.tar.zst" other imported
assert_rc 0 "snapshot import into another VM"
vmm snapshot restore other imported
assert_eq "$(read_disk other 11)" "version-one" "imported snapshot restores the right disk"

vmm snapshot delete vm one
assert_rc 0 "snapshot delete"
assert_true "deleted snapshot is gone" test ! -e "$V/vm/snapshots/one"
vmm snapshot delete vm one
assert_rc 2 "deleting it again exits 2"
assert_eq "$(ls -A "$V/vm/snapshots" | grep -c '^\.')" "0" "no staging left in snapshots/"

# Killed at the worst moments (VMM_TEST_PAUSE holds the command there, then
# SIGKILL): the VM is its old or its new self with all its snapshots, and
# the next command tidies up what the killed one left.
export VMM_TEST_PAUSE_DIR=$T_TMP/pause
mkdir -p "$VMM_TEST_PAUSE_DIR"
kill_at() { # point vmm-args...: run vmm held at point, SIGKILL it there; 1 if it never got there
	local point=$1 pid
	shift
	rm -f "$VMM_TEST_PAUSE_DIR/$point".*
	VMM_TEST_PAUSE=$point "$VMM" "$@" >/dev/null 2>&1 &
	pid=$!
	for _ in $(seq 300); do
		[ -e "$VMM_TEST_PAUSE_DIR/$point.reached" ] && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.1
	done
	if [ -e "$VMM_TEST_PAUSE_DIR/$point.reached" ]; then
		kill -KILL $pid
		wait $pid 2>/dev/null
		return 0
	fi
	wait $pid 2>/dev/null
	return 1
}
hidden() { # what a user must never find: hidden work in vms/ and snapshots/
	(cd "$V" && ls -A | grep '^\.'; ls -A "$1/snapshots" 2>/dev/null | grep '^\.') | tr '\n' ' '
}
snaps() { ls "$V/$1/snapshots" 2>/dev/null | tr '\n' ' '; }
vmm create k --linux --disk-size 1
write_disk k "snapshot-k"
vmm snapshot create k s1
vmm snapshot create k s2
write_disk k "current-kk"
"$VMM" set k --cpu 3
for point in snapshot-restore-staged snapshot-restore-swapped; do
	want=current-kk cpus=3
	[ $point = snapshot-restore-swapped ] && want=snapshot-k cpus=
	kill_at $point snapshot restore k s1 && ok "restore held and killed at $point" ||
		fail "restore never reached $point"
	assert_true "a hidden journal says what to finish ($(hidden k))" test -n "$(hidden k)"
	vmm list
	assert_rc 0 "list works after the kill"
	assert_eq "$(read_disk k 10)" "$want" "the disk is the ${want%-k*} one"
	assert_true "config.json is the ${want%-k*} one too" \
		test "$(grep -c '"cpuCount" : 3' "$V/k/config.json")" = "$([ -n "$cpus" ] && echo 1 || echo 0)"
	assert_eq "$(snaps k)" "s1 s2 " "every snapshot is still there"
	assert_eq "$(hidden k)" "" "nothing hidden is left"
	vmm snapshot restore k s1
	assert_rc 0 "the next restore succeeds"
	assert_eq "$(read_disk k 10)" "snapshot-k" "with the snapshot's disk"
	write_disk k "current-kk"
	"$VMM" set k --cpu 3
done
kill_at snapshot-publish snapshot create k s3 && ok "create held and killed before publishing" ||
	fail "create never reached snapshot-publish"
assert_true "it left its staging ($(hidden k))" test -n "$(hidden k)"
assert_eq "$(snaps k)" "s1 s2 " "and no snapshot s3"
vmm snapshot create k s3
assert_rc 0 "the next create succeeds"
assert_eq "$(hidden k)" "" "and collects the staging"
kill_at snapshot-delete-hidden snapshot delete k s3 && ok "delete held and killed after hiding s3" ||
	fail "delete never reached snapshot-delete-hidden"
assert_eq "$(snaps k)" "s1 s2 " "s3 is gone from sight"
vmm snapshot delete k s3
assert_rc 2 "deleting s3 again says it does not exist"
assert_eq "$(hidden k)" "" "and collects what the killed delete left"

# a running VM is refused (the POSIX lock on config.json marks it running)
# hold the POSIX running lock from another process, as `vmm run` does
python3 - "$V/other/config.json" "$T_TMP/locked" <<'PY' &
import fcntl, sys, time
f = open(sys.argv[1], "r+"); fcntl.lockf(f, fcntl.LOCK_EX); open(sys.argv[2], "w").close(); time.sleep(60)
PY
locker=$!
t_defer "kill $locker"
for _ in $(seq 100); do [ -e "$T_TMP/locked" ] && break; sleep 0.1; done
vmm snapshot restore other imported
assert_rc 1 "restore on a running VM refused"
assert_contains "$ERR" 'VM "other" is running' "... with Tart's text"
kill $locker
wait $locker 2>/dev/null

# clone VM@SNAP: a new VM from a snapshot (a disk-only snapshot gets a new MAC;
# a suspended one keeps MAC and memory: a fork)
mac() { sed -n 's/.*"macAddress" : "\(.*\)".*/\1/p' "$1"; }
vmm clone other@imported fromsnap
assert_rc 0 "clone VM@SNAP"
assert_eq "$(read_disk fromsnap 11)" "version-one" "the clone has the snapshot's disk"
assert_true "a disk-only snapshot clone gets a new MAC" \
	test "$(mac "$V/fromsnap/config.json")" != "$(mac "$V/other/snapshots/imported/config.json")"
vmm clone vm@suspended forked
assert_true "a suspended snapshot clone carries the memory" cmp -s "$V/forked/state.vmmsave" <(printf 'memory-A')
assert_eq "$(mac "$V/forked/config.json")" "$(mac "$V/vm/snapshots/suspended/config.json")" \
	"... and keeps its MAC"
vmm clone other@nope x
assert_rc 2 "clone of a missing snapshot exits 2"
assert_contains "$ERR" 'has no snapshot "nope"' "... naming it"
vmm export other@imported "$T_TMP/via-export.tar.zst"
assert_rc 0 "export VM@SNAP"

# push and pull snapshots through a real registry
. "$(dirname "$0")/registry.sh"
if reg_have_registry; then
	registry_start REG
	vmm snapshot push other imported "$REG/snaps/other:imported" --insecure
	assert_rc 0 "snapshot push"
	skopeo inspect --tls-verify=false --raw "docker://$REG/snaps/other:imported" >"$T_TMP/m.json" 2>&1
	assert_contains "$(cat "$T_TMP/m.json")" 'application\/vnd.cirruslabs.tart.disk.v2' \
		"skopeo reads the pushed snapshot as a Tart image"
	vmm push other@imported "$REG/snaps/other:again" --insecure
	assert_rc 0 "push VM@SNAP"
	# this test's memory state is a stand-in, not a real state file: push refuses it
	vmm push vm@suspended "$REG/snaps/vm:suspended" --insecure
	assert_rc 1 "a snapshot with a corrupt memory state is not pushed"
	assert_contains "$ERR" "state.vmmsave" "... naming the state file"
	vmm create third --linux --disk-size 1
	vmm snapshot pull "$REG/snaps/other:imported" third pulled --insecure
	assert_rc 0 "snapshot pull into another VM"
	vmm snapshot restore third pulled
	assert_eq "$(read_disk third 11)" "version-one" "the pulled snapshot restores the disk"
	vmm snapshot pull "$REG/snaps/other:imported" third pulled --insecure
	assert_rc 1 "pulling onto an existing snapshot name is refused"
	vmm snapshot push other nope "$REG/snaps/other:nope" --insecure
	assert_rc 2 "pushing a missing snapshot exits 2"
else
	echo "  (registry part skipped: docker-registry or python3-cryptography missing)"
fi
t_done
