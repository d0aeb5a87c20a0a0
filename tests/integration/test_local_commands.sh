#!/usr/bin/env bash
# Every local command's output and exit code, as Tart prints them, on a
# fresh home; a bundle written by Tart placed by hand; bad input; running
# VMs (a real POSIX lock held by another process); --force; and that no
# failure leaves anything half-made in vms/ or tmp/.
. "$(dirname "$0")/lib.sh"
t_init

vmdir() { echo "$VMM_HOME/vms/$1"; }
vms_now() { ls -A "$VMM_HOME/vms" 2>/dev/null | tr '\n' ' '; }
tmp_now() { ls -A "$VMM_HOME/tmp" 2>/dev/null | tr '\n' ' '; }

echo "# usage and help"
vmm
assert_rc 0 "no command: help on stdout, exit 0 (as Tart's argument parser)"
assert_contains "$OUT" "Usage: vmm <command>" "the help lists the commands"
assert_eq "$ERR" "" "nothing on stderr"
vmm help run
assert_rc 0 "help CMD: exit 0"
assert_contains "$OUT" "Usage: vmm run NAME" "help CMD shows that command's help"
assert_contains "$OUT" "--root-disk-opts" "with its options"
vmm help bogus
assert_rc 64 "help of an unknown command: exit 64"
vmm bogus
assert_rc 64 "unknown command: exit 64"
assert_contains "$ERR" "vmm: unknown command 'bogus'" "unknown command named"
vmm list --help
assert_rc 0 "list --help: exit 0"
assert_contains "$OUT" "--source local|oci" "help lists the options"
vmm list --bogus
assert_rc 64 "unknown option: exit 64"
assert_contains "$ERR" "See 'vmm list --help'" "usage hint"
vmm --version
assert_rc 0 "--version"

echo "# list on an empty home"
vmm list
assert_rc 0 "list: exit 0"
assert_eq "$OUT_RAW" $'\n' "empty list prints one empty line (Tart's print(\"\"))"
vmm list --format json
assert_eq "$(jq -c . <<<"$OUT" 2>/dev/null || python3 -c 'import json,sys;print(json.dumps(json.load(sys.stdin)))' <<<"$OUT")" "[]" "empty JSON list is []"
vmm list --source bogus
assert_rc 64 "bad --source: exit 64"
assert_contains "$ERR" "'bogus' is not a valid <source>" "Tart's --source text"
vmm list --format yaml
assert_rc 64 "bad --format: exit 64"

echo "# create"
vmm create a --linux
assert_rc 0 "create --linux: exit 0"
assert_eq "$OUT$ERR" "" "create prints nothing"
for f in config.json disk.img nvram.bin; do
	assert_true "a has $f" test -f "$(vmdir a)/$f"
