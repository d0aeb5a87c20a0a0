#!/usr/bin/env bash
# Saved states that must not be restored, and forks that must: a truncated,
# a corrupt and another QEMU's state are refused with one line and kept; a
# state after `vmm set --memory` is refused naming both sides and kept; a
# clone of a suspended VM resumes the same memory; `vmm run` next to a
# running VM with the same MAC gets a new MAC and boots afresh (Tart's
# rule); `vmm stop` discards a state; a state in vmm 0.1's format still
# resumes; a snapshot of a running VM holds memory and disk of one instant,
# pauses the guest only briefly and lets its console flow meanwhile; an
# ordinary user's (QEMU without userfaultfd) pauses it for the save and
# runs on, and restores.
source "$(dirname "$0")/lib.sh"
t_init
source "$(dirname "$0")/guest_lib.sh"

home=$T_TMP/home/vms
sum() { sha256sum "$1" | cut -c1-64; }
mac() { grep -o '"macAddress" : "[^"]*"' "$home/$1/config.json" | cut -d'"' -f4; }

guest_create s 288
run_bg s
wait_console s "VMMTEST TICK 2" 1 || fail "boot"
vmm suspend s
assert_rc 0 "suspend"
run_wait s 30
before=$(last_tick s)
assert_eq "$(state_of s)" suspended "s is suspended"

echo "clones of a suspended VM keep MAC and state (forks)"
for c in fork trunc bad other s2; do "$VMM" clone s $c || fail "clone s $c"; done
assert_eq "$(state_of fork)" suspended "the clone is suspended"
assert_eq "$(mac fork)" "$(mac s)" "the clone keeps the MAC"
assert_eq "$(sum "$home/fork/state.vmmsave")" "$(sum "$home/s/state.vmmsave")" "and the state"

echo "truncated state"
truncate -s -4096 "$home/trunc/state.vmmsave"
size=$(stat -c %s "$home/trunc/state.vmmsave")
cfg=$(sum "$home/trunc/config.json")
vmm run trunc
assert_rc 1 "a truncated state is refused"
assert_one_line_error "with one line"
assert_contains "$ERR" "is truncated" "saying it is truncated"
assert_contains "$ERR" "trunc/state.vmmsave" "naming the file"
assert_eq "$(stat -c %s "$home/trunc/state.vmmsave")" "$size" "the state is kept as it was"
assert_eq "$(sum "$home/trunc/config.json")" "$cfg" "the config is untouched"
assert_eq "$(state_of trunc)" suspended "the VM is still suspended"

echo "corrupt state"
st=$home/bad/state.vmmsave
off=$(($(stat -c %s "$st") / 2))
printf '\xff\x00\xff\x00' | dd of="$st" bs=1 seek=$off conv=notrunc status=none
sumbad=$(sum "$st")
# all of the memory before `cont` (a lazy resume's corrupt chunk: test_lazy_resume.sh)
VMM_LAZY_RESUME=0 vmm run bad
assert_rc 1 "a corrupt state is refused"
assert_one_line_error "with one line"
assert_contains "$ERR" "is corrupt" "saying it is corrupt"
assert_eq "$(sum "$st")" "$sumbad" "the state is kept"
assert_eq "$(state_of bad)" suspended "the VM is still suspended"
assert_true "no QEMU is left behind" test -z "$(pgrep -f "vmm-bad " || true)"

echo "state from another QEMU"
python3 - "$home/other/state.vmmsave" <<'EOF'
import json, struct, sys
p = sys.argv[1]
with open(p, "r+b") as f:
    d = f.read(16384)
    n = struct.unpack("<I", d[8:12])[0]
    h = json.loads(d[12:12 + n])
    h["qemuVersion"] = "9.9.99"
    t = json.dumps(h, separators=(",", ":")).encode()
    f.seek(0)
    f.write(d[:8] + struct.pack("<I", len(t)) + t + b"\0" * (16384 - 12 - len(t)))
