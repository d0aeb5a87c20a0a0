#!/usr/bin/env bash
# An interrupted pull resumes: vmm is killed while a layer download hangs
# (a fault proxy stalls it); the next pull of the same name fetches only the
# layers that were not finished, counted in the proxy's request log, and ends
# with the same bytes. Nothing reaches the cache before the pull completes.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/registry.sh"
t_init
reg_have_registry || t_skip "docker-registry or python3-cryptography missing"
export DOCKER_CONFIG=$T_TMP/docker VMM_CREDENTIALS_FILE=$T_TMP/credentials.json
unset VMM_REGISTRY_USERNAME VMM_REGISTRY_PASSWORD TART_REGISTRY_USERNAME TART_REGISTRY_PASSWORD
MiB=$((1024 * 1024))
export VMM_TEST_DISK_CHUNK=$((4 * MiB))

registry_start REG || { fail "start registry"; t_done; }
# the first blob GET bigger than 1 MiB hangs after 1 MiB
fault_proxy_start PX "$REG" --cut-after $MiB --stall --stall-seconds 120 --cut-times 1 ||
	{ fail "start stalling proxy"; t_done; }

vmm create vm --linux --disk-size 1
D=$VMM_HOME/vms/vm/disk.img
for i in 0 1 2; do # compressible layers, well under 1 MiB compressed
	yes "layer $i of a disk that resumes" | head -c $((4 * MiB)) |
		dd of="$D" bs=1M seek=$((i * 4)) conv=notrunc status=none
done
head -c $((12 * MiB)) /dev/urandom | dd of="$D" bs=1M seek=12 conv=notrunc status=none
vmm push vm "$REG/vm/r:latest" --insecure
assert_rc 0 "push $(grep -c . <<<"$OUT") lines"

REF=$PX/vm/r:latest
STAGING=$VMM_HOME/tmp/$(printf '%s' "$REF" | md5sum | cut -d' ' -f1)
"$VMM" pull "$REF" --insecure --concurrency 1 >"$T_TMP/pull1.out" 2>&1 &
PID=$!
t_defer "kill -9 $PID"
for _ in $(seq 300); do
	n=$(grep -c . "$STAGING/.vmm-verified-layers" 2>/dev/null)
	n=${n:-0}
	[ "$n" -ge 3 ] && grep -q '"cut": true' "$PX_LOG" && break
	sleep 0.1
done
kill -9 $PID
wait $PID 2>/dev/null
assert_eq "$(grep -c . "$STAGING/.vmm-verified-layers")" 3 "three layers verified before the stall"
assert_eq "$(grep -c '"cut": true' "$PX_LOG")" 1 "the fourth layer's download hung and vmm was killed"
assert_true "nothing in the cache yet" test -z "$(find "$VMM_HOME/cache/OCIs" -name 'sha256:*' 2>/dev/null)"

# which layer blobs the first attempt fetched completely
first=$(grep '"method": "GET"' "$PX_LOG" | grep '/blobs/sha256' | grep '"cut": false' |
	grep -o 'sha256:[0-9a-f]*' | sort)
# another command in between runs the tmp GC: the staging directory survives it
vmm list
assert_true "staging kept by the tmp GC" test -s "$STAGING/.vmm-verified-layers"
: >"$PX_LOG"
vmm pull "$REF" --insecure --concurrency 2
assert_rc 0 "the pull resumes"
second=$(grep '"method": "GET"' "$PX_LOG" | grep '/blobs/sha256' | grep -o 'sha256:[0-9a-f]*' | sort)
disk_digests=$(python3 -c '
import json,sys
m=json.load(open(sys.argv[1]))
print("\n".join(l["digest"] for l in m["layers"][1:4]))' "$(readlink -f "$VMM_HOME/cache/OCIs/${PX/:/%3A}/vm/r/latest")/manifest.json")
refetched=$(comm -12 <(echo "$disk_digests" | sort) <(echo "$second"))
assert_eq "$refetched" "" "finished layers are not fetched again"
assert_eq "$(comm -12 <(echo "$disk_digests" | sort) <(echo "$first") | grep -c .)" 3 "they were fetched by the first attempt"
n2=$(grep -c . <<<"$second")
[ "$n2" -ge 3 ] && [ "$n2" -le 6 ] && ok "second attempt fetched $n2 blobs (config, 3 data layers, NVRAM)" ||
	fail "second attempt fetched $n2 blobs: $second"
assert_true "resumed disk identical" cmp -s "$(readlink -f "$VMM_HOME/cache/OCIs/${PX/:/%3A}/vm/r/latest")/disk.img" "$D"
assert_true "staging removed" test ! -e "$STAGING"
t_done
