#!/usr/bin/env bash
# Guest memory from the host's pool of 2 MiB huge pages (VMM_HUGEPAGES=1):
# the guest boots with its RAM taken from the pool, all at once; a snapshot
# of it running pauses it briefly and holds memory and disk of one instant;
# it suspends and resumes, with huge pages and without (the state does not
# care); a pool too small gives ordinary pages and a notice; the pool is
# whole again once the VMs are gone.  The pool is the host's: the test sets
# its size and puts it back.
source "$(dirname "$0")/lib.sh"
t_init
[ "$(id -u)" -eq 0 ] || t_skip "the pool of huge pages is root's to size"
pool=/proc/sys/vm/nr_hugepages
[ -w "$pool" ] && [ -d /sys/kernel/mm/hugepages/hugepages-2048kB ] || t_skip "no 2 MiB huge pages here"
source "$(dirname "$0")/guest_lib.sh"

free_pages() { cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages; }
was=$(cat "$pool")
t_defer "echo $was >$pool"
mem=512
need=$((mem / 2))
echo $((need + 16)) >"$pool"
total=$(cat "$pool")
[ "$total" -ge $((need + 16)) ] || t_skip "the host gave only $total huge pages of $((need + 16))"

echo "a guest whose RAM is huge pages"
guest_create h $mem "console=ttyS0 quiet vmmtest.fill=200 vmmtest.diskcounter=/dev/vda"
before=$(free_pages)
VMM_HUGEPAGES=1 run_bg h
wait_console h "VMMTEST DISKCOUNTER 3" 1 || fail "h boots and counts"
assert_eq "$((before - $(free_pages)))" "$need" "its $mem MiB are $need pages of the pool"
assert_not_contains "$(cat "$T_TMP/h.err")" "huge pages" "no notice"

echo "a snapshot of it running: a brief pause, memory and disk of one instant"
mkdir "$T_TMP/ck"
vmm checkpoint h "$T_TMP/ck" --stats
assert_rc 0 "vmm checkpoint exits 0"
read -r _ pause _ <<<"$OUT"
# one entry to write-protect per 2 MiB: the pause is a few ms (bench_suspend measures it)
assert_true "the guest paused for $pause s" awk "BEGIN { exit !(${pause:-0} > 0 && ${pause:-1} < 0.1) }"
disk=$(dd if="$T_TMP/ck/disk.img" bs=512 skip=2048 count=1 status=none | tr -dc 0-9)
assert_true "the snapshot's disk holds the counter ($disk)" test -n "$disk"
t=$(last_tick h)
wait_console h "VMMTEST TICK $((t + 2))" 1 && ok "h runs on" || fail "h runs on after the snapshot"
bundle_from_checkpoint h h2 "$T_TMP/ck"
VMM_HUGEPAGES=1 run_bg h2
restored_goes_on h2 "$disk"

echo "suspend and resume, with huge pages and without"
vmm suspend h
assert_rc 0 "suspend h"
run_wait h 60
assert_eq "$(state_of h)" suspended "h is suspended"
assert_eq "$(free_pages)" "$total" "its pages are back in the pool"
t=$(last_tick h)
VMM_HUGEPAGES=1 run_bg h
wait_console h "VMMTEST TICK $((t + 2))" 1 && ok "h resumes into huge pages and ticks on" ||
	fail "h resumes into huge pages"
assert_eq "$(count h "VMMTEST BOOT")" 1 "without booting again"
assert_eq "$(count h "DISKCOUNTER MISMATCH")" 0 "memory and disk agree"
vmm suspend h
assert_rc 0 "suspend h again"
run_wait h 60
t=$(last_tick h)
run_bg h
wait_console h "VMMTEST TICK $((t + 2))" 1 && ok "and into ordinary pages" || fail "h resumes into ordinary pages"
assert_eq "$(count h "VMMTEST BOOT")" 1 "without booting again"
assert_eq "$(free_pages)" "$total" "taking none from the pool"
vmm suspend h
assert_rc 0 "suspend h from ordinary pages"
run_wait h 60
t=$(last_tick h)
VMM_HUGEPAGES=1 run_bg h
wait_console h "VMMTEST TICK $((t + 2))" 1 && ok "and back into huge pages" || fail "h resumes into huge pages again"
assert_eq "$(count h "VMMTEST BOOT")" 1 "without booting again"

echo "a pool too small: ordinary pages, said so"
guest_create s 320
VMM_HUGEPAGES=1 run_bg s
wait_console s "VMMTEST TICK 2" 1 && ok "s boots all the same" || fail "s boots with the pool short"
assert_contains "$(cat "$T_TMP/s.err")" "huge pages: 160 needed, $((total - need)) free" \
	"the notice says how many pages it needed and how many were free"
vmm stop s --timeout 30
run_wait s 30
vmm stop h --timeout 30
run_wait h 30
assert_eq "$(free_pages)" "$total" "with every VM gone the pool is whole"

t_done
