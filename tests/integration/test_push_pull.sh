#!/usr/bin/env bash
# Push and pull round trips against a real registry (Debian's docker-registry):
# a VM with a mixed-content sparse disk comes back byte for byte and sparse;
# the manifest is Tart's; skopeo, an independent client, reads and copies what
# vmm pushed; HEAD-before-upload and cross-repository mounts avoid uploads; the
# cache layout, list, fqn, clone, delete and a running VM's refusal.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/registry.sh"
t_init
reg_have_registry || t_skip "docker-registry or python3-cryptography missing"
export DOCKER_CONFIG=$T_TMP/docker VMM_CREDENTIALS_FILE=$T_TMP/credentials.json
unset VMM_REGISTRY_USERNAME VMM_REGISTRY_PASSWORD TART_REGISTRY_USERNAME TART_REGISTRY_PASSWORD

registry_start REG || { fail "start registry"; t_done; }
fault_proxy_start PX "$REG" || { fail "start counting proxy"; t_done; }
MiB=$((1024 * 1024))

# A 2 GB VM (four 512 MiB layers): random, text, allocated zeros, holes, data at the end.
vmm create vm1 --linux --disk-size 2
assert_rc 0 "create vm1"
D=$VMM_HOME/vms/vm1/disk.img
head -c $((8 * MiB)) /dev/urandom | dd of="$D" bs=1M seek=0 conv=notrunc status=none
yes "tart compatible vmm" | head -c $((4 * MiB)) | dd of="$D" bs=1M seek=600 conv=notrunc status=none
head -c $MiB /dev/zero | dd of="$D" bs=1M seek=1000 conv=notrunc status=none
head -c $((3 * MiB)) /dev/urandom | dd of="$D" bs=1M seek=$((2000000000 / MiB - 3)) conv=notrunc status=none
printf 'nvram-bytes' >"$VMM_HOME/vms/vm1/nvram.bin"
DATA=$((15 * MiB)) # non-zero bytes

vmm push vm1 "$REG/vm/one:latest" "$REG/vm/one:v1" --insecure --label team=ci --label url=http://x/y
assert_rc 0 "push to two tags"
assert_contains "$OUT" "pushing vm1 to $REG/vm/one{:latest,:v1}..." "Tart's group line"
assert_contains "$OUT" "pushing disk... this will take a while..." "disk line"
assert_contains "$OUT" "pushing manifest for v1..." "manifest line per tag"
assert_contains "$OUT" "100%" "plain progress lines (CI set)"

# The manifest as the registry holds it, read by skopeo.
RAW=$(skopeo inspect --raw --tls-verify=false "docker://$REG/vm/one:latest")
assert_eq "$?" 0 "skopeo inspect --raw"
MDIGEST=sha256:$(printf '%s' "$RAW" | sha256sum | cut -d' ' -f1)
python3 - "$RAW" <<'EOF' >"$T_TMP/check.out" 2>&1
import json, sys
raw = sys.argv[1]
m = json.loads(raw)
t = [l["mediaType"] for l in m["layers"]]
assert t[0] == "application/vnd.cirruslabs.tart.config.v1", t
assert t[1:-1] == ["application/vnd.cirruslabs.tart.disk.v2"] * 4, t
assert t[-1] == "application/vnd.cirruslabs.tart.nvram.v1", t
sizes = [int(l["annotations"]["org.cirruslabs.tart.uncompressed-size"]) for l in m["layers"][1:-1]]
assert sizes == [536870912] * 3 + [2000000000 - 3 * 536870912], sizes
assert all(l["annotations"]["org.cirruslabs.tart.uncompressed-content-digest"].startswith("sha256:") for l in m["layers"][1:-1])
assert m["layers"][0]["annotations"] == {} and m["layers"][-1]["annotations"] == {}
assert m["annotations"]["org.cirruslabs.tart.uncompressed-disk-size"] == "2000000000"
assert len(m["annotations"]["org.cirruslabs.tart.upload-time"]) == 20
# Tart's bytes: compact, sorted keys, escaped slashes
assert raw == json.dumps(m, separators=(",", ":"), sort_keys=True).replace("/", "\\/"), "not canonical"
print("ok")
EOF
assert_eq "$(tail -1 "$T_TMP/check.out")" "ok" "manifest is Tart's shape and bytes ($(head -c 300 "$T_TMP/check.out"))"
CFG=$(skopeo inspect --config --raw --tls-verify=false "docker://$REG/vm/one:latest")
assert_contains "$CFG" '"org.cirruslabs.tart.disk.format":"raw"' "OCI config carries the disk format label"
assert_contains "$CFG" '"team":"ci"' "and --label"
assert_contains "$CFG" '"url":"http:\/\/x\/y"' "labels escaped as Foundation does"

