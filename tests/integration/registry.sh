# Test registries on 127.0.0.1, for integration tests.  Source it after lib.sh and
# t_init (it uses $T_TMP and t_defer: every process it starts is stopped at exit).
#
#   registry_start VAR [--auth none|htpasswd|token] [--tls] [--user U:P]...
#                  [--readonly U:P]... [--anonymous-pull] [--token-expires SECS]
#       Start Debian's docker-registry (CNCF distribution 2.8) on a free port with
#       its storage in $T_TMP.  Sets:
#         VAR            host:port ("127.0.0.1:NNNN")
#         VAR_DIR        storage root (blobs under docker/registry/v2/blobs/…)
#         VAR_LOG        the registry's own log
#       --auth htpasswd  Basic auth; users from --user (bcrypt, `htpasswd -B`)
#       --auth token     Bearer tokens from tests/tools/token_server.py (RS256 JWTs
#                        signed with a key and self-signed cert made here, trusted by
#                        the registry through `rootcertbundle`); --user gets
#                        pull/push/delete, --readonly pull, anonymous pull only with
#                        --anonymous-pull; --token-expires sets expires_in.  Also sets
#                        VAR_TOKEN (token server host:port) and VAR_TOKEN_LOG (one
#                        JSON line per token request: user, scopes, granted, status)
#       --tls            HTTPS with a certificate from a CA made here (the token
#                        server too); sets VAR_CA (the CA's PEM) — clients must be
#                        told to trust it (SSL_CERT_FILE=$VAR_CA)
#   fault_proxy_start VAR UPSTREAM [fault_proxy.py options...]
#       Start tests/tools/fault_proxy.py in front of UPSTREAM (host:port), e.g.
#       `--cut-after 100000` (cut the first blob GET after that many bytes;
#       `--cut-times K`, `--stall` to hold the connection instead of closing),
#       `--fail-first 2 --retry-after 1` (503s), `--challenge 'Bearer realm="x'`
#       (401 with that header), `--ignore-range`, `--set-cookie`, `--manifest-body FILE` and
#       `--blob-body FILE` (serve those bytes for every manifest/blob GET: a
#       hostile registry).  Sets VAR (host:port) and VAR_LOG (one JSON line per
#       request: method, path, range, status, sent, cut, authorization, cookie).
#   redirect_server_start VAR UPSTREAM STORAGE_DIR
#       Start tests/tools/redirect_server.py: a front for UPSTREAM that answers
#       authorised blob GETs with a 307 to a blob server on 127.0.0.2 serving
#       STORAGE_DIR.  Sets VAR (front host:port), VAR_BLOBS (blob server
#       host:port) and VAR_LOG (headers of every request the blob server got).
#   reg_free_port                 print a free TCP port on 127.0.0.1
#   reg_wait_port FILE [SECS]     wait for a tool's port file, print the port
#   reg_have_registry             true if docker-registry and python3 are here
#
# Needs: docker-registry, python3, python3-cryptography, apache2-utils
# (htpasswd), openssl, curl (scripts/deps.sh installs them).

REG_TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tools" && pwd)

reg_have_registry() {
	command -v docker-registry >/dev/null && command -v python3 >/dev/null &&
		python3 -c 'import cryptography' 2>/dev/null
}

reg_free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

reg_wait_port() { # file [secs]
	local i n=$((${2:-15} * 10))
	for ((i = 0; i < n; i++)); do
		if [ -s "$1" ]; then
			cat "$1"
			return 0
		fi
		sleep 0.1
	done
	echo "registry.sh: no port in $1 after ${2:-15}s" >&2
	return 1
}

# Start a background process, its output to a log; stop it (by pid) at exit.
reg_spawn() { # log cmd...
	local log=$1
	shift
	"$@" >"$log" 2>&1 &
	local pid=$!
	t_defer "kill $pid; wait $pid"
	REG_LAST_PID=$pid
}

# Wait until something answers HTTP at URL (any status).
reg_wait_http() { # url [curl options...]
	local url=$1 i
	shift
	for ((i = 0; i < 150; i++)); do
		if curl -s -o /dev/null --max-time 2 "$@" "$url"; then return 0; fi
		if [ -n "${REG_LAST_PID:-}" ] && ! kill -0 "$REG_LAST_PID" 2>/dev/null; then
			echo "registry.sh: process for $url died" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "registry.sh: $url did not come up" >&2
	return 1
}

# A CA and a server certificate for 127.0.0.1/localhost, in DIR.
reg_make_ca() { # dir
	local d=$1
	[ -f "$d/ca.pem" ] && return 0
	mkdir -p "$d"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$d/ca.key" -out "$d/ca.pem" -days 2 -subj /CN=vmm-test-ca \
		-addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null || return 1
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$d/server.key" -out "$d/server.csr" -subj /CN=127.0.0.1 2>/dev/null || return 1
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
		>"$d/ext.cnf"
	openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
		-CAcreateserial -out "$d/server.pem" -days 2 -extfile "$d/ext.cnf" 2>/dev/null
}

