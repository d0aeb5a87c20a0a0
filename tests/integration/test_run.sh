#!/usr/bin/env bash
# vmm run / suspend / resume / stop against the real test guest under QEMU:
# boot, suspend (state smaller than the raw stream), resume continues the
# counter without a reboot, graceful stop through ACPI, a QEMU killed from
# outside leaves the VM stopped and runnable.
source "$(dirname "$0")/lib.sh"
t_init
source "$(dirname "$0")/guest_lib.sh"

echo "boot"
guest_create g 320
port=$((20000 + RANDOM % 20000))
mkfifo "$T_TMP/g.in"
"$VMM" run g --vnc --publish "127.0.0.1:$port:22" <"$T_TMP/g.in" >>"$T_TMP/g.console" \
	2>>"$T_TMP/g.err" &
RUN_PID[g]=$!
t_defer "run_kill g"
exec 3>"$T_TMP/g.in"
wait_console g "VMMTEST TICK 2" 1 && ok "the guest boots and counts on the serial console" ||
	fail "the guest boots and counts on the serial console"
echo "hello-from-the-host" >&3
wait_console g "VMMTEST INPUT hello-from-the-host" 1 30 &&
	ok "stdin reaches the guest's serial console" || fail "stdin reaches the guest's serial console"
exec 3>&-
t=$(last_tick g)
wait_console g "VMMTEST TICK $((t + 2))" 1 30 && ok "the guest runs on after stdin closes" ||
	fail "the guest runs on after stdin closes"
assert_contains "$(cat "$T_TMP/g.err")" "VNC server is running at vnc://127.0.0.1:59" \
	"--vnc serves the display on 127.0.0.1"
hexport=$(printf '%04X' "$port")
assert_true "--publish listens on 127.0.0.1:$port" \
	grep -q "0100007F:$hexport 00000000:0000 0A" /proc/net/tcp
assert_eq "$(state_of g)" running "a booted VM is running"
vmm list --format json
assert_contains "$OUT" '"State" : "running"' "list shows it running"
vmm run g
assert_rc 2 "a second vmm run of a running VM exits 2"
assert_eq "$ERR" 'vmm: VM "g" is already running!' "with Tart's text"
assert_contains "$(cat "$T_TMP/g.err")" "running under TCG" "the accelerator fallback is announced"
vmm ip g
if [ "$(id -u)" -eq 0 ]; then
	assert_rc 0 "vmm ip of a VM on the default network (test_net.sh checks it further)"
	assert_match "$OUT" '^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$' "an address"
else
	assert_rc 1 "vmm ip of a VM on the user-mode network (no CAP_NET_ADMIN)"
	assert_contains "$ERR" "user-mode network" "explains that the host cannot reach it"
fi

echo "suspend"
before=$(last_tick g)
qemu_g=$(pgrep -P "${RUN_PID[g]}" -f qemu-system || true)
vmm suspend g
assert_rc 0 "vmm suspend exits 0"
[ -z "${RUN_PID[g]}" ] || run_wait g 30
assert_eq "$RUN_RC" 0 "vmm run exits 0 once suspended"
assert_eq "$(state_of g)" suspended "the VM is suspended"
st=$T_TMP/home/vms/g/state.vmmsave
assert_true "state.vmmsave exists" test -f "$st"
assert_true "no temporary state is left" test ! -e "$st.tmp"
raw=$(state_raw_size "$st")
size=$(stat -c %s "$st")
assert_true "the state ($size bytes) is smaller than the raw stream (${raw:-?} bytes)" \
	test "${raw:-0}" -gt "$size"
assert_contains "$(cat "$T_TMP/g.err")" "snapshot created successfully" "run says it saved the state"
# that QEMU, not any on the machine: gone, or a zombie nobody has reaped yet
assert_true "QEMU is gone" sh -c '[ -n "$1" ] && ! [ -s "/proc/$1/cmdline" ]' _ "$qemu_g"

echo "resume (without --vnc and --publish: they are not part of the guest)"
run_bg g
wait_console g "VMMTEST TICK $((before + 2))" 1 &&
	ok "resume continues the counter (tick $before before)" || fail "resume continues the counter"
assert_eq "$(count g "VMMTEST BOOT")" 1 "no second boot"
assert_contains "$(cat "$T_TMP/g.err")" "restoring VM state from a snapshot..." "run says it restores"
assert_true "the state is gone once the guest runs" test ! -e "$st"
assert_eq "$(state_of g)" running "the resumed VM is running"

echo "graceful stop"
vmm stop g --timeout 60
assert_rc 0 "vmm stop exits 0"
run_wait g 30
assert_eq "$RUN_RC" 0 "vmm run exits 0 when stopped"
assert_eq "$(count g "VMMTEST POWERBUTTON")" 1 "the guest saw the ACPI power button"
assert_contains "$(cat "$T_TMP/g.err")" "Stopping VM..." "run says it stops"
assert_eq "$(state_of g)" stopped "the VM is stopped"
vmm stop g
assert_rc 2 "stop of a stopped VM exits 2"
assert_eq "$ERR" 'vmm: VM "g" is not running' "with Tart's text"
vmm suspend g
assert_rc 2 "suspend of a stopped VM exits 2"
assert_eq "$ERR" 'vmm: VM "g" is not running' "with one clean message"

echo "QEMU killed from outside"
: >"$T_TMP/g.console"
run_bg g
wait_console g "VMMTEST TICK 1" 1 || fail "second boot"
qemu=$(pgrep -P "${RUN_PID[g]}" -f qemu-system || true)
assert_true "QEMU runs as a child of vmm run" test -n "$qemu"
kill -KILL $qemu
run_wait g 30
assert_eq "$RUN_RC" 1 "vmm run exits 1 when QEMU dies"
assert_contains "$(cat "$T_TMP/g.err")" "QEMU exited unexpectedly (killed by signal 9" \
	"and says why"
assert_eq "$(state_of g)" stopped "the VM is stopped, not stuck running"

echo "runs again; stop --timeout quits a guest that ignores the power button"
"$VMM" set g --cmdline "console=ttyS0 quiet vmmtest.noacpi=1" >/dev/null
: >"$T_TMP/g.console"
run_bg g
wait_console g "VMMTEST TICK 1" 1 && ok "it runs again" || fail "it runs again"
t0=$SECONDS
vmm stop g --timeout 3
assert_rc 0 "stop of a guest that ignores ACPI exits 0"
run_wait g 30
assert_eq "$RUN_RC" 0 "vmm run exits 0"
assert_true "after the timeout, not the 30 s default ($((SECONDS - t0)) s)" \
	test $((SECONDS - t0)) -lt 20
assert_eq "$(count g "VMMTEST POWERBUTTON")" 0 "the guest did not power itself off"
assert_eq "$(state_of g)" stopped "the VM is stopped"
t_done