# What vmm pushes, decoded by an independent Apple LZ4 decoder that enforces
# Apple's framing (blocks of 64 KiB at most, references only into the previous
# block): text, random bytes and a hole in 1 MiB layers.
vmm create lz --linux --disk-size 1
truncate -s $((3 * MiB)) "$VMM_HOME/vms/lz/disk.img"
python3 -c 'import sys; sys.stdout.buffer.write(b"".join(b"%d: the tart image format, linked blocks\n" % i for i in range(40000))[:1048576])' |
	dd of="$VMM_HOME/vms/lz/disk.img" bs=1M conv=notrunc status=none
head -c $MiB /dev/urandom | dd of="$VMM_HOME/vms/lz/disk.img" bs=1M seek=1 conv=notrunc status=none
VMM_TEST_DISK_CHUNK=$MiB vmm push lz "$REG/vm/lz:latest" --insecure
assert_rc 0 "push in 1 MiB layers"
skopeo inspect --raw --tls-verify=false "docker://$REG/vm/lz:latest" >"$T_TMP/lz.json"
i=0
for dg in $(python3 -c 'import json,sys; print(" ".join(l["digest"] for l in json.load(open(sys.argv[1]))["layers"][1:-1]))' "$T_TMP/lz.json"); do
	curl -sf "http://$REG/v2/vm/lz/blobs/$dg" -o "$T_TMP/layer$i"
	stats=$(python3 "$TESTS_DIR/tools/tart_image.py" decode --in "$T_TMP/layer$i" --out "$T_TMP/layer$i.raw" 2>&1)
	assert_eq "$?" 0 "layer $i decodes independently ($stats)"
	dd if="$VMM_HOME/vms/lz/disk.img" of="$T_TMP/region$i" bs=1M skip=$i count=1 status=none
	assert_true "layer $i is the disk's MiB $i" cmp -s "$T_TMP/layer$i.raw" "$T_TMP/region$i"
	[ $i -eq 0 ] && { grep -q '"linked": [1-9]' <<<"$stats" && ok "text layer uses linked blocks" || fail "no linked blocks: $stats"; }
	[ $i -eq 1 ] && { grep -q '"bv4-": 16' <<<"$stats" && ok "random layer is stored blocks" || fail "random layer: $stats"; }
	i=$((i + 1))
done
assert_eq "$i" 3 "three layers"

# Pull: identical bytes, sparse, Tart's cache layout.
vmm pull "$REG/vm/one:latest" --insecure
assert_rc 0 "pull"
assert_contains "$OUT" "pulling $REG/vm/one:latest..." "pull line"
assert_contains "$OUT" "pulling NVRAM..." "NVRAM line"
HOSTDIR=$VMM_HOME/cache/OCIs/${REG/:/%3A}
TAG=$HOSTDIR/vm/one/latest
assert_true "tag is a symlink" test -L "$TAG"
assert_eq "$(readlink "$TAG")" "$HOSTDIR/vm/one/$MDIGEST" "absolute link to the digest dir named by the manifest's sha256"
P=$HOSTDIR/vm/one/$MDIGEST
assert_true "disk identical" cmp -s "$P/disk.img" "$D"
assert_true "nvram identical" cmp -s "$P/nvram.bin" "$VMM_HOME/vms/vm1/nvram.bin"
assert_eq "$(sha256sum <"$P/manifest.json" | cut -d' ' -f1)" "${MDIGEST#sha256:}" "manifest.json holds the registry's bytes"
A=$(allocated "$P/disk.img")
if [ "$A" -ge "$DATA" ] && [ "$A" -le $((DATA + DATA / 100)) ]; then ok "pulled disk sparse: $A bytes allocated for $DATA of data"
else fail "pulled disk allocation $A for $DATA bytes of data"; fi
assert_true "no staging left in tmp/" test -z "$(ls "$VMM_HOME/tmp")"

