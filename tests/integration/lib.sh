# Shared helpers for integration tests: source it, call t_init, then assertions,
# then t_done, which prints "N passed, N failed" and sets the exit status.
# Each test file gets its own VMM_HOME under a temp dir removed on exit.
set -u
VMM=${VMM:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build/vmm}
TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
T_PASS=0 T_FAIL=0 T_NAME=""
T_CLEANUP=()

t_init() {
	T_TMP=$(mktemp -d /tmp/vmm-test.XXXXXX)
	export VMM_HOME=$T_TMP/home
	unset TART_HOME
	export CI=true
	trap t_cleanup EXIT
}

# Register a command to run at exit (last registered runs first).
t_defer() { T_CLEANUP=("$*" "${T_CLEANUP[@]}"); }

t_cleanup() {
	local c
	for c in "${T_CLEANUP[@]}"; do eval "$c" >/dev/null 2>&1 || true; done
	[ -n "${T_TMP:-}" ] && rm -rf "$T_TMP"
}

t_skip() { echo "SKIP: $*"; exit 77; }

ok() { T_PASS=$((T_PASS + 1)); echo "  ok   $*"; }
fail() { T_FAIL=$((T_FAIL + 1)); echo "  FAIL $*"; }

# vmm ARGS... : run vmm, capture OUT, ERR and RC (never fails the shell)
vmm() {
	local o e
	o=$(mktemp) e=$(mktemp)
	"$VMM" "$@" >"$o" 2>"$e"
	RC=$?
	OUT=$(cat "$o") ERR=$(cat "$e")
	rm -f "$o" "$e"
	if grep -q -E 'AddressSanitizer|runtime error:|LeakSanitizer' <<<"$ERR"; then
		fail "sanitizer report from: vmm $*"
		echo "$ERR" | head -40
	fi
	return 0
}

assert_rc() { # expected description
	if [ "$RC" -eq "$1" ]; then ok "$2"; else
		fail "$2 (exit $RC, wanted $1)"
		[ -n "$ERR" ] && echo "       stderr: $(head -c 600 <<<"$ERR")"
	fi
}
assert_eq() { # actual expected description
	if [ "$1" == "$2" ]; then ok "$3"; else
		fail "$3"
		echo "       got:      $(printf %q "$1" | head -c 600)"
		echo "       expected: $(printf %q "$2" | head -c 600)"
	fi
}
assert_contains() { # haystack needle description
	if grep -qF -- "$2" <<<"$1"; then ok "$3"; else
		fail "$3"
		echo "       $(printf %q "$2") not in: $(head -c 600 <<<"$1")"
	fi
}
assert_not_contains() {
	if grep -qF -- "$2" <<<"$1"; then fail "$3"; echo "       found $(printf %q "$2")"; else ok "$3"; fi
}
assert_true() { # description command...
	local d=$1
	shift
	if "$@"; then ok "$d"; else fail "$d"; fi
}
# One stderr line: errors are one line naming what failed.
assert_one_line_error() {
	local n
	n=$(grep -c . <<<"$ERR")
	if [ "$n" -ge 1 ] && grep -q '^vmm: ' <<<"$ERR"; then ok "$1"; else fail "$1 (stderr: $ERR)"; fi
}

# Allocated bytes of a file.
allocated() { echo $(($(stat -c %b "$1") * $(stat -c %B "$1"))); }

t_done() {
	echo "$T_PASS passed, $T_FAIL failed"
	[ "$T_FAIL" -eq 0 ]
	exit $?
}
