#!/usr/bin/env bash
# Images vmm did not push: a Tart-shaped image built by an independent encoder
# (tests/tools/tart_image.py: linked, zero and stored blocks, layers of varying
# uncompressed sizes as older Tart pushed) copied into docker-registry by skopeo,
# then pulled; and hostile registries, each of which must end in a one-line
# error naming the layer or request, a non-zero exit within seconds, and no
# cache entry or VM left behind.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/registry.sh"
t_init
reg_have_registry || t_skip "docker-registry or python3-cryptography missing"
export DOCKER_CONFIG=$T_TMP/docker VMM_CREDENTIALS_FILE=$T_TMP/credentials.json
unset VMM_REGISTRY_USERNAME VMM_REGISTRY_PASSWORD TART_REGISTRY_USERNAME TART_REGISTRY_PASSWORD
export VMM_REGISTRY_RETRY_BASE_MS=20 VMM_REGISTRY_STALL_TIMEOUT=5
TOOL=$TESTS_DIR/tools/tart_image.py
MiB=$((1024 * 1024))

# The fixture: a 24 MiB disk with a 65535-byte period (linked blocks), text,
# random bytes, zeros and a short tail.
F=$T_TMP/fixture
mkdir -p "$F"
python3 - "$F/disk.img" <<'EOF'
import os, random, sys
random.seed(7)
pat = bytes(random.getrandbits(8) for _ in range(65535))
d = bytearray(24 * 1024 * 1024 + 12345)
d[0:3 * 1024 * 1024] = (pat * 49)[:3 * 1024 * 1024]
text = b"".join(b"line %d of a tart disk\n" % i for i in range(200000))[:5 * 1024 * 1024]
d[6 * 1024 * 1024:11 * 1024 * 1024] = text
d[15 * 1024 * 1024:16 * 1024 * 1024] = os.urandom(1024 * 1024)
d[-12345:] = os.urandom(12345)
open(sys.argv[1], "wb").write(d)
EOF
printf '{"version":1,"os":"linux","arch":"arm64","cpuCountMin":4,"cpuCount":4,"memorySizeMin":4294967296,"memorySize":4294967296,"macAddress":"7a:47:bb:5f:97:c9","display":{"width":1024,"height":768},"diskFormat":"raw"}' >"$F/config.json"
printf 'apple-efi-variable-store' >"$F/nvram.bin"
SIZES=$((4 * MiB)),$((12 * MiB)),$((4 * MiB)),1000 # then the rest: varying, as 2023-24 Tart
FIX=(--disk "$F/disk.img" --config "$F/config.json" --nvram "$F/nvram.bin" --sizes "$SIZES")

# --- a Tart-shaped image pushed by skopeo ------------------------------------
registry_start REG || { fail "start registry"; t_done; }
python3 "$TOOL" layout --out "$T_TMP/layout" "${FIX[@]}" >/dev/null
skopeo copy -q --dest-tls-verify=false "oci:$T_TMP/layout:latest" "docker://$REG/tart/foreign:latest" \
	>/dev/null 2>"$T_TMP/sk.err"
assert_eq "$?" 0 "skopeo pushes the Tart-shaped image ($(head -c 200 "$T_TMP/sk.err"))"
vmm pull "$REG/tart/foreign:latest" --insecure
assert_rc 0 "vmm pulls it"
P=$(readlink -f "$VMM_HOME/cache/OCIs/${REG/:/%3A}/tart/foreign/latest")
assert_true "disk identical across layers of 4 MiB, 12 MiB, 4 MiB, 1000 B and the rest" cmp -s "$P/disk.img" "$F/disk.img"
assert_true "config.json is the pushed blob, verbatim" cmp -s "$P/config.json" "$F/config.json"
assert_true "nvram.bin verbatim" cmp -s "$P/nvram.bin" "$F/nvram.bin"
vmm clone "$REG/tart/foreign:latest" foreign --insecure
assert_rc 0 "clone it"
vmm get foreign --format json
assert_contains "$OUT" '"OS" : "linux"' "the clone reads as a Tart VM"

