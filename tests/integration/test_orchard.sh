#!/usr/bin/env bash
# The CI-runner workflow end to end, as Orchard's Linux worker drives it
# (internal/worker/vmmanager/vetu/vetu.go in cirruslabs/orchard): vmm
# installed under the name `vetu`, a Tart-shaped Debian image (UEFI, GPT,
# systemd-networkd DHCP, sshd with admin/admin; tests/guest/build-debian.sh)
# pushed to a registry over TLS, then the worker's commands in its order,
# with empty stdin: list, pull, clone, fqn, set, run (no flags), ip --wait 60,
# SSH admin/admin running a startup script, stop --timeout 5, delete.
. "$(dirname "$0")/lib.sh"
t_init
. "$TESTS_DIR/integration/guest_lib.sh"
. "$TESTS_DIR/integration/registry.sh"
[ "$(id -u)" -eq 0 ] || t_skip "the default network needs root"
debian_image >/dev/null
reg_have_registry || t_skip "docker-registry is missing (make deps)"

registry_start REG --tls || exit 1
unset CURL_CA_BUNDLE SSL_CERT_DIR
export SSL_CERT_FILE=$REG_CA
IMAGE=$REG/cirruslabs/ubuntu-runner-amd64:latest

echo "a Tart-shaped image in the registry"
vmm create golden --linux --disk-size 3
assert_rc 0 "create --linux"
cp --sparse=always "$DEBIAN_IMAGE" "$VMM_HOME/vms/golden/disk.img"
truncate -s 3G "$VMM_HOME/vms/golden/disk.img"
vmm push golden "$IMAGE"
assert_rc 0 "push it over TLS"
vmm delete golden

echo "vmm as vetu, with vetu's home"
mkdir -p "$T_TMP/bin"
ln -s "$VMM" "$T_TMP/bin/vetu"
export VETU_HOME=$T_TMP/vetu-home
unset VMM_HOME
worker() { # `vetu ARGS` as Orchard runs it: empty stdin, stdout and stderr captured
	local o e
	o=$(mktemp) e=$(mktemp)
	PATH=$T_TMP/bin:$PATH command vetu "$@" </dev/null >"$o" 2>"$e"
	RC=$?
	OUT=$(cat "$o") ERR=$(cat "$e")
	rm -f "$o" "$e"
}
NAME=orchard-ci-task-1-3b2f7c0e-0
worker list --format json
assert_rc 0 "list --format json"
assert_not_contains "$OUT" '"Name"' "nothing yet"
worker pull "$IMAGE"
assert_rc 0 "pull IMAGE"
worker clone "$IMAGE" "$NAME"
assert_rc 0 "clone IMAGE NAME"
assert_true "in VETU_HOME" test -f "$VETU_HOME/vms/$NAME/config.json"
worker fqn "$IMAGE"
assert_rc 0 "fqn IMAGE"
assert_match "$OUT" "^$REG/cirruslabs/ubuntu-runner-amd64@sha256:[0-9a-f]{64}$" "the digest form"
worker set --memory 1024 "$NAME"
assert_rc 0 "set --memory 1024 NAME"
worker set --cpu 2 "$NAME"
assert_rc 0 "set --cpu 2 NAME"
worker set --disk-size 4 "$NAME"
assert_rc 0 "set --disk-size 4 NAME"

echo "run with no flags, ip --wait 60, SSH admin/admin"
PATH=$T_TMP/bin:$PATH command vetu run "$NAME" </dev/null >"$T_TMP/run.out" 2>"$T_TMP/run.err" &
RUN_PID[orchard]=$!
t_defer "kill -KILL ${RUN_PID[orchard]}"
worker ip --wait 60 "$NAME"
assert_rc 0 "ip --wait 60 NAME"
addr=$OUT
assert_match "$addr" '^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$' "an address ($addr)"
worker list --format json
assert_contains "$OUT" "\"Name\" : \"$NAME\"" "list names it"
assert_contains "$OUT" '"Running" : true' "as running"
ssh_wait "$addr" 22 "$GUEST_TIMEOUT" && ok "sshd answers at $addr:22" || fail "SSH to the guest"
script=$(printf 'set -e\nexport CIRRUS_TASK="task-1"\necho "startup script on $(hostname) for $CIRRUS_TASK"\nip -4 -o addr show scope global | grep -c "10.0.2.15/24"\nexit\n')
out=$(ssh_guest "$addr" 'bash -l' <<<"$script" 2>&1)
assert_eq "$out" "$(printf 'startup script on vmm-debian for task-1\n1')" \
	"a login shell runs the startup script (the guest leased 10.0.2.15 through systemd-networkd)"
out=$(ssh_guest "$addr" 'sudo -n id -u' 2>&1)
assert_eq "$out" "0" "admin has passwordless sudo"
out=$(ssh_guest "$addr" 'df -BG --output=size / | tail -1 | tr -d " G"' 2>&1)
assert_true "the root file system grew with set --disk-size ($out GiB)" test "${out:-0}" -ge 3

echo "stop --timeout 5, delete"
worker stop --timeout 5 "$NAME"
assert_rc 0 "stop --timeout 5 NAME"
for _ in $(seq 1 200); do kill -0 "${RUN_PID[orchard]}" 2>/dev/null || break; sleep 0.1; done
wait "${RUN_PID[orchard]}"
assert_eq "$?" 0 "run exits 0"
worker delete "$NAME"
assert_rc 0 "delete NAME"
worker list --format json
assert_not_contains "$OUT" "$NAME" "gone"
assert_eq "$(ip -o link show | grep -c ' vmm')" 0 "nothing of its network is left"

echo "Orchard cancels a VM with SIGKILL of run: nothing is left, the next run works"
worker clone "$IMAGE" "$NAME"
PATH=$T_TMP/bin:$PATH command vetu run "$NAME" </dev/null >>"$T_TMP/run.out" 2>>"$T_TMP/run.err" &
pid=$!
worker ip --wait 60 "$NAME"
assert_rc 0 "ip"
kill -KILL $pid
wait $pid 2>/dev/null
for _ in $(seq 1 50); do [ "$(ip -o link show | grep -c ' vmm')" = 0 ] && break; sleep 0.1; done
assert_eq "$(ip -o link show | grep -c ' vmm')" 0 "no interface left after SIGKILL"
worker list --format json
assert_contains "$OUT" '"Running" : false' "not running"
worker delete "$NAME"
assert_rc 0 "delete after SIGKILL"
t_done
