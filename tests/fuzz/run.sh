#!/usr/bin/env bash
# Build every libFuzzer target in tests/fuzz and run each for N seconds
# (default 10) from its seed corpus in tests/fuzz/corpus/<target>/.
# Prints "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
secs=${1:-10}
pass=0 fail=0
if ! command -v clang >/dev/null; then echo "SKIP: clang missing"; exit 77; fi
for src in tests/fuzz/fuzz_*.c; do
	[ -f "$src" ] || continue
	name=$(basename "$src" .c)
	bin=build/fuzz/$name
	# fuzz binaries live in build/fuzz whatever BUILD the caller exported
	if ! make -s BUILD=build "$bin" >/dev/null; then
		echo "  FAIL build $name"; fail=$((fail + 1)); continue
	fi
	corpus=tests/fuzz/corpus/$name
	work=$(mktemp -d)
	[ -d "$corpus" ] && cp -r "$corpus"/. "$work"/ 2>/dev/null
	if "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		"$work" >"$work.log" 2>&1; then
		echo "  ok   $name ($(grep -o 'stat::number_of_executed_units: [0-9]*' "$work.log" | awk '{print $2}') runs)"
		pass=$((pass + 1))
	else
		echo "  FAIL $name"; tail -30 "$work.log"; fail=$((fail + 1))
	fi
	rm -rf "$work" "$work.log"
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
