#!/usr/bin/env bash
# vmm login / logout against real registries (htpasswd, token auth, TLS): validation,
# the 0600 store, Tart's messages and exit codes, prompts, no secret in any output.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/registry.sh"
t_init
reg_have_registry || t_skip "docker-registry or python3-cryptography missing"

export DOCKER_CONFIG=$T_TMP/docker
export XDG_CONFIG_HOME=$T_TMP/xdg
# TLS trust from libcurl's default bundle unless a test names a CA
unset SSL_CERT_FILE CURL_CA_BUNDLE SSL_CERT_DIR
unset VMM_CREDENTIALS_FILE VMM_REGISTRY_USERNAME VMM_REGISTRY_PASSWORD \
	TART_REGISTRY_USERNAME TART_REGISTRY_PASSWORD
STORE=$XDG_CONFIG_HOME/vmm/credentials.json
PW='pa55:word with spaces'
BAD='wrong-pa55word'

registry_start BASIC --auth htpasswd --user "alice:$PW" || { fail "start htpasswd registry"; t_done; }
registry_start TOKEN --auth token --user "alice:$PW" || { fail "start token registry"; t_done; }
registry_start TLS --tls --auth htpasswd --user "alice:$PW" || { fail "start TLS registry"; t_done; }

no_secret() { # what: neither password appears in OUT or ERR
	if grep -qF -e "$PW" -e "$BAD" <<<"$OUT$ERR"; then fail "$1: a password was printed"; else ok "$1: no password printed"; fi
}
stored_user() { # host -> user name stored for host, or nothing
	python3 - "$STORE" "$1" <<-'EOF' 2>/dev/null
	import base64, json, sys
	e = json.load(open(sys.argv[1]))["auths"].get(sys.argv[2])
	if e: print(base64.b64decode(e["auth"]).decode().split(":", 1)[0])
	EOF
}
stored_pair() {
	python3 - "$STORE" "$1" <<-'EOF' 2>/dev/null
	import base64, json, sys
	e = json.load(open(sys.argv[1]))["auths"].get(sys.argv[2])
	if e: print(base64.b64decode(e["auth"]).decode())
	EOF
}

# --- usage and bad hosts ---------------------------------------------------------
vmm login "$BASIC" --username alice
assert_rc 64 "--username without --password-stdin is a usage error"
assert_contains "$ERR" "both --username and --password-stdin are required" "Tart's message"
vmm login "$BASIC" --password-stdin </dev/null
assert_rc 64 "--password-stdin without --username is a usage error"
vmm login "https://$BASIC" --username alice --password-stdin <<<"$PW"
assert_rc 1 "a URL instead of a host"
assert_contains "$ERR" "improperly formatted host \"https://$BASIC\" was provided, make sure that it doesn't start with http:// or https://" \
	"Tart's ImproperlyFormattedHost message"
assert_one_line_error "bad host: one line"

# --- htpasswd (Basic) ------------------------------------------------------------
printf '%s\n\n' "$PW" >"$T_TMP/pw"
vmm login "$BASIC" --insecure --username alice --password-stdin <"$T_TMP/pw"
assert_rc 0 "login with the right password (Basic), trailing newlines trimmed"
assert_eq "$OUT$ERR" "" "login prints nothing on success"
assert_eq "$(stat -c %a "$STORE" 2>/dev/null)" 600 "the credentials file is mode 0600"
assert_eq "$(stat -c %a "$(dirname "$STORE")" 2>/dev/null)" 700 "its directory is mode 0700"
assert_eq "$(stored_pair "$BASIC")" "alice:$PW" "the store holds alice and the whole password"
assert_true "the password is not in the file in clear" bash -c "! grep -qF '$PW' '$STORE'"

cp "$STORE" "$T_TMP/store.before"
t0=$(date +%s)
vmm login "$BASIC" --insecure --username alice --password-stdin <<<"$BAD"
assert_rc 1 "login with a wrong password fails with exit 1"
assert_contains "$ERR" "invalid credentials" "the error says invalid credentials"
assert_one_line_error "wrong password: one line"
no_secret "wrong password"
assert_true "a failed login leaves the stored credentials alone" cmp -s "$STORE" "$T_TMP/store.before"
assert_true "and answers within seconds" test $(($(date +%s) - t0)) -le 10

# --- token auth (Bearer) -----------------------------------------------------------
vmm login "$TOKEN" --insecure --username alice --password-stdin <<<"$PW"
assert_rc 0 "login against token auth with the right password"
assert_eq "$(stored_user "$TOKEN")" alice "stored for the token registry"
assert_contains "$(cat "$TOKEN_TOKEN_LOG")" '"user": "alice"' "validation fetched a token as alice"
vmm login "$TOKEN" --insecure --username alice --password-stdin <<<"$BAD"
assert_rc 1 "token auth, wrong password: exit 1"
assert_contains "$ERR" "invalid credentials" "token auth, wrong password: invalid credentials"
assert_one_line_error "token auth, wrong password: one line"
no_secret "token auth, wrong password"

# --- --no-validate, Docker Hub names --------------------------------------------------
vmm login 127.0.0.1:1 --username bob --password-stdin --no-validate <<<"$BAD"
assert_rc 0 "--no-validate stores without asking the registry (nothing listens there)"
assert_eq "$(stored_user 127.0.0.1:1)" bob "stored as given"
vmm login 127.0.0.1:1 --insecure --username bob --password-stdin <<<"$BAD"
assert_rc 1 "without --no-validate an unreachable registry is an error"
assert_not_contains "$ERR" "invalid credentials" "an unreachable registry is not called invalid credentials"
assert_one_line_error "unreachable registry: one line"
vmm login docker.io --username hubuser --password-stdin --no-validate <<<"$PW"
assert_rc 0 "login docker.io --no-validate"
assert_eq "$(stored_user registry-1.docker.io)" hubuser "docker.io is filed as registry-1.docker.io"

