#!/usr/bin/env bash
# Saving ahead (vmm run --save-ahead SECONDS, or VMM_SAVE_AHEAD; vm/chunks.h):
# while the guest runs, a low-priority thread of `vmm run` compresses its RAM
# into the never-restored state.vmmsave.resumed.tmp, a chunk once it held
# still for a pass, so that a first suspend after a boot compresses only what
# changed since.  The guest keeps rewriting 4 MiB (vmmtest.churn) all along:
# those chunks never hold still, and a frame of an older pass of them would
# show on resume as a torn file (VMMTEST CHURN TORN).  Checked: vmm run says
# when it has caught up; the suspend then keeps most chunks and compresses
# few; the guest resumes with the memory it had (the md5 of its fill, read by
# itself) and its churn whole, without a reboot; the same after a resume (the
# resumed state's frames are the base then); a suspend in the middle of a
# pass; a stop leaves no file behind; a snapshot of the running VM meanwhile;
# a bad value is refused.
source "$(dirname "$0")/lib.sh"
t_init
source "$(dirname "$0")/guest_lib.sh"

home=$T_TMP/home/vms
caught="the VM's memory is saved ahead"
# wait until vmm run has said it caught up more than $1 times in all; prints
# how many chunks its base held then and the MiB it had compressed
caught_up() { # times_before
	for _ in $(seq 1 900); do
		[ "$(saids)" -gt "$1" ] && break
		sleep 0.2
	done
	grep -a -o "$caught: [0-9]* chunks, .*(\([0-9]*\) MiB" "$T_TMP/g.err" | tail -1 |
		sed 's/.*: \([0-9]*\) chunks.*(\([0-9]*\) MiB/\1 \2/'
}
saids() {
	local n
	n=$(grep -a -c "$caught" "$T_TMP/g.err" 2>/dev/null)
	echo "${n:-0}"
}
# once the vmm run of g has ended suspended: it resumes whole
resumes_whole() { # what [env...]
	local what=$1 before boots
	shift
	before=$(last_tick g) boots=$(count g "VMMTEST BOOT")
	run_in g "$@"
	wait_console g "VMMTEST TICK $((before + 2))" 1 || fail "the guest counts on $what"
	assert_eq "$(count g "VMMTEST BOOT")" "$boots" "$what: without a reboot"
	assert_eq "$(guest_md5 g)" "$md5" "$what: its memory is what it was"
	local c
	c=$(count g "VMMTEST CHURN [0-9]")
	wait_console g "VMMTEST CHURN [0-9]" $((c + 2)) 120 || fail "$what: the churn goes on"
	assert_eq "$(count g "CHURN TORN")" 0 "$what: no churn pass was torn"
}

echo "a bad VMM_SAVE_AHEAD is refused"
guest_create g 384 "console=ttyS0 quiet vmmtest.fill=96 vmmtest.churn=4"
VMM_SAVE_AHEAD=soon vmm run g
assert_rc 1 "VMM_SAVE_AHEAD=soon"
assert_contains "$ERR" "VMM_SAVE_AHEAD=soon: not a number of seconds" "naming the variable and why"

echo "boot with saving ahead every second: caught up, then a suspend keeps most chunks"
said=$(saids)
run_in g --save-ahead 1
wait_console g "VMMTEST READY" 1 || fail "the guest fills its memory"
wait_console g "VMMTEST CHURN 2" 1 || fail "and churns"
md5=$(guest_md5 g) || fail "the guest reads its fill"
assert_match "$md5" '^[0-9a-f]{32}$' "the guest's md5 of its fill"
read -r n mib <<<"$(caught_up "$said")"
assert_eq "$(saids)" $((said + 1)) "vmm run says once that it has caught up"
echo "       caught up after compressing ${mib:-?} MiB (${n:-?} chunks)"
assert_true "the base is the never-restored file" test -s "$home/g/state.vmmsave.resumed.tmp"
suspend_it g
read -r c k <<<"$(suspend_counts g)"
echo "       suspend after saving ahead: ${c:-?} chunks compressed, ${k:-?} kept"
assert_true "most chunks were kept (${k:-none} kept, ${c:-none} compressed)" \
	test "${k:-0}" -ge 48 -a "${k:-0}" -gt "${c:-999}"
assert_true "the changing ones were compressed" test "${c:-0}" -ge 1
assert_true "no file is left aside" test ! -e "$home/g/state.vmmsave.resumed.tmp"
said=$(saids)
resumes_whole "after a suspend saved ahead" VMM_SAVE_AHEAD=1

echo "after a resume the resumed state is the base; saving ahead goes on from it"
# (the boot's figure is no yardstick: vmm run may have caught up with an
# early boot, before the guest filled its memory; a base of n chunks holds
# up to 2n MiB, all of which a run that did not start from it compresses)
read -r n mib <<<"$(caught_up "$said")"
assert_eq "$(saids)" $((said + 1)) "vmm run catches up after a resume"
assert_true "from the resumed state: it compressed only what changed (${mib:-?} MiB of ${n:-?} chunks)" \
	test -n "$mib" -a "${n:-0}" -ge 48 -a "${mib:-999}" -lt "${n:-0}"
suspend_it g
read -r c k <<<"$(suspend_counts g)"
assert_true "most chunks were kept again (${k:-none} kept, ${c:-none} compressed)" \
	test "${k:-0}" -ge 48 -a "${k:-0}" -gt "${c:-999}"
resumes_whole "after the second suspend" VMM_SAVE_AHEAD=0.2

echo "a suspend while a pass is under way"
sleep 1.5
suspend_it g
resumes_whole "after a suspend in the middle of a pass"

echo "a stop leaves nothing aside"
vmm stop g
assert_rc 0 "stop g"
run_wait g 60
exec 3>&-
assert_eq "$(state_of g)" stopped "g is stopped"
assert_eq "$(ls "$home/g" | grep -c 'vmmsave')" 0 "no state file is left"

echo "saving ahead from a boot, then a snapshot of the running VM, then a suspend"
said=$(saids)
run_in g VMM_SAVE_AHEAD=1
wait_console g "VMMTEST READY" 2 || fail "the guest boots again"
caught_up "$said" >/dev/null
md5=$(guest_md5 g) || fail "the guest reads its fill"
mkdir "$T_TMP/ck"
vmm checkpoint g "$T_TMP/ck"
assert_rc 0 "a snapshot of the running VM meanwhile"
suspend_it g
resumes_whole "after a snapshot and a suspend"
suspend_it g
t_done