# --- hostile registries -------------------------------------------------------
serve() { # mode -> sets H
	local d=$T_TMP/hostile-$1
	mkdir -p "$d"
	reg_spawn "$d/out" python3 "$TOOL" serve "${FIX[@]}" --mode "$1" --port-file "$d/port" --log "$d/log"
	H=127.0.0.1:$(reg_wait_port "$d/port") || return 1
}

hostile() { # mode needle description
	local mode=$1 needle=$2 start end
	serve "$mode" || { fail "start hostile registry ($mode)"; return; }
	# a home of its own: the good copy cached above would be reused locally
	export VMM_HOME=$T_TMP/home-$mode
	start=$(date +%s)
	vmm pull "$H/tart/image:latest" --insecure
	end=$(date +%s)
	if [ "$RC" -ne 0 ]; then ok "$mode: pull fails (exit $RC)"; else fail "$mode: pull succeeded"; fi
	echo "       $ERR"
	assert_eq "$(grep -c . <<<"$ERR")" 1 "$mode: one line on stderr"
	assert_contains "$ERR" "vmm: pull \`$H/tart/image:latest\`: " "$mode: names the pull"
	assert_contains "$ERR" "$needle" "$mode: says why ($3)"
	[ $((end - start)) -le 15 ] && ok "$mode: within seconds ($((end - start)) s)" || fail "$mode: took $((end - start)) s"
	assert_eq "$(find "$VMM_HOME/cache/OCIs/${H/:/%3A}" -mindepth 1 \( -name 'sha256:*' -o -type l \) 2>/dev/null)" "" \
		"$mode: no cache entry"
	vmm clone "$H/tart/image:latest" "from-$mode" --insecure
	[ "$RC" -ne 0 ] && [ ! -e "$VMM_HOME/vms/from-$mode" ] && ok "$mode: clone fails, no VM" ||
		fail "$mode: clone exit $RC"
}

hostile manifest-not-json "manifest: invalid JSON" "manifest is HTML"
hostile blob-mismatch "layer 2 \`sha256:" "bytes that do not hash to the digest"
hostile truncated "layer 2 \`sha256:" "a blob that ends early"
hostile lying-lz4 "uncompressed digest mismatch" "a stream that decodes to other bytes"
hostile absurd-size "absurd" "a 2^50-byte layer"
hostile huge-claim "cannot hold" "10^15 uncompressed bytes claimed"
hostile missing-layer "404" "the NVRAM blob is missing"
hostile not-lz4 "unknown block magic" "an LZ4 frame instead of Apple's stream"

# a registry whose 401 carries a broken challenge (quote never closed)
export VMM_HOME=$T_TMP/home-challenge
fault_proxy_start CHAL "$REG" --challenge 'Bearer realm="http://127.0.0.1:1/token,service=x' ||
	fail "start challenge proxy"
start=$(date +%s)
vmm pull "$CHAL/tart/foreign:latest" --insecure
[ "$RC" -ne 0 ] && ok "broken challenge: pull fails ($ERR)" || fail "broken challenge: pull succeeded"
assert_eq "$(grep -c . <<<"$ERR")" 1 "broken challenge: one line"
assert_contains "$ERR" "manifest" "broken challenge: names the request"
[ $(($(date +%s) - start)) -le 15 ] && ok "broken challenge: within seconds" || fail "broken challenge: slow"
assert_eq "$(find "$VMM_HOME/cache/OCIs" -mindepth 2 2>/dev/null)" "" "broken challenge: no cache entry"

# the ok mode of the same server pulls fine (the checks above are not trivially failing)
serve ok || fail "start registry (ok)"
vmm pull "$H/tart/image:latest" --insecure
assert_rc 0 "the same server without faults pulls"
assert_true "and the disk matches" cmp -s "$(readlink -f "$VMM_HOME/cache/OCIs/${H/:/%3A}/tart/image/latest")/disk.img" "$F/disk.img"
t_done
