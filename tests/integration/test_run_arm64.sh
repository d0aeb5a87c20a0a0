#!/usr/bin/env bash
# Tart's Linux images are arm64 UEFI disks: on an x86_64 host vmm runs them
# on qemu-system-aarch64 (virt) with AAVMF under TCG.  A bundle with arm64
# in its config boots the firmware on the serial console, suspends, resumes
# and stops.
source "$(dirname "$0")/lib.sh"
t_init
command -v qemu-system-aarch64 >/dev/null || t_skip "qemu-system-aarch64 is not installed (make deps)"
ls /usr/share/AAVMF/AAVMF_CODE.fd >/dev/null 2>&1 || t_skip "AAVMF is not installed (make deps)"
source "$(dirname "$0")/guest_lib.sh"

home=$T_TMP/home/vms
"$VMM" create a --linux --disk-size 1 >/dev/null || fail "create"
# what `tart pull` leaves: a compact config for an arm64 Linux VM
sed -i 's/"arch" : "[a-z0-9]*"/"arch" : "arm64"/' "$home/a/config.json"
"$VMM" set a --memory 512 --cpu 1 >/dev/null
run_bg a
wait_console a "UEFI firmware" 1 && ok "AAVMF starts on the serial console" || fail "AAVMF starts"
wait_console a "BdsDxe" 1 && ok "and looks for something to boot" || fail "AAVMF boot manager"
if [ "$(uname -m)" != aarch64 ]; then
	assert_contains "$(cat "$T_TMP/a.err")" "the guest's architecture differs from the host's" \
		"another architecture runs under TCG, and vmm says so"
fi
assert_true "efivars.fd comes from AAVMF's template" test "$(stat -c %s "$home/a/efivars.fd")" \
	-eq "$(stat -c %s /usr/share/AAVMF/AAVMF_VARS.fd)"
vmm suspend a
assert_rc 0 "suspend an arm64 guest"
run_wait a 60
assert_eq "$RUN_RC" 0 "vmm run exits 0"
assert_eq "$(state_of a)" suspended "it is suspended"
run_bg a
for _ in $(seq 1 100); do [ -e "$home/a/state.vmmsave" ] || break; sleep 0.2; done
assert_true "it resumes (the state is consumed)" test ! -e "$home/a/state.vmmsave"
assert_contains "$(cat "$T_TMP/a.err")" "resuming VM..." "run says so"
assert_eq "$(state_of a)" running "and runs"
vmm stop a --timeout 5
assert_rc 0 "stop"
run_wait a 30
assert_eq "$(state_of a)" stopped "it is stopped"
t_done