# --- prompts ---------------------------------------------------------------------------
if command -v setsid >/dev/null; then
	# no controlling terminal: prompts on stderr, answers from stdin (readpassphrase's fallback)
	printf 'carol\n%s\n' "$PW" | setsid -w "$VMM" login "$BASIC" --insecure --no-validate \
		>"$T_TMP/p.out" 2>"$T_TMP/p.err"
	RC=$?
	assert_rc 0 "prompted login without a terminal"
	assert_eq "$(cat "$T_TMP/p.err")" "User: Password: " "prompts User: and Password: on stderr"
	assert_eq "$(stored_pair "$BASIC")" "carol:$PW" "prompted answers stored"
fi
if command -v script >/dev/null && command -v setsid >/dev/null; then
	# on a terminal: the password is typed with echo off
	(sleep 1; printf 'alice\n'; sleep 1; printf '%s\n' "$PW"; sleep 2) |
		setsid -w script -qfec "$VMM login $BASIC --insecure" /dev/null >"$T_TMP/tty.out" 2>&1
	RC=$?
	assert_rc 0 "prompted login on a terminal"
	assert_contains "$(cat "$T_TMP/tty.out")" "Password:" "the terminal shows the Password: prompt"
	assert_contains "$(cat "$T_TMP/tty.out")" "alice" "the user name is echoed"
	assert_true "the password is not echoed" bash -c "! grep -qF '$PW' '$T_TMP/tty.out'"
	assert_eq "$(stored_pair "$BASIC")" "alice:$PW" "typed answers stored"
fi

# --- a registry whose 401 carries a broken challenge --------------------------------
fault_proxy_start BROKEN "$BASIC" --challenge 'Bearer realm="http://127.0.0.1:1/token'
t0=$(date +%s)
vmm login "$BROKEN" --insecure --username alice --password-stdin <<<"$PW"
assert_rc 1 "a broken challenge: exit 1"
assert_contains "$ERR" "malformed WWW-Authenticate header" "a broken challenge is named as such"
assert_not_contains "$ERR" "invalid credentials" "and not blamed on the credentials"
assert_one_line_error "a broken challenge: one line"
assert_true "a broken challenge fails within seconds" test $(($(date +%s) - t0)) -le 5

# --- TLS: verification is on; a CA is trusted only when named ----------------------------
vmm login "$TLS" --username alice --password-stdin <<<"$PW"
assert_rc 1 "TLS registry with an unknown CA: refused"
assert_contains "$ERR" "not trusted" "the error says the certificate is not trusted"
assert_one_line_error "untrusted certificate: one line"
SSL_CERT_FILE=$TLS_CA vmm login "$TLS" --username alice --password-stdin <<<"$PW"
assert_rc 0 "TLS registry with SSL_CERT_FILE naming its CA"
CURL_CA_BUNDLE=$TLS_CA vmm login "$TLS" --username alice --password-stdin <<<"$PW"
assert_rc 0 "TLS registry with CURL_CA_BUNDLE naming its CA"
SSL_CERT_FILE=$TLS_CA vmm login "$TLS" --username alice --password-stdin <<<"$BAD"
assert_rc 1 "TLS registry, wrong password"
assert_contains "$ERR" "invalid credentials" "TLS registry, wrong password: invalid credentials"
vmm login "$TLS" --insecure --username alice --password-stdin <<<"$PW"
assert_rc 1 "--insecure is plain HTTP, not 'skip verification': fails against a TLS port"
assert_one_line_error "--insecure against TLS: one line"

# --- concurrent logins keep every entry ------------------------------------------------------
pids=()
for i in 1 2 3 4 5 6; do
	"$VMM" login "10.0.0.$i:5000" --username "u$i" --password-stdin --no-validate <<<"p$i" &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
n=0
for i in 1 2 3 4 5 6; do [ "$(stored_user "10.0.0.$i:5000")" = "u$i" ] && n=$((n + 1)); done
assert_eq "$n" 6 "six concurrent logins: all six stored"
assert_eq "$(stored_user "$TOKEN")" alice "and the earlier entries survive"
assert_eq "$(stat -c %a "$STORE")" 600 "still mode 0600"

# --- logout ---------------------------------------------------------------------------------
vmm logout "$BASIC"
assert_rc 0 "logout"
assert_eq "$(stored_user "$BASIC")" "" "logout removed the entry"
assert_eq "$(stored_user "$TOKEN")" alice "and only that one"
vmm logout "$BASIC"
assert_rc 0 "logout again succeeds (nothing stored)"
rm -f "$STORE"
vmm logout never.example.com
assert_rc 0 "logout with no store at all succeeds"
assert_true "and creates no store" test ! -e "$STORE"
vmm logout "http://$BASIC"
assert_rc 1 "logout of a URL: Tart's host error"

# --- a broken store is not overwritten -----------------------------------------------------
mkdir -p "$(dirname "$STORE")"
echo '{"auths": {"keep.example": {"auth": "eDp5"}}, broken' >"$STORE"
vmm login other.example --username x --password-stdin --no-validate <<<"y"
assert_rc 1 "login refuses to replace a store that is not valid JSON"
assert_contains "$ERR" "refusing to overwrite" "and says so"
assert_contains "$(cat "$STORE")" "keep.example" "the broken store is left as it was"

t_done
