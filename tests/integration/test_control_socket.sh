#!/usr/bin/env bash
# The control socket of a running VM (<bundle>/vmm.sock): mode 0600 whatever
# the umask, and requests from a user other than the VM's owner or root are
# refused even where the mode would let them connect (SO_PEERCRED).  The VM
# is a UEFI one with an empty disk (the firmware runs; nothing boots), in a
# network namespace of its own with nothing in it; it is stopped at once.
source "$(dirname "$0")/lib.sh"
t_init
[ "$(id -u)" -eq 0 ] || t_skip "needs root (to ask as another user)"
for t in qemu-system-x86_64 setpriv unshare /usr/bin/python3; do command -v $t >/dev/null || t_skip "$t missing"; done
id nobody >/dev/null 2>&1 || t_skip "no user nobody"
# the test's home must be reachable by nobody for the second check
chmod 755 "$T_TMP"

vmm create fw --linux --disk-size 1
assert_rc 0 "create a UEFI VM"
SOCK=$VMM_HOME/vms/fw/vmm.sock
(umask 000 && exec timeout 300 unshare -n "$VMM" run fw --no-graphics </dev/null >"$T_TMP/run.out" 2>&1) &
RUN=$!
t_defer "kill $RUN"
for i in $(seq 200); do [ -S "$SOCK" ] && break; sleep 0.1; done
if [ ! -S "$SOCK" ]; then
	fail "vmm run made no control socket: $(tail -3 "$T_TMP/run.out")"
	t_done
fi
assert_eq "$(stat -c %a "$SOCK")" 600 "the socket is 0600 under umask 000"

ask() { # user request: one line back from the socket (or the connect error)
	setpriv --reuid="$1" --regid="$1" --clear-groups /usr/bin/python3 - "$SOCK" "$2" <<'PY' 2>&1
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("connect:", e.strerror)
    sys.exit()
try:
    s.sendall(sys.argv[2].encode() + b"\n")
except BrokenPipeError:
    pass  # refused before reading: the answer is waiting all the same
print(s.recv(200).decode().strip())
PY
}
assert_contains "$(ask "$(id -u nobody)" net)" "Permission denied" "another user cannot connect"
chmod 666 "$SOCK" # as if the mode were lost: the peer check still holds
assert_eq "$(ask "$(id -u nobody)" net)" "error permission denied" "another user's request is refused"
assert_contains "$(ask 0 net)" "ok" "the owner's request is answered"

vmm stop fw --timeout 1
assert_rc 0 "stop"
wait $RUN
assert_true "no socket left" test ! -e "$SOCK"
t_done
