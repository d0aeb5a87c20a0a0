#!/usr/bin/env bash
# Runs every benchmark (tests/bench/bench_*.sh, or those named) against its
# baseline in the same run; each prints medians, ratios and targets.
set -u
cd "$(dirname "$0")/../.."
export VMM=${VMM:-$PWD/build/vmm}
rc=0
for b in ${@:-tests/bench/bench_*.sh}; do
	[ -f "$b" ] || continue
	echo "=== $(basename "$b" .sh)"
	bash "$b" || rc=1
	echo
done
exit $rc
