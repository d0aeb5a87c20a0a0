#!/usr/bin/env bash
# vmm push / pull against a local docker-registry, with skopeo moving the same
# image as the baseline, in the same run:
#   pull:  vmm pull REF                       vs  skopeo copy docker://REF dir:D
#   push:  vmm push VM REF (fresh registry)   vs  skopeo copy dir:D docker://REF (fresh registry)
# The VM has an 8 GiB disk holding 2 GiB of mixed data (a tar of /usr: binaries
# and text; random bytes) in four places.  vmm also compresses on push and
# decompresses into a sparse disk on pull; skopeo only moves blobs.  Rates
# count the bytes really read: the 2 GiB of data, not the 8 GiB with holes.
# The two sides alternate which goes first every run; everything (VM,
# registries, skopeo's directory) lives on the real disk, not tmpfs.
# Targets: vmm pull time <= skopeo's registry->dir copy; push >= 400 MB/s of
# disk data; pulled disk allocation within 1% of its data.  Prints medians
# and ratios and one TARGET line each; exits 1 if one is missed.
#   RUNS=3 (default)
set -u
cd "$(dirname "$0")/../.."
source tests/integration/lib.sh
source tests/integration/registry.sh
source tests/bench/targets.sh
t_init
# on the real disk: T_TMP (registries, homes) moves under build/bench
mkdir -p build/bench
assert_real_disk build/bench
rm -rf "$T_TMP"
T_TMP=$(mktemp -d "$PWD/build/bench/registry.XXXXXX")
export VMM_HOME=$T_TMP/home
reg_have_registry || { echo "SKIP: docker-registry or python3-cryptography missing"; exit 0; }
command -v skopeo >/dev/null || { echo "SKIP: skopeo missing"; exit 0; }
export DOCKER_CONFIG=$T_TMP/docker VMM_CREDENTIALS_FILE=$T_TMP/credentials.json
RUNS=${RUNS:-3}
MiB=$((1024 * 1024))
GiB=$((1024 * MiB))
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.3f\", $* }"; }   # arithmetic without bc

echo "building the VM: 8 GiB disk, 2 GiB of data"
"$VMM" create bench --linux --disk-size 1 >/dev/null || exit 1
D=$VMM_HOME/vms/bench/disk.img
truncate -s $((8 * GiB)) "$D"
# 1.5 GiB of a real file tree (ELF binaries, libraries, text), 0.5 GiB random
tar cf - /usr/lib /usr/share /usr/bin 2>/dev/null | head -c $((1536 * MiB)) >"$T_TMP/usr.tar"
[ "$(stat -c %s "$T_TMP/usr.tar")" -eq $((1536 * MiB)) ] || { echo "could not gather 1.5 GiB of /usr"; exit 1; }
dd if="$T_TMP/usr.tar" of="$D" bs=4M seek=0 count=128 conv=notrunc status=none            # 512 MiB at 0
dd if="$T_TMP/usr.tar" of="$D" bs=4M skip=128 seek=600 count=128 conv=notrunc status=none # 512 MiB at 2.3 GiB
dd if="$T_TMP/usr.tar" of="$D" bs=4M skip=256 seek=1500 count=128 conv=notrunc status=none # 512 MiB at 5.9 GiB
head -c $((512 * MiB)) /dev/urandom | dd of="$D" bs=4M seek=1900 conv=notrunc status=none # 512 MiB at 7.4 GiB
rm -f "$T_TMP/usr.tar"
sync
DATA=$(allocated "$D")
echo "disk: $(stat -c %s "$D") bytes, $DATA allocated"

registry_start SRC || exit 1
"$VMM" push bench "$SRC/bench/vm:latest" --insecure >/dev/null || { echo "initial push failed"; exit 1; }
REF=$SRC/bench/vm:latest