registry_start() { # VAR [options]
	local var=$1
	shift
	local auth=none tls=0 anon=0 expires=300 users=() readonly=()
	while [ $# -gt 0 ]; do
		case $1 in
		--auth) auth=$2; shift 2 ;;
		--tls) tls=1; shift ;;
		--user) users+=("$2"); shift 2 ;;
		--readonly) readonly+=("$2"); shift 2 ;;
		--anonymous-pull) anon=1; shift ;;
		--token-expires) expires=$2; shift 2 ;;
		*) echo "registry_start: unknown option $1" >&2; return 1 ;;
		esac
	done
	local d=$T_TMP/reg-$var
	mkdir -p "$d/storage"
	local port scheme=http curl_ca=()
	if [ $tls = 1 ]; then
		reg_make_ca "$T_TMP/ca" || return 1
		scheme=https
		curl_ca=(--cacert "$T_TMP/ca/ca.pem")
		printf -v "${var}_CA" '%s' "$T_TMP/ca/ca.pem"
	fi
	{
		echo "version: 0.1"
		echo "log: {level: warn, accesslog: {disabled: true}}"
		echo "storage:"
		echo "  filesystem: {rootdirectory: $d/storage}"
		echo "  delete: {enabled: true}"
		echo "  redirect: {disable: true}"
		echo "http:"
		echo "  addr: 127.0.0.1:@PORT@"
		echo "  secret: vmm-test-secret"
		if [ $tls = 1 ]; then
			echo "  tls: {certificate: $T_TMP/ca/server.pem, key: $T_TMP/ca/server.key}"
		fi
	} >"$d/config.yml"
	case $auth in
	none) ;;
	htpasswd)
		: >"$d/htpasswd"
		local u
		for u in "${users[@]}" "${readonly[@]}"; do
			htpasswd -Bbn "${u%%:*}" "${u#*:}" >>"$d/htpasswd" 2>/dev/null || return 1
		done
		printf 'auth:\n  htpasswd: {realm: vmm-test, path: %s}\n' "$d/htpasswd" >>"$d/config.yml"
		;;
	token)
		openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/token.key" \
			-out "$d/token.pem" -days 2 -subj /CN=vmm-test-token 2>/dev/null || return 1
		local targs=(--port-file "$d/token.port" --key "$d/token.key" --cert "$d/token.pem"
			--expires-in "$expires" --log "$d/token.log")
		for u in "${users[@]}"; do targs+=(--user "$u"); done
		for u in "${readonly[@]}"; do targs+=(--readonly "$u"); done
		[ $anon = 1 ] && targs+=(--anonymous-pull)
		[ $tls = 1 ] && targs+=(--tls-cert "$T_TMP/ca/server.pem" --tls-key "$T_TMP/ca/server.key")
		: >"$d/token.log"
		reg_spawn "$d/token.out" python3 "$REG_TOOLS/token_server.py" "${targs[@]}"
		local tport
		tport=$(reg_wait_port "$d/token.port") || { cat "$d/token.out" >&2; return 1; }
		printf -v "${var}_TOKEN" '%s' "127.0.0.1:$tport"
		printf -v "${var}_TOKEN_LOG" '%s' "$d/token.log"
		{
			echo "auth:"
			echo "  token:"
			echo "    realm: $scheme://127.0.0.1:$tport/token"
			echo "    service: vmm-test"
			echo "    issuer: vmm-test-issuer"
			echo "    rootcertbundle: $d/token.pem"
		} >>"$d/config.yml"
		;;
	*) echo "registry_start: unknown auth $auth" >&2; return 1 ;;
	esac
	mv "$d/config.yml" "$d/config.in"
	local try
	for try in 1 2 3; do
		port=$(reg_free_port)
		sed "s/@PORT@/$port/" "$d/config.in" >"$d/config.yml"
		reg_spawn "$d/registry.log" docker-registry serve "$d/config.yml"
		if reg_wait_http "$scheme://127.0.0.1:$port/v2/" "${curl_ca[@]}" 2>/dev/null; then
			break
		fi
		kill "$REG_LAST_PID" 2>/dev/null
		if [ $try = 3 ]; then
			echo "registry.sh: docker-registry did not start:" >&2
			cat "$d/registry.log" >&2
			return 1
		fi
	done
	printf -v "$var" '%s' "127.0.0.1:$port"
	printf -v "${var}_DIR" '%s' "$d/storage"
	printf -v "${var}_LOG" '%s' "$d/registry.log"
}

fault_proxy_start() { # VAR UPSTREAM [options]
	local var=$1 up=$2
	shift 2
	local d=$T_TMP/proxy-$var
	mkdir -p "$d"
	: >"$d/requests.log"
	reg_spawn "$d/out" python3 "$REG_TOOLS/fault_proxy.py" --port-file "$d/port" \
		--upstream "$up" --log "$d/requests.log" "$@"
	local port
	port=$(reg_wait_port "$d/port") || { cat "$d/out" >&2; return 1; }
	printf -v "$var" '%s' "127.0.0.1:$port"
	printf -v "${var}_LOG" '%s' "$d/requests.log"
}

redirect_server_start() { # VAR UPSTREAM STORAGE_DIR
	local var=$1 up=$2 storage=$3
	local d=$T_TMP/redirect-$var
	mkdir -p "$d"
	: >"$d/blob-requests.log"
	reg_spawn "$d/out" python3 "$REG_TOOLS/redirect_server.py" --port-file "$d/port" \
		--blob-port-file "$d/blob.port" --upstream "$up" --storage "$storage" \
		--log "$d/blob-requests.log"
	local port bport
	port=$(reg_wait_port "$d/port") || { cat "$d/out" >&2; return 1; }
	bport=$(reg_wait_port "$d/blob.port") || return 1
	printf -v "$var" '%s' "127.0.0.1:$port"
	printf -v "${var}_BLOBS" '%s' "127.0.0.2:$bport"
	printf -v "${var}_LOG" '%s' "$d/blob-requests.log"
}