done
assert_eq "$(stat -c %s "$(vmdir a)/disk.img")" 50000000000 "default disk is 50 GB (decimal)"
assert_true "disk is sparse" test "$(allocated "$(vmdir a)/disk.img")" -lt 1048576
cfg=$(cat "$(vmdir a)/config.json"; echo x)
cfg=${cfg%x}
mac_a=$(sed -n 's/.*"macAddress" : "\(.*\)".*/\1/p' "$(vmdir a)/config.json")
arch=$(case $(uname -m) in aarch64) echo arm64 ;; *) echo amd64 ;; esac)
assert_eq "$cfg" "{
  \"version\" : 1,
  \"os\" : \"linux\",
  \"arch\" : \"$arch\",
  \"cpuCountMin\" : 4,
  \"cpuCount\" : 4,
  \"memorySizeMin\" : 4294967296,
  \"memorySize\" : 4294967296,
  \"macAddress\" : \"$mac_a\",
  \"display\" : {
    \"width\" : 1024,
    \"height\" : 768
  },
  \"diskFormat\" : \"raw\"
}" "config.json in Tart's pretty form, Tart's key order, no trailing newline"
first=$((16#${mac_a%%:*}))
assert_true "MAC is unicast and locally administered ($mac_a)" test $((first & 3)) -eq 2
vmm create b --linux --disk-size 20
assert_rc 0 "create --disk-size 20"
assert_eq "$(stat -c %s "$(vmdir b)/disk.img")" 20000000000 "--disk-size is GB of 10^9"
mac_b=$(sed -n 's/.*"macAddress" : "\(.*\)".*/\1/p' "$(vmdir b)/config.json")
assert_true "two VMs, two MACs" test "$mac_a" != "$mac_b"
vmm create c
assert_rc 64 "create without --linux/--kernel: exit 64"
vmm create c --linux --initramfs /etc/hostname
assert_rc 64 "--initramfs without --kernel: exit 64"
vmm create c --linux --disk-format asif
assert_rc 64 "asif refused"
assert_contains "$ERR" "Disk format 'asif' is not supported on this system." "Tart's asif text"
vmm create c --linux --disk-size abc
assert_rc 64 "bad --disk-size: exit 64"
printf 'KERNEL' >"$T_TMP/kernel"
printf 'INITRD' >"$T_TMP/initrd"
vmm create k --kernel "$T_TMP/kernel" --initramfs "$T_TMP/initrd" --cmdline "console=ttyS0 root=/dev/vda" --disk-size 1
assert_rc 0 "create --kernel --initramfs --cmdline"
assert_eq "$(cat "$(vmdir k)/kernel")/$(cat "$(vmdir k)/initramfs")" "KERNEL/INITRD" "kernel and initramfs copied into the bundle"
assert_contains "$(cat "$(vmdir k)/config.json")" '"cmdline" : "console=ttyS0 root=\/dev\/vda"' "cmdline kept in config.json (slash escaped as Foundation does)"
vmm create x --kernel "$T_TMP/missing-kernel"
assert_rc 1 "missing kernel file: exit 1"
assert_contains "$ERR" "missing-kernel" "error names the kernel file"
assert_false_x() { if "$@"; then return 1; else return 0; fi; }
assert_true "nothing left for x" assert_false_x test -e "$(vmdir x)"

echo "# names"
for bad in "x/y" ".." "." ""; do
	vmm create "$bad" --linux
	assert_rc 64 "create refuses name '$bad'"
	vmm clone a "$bad"
	assert_rc 64 "clone refuses new name '$bad'"
	vmm rename a "$bad"
	assert_rc 64 "rename refuses new name '$bad'"
done
assert_eq "$(vms_now)" "a b k " "refused names left nothing in vms/"
vmm clone a ../escape
assert_rc 64 "clone to ../escape refused"
assert_true "nothing created outside vms/" assert_false_x test -e "$VMM_HOME/escape"

echo "# create --force"
vmm create a --linux
assert_rc 1 "create over an existing VM is refused"
assert_contains "$ERR" 'VM "a" already exists' "refusal says so"
assert_contains "$(cat "$(vmdir a)/config.json")" "$mac_a" "the existing VM is untouched"
vmm create a --linux --disk-size 30 --force
assert_rc 0 "create --force replaces"
assert_eq "$(stat -c %s "$(vmdir a)/disk.img")" 30000000000 "the replacement is in place"
mac_a=$(sed -n 's/.*"macAddress" : "\(.*\)".*/\1/p' "$(vmdir a)/config.json")

echo "# list and get output"
touch -a -d '2 days ago' "$(vmdir a)" "$(vmdir b)" "$(vmdir k)"
vmm list
assert_rc 0 "list: exit 0"
assert_eq "$OUT_RAW" "Source Name Disk Size Accessed   State  
local  a    30   0    2 days ago stopped
local  b    20   0    2 days ago stopped
local  k    1    0    2 days ago stopped
" "list text: Tart's plain table, header pad kept"
vmm list --quiet
assert_eq "$OUT_RAW" $'a\nb\nk\n' "list --quiet: names, one a line"
vmm list -q --source oci
assert_eq "$OUT_RAW" "" "no OCI entries"
vmm list --format json --source local
py_field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
assert_eq "$(py_field '[list(x.keys()) for x in d][0]' <<<"$OUT")" "['Source', 'Name', 'Disk', 'Size', 'Accessed', 'Running', 'State']" "list JSON fields in Tart's order"
assert_eq "$(py_field '[(x["Source"],x["Name"],x["Disk"],x["Running"],x["State"]) for x in d]' <<<"$OUT")" "[('local', 'a', 30, False, 'stopped'), ('local', 'b', 20, False, 'stopped'), ('local', 'k', 1, False, 'stopped')]" "list JSON values"
assert_true "Accessed is ISO-8601 UTC" grep -qE '"Accessed" : "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z"' <<<"$OUT"
assert_contains "$OUT" '"Source" : "local"' "JSON in Foundation's pretty form"
atime_before=$(stat -c %X "$(vmdir b)")
vmm list
assert_eq "$(stat -c %X "$(vmdir b)")" "$atime_before" "list does not bump the access date"
vmm get b
assert_rc 0 "get: exit 0"
assert_eq "$OUT_RAW" "OS    CPU Memory Disk DiskFormat Size  Display  State  
linux 4   4096   20   raw        0.000 1024x768 stopped
" "get text: Tart's table"
assert_true "get bumps the access date" test "$(stat -c %X "$(vmdir b)")" -gt "$atime_before"
vmm get b --format json
assert_eq "$OUT_RAW" '{
  "OS" : "linux",
  "CPU" : 4,
  "Memory" : 4096,
  "Disk" : 20,
  "DiskFormat" : "raw",
  "Size" : "0.000",
  "Display" : "1024x768",
  "Running" : false,
  "State" : "stopped"
}
' "get JSON: Tart's fields, pretty"
vmm get b --format xml
assert_rc 64 "get bad --format: exit 64"

echo "# a bundle written by Tart, placed by hand"
tart=$(vmdir tartvm)
mkdir -p "$tart"
# tart-spec §2.2 as `tart create --linux` writes it, plus a key from a newer Tart
tart_cfg='{
  "version" : 1,
  "os" : "linux",
  "arch" : "arm64",
  "cpuCountMin" : 4,
  "cpuCount" : 4,
  "memorySizeMin" : 4294967296,
  "memorySize" : 4294967296,
  "macAddress" : "7a:47:bb:5f:97:c9",
  "display" : {
    "width" : 1024,
    "height" : 768
  },
  "diskFormat" : "raw",
  "futureKey" : "a\/b"
}'
printf '%s' "$tart_cfg" >"$tart/config.json"
printf 'Apple EFI variable store placeholder\0\1\2' >"$tart/nvram.bin"
truncate -s 10G "$tart/disk.img"
printf 'BOOTSECTOR' | dd of="$tart/disk.img" bs=1 seek=$((3 << 30)) conv=notrunc status=none
touch -a -d '3 hours ago' "$tart"
vmm list --source local --quiet
assert_eq "$OUT_RAW" $'a\nb\nk\ntartvm\n' "list shows the Tart VM"
vmm list
assert_true "list row for the Tart VM" grep -qE '^local +tartvm +10 +0 +3 hours ago +stopped$' <<<"$OUT"
vmm get tartvm
assert_eq "$OUT" "OS    CPU Memory Disk DiskFormat Size  Display  State  
linux 4   4096   10   raw        0.000 1024x768 stopped" "get reads Tart's config"
vmm rename tartvm tartvm2
assert_rc 0 "rename the Tart VM"
assert_eq "$(cat "$(vmdir tartvm2)/config.json")" "$tart_cfg" "rename leaves config.json byte for byte"
vmm rename tartvm2 tartvm
vmm set tartvm --cpu 2 --memory 2048
assert_rc 0 "set --cpu --memory on the Tart VM"
want=$(sed -e 's/"cpuCount" : 4/"cpuCount" : 2/' -e 's/"memorySize" : 4294967296/"memorySize" : 2147483648/' <<<"$tart_cfg")
got=$(cat "$tart/config.json"; echo x)
assert_eq "${got%x}" "$want" "set rewrites in Tart's form: key order, unknown key, no trailing newline"
vmm get tartvm --format json
assert_contains "$OUT" '"CPU" : 2' "get sees the new CPU count"
assert_contains "$OUT" '"Memory" : 2048' "get sees the new memory"
vmm clone tartvm tclone
assert_rc 0 "clone the Tart VM"
mac_t=$(sed -n 's/.*"macAddress" : "\(.*\)".*/\1/p' "$(vmdir tclone)/config.json")
assert_true "clone of a local VM gets a new MAC ($mac_t)" test "$mac_t" != "7a:47:bb:5f:97:c9"
first=$((16#${mac_t%%:*}))
assert_true "new MAC is unicast, locally administered" test $((first & 3)) -eq 2
got=$(cat "$(vmdir tclone)/config.json"; echo x)
assert_eq "${got%x}" "${want/7a:47:bb:5f:97:c9/$mac_t}" "the clone's config: Tart's form, unknown key kept, only the MAC changed"
assert_true "nvram.bin carried byte for byte" cmp -s "$tart/nvram.bin" "$(vmdir tclone)/nvram.bin"
assert_true "disk bytes equal" sparse_cmp "$tart/disk.img" "$(vmdir tclone)/disk.img"
assert_true "the clone's disk is sparse" test "$(allocated "$(vmdir tclone)/disk.img")" -le "$(allocated "$tart/disk.img")"
assert_eq "$(cat "$tart/config.json")" "$want" "the source is untouched by the clone"
vmm set tartvm --display 1920x1200pt --random-mac
assert_rc 0 "set --display --random-mac"
assert_contains "$(cat "$tart/config.json")" '"unit" : "pt"' "display unit written"
assert_not_contains "$(cat "$tart/config.json")" "7a:47:bb:5f:97:c9" "--random-mac replaced the MAC"
assert_contains "$(cat "$tart/config.json")" '"futureKey" : "a\/b"' "unknown key still kept"
vmm get tartvm
assert_contains "$OUT" "1920x1200pt" "get shows the display with its unit"
vmm delete tartvm tclone
assert_rc 0 "delete two VMs"
assert_eq "$(vms_now)" "a b k " "both gone"

echo "# disk size"
vmm set b --disk-size 10
assert_rc 1 "shrinking a disk: exit 1"
assert_eq "$ERR" "vmm: new disk size of 10 GB should be larger than the current disk size of 20 GB" "Tart's wording"
assert_eq "$(stat -c %s "$(vmdir b)/disk.img")" 20000000000 "disk unchanged"
vmm set b --disk-size 20
assert_rc 0 "same size: nothing to do"
vmm set b --disk-size 25
assert_rc 0 "grow"
assert_eq "$(stat -c %s "$(vmdir b)/disk.img")" 25000000000 "grown to 25 GB"
assert_true "still sparse" test "$(allocated "$(vmdir b)/disk.img")" -lt 1048576
vmm set b --cpu 0
assert_rc 64 "--cpu 0: exit 64"
vmm set b --cpu 2 --display-refit --no-display-refit
assert_rc 64 "refit flags exclusive: exit 64"

echo "# corrupt config.json"
cp "$(vmdir b)/config.json" "$T_TMP/b.json"
printf '{\n  "version" : 1,\n  "os" : "linux"\n  "arch" : "amd64"\n}' >"$(vmdir b)/config.json"
vmm get b
assert_rc 1 "get with corrupt config: exit 1"
assert_one_line_error "one-line error"
assert_contains "$ERR" "vmm: \`$(vmdir b)/config.json\`: invalid JSON at line 4" "names the file and where the JSON breaks"
vmm set b --cpu 2
assert_rc 1 "set with corrupt config: exit 1"
vmm clone b b2
assert_rc 1 "clone with corrupt config: exit 1"
assert_contains "$ERR" "$(vmdir b)/config.json" "clone error names the file"
assert_true "no half-made clone" assert_false_x test -e "$(vmdir b2)"
printf '{"version":1,"cpuCountMin":4,"cpuCount":4,"memorySizeMin":4294967296,"memorySize":4294967296}' >"$(vmdir b)/config.json"
vmm get b
assert_rc 1 "config missing a key: exit 1"
assert_contains "$ERR" "missing key \`macAddress\`" "names the missing key"
vmm list --quiet
assert_rc 0 "list still works with a corrupt config"
cp "$T_TMP/b.json" "$(vmdir b)/config.json"

echo "# running VMs (another process holds the POSIX lock)"
lock_pid=$(hold_running_lock "$(vmdir b)")
t_defer "kill $lock_pid"
vmm list
assert_contains "$OUT" "running" "list shows it running"
vmm get b --format json
assert_contains "$OUT" '"Running" : true' "get JSON: Running true"
assert_contains "$OUT" '"State" : "running"' "get JSON: State running"
vmm delete b
assert_rc 1 "delete a running VM: exit 1"
assert_eq "$ERR" 'vmm: VM "b" is running' "Tart's text"
assert_true "still there" test -f "$(vmdir b)/config.json"
vmm set b --cpu 2
assert_rc 1 "set on a running VM: exit 1"
assert_eq "$ERR" 'vmm: VM "b" is running' "set says it runs"
vmm rename b b3
assert_rc 1 "rename a running VM: exit 1"
vmm clone b b4
assert_rc 1 "clone a running VM: exit 1"
assert_contains "$ERR" 'VM "b" is running' "clone says it runs"
vmm create b --linux --force
assert_rc 1 "create --force over a running VM: exit 1"
vmm clone a b --force
assert_rc 1 "clone --force over a running VM: exit 1"
vmm rename a b --force
assert_rc 1 "rename --force over a running VM: exit 1"
vmm delete a b k
assert_rc 1 "delete stops at the running one"
assert_eq "$(vms_now)" "b k " "names before it were deleted, after it kept (Tart processes in order)"
kill "$lock_pid"; wait "$lock_pid" 2>/dev/null
vmm list --quiet
vmm get b --format json
assert_contains "$OUT" '"State" : "stopped"' "stopped once the holder exits"
vmm create a --linux

echo "# missing VMs"
for cmd in "get" "set" "delete"; do
	vmm $cmd nosuch
	assert_rc 2 "$cmd of a missing VM: exit 2"
	assert_eq "$ERR" 'vmm: the specified VM "nosuch" does not exist' "$cmd: Tart's text"
done
vmm clone nosuch n2
assert_rc 2 "clone of a missing VM: exit 2"
assert_eq "$ERR" 'vmm: the specified VM "nosuch" does not exist' "clone: Tart's text"
vmm rename nosuch n2
assert_rc 64 "rename of a missing VM: exit 64 (Tart's validation error)"
assert_contains "$ERR" "failed to rename a non-existent local VM: nosuch" "rename: Tart's text"
mkdir "$(vmdir half)" && printf '{}' >"$(vmdir half)/config.json"
vmm get half
assert_rc 1 "VM missing files: exit 1"
assert_contains "$ERR" "is missing some of its files (config.json, disk.img or nvram.bin)" "Tart's missing-files text"
vmm delete half
assert_rc 0 "delete removes a half-made directory"

echo "# clone, rename and --force"
vmm clone a c
assert_rc 0 "clone"
assert_eq "$OUT$ERR" "" "clone prints nothing"
vmm clone a c
assert_rc 1 "clone onto an existing VM is refused"
assert_contains "$ERR" 'VM "c" already exists' "refusal names it"
mac_c=$(sed -n 's/.*"macAddress" : "\(.*\)".*/\1/p' "$(vmdir c)/config.json")
vmm clone b c --force
assert_rc 0 "clone --force replaces"
assert_eq "$(stat -c %s "$(vmdir c)/disk.img")" 25000000000 "c is now b's clone"
vmm clone c c --force
assert_rc 1 "clone onto itself refused even with --force"
assert_true "c survives" test -f "$(vmdir c)/disk.img"
vmm rename a c
assert_rc 64 "rename onto an existing VM: exit 64"
assert_contains "$ERR" "failed to rename VM a, target VM c already exists" "Tart's text"
vmm rename a c --force
assert_rc 0 "rename --force replaces"
assert_eq "$(vms_now)" "b c k " "a became c"
vmm rename c c
assert_rc 0 "rename to itself is a no-op"
vmm rename c d
assert_rc 0 "rename"
assert_eq "$(vms_now)" "b d k " "renamed"

echo "# suspended VMs keep MAC and state when cloned"
printf 'STATE' >"$(vmdir d)/state.vmmsave"
mac_d=$(sed -n 's/.*"macAddress" : "\(.*\)".*/\1/p' "$(vmdir d)/config.json")
vmm list
assert_contains "$OUT" "suspended" "list shows suspended"
vmm clone d fork
assert_rc 0 "clone a suspended VM"
assert_true "config.json byte for byte (same MAC)" cmp -s "$(vmdir d)/config.json" "$(vmdir fork)/config.json"
assert_eq "$(cat "$(vmdir fork)/state.vmmsave")" "STATE" "state carried"
vmm set fork --random-mac
assert_true "--random-mac drops the state" assert_false_x test -e "$(vmdir fork)/state.vmmsave"
rm "$(vmdir d)/state.vmmsave"

echo "# fqn and the OCI cache"
vmm fqn d
assert_eq "$OUT" "d" "fqn of a local name prints it"
vmm fqn 127.0.0.1:5000/vms/debian:latest
assert_rc 1 "fqn of an uncached reference: exit 1"
assert_contains "$ERR" "OCI storage error: 127.0.0.1:5000/vms/debian:latest is not a digest and doesn't point to a digest" "Tart's text"
digest=sha256:$(printf x | sha256sum | cut -d' ' -f1)
repo=$VMM_HOME/cache/OCIs/127.0.0.1%3A5000/vms/debian
mkdir -p "$repo/$digest"
cp "$(vmdir d)/nvram.bin" "$repo/$digest/"
# as a pull leaves it: the compact pushed blob, a MAC no local VM has
printf '{"version":1,"os":"linux","arch":"arm64","cpuCountMin":4,"cpuCount":4,"memorySizeMin":4294967296,"memorySize":4294967296,"macAddress":"02:aa:bb:cc:dd:ee","display":{"width":1024,"height":768},"diskFormat":"raw"}' >"$repo/$digest/config.json"
truncate -s 2G "$repo/$digest/disk.img"
ln -s "$repo/$digest" "$repo/latest"
vmm fqn 127.0.0.1:5000/vms/debian:latest
assert_eq "$OUT" "127.0.0.1:5000/vms/debian@$digest" "fqn resolves the tag to its digest"
vmm list --source oci --quiet
assert_eq "$OUT_RAW" "127.0.0.1:5000/vms/debian:latest
127.0.0.1:5000/vms/debian@$digest
" "OCI entries: tag and digest, host:port decoded"
vmm list
assert_contains "$OUT" "OCI    127.0.0.1:5000/vms/debian:latest" "OCI rows after local ones"
vmm get 127.0.0.1:5000/vms/debian:latest
assert_rc 0 "get a cached image"
vmm clone 127.0.0.1:5000/vms/debian:latest fromcache
assert_rc 0 "clone from the cache"
assert_true "MAC not used by any local VM: kept, config byte for byte (Tart's rule)" cmp -s "$repo/$digest/config.json" "$(vmdir fromcache)/config.json"
vmm clone 127.0.0.1:5000/vms/debian:latest fromcache2
assert_rc 0 "clone the image again"
assert_not_contains "$(cat "$(vmdir fromcache2)/config.json")" "02:aa:bb:cc:dd:ee" "now the MAC is in use: the second clone gets a new one"
assert_contains "$(cat "$(vmdir fromcache2)/config.json")" '"cpuCountMin" : 4' "rewritten in Tart's pretty form"
vmm delete 127.0.0.1:5000/vms/debian:latest
assert_rc 0 "delete the tag"
assert_true "OCI GC removed the unreferenced digest" assert_false_x test -e "$repo/$digest"

echo "# tmp garbage collection"
mkdir -p "$VMM_HOME/tmp/STALE-DIR" && touch "$VMM_HOME/tmp/STALE-DIR/disk.img" "$VMM_HOME/tmp/set-disk-STALE"
mkdir -p "$VMM_HOME/tmp/HELD"
flock_pid=$(hold_flock "$VMM_HOME/tmp/HELD")
t_defer "kill $flock_pid"
vmm clone d dd
assert_true "clone does not run the GC (Tart)" test -e "$VMM_HOME/tmp/STALE-DIR"
vmm list --quiet
assert_eq "$(tmp_now)" "HELD " "list ran the GC: unlocked entries gone, the flocked one kept"
kill "$flock_pid"; wait "$flock_pid" 2>/dev/null
vmm get d
assert_eq "$(tmp_now)" "" "released, then collected"

echo "# nothing half-made"
assert_eq "$(ls -A "$VMM_HOME/vms" | while read -r v; do [ -f "$VMM_HOME/vms/$v/config.json" ] && [ -f "$VMM_HOME/vms/$v/disk.img" ] && [ -f "$VMM_HOME/vms/$v/nvram.bin" ] || echo "$v"; done)" "" "every directory in vms/ is a whole VM"
assert_eq "$(tmp_now)" "" "tmp/ is empty"

t_done
