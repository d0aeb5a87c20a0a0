#!/usr/bin/env bash
# vmm run/stop/suspend/resume on bad input, without booting anything: each
# refusal is one line naming the cause, a non-zero exit (Tart's codes) and
# an untouched bundle.
source "$(dirname "$0")/lib.sh"
t_netns "$@" # vmm run sets up host networking before some of its refusals
t_init

home=$T_TMP/home/vms
printf 'not a kernel' >"$T_TMP/kernel"
"$VMM" create k --kernel "$T_TMP/kernel" --cmdline "console=ttyS0" --disk-size 1 >/dev/null ||
	fail "create"
# the files, their sizes and mtimes (the directory's own times move with every access)
listing() { (cd "$home/$1" && find . -maxdepth 1 -type f -printf '%f %s %T@\n' | sort | sha256sum); }

echo "QEMU missing from PATH"
before=$(listing k)
ERR=$(PATH=/nonexistent "$VMM" run k 2>&1 >/dev/null)
RC=$?
assert_rc 1 "exit 1"
assert_eq "$ERR" "vmm: run \"k\": qemu-system-x86_64 is not on PATH: install qemu-system-x86" \
	"one line naming the cause"
assert_eq "$(listing k)" "$before" "the bundle is untouched"

if command -v qemu-system-x86_64 >/dev/null; then
	echo "missing kernel"
	rm "$home/k/kernel"
	vmm run k
	assert_rc 1 "exit 1"
	assert_one_line_error "one line"
	assert_contains "$ERR" "kernel \`$home/k/kernel\`: no such file or directory" "naming the kernel"

	echo "--accel kvm where KVM cannot be used"
	if ! grep -qwE 'vmx|svm' /proc/cpuinfo || [ ! -w /dev/kvm ]; then
		cp "$T_TMP/kernel" "$home/k/kernel"
		vmm run k --accel kvm
		assert_rc 1 "exit 1"
		assert_contains "$ERR" "--accel kvm: KVM cannot be used" "saying why"
	fi

	echo "--net-bridged on something that is not there"
	cp "$T_TMP/kernel" "$home/k/kernel" 2>/dev/null
	before=$(listing k)
	vmm run k --net-bridged vmm-no-such-if0
	assert_rc 1 "exit 1"
	assert_contains "$ERR" "vmm-no-such-if0" "naming the interface"
	assert_eq "$(listing k)" "$before" "the bundle is untouched"
fi

echo "usage errors"
vmm run k --accel hvf
assert_rc 64 "--accel hvf"
vmm run k --publish 99999:22
assert_rc 64 "--publish with a bad port"
assert_contains "$ERR" "--publish \"99999:22\"" "names the value"
vmm run k --publish 2222:22 --net-bridged br0
assert_rc 64 "--publish with --net-bridged"
vmm run k --net-softnet --net-host
assert_rc 64 "--net-softnet with --net-host"
assert_contains "$ERR" "mutually exclusive" "Tart's text"
vmm stop k --timeout soon
assert_rc 64 "stop --timeout soon"

echo "states"
vmm run nope
assert_rc 2 "run of a missing VM"
assert_eq "$ERR" 'vmm: the specified VM "nope" does not exist' "Tart's text"
vmm stop nope
assert_rc 2 "stop of a missing VM"
vmm suspend nope
assert_rc 2 "suspend of a missing VM"
vmm stop k
assert_rc 2 "stop of a stopped VM"
assert_eq "$ERR" 'vmm: VM "k" is not running' "Tart's text"
vmm suspend k
assert_rc 2 "suspend of a stopped VM"
assert_eq "$ERR" 'vmm: VM "k" is not running' "a clean message (not Tart's doubled one)"
vmm resume k
assert_rc 2 "resume of a stopped VM"
assert_eq "$ERR" 'vmm: VM "k" is not suspended' "says so"

echo "a suspended state from Tart"
: >"$home/k/state.vzvmsave"
vmm get k --format json
assert_contains "$OUT" '"State" : "suspended"' "shows as suspended"
vmm run k
assert_rc 1 "cannot be resumed by QEMU"
assert_contains "$ERR" "state.vzvmsave" "and says so"
vmm stop k
assert_rc 0 "stop discards it"
assert_true "gone" test ! -e "$home/k/state.vzvmsave"
t_done
