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

# Re-run the calling test inside a network namespace of its own, with only
# loopback up: a VM's network (vm/net.h) is then made in there, and nothing a
# test sends can reach the machine's own network.  As root only (without it
# vmm sets up no host networking).  Call it before t_init, or after anything
# that downloads (guest builds); once in, it does nothing.  A descriptor on
# the starting namespace stays open (VMM_TEST_HOST_NETNS_FD) for the one
# thing that must go out: downloading Debian packages for a test image.
t_netns() {
	[ -n "${VMM_TEST_NETNS:-}" ] && return 0
	[ "$(id -u)" -eq 0 ] || return 0
	command -v unshare >/dev/null && command -v ip >/dev/null ||
		t_skip "unshare or ip is missing (util-linux, iproute2)"
	unshare -n true 2>/dev/null || t_skip "cannot create a network namespace here"
	if [ -n "${T_TMP:-}" ]; then
		t_cleanup
		trap - EXIT
	fi
	export VMM_TEST_NETNS=1
	exec {VMM_TEST_HOST_NETNS_FD}</proc/self/ns/net
	export VMM_TEST_HOST_NETNS_FD
	exec unshare -n -- bash -c 'ip link set lo up && exec bash "$0" "$@"' "$0" "$@"
}

ok() { T_PASS=$((T_PASS + 1)); echo "  ok   $*"; }
fail() { T_FAIL=$((T_FAIL + 1)); echo "  FAIL $*"; }

# vmm ARGS... : run vmm, capture OUT, ERR and RC (never fails the shell).
# OUT and ERR lose trailing newlines (as $(...) does); OUT_RAW is stdout
# byte for byte, trailing newlines included.
vmm() {
	local o e
	o=$(mktemp) e=$(mktemp)
	"$VMM" "$@" >"$o" 2>"$e"
	RC=$?
	OUT=$(cat "$o") ERR=$(cat "$e")
	OUT_RAW=$(cat "$o"; echo x)
	OUT_RAW=${OUT_RAW%x}
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
assert_match() { # actual extended-regex description
	if [[ "$1" =~ $2 ]]; then ok "$3"; else
		fail "$3"
		echo "       got:      $(printf %q "$1" | head -c 600)"
		echo "       expected: /$2/"
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

# Hold Tart's running lock (a classic POSIX write lock on config.json, as
# `tart run` and `vmm run` take it) from another process until killed;
# prints that process's pid.  t_defer the kill.
hold_running_lock() { # vm-dir
	local ready
	ready=$(mktemp -u)
	python3 -c '
import fcntl, os, sys, time
f = open(sys.argv[1] + "/config.json", "r+")
fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
open(sys.argv[2], "w").close()
time.sleep(3600)
' "$1" "$ready" >/dev/null 2>&1 &
	local pid=$! i
	for i in $(seq 100); do [ -e "$ready" ] && break; sleep 0.05; done
	rm -f "$ready"
	echo "$pid"
}

# Hold an flock on a path (as a staging directory's owner does) until killed.
hold_flock() { # path
	local ready
	ready=$(mktemp -u)
	python3 -c '
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
open(sys.argv[2], "w").close()
time.sleep(3600)
' "$1" "$ready" >/dev/null 2>&1 &
	local pid=$! i
	for i in $(seq 100); do [ -e "$ready" ] && break; sleep 0.05; done
	rm -f "$ready"
	echo "$pid"
}

# sparse_cmp A B: same size and same bytes, reading only where either file
# has data (SEEK_DATA/SEEK_HOLE), so 64 GiB sparse disks compare quickly.
sparse_cmp() {
	python3 - "$1" "$2" <<'PY'
import os, sys
a, b = (os.open(p, os.O_RDONLY) for p in sys.argv[1:3])
size = os.fstat(a).st_size
if size != os.fstat(b).st_size:
    sys.exit(1)
def extents(fd):
    pos = 0
    while pos < size:
        try:
            d = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            return
        h = os.lseek(fd, d, os.SEEK_HOLE)
        yield d, h
        pos = h
for fd in (a, b):
    for d, h in extents(fd):
        off = d
        while off < h:
            n = min(h - off, 1 << 20)
            if os.pread(a, n, off) != os.pread(b, n, off):
                sys.exit(1)
            off += n
PY
}

# Allocated bytes of a file.
# A small ext4 of SIZE (e.g. 48M) loop-mounted at $MNT for the test, unmounted at exit.
small_fs() { # size
	local img=$T_TMP/small.img
	MNT=$T_TMP/mnt
	truncate -s "$1" "$img"
	mkfs.ext4 -q -F -m 0 "$img" >/dev/null 2>&1 || { fail "mkfs.ext4"; t_done; }
	mkdir -p "$MNT"
	mount -o loop "$img" "$MNT" || { fail "mount"; t_done; }
	t_defer "umount $MNT || umount -l $MNT"
}
# Fill $MNT until only N MiB are free (a file "filler"; fill_to again replaces it).
fill_to() { # mib
	rm -f "$MNT/filler"
	sync
	local avail
	avail=$(($(stat -f -c '%a * %S' "$MNT")))
	fallocate -l $((avail - $1 * 1024 * 1024)) "$MNT/filler"
}

allocated() { echo $(($(stat -c %b "$1") * $(stat -c %B "$1"))); }

t_done() {
	echo "$T_PASS passed, $T_FAIL failed"
	[ "$T_FAIL" -eq 0 ]
	exit $?
}
