#!/usr/bin/env bash
# Commands racing each other, and the review's defects that need a second
# command to show: a command is held at a named point (VMM_TEST_PAUSE, see
# common/util.h) while another runs, then let go; both must end as a user
# expects.  Also hostile manifests (terabytes, zero-sized layers), a reused
# pull staging directory, `set --disk` on a suspended VM and `export` past a
# planted symlink.  No guest is booted: `vmm run` is only ever refused here,
# and runs inside a network namespace of its own all the same.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/registry.sh"
t_init
reg_have_registry || t_skip "docker-registry or python3-cryptography missing"
export DOCKER_CONFIG=$T_TMP/docker VMM_CREDENTIALS_FILE=$T_TMP/credentials.json
unset VMM_REGISTRY_USERNAME VMM_REGISTRY_PASSWORD TART_REGISTRY_USERNAME TART_REGISTRY_PASSWORD
export VMM_TEST_PAUSE_DIR=$T_TMP/pause
mkdir -p "$VMM_TEST_PAUSE_DIR"
MiB=$((1024 * 1024))
RACES=0

registry_start REG || { fail "start registry"; t_done; }

# paused POINT CMD...: start `vmm CMD` held at POINT; sets BG_PID, BG_OUT, BG_ERR.
paused() {
	local point=$1
	shift
	rm -f "$VMM_TEST_PAUSE_DIR/$point".*
	BG_OUT=$(mktemp -p "$T_TMP") BG_ERR=$(mktemp -p "$T_TMP")
	VMM_TEST_PAUSE=$point "$VMM" "$@" >"$BG_OUT" 2>"$BG_ERR" &
	BG_PID=$!
	t_defer "kill -9 $BG_PID"
	local i
	for ((i = 0; i < 600; i++)); do
		[ -e "$VMM_TEST_PAUSE_DIR/$point.reached" ] && return 0
		kill -0 "$BG_PID" 2>/dev/null || break
		sleep 0.05
	done
	fail "vmm $* never reached $point: $(cat "$BG_ERR")"
	return 1
}
# release POINT: let it go and wait; sets BG_RC.
release() {
	touch "$VMM_TEST_PAUSE_DIR/$1.go"
	wait "$BG_PID"
	BG_RC=$?
	RACES=$((RACES + 1))
}
# vmm run inside a namespace with no network (it must be refused anyway).
vmm_run_isolated() {
	local o e
	o=$(mktemp -p "$T_TMP") e=$(mktemp -p "$T_TMP")
	timeout 60 unshare -n "$VMM" run "$@" </dev/null >"$o" 2>"$e"
	RC=$? OUT=$(cat "$o") ERR=$(cat "$e")
}
sums() { (cd "$1" && find . -type f ! -name '*.sock' -print0 | sort -z | xargs -0 sha256sum); }
list_state() { "$VMM" list --format json | python3 -c '
import json, sys
for v in json.load(sys.stdin):
    if v["Name"] == sys.argv[1]:
        print(v["State"])' "$1"; }

vmm create vm1 --linux --disk-size 1
head -c $((8 * MiB)) /dev/urandom | dd of="$VMM_HOME/vms/vm1/disk.img" bs=1M seek=3 conv=notrunc status=none
REF=$REG/races/vm1:latest

echo "# stop, list, set, delete and run while vm1 is being pushed"
before=$(sums "$VMM_HOME/vms/vm1")
if paused push push vm1 "$REF" --insecure; then
	assert_eq "$(list_state vm1)" "stopped" "list: a VM being pushed is stopped, not running"
	vmm stop vm1
	assert_rc 2 "stop: vm1 is not running (the push is not signalled)"
	assert_contains "$ERR" 'VM "vm1" is not running' "Tart's text"
	assert_true "the push is still alive after stop" kill -0 "$BG_PID"
	vmm set vm1 --cpu 3
	assert_rc 1 "set is refused while vm1 is pushed"
	assert_contains "$ERR" "is in use by another vmm command (pid $BG_PID)" "naming the pusher"
	vmm delete vm1
	assert_rc 1 "delete is refused while vm1 is pushed"
	vmm_run_isolated vm1
	assert_rc 1 "run is refused while vm1 is pushed"
	assert_contains "$ERR" "in use by another vmm command" "as in use"
	vmm get vm1 --format json
	assert_rc 0 "get works meanwhile"
	release push
	assert_eq "$BG_RC" 0 "the push finishes ($(head -c 300 "$BG_ERR"))"
fi
assert_eq "$(sums "$VMM_HOME/vms/vm1")" "$before" "vm1 untouched"

echo "# stop and set while vm1 is being exported"
if paused export export vm1 "$T_TMP/vm1.tar.zst"; then
	assert_eq "$(list_state vm1)" "stopped" "list: a VM being exported is stopped"
	vmm stop vm1
	assert_rc 2 "stop: not running (the export is not signalled)"
	vmm set vm1 --memory 2048
	assert_rc 1 "set is refused while vm1 is exported"
	release export
	assert_eq "$BG_RC" 0 "the export finishes ($(head -c 300 "$BG_ERR"))"
fi
vmm import "$T_TMP/vm1.tar.zst" vm1-imp
assert_rc 0 "the export imports"
assert_true "and holds vm1's disk" cmp -s "$VMM_HOME/vms/vm1/disk.img" "$VMM_HOME/vms/vm1-imp/disk.img"

echo "# export does not follow or truncate what sits at a temporary name"
echo "precious" >"$T_TMP/victim"
ln -s "$T_TMP/victim" "$T_TMP/out.tar.zst.tmp"
vmm export vm1 "$T_TMP/out.tar.zst"
assert_rc 0 "export beside a planted symlink"
assert_eq "$(cat "$T_TMP/victim")" "precious" "the symlink's target is untouched"
assert_eq "$(ls "$T_TMP" | grep -c '^out\.tar\.zst\.tmp-')" 0 "no temporary file left"
ln -s "$T_TMP/victim" "$T_TMP/link.tar.zst"
vmm export vm1 "$T_TMP/link.tar.zst"
assert_rc 0 "export onto a symlink"
assert_eq "$(cat "$T_TMP/victim")" "precious" "replaces the link, not what it points at"

echo "# delete and prune while a pull is under way"
vmm pull "$REF" --insecure
assert_rc 0 "pull"
vmm delete "$REF"
assert_rc 0 "delete it again"
vmm prune --entries caches --older-than 0
if paused pull pull "$REF" --insecure; then
	vmm delete "$REF"
	assert_rc 2 "delete: not cached yet"
	vmm prune --entries caches --older-than 0
	assert_rc 0 "prune during the pull"
	vmm list
	assert_rc 0 "list during the pull"
	release pull
	assert_eq "$BG_RC" 0 "the pull finishes ($(head -c 300 "$BG_ERR"))"
fi
vmm clone "$REF" from-pull
assert_rc 0 "and its image clones"
assert_true "with vm1's disk" cmp -s "$VMM_HOME/vms/vm1/disk.img" "$VMM_HOME/vms/from-pull/disk.img"

echo "# the cache GC of another command between a pull's install and its tag"
OTHER=$REG/races/imp:latest
vmm push vm1-imp "$OTHER" --insecure
assert_rc 0 "push another image, for a delete to GC with"
vmm delete "$REF"
vmm prune --entries caches --older-than 0
vmm pull "$OTHER" --insecure
assert_rc 0 "pull it"
if paused pull-installed pull "$REF" --insecure; then
	assert_eq "$(find "$VMM_HOME/cache/OCIs" -name 'sha256:*' | wc -l)" 2 "installed, not yet tagged"
	vmm delete "$OTHER"
	assert_rc 0 "delete (and its GC) between install and tag"
	vmm prune --entries caches --older-than 0
	assert_rc 0 "prune between install and tag"
	release pull-installed
	assert_eq "$BG_RC" 0 "the pull finishes ($(head -c 300 "$BG_ERR"))"
fi
vmm clone "$REF" after-gc
assert_rc 0 "the pulled image survived the GC and clones"

echo "# delete and prune while a clone copies from the cache"
D=$(cd "$VMM_HOME/cache/OCIs" && find . -maxdepth 4 -name 'sha256:*' -type d | head -1)
DIGEST=${D##*/}
if paused clone clone "$REF" from-cache; then
	vmm delete "$REG/races/vm1@$DIGEST"
	assert_rc 1 "deleting the image being cloned from is refused"
	assert_contains "$ERR" "in use" "as in use"
	vmm delete "$REF"
	assert_rc 0 "deleting its tag is fine"
	vmm prune --entries caches --older-than 0
	assert_rc 0 "prune during the clone"
	release clone
	assert_eq "$BG_RC" 0 "the clone finishes ($(head -c 300 "$BG_ERR"))"
fi
assert_true "the clone has vm1's disk" cmp -s "$VMM_HOME/vms/vm1/disk.img" "$VMM_HOME/vms/from-cache/disk.img"
vmm prune --entries caches --older-than 0
assert_eq "$(find "$VMM_HOME/cache/OCIs" -name 'sha256:*' | wc -l)" 0 "once the clone is done, the untagged image is collected"

echo "# two pulls of one image at once"
if paused pull pull "$REF" --insecure; then
	first=$BG_PID first_err=$BG_ERR
	"$VMM" pull "$REF" --insecure >"$T_TMP/second.out" 2>&1 &
	second=$!
	sleep 1
	assert_true "the second pull waits for the first" kill -0 $second
	touch "$VMM_TEST_PAUSE_DIR/pull.go"
	wait $first
	rc1=$?
	wait $second
	rc2=$?
	RACES=$((RACES + 1))
	assert_eq "$rc1 $rc2" "0 0" "both pulls succeed ($(head -c 200 "$first_err") $(head -c 200 "$T_TMP/second.out"))"
	assert_contains "$(cat "$T_TMP/second.out")" "waiting for lock" "the second said it waited"
	assert_eq "$(find "$VMM_HOME/cache/OCIs" -name 'sha256:*' | wc -l)" 1 "one image in the cache"
	assert_eq "$(ls "$VMM_HOME/tmp" | wc -l)" 0 "no staging left"
fi

echo "# set takes the VM's lock before it changes anything"
if paused set set vm1 --disk-size 2; then
	vmm_run_isolated vm1
	assert_rc 1 "run is refused while set works on vm1"
	vmm push vm1 "$REF" --insecure
	assert_rc 1 "push is refused too"
	release set
	assert_eq "$BG_RC" 0 "set finishes"
fi
assert_eq "$(stat -c %s "$VMM_HOME/vms/vm1/disk.img")" 2000000000 "disk grown"

echo "# set --disk on a suspended VM drops the state that belongs to the old disk"
vmm create susp --linux --disk-size 1
printf 'saved memory of the old disk' >"$VMM_HOME/vms/susp/state.vmmsave"
assert_eq "$(list_state susp)" "suspended" "suspended (a state file)"
truncate -s 1500000000 "$T_TMP/new.img"
printf 'new disk' | dd of="$T_TMP/new.img" conv=notrunc status=none
vmm set susp --disk "$T_TMP/new.img"
assert_rc 0 "set --disk"
assert_true "the state is gone" test ! -e "$VMM_HOME/vms/susp/state.vmmsave"
assert_eq "$(list_state susp)" "stopped" "and the VM is stopped"
assert_true "the disk is the new one" cmp -s "$T_TMP/new.img" "$VMM_HOME/vms/susp/disk.img"
assert_eq "$(ls "$VMM_HOME/vms/susp" | grep -c tmp)" 0 "no temporary disk left"
printf 'state' >"$VMM_HOME/vms/susp/state.vmmsave"
vmm set susp --disk "$T_TMP/new.img" --disk-size 1
assert_rc 1 "a --disk-size below the new disk's is refused"
assert_true "and changes nothing, the state included" test -e "$VMM_HOME/vms/susp/state.vmmsave"

echo "# a pull reusing an old staging directory takes nothing from it"
vmm delete "$REF"
vmm prune --entries caches --older-than 0
STAGE=$VMM_HOME/tmp/$(printf '%s' "$REF" | md5sum | cut -d' ' -f1)
mkdir -p "$STAGE"
printf 'stale kernel' >"$STAGE/kernel"
printf 'stale state' >"$STAGE/state.vmmsave"
printf 'stale' >"$STAGE/initramfs"
vmm pull "$REF" --insecure
assert_rc 0 "pull over a stale staging directory"
vmm clone "$REF" from-stale
assert_rc 0 "clone it"
for f in kernel initramfs state.vmmsave; do
	assert_true "no stale $f in the image" test ! -e "$VMM_HOME/vms/from-stale/$f"
done
assert_eq "$(list_state from-stale)" "stopped" "the clone is stopped, not suspended"

echo "# hostile manifests: a zero-sized layer, terabytes"
# A manifest of vm1's real config and NVRAM layers and one disk layer (vm1's
# first blob) with the sizes given: only the claims are hostile.  Pulled
# through a proxy that serves it for races/vm1, whose blobs the registry has.
curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
	"http://$REG/v2/races/vm1/manifests/latest" >"$T_TMP/vm1.manifest"
mk_manifest() { # usize csize
	python3 - "$1" "$2" "$T_TMP/vm1.manifest" <<'PY'
import json, sys
m = json.load(open(sys.argv[3]))
disk = [l for l in m["layers"] if l["mediaType"] == "application/vnd.cirruslabs.tart.disk.v2"][0]
disk = dict(disk, size=int(sys.argv[2]), annotations={
    "org.cirruslabs.tart.uncompressed-size": sys.argv[1],
    "org.cirruslabs.tart.uncompressed-content-digest": "sha256:" + "cd" * 32})
m["layers"] = [m["layers"][0], disk, m["layers"][-1]]
m.pop("annotations", None)
print(json.dumps(m))
PY
}
mk_manifest 0 "$(python3 -c 'import json,sys; print([l for l in json.load(open(sys.argv[1]))["layers"] if "disk" in l["mediaType"]][0]["size"])' "$T_TMP/vm1.manifest")" >"$T_TMP/zero.json"
fault_proxy_start ZP "$REG" --manifest-body "$T_TMP/zero.json"
vmm pull "$ZP/races/vm1:hostile" --insecure
assert_rc 1 "a zero-sized disk layer is refused"
assert_contains "$ERR" "uncompressed size of 0 bytes" "saying so"
assert_one_line_error "in one line"
mk_manifest 20000000000000 100000000000 >"$T_TMP/huge.json"
fault_proxy_start HP "$REG" --manifest-body "$T_TMP/huge.json"
vmm pull "$HP/races/vm1:hostile" --insecure
assert_rc 1 "20 TB of disk claimed is refused"
assert_contains "$ERR" "the most vmm accepts" "saying so"
assert_one_line_error "in one line"
# 2 TB in one layer, compressed small enough to pass for zeros: telling
# whether it is would mean hashing 2 TB of zeros
mk_manifest 2000000000000 10000000000 >"$T_TMP/odd.json"
fault_proxy_start OP "$REG" --manifest-body "$T_TMP/odd.json"
start=$(date +%s)
o=$(mktemp -p "$T_TMP") e=$(mktemp -p "$T_TMP")
VMM_NO_AUTO_PRUNE=1 timeout 120 "$VMM" pull "$OP/races/vm1:hostile" --insecure >"$o" 2>"$e"
RC=$? ERR=$(cat "$e")
took=$(($(date +%s) - start))
assert_true "a 2 TB zero claim fails fast, not after hashing for an hour (exit $RC, ${took}s)" \
	test "$RC" -ne 0 -a "$RC" -ne 124 -a "$took" -lt 60
assert_one_line_error "in one line ($ERR)"
assert_eq "$(find "$VMM_HOME/cache/OCIs" -name 'sha256:*' -path "*${ZP#*:}*" -o -name 'sha256:*' -path "*${HP#*:}*" -o -name 'sha256:*' -path "*${OP#*:}*" | wc -l)" 0 "nothing hostile cached"

vmm list
assert_rc 0 "list at the end"
echo "races run: $RACES"
t_done