vmm pull "$REG/vm/one:latest" --insecure
assert_contains "$OUT" "$MDIGEST image is already cached and linked!" "second pull is a no-op"
vmm pull "$REG/vm/one:v1" --insecure
assert_contains "$OUT" "$MDIGEST image is already cached! creating a symlink..." "same digest, new tag"

vmm list --source oci --quiet
assert_eq "$OUT" "$REG/vm/one:latest
$REG/vm/one:v1
$REG/vm/one@$MDIGEST" "list --source oci"
vmm fqn "$REG/vm/one:v1"
assert_eq "$OUT" "$REG/vm/one@$MDIGEST" "fqn"

# Pull by digest: .explicitly-pulled, kept by the GC when the tags go.
vmm pull "$REG/vm/one@$MDIGEST" --insecure
assert_rc 0 "pull by digest"
assert_true ".explicitly-pulled" test -f "$P/.explicitly-pulled"
vmm delete "$REG/vm/one:latest" "$REG/vm/one:v1"
assert_rc 0 "delete tags"
assert_true "digest dir kept (explicitly pulled)" test -d "$P"
vmm delete "$REG/vm/one@$MDIGEST"
assert_true "digest dir deleted" test ! -e "$P"

# Clone from the registry: pulls, then clones from the cache.
vmm clone "$REG/vm/one:latest" c1 --insecure
assert_rc 0 "clone REF NEW"
assert_contains "$OUT" "pulling manifest..." "clone pulled"
assert_true "clone disk identical" cmp -s "$VMM_HOME/vms/c1/disk.img" "$D"
assert_true "clone has config.json" test -s "$VMM_HOME/vms/c1/config.json"
vmm clone "$REG/vm/one:latest" c2
assert_rc 0 "clone again from the cache, no network flags needed"
assert_not_contains "$OUT" "pulling" "no pull when cached"

# Tart's lightweight push: a cached image to other tags, same manifest bytes;
# blobs mounted into another repository of the same registry.
vmm push "$REG/vm/one:latest" "$REG/vm/one:retag" "$REG/vm/elsewhere:x" --insecure
assert_rc 0 "push a cached image to new tags"
assert_contains "$OUT" "pushing manifest for retag..." "manifest line"
for r in vm/one:retag vm/elsewhere:x; do
	d=sha256:$(skopeo inspect --raw --tls-verify=false "docker://$REG/$r" | sha256sum | cut -d' ' -f1)
	assert_eq "$d" "$MDIGEST" "$r has the same manifest digest"
done
vmm push "$REG/vm/never-pulled:x" "$REG/vm/one:y" --insecure
assert_rc 2 "a reference that is not cached"

# skopeo copies what vmm pushed, registry -> dir -> registry, and vmm pulls the copy.
skopeo copy -q --src-tls-verify=false "docker://$REG/vm/one:latest" "dir:$T_TMP/sk" >/dev/null 2>"$T_TMP/sk.err"
assert_eq "$?" 0 "skopeo copy registry -> dir ($(head -c 300 "$T_TMP/sk.err"))"
skopeo copy -q --dest-tls-verify=false "dir:$T_TMP/sk" "docker://$REG/vm/copied:latest" >/dev/null 2>"$T_TMP/sk.err"
assert_eq "$?" 0 "skopeo copy dir -> registry"
vmm pull "$REG/vm/copied:latest" --insecure
assert_rc 0 "pull skopeo's copy"
assert_true "skopeo's copy pulls to the same disk" cmp -s "$(readlink -f "$HOSTDIR/vm/copied/latest")/disk.img" "$D"