EOF
vmm run other
assert_rc 1 "another QEMU's state is refused"
assert_one_line_error "with one line"
assert_contains "$ERR" "QEMU 9.9.99 in the state vs QEMU " "naming both QEMUs"
assert_contains "$ERR" "the saved state is kept" "saying the state is kept"
assert_eq "$(state_of other)" suspended "the VM is still suspended"

echo "state after vmm set --memory"
"$VMM" set s --memory 320
vmm run s
assert_rc 1 "a state for other memory is refused"
assert_one_line_error "with one line"
assert_contains "$ERR" "memory 288 MiB in the state vs 320 MiB now" "naming both sides"
vmm resume s
assert_rc 1 "vmm resume refuses it too"
assert_true "the state is kept" test -f "$home/s/state.vmmsave"
assert_eq "$(state_of s)" suspended "the VM is still suspended"
"$VMM" set s --memory 288

echo "fork resumes the same memory"
run_bg fork
wait_console fork "VMMTEST TICK $((before + 1))" 1 &&
	ok "the fork continues the counter past $before" || fail "the fork continues the counter"
assert_eq "$(count fork "VMMTEST BOOT")" 0 "without booting"

echo "checkpoint of a running VM (memory and disk, the guest runs on)"
mkdir "$T_TMP/ck"
t=$(last_tick fork)
vmm checkpoint fork "$T_TMP/ck"
assert_rc 0 "vmm checkpoint exits 0"
assert_true "it wrote state.vmmsave and disk.img" test -s "$T_TMP/ck/state.vmmsave" -a -f "$T_TMP/ck/disk.img"
wait_console fork "VMMTEST TICK $((t + 3))" 1 && ok "the guest runs on" || fail "the guest runs on"
assert_eq "$(state_of fork)" running "the VM is still running"
vmm checkpoint fork "$T_TMP/nonexistent"
assert_rc 1 "a checkpoint into nowhere is refused"
assert_eq "$(state_of fork)" running "and the VM runs on"

echo "snapshot of a running VM (memory and disk; the guest pauses only meanwhile)"
snap_tick=$(last_tick fork)
vmm snapshot create fork live
assert_rc 0 "vmm snapshot create on a running VM exits 0"
snap_end=$(last_tick fork) # the snapshot's instant lies between these ticks
wait_console fork "VMMTEST TICK $((snap_tick + 3))" 1 && ok "the guest runs on after the snapshot" ||
	fail "the guest runs on after the snapshot"
assert_eq "$(state_of fork)" running "the VM is still running"
vmm snapshot list fork --format json
assert_contains "$OUT" '"Memory" : true' "the snapshot holds the memory"
assert_true "the snapshot is a whole bundle" test -f "$home/fork/snapshots/live/config.json" \
	-a -f "$home/fork/snapshots/live/kernel" -a -s "$home/fork/snapshots/live/state.vmmsave"
vmm snapshot restore fork live
assert_rc 1 "restore while running is refused"

echo "a suspended fork with the MAC of a running VM resumes with it (each VM has its own network)"
old=$(mac s2)
run_bg s2
wait_console s2 "VMMTEST TICK" 1 && ok "s2 resumes next to the running fork" || fail "s2 resumes"
assert_eq "$(count s2 "VMMTEST BOOT")" 0 "without booting"
assert_eq "$(mac s2)" "$old" "keeping the MAC its guest remembers"
assert_eq "$(grep -c 'same MAC' "$T_TMP/s2.err")" 0 "and no MAC reset"
vmm stop s2 --timeout 30
assert_rc 0 "stop s2"
run_wait s2 30

echo "same MAC as a running VM and no state: a new MAC (Tart's rule)"
run_bg s2
wait_console s2 "VMMTEST BOOT" 1 && ok "s2 boots afresh" || fail "s2 boots afresh"
assert_contains "$(cat "$T_TMP/s2.err")" "There is already a running VM with the same MAC address!" \
	"run says why"
assert_true "s2 got a new MAC" test "$(mac s2)" != "$old"
vmm stop s2 --timeout 30
assert_rc 0 "stop s2"
run_wait s2 30
vmm stop fork --timeout 30
assert_rc 0 "stop the fork"
run_wait fork 30

