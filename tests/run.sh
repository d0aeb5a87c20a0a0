#!/usr/bin/env bash
# Runs the test suites and prints one summary line per suite and a total.
#   tests/run.sh [unit|integration|fuzz]...   (default: all)
# Env: VMM (the binary under test), BUILD (where unit test binaries are),
# FUZZ_SECONDS (per fuzz target; 5, or 30 in CI).
#
# A suite that skips (exit 77: a part it needs is missing) is a failure when
# CI is set: in CI every part must be there, and a broken install step must
# not pass as a skip.  Locally it stays a skip and is listed at the end.
set -u
cd "$(dirname "$0")/.."
export VMM=${VMM:-$PWD/build/vmm}
BUILD=${BUILD:-build}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(unit integration fuzz)

total_pass=0 total_fail=0 total_skip=0 failed=() skipped=()
record() { # name rc
	case $2 in
	0) total_pass=$((total_pass + 1)) ;;
	77)
		if [ -n "${CI:-}" ]; then
			total_fail=$((total_fail + 1)); failed+=("$1 (skipped, and CI is set)")
			echo "FAIL $1: skipped, which counts as a failure in CI"
		else
			total_skip=$((total_skip + 1)); skipped+=("$1"); echo "SKIP $1"
		fi ;;
	*) total_fail=$((total_fail + 1)); failed+=("$1") ;;
	esac
}

for s in "${suites[@]}"; do
	case $s in
	unit)
		for t in "$BUILD"/tests/test_*; do
			[ -x "$t" ] || continue
			case $t in *.d) continue ;; esac
			# needs live registries: integration/test_registry_client.sh runs it
			case $t in */test_client) continue ;; esac
			echo "=== unit: $(basename "$t")"
			"$t"
			rc=$? # before any $(...) in record's arguments resets $?
			record "unit/$(basename "$t")" $rc
		done ;;
	integration)
		for t in tests/integration/test_*.sh; do
			[ -f "$t" ] || continue
			echo "=== integration: $(basename "$t")"
			timeout --kill-after=30 "${VMM_TEST_TIMEOUT:-1800}" bash "$t"
			rc=$?
			record "integration/$(basename "$t")" $rc
		done ;;
	fuzz)
		echo "=== fuzz smoke"
		bash tests/fuzz/run.sh "${FUZZ_SECONDS:-$([ -n "${CI:-}" ] && echo 30 || echo 5)}"
		record fuzz $? ;;
	*) echo "unknown suite $s" >&2; exit 2 ;;
	esac
done

echo
echo "suites: $total_pass passed, $total_fail failed, $total_skip skipped"
[ ${#skipped[@]} -ne 0 ] && printf 'SKIPPED (a part is missing here; in CI this fails): %s\n' "${skipped[@]}"
if [ $total_fail -ne 0 ]; then
	printf 'FAILED: %s\n' "${failed[@]}"
	exit 1
fi
