#!/usr/bin/env bash
# The registry client's raw transfer speed against the curl tool on the same local
# registry, same blob, same run: blob download (GET) and monolithic upload
# (POST + PUT).  Both sides are timed over the same work: from before the
# first byte of the file is read (uploads) or the first request is sent, to
# the registry's last answer; neither includes starting a process (curl's
# own time_total, summed over its two requests; vmm's timer in blob_bench).
# The order of the two sides alternates every run.  Files on the real disk.
# Prints medians of RUNS runs and the ratio vmm/curl.
# Target: ratio <= 1.10 both ways (the transport adds no measurable cost).
#   BENCH_BLOB_MB (default 512), BENCH_RUNS (default 5)
set -u
cd "$(dirname "$0")/../.."
source tests/integration/lib.sh
source tests/integration/registry.sh
source tests/bench/targets.sh
t_init
reg_have_registry || { echo "SKIP: docker-registry missing"; exit 0; }
MB=${BENCH_BLOB_MB:-512}
RUNS=${BENCH_RUNS:-5}
BUILD=${BUILD:-build}
make -s "$BUILD/libvmm.a" >/dev/null || exit 1
mkdir -p build/bench
assert_real_disk build/bench
work=$(mktemp -d "$PWD/build/bench/client.XXXXXX")
t_defer "rm -rf '$work'"
bin=$work/blob_bench
cc -std=gnu11 -O2 -D_GNU_SOURCE -I. tests/bench/blob_bench.c "$BUILD/libvmm.a" \
	$(pkg-config --libs libcurl jansson libcrypto) -lpthread -lm -o "$bin" || exit 1

registry_start REG || exit 1
blob=$work/blob
# mixed content: half random, half zeros, as disk layers are
head -c $((MB / 2))M /dev/urandom >"$blob"
head -c $((MB - MB / 2))M /dev/zero >>"$blob"
digest=sha256:$(sha256sum "$blob" | cut -d' ' -f1)
"$bin" "$REG" bench/seed "$blob" "$digest" put >/dev/null || exit 1

vmm_get() { "$bin" "$REG" bench/seed "$blob" "$digest" get; }
vmm_put() { "$bin" "$REG" "bench/vmm$1" "$blob" "$digest" put; }
curl_get() {
	curl -sf -o /dev/null -w '%{time_total}\n' "http://$REG/v2/bench/seed/blobs/$digest"
}
curl_put() { # repo suffix
	local out loc a b
	out=$(curl -sf -X POST -o /dev/null -D - -w 'TIME %{time_total}\n' \
		"http://$REG/v2/bench/curl$1/blobs/uploads/" | tr -d '\r') || return 1
	loc=$(awk 'tolower($1)=="location:"{print $2}' <<<"$out")
	a=$(awk '$1=="TIME"{print $2}' <<<"$out")
	b=$(curl -sf -o /dev/null -w '%{time_total}' -X PUT -H 'Content-Type: application/octet-stream' \
		--data-binary @"$blob" "$loc&digest=$digest") || return 1
	awk -v a="$a" -v b="$b" 'BEGIN { printf "%.6f\n", a + b }'
}

vg=() cg=() vp=() cp_=()
for ((i = 0; i < RUNS; i++)); do
	# alternate the order so neither side always gets the warmer cache
	if ((i % 2)); then
		vg+=("$(vmm_get)") cg+=("$(curl_get)")
		vp+=("$(vmm_put $i)") cp_+=("$(curl_put $i)")
	else
		cg+=("$(curl_get)") vg+=("$(vmm_get)")
		cp_+=("$(curl_put $i)") vp+=("$(vmm_put $i)")
	fi
done
mvg=$(printf '%s\n' "${vg[@]}" | median) mcg=$(printf '%s\n' "${cg[@]}" | median)
mvp=$(printf '%s\n' "${vp[@]}" | median) mcp=$(printf '%s\n' "${cp_[@]}" | median)
rate() { awk -v s="$1" -v mb="$MB" 'BEGIN { printf "%.0f", mb / s }'; }
echo "blob ${MB} MiB, median of $RUNS runs, local docker-registry"
printf '  GET  vmm %8.4fs (%s MiB/s)  curl %8.4fs (%s MiB/s)\n' "$mvg" "$(rate "$mvg")" "$mcg" "$(rate "$mcg")"
printf '  PUT  vmm %8.4fs (%s MiB/s)  curl %8.4fs (%s MiB/s)\n' "$mvp" "$(rate "$mvp")" "$mcp" "$(rate "$mcp")"
target "registry client GET: vmm / curl" "$(ratio "$mvg" "$mcg")" "<=" 1.10
target "registry client PUT: vmm / curl" "$(ratio "$mvp" "$mcp")" "<=" 1.10
bench_exit