echo "a VM made of the checkpoint resumes from it"
mkdir "$home/ck"
cp "$home/fork/config.json" "$home/fork/kernel" "$home/fork/initramfs" "$home/fork/nvram.bin" "$home/ck/"
mv "$T_TMP/ck/state.vmmsave" "$T_TMP/ck/disk.img" "$home/ck/"
run_bg ck
wait_console ck "VMMTEST TICK" 1 || fail "checkpoint resume"
first=$(grep -a -m1 -o 'VMMTEST TICK [0-9]*' "$T_TMP/ck.console" | awk '{print $3}')
assert_true "it continues past tick $t (tick ${first:-none})" test "${first:-0}" -gt "$t"
assert_eq "$(count ck "VMMTEST BOOT")" 0 "without booting"
vmm stop ck --timeout 30
run_wait ck 30

echo "restoring the running VM's snapshot goes back to its memory"
boots=$(count fork "VMMTEST BOOT")
lines=$(wc -l <"$T_TMP/fork.console")
vmm snapshot restore fork live
assert_rc 0 "snapshot restore"
assert_eq "$(state_of fork)" suspended "the VM is suspended at the snapshot"
run_bg fork
for _ in $(seq 1 $((GUEST_TIMEOUT * 5))); do
	again=$(tail -n +$((lines + 1)) "$T_TMP/fork.console" | grep -a -m1 -o 'VMMTEST TICK [0-9]*' | awk '{print $3}')
	[ -n "$again" ] && break
	sleep 0.2
done
assert_true "it resumes at the snapshot's instant, between ticks $snap_tick and $snap_end (tick ${again:-none})" \
	test -n "$again" -a "${again:-0}" -gt "$snap_tick" -a "${again:-0}" -le $((snap_end + 1))
assert_eq "$(count fork "VMMTEST BOOT")" "$boots" "without booting"
vmm stop fork --timeout 30
run_wait fork 30

echo "vmm resume"
run_bg s
wait_console s "VMMTEST TICK $((before + 1))" 1 && ok "vmm run resumes the original too" ||
	fail "the original resumes"
assert_eq "$(count s "VMMTEST BOOT")" 1 "still one boot"
kill -USR1 "${RUN_PID[s]}"
run_wait s 60
assert_eq "$RUN_RC" 0 "SIGUSR1 suspends, as with Tart, and vmm run exits 0"
assert_eq "$(state_of s)" suspended "s is suspended again"
"$VMM" resume s >>"$T_TMP/s.console" 2>>"$T_TMP/s.err" </dev/null &
RUN_PID[s]=$!
wait_console s "VMMTEST TICK $((before + 2))" 1 && ok "vmm resume resumes" || fail "vmm resume"
vmm suspend s
run_wait s 30

echo "a state in vmm 0.1's format (one zstd stream) still resumes"
guest_create old 256
VMM_STATE_FORMAT=1 run_bg old
wait_console old "VMMTEST TICK 2" 1 || fail "old boots"
vmm suspend old
assert_rc 0 "suspend in the old format"
run_wait old 30
fmt=$(head -c 16384 "$home/old/state.vmmsave" | tail -c +13 | tr -d '\0' | grep -o '"format":[0-9]*')
assert_eq "$fmt" '"format":1' "the state is in format 1"
t=$(last_tick old)
run_bg old
wait_console old "VMMTEST TICK $((t + 1))" 1 && ok "this vmm resumes it past tick $t" ||
	fail "resume of a format-1 state"
assert_eq "$(count old "VMMTEST BOOT")" 1 "without booting"
vmm suspend old
run_wait old 30
fmt=$(head -c 16384 "$home/old/state.vmmsave" | tail -c +13 | tr -d '\0' | grep -o '"format":[0-9]*')
assert_eq "$fmt" '"format":2' "and suspends it in format 2"

