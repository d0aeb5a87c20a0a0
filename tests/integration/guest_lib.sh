# Helpers for integration tests that run the test guest (tests/guest) under
# real QEMU.  Source after lib.sh and t_init.  A `vmm run` started with
# run_bg is stopped (and killed if need be) at exit.
#   guest_dir           build/guest (kernel, initramfs, UEFI disk), built once per machine
#   guest_create NAME MEM_MIB [CMDLINE]   a direct-kernel VM of the test guest
#   run_bg NAME [ARGS]  vmm run NAME in the background: console in $T_TMP/NAME.console,
#                       stderr in $T_TMP/NAME.err, pid in RUN_PID[NAME]
#   wait_console NAME PATTERN COUNT [SECS]   until PATTERN appears COUNT times
#   run_wait NAME [SECS]  wait for that vmm run to exit; its status in RUN_RC
#   run_in NAME [ENV...] [--FLAG...]  run_bg with a console to type into (fd 3 while it runs)
#   guest_md5 NAME        the md5 of the guest's fill, as the guest reads it (needs run_in)
#   suspend_it NAME       vmm suspend NAME, asserting that it ends suspended
#   suspend_counts NAME   "COMPRESSED KEPT": the memory chunks NAME's last suspend
#                         compressed and kept from before, as vmm run said
#   last_tick NAME / count NAME PATTERN
# For network tests (see each helper for details):
#   (sourcing it re-runs the test in a network namespace of its own: t_netns in lib.sh)
#   guest_net_create NAME MEM_MIB [CMDLINE...]   the test guest with vmmtest.net=dhcp
#   guest_console_ip NAME   the last address the guest leased (VMMTEST IP on its console)
#   debian_image        path of the realistic Debian disk (tests/guest/build-debian.sh)
#   ssh_guest ADDR [PORT] CMD...   run CMD in the guest as admin/admin over SSH
#   ssh_wait ADDR [PORT [SECS]]    until ssh_guest answers
declare -A RUN_PID=()
RUN_RC=0
GUEST_TIMEOUT=${GUEST_TIMEOUT:-240}

command -v qemu-system-x86_64 >/dev/null || t_skip "qemu-system-x86_64 is not installed"
guest_dir=$(bash "$TESTS_DIR/guest/build.sh") || t_skip "the test guest cannot be built here"
# built (downloaded) first: from here on the test runs in a network namespace of its own
t_netns "$@"

guest_create() { # name mem_mib [cmdline]
	local cmdline=${3:-console=ttyS0 quiet vmmtest.fill=16}
	"$VMM" create "$1" --kernel "$guest_dir/vmlinuz" --initramfs "$guest_dir/initramfs.img" \
		--cmdline "$cmdline" --disk-size 1 >/dev/null &&
		"$VMM" set "$1" --memory "$2" --cpu 1 >/dev/null
}

run_bg() { # name [args...]
	local name=$1
	shift
	"$VMM" run "$name" "$@" >>"$T_TMP/$name.console" 2>>"$T_TMP/$name.err" </dev/null &
	RUN_PID[$name]=$!
	t_defer "run_kill $name"
}

run_kill() { # stop a vmm run the test left behind
	local pid=${RUN_PID[$1]:-}
	[ -n "$pid" ] || return 0
	kill -INT "$pid" 2>/dev/null
	for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null
}

count() { # name pattern
	local n
	n=$(grep -a -c -- "$2" "$T_TMP/$1.console" 2>/dev/null)
	echo "${n:-0}"
}

last_tick() { # name
	local t
	t=$(grep -a -o 'VMMTEST TICK [0-9]*' "$T_TMP/$1.console" 2>/dev/null | tail -1 | awk '{print $3}')
	echo "${t:-0}"
}

wait_console() { # name pattern count [secs]; returns 1 on timeout or if vmm run died
	local end=$((SECONDS + ${4:-$GUEST_TIMEOUT})) pid=${RUN_PID[$1]:-}
	while [ "$(count "$1" "$2")" -lt "$3" ]; do
		if [ $SECONDS -gt $end ]; then
			echo "       timed out waiting for '$2' x$3 on $1's console"
			return 1
		fi
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			echo "       vmm run $1 exited while waiting for '$2': $(tail -2 "$T_TMP/$1.err")"
			return 1
		fi
		sleep 0.2
	done
}

