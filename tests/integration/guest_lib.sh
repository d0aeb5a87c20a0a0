# Helpers for integration tests that run the test guest (tests/guest) under
# real QEMU.  Source after lib.sh and t_init.  A `vmm run` started with
# run_bg is stopped (and killed if need be) at exit.
#   guest_dir           build/guest (kernel, initramfs, UEFI disk), built once per machine
#   guest_create NAME MEM_MIB [CMDLINE]   a direct-kernel VM of the test guest
#   run_bg NAME [ARGS]  vmm run NAME in the background: console in $T_TMP/NAME.console,
#                       stderr in $T_TMP/NAME.err, pid in RUN_PID[NAME]
#   wait_console NAME PATTERN COUNT [SECS]   until PATTERN appears COUNT times
#   run_wait NAME [SECS]  wait for that vmm run to exit; its status in RUN_RC
#   last_tick NAME / count NAME PATTERN
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

state_of() { "$VMM" get "$1" --format json | grep -o '"State" : "[a-z]*"' | cut -d'"' -f4; }

# rawSize from a state file's header (JSON after 12 bytes of magic and length)
state_raw_size() { head -c 16384 "$1" | tail -c +13 | tr -d '\0' | grep -o '"rawSize":[0-9]*' | cut -d: -f2; }
