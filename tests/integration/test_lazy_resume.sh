#!/usr/bin/env bash
# A resumed guest runs before its memory is all in (vm/lazy.h): QEMU's
# faults on pages not yet restored are served from the state as they come.
# With the fill's threads held (VMM_TEST_PAUSE=resume-fill) every page the
# guest touches comes through a fault, and its memory is what it was when
# suspended (an md5 of its 200 MiB of content, read by the guest itself);
# a suspend while the fill is held does not wait for it: the chunks the
# guest never touched keep their frames, and the next resume has all of the
# memory again; with VMM_STATE_REUSE=0 it waits for the fill, and so does
# a snapshot of the running VM, with the console flowing; QEMU keeps no
# userfaultfd and no /dev/userfaultfd;
# VMM_LAZY_RESUME=0 restores all of it before the guest runs; a chunk found
# corrupt after the guest ran stops the VM with one line naming it, and no
# QEMU is left behind.
source "$(dirname "$0")/lib.sh"
t_init
[ "$(id -u)" = 0 ] || t_skip "a lazy resume needs vmm as root (/dev/userfaultfd)"
[ -c /dev/userfaultfd ] || t_skip "no /dev/userfaultfd (Linux 6.1 and later)"
source "$(dirname "$0")/guest_lib.sh"

home=$T_TMP/home/vms
notice="the VM runs while its memory is restored" restored="the VM's memory is restored"

qemu_of() { pgrep -f "vmm-$1 " | head -1; }
# once the vmm run of g has ended suspended: it resumes with the memory it had, and again ends so
resumes_whole() { # what
	local before
	run_wait g 60
	exec 3>&-
	assert_eq "$(state_of g)" suspended "g is suspended"
	before=$(last_tick g)
	run_in g
	wait_console g "VMMTEST TICK $((before + 2))" 1 || fail "the guest counts on $1"
	assert_eq "$(guest_md5 g)" "$md5" "its memory is what it was $1"
	suspend_it g
}
# hold the fill's threads of the next run (release: touch $hold/resume-fill.go)
hold_fill() { # dir
	hold=$T_TMP/$1
	mkdir -p "$hold"
	HOLD=(VMM_TEST_PAUSE=resume-fill "VMM_TEST_PAUSE_DIR=$hold")
}

echo "boot, fill 200 MiB, suspend"
guest_create g 512 "console=ttyS0 quiet vmmtest.fill=200"
run_in g
wait_console g "VMMTEST READY" 1 || fail "the guest fills its memory"
wait_console g "VMMTEST TICK 2" 1 || fail "and counts"
md5=$(guest_md5 g) || fail "the guest reads its fill"
assert_match "$md5" '^[0-9a-f]{32}$' "the guest's md5 of its fill"
suspend_it g
before=$(last_tick g)

echo "a lazy resume with the fill held: every page through a fault, the same memory"
: >"$T_TMP/g.err"
hold_fill h1
run_in g "${HOLD[@]}"
wait_console g "VMMTEST TICK $((before + 2))" 1 || fail "the resumed guest counts on"
assert_true "the fill's threads are held" test -e "$hold/resume-fill.reached"
assert_contains "$(cat "$T_TMP/g.err")" "$notice" "vmm run says the memory comes in while the VM runs"
assert_eq "$(count g "VMMTEST BOOT")" 1 "without booting"
assert_eq "$(grep -a -o 'VMMTEST TICK [0-9]*' "$T_TMP/g.console" | awk '{print $3}' |
	awk -v b="$before" '$1 == b + 1' | head -1)" "$((before + 1))" "from the tick after the suspend"
q=$(qemu_of g)
assert_true "QEMU runs" test -n "$q"
fds=$(ls -l "/proc/$q/fd" 2>/dev/null | grep -c -E 'userfaultfd' || true)
assert_eq "$fds" 0 "QEMU holds no userfaultfd and no /dev/userfaultfd"
assert_eq "$(guest_md5 g)" "$md5" "the guest's memory is what it was"
touch "$hold/resume-fill.go"
for _ in $(seq 1 300); do grep -q "$restored" "$T_TMP/g.err" && break; sleep 0.2; done
assert_contains "$(cat "$T_TMP/g.err")" "$restored" "vmm run says when all of the memory is in"
suspend_it g

echo "a suspend while the fill is held: untouched chunks keep their frames"
before=$(last_tick g)
: >"$T_TMP/g.err"
hold_fill h2
run_in g "${HOLD[@]}"
wait_console g "VMMTEST TICK $((before + 1))" 1 || fail "the resumed guest counts on"
vmm suspend g
assert_rc 0 "suspend g while the fill is held"
assert_true "the state is durable before the fill goes on" test -s "$home/g/state.vmmsave"
read -r c k <<<"$(suspend_counts g)"
assert_true "most chunks kept their frames (${k:-none} kept, ${c:-none} compressed)" \
	test "${k:-0}" -gt "$((${c:-999} * 2))"
