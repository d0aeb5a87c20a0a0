#!/usr/bin/env bash
# UEFI boot: a GPT disk built without mounting anything (sfdisk + mtools,
# systemd-boot as EFI/BOOT/BOOTX64.EFI) reaches the guest's counter under
# OVMF with a per-VM efivars.fd; missing firmware is refused up front; the
# guest suspends and resumes (UEFI flash included) and, as root, runs on a
# Linux bridge through a tap.
source "$(dirname "$0")/lib.sh"
t_init
source "$(dirname "$0")/guest_lib.sh"

home=$T_TMP/home/vms
"$VMM" create u --linux --disk-size 1 >/dev/null || fail "create --linux"
"$VMM" set u --memory 256 --cpu 1 --disk "$guest_dir/uefi-disk.img" >/dev/null || fail "set --disk"
nvram=$(sha256sum "$home/u/nvram.bin")

echo "missing firmware"
before=$(ls "$home/u")
VMM_FIRMWARE=/nonexistent/OVMF_CODE.fd:/nonexistent/OVMF_VARS.fd vmm run u
assert_rc 1 "a missing firmware is refused"
assert_one_line_error "with one line"
assert_contains "$ERR" "UEFI firmware \`/nonexistent/OVMF_CODE.fd\`" "naming it"
assert_eq "$(ls "$home/u")" "$before" "the bundle is untouched"

bridge=""
if [ "$(id -u)" -eq 0 ] && command -v ip >/dev/null && ip link add vmmtbr0 type bridge 2>/dev/null; then
	bridge=vmmtbr0
	t_defer "ip link del vmmtbr0"
	ip link set vmmtbr0 up
fi

echo "UEFI boot${bridge:+ on bridge $bridge}"
run_bg u ${bridge:+--net-bridged $bridge}
wait_console u "VMMTEST TICK 2" 1 && ok "OVMF boots systemd-boot, the kernel and the counter" ||
	fail "UEFI boot reaches the counter"
assert_true "efivars.fd was made from the firmware's template" test -s "$home/u/efivars.fd"
assert_eq "$(sha256sum "$home/u/nvram.bin")" "$nvram" "Tart's nvram.bin is carried untouched"
if [ -n "$bridge" ]; then
	taps=$(ip -o link show master "$bridge" | grep -c 'vmmt[0-9]')
	assert_eq "$taps" 1 "a tap of the VM is on the bridge"
fi

echo "suspend and resume a UEFI guest"
vmm suspend u
assert_rc 0 "suspend"
run_wait u 30
assert_eq "$RUN_RC" 0 "vmm run exits 0"
before=$(last_tick u)
run_bg u ${bridge:+--net-bridged $bridge}
wait_console u "VMMTEST TICK $((before + 1))" 1 && ok "it resumes where it was" || fail "UEFI resume"
assert_eq "$(count u "VMMTEST BOOT")" 1 "without a second boot"
vmm stop u --timeout 30
assert_rc 0 "stop"
run_wait u 30
assert_eq "$(count u "VMMTEST POWERBUTTON")" 1 "through ACPI"
if [ -n "$bridge" ]; then
	assert_eq "$(ip -o link show master "$bridge" | grep -c 'vmmt[0-9]')" 0 "the tap is gone"

	echo "vmm ip of a guest on the bridge"
	ip addr add 10.99.0.1/24 dev "$bridge"
	guest_create n 256 "console=ttyS0 quiet vmmtest.ip=10.99.0.2/24 vmmtest.ping=10.99.0.1"
	run_bg n --net-bridged "$bridge"
	wait_console n "VMMTEST TICK 1" 1 || fail "boot on the bridge"
	vmm ip n --wait 60
	assert_rc 0 "vmm ip finds it"
	assert_eq "$OUT" "10.99.0.2" "the guest's address"
	vmm stop n
	run_wait n 30
	vmm ip n
	assert_rc 1 "no address once stopped"
	assert_eq "$ERR" "vmm: no IP address found, is your VM running?" "Tart's text"
fi
t_done
