#!/usr/bin/env bash
# A resume killed or cut off by a power loss at its two critical moments
# (issue 10, defect 5).  `vmm run` of a suspended VM loads the state into a
# paused QEMU, moves the state aside and says `cont`:
#   - killed between the move and `cont`, the guest never ran: the state is
#     still the VM's, and the next run resumes it (it used to be deleted);
#   - killed after `cont` once the guest has written its disk, the state
#     is not the VM's any more: the next run boots, never resuming memory
#     older than the disk;
#   - a power cut at either moment (FS_IOC_SHUTDOWN on a loop-mounted XFS)
#     must never bring the old state back over a disk the guest has written
#     and flushed (the move used to be synced only after `cont`).
# The guest keeps a counter in memory and on its disk and says
# "VMMTEST DISKCOUNTER MISMATCH" when they disagree.
# The moments are held with VMM_TEST_PAUSE (resume-before-cont,
# resume-after-cont), then vmm run is SIGKILLed there.
source "$(dirname "$0")/lib.sh"
t_init
source "$(dirname "$0")/guest_lib.sh"

export VMM_TEST_PAUSE_DIR=$T_TMP/pause
mkdir -p "$VMM_TEST_PAUSE_DIR"
CMDLINE="console=ttyS0 quiet vmmtest.fill=16 vmmtest.diskcounter=/dev/vda"

vm_dir() { echo "$VMM_HOME/vms/$1"; }
disk_counter() { # the counter the guest last wrote to its disk (through the host's page cache)
	dd if="$(vm_dir "$1")/disk.img" bs=512 skip=2048 count=1 status=none | tr -dc 0-9
}
# wait_writes NAME FROM: until the guest has written its counter twice since it read FROM (so
# that the disk is ahead of whatever the memory it resumed from was about to write)
wait_writes() {
	local end=$((SECONDS + 60)) seen=$2 now
	WRITES=0
	while [ $WRITES -lt 2 ] && [ $SECONDS -lt $end ]; do
		now=$(disk_counter "$1")
		[ "$now" != "$seen" ] && WRITES=$((WRITES + 1)) seen=$now
		sleep 0.1
	done
}
# counted NAME: wait until the guest of this run has counted twice more on its disk
counted() {
	local n
	n=$(count "$1" "VMMTEST DISKCOUNTER [0-9]")
	wait_console "$1" "VMMTEST DISKCOUNTER [0-9]" $((n + 2)) || fail "$1 counts on its disk"
}
states() { (cd "$(vm_dir "$1")" && ls -d state.vmmsave* 2>/dev/null | tr '\n' ' '); }

# boot NAME: boot (or resume) until the guest has counted past what its disk holds, then suspend
boot_and_suspend() {
	local from
	from=$(disk_counter "$1")
	run_bg "$1"
	wait_console "$1" "VMMTEST DISKCOUNTER $((${from:-0} + 2))" 1 || fail "$1 counts on its disk"
	vmm suspend "$1"
	assert_rc 0 "suspend $1"
	run_wait "$1" 60
}

# hold_run NAME POINT: vmm run NAME held at POINT; QEMU_PID is its QEMU
hold_run() {
	rm -f "$VMM_TEST_PAUSE_DIR/$2".*
	VMM_TEST_PAUSE=$2 run_bg "$1"
	local end=$((SECONDS + GUEST_TIMEOUT))
	while [ ! -e "$VMM_TEST_PAUSE_DIR/$2.reached" ]; do
		if [ $SECONDS -gt $end ] || ! kill -0 "${RUN_PID[$1]}" 2>/dev/null; then
			fail "vmm run $1 never reached $2: $(tail -2 "$T_TMP/$1.err")"
			return 1
		fi
		sleep 0.1
	done
	QEMU_PID=$(pgrep -P "${RUN_PID[$1]}" -f qemu-system || true)
}

