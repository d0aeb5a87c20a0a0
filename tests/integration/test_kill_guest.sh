#!/usr/bin/env bash
# Crash consistency of suspend and resume, shown with a real guest: the two
# commands tests/tools/killtest.py (test_kill.sh) cannot drive, because their
# work happens in `vmm run`, between QEMU and a running guest.  `vmm run` is
# SIGKILLed at a random moment (QEMU dies with it), VMM_KILLS times (default
# 50) per command; the delays are drawn from a seeded generator over the
# window where the command works (measured first on unkilled runs: a delay
# in [0, 1.2 x that]); a kill that lands after the command finished is not
# counted.  VMM_KILL_SEED=N replays the delays; VMM_KILL_GUEST_SCENARIOS
# picks "resume", "suspend" or both (default).
#
# The guest keeps a counter in memory and in its disk's sector 2048 and
# says "VMMTEST DISKCOUNTER MISMATCH" when they disagree: memory restored
# over a disk it does not belong to.
#
# resume (`vmm run` of a suspended VM), each time from a pristine copy of
# the suspended bundle, killed between its start and the resumed guest's
# first count: afterwards `vmm list` works and the VM is either
#   - suspended, with state.vmmsave and disk.img byte for byte as before
#     (the guest never ran), and the next run resumes it: no new boot, the
#     tick counter goes on, memory and disk agree; or
#   - stopped, with no state file of any name (the guest ran and may have
#     written its disk), and the next run boots.
# Never suspended over a disk the guest wrote.
#
# suspend (`vmm suspend NAME` to a running guest, booted or itself resumed;
# every other run keeps no base, VMM_STATE_REUSE=0, so both the in-place and
# the new-file save are killed), `vmm run` killed while it saves: afterwards
# `vmm list` works and the VM is either suspended with a whole state (the
# next run resumes it: no new boot, the ticks go on from where the console
# stopped, memory and disk agree) or stopped with no state file and no
# `*.tmp` visible (the next run boots).  The next run is the one the next
# kill interrupts.
#
# After every kill: tmp/ is empty and the bundle holds nothing but what its
# state allows once `vmm list` has run.
source "$(dirname "$0")/lib.sh"
t_init
source "$(dirname "$0")/guest_lib.sh"

