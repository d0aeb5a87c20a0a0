#!/usr/bin/env bash
# Runs every benchmark (tests/bench/bench_*.sh, or those named) against its
# baseline in the same run; each prints medians, ratios and one TARGET line
# per target.  At the end: every target of every benchmark, met or missed,
# and the benchmarks that failed or skipped.  Exits 1 if any target was
# missed or any benchmark failed.
set -u
cd "$(dirname "$0")/../.."
export VMM=${VMM:-$PWD/build/vmm}
summary=$(mktemp)
trap 'rm -f "$summary"' EXIT
rc=0 failed=() skipped=()
for b in ${@:-tests/bench/bench_*.sh}; do
	[ -f "$b" ] || continue
	name=$(basename "$b" .sh)
	echo "=== $name"
	out=$(mktemp)
	bash "$b" 2>&1 | tee "$out"
	brc=${PIPESTATUS[0]}
	grep '^TARGET ' "$out" | sed "s/^TARGET /$name: /" >>"$summary"
	if grep -q '^SKIP' "$out"; then
		skipped+=("$name: $(grep -m1 '^SKIP' "$out")")
	elif [ "$brc" -ne 0 ] && ! grep -q '^TARGET ' "$out"; then
		failed+=("$name (exit $brc, no targets reported)")
		rc=1
	fi
	[ "$brc" -ne 0 ] && rc=1
	rm -f "$out"
	echo
done
echo "=== every target"
cat "$summary"
for f in "${failed[@]}"; do echo "FAILED $f"; done
for s in "${skipped[@]}"; do echo "SKIPPED $s"; done
met=$(grep -c ': met$' "$summary")
missed=$(grep -c ': MISSED$' "$summary")
echo "$met met, $missed missed, ${#failed[@]} benchmarks failed, ${#skipped[@]} skipped"
exit $rc
