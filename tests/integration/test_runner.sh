#!/usr/bin/env bash
# tests/run.sh itself: a suite that skips (exit 77) fails the run when CI is
# set (a broken install step must not pass as a skip), and stays a skip,
# listed at the end, when it is not.
source "$(dirname "$0")/lib.sh"
t_init
ROOT=$(cd "$TESTS_DIR/.." && pwd)
mkdir -p "$T_TMP/b/tests"
printf '#!/bin/sh\necho "SKIP: a part is missing"\nexit 77\n' >"$T_TMP/b/tests/test_skips"
printf '#!/bin/sh\necho "1 passed, 0 failed"\n' >"$T_TMP/b/tests/test_passes"
chmod +x "$T_TMP/b/tests/"*
out=$(cd "$ROOT" && env -u CI BUILD="$T_TMP/b" bash tests/run.sh unit 2>&1)
assert_eq "$?" 0 "locally a skip does not fail the run"
assert_contains "$out" "suites: 1 passed, 0 failed, 1 skipped" "it is counted as a skip"
assert_contains "$out" "SKIPPED (a part is missing here; in CI this fails): unit/test_skips" "and named at the end"
out=$(cd "$ROOT" && CI=true BUILD="$T_TMP/b" bash tests/run.sh unit 2>&1)
assert_eq "$?" 1 "in CI a skip fails the run"
assert_contains "$out" "FAIL unit/test_skips: skipped, which counts as a failure in CI" "saying so"
assert_contains "$out" "suites: 1 passed, 1 failed, 0 skipped" "counted as a failure"
t_done
