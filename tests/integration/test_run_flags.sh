#!/usr/bin/env bash
# Tart's `run` flags on real guests: --disk (a read-only and a writable data
# disk, an installer ISO booted under OVMF as a CD-ROM), --root-disk-opts,
# --dir (9p: a share, a read-only one, named shares under one tag, tags of
# their own), --serial, the accepted no-ops, Tart's signals (SIGUSR2 asks
# the guest to stop, SIGUSR1 cannot suspend a VM with shares, SIGQUIT quits
# and gives the terminal back), a state refused when resumed with other
# devices; and the bad input: one line, Tart's exit code, nothing changed.
source "$(dirname "$0")/lib.sh"
t_init
source "$(dirname "$0")/guest_lib.sh"

vms=$VMM_HOME/vms
sha() { sha256sum "$1" | cut -d' ' -f1; }
as_root() { SSH_USER=root ssh_guest "$@" </dev/null; }

guest_net_create g 256 vmmtest.mount9p=com.apple.virtio-fs.automount || fail "create g"
mkdir -p "$T_TMP/a" "$T_TMP/b" "$T_TMP/plain" "$T_TMP/rodir"
echo "from the host" >"$T_TMP/a/hello.txt"
echo "read me" >"$T_TMP/b/ro.txt"
echo "plain share" >"$T_TMP/plain/p.txt"
echo "read-only share" >"$T_TMP/rodir/r.txt"
head -c 4194304 /dev/urandom >"$T_TMP/ro.img"
truncate -s 8M "$T_TMP/rw.img"
ro_sha=$(sha "$T_TMP/ro.img")
# the writable disk is a block device (a loop device on rw.img) where this can be had
rw=$T_TMP/rw.img
if [ "$(id -u)" -eq 0 ] && loop=$(losetup -f --show "$T_TMP/rw.img" 2>/dev/null); then
	t_defer "losetup -d $loop"
	rw=$loop
fi

echo "bad input: one line, Tart's exit code, nothing changed"
before=$(ls -A "$vms/g"; cat "$vms/g/config.json")
bad() { # rc description args...
	local want=$1 what=$2
	shift 2
	vmm run g "$@"
	assert_rc "$want" "$what: exit $want"
	assert_one_line_error "$what: one line"
}
bad 1 "a missing disk image" --disk "$T_TMP/nope.img"
assert_eq "$ERR" "vmm: disk image \`$T_TMP/nope.img\`: no such file or directory" "naming it"
bad 1 "a missing disk image with options" --disk "$T_TMP/nope.img:ro,sync=none"
bad 1 "a shared folder that does not exist" --dir "$T_TMP/nodir"
assert_eq "$ERR" "vmm: shared folder \`$T_TMP/nodir\`: no such file or directory" "naming it"
bad 1 "a shared folder that is a file" --dir "$T_TMP/a/hello.txt"
bad 1 "an unknown --root-disk-opts option" --root-disk-opts ro,fast
assert_contains "$ERR" 'unsupported disk option "fast"' "naming it"
bad 1 "a bad sync mode" --root-disk-opts sync=sometimes
assert_contains "$ERR" 'unsupported disk image synchronization mode: "sometimes"' "Tart's text"
bad 1 "caching=uncached on a disk of decimal GB" --root-disk-opts caching=uncached
assert_contains "$ERR" "not a multiple of 4096" "says why"
bad 64 "two unnamed shares with one tag" --dir "$T_TMP/a" --dir "$T_TMP/b"
assert_contains "$ERR" "invalid --dir syntax: for multiple directory shares each one of them should be named" "Tart's text"
bad 64 "--nested under TCG" --nested
assert_contains "$ERR" "--nested: nested virtualization needs KVM" "says it needs KVM"
cp "$T_TMP/ro.img" "$T_TMP/debian-12-arm64.iso"
bad 64 "an arm64 ISO for an x86_64 guest" --disk "$T_TMP/debian-12-arm64.iso"
assert_contains "$ERR" "Please use an 'amd64' version of the disk" "Tart's rule, for this host"
bad 64 "--no-trackpad on a Linux VM" --no-trackpad
bad 1 "a --serial-path that does not exist" --serial-path "$T_TMP/nopty"
assert_eq "$(ls -A "$vms/g"; cat "$vms/g/config.json")" "$before" "the bundle is unchanged"
assert_eq "$(ls -A "$VMM_HOME/tmp")" "" "nothing left in tmp/"