# HEAD before upload: pushing again (same labels) uploads no blob.
vmm push vm1 "$PX/vm/one:again" --insecure --label team=ci --label url=http://x/y
assert_rc 0 "re-push through the counting proxy"
puts=$(grep -c '"method": "PUT", "path": "/v2/vm/one/blobs/uploads' "$PX_LOG")
heads=$(grep -c '"method": "HEAD", "path": "/v2/vm/one/blobs/sha256' "$PX_LOG")
assert_eq "$puts" 0 "no blob uploaded again ($heads HEADs)"
# Cross-repository mount: once the cache knows the blobs in vm/one of this
# registry, a new repository on it gets mounts, not uploads.
vmm pull "$PX/vm/one:again" --insecure
assert_rc 0 "pull through the proxy"
: >"$PX_LOG"
vmm push vm1 "$PX/vm/mounted:latest" --insecure --label team=ci --label url=http://x/y
assert_rc 0 "push to a new repository"
mounts=$(grep -c '"method": "POST", "path": "/v2/vm/mounted/blobs/uploads/?mount=' "$PX_LOG")
puts=$(grep -c '"method": "PUT", "path": "/v2/vm/mounted/blobs/uploads' "$PX_LOG")
assert_eq "$puts" 0 "no uploads: $mounts blobs mounted from the cached repository"
[ "$mounts" -ge 7 ] && ok "mounts used ($mounts)" || fail "expected mounts, got $mounts"

# --populate-cache: the pushed image is in the cache without a pull.
vmm push vm1 "$REG/vm/populated:latest" --insecure --populate-cache
assert_rc 0 "push --populate-cache"
PP=$(readlink -f "$HOSTDIR/vm/populated/latest")
assert_true "populated tag in the cache" cmp -s "$PP/disk.img" "$D"
assert_eq "$(sha256sum <"$PP/manifest.json" | cut -d' ' -f1)" "$(basename "$PP" | cut -d: -f2)" "populated entry named by its manifest's digest"
assert_eq "$(head -c 1 "$PP/config.json")$(grep -c . "$PP/config.json")" "{1" "populated config.json is the compact config layer"

# A running VM is refused (the PID lock on config.json held by another process).
python3 -c 'import fcntl,sys,time; f=open(sys.argv[1],"r+"); fcntl.lockf(f, fcntl.LOCK_EX); open(sys.argv[2],"w").close(); time.sleep(30)' \
	"$VMM_HOME/vms/vm1/config.json" "$T_TMP/locked" &
LOCKER=$!
t_defer "kill $LOCKER"
for _ in $(seq 50); do [ -e "$T_TMP/locked" ] && break; sleep 0.1; done
vmm push vm1 "$REG/vm/one:running" --insecure
assert_rc 1 "push of a running VM fails"
assert_eq "$ERR" 'vmm: VM "vm1" is running' "Tart's message"
kill $LOCKER 2>/dev/null

# Direct-boot VMs carry vmm's kernel and initramfs layers; a suspended one its state.
head -c 300000 /dev/urandom >"$T_TMP/kernel"
head -c 100000 /dev/urandom >"$T_TMP/initrd"
vmm create kvm --kernel "$T_TMP/kernel" --initramfs "$T_TMP/initrd" --cmdline "console=ttyS0" --disk-size 1
assert_rc 0 "create a direct-boot VM"
python3 - "$VMM_HOME/vms/kvm/state.vmmsave" <<'EOF'
import hashlib, json, struct, sys
raw = b"QEVM" + bytes(range(256)) * 40
stream = b"(zstd frame stand-in)"
h = {"format": 1, "qemuVersion": "7.2.22", "qemuPackage": "", "machine": "pc-q35-7.2",
     "arch": "x86_64", "accel": "tcg", "fingerprint": "sha256:" + hashlib.sha256(b"[]").hexdigest(),
     "model": [], "cpus": 1, "memory": 301989888, "rawSize": len(raw),
     "rawSha256": "sha256:" + hashlib.sha256(raw).hexdigest(), "compressedSize": len(stream),
     "created": "2026-01-01T00:00:00Z"}
j = json.dumps(h).encode()
hdr = b"VMMSAVE\n" + struct.pack("<I", len(j)) + j
open(sys.argv[1], "wb").write(hdr + b"\0" * (16384 - len(hdr)) + stream)
EOF
vmm push kvm "$REG/vm/kvm:latest" --insecure
assert_rc 0 "push a direct-boot, suspended VM"
assert_contains "$OUT" "pushing kernel..." "kernel layer"
RAW=$(skopeo inspect --raw --tls-verify=false "docker://$REG/vm/kvm:latest")
python3 - "$RAW" >"$T_TMP/kvm.out" 2>&1 <<'EOF'
import json, sys
m = json.loads(sys.argv[1])
t = [l["mediaType"] for l in m["layers"]]
assert t[-4:] == ["application/vnd.cirruslabs.tart.nvram.v1", "application/vnd.vmm.kernel.v1",
                  "application/vnd.vmm.initramfs.v1", "application/vnd.vmm.state.v1+zstd"], t