run_wait() { # name [secs]: wait for vmm run to exit, RUN_RC = its status (124 on timeout)
	local pid=${RUN_PID[$1]:-} end=$((SECONDS + ${2:-60}))
	RUN_RC=124
	[ -n "$pid" ] || return 0
	while kill -0 "$pid" 2>/dev/null; do
		[ $SECONDS -gt $end ] && return 0
		sleep 0.1
	done
	wait "$pid"
	RUN_RC=$?
	RUN_PID[$1]=""
	# a background vmm run's sanitizer report lands in its stderr file
	if grep -q -E 'AddressSanitizer|runtime error:|LeakSanitizer' "$T_TMP/$1.err" 2>/dev/null; then
		fail "sanitizer report from: vmm run $1"
		grep -A30 -E 'AddressSanitizer|runtime error:|LeakSanitizer' "$T_TMP/$1.err" | head -40
		: >"$T_TMP/$1.err"
	fi
}

# A bundle NEW from VM's files and the state and disk `vmm checkpoint` left in DIR.
bundle_from_checkpoint() { # vm new dir
	local home=$T_TMP/home/vms
	mkdir "$home/$2"
	cp "$home/$1/config.json" "$home/$1/kernel" "$home/$1/initramfs" "$home/$1/nvram.bin" "$home/$2/"
	mv "$3/state.vmmsave" "$3/disk.img" "$home/$2/"
}

# NAME, run from a snapshot whose disk holds counter DISK, goes on from it, then stops.
restored_goes_on() { # name disk
	wait_console "$1" "VMMTEST DISKCOUNTER" 3 || fail "the snapshot resumes and counts"
	assert_eq "$(grep -a -m1 -o 'VMMTEST DISKCOUNTER [0-9]*' "$T_TMP/$1.console" | awk '{print $3}')" \
		"$(($2 + 1))" "memory goes on from the counter the disk holds"
	assert_eq "$(count "$1" "DISKCOUNTER MISMATCH")" 0 "memory and disk agree"
	assert_eq "$(count "$1" "VMMTEST BOOT")" 0 "without booting"
	vmm stop "$1" --timeout 30
	run_wait "$1" 30
}

state_of() { "$VMM" get "$1" --format json | grep -o '"State" : "[a-z]*"' | cut -d'"' -f4; }

# rawSize from a state file's header (JSON after 12 bytes of magic and length)
state_raw_size() { head -c 16384 "$1" | tail -c +13 | tr -d '\0' | grep -o '"rawSize":[0-9]*' | cut -d: -f2; }

# Every test that sources this file runs in a network namespace of its own
# (t_netns in lib.sh, entered above once the guest is built); netns_enter is
# its name for tests written before.
netns_enter() { t_netns "$@"; }

guest_net_create() { # name mem_mib [extra cmdline...]: DHCP, httpd :80, dropbear :22
	local name=$1 mem=$2
	shift 2
	guest_create "$name" "$mem" "console=ttyS0 quiet vmmtest.net=dhcp${*:+ $*}"
}

guest_console_ip() { # name: the address of the guest's last "VMMTEST IP" line, or nothing
	grep -a -o 'VMMTEST IP [0-9.]*' "$T_TMP/$1.console" 2>/dev/null | tail -1 | cut -d' ' -f3
}

# debian_image: the realistic disk (GPT, UEFI, systemd-networkd, sshd with
# admin/admin; see tests/guest/build-debian.sh), built once per machine and
# cached.  Prints its path and sets DEBIAN_IMAGE.  Skips the test when this
# machine cannot build it (not root, a tool missing) and fails it when the
# build breaks.  A skip inside $(...) only ends the subshell, so call it
# as `img=$(debian_image) || exit $?` or first at top level.
DEBIAN_IMAGE=""
debian_image() {
	local dir rc
	if [ -z "$DEBIAN_IMAGE" ]; then
		echo "  (building the Debian test image if it is not cached, ~1-2 min)" >&2
		local host=()
		[ -n "${VMM_TEST_HOST_NETNS_FD:-}" ] && host=(nsenter --net=/proc/$$/fd/"$VMM_TEST_HOST_NETNS_FD")
		dir=$("${host[@]}" bash "$TESTS_DIR/guest/build-debian.sh" 2>"$T_TMP/build-debian.log")
		rc=$?
		if [ $rc -eq 3 ]; then
			local why
			why="the Debian test image cannot be built here: $(tail -1 "$T_TMP/build-debian.log")"
			[ "$BASH_SUBSHELL" -gt 0 ] && echo "SKIP: $why" >&2 # stdout is the caller's $(...)
			t_skip "$why"
		elif [ $rc -ne 0 ]; then
			echo "FAIL: tests/guest/build-debian.sh exited $rc:" >&2
			tail -20 "$T_TMP/build-debian.log" >&2
			exit 1
		fi
		DEBIAN_IMAGE=$dir/disk.img
	fi
	echo "$DEBIAN_IMAGE"
}