touch "$hold/resume-fill.go" # (vmm run's end waits for the held threads)
resumes_whole "after a save of chunks never in"

echo "VMM_STATE_REUSE=0: a suspend waits for the fill, then saves every page"
before=$(last_tick g)
hold_fill h3
run_in g "${HOLD[@]}" VMM_STATE_REUSE=0
wait_console g "VMMTEST TICK $((before + 1))" 1 || fail "the resumed guest counts on"
vmm suspend g &
spid=$!
sleep 3
assert_true "the suspend waits" kill -0 $spid
touch "$hold/resume-fill.go"
wait $spid
assert_eq "$?" 0 "and succeeds once the fill goes on"
resumes_whole "after a save of every page"

echo "a snapshot of the running VM asked for during the fill waits for it, the console flows"
before=$(last_tick g)
hold_fill h5
run_in g "${HOLD[@]}"
wait_console g "VMMTEST TICK $((before + 1))" 1 || fail "the resumed guest counts on"
mkdir "$T_TMP/ck"
"$VMM" checkpoint g "$T_TMP/ck" >"$T_TMP/ck.out" 2>&1 &
cpid=$!
sleep 1
vmm checkpoint g "$T_TMP/ck"
assert_rc 1 "a second snapshot meanwhile is refused"
assert_contains "$ERR" "already being taken" "saying one is under way"
t=$(last_tick g)
wait_console g "VMMTEST TICK $((t + 3))" 1 30 || fail "the console flows while the snapshot waits"
assert_true "the snapshot waits for the fill" kill -0 $cpid
touch "$hold/resume-fill.go"
wait $cpid
assert_eq "$?" 0 "and is taken once the memory is in ($(cat "$T_TMP/ck.out"))"
assert_true "its state is there" test -s "$T_TMP/ck/state.vmmsave"
suspend_it g

echo "VMM_LAZY_RESUME=0: all of the memory before the guest runs"
before=$(last_tick g)
: >"$T_TMP/g.err"
run_in g VMM_LAZY_RESUME=0
wait_console g "VMMTEST TICK $((before + 2))" 1 || fail "the guest counts on"
assert_not_contains "$(cat "$T_TMP/g.err")" "$notice" "no lazy resume"
assert_eq "$(guest_md5 g)" "$md5" "its memory is what it was"
suspend_it g

echo "a chunk found corrupt after the guest ran (the fill held until then)"
"$VMM" clone g bad || fail "clone g bad"
python3 - "$home/bad/state.vmmsave" <<'EOF'
import json, struct, sys
# flip bytes in the middle of a memory chunk's frame halfway through (the index says where)
p = sys.argv[1]
with open(p, "r+b") as f:
    d = f.read(16384)
    n = struct.unpack("<I", d[8:12])[0]
    h = json.loads(d[12:12 + n])
    f.seek(h["indexOffset"])
    idx = f.read(h["indexCount"] * 96)
    recs = [idx[i:i + 96] for i in range(0, len(idx), 96)]
    mem = [r for r in recs if r[0] == 1]
    r = mem[len(mem) // 2]
    csize = struct.unpack("<I", r[4:8])[0]
    off = struct.unpack("<Q", r[16:24])[0]
    f.seek(off + csize // 2)
    f.write(b"\xff\x00\xff\x00\xff\x00\xff\x00")
EOF
: >"$T_TMP/bad.err"
hold_fill h4
run_in bad "${HOLD[@]}"
# until `cont` (the state leaves its name just before), then a second of running
while [ -e "$home/bad/state.vmmsave" ] && kill -0 "${RUN_PID[bad]}" 2>/dev/null; do sleep 0.05; done
sleep 1
touch "$hold/resume-fill.go"
run_wait bad 120
exec 3>&-
assert_eq "$RUN_RC" 1 "vmm run fails"
assert_contains "$(tail -1 "$T_TMP/bad.err")" "is corrupt" "saying the state is corrupt"
assert_contains "$(tail -1 "$T_TMP/bad.err")" "bad/state.vmmsave" "naming the file"
assert_true "no QEMU is left behind" test -z "$(qemu_of bad)"
# (a fault of QEMU's loading the device state could have read that chunk before `cont`)
if grep -q "the saved state is kept" "$T_TMP/bad.err"; then
	assert_eq "$(state_of bad)" suspended "found before the guest ran: the state is kept"
else
	assert_eq "$(state_of bad)" stopped "found once the guest ran: the VM is stopped, its state spent"
fi

t_done