pull_t=() sko_pull_t=() push_t=() sko_push_t=() alloc=()
vmm_pull() { # run
	export VMM_HOME=$T_TMP/pull-home-$1
	t0=$(now)
	"$VMM" pull "$REF" --insecure >/dev/null || { echo "vmm pull failed"; exit 1; }
	pull_t+=("$(since "$t0")")
	P=$(readlink -f "$VMM_HOME/cache/OCIs/${SRC/:/%3A}/bench/vm/latest")
	alloc+=("$(allocated "$P/disk.img")")
	if [ "$1" -eq 1 ] && ! cmp -s "$P/disk.img" "$T_TMP/home/vms/bench/disk.img"; then
		echo "pulled disk differs"; exit 1
	fi
	rm -rf "$VMM_HOME"
	export VMM_HOME=$T_TMP/home
}
sko_pull() { # the same blobs, registry -> directory
	rm -rf "$T_TMP/sk"
	t0=$(now)
	skopeo copy -q --src-tls-verify=false "docker://$REF" "dir:$T_TMP/sk" >/dev/null || exit 1
	sko_pull_t+=("$(since "$t0")")
}
vmm_push() { # pushes go to fresh registries so nothing can be skipped or mounted
	registry_start P$1 || exit 1
	eval "dst=\$P$1"
	t0=$(now)
	"$VMM" push bench "$dst/bench/vm:latest" --insecure >/dev/null || { echo "vmm push failed"; exit 1; }
	push_t+=("$(since "$t0")")
	eval "rm -rf \"\$P${1}_DIR\"/docker"
}
sko_push() {
	registry_start S$1 || exit 1
	eval "dst=\$S$1"
	t0=$(now)
	skopeo copy -q --dest-tls-verify=false "dir:$T_TMP/sk" "docker://$dst/bench/vm:latest" >/dev/null || exit 1
	sko_push_t+=("$(since "$t0")")
	eval "rm -rf \"\$S${1}_DIR\"/docker"
}
for i in $(seq "$RUNS"); do
	# every other run the other side goes first: neither always finds the caches warm
	if ((i % 2)); then
		vmm_pull "$i"; sko_pull; vmm_push "$i"; sko_push "$i"
	else
		sko_pull; vmm_pull "$i"; sko_push "$i"; vmm_push "$i"
	fi
	echo "run $i: vmm pull ${pull_t[-1]} s, skopeo registry->dir ${sko_pull_t[-1]} s, vmm push ${push_t[-1]} s, skopeo dir->registry ${sko_push_t[-1]} s"
done
rm -rf "$T_TMP/sk"

mp=$(printf '%s\n' "${pull_t[@]}" | median)
ms=$(printf '%s\n' "${sko_pull_t[@]}" | median)
mu=$(printf '%s\n' "${push_t[@]}" | median)
mk=$(printf '%s\n' "${sko_push_t[@]}" | median)
ma=$(printf '%s\n' "${alloc[@]}" | median)
# the disk data vmm reads and compresses: its allocated bytes, not its apparent size
rate=$(awk "BEGIN { printf \"%d\", $DATA / $mu / 1000000 }")
echo
echo "median vmm pull:              $mp s"
echo "median skopeo registry->dir:  $ms s   (moves the blobs only; vmm also decompresses into a sparse disk)"
echo "median vmm push:              $mu s  = $rate MB/s of disk data ($DATA bytes read; the disk is 8 GiB with holes)"
echo "median skopeo dir->registry:  $mk s   (uploads blobs compressed beforehand; vmm compresses as it pushes)"
echo "push ratio vmm/skopeo:        $(calc "$mu / $mk")"
echo "pulled disk allocation:       $ma bytes for $DATA bytes of data"
target "pull: vmm / skopeo registry->dir" "$(calc "$mp / $ms")" "<=" 1.00
target "push: MB/s of disk data" "$rate" ">=" 400
target "pulled disk allocation vs data (%)" "$(calc "($ma > $DATA ? $ma - $DATA : $DATA - $ma) * 100 / $DATA")" "<=" 1
bench_exit