echo "disks and shares in a running guest"
run_bg g --disk "$T_TMP/ro.img:ro" --disk "$rw:sync=none,caching=cached" \
	--dir "a:$T_TMP/a" --dir "b:$T_TMP/b:ro" --dir "$T_TMP/plain:tag=plain" \
	--dir "$T_TMP/rodir:ro,tag=rotag" --root-disk-opts sync=fsync,caching=automatic \
	--no-graphics --no-audio --no-clipboard --no-pointer --no-keyboard
wait_console g "VMMTEST IP" 1 || fail "the guest boots with them"
ip=$("$VMM" ip g --wait 30)
assert_contains "$(cat "$T_TMP/g.console")" "VMMTEST 9P com.apple.virtio-fs.automount ok" \
	"the guest mounts Tart's default tag"
ssh_wait "$ip" || fail "ssh"
assert_eq "$(as_root "$ip" cat /mnt/share/a/hello.txt)" "from the host" \
	"named shares appear under their names: the guest reads a host file"
as_root "$ip" 'echo from the guest >/mnt/share/a/back.txt'
assert_eq "$(cat "$T_TMP/a/back.txt" 2>/dev/null)" "from the guest" "and writes one back"
assert_eq "$(as_root "$ip" cat /mnt/share/b/ro.txt)" "read me" "the read-only share is readable"
out=$(as_root "$ip" 'echo x >/mnt/share/b/no.txt' 2>&1)
assert_contains "$out" "Read-only file system" "writing to it is refused"
assert_true "and nothing was written" test ! -e "$T_TMP/b/no.txt"
as_root "$ip" 'mkdir -p /mnt/p /mnt/r && mount -t 9p -o trans=virtio,version=9p2000.L plain /mnt/p &&
	mount -t 9p -o trans=virtio,version=9p2000.L rotag /mnt/r'
assert_eq "$(as_root "$ip" cat /mnt/p/p.txt /mnt/r/r.txt)" "plain share
read-only share" "a share under a tag of its own, and a read-only one"
as_root "$ip" 'echo y >/mnt/p/w.txt'
assert_eq "$(cat "$T_TMP/plain/w.txt" 2>/dev/null)" "y" "writes land in the host directory"
out=$(as_root "$ip" 'echo y >/mnt/r/w.txt' 2>&1)
assert_contains "$out" "Read-only file system" "the :ro tag refuses writes"
assert_eq "$(grep -c "$T_TMP" /proc/self/mountinfo)" 0 \
	"the named shares' bind mounts are not visible on the host"
assert_eq "$(as_root "$ip" cat /sys/block/vdb/ro /sys/block/vdc/ro | tr '\n' ' ')" "1 0 " \
	"the guest sees the :ro disk read-only and the other writable"
out=$(as_root "$ip" 'dd if=/dev/zero of=/dev/vdb bs=4096 count=1 conv=fsync 2>&1; echo rc=$?')
assert_contains "$out" "rc=1" "writing to the read-only disk fails in the guest"
as_root "$ip" 'echo written-by-guest | dd of=/dev/vdc conv=fsync 2>/dev/null'
assert_eq "$(head -c 16 "$rw")" "written-by-guest" "the writable disk ($rw) takes writes"
assert_eq "$(sha "$T_TMP/ro.img")" "$ro_sha" "the read-only image is unchanged"
assert_eq "$(as_root "$ip" cat /sys/block/vda/ro)" "0" "the root disk is writable"

echo "no suspend with shared folders"
t=$(last_tick g)
vmm suspend g
assert_rc 1 "vmm suspend is refused"
assert_contains "$ERR" "shared folders (--dir) cannot be suspended" "saying why"
assert_contains "$ERR" "the VM keeps running" "and that it runs on"
kill -USR1 "${RUN_PID[g]}"
wait_console g "VMMTEST TICK $((t + 4))" 1 30 && ok "the guest runs on" || fail "the guest runs on"
assert_contains "$(cat "$T_TMP/g.err")" "Failed to suspend the VM: a VM with shared folders" \
	"SIGUSR1 says the same"
assert_true "no state was written" test ! -e "$vms/g/state.vmmsave"
vmm snapshot create g s1
assert_rc 1 "a snapshot of the running VM is refused as well"
assert_contains "$ERR" "cannot be suspended or snapshotted" "saying why"
vmm snapshot list g
assert_not_contains "$OUT" "s1" "and no snapshot is left"

echo "SIGUSR2 asks the guest to stop"
kill -USR2 "${RUN_PID[g]}"
run_wait g 60
assert_eq "$RUN_RC" 0 "vmm run exits 0 when the guest powers off"
assert_eq "$(count g "VMMTEST POWERBUTTON")" 1 "through ACPI"
assert_contains "$(cat "$T_TMP/g.err")" "Requesting guest OS to stop..." "with Tart's line"
assert_eq "$(ls -A "$VMM_HOME/tmp")" "" "the named shares' mount points are gone"

