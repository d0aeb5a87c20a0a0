#!/usr/bin/env bash
# The registry client (tests/unit/test_client.c) against real registries: a plain
# one, htpasswd, token auth, fault proxies (cut, stall, 503, broken challenge), a
# redirect to another host; then skopeo, an independent client, reads the image the
# client pushed, and TLS verification is shown to be on.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/registry.sh"
t_init
reg_have_registry || t_skip "docker-registry or python3-cryptography missing"

BIN=${BUILD:-$(dirname "$VMM")}/tests/test_client
[ -x "$BIN" ] || BIN=$(dirname "$VMM")/tests/test_client
[ -x "$BIN" ] || { fail "no test_client binary next to $VMM"; t_done; }

# isolate from the user's credentials
export DOCKER_CONFIG=$T_TMP/docker VMM_CREDENTIALS_FILE=$T_TMP/credentials.json
unset VMM_REGISTRY_USERNAME VMM_REGISTRY_PASSWORD TART_REGISTRY_USERNAME TART_REGISTRY_PASSWORD
export VMM_TEST_USER=alice VMM_TEST_PASSWORD='s3cret:with colon'

registry_start PLAIN || { fail "start plain registry"; t_done; }
registry_start BASIC --auth htpasswd --user "$VMM_TEST_USER:$VMM_TEST_PASSWORD" ||
	{ fail "start htpasswd registry"; t_done; }
registry_start TOKEN --auth token --user "$VMM_TEST_USER:$VMM_TEST_PASSWORD" --anonymous-pull ||
	{ fail "start token registry"; t_done; }
CUT=70000
fault_proxy_start CUTP "$PLAIN" --cut-after $CUT || { fail "start cutting proxy"; t_done; }
fault_proxy_start STALLP "$PLAIN" --cut-after $CUT --stall --stall-seconds 60 ||
	{ fail "start stalling proxy"; t_done; }
fault_proxy_start NORANGE "$PLAIN" --cut-after $CUT --ignore-range ||
	{ fail "start range-ignoring proxy"; t_done; }
fault_proxy_start P503 "$PLAIN" --fail-first 2 --retry-after 1 || { fail "start 503 proxy"; t_done; }
fault_proxy_start PFAIL "$PLAIN" --fail-first 1000000 || { fail "start failing proxy"; t_done; }
fault_proxy_start PCHAL "$PLAIN" --challenge 'Bearer realm="http://127.0.0.1:1/token,service=x' ||
	{ fail "start challenge proxy"; t_done; }
redirect_server_start REDIR "$BASIC" "$BASIC_DIR" || { fail "start redirect server"; t_done; }
registry_start TSHORT --auth token --user "$VMM_TEST_USER:$VMM_TEST_PASSWORD" --token-expires 4 ||
	{ fail "start short-token registry"; t_done; }
: >"$T_TMP/hostile.manifest"
: >"$T_TMP/hostile.blob"
fault_proxy_start PHOST "$PLAIN" --set-cookie --manifest-body "$T_TMP/hostile.manifest" \
	--blob-body "$T_TMP/hostile.blob" || { fail "start hostile proxy"; t_done; }

out=$T_TMP/skopeo-image
VMM_TEST_REGISTRY=$PLAIN VMM_TEST_REGISTRY_BASIC=$BASIC VMM_TEST_REGISTRY_TOKEN=$TOKEN \
VMM_TEST_TOKEN_LOG=$TOKEN_TOKEN_LOG VMM_TEST_CUT_AFTER=$CUT \
VMM_TEST_PROXY_CUT=$CUTP VMM_TEST_PROXY_CUT_LOG=$CUTP_LOG \
VMM_TEST_PROXY_STALL=$STALLP VMM_TEST_PROXY_STALL_LOG=$STALLP_LOG \
VMM_TEST_PROXY_NORANGE=$NORANGE VMM_TEST_PROXY_NORANGE_LOG=$NORANGE_LOG \
VMM_TEST_PROXY_503=$P503 VMM_TEST_PROXY_FAIL=$PFAIL VMM_TEST_PROXY_CHALLENGE=$PCHAL \
VMM_TEST_REDIRECT=$REDIR VMM_TEST_REDIRECT_LOG=$REDIR_LOG VMM_TEST_SKOPEO_OUT=$out \
VMM_TEST_PROXY_HOSTILE=$PHOST VMM_TEST_PROXY_HOSTILE_LOG=$PHOST_LOG \
VMM_TEST_HOSTILE_MANIFEST=$T_TMP/hostile.manifest VMM_TEST_HOSTILE_BLOB=$T_TMP/hostile.blob \
VMM_TEST_REGISTRY_TOKEN_SHORT=$TSHORT \
	"$BIN" >"$T_TMP/test_client.out" 2>&1
rc=$?
cat "$T_TMP/test_client.out"
if [ $rc -eq 0 ] && ! grep -q SKIPPED "$T_TMP/test_client.out"; then
	ok "test_client: every case ran and passed against the live registries"
else
	fail "test_client (exit $rc)"
fi
if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$T_TMP/test_client.out"; then
	fail "sanitizer report from test_client"
fi

# --- skopeo reads what the client pushed ------------------------------------------
if command -v skopeo >/dev/null && [ -s "$out" ]; then
	read -r ref mdigest cdigest ldigest <"$out"
	raw=$(skopeo inspect --tls-verify=false --raw "docker://$ref" 2>&1)
	assert_eq "sha256:$(printf %s "$raw" | sha256sum | cut -d' ' -f1)" "$mdigest" \
		"skopeo inspect --raw returns the manifest bytes the client pushed"
	insp=$(skopeo inspect --tls-verify=false "docker://$ref" 2>&1)
	assert_contains "$insp" "$ldigest" "skopeo inspect lists the pushed layer"
	dir=$T_TMP/skopeo-dir
	if skopeo copy -q --src-tls-verify=false "docker://$ref" "dir:$dir" >"$T_TMP/skopeo.out" 2>&1; then
		ok "skopeo copy of the pushed image to a directory"
		assert_eq "sha256:$(sha256sum "$dir/${ldigest#sha256:}" | cut -d' ' -f1)" "$ldigest" \
			"skopeo's copy of the layer has the pushed digest"
		assert_eq "sha256:$(sha256sum "$dir/${cdigest#sha256:}" | cut -d' ' -f1)" "$cdigest" \
			"skopeo's copy of the config has the pushed digest"
		assert_true "the layer is a tar holding the pushed file" \
			bash -c "tar -xOf '$dir/${ldigest#sha256:}' hello.txt | grep -qx 'hello from vmm'"
	else
		fail "skopeo copy: $(cat "$T_TMP/skopeo.out")"
	fi
else
	fail "skopeo missing or the client wrote no image reference"
fi

t_done