# kill_run NAME: SIGKILL the held vmm run and wait for its QEMU to die with it
kill_run() {
	kill -KILL "${RUN_PID[$1]}"
	wait "${RUN_PID[$1]}" 2>/dev/null
	RUN_PID[$1]=""
	for _ in $(seq 100); do
		[ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null || return 0
		sleep 0.1
	done
	fail "QEMU $QEMU_PID outlived its vmm run"
}

# the next run of NAME: "resumed" or "booted" in OUTCOME, once the guest has counted
next_run() {
	local boots
	boots=$(count "$1" "VMMTEST BOOT")
	run_bg "$1"
	OUTCOME=none
	local end=$((SECONDS + GUEST_TIMEOUT)) lines
	lines=$(wc -l <"$T_TMP/$1.console")
	while [ $SECONDS -lt $end ] && kill -0 "${RUN_PID[$1]}" 2>/dev/null; do
		if [ "$(count "$1" "VMMTEST BOOT")" -gt "$boots" ]; then
			OUTCOME=booted
			break
		fi
		if tail -n +$((lines + 1)) "$T_TMP/$1.console" | grep -a -q "VMMTEST DISKCOUNTER [0-9]"; then
			OUTCOME=resumed
			break
		fi
		sleep 0.2
	done
	MISMATCHES=0
	[ $OUTCOME = resumed ] || return 0 # a fresh boot starts counting at 0, whatever the disk says
	sleep 1                           # a tick more: a resumed guest checks its disk on every tick
	MISMATCHES=$(tail -n +$((lines + 1)) "$T_TMP/$1.console" | grep -a -c "DISKCOUNTER MISMATCH")
}

echo "killed between moving the state aside and cont: the state is kept and resumes"
guest_create g 256 "$CMDLINE"
boot_and_suspend g
c=$(disk_counter g)
hold_run g resume-before-cont && ok "vmm run held just before cont"
assert_true "the state is out of the name state.vmmsave ($(states g))" test ! -e "$(vm_dir g)/state.vmmsave"
kill_run g
assert_eq "$(state_of g)" suspended "after the kill, g is suspended (its guest never ran)"
assert_eq "$(disk_counter g)" "$c" "its disk is as the state left it"
next_run g
assert_eq "$OUTCOME" resumed "the next run resumes the state instead of booting"
assert_eq "$MISMATCHES" 0 "memory and disk agree"
vmm suspend g
run_wait g 60

echo "killed after cont, once the guest has written its disk: the state is dropped"
c=$(disk_counter g)
hold_run g resume-after-cont && ok "vmm run held just after cont"
wait_writes g "$c"
assert_eq "$WRITES" 2 "the guest ran and wrote its disk ($c, now $(disk_counter g))"
kill_run g
assert_eq "$(state_of g)" stopped "after the kill, g is stopped"
next_run g
assert_eq "$OUTCOME" booted "the next run boots: memory older than the disk never comes back"
assert_eq "$(states g)" "" "no state file is left"
vmm stop g --timeout 5
run_wait g 30

# Power cuts: the home on a loop-mounted XFS, cut by FS_IOC_SHUTDOWN without
# a log flush (as tests/tools/killtest.py --power-loss), then mounted again.
if [ "$(id -u)" -ne 0 ] || ! command -v mkfs.xfs >/dev/null || ! losetup -f >/dev/null 2>&1; then
	echo "power cuts: skipped (needs root, mkfs.xfs and a loop device)"
	[ -n "${CI:-}" ] && fail "power cuts could not run in CI"
	t_done
fi
img=$T_TMP/xfs.img MNT=$T_TMP/xfs
truncate -s 2G "$img" && mkfs.xfs -q -f "$img" && mkdir -p "$MNT" && mount -o loop "$img" "$MNT" ||
	fail "make the file system for power cuts"
t_defer "umount $MNT || umount -l $MNT"
export VMM_HOME=$MNT/home
power_cut() {
	python3 - "$MNT" <<'EOF'
import fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
fcntl.ioctl(fd, 0x8004587D, struct.pack("I", 2))  # FS_IOC_SHUTDOWN, NOLOGFLUSH
EOF
}
remount() {
	for _ in $(seq 50); do umount "$MNT" 2>/dev/null && break; sleep 0.2; done
	mount -o loop "$img" "$MNT"
}
flush_disk() { # what QEMU does when the guest flushes: fdatasync the disk image
	python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fdatasync(fd)' "$1"
}

guest_create p 256 "$CMDLINE"
boot_and_suspend p
for point in resume-before-cont resume-after-cont; do
	echo "power cut at $point"
	sync
	c=$(disk_counter p)
	hold_run p $point || continue
	if [ $point = resume-after-cont ]; then
		wait_writes p "$c"
		flush_disk "$(vm_dir p)/disk.img"
		assert_eq "$WRITES" 2 "the guest wrote and flushed its disk ($c, now $(disk_counter p))"
	fi
	power_cut
	kill_run p
	remount
	written=$(disk_counter p)
	next_run p
	if [ $point = resume-after-cont ]; then
		assert_eq "$OUTCOME" booted "the disk holds the guest's later writes ($written): the next run boots"
	else
		assert_true "the next run boots or resumes ($OUTCOME)" test "$OUTCOME" != none
	fi
	assert_eq "$MISMATCHES" 0 "and never resumes memory older than the disk"
	counted p
	vmm suspend p
	assert_rc 0 "suspend again"
	run_wait p 60
done
vmm stop p
t_done