# ssh_guest ADDR [PORT] CMD...: as $SSH_USER (admin) with password
# $SSH_PASSWORD (admin), no host keys kept or checked, a connect timeout of
# $SSH_CONNECT_TIMEOUT (10) seconds (it covers sshd's banner too, which
# under TCG can take seconds); stdin goes to CMD.  Returns ssh's status
# (CMD's, or 255 when SSH itself failed: no connection, a wrong password).
ssh_guest() {
	local addr=$1 port=22
	shift
	if [[ ${1:-} =~ ^[0-9]+$ ]]; then
		port=$1
		shift
	fi
	command -v sshpass >/dev/null || t_skip "sshpass is missing (make deps)"
	sshpass -p "${SSH_PASSWORD:-admin}" ssh -o StrictHostKeyChecking=no \
		-o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null -o LogLevel=ERROR \
		-o ConnectTimeout="${SSH_CONNECT_TIMEOUT:-10}" -o PubkeyAuthentication=no \
		-o PreferredAuthentications=password,keyboard-interactive -o NumberOfPasswordPrompts=1 \
		-p "$port" "${SSH_USER:-admin}@$addr" "$@"
}

ssh_wait() { # addr [port [secs]]: until a login runs `true`; 1 on timeout
	local addr=$1 port=22 end
	shift
	if [ $# -ge 1 ]; then
		port=$1
		shift
	fi
	end=$((SECONDS + ${1:-$GUEST_TIMEOUT}))
	until ssh_guest "$addr" "$port" true </dev/null 2>/dev/null; do
		if [ $SECONDS -gt $end ]; then
			echo "       timed out waiting for SSH on $addr:$port"
			return 1
		fi
		sleep 1
	done
}

# vmm run NAME with a console we can type into (fd 3 while it runs)
run_in() { # name [env...] [--flags of vmm run...]
	local name=$1 envs=() flags=()
	shift
	for a in "$@"; do
		case $a in -*) flags+=("$a") ;; *) [ ${#flags[@]} -gt 0 ] && flags+=("$a") || envs+=("$a") ;; esac
	done
	rm -f "$T_TMP/$name.in"
	mkfifo "$T_TMP/$name.in"
	env "${envs[@]}" "$VMM" run "$name" "${flags[@]}" <"$T_TMP/$name.in" >>"$T_TMP/$name.console" \
		2>>"$T_TMP/$name.err" &
	RUN_PID[$name]=$!
	t_defer "run_kill $name"
	exec 3>"$T_TMP/$name.in"
}
# the md5 of the guest's fill, as the guest reads it; asked once more if no
# answer comes in 60 s, saying so on stderr with the last line the guest
# read (CI once saw no answer in 120 s from a guest that went on running:
# the line or the answer lost, cause not known; the memory is what is checked)
guest_md5() { # name
	local n i
	n=$(count "$1" "VMMTEST MD5")
	for i in 1 2; do
		echo md5 >&3
		wait_console "$1" "VMMTEST MD5" $((n + 1)) 60 >/dev/null && break
		{ [ "$i" = 2 ] || ! kill -0 "${RUN_PID[$1]:-0}" 2>/dev/null; } && echo "       timed out waiting for 'VMMTEST MD5' x$((n + 1)) on $1's console, asked twice" && return 1
		echo "       no md5 from $1 in 60 s (the last line it read: $(grep -a -o 'VMMTEST INPUT.*' "$T_TMP/$1.console" | tail -1)); asking again" >&2
	done
	grep -a -o 'VMMTEST MD5 [0-9a-f]*' "$T_TMP/$1.console" | tail -1 | awk '{print $3}'
}
suspend_counts() { # name
	grep -a -o 'memory: [0-9]* chunks compressed, [0-9]* kept' "$T_TMP/$1.err" | tail -1 |
		awk '{print $2, $5}'
}
suspend_it() { # name
	vmm suspend "$1"
	assert_rc 0 "suspend $1"
	run_wait "$1" 60
	exec 3>&-
	assert_eq "$(state_of "$1")" suspended "$1 is suspended"
}
