#!/usr/bin/env bash
# The registry client's raw transfer speed against the curl tool on the same local
# registry, same blob, same run: blob download (GET) and monolithic upload
# (POST + PUT).  Prints medians of RUNS runs and the ratio vmm/curl.
# Target: ratio <= 1.10 both ways (the transport adds no measurable cost).
#   BENCH_BLOB_MB (default 512), BENCH_RUNS (default 5)
set -u
cd "$(dirname "$0")/../.."
source tests/integration/lib.sh
source tests/integration/registry.sh
t_init
reg_have_registry || { echo "SKIP: docker-registry missing"; exit 0; }
MB=${BENCH_BLOB_MB:-512}
RUNS=${BENCH_RUNS:-5}
BUILD=${BUILD:-build}
make -s "$BUILD/libvmm.a" >/dev/null || exit 1
bin=$T_TMP/blob_bench
cc -std=gnu11 -O2 -D_GNU_SOURCE -I. tests/bench/blob_bench.c "$BUILD/libvmm.a" \
	$(pkg-config --libs libcurl jansson libcrypto) -lpthread -lm -o "$bin" || exit 1

registry_start REG || exit 1
blob=$T_TMP/blob
# mixed content: half random, half zeros, as disk layers are
head -c $((MB / 2))M /dev/urandom >"$blob"
head -c $((MB - MB / 2))M /dev/zero >>"$blob"
digest=sha256:$(sha256sum "$blob" | cut -d' ' -f1)
"$bin" "$REG" bench/seed "$blob" "$digest" put >/dev/null || exit 1

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f", m}'; }

curl_get() {
	local t0 t1
	t0=$(date +%s.%N)
	curl -sf -o /dev/null "http://$REG/v2/bench/seed/blobs/$digest" || return 1
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }'
}
curl_put() { # repo
	local loc t0 t1
	t0=$(date +%s.%N)
	loc=$(curl -sf -X POST -o /dev/null -w '%{redirect_url}' -D - \
		"http://$REG/v2/$1/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
	curl -sf -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' \
		--data-binary @"$blob" "$loc&digest=$digest" || return 1
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }'
}

vg=() cg=() vp=() cp_=()
for ((i = 0; i < RUNS; i++)); do
	# alternate the order so neither side always gets the warmer cache
	if ((i % 2)); then
		vg+=("$("$bin" "$REG" bench/seed "$blob" "$digest" get)")
		cg+=("$(curl_get)")
	else
		cg+=("$(curl_get)")
		vg+=("$("$bin" "$REG" bench/seed "$blob" "$digest" get)")
	fi
	vp+=("$("$bin" "$REG" "bench/vmm$i" "$blob" "$digest" put)")
	cp_+=("$(curl_put "bench/curl$i")")
done
mvg=$(printf '%s\n' "${vg[@]}" | median) mcg=$(printf '%s\n' "${cg[@]}" | median)
mvp=$(printf '%s\n' "${vp[@]}" | median) mcp=$(printf '%s\n' "${cp_[@]}" | median)
div() { awk -v a="$1" -v b="$2" -v f="$3" 'BEGIN { printf f, a / b }'; }
rate() { div "$MB" "$1" '%.0f'; }
rg=$(div "$mvg" "$mcg" '%.2f')
rp=$(div "$mvp" "$mcp" '%.2f')
verdict() { awk -v r="$1" 'BEGIN { print (r <= 1.10) ? "met" : "MISSED" }'; }
echo "blob ${MB} MiB, median of $RUNS runs, local docker-registry"
printf '  GET  vmm %6ss (%s MiB/s)  curl %6ss (%s MiB/s)  ratio %s  target <= 1.10 %s\n' \
	"$mvg" "$(rate "$mvg")" "$mcg" "$(rate "$mcg")" "$rg" "$(verdict "$rg")"
printf '  PUT  vmm %6ss (%s MiB/s)  curl %6ss (%s MiB/s)  ratio %s  target <= 1.10 %s\n' \
	"$mvp" "$(rate "$mvp")" "$mcp" "$(rate "$mcp")" "$rp" "$(verdict "$rp")"