echo "a suspended VM pushed, then pulled into another home, resumes there"
. "$(dirname "$0")/registry.sh"
if reg_have_registry; then
	registry_start REG
	vmm push old "$REG/state/old:s" --insecure
	assert_rc 0 "push the suspended VM"
	assert_contains "$OUT" "compressing suspended state for the network" "re-encoding the state"
	local_size=$(stat -c %s "$home/old/state.vmmsave")
	layer=$(curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
		"http://$REG/v2/state/old/manifests/s" | python3 -c 'import json,sys
m = json.load(sys.stdin)
print([l["size"] for l in m["layers"] if l["mediaType"].startswith("application/vnd.vmm.state")][0])')
	assert_true "the state layer ($layer bytes) is smaller than the local state ($local_size)" \
		test "${layer:-0}" -gt 0 -a "${layer:-0}" -lt "$local_size"
	t=$(last_tick old)
	VMM_HOME=$T_TMP/home2 vmm clone "$REG/state/old:s" old2 --insecure
	assert_rc 0 "clone it from the registry into another home"
	codec=$(head -c 16384 "$T_TMP/home2/vms/old2/state.vmmsave" | tail -c +13 | tr -d '\0' |
		grep -o '"codec":"[a-z0-9]*"')
	assert_eq "$codec" '"codec":"zstd"' "the pulled state is zstd"
	VMM_HOME=$T_TMP/home2 run_bg old2
	wait_console old2 "VMMTEST TICK" 1 || fail "the pulled state resumes"
	first=$(grep -a -m1 -o 'VMMTEST TICK [0-9]*' "$T_TMP/old2.console" | awk '{print $3}')
	assert_eq "$first" "$((t + 1))" "it goes on after the tick it was suspended at"
	assert_eq "$(count old2 "VMMTEST BOOT")" 0 "without booting"
	VMM_HOME=$T_TMP/home2 vmm stop old2 --timeout 30
	run_wait old2 30
else
	echo "  (registry part skipped: docker-registry missing)"
fi
vmm stop old

echo "a snapshot of a running VM: memory and disk of one instant, the console flowing"
# QEMU runs as its sandbox user; vmm, as root, has QEMU's userfaultfd and
# write-protects the RAM itself (vm/cow.h), QEMU saving only the devices.  The
# guest keeps rewriting 16 MiB of its RAM (vmmtest.churn) and its disk counter;
# the save is held (VMM_TEST_PAUSE) while the guest runs on, so every page it
# writes then must be copied aside first.
guest_create live 512 "console=ttyS0 quiet vmmtest.fill=200 vmmtest.diskcounter=/dev/vda vmmtest.churn=16"
mkdir "$T_TMP/hold"
VMM_TEST_PAUSE=snapshot-cow VMM_TEST_PAUSE_DIR=$T_TMP/hold run_bg live
wait_console live "VMMTEST DISKCOUNTER 3" 1 || fail "live boots and counts"
wait_console live "VMMTEST CHURN" 2 || fail "live churns its memory"
quser=$(ps -o user= -C qemu-system-x86_64 -o args= | awk '/-name vmm-live /{print $1}' | head -n1)
assert_true "live's QEMU runs unprivileged (as ${quser:-?})" test -n "$quser" -a "$quser" != root
mkdir "$T_TMP/live"
"$VMM" checkpoint live "$T_TMP/live" --stats >"$T_TMP/live.stats" 2>"$T_TMP/live.ckerr" &
ck=$!
for _ in $(seq 1 600); do [ -e "$T_TMP/hold/snapshot-cow.reached" ] && break; sleep 0.1; done
assert_true "the save of the RAM is held" test -e "$T_TMP/hold/snapshot-cow.reached"
ticks=$(count live "VMMTEST TICK") passes=$(count live "VMMTEST CHURN")
wait_console live "VMMTEST TICK" $((ticks + 2)) && wait_console live "VMMTEST CHURN" $((passes + 2))
assert_rc 0 "meanwhile the console flows and the guest rewrites its memory"
touch "$T_TMP/hold/snapshot-cow.go"
wait $ck
assert_eq "$?" 0 "vmm checkpoint of the running VM exits 0 ($(cat "$T_TMP/live.ckerr"))"
read -r _ pause _ < <(cat "$T_TMP/live.stats")
total=$(grep -o '[0-9.]* s$' "$T_TMP/live.stats" | cut -d' ' -f1)
assert_true "the guest paused for $pause s of the $total s the snapshot took" \
	awk "BEGIN { exit !($pause > 0 && $pause < 0.5 && $pause < $total / 2) }"
assert_contains "$(head -c 16384 "$T_TMP/live/state.vmmsave" | tail -c +13 | tr -d '\0')" \
	'"kind":"memory"' "the state holds the RAM as memory chunks (vmm protected it, not QEMU)"
disk=$(dd if="$T_TMP/live/disk.img" bs=512 skip=2048 count=1 status=none | tr -dc 0-9)
assert_true "the snapshot's disk holds the counter ($disk)" test -n "$disk"
vmm stop live --timeout 30
run_wait live 30
assert_eq "$(count live "CHURN TORN")" 0 "the guest never saw its memory torn"
bundle_from_checkpoint live live2 "$T_TMP/live"
# the snapshot of live2 is QEMU's own (VMM_SNAPSHOT_COW=0), kept for where vmm cannot protect the RAM
VMM_SNAPSHOT_COW=0 run_bg live2
wait_console live2 "VMMTEST CHURN" 2 || fail "the snapshot resumes and churns on"
assert_eq "$(count live2 "CHURN TORN")" 0 "its memory is of one instant: every pass whole"
mkdir "$T_TMP/live3"
vmm checkpoint live2 "$T_TMP/live3"
assert_rc 0 "a snapshot by QEMU's background snapshot (VMM_SNAPSHOT_COW=0) exits 0"
assert_contains "$(head -c 16384 "$T_TMP/live3/state.vmmsave" | tail -c +13 | tr -d '\0')" \
	'"kind":"stream"' "... and holds QEMU's stream"
restored_goes_on live2 "$disk"
bundle_from_checkpoint live2 live4 "$T_TMP/live3"
run_bg live4
wait_console live4 "VMMTEST CHURN" 2 || fail "QEMU's snapshot resumes and churns on"
assert_eq "$(count live4 "CHURN TORN")" 0 "its memory is of one instant too"
assert_eq "$(count live4 "DISKCOUNTER MISMATCH")" 0 "and memory and disk agree"
vmm stop live4 --timeout 30
run_wait live4 30

echo "a snapshot of a running VM of an ordinary user: QEMU without userfaultfd, the guest paused meanwhile"
# vm.unprivileged_userfaultfd 0 (Debian's default) keeps QEMU from write-protecting
# the RAM of a user's VM: background-snapshot is refused and vmm pauses the guest
# for the whole save instead.
if [ "$(id -u)" -eq 0 ] && id nobody >/dev/null 2>&1 && command -v setpriv >/dev/null; then
	chmod 755 "$T_TMP"
	mkdir "$T_TMP/nobody"
	chown 65534:65534 "$T_TMP/nobody"
	UVMM=$T_TMP/uvmm # vmm as nobody, with the home an ordinary user gets (~/.vmm)
	printf '#!/bin/sh\nexec setpriv --reuid=65534 --regid=65534 --clear-groups env -u VMM_HOME HOME=%s %s "$@"\n' \
		"$T_TMP/nobody" "$VMM" >"$UVMM"
	chmod 755 "$UVMM"
	uhome=$T_TMP/nobody/.vmm/vms
	VMM=$UVMM guest_create u 384 "console=ttyS0 quiet vmmtest.fill=128 vmmtest.diskcounter=/dev/vda" ||
		fail "create u as nobody"
	VMM=$UVMM run_bg u
	wait_console u "VMMTEST DISKCOUNTER 2" 1 || fail "u boots as nobody and counts"
	assert_contains "$(cat "$T_TMP/u.err")" "without CAP_NET_ADMIN" "u is on the user-mode network, and says so"
	snap_tick=$(last_tick u)
	VMM=$UVMM vmm snapshot create u live
	assert_rc 0 "vmm snapshot create of nobody's running VM exits 0"
	snap_end=$(last_tick u)
	wait_console u "VMMTEST TICK $((snap_tick + 3))" 1 && ok "the guest runs on after the snapshot" ||
		fail "the guest runs on after the snapshot"
	assert_eq "$(VMM=$UVMM state_of u)" running "the VM is still running"
	assert_eq "$(count u "DISKCOUNTER MISMATCH")" 0 "its disk takes writes again after the pause"
	VMM=$UVMM vmm snapshot list u --format json
	assert_contains "$OUT" '"Memory" : true' "the snapshot holds the memory"
	assert_true "the snapshot is a whole bundle, nobody's" test -s "$uhome/u/snapshots/live/state.vmmsave" \
		-a -f "$uhome/u/snapshots/live/disk.img" -a "$(stat -c %u "$uhome/u/snapshots/live/state.vmmsave")" = 65534
	mkdir "$T_TMP/nobody/ck"
	chown 65534:65534 "$T_TMP/nobody/ck"
	VMM=$UVMM vmm checkpoint u "$T_TMP/nobody/ck" --stats
	assert_rc 0 "vmm checkpoint of nobody's running VM exits 0"
	read -r _ pause _ <<<"$OUT"
	total=$(grep -o '[0-9.]* s$' <<<"$OUT" | cut -d' ' -f1)
	if [ "$(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null)" = 0 ]; then
		# with background-snapshot the pause is tens of ms of a save of seconds
		assert_true "without userfaultfd the guest paused for most of the save ($pause s of $total s)" \
			awk "BEGIN { exit !(${pause:-0} > 0 && ${pause:-0} > ${total:-0} / 3) }"
	else
		echo "  (vm.unprivileged_userfaultfd is 1 here: QEMU used background-snapshot)"
	fi
	t=$(last_tick u)
	wait_console u "VMMTEST TICK $((t + 2))" 1 && ok "and runs on after that" || fail "u runs on after the checkpoint"
	VMM=$UVMM vmm stop u --timeout 30
	assert_rc 0 "stop u"
	run_wait u 30
	boots=$(count u "VMMTEST BOOT")
	ctrs=$(count u "VMMTEST DISKCOUNTER")
	lines=$(wc -l <"$T_TMP/u.console")
	VMM=$UVMM vmm snapshot restore u live
	assert_rc 0 "snapshot restore as nobody"
	assert_eq "$(VMM=$UVMM state_of u)" suspended "the VM is suspended at the snapshot"
	VMM=$UVMM run_bg u
	again=""
	for _ in $(seq 1 $((GUEST_TIMEOUT * 5))); do
		again=$(tail -n +$((lines + 1)) "$T_TMP/u.console" | grep -a -m1 -o 'VMMTEST TICK [0-9]*' | awk '{print $3}')
		[ -n "$again" ] && break
		sleep 0.2
	done
	assert_true "it resumes at the snapshot's instant, between ticks $snap_tick and $snap_end (tick ${again:-none})" \
		test -n "$again" -a "${again:-0}" -gt "$snap_tick" -a "${again:-0}" -le $((snap_end + 1))
	assert_eq "$(count u "VMMTEST BOOT")" "$boots" "without booting"
	wait_console u "VMMTEST DISKCOUNTER" $((ctrs + 1)) || fail "the restored u counts"
	assert_eq "$(count u "DISKCOUNTER MISMATCH")" 0 "memory and disk of the snapshot agree"
	VMM=$UVMM vmm stop u --timeout 30
	run_wait u 30
else
	echo "  (skipped: needs root, setpriv and the user nobody)"
fi

echo "stop discards a suspended state"
vmm stop s
assert_rc 0 "stop of a suspended VM exits 0"
assert_true "the state is gone" test ! -e "$home/s/state.vmmsave"
assert_eq "$(state_of s)" stopped "s is stopped"
vmm resume s
assert_rc 2 "resume of a stopped VM exits 2"
assert_eq "$ERR" 'vmm: VM "s" is not suspended' "saying it is not suspended"
t_done
