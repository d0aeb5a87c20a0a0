#!/usr/bin/env bash
# Runs the test suites and prints one summary line per suite and a total.
#   tests/run.sh [unit|integration|fuzz]...   (default: all)
# Env: VMM (the binary under test), BUILD (where unit test binaries are).
set -u
cd "$(dirname "$0")/.."
export VMM=${VMM:-$PWD/build/vmm}
BUILD=${BUILD:-build}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(unit integration fuzz)

total_pass=0 total_fail=0 total_skip=0 failed=()
record() { # name rc
	case $2 in
	0) total_pass=$((total_pass + 1)) ;;
	77) total_skip=$((total_skip + 1)); echo "SKIP $1" ;;
	*) total_fail=$((total_fail + 1)); failed+=("$1") ;;
	esac
}

for s in "${suites[@]}"; do
	case $s in
	unit)
		for t in "$BUILD"/tests/test_*; do
			[ -x "$t" ] || continue
			case $t in *.d) continue ;; esac
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
		bash tests/fuzz/run.sh "${FUZZ_SECONDS:-5}"
		record fuzz $? ;;
	*) echo "unknown suite $s" >&2; exit 2 ;;
	esac
done

echo
echo "suites: $total_pass passed, $total_fail failed, $total_skip skipped"
if [ $total_fail -ne 0 ]; then
	printf 'FAILED: %s\n' "${failed[@]}"
	exit 1
fi