a = m["layers"][-1]["annotations"]
assert a["org.vmm.state.qemu-version"] == "7.2.22" and a["org.vmm.state.machine"] == "pc-q35-7.2", a
assert a["org.vmm.state.raw-size"] == "10244" and a["org.vmm.state.raw-digest"].startswith("sha256:"), a
print("ok")
EOF
assert_eq "$(tail -1 "$T_TMP/kvm.out")" ok "vmm's layers follow Tart's, state annotated ($(head -c 300 "$T_TMP/kvm.out"))"
vmm clone "$REG/vm/kvm:latest" kvm2 --insecure
assert_rc 0 "clone it back"
for f in kernel initramfs state.vmmsave; do
	assert_true "$f identical" cmp -s "$VMM_HOME/vms/kvm/$f" "$VMM_HOME/vms/kvm2/$f"
done
vmm get kvm2 --format json
assert_contains "$OUT" '"State" : "suspended"' "the clone is suspended (a fork)"
printf 'garbage' >"$VMM_HOME/vms/kvm/state.vmmsave"
vmm push kvm "$REG/vm/kvm:bad" --insecure
assert_rc 1 "a state file without a header is not pushed"
assert_contains "$ERR" "has no state header" "says so"

# Another pull from the same registry holds the per-host lock: this one waits.
HOSTDIR=$VMM_HOME/cache/OCIs/${REG/:/%3A}
python3 -c 'import fcntl,os,sys,time; fd=os.open(sys.argv[1],os.O_RDONLY); fcntl.flock(fd,fcntl.LOCK_EX); open(sys.argv[2],"w").close(); time.sleep(4)' \
	"$HOSTDIR" "$T_TMP/hostlocked" &
HOLDER=$!
for _ in $(seq 50); do [ -e "$T_TMP/hostlocked" ] && break; sleep 0.1; done
vmm delete "$REG/vm/kvm:latest"
vmm pull "$REG/vm/kvm:latest" --insecure
wait $HOLDER
assert_rc 0 "pull waits for the host lock, then succeeds"
assert_contains "$OUT" "waiting for lock..." "Tart's waiting line"

# prune: Tart's validation, then the space budget empties the cache.
vmm prune
assert_rc 64 "prune without criteria"
assert_contains "$ERR" "at least one pruning criteria must be specified" "Tart's message"
vmm prune --entries bogus --older-than 1
assert_rc 64 "prune with bad entries"
vmm prune --cache-budget 1000
assert_rc 0 "deprecated --cache-budget still works"
assert_contains "$ERR" "--cache-budget is deprecated, please use --space-budget" "with Tart's warning"
vmm prune --older-than 1
assert_rc 0 "prune --older-than 1"
assert_true "recent cache entries kept" test -n "$(ls "$HOSTDIR/vm")"
vmm prune --space-budget 0
assert_rc 0 "prune --space-budget 0"
vmm list --source oci --quiet
assert_eq "$OUT" "" "cache empty after a zero budget"
vmm list --source local --quiet
assert_contains "$OUT" "vm1" "local VMs untouched by cache pruning"