KILLS=${VMM_KILLS:-50}
# a boot under TCG takes 5-15 s: only every FULL_BOOT-th next run expected to boot
# is watched until the guest counts; the others until QUICK_SECS show no resumed guest
FULL_BOOT=${VMM_KILL_GUEST_FULL_BOOT:-8}
QUICK_SECS=3
SEED=${VMM_KILL_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
SCENARIOS=${VMM_KILL_GUEST_SCENARIOS:-resume suspend}
MEM=128
CMDLINE="console=ttyS0 quiet vmmtest.fill=16 vmmtest.diskcounter=/dev/vda"
echo "seed $SEED (VMM_KILL_SEED=$SEED replays), $KILLS kills per command"
suite_start=$SECONDS

vm_dir() { echo "$VMM_HOME/vms/$1"; }
states() { (cd "$(vm_dir "$1")" && ls -d state.vmmsave* 2>/dev/null | tr '\n' ' ' | sed 's/ $//'); }
tmps() { (cd "$(vm_dir "$1")" && ls -d -- *.tmp* .*tmp* 2>/dev/null | tr '\n' ' ' | sed 's/ $//'); }
home_tmp() { ls -A "$VMM_HOME/tmp" 2>/dev/null | tr '\n' ' ' | sed 's/ $//'; }

# fractions SEED N: N numbers in [0, 1) from Python's seeded Mersenne Twister
fractions() {
	python3 -c 'import random, sys
r = random.Random(int(sys.argv[1]))
print(" ".join("%.6f" % r.random() for _ in range(int(sys.argv[2]))))' "$1" "$2"
}
# now: seconds since the epoch, with microseconds
now() { date +%s.%6N; }
secs_since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.3f", a - b }'; }
# delay FRACTION SPAN: a kill's delay, in [0, 1.2 x SPAN)
delay_of() { awk -v f="$1" -v s="$2" 'BEGIN { printf "%.4f", f * 1.2 * s }'; }
median3() { printf '%s\n' "$@" | sort -g | sed -n 2p; }

# qemu_gone NAME: until no process works in the bundle (QEMU runs with its cwd there)
qemu_gone() {
	local d p
	d=$(cd "$(vm_dir "$1")" && pwd -P)
	for _ in $(seq 200); do
		p=""
		for c in /proc/[0-9]*/cwd; do
			[ "$(readlink "$c" 2>/dev/null)" = "$d" ] && p=${c%/cwd} && break
		done
		[ -z "$p" ] && return 0
		sleep 0.05
	done
	fail "a process (${p#/proc/}) still works in $d after its vmm run was killed"
	return 1
}

# kill_now NAME: SIGKILL its vmm run; KILLED=1 if it was still at work (not exited by itself)
kill_now() {
	local pid=${RUN_PID[$1]}
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	local rc=$?
	RUN_PID[$1]=""
	KILLED=0
	[ -n "${KG_DEBUG:-}" ] && echo "    debug: kill at ${delay:-?}: rc $rc"
	[ $rc -eq 137 ] && KILLED=1
	qemu_gone "$1"
}

# sanitizer reports of background runs (a SIGKILLed run writes none; the others may)
check_sanitizer() {
	if grep -q -E 'AddressSanitizer|runtime error:|LeakSanitizer' "$T_TMP/$1.err" 2>/dev/null; then
		fail "sanitizer report from vmm run $1"
		grep -A30 -E 'AddressSanitizer|runtime error:|LeakSanitizer' "$T_TMP/$1.err" | head -40
	fi
	: >"$T_TMP/$1.err"
}

# next_run NAME [ENV...]: start vmm run, OUTCOME booted/resumed once the guest has counted
# on its disk (with a check of the disk) after it; FIRST_TICK is its first tick, MISMATCHES
# the disagreements of memory and disk.  With QUICK set, OUTCOME may be "booting": a
# run that is up QUICK_SECS later with nothing from a resumed guest on its console.
next_run() {
	local name=$1 end
	shift
	: >"$T_TMP/$name.console"
	env "$@" "$VMM" run "$name" >>"$T_TMP/$name.console" 2>>"$T_TMP/$name.err" </dev/null &
	RUN_PID[$name]=$!
	OUTCOME=none
	local t0 tb=
	t0=$(now)
	end=$((SECONDS + GUEST_TIMEOUT))
	# a booted guest: one count; a resumed one: two, the second after a check of
	# the disk against the memory it resumed with
	while [ $SECONDS -lt $end ] && kill -0 "${RUN_PID[$name]}" 2>/dev/null; do
		# QUICK: a run expected to boot is taken as booting once it has run
		# QUICK_SECS without a word from a resumed guest (which counts within ~1 s)
		if [ -n "${QUICK:-}" ] && [ "$(count "$name" "VMMTEST TICK")" -eq 0 ] &&
			[ "$(awk -v a="$(now)" -v b="$t0" -v q="$QUICK_SECS" 'BEGIN { print (a - b > q) }')" = 1 ]; then
			[ "$(state_of "$name")" = running ] && OUTCOME=booting
			break
		fi
		if [ "$(count "$name" "VMMTEST BOOT")" -gt 0 ]; then
			[ -z "$tb" ] && tb=$(secs_since "$t0")
			[ "$(count "$name" "VMMTEST DISKCOUNTER [0-9]")" -ge 1 ] && OUTCOME=booted && break
		elif [ "$(count "$name" "VMMTEST DISKCOUNTER [0-9]")" -ge 2 ]; then
			OUTCOME=resumed
			break
		fi
		sleep 0.05
	done
	[ -n "${KG_DEBUG:-}" ] && echo "    debug: next run $OUTCOME after $(secs_since "$t0") s (boot line after ${tb:-?})"
	FIRST_TICK=$(grep -a -o 'VMMTEST TICK [0-9]*' "$T_TMP/$name.console" | head -1 | awk '{print $3}')
	# a fresh boot counts from 0 whatever the disk says: its first check disagrees
	MISMATCHES=0
	[ $OUTCOME = resumed ] && MISMATCHES=$(count "$name" "DISKCOUNTER MISMATCH")
}

# expect_boot: QUICK for all but every FULL_BOOT-th run expected to boot
BOOTS_EXPECTED=0 BOOTS_FULL=0
expect_boot() {
	BOOTS_EXPECTED=$((BOOTS_EXPECTED + 1))
	QUICK=1
	if [ $((BOOTS_EXPECTED % FULL_BOOT)) -eq 1 ] || [ "$FULL_BOOT" -le 1 ]; then
		QUICK=
		BOOTS_FULL=$((BOOTS_FULL + 1))
	fi
}

# stop_run NAME: stop it as a user does; STOP_RC is vmm stop's status, RUN_RC vmm run's
stop_run() { # name [timeout]
	vmm stop "$1" --timeout "${2:-10}"
	STOP_RC=$RC
	run_wait "$1" 30
	[ "$RUN_RC" -eq 124 ] && run_kill "$1"
}

# after_kill NAME: `vmm list` works; STATE is what `vmm get` says, STATES the state files
after_kill() {
	vmm list
	LIST_RC=$RC LIST_ERR=$ERR
	STATE=$(state_of "$1")
	STATES=$(states "$1")
	STATEFILE=$(vm_dir "$1")/state.vmmsave
	[ -e "$STATEFILE" ] || STATEFILE=$(ls -d "$(vm_dir "$1")"/state.vmmsave.resuming-*.tmp 2>/dev/null | head -1)
	# what a killed run left for the next lock to collect (vm/resumed.h, sweep_leftovers)
	local f
	LEFT=
	for f in "$(vm_dir "$1")"/*.tmp*; do
		[ -e "$f" ] && [ "$f" != "$STATEFILE" ] && LEFT="$LEFT ${f##*/}"
	done
	[ -n "$LEFT" ] && LEFT_UNTIL_LOCK=$((LEFT_UNTIL_LOCK + 1))
}