echo "--serial: the console on a pseudo-terminal"
"$VMM" run g --serial >"$T_TMP/s.out" 2>"$T_TMP/s.err" </dev/null &
RUN_PID[s]=$!
t_defer "run_kill s"
for i in $(seq 100); do grep -q "Successfully open pty" "$T_TMP/s.out" && break; sleep 0.1; done
pts=$(sed -n 's/^Successfully open pty \(\/dev\/pts\/[0-9]*\)$/\1/p' "$T_TMP/s.out")
assert_match "$pts" '^/dev/pts/[0-9]+$' "Tart's line names the pty on stdout"
/usr/bin/python3 - "$pts" >"$T_TMP/s.console" <<'PY'
import os, select, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)
buf, end, sent = b"", time.time() + 200, False
while time.time() < end:
    r, _, _ = select.select([fd], [], [], 0.5)
    if r:
        buf += os.read(fd, 4096)
    if b"VMMTEST TICK 2" in buf and not sent:
        os.write(fd, b"over-the-pty\n")
        sent = True
    if b"VMMTEST INPUT over-the-pty" in buf:
        break
sys.stdout.write(buf.decode(errors="replace"))
PY
assert_contains "$(cat "$T_TMP/s.console")" "VMMTEST TICK 2" "the guest's console is on the pty"
assert_contains "$(cat "$T_TMP/s.console")" "VMMTEST INPUT over-the-pty" "and takes input from it"
assert_not_contains "$(cat "$T_TMP/s.out")" "VMMTEST" "nothing of the console on stdout"
kill -INT "${RUN_PID[s]}"
run_wait s 60
assert_eq "$RUN_RC" 0 "SIGINT stops it"

echo "SIGQUIT quits at once and gives the terminal back"
/usr/bin/python3 - "$VMM" >"$T_TMP/q.out" 2>&1 <<'PY'
import os, pty, select, signal, sys, termios, time
vmm = sys.argv[1]
pid, fd = pty.fork()
if pid == 0:
    os.execv(vmm, [vmm, "run", "g"])
buf, end = b"", time.time() + 200
while b"VMMTEST TICK 2" not in buf and time.time() < end:
    r, _, _ = select.select([fd], [], [], 0.5)
    if r:
        try:
            buf += os.read(fd, 4096)
        except OSError:
            break
during = termios.tcgetattr(fd)[3]
os.kill(pid, signal.SIGQUIT)
t0 = time.time()
while True:
    r, _, _ = select.select([fd], [], [], 0.5)
    try:
        if r and not os.read(fd, 4096):
            break
    except OSError:
        break
    if os.waitpid(pid, os.WNOHANG)[0]:
        break
after = termios.tcgetattr(fd)[3]
print("ticked", b"VMMTEST TICK 2" in buf)
print("raw-while-running", not during & termios.ICANON and not during & termios.ECHO)
print("restored", bool(after & termios.ICANON and after & termios.ECHO))
print("seconds %.1f" % (time.time() - t0))
PY
q=$(cat "$T_TMP/q.out")
assert_contains "$q" "ticked True" "vmm run on a terminal boots the guest"
assert_contains "$q" "raw-while-running True" "keys go to the guest as typed"
assert_contains "$q" "restored True" "after SIGQUIT the terminal is as it was"
assert_eq "$(state_of g)" stopped "and the VM is stopped"

echo "an installer ISO boots under UEFI as a CD-ROM"
command -v xorriso >/dev/null || t_skip "xorriso is missing (make deps)"
iso=$T_TMP/iso
mkdir -p "$iso/root"
export MTOOLS_SKIP_CHECK=1
truncate -s 16M "$iso/efi.img"
mformat -i "$iso/efi.img" -T 32768 -h 64 -s 32 -v EFIBOOT :: &&
	mmd -i "$iso/efi.img" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries &&
	mcopy -i "$iso/efi.img" /usr/lib/systemd/boot/efi/systemd-bootx64.efi ::/EFI/BOOT/BOOTX64.EFI &&
	mcopy -i "$iso/efi.img" "$guest_dir/vmlinuz" ::/vmlinuz &&
	mcopy -i "$iso/efi.img" "$guest_dir/initramfs.img" ::/initramfs.img || fail "the El Torito image"
printf 'default iso.conf\ntimeout 0\n' >"$iso/loader.conf"
printf 'title vmm test installer\nlinux /vmlinuz\ninitrd /initramfs.img\noptions %s\n' \
	"console=ttyS0 quiet vmmtest.net=dhcp vmmtest.from=iso" >"$iso/iso.conf"
