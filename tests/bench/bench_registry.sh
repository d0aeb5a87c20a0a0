#!/usr/bin/env bash
# vmm push / pull against a local docker-registry, with skopeo moving the same
# image as the baseline, in the same run:
#   pull:  vmm pull REF                       vs  skopeo copy docker://REF dir:D
#   push:  vmm push VM REF (fresh registry)   vs  skopeo copy dir:D docker://REF (fresh registry)
# The VM has an 8 GiB disk holding 2 GiB of mixed data (a tar of /usr: binaries
# and text; random bytes) in four places.  vmm also compresses on push and
# decompresses into a sparse disk on pull; skopeo only moves blobs.
# Targets: vmm pull time <= skopeo's registry->dir copy; push >= 400 MB/s of
# disk; pulled disk allocation within 1% of its data.  Prints medians and ratios.
#   RUNS=3 (default)
set -u
source "$(dirname "$0")/../integration/lib.sh"
source "$(dirname "$0")/../integration/registry.sh"
t_init
reg_have_registry || { echo "SKIP: docker-registry or python3-cryptography missing"; exit 0; }
command -v skopeo >/dev/null || { echo "SKIP: skopeo missing"; exit 0; }
export DOCKER_CONFIG=$T_TMP/docker VMM_CREDENTIALS_FILE=$T_TMP/credentials.json
RUNS=${RUNS:-3}
MiB=$((1024 * 1024))
GiB=$((1024 * MiB))
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.3f\", $* }"; }   # arithmetic without bc
le() { awk "BEGIN { exit !($1 <= $2) }"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

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
for i in $(seq "$RUNS"); do
	# vmm pull into an empty home
	export VMM_HOME=$T_TMP/pull-home-$i
	t0=$(now)
	"$VMM" pull "$REF" --insecure >/dev/null || { echo "vmm pull failed"; exit 1; }
	t1=$(now)
	pull_t+=("$(calc "$t1 - $t0")")
	P=$(readlink -f "$VMM_HOME/cache/OCIs/${SRC/:/%3A}/bench/vm/latest")
	alloc+=("$(allocated "$P/disk.img")")
	if [ "$i" -eq 1 ] && ! cmp -s "$P/disk.img" "$T_TMP/home/vms/bench/disk.img"; then
		echo "pulled disk differs"; exit 1
	fi
	rm -rf "$VMM_HOME"

	# skopeo: the same blobs, registry -> directory
	t0=$(now)
	skopeo copy -q --src-tls-verify=false "docker://$REF" "dir:$T_TMP/sk" >/dev/null || exit 1
	t1=$(now)
	sko_pull_t+=("$(calc "$t1 - $t0")")

	# pushes go to fresh registries so nothing can be skipped or mounted
	export VMM_HOME=$T_TMP/home
	registry_start P$i || exit 1
	eval "dst=\$P$i"
	t0=$(now)
	"$VMM" push bench "$dst/bench/vm:latest" --insecure >/dev/null || { echo "vmm push failed"; exit 1; }
	t1=$(now)
	push_t+=("$(calc "$t1 - $t0")")
	eval "rm -rf \"\$P${i}_DIR\"/docker"

	registry_start S$i || exit 1
	eval "dst=\$S$i"
	t0=$(now)
	skopeo copy -q --dest-tls-verify=false "dir:$T_TMP/sk" "docker://$dst/bench/vm:latest" >/dev/null || exit 1
	t1=$(now)
	sko_push_t+=("$(calc "$t1 - $t0")")
	eval "rm -rf \"\$S${i}_DIR\"/docker"
	rm -rf "$T_TMP/sk"
	echo "run $i: vmm pull ${pull_t[-1]} s, skopeo registry->dir ${sko_pull_t[-1]} s, vmm push ${push_t[-1]} s, skopeo dir->registry ${sko_push_t[-1]} s"
done

mp=$(printf '%s\n' "${pull_t[@]}" | median)
ms=$(printf '%s\n' "${sko_pull_t[@]}" | median)
mu=$(printf '%s\n' "${push_t[@]}" | median)
mk=$(printf '%s\n' "${sko_push_t[@]}" | median)
ma=$(printf '%s\n' "${alloc[@]}" | median)
size=$((8 * GiB))
rate=$(awk "BEGIN { printf \"%d\", $size / $mu / 1000000 }")
echo
echo "median vmm pull:              $mp s"
echo "median skopeo registry->dir:  $ms s"
echo "pull ratio vmm/skopeo:        $(calc "$mp / $ms")   (target <= 1.00)"
echo "median vmm push:              $mu s  = $rate MB/s of disk   (target >= 400 MB/s)"
echo "median skopeo dir->registry:  $mk s"
echo "push ratio vmm/skopeo:        $(calc "$mu / $mk")"
echo "pulled disk allocation:       $ma bytes for $DATA bytes of data: $(calc "($ma - $DATA) * 100 / $DATA")%   (target within 1%)"
ok=1
le "$mp" "$ms" && echo "pull target: met" || { echo "pull target: MISSED"; ok=0; }
[ "$rate" -ge 400 ] && echo "push target: met" || { echo "push target: MISSED"; ok=0; }
d=$((ma > DATA ? ma - DATA : DATA - ma))
[ $((d * 100)) -le "$DATA" ] && echo "sparseness target: met" || { echo "sparseness target: MISSED"; ok=0; }
exit 0