# Registries with authentication: token (Bearer, push scope) and htpasswd (Basic).
registry_start TOK --auth token --user "alice:pw for push" --anonymous-pull || fail "start token registry"
registry_start BAS --auth htpasswd --user "bob:basic-pw" || fail "start htpasswd registry"
vmm create small --linux --disk-size 1
head -c $MiB /dev/urandom | dd of="$VMM_HOME/vms/small/disk.img" bs=1M seek=10 conv=notrunc status=none
vmm push small "$TOK/auth/small:latest" --insecure
assert_rc 1 "anonymous push to a token registry is refused"
assert_one_line_error "one line"
VMM_REGISTRY_HOSTNAME=$TOK VMM_REGISTRY_USERNAME=alice VMM_REGISTRY_PASSWORD="pw for push" vmm push small "$TOK/auth/small:latest" --insecure
assert_rc 0 "push with a Bearer token"
vmm clone "$TOK/auth/small:latest" small-tok --insecure
assert_rc 0 "anonymous pull with an anonymous token"
assert_true "token round trip identical" cmp -s "$VMM_HOME/vms/small-tok/disk.img" "$VMM_HOME/vms/small/disk.img"
VMM_REGISTRY_HOSTNAME=$BAS VMM_REGISTRY_USERNAME=bob VMM_REGISTRY_PASSWORD=basic-pw vmm push small "$BAS/auth/small:latest" --insecure
assert_rc 0 "push with Basic auth"
vmm pull "$BAS/auth/small:latest" --insecure
assert_rc 1 "pull without credentials is refused"
# credentials in the environment without a host name go to no registry (Tart
# sends them to all, and to any token realm a registry names)
VMM_REGISTRY_USERNAME=bob VMM_REGISTRY_PASSWORD=basic-pw vmm pull "$BAS/auth/small:latest" --insecure
assert_rc 1 "unscoped environment credentials are not sent"
assert_contains "$ERR" "VMM_REGISTRY_USERNAME is set without VMM_REGISTRY_HOSTNAME" "and the error says why"
assert_one_line_error "one line"
VMM_REGISTRY_HOSTNAME=$TOK VMM_REGISTRY_USERNAME=bob VMM_REGISTRY_PASSWORD=basic-pw vmm pull "$BAS/auth/small:latest" --insecure
assert_rc 1 "credentials scoped to another host are not sent"
assert_true "nothing cached after the refusal" test ! -e "$VMM_HOME/cache/OCIs/${BAS/:/%3A}/auth/small/latest"
VMM_REGISTRY_HOSTNAME=$BAS VMM_REGISTRY_USERNAME=bob VMM_REGISTRY_PASSWORD=basic-pw vmm clone "$BAS/auth/small:latest" small-bas --insecure
assert_rc 0 "pull with Basic auth"
assert_true "basic round trip identical" cmp -s "$VMM_HOME/vms/small-bas/disk.img" "$VMM_HOME/vms/small/disk.img"

# --chunk-size: PATCH uploads of 1 MB slices, the last one with the PUT.
: >"$PX_LOG"
vmm push small "$PX/chunked/small:latest" --insecure --chunk-size 1
assert_rc 0 "chunked push"
patches=$(grep -c '"method": "PATCH", "path": "/v2/chunked/small/blobs/uploads' "$PX_LOG")
[ "$patches" -ge 1 ] && ok "PATCH requests used ($patches)" || fail "no PATCH requests in a chunked push"
vmm clone "$PX/chunked/small:latest" small-chunked --insecure
assert_rc 0 "pull the chunked push"
assert_true "chunked round trip identical" cmp -s "$VMM_HOME/vms/small-chunked/disk.img" "$VMM_HOME/vms/small/disk.img"

# On a terminal (and CI unset) progress is a bar redrawn in place on stderr.
vmm delete "$TOK/auth/small:latest"
if command -v script >/dev/null; then
	env -u CI script -qec "$VMM pull $TOK/auth/small:latest --insecure" /dev/null >"$T_TMP/tty.out" 2>&1
	assert_eq "$?" 0 "pull on a terminal"
	TTY=$(cat -v "$T_TMP/tty.out")
	assert_contains "$TTY" "^Mpulling disk [" "a bar redrawn with carriage returns"
	assert_contains "$TTY" "/s  " "with a rate"
	assert_contains "$TTY" " left" "and the time left"
	assert_eq "$(grep -c '^[0-9]*%' "$T_TMP/tty.out")" 0 "no plain percentage lines on a terminal"
fi

vmm push vm1 "$REG/vm/one@sha256:0000000000000000000000000000000000000000000000000000000000000000" --insecure
assert_rc 64 "push to a digest is a usage error"
vmm push nope "$REG/vm/one:x" --insecure
assert_rc 2 "push of a missing VM"
vmm pull vm1
assert_rc 0 "pull of a local name"
assert_eq "$OUT" '"vm1" is a local image, nothing to pull here!' "Tart's local-image message"
vmm pull "$REG/vm/one:latest" --insecure --concurrency 0
assert_rc 64 "concurrency below 1"
assert_contains "$ERR" "network concurrency cannot be less than 1" "Tart's concurrency message"
t_done
