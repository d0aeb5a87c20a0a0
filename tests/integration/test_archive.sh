#!/usr/bin/env bash
# export/import: a portable .tar.zst that GNU tar and bsdtar read, holes kept,
# checksums verified, hostile or damaged archives refused with nothing left behind.
. "$(dirname "$0")/lib.sh"
t_init
command -v bsdtar >/dev/null || t_skip "bsdtar missing (libarchive-tools)"

V=$VMM_HOME/vms
vmm create src --linux --disk-size 2
assert_rc 0 "create src"
# data at scattered offsets of a 2 GB sparse disk
head -c 3000000 /dev/urandom >"$T_TMP/blob"
dd if="$T_TMP/blob" of="$V/src/disk.img" bs=1M seek=5 conv=notrunc status=none
dd if="$T_TMP/blob" of="$V/src/disk.img" bs=1M seek=1500 conv=notrunc status=none
printf 'nvram-bytes' >"$V/src/nvram.bin"
jq_mac() { sed -n 's/.*"macAddress" : "\(.*\)".*/\1/p' "$1"; }
src_mac=$(jq_mac "$V/src/config.json")

vmm export src "$T_TMP/src.tar.zst"
assert_rc 0 "export exits 0"
assert_true "archive written" test -s "$T_TMP/src.tar.zst"
assert_true "no temporary left next to the archive" test ! -e "$T_TMP/src.tar.zst.tmp"
size=$(stat -c %s "$T_TMP/src.tar.zst")
assert_true "archive size follows the data, not the 2 GB disk ($size bytes)" test "$size" -lt 8000000

list=$(tar --zstd -tf "$T_TMP/src.tar.zst")
assert_eq "$(head -1 <<<"$list")" "vmm-archive.json" "GNU tar lists the index first"
assert_contains "$list" "disk.img" "GNU tar lists disk.img"
blist=$(bsdtar -tf "$T_TMP/src.tar.zst")
assert_eq "$blist" "$list" "bsdtar lists the same entries"

mkdir "$T_TMP/gnu" "$T_TMP/bsd"
tar --zstd -xf "$T_TMP/src.tar.zst" -C "$T_TMP/gnu"
assert_rc 0 "GNU tar extracts"
bsdtar -xf "$T_TMP/src.tar.zst" -C "$T_TMP/bsd"
assert_true "GNU tar extraction is byte-identical" cmp -s "$V/src/disk.img" "$T_TMP/gnu/disk.img"
assert_true "bsdtar extraction is byte-identical" cmp -s "$V/src/disk.img" "$T_TMP/bsd/disk.img"
assert_true "GNU tar keeps the holes" test "$(allocated "$T_TMP/gnu/disk.img")" -lt 20000000
want=$(sed -n '/"disk.img"/,/sha256/p' "$T_TMP/gnu/vmm-archive.json" | sed -n 's/.*"sha256" : "sha256:\(.*\)".*/\1/p')
got=$(sha256sum "$T_TMP/gnu/disk.img" | cut -d' ' -f1)
assert_eq "$got" "$want" "index SHA-256 is the sha256sum of the extracted disk"

vmm import "$T_TMP/src.tar.zst" copy
assert_rc 0 "import exits 0"
assert_true "imported disk identical" cmp -s "$V/src/disk.img" "$V/copy/disk.img"
assert_true "imported nvram identical" cmp -s "$V/src/nvram.bin" "$V/copy/nvram.bin"
assert_true "imported disk sparse" test "$(allocated "$V/copy/disk.img")" -lt 20000000
assert_true "imported VM gets a new MAC (source still present)" test "$(jq_mac "$V/copy/config.json")" != "$src_mac"
vmm get copy
assert_rc 0 "imported VM is usable"

vmm import "$T_TMP/src.tar.zst" copy
assert_rc 1 "import onto an existing VM is refused"
assert_contains "$ERR" "already exists" "... saying it exists"
vmm import "$T_TMP/src.tar.zst" copy --force
assert_rc 0 "--force replaces it"

# streams: export to stdout, import from stdin
"$VMM" export src - 2>/dev/null | "$VMM" import - piped 2>/dev/null
assert_true "export - | import - works" cmp -s "$V/src/disk.img" "$V/piped/disk.img"

# a suspended VM travels with its state and keeps its MAC (it resumes the same machine)
printf 'fake-state' >"$V/src/state.vmmsave"
vmm export src "$T_TMP/susp.tar.zst"
"$VMM" delete src >/dev/null 2>&1 || true
rm -rf "$V/src"
vmm import "$T_TMP/susp.tar.zst" back
assert_rc 0 "import of a suspended VM"
assert_true "state carried" cmp -s "$V/back/state.vmmsave" <(printf 'fake-state')
assert_eq "$(jq_mac "$V/back/config.json")" "$src_mac" "suspended VM keeps its MAC"

# damage: flip a byte in the middle, truncate, garbage
cp "$T_TMP/src.tar.zst" "$T_TMP/bad.tar.zst"
printf '\xff\xff\xff\xff' | dd of="$T_TMP/bad.tar.zst" bs=1 seek=$((size / 2)) conv=notrunc status=none
vmm import "$T_TMP/bad.tar.zst" bad1
assert_true "corrupt archive refused (exit $RC)" test "$RC" -ne 0
assert_one_line_error "corrupt archive: one-line error"
head -c $((size / 3)) "$T_TMP/src.tar.zst" >"$T_TMP/trunc.tar.zst"
vmm import "$T_TMP/trunc.tar.zst" bad2
assert_true "truncated archive refused" test "$RC" -ne 0
head -c 5000 /dev/urandom >"$T_TMP/garbage"
vmm import "$T_TMP/garbage" bad3
assert_true "garbage refused" test "$RC" -ne 0
vmm import "$T_TMP/nonexistent.tar.zst" bad4
assert_rc 1 "missing file refused"
assert_contains "$ERR" "nonexistent.tar.zst" "... naming the file"
assert_true "nothing half-made in vms/" test ! -e "$V/bad1" -a ! -e "$V/bad2" -a ! -e "$V/bad3"
assert_eq "$(ls "$VMM_HOME/tmp")" "" "nothing left in tmp/"

# a running VM cannot be exported (the POSIX lock on config.json marks it running)
# hold the POSIX running lock from another process, as `vmm run` does
python3 - "$V/back/config.json" "$T_TMP/locked" <<'PY' &
import fcntl, sys, time
f = open(sys.argv[1], "r+"); fcntl.lockf(f, fcntl.LOCK_EX); open(sys.argv[2], "w").close(); time.sleep(60)
PY
locker=$!
t_defer "kill $locker"
for _ in $(seq 100); do [ -e "$T_TMP/locked" ] && break; sleep 0.1; done
vmm export back "$T_TMP/running.tar.zst"
assert_rc 1 "export of a running VM refused"
assert_contains "$ERR" 'VM "back" is running' "... with Tart's text"
kill $locker
vmm export missing "$T_TMP/x.tar.zst"
assert_rc 2 "export of a missing VM exits 2"
t_done
