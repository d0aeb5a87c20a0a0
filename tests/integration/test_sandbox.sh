#!/usr/bin/env bash
# QEMU in its sandbox (DESIGN.md §8b): under root it runs as an unprivileged
# user, under seccomp, with none of vmm's environment, and gets every file
# of the host it needs already open; the guest boots, suspends, resumes
# and is snapshotted all the same.
source "$(dirname "$0")/lib.sh"
t_init
[ "$(id -u)" -eq 0 ] || t_skip "QEMU's sandbox drops root: run as root"
source "$(dirname "$0")/guest_lib.sh"

qemu_of() { pgrep -P "${RUN_PID[$1]}" -f qemu-system | head -1; }
status_field() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# credentials in vmm's environment must not reach QEMU
export TART_REGISTRY_USERNAME=tart-user TART_REGISTRY_PASSWORD=tart-secret-123
export VMM_REGISTRY_PASSWORD=vmm-secret-456 VMM_REGISTRY_HOSTNAME=127.0.0.1
expect_uid=$(id -u vmm-qemu 2>/dev/null || id -u nobody)

echo "QEMU drops root"
guest_create g 320
vm=$T_TMP/home/vms/g
chmod 0700 "$T_TMP/home" "$vm"
chmod 0600 "$vm/kernel" "$vm/initramfs" "$vm/disk.img"
assert_true "the bundle is out of reach of QEMU's user by name" \
	test "$(setpriv --reuid="$expect_uid" --regid="$expect_uid" --clear-groups \
		cat "$vm/kernel" 2>/dev/null | wc -c)" -eq 0
run_bg g
wait_console g "VMMTEST TICK 2" 1 && ok "the guest boots from files QEMU gets open" ||
	fail "the guest boots from files QEMU gets open"
pid=$(qemu_of g)
if [ -n "$pid" ]; then
	assert_eq "$(status_field "$pid" Uid | head -1)" "$expect_uid" "QEMU runs as the sandbox user"
	assert_eq "$(status_field "$pid" Gid | head -1)" "$(id -g "$expect_uid")" "... and its group"
	assert_eq "$(status_field "$pid" CapEff)" 0000000000000000 "QEMU has no capabilities"
	assert_eq "$(status_field "$pid" Seccomp)" 2 "QEMU runs under a seccomp filter"
	assert_eq "$(status_field "$pid" NoNewPrivs)" 1 "... and cannot gain privileges"
	cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline")
	assert_contains "$cmd" "obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny" \
		"every seccomp group is denied"
	envs=$(tr '\0' '\n' <"/proc/$pid/environ")
	assert_not_contains "$envs" "secret" "no password reaches QEMU's environment"
	assert_not_contains "$envs" "REGISTRY" "no registry setting reaches it"
	assert_not_contains "$envs" "HOME=" "nor vmm's home"
	assert_true "QEMU holds the VM's disk open" \
		sh -c "ls -l /proc/$pid/fd | grep -q '$vm/disk.img'"
else
	fail "QEMU is running under vmm run"
fi

echo "suspend and resume as the sandbox user"
before=$(last_tick g)
vmm suspend g
assert_rc 0 "vmm suspend exits 0"
run_wait g 60
assert_eq "$(state_of g)" suspended "the VM is suspended"
run_bg g
wait_console g "VMMTEST TICK $((before + 2))" 1 60 &&
	ok "the resumed guest counts on from where it was" ||
	fail "the resumed guest counts on from where it was"
assert_eq "$(count g 'VMMTEST BOOT')" 1 "without a reboot"
pid=$(qemu_of g)
[ -n "$pid" ] && assert_eq "$(status_field "$pid" Uid | head -1)" "$expect_uid" \
	"the resumed QEMU runs as the sandbox user too"

echo "a snapshot of the running VM"
vmm snapshot create g s1
assert_rc 0 "snapshot create of the running VM"
t=$(last_tick g)
wait_console g "VMMTEST TICK $((t + 2))" 1 60 && ok "the guest runs on after the snapshot" ||
	fail "the guest runs on after the snapshot"
assert_true "the snapshot holds a state" test -s "$vm/snapshots/s1/state.vmmsave"
vmm stop g
run_wait g 60
assert_eq "$(state_of g)" stopped "the VM stops"

echo "the user is the operator's choice"
VMM_QEMU_USER=no-such-user-here vmm run g
assert_rc 1 "an unknown VMM_QEMU_USER is refused"
assert_one_line_error "... with a one-line error"
assert_contains "$ERR" "VMM_QEMU_USER" "naming the variable"
export VMM_QEMU_USER=54321:54321
run_bg g
wait_console g "VMMTEST BOOT" 2 && ok "the guest boots as uid:gid" || fail "the guest boots as uid:gid"
pid=$(qemu_of g)
[ -n "$pid" ] && assert_eq "$(status_field "$pid" Uid | head -1)" 54321 "QEMU runs as VMM_QEMU_USER"
vmm stop g
run_wait g 60
unset VMM_QEMU_USER

echo "shared folders keep root, still under seccomp"
share=$(mktemp -d "$T_TMP/share.XXXX")
echo shared-content >"$share/f"
run_bg g --dir "$share"
wait_console g "VMMTEST BOOT" 3 && ok "the guest boots with a share" ||
	fail "the guest boots with a share"
assert_contains "$(cat "$T_TMP/g.err")" "QEMU keeps root to serve the shared folders" \
	"vmm says why QEMU keeps root"
pid=$(qemu_of g)
if [ -n "$pid" ]; then
	assert_eq "$(status_field "$pid" Uid | head -1)" 0 "QEMU serving a share runs as root"
	assert_eq "$(status_field "$pid" Seccomp)" 2 "under seccomp all the same"
	assert_not_contains "$(tr '\0' '\n' <"/proc/$pid/environ")" "secret" \
		"with no password in its environment"
fi
vmm stop g
run_wait g 60
t_done