problem() { PROBLEMS+=("$*"); }
report() { # scenario kill-number delay
	if [ ${#PROBLEMS[@]} -eq 0 ]; then
		PASSED=$((PASSED + 1))
	else
		FAILED=$((FAILED + 1))
		local IFS=';'
		echo "  kill $2 at $3 s ($1): ${PROBLEMS[*]}" | cut -c1-600
	fi
}

# --- resume ---------------------------------------------------------------------------

scenario_resume() {
	local name=r pristine=$T_TMP/pristine-r
	guest_create $name $MEM "$CMDLINE" || { fail "create $name"; return; }
	run_bg $name
	wait_console $name "VMMTEST DISKCOUNTER 3" 1 || { fail "$name counts on its disk"; return; }
	vmm suspend $name
	assert_rc 0 "suspend $name for the pristine copy"
	run_wait $name 60
	check_sanitizer $name
	[ "$(states $name)" = state.vmmsave ] || { fail "$name is not suspended: $(states $name)"; return; }
	local tick0
	tick0=$(last_tick $name)
	cp -a --reflink=auto "$(vm_dir $name)" "$pristine" || { fail "copy the suspended bundle"; return; }
	restore() { rm -rf "$(vm_dir $name)" && cp -a --reflink=auto "$pristine" "$(vm_dir $name)"; }

	# how long an unkilled resume works: from its start to the guest's first count
	local t=() i start
	for i in 1 2 3; do
		restore
		: >"$T_TMP/$name.console"
		start=$(now)
		run_bg $name
		wait_console $name "VMMTEST DISKCOUNTER [0-9]" 1 60 || { fail "a resume of the pristine copy"; return; }
		t+=("$(secs_since "$start")")
		kill_now $name
		vmm list
	done
	local span
	span=$(median3 "${t[@]}")
	echo "  resume: an unkilled resume reaches the guest's first count in $span s (median of 3: ${t[*]})"

	local -a fr
	read -r -a fr <<<"$(fractions "$SEED" $((KILLS * 4)))"
	local kills=0 missed=0 n=0 suspended=0 stopped=0 delay
	PASSED=0 FAILED=0 LEFT_UNTIL_LOCK=0
	local t_end=$((SECONDS + KILLS * 30))
	while [ $kills -lt "$KILLS" ] && [ $n -lt ${#fr[@]} ] && [ $SECONDS -lt $t_end ]; do
		delay=$(delay_of "${fr[$n]}" "$span")
		n=$((n + 1))
		restore
		: >"$T_TMP/$name.console"
		run_bg $name
		sleep "$delay"
		kill_now $name
		# finished: the resumed guest had counted (as the console relayed it) before the kill
		if [ "$(count $name "VMMTEST DISKCOUNTER [0-9]")" -gt 0 ] || [ $KILLED -eq 0 ]; then
			missed=$((missed + 1))
			vmm list
			continue
		fi
		kills=$((kills + 1))
		PROBLEMS=()
		after_kill $name
		[ "$LIST_RC" -eq 0 ] || problem "vmm list failed: $LIST_ERR"
		case $STATE in
		suspended)
			suspended=$((suspended + 1))
			[ -n "$STATEFILE" ] && cmp -s "$STATEFILE" "$pristine/state.vmmsave" ||
				problem "suspended, but its state (${STATEFILE:-none} of '$STATES') is not the one it was"
			sparse_cmp "$(vm_dir $name)/disk.img" "$pristine/disk.img" ||
				problem "suspended over a disk the guest wrote"
			;;
		stopped)
			stopped=$((stopped + 1))
			[ ! -e "$(vm_dir $name)/state.vmmsave" ] || problem "stopped, yet state.vmmsave is there"
			;;
		*) problem "state '$STATE' after the kill" ;;
		esac
		[ -z "$(home_tmp)" ] || problem "leftovers in tmp/: $(home_tmp)"
		QUICK=
		[ "$STATE" = stopped ] && expect_boot
		next_run $name
		if [ "$STATE" = suspended ]; then
			[ "$OUTCOME" = resumed ] || problem "the next run did not resume ($OUTCOME)"
			[ "${FIRST_TICK:-0}" -gt "$tick0" ] ||
				problem "the resumed ticks do not go on (first ${FIRST_TICK:-none}, saved at $tick0)"
		else
			[ "$OUTCOME" = booted ] || [ "$OUTCOME" = booting ] || problem "the next run did not boot ($OUTCOME)"
		fi
		[ "$MISMATCHES" = 0 ] || problem "memory and disk disagree after the next run ($MISMATCHES)"
		local ts
		ts=$(now)
		if [ "$OUTCOME" = booting ]; then stop_run $name 1; else stop_run $name; fi
		[ -n "${KG_DEBUG:-}" ] && echo "    debug: stop after $(secs_since "$ts") s"
		[ "$STOP_RC" -eq 0 ] || problem "vmm stop after the next run failed"
		vmm list
		[ "$(states $name)" = "" ] || problem "stopped, state files '$(states $name)' left"
		[ -z "$(tmps $name)" ] || problem "leftovers in the bundle after stop: $(tmps $name)"
		[ -z "$(home_tmp)" ] || problem "leftovers in tmp/ after stop: $(home_tmp)"
		check_sanitizer $name
		report resume $kills "$delay"
	done
	echo "  resume: $kills kills landed ($suspended left it suspended, $stopped stopped; $LEFT_UNTIL_LOCK left a *.tmp state file for the next lock to collect), $missed after the resume had finished (not counted); $PASSED passed, $FAILED failed"
	[ $kills -ge "$KILLS" ] || fail "resume: only $kills of $KILLS kills landed"
	[ "$FAILED" -eq 0 ] && [ $kills -gt 0 ] && ok "resume: $kills kills, every check held"
	[ "$FAILED" -gt 0 ] && fail "resume: $FAILED of $kills kills broke a check"
	LANDED_RESUME=$kills
	rm -rf "$pristine"
	vmm delete $name
}

# --- suspend --------------------------------------------------------------------------

scenario_suspend() {
	local name=s pristine=$T_TMP/pristine-s
	guest_create $name $MEM "$CMDLINE" || { fail "create $name"; return; }
	QUICK=
	next_run $name
	[ "$OUTCOME" = booted ] || { fail "$name boots and counts"; return; }
	# how long an unkilled suspend works: from `vmm suspend` to vmm run's exit
	local t=() i start
	for i in 1 2 3; do
		start=$(now)
		"$VMM" suspend $name >/dev/null 2>"$T_TMP/suspend.err" || { fail "an unkilled suspend: $(cat "$T_TMP/suspend.err")"; return; }
		wait "${RUN_PID[$name]}"
		t+=("$(secs_since "$start")")
		RUN_PID[$name]=""
		[ $i = 1 ] && cp -a --reflink=auto "$(vm_dir $name)" "$pristine"
		next_run $name
		[ "$OUTCOME" = resumed ] || { fail "the unkilled suspend resumes ($OUTCOME)"; return; }
	done
	local span
	span=$(median3 "${t[@]}")
	echo "  suspend: an unkilled suspend takes $span s (median of 3: ${t[*]})"

	local -a fr
	read -r -a fr <<<"$(fractions "$((SEED + 1))" $((KILLS * 4)))"
	local kills=0 missed=0 n=0 suspended=0 stopped=0 delay spid last reuse=() what
	PASSED=0 FAILED=0 LEFT_UNTIL_LOCK=0
	local t_end=$((SECONDS + KILLS * 30))
	what="a resumed guest"
	while [ $kills -lt "$KILLS" ] && [ $n -lt ${#fr[@]} ] && [ $SECONDS -lt $t_end ]; do
		delay=$(delay_of "${fr[$n]}" "$span")
		n=$((n + 1))
		"$VMM" suspend $name >/dev/null 2>"$T_TMP/suspend.err" &
		spid=$!
		sleep "$delay"
		kill_now $name
		wait $spid
		last=$(last_tick $name)
		PROBLEMS=()
		after_kill $name
		if [ $KILLED -eq 1 ]; then
			kills=$((kills + 1))
		else
			missed=$((missed + 1))
		fi
		[ "$LIST_RC" -eq 0 ] || problem "vmm list failed: $LIST_ERR"
		case $STATE in
		suspended)
			[ $KILLED -eq 1 ] && suspended=$((suspended + 1))
			[ -e "$(vm_dir $name)/state.vmmsave" ] || problem "suspended without state.vmmsave ('$STATES')"
			;;
		stopped)
			[ $KILLED -eq 1 ] && stopped=$((stopped + 1))
			[ ! -e "$(vm_dir $name)/state.vmmsave" ] || problem "stopped, yet state.vmmsave is there"
			[ $KILLED -eq 0 ] && problem "stopped, but the suspend had finished"
			;;
		*) problem "state '$STATE' after the kill" ;;
		esac
		[ -z "$(home_tmp)" ] || problem "leftovers in tmp/: $(home_tmp)"
		# the next run, every other one with no base kept (the next suspend writes a new file)
		reuse=()
		[ $((n % 2)) -eq 0 ] && reuse=(VMM_STATE_REUSE=0)
		QUICK=
		[ "$STATE" = stopped ] && expect_boot
		next_run $name "${reuse[@]}"
		if [ "$STATE" = suspended ]; then
			[ "$OUTCOME" = resumed ] || problem "the next run did not resume ($OUTCOME)"
			[ "${FIRST_TICK:-0}" -gt "${last:-0}" ] ||
				problem "the resumed ticks do not go on (first ${FIRST_TICK:-none}, the console had $last)"
		else
			[ "$OUTCOME" = booted ] || [ "$OUTCOME" = booting ] || problem "the next run did not boot ($OUTCOME)"
		fi
		[ "$MISMATCHES" = 0 ] || problem "memory and disk disagree after the next run ($MISMATCHES)"
		# collected by the next run's lock; a resumed run keeps its base (vm/resumed.h)
		local allowed=""
		[ "$OUTCOME" = resumed ] && [ ${#reuse[@]} -eq 0 ] && allowed=state.vmmsave.resumed.tmp
		[ "$OUTCOME" = booting ] && [ -n "$(tmps $name)" ] && sleep 1 # the lock is taken before QEMU starts
		[ "$(states $name)" = "$allowed" ] ||
			problem "the next run ($OUTCOME) has state files '$(states $name)', not '$allowed'"
		[ "$(tmps $name)" = "$allowed" ] || problem "leftovers in the bundle after the next run: $(tmps $name)"
		check_sanitizer $name
		if [ $KILLED -eq 1 ]; then
			report "suspend of $what" $kills "$delay"
		elif [ ${#PROBLEMS[@]} -gt 0 ]; then
			FAILED=$((FAILED + 1))
			echo "  a suspend that finished before the kill at $delay s: ${PROBLEMS[*]}" | cut -c1-600
		fi
		what="a $OUTCOME guest"
		[ ${#reuse[@]} -gt 0 ] && [ "$OUTCOME" = resumed ] && what="$what (no base kept)"
		if [ "$OUTCOME" = booting ]; then
			# a guest still booting is slow to count: go on from the pristine suspended copy
			stop_run $name 1
			[ "$STOP_RC" -eq 0 ] || echo "  vmm stop of a booting guest failed: $ERR"
			rm -rf "$(vm_dir $name)" && cp -a --reflink=auto "$pristine" "$(vm_dir $name)"
			next_run $name
			what="a resumed guest (the pristine copy)"
		fi
		if [ "$OUTCOME" = none ]; then
			run_kill $name
			next_run $name # start over from whatever is left
		fi
	done
	stop_run $name
	rm -rf "$pristine"
	echo "  suspend: $kills kills landed ($suspended left it suspended, $stopped stopped; $LEFT_UNTIL_LOCK left a *.tmp state file for the next lock to collect), $missed after the suspend had finished (not counted); $PASSED passed, $FAILED failed"
	[ $kills -ge "$KILLS" ] || fail "suspend: only $kills of $KILLS kills landed"
	[ "$FAILED" -eq 0 ] && [ $kills -gt 0 ] && ok "suspend: $kills kills, every check held"
	[ "$FAILED" -gt 0 ] && fail "suspend: $FAILED of $kills kills broke a check"
	LANDED_SUSPEND=$kills
}

LANDED_RESUME=0 LANDED_SUSPEND=0
for s in $SCENARIOS; do
	start=$SECONDS
	echo "$s: $KILLS kills of vmm run"
	scenario_$s
	echo "  $s took $((SECONDS - start)) s"
done
echo "kills: resume $LANDED_RESUME, suspend $LANDED_SUSPEND; of the $BOOTS_EXPECTED next runs that had to boot, $BOOTS_FULL were watched until the guest counted, the others ${QUICK_SECS} s; the suite took $((SECONDS - suite_start)) s"
t_done