mcopy -i "$iso/efi.img" "$iso/loader.conf" ::/loader/loader.conf
mcopy -i "$iso/efi.img" "$iso/iso.conf" ::/loader/entries/iso.conf
cp "$iso/efi.img" "$iso/root/"
xorriso -as mkisofs -quiet -V VMMTEST -o "$T_TMP/installer-amd64.iso" -e efi.img -no-emul-boot \
	"$iso/root" 2>/dev/null || fail "xorriso"
"$VMM" create u --linux --disk-size 1 >/dev/null && "$VMM" set u --memory 256 --cpu 1 >/dev/null
assert_eq "$(du -k "$vms/u/disk.img" | cut -f1)" 0 "the new VM's disk is empty"
run_bg u --disk "$T_TMP/installer-amd64.iso" --disk "$T_TMP/ro.img:ro"
wait_console u "VMMTEST IP" 1 && ok "OVMF boots the kernel from the ISO" || fail "ISO boot"
uip=$("$VMM" ip u --wait 30)
ssh_wait "$uip" || fail "ssh into the ISO's guest"
assert_contains "$(as_root "$uip" cat /proc/cmdline)" "vmmtest.from=iso" "with the ISO's command line"
assert_eq "$(as_root "$uip" cat /sys/block/sr0/ro /sys/block/vdb/ro | tr '\n' ' ')" "1 1 " \
	"the guest sees a read-only CD-ROM and the :ro data disk read-only"
assert_eq "$(as_root "$uip" 'dd if=/dev/sr0 bs=2048 skip=16 count=1 2>/dev/null' | head -c 6 | tail -c 5)" \
	"CD001" "the CD-ROM holds the ISO"

echo "a state resumes only with the devices it was saved with"
vmm suspend u
assert_rc 0 "the ISO's guest suspends (CD-ROM and disks migrate)"
run_wait u 60
t=$(last_tick u)
vmm run u --disk "$T_TMP/installer-amd64.iso"
assert_rc 1 "resuming without the data disk is refused"
assert_one_line_error "with one line"
assert_contains "$ERR" "in the state vs" "naming both sides"
assert_contains "$ERR" "resume it with the --disk" "and how to resume it"
assert_contains "$ERR" "the saved state is kept" "keeping the state"
vmm run u --disk "$T_TMP/installer-amd64.iso" --disk "$T_TMP/ro.img"
assert_rc 1 "resuming with the disk writable is refused"
vmm run u --disk "$T_TMP/installer-amd64.iso" --disk "$T_TMP/ro.img:ro" --root-disk-opts ro
assert_rc 1 "resuming with a read-only root disk is refused"
# a state saved where the guest had the agent's vsock device needs one
# (this host has no /dev/vhost-vsock): the same state with that device in its header
if [ ! -e /dev/vhost-vsock ]; then
	cp "$vms/u/state.vmmsave" "$T_TMP/state.keep"
	/usr/bin/python3 - "$vms/u/state.vmmsave" <<'PY'
import json, struct, sys
with open(sys.argv[1], "r+b") as f:
    head = f.read(16384)
    n = struct.unpack("<I", head[8:12])[0]
    h = json.loads(head[12:12 + n])
    h["model"] += ["-device", "vhost-vsock-pci,id=vsock0"]
    body = json.dumps(h, separators=(",", ":")).encode()
    f.seek(0)
    f.write(head[:8] + struct.pack("<I", len(body)) + body + b"\0" * (16384 - 12 - len(body)))
PY
	vmm run u --disk "$T_TMP/installer-amd64.iso" --disk "$T_TMP/ro.img:ro"
	assert_rc 1 "a state saved with the agent's vsock device is refused without one"
	assert_contains "$ERR" "saved with a virtio-vsock device" "saying so"
	assert_contains "$ERR" "/dev/vhost-vsock" "and what is missing"
	assert_contains "$ERR" "the saved state is kept" "keeping the state"
	mv "$T_TMP/state.keep" "$vms/u/state.vmmsave"
fi
assert_eq "$(state_of u)" suspended "the VM is still suspended"
run_bg u --disk "$T_TMP/installer-amd64.iso" --disk "$T_TMP/ro.img:ro" --root-disk-opts sync=none
wait_console u "VMMTEST TICK $((t + 2))" 1 60 && ok "with the same devices it resumes (host-side options may differ)" ||
	fail "resume with the same devices"
assert_eq "$(count u "VMMTEST BOOT")" 1 "without booting again"
vmm stop u
run_wait u 60
t_done
