#!/usr/bin/env bash
# Crash consistency, shown: tests/tools/killtest.py SIGKILLs a command at
# random moments, VMM_KILLS times (default 50) per command, and checks after
# every kill that `vmm list` works, that every VM and cached image is exactly
# its old or its new version, that the next command succeeds and that
# leftovers are collected.  Seeded: the seed is printed; VMM_KILL_SEED=N
# replays it.  VMM_KILL_SCENARIOS picks some (default: all).
#
# Then the same with power cuts instead of kills (VMM_POWER_CUTS, default 10
# per command), where a command that had succeeded must find its result:
# on XFS with reflinks, and again without them for the commands that copy
# data (a copy not synced before the rename that publishes it is lost).
#
# VMM_KILL_XFAIL lists scenarios whose findings are reported as KNOWN
# without failing (for defects owned elsewhere); none by default.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/registry.sh"
t_init
command -v python3 >/dev/null || t_skip "python3 missing"
KILLS=${VMM_KILLS:-50}
SEED=${VMM_KILL_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
XFAIL=${VMM_KILL_XFAIL-}
echo "seed $SEED (VMM_KILL_SEED=$SEED replays), $KILLS kills per command"
REG=
if reg_have_registry && registry_start REG; then :; else echo "no registry: pull, push and prune are skipped"; fi

scenarios=${VMM_KILL_SCENARIOS:-$(python3 "$TESTS_DIR/tools/killtest.py" --list --vmm x --work x)}
total=0 i=0
for s in $scenarios; do
	i=$((i + 1))
	xf=()
	case " $XFAIL " in *" $s "*) xf=(--xfail) ;; esac
	log=$T_TMP/$s.log
	start=$(date +%s)
	python3 "$TESTS_DIR/tools/killtest.py" --vmm "$VMM" --work "$T_TMP/kt-$s" --scenario "$s" \
		--kills "$KILLS" --seed $((SEED + i)) ${REG:+--registry "$REG"} "${xf[@]}" >"$log" 2>&1
	rc=$?
	took=$(($(date +%s) - start))
	landed=$(sed -n 's/^  \([0-9]*\) kills landed.*/\1/p' "$log")
	total=$((total + ${landed:-0}))
	if [ $rc -eq 77 ]; then
		ok "$s: skipped (no registry)"
	elif [ $rc -eq 0 ] && grep -q KNOWN "$log"; then
		ok "$s: ${landed:-0} kills; KNOWN findings, reported below, not failed (${took}s)"
	elif [ $rc -eq 0 ]; then
		ok "$s: ${landed:-0} kills, every check held (${took}s)"
	else
		fail "$s (${took}s)"
	fi
	if [ $rc -ne 0 ] || grep -q KNOWN "$log"; then
		grep -E '^  (kill|KNOWN|only|sanitizer)' "$log" | head -12 | cut -c1-400
	fi
	rm -rf "$T_TMP/kt-$s"
done
echo "kills: $total"

# Power cuts: the same on a loop-mounted XFS, cut by FS_IOC_SHUTDOWN without
# a log flush (xfstests' godown).  This kernel has no device mapper (no
# dm-flakey or dm-log-writes: CONFIG_MD is not set and there are no
# modules), so the cut is the file system's own.
CUTS=${VMM_POWER_CUTS:-10}
NOREFLINK=${VMM_POWER_NOREFLINK_SCENARIOS-snapshot-create snapshot-restore snapshot-delete import export}
cuts=0 i=100
# power_cuts LABEL MKFS_OPTS SCENARIOS...: each scenario's cuts on a fresh XFS
power_cuts() {
	local label=$1 opts=$2 s log start rc took landed
	shift 2
	local img=$T_TMP/power.img MNT=$T_TMP/power
	truncate -s 1G "$img" && mkfs.xfs -q -f $opts "$img" && mkdir -p "$MNT" && mount -o loop "$img" "$MNT" ||
		{ fail "make the file system for power cuts ($label)"; return; }
	for s in "$@"; do
		i=$((i + 1))
		xf=()
		case " $XFAIL " in *" $s "*) xf=(--xfail) ;; esac
		log=$T_TMP/power-$s.log
		start=$(date +%s)
		python3 "$TESTS_DIR/tools/killtest.py" --vmm "$VMM" --work "$T_TMP/pt-$s" --scenario "$s" \
			--kills "$CUTS" --seed $((SEED + i)) ${REG:+--registry "$REG"} "${xf[@]}" \
			--power-loss --img "$img" --mnt "$MNT" >"$log" 2>&1
		rc=$?
		took=$(($(date +%s) - start))
		landed=$(sed -n 's/^  \([0-9]*\) power cuts.*/\1/p' "$log")
		cuts=$((cuts + ${landed:-0}))
		if [ $rc -eq 77 ]; then
			ok "power cuts$label, $s: skipped (no registry)"
		elif [ $rc -eq 0 ] && grep -q KNOWN "$log"; then
			ok "power cuts$label, $s: ${landed:-0} cuts; KNOWN findings, reported below, not failed (${took}s)"
		elif [ $rc -eq 0 ]; then
			ok "power cuts$label, $s: ${landed:-0} cuts, every check held (${took}s)"
		else
			fail "power cuts$label, $s (${took}s)"
		fi
		if [ $rc -ne 0 ] || grep -q KNOWN "$log"; then
			grep -E '^  (kill|KNOWN|only|sanitizer)' "$log" | head -8 | cut -c1-400
		fi
		rm -rf "$T_TMP/pt-$s"
	done
	umount "$MNT" || umount -l "$MNT"
	rm -f "$img"
}
if [ "$(id -u)" -ne 0 ] || ! command -v mkfs.xfs >/dev/null || ! losetup -f >/dev/null 2>&1; then
	echo "power cuts: skipped (needs root, mkfs.xfs and a loop device)"
	[ -n "${CI:-}" ] && fail "power cuts could not run in CI"
else
	t_defer "umount $T_TMP/power || umount -l $T_TMP/power"
	# shellcheck disable=SC2086
	power_cuts "" "" $scenarios
	only=()
	for s in $NOREFLINK; do case " $scenarios " in *" $s "*) only+=("$s") ;; esac; done
	[ ${#only[@]} -gt 0 ] && power_cuts " without reflinks" "-m reflink=0" "${only[@]}"
	echo "power cuts: $cuts"
fi
t_done
