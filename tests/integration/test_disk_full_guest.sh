#!/usr/bin/env bash
# Disk full under a running guest: `vmm suspend` and a snapshot of the
# running VM on a small loop-mounted ext4 that cannot hold the memory state.
# Each must fail with one line naming the lack of space, leave no temporary
# state or half-made snapshot, and the guest must run on as if nothing had
# been asked; once space is freed, the same command succeeds and the state
# resumes.  Needs root (loop mounts).
source "$(dirname "$0")/lib.sh"
t_init
[ "$(id -u)" -eq 0 ] || t_skip "needs root to loop-mount a file system"
for t in mkfs.ext4 losetup; do command -v $t >/dev/null || t_skip "$t missing"; done
losetup -f >/dev/null 2>&1 || t_skip "no loop device can be had here"
source "$(dirname "$0")/guest_lib.sh"
MiB=$((1024 * 1024))
CASES=0

small_fs 320M
export VMM_HOME=$MNT/home

leftovers() { find "$VMM_HOME/vms" \( -name '*.tmp*' -o -name '.new-*' -o -name '.del-*' \) | wc -l; }
runs_on() { # what: the guest ticks on and vmm run is alive
	local t
	t=$(last_tick g)
	wait_console g "VMMTEST TICK $((t + 2))" 1 60 && ok "$1: the guest runs on" ||
		fail "$1: the guest runs on"
	assert_eq "$(state_of g)" running "$1: the VM is still running"
}

# 160 MiB of realistic RAM content: a state far larger than what is left free
guest_create g 256 "console=ttyS0 quiet vmmtest.fill=160"
run_bg g
wait_console g "VMMTEST READY" 1 || fail "the guest boots and fills its memory"

echo "# suspend"
fill_to 8
vmm suspend g
assert_rc 1 "suspend: refused for want of space"
assert_one_line_error "suspend: in one line"
assert_contains "$ERR" "no space left on the device" "suspend: saying so"
assert_true "suspend: no state is left" test ! -e "$VMM_HOME/vms/g/state.vmmsave"
assert_eq "$(leftovers)" 0 "suspend: no temporary files in vms/"
runs_on suspend
CASES=$((CASES + 1))

echo "# snapshot of the running VM"
vmm snapshot create g s1
assert_rc 1 "snapshot create: refused for want of space"
assert_one_line_error "snapshot create: in one line"
assert_contains "$ERR" "no space left on the device" "snapshot create: saying so"
vmm snapshot list g
assert_not_contains "$OUT" "s1" "snapshot create: no snapshot s1 is listed"
assert_eq "$(leftovers)" 0 "snapshot create: nothing half-made in vms/"
runs_on "snapshot create"
CASES=$((CASES + 1))

# room for part of the state: the save fails midway, after QEMU has written much of it
for what in "snapshot" "suspend"; do
	echo "# $what, running out of space midway"
	fill_to 40
	if [ "$what" = snapshot ]; then vmm snapshot create g s1; else vmm suspend g; fi
	assert_rc 1 "$what midway: refused for want of space"
	assert_contains "$ERR" "no space left on the device" "$what midway: saying so"
	assert_true "$what midway: no state is left" test ! -e "$VMM_HOME/vms/g/state.vmmsave"
	assert_eq "$(leftovers)" 0 "$what midway: nothing half-made in vms/"
	runs_on "$what midway"
	CASES=$((CASES + 1))
done

echo "# with space again"
rm -f "$MNT/filler"
vmm snapshot create g s1
assert_rc 0 "snapshot create succeeds"
runs_on "after the snapshot"
# room for about the whole state: the disk fills up as QEMU finishes, or at the
# copy of the disk after it; whichever, the guest must be let go only once
# QEMU's migration has ended (a `cont` before it would be undone)
ssize=$(($(stat -c %s "$VMM_HOME/vms/g/snapshots/s1/state.vmmsave") / MiB))
vmm snapshot delete g s1
for extra in -2 1 4 8; do
	echo "# snapshot with $((ssize + extra)) MiB free for a state of about $ssize MiB"
	fill_to $((ssize + extra))
	vmm snapshot create g s2
	if [ "$RC" -eq 0 ]; then
		ok "snapshot at the edge: made"
		vmm snapshot delete g s2
	else
		assert_contains "$ERR" "no space left on the device" "snapshot at the edge: refused for want of space"
		assert_eq "$(leftovers)" 0 "snapshot at the edge: nothing half-made in vms/"
	fi
	runs_on "snapshot at the edge"
	CASES=$((CASES + 1))
done
rm -f "$MNT/filler"

before=$(last_tick g)
vmm suspend g
assert_rc 0 "suspend succeeds"
run_wait g 60
assert_eq "$(state_of g)" suspended "the VM is suspended"
run_bg g
wait_console g "VMMTEST TICK $((before + 2))" 1 60 && ok "the state resumes and the counter goes on" ||
	fail "the state resumes and the counter goes on"
assert_eq "$(count g 'VMMTEST BOOT')" 1 "without a reboot"
vmm stop g
run_wait g 60

echo "disk-full cases with a running guest: $CASES"
t_done
