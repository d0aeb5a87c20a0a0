#!/usr/bin/env bash
# The default network (vm/net.h, DESIGN.md §8a) with real guests, inside a
# network namespace this test makes (t_netns): the host reaches each guest at
# its `vmm ip` address (HTTP and SSH), guests reach the outside through NAT
# and not each other, eight run at once, suspend/resume and two forks of one
# state stay reachable, a SIGKILL of `vmm run` leaves nothing, Tart's softnet
# flags, --publish, ordinary users (without and with cap_net_admin), bad input.
. "$(dirname "$0")/lib.sh"
t_init
. "$TESTS_DIR/integration/guest_lib.sh"
. "$TESTS_DIR/integration/registry.sh"
[ "$(id -u)" -eq 0 ] || t_skip "the default network needs root (or cap_net_admin)"
for t in slirp4netns nft sshpass curl dnsmasq; do
	command -v $t >/dev/null || t_skip "$t is missing (make deps)"
done

NET_CMDLINE="console=ttyS0 quiet vmmtest.net=dhcp"

# A server outside: a second namespace behind a veth pair, with no route back
# to the guests' networks.  198.51.100.2 is TEST-NET-2, not globally routable.
outside_start() {
	unshare --net sleep infinity &
	OUT_PID=$!
	t_defer "kill $OUT_PID"
	sleep 0.2
	out_ns() { nsenter -t "$OUT_PID" -n "$@"; }
	ip link add vmmto type veth peer name vmmti netns "/proc/$OUT_PID/ns/net"
	ip addr add 198.51.100.1/24 dev vmmto
	ip link set vmmto up
	out_ns ip link set lo up
	out_ns ip addr add 198.51.100.2/24 dev vmmti
	out_ns ip link set vmmti up
	mkdir -p "$T_TMP/www"
	echo "outside says hello" >"$T_TMP/www/index.html"
	# nsenter itself (it execs), not out_ns in a subshell, so that $! is the server
	nsenter -t "$OUT_PID" -n python3 -m http.server 8000 --bind 198.51.100.2 --directory "$T_TMP/www" \
		>/dev/null 2>&1 &
	t_defer "kill $!"
	# a DNS server outside: dnsmasq, knowing one name
	nsenter -t "$OUT_PID" -n dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces \
		--listen-address=198.51.100.2 --address=/vmmtest.example/198.51.100.77 \
		--pid-file= --conf-file=/dev/null --user=root >/dev/null 2>&1 &
	t_defer "kill $!"
	for _ in $(seq 1 50); do
		curl -s -m 1 -o /dev/null http://198.51.100.2:8000/ && return 0
		sleep 0.1
	done
	fail "the outside server starts"
}

net_create() { # name [cmdline extra]
	guest_create "$1" 192 "$NET_CMDLINE ${2:-}"
}

# Wait until the guest answers HTTP at its address; prints what / says.
http_wait() { # addr [secs]
	local end=$((SECONDS + ${2:-$GUEST_TIMEOUT})) out
	while [ $SECONDS -le $end ]; do
		out=$(curl -s -m 2 "http://$1/" 2>/dev/null) && [ -n "$out" ] && {
			echo "$out"
			return 0
		}
		sleep 0.5
	done
	return 1
}

ssh_admin() { # addr cmd...
	local a=$1
	shift
	sshpass -p admin ssh -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
		-o LogLevel=ERROR -o ConnectTimeout=10 "admin@$a" "$@"
}

# Run a command in the guest through SSH as root (wget, ping): prints its output.
# (busybox 1.35's `wget -T` crashes when a connection fails: tests use `timeout`.)
guest_sh() { # addr cmd
	sshpass -p admin ssh -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
		-o LogLevel=ERROR -o ConnectTimeout=10 "root@$1" "$2"
}

# Interfaces of the host namespace other than lo and the outside pair.
host_links() { ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -v -E '^(lo|vmmto)$' | sort; }
qemu_here() { # QEMUs of this namespace running VM $1
	local p
	for p in $(pgrep -f "qemu-system.*-name vmm-$1 "); do
		[ "$(readlink "/proc/$p/ns/net")" = "$(readlink /proc/self/ns/net)" ] && echo "$p"
	done
}
nothing_left() { # description
	local i
	for i in $(seq 1 50); do
		[ -z "$(host_links)" ] && [ -z "$(ip -4 route show | grep -v -E '198\.51\.100\.')" ] && break
		sleep 0.1
	done
	assert_eq "$(host_links)" "" "$1: no interface left"
	assert_eq "$(ip -4 route show | grep -v -E '198\.51\.100\.')" "" "$1: no route left"
	assert_eq "$(ls /tmp/vmm-slirp-* 2>/dev/null)" "" "$1: no slirp4netns socket left"
}

# ICMP echo through slirp4netns needs unprivileged ping sockets, which a
# new namespace disables: allow them as systemd does on Debian hosts
sysctl -qw net.ipv4.ping_group_range="0 2147483647"
outside_start

echo "one VM: DHCP, vmm ip before the guest is up, HTTP and SSH by that address"
net_create a
run_bg a
vmm ip a --wait 10
assert_rc 0 "vmm ip answers"
A=$OUT
assert_match "$A" '^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$' "an IPv4 address ($A)"
assert_eq "$(count a "VMMTEST IP")" 0 "known before the guest has its lease"
vmm ip a --resolver arp
assert_eq "$OUT" "$A" "--resolver arp gives the same address"
page=$(http_wait "$A")
assert_match "$page" '^vmmtest ' "HTTP to the guest at $A"
wait_console a "VMMTEST IP 10.0.2.15" 1 && ok "the guest leased 10.0.2.15 from vmm's DHCP server (udhcpc)" ||
	fail "DHCP lease"
assert_eq "$(ssh_admin "$A" 'id -un')" "admin" "SSH admin/admin to $A"
assert_match "$(ssh_admin "$A" 'ip route | grep default')" "^default via 10\.0\.2\.2 dev eth0" \
	"the lease names the gateway as router"
assert_eq "$(ssh_admin "$A" 'cat /etc/resolv.conf')" "nameserver 10.0.2.3" "and vmm's DNS address"
assert_true "the host's end of the VM's network is a /30 route" ip -4 route show "${A%.*}.$((${A##*.} - 2))/30"

echo "outbound through NAT"
out=$(guest_sh "$A" 'timeout 15 wget -q -O - http://198.51.100.2:8000/')
assert_eq "$out" "outside says hello" "the guest reaches a server outside (TCP)"
assert_true "the outside namespace has no route back to the guests" \
	sh -c "! nsenter -t $OUT_PID -n ip route get 10.0.2.15 >/dev/null 2>&1"
out=$(guest_sh "$A" 'ping -c 1 -W 5 10.0.2.2 >/dev/null && echo pong')
assert_eq "$out" "pong" "the guest pings its gateway"
out=$(guest_sh "$A" 'ping -c 1 -W 5 198.51.100.2 >/dev/null && echo pong')
assert_eq "$out" "pong" "and the server outside (ICMP echo through slirp4netns)"
out=$(guest_sh "$A" 'timeout 10 nslookup -type=A vmmtest.example 198.51.100.2 2>&1 | grep -c 198.51.100.77')
assert_eq "$out" "1" "UDP goes out too (a DNS query to dnsmasq outside)"

echo "a second vmm run of a running VM is refused and leaves the network alone"
links_before=$(host_links)
vmm run a
assert_rc 2 "exit 2"
assert_eq "$ERR" 'vmm: VM "a" is already running!' "Tart's text, one line"
assert_eq "$(host_links)" "$links_before" "no interface added or removed"
assert_match "$(http_wait "$A" 10)" '^vmmtest ' "the first VM is still reachable"

echo "a second VM: its own address, isolated from the first"
net_create b
run_bg b
vmm ip b --wait 10
B=$OUT
assert_true "another address ($B)" test "$B" != "$A"
http_wait "$B" >/dev/null && ok "HTTP to the second guest" || fail "HTTP to the second guest"
out=$(guest_sh "$B" 'timeout 15 wget -q -O - http://198.51.100.2:8000/')
assert_eq "$out" "outside says hello" "the second guest reaches the outside..."
out=$(guest_sh "$B" "timeout 8 wget -q -O - http://$A/ 2>&1 || echo blocked")
assert_contains "$out" "blocked" "...but not the first guest by its address"
out=$(guest_sh "$B" "ping -c 1 -W 3 $A >/dev/null 2>&1 && echo reached || echo blocked")
assert_eq "$out" "blocked" "nor ping it"

echo "suspend and resume: reachable again at once, same memory"
boot=$(http_wait "$A")
vmm suspend a
assert_rc 0 "suspend"
run_wait a 60
assert_eq "$(state_of a)" suspended "suspended"
run_bg a
vmm ip a --wait 10
A2=$OUT
start=$SECONDS
page=$(http_wait "$A2" 60)
assert_eq "$page" "$boot" "the resumed guest answers at $A2 with the same boot id"
assert_true "within 15 s of resume" test $((SECONDS - start)) -le 15
assert_eq "$(count a "VMMTEST BOOT")" 1 "no second boot"
assert_eq "$(ssh_admin "$A2" 'ip -4 addr show eth0 | grep -o "inet [0-9./]*"')" "inet 10.0.2.15/24" \
	"the guest kept its lease"

echo "two forks of one suspended VM run at once, each at its own address"
vmm suspend a
run_wait a 60
vmm clone a f1
assert_rc 0 "clone f1"
vmm clone a f2
assert_rc 0 "clone f2"
mac=$("$VMM" get a --format json >/dev/null; grep -o '"macAddress" *: *"[^"]*"' "$VMM_HOME/vms/a/config.json")
assert_eq "$(grep -o '"macAddress" *: *"[^"]*"' "$VMM_HOME/vms/f1/config.json")" "$mac" "forks keep the MAC"
run_bg f1
run_bg f2
vmm ip f1 --wait 10
F1=$OUT
vmm ip f2 --wait 10
F2=$OUT
assert_true "distinct addresses ($F1, $F2)" test "$F1" != "$F2"
p1=$(http_wait "$F1" 60)
p2=$(http_wait "$F2" 60)
assert_eq "$p1" "$boot" "fork 1 answers with the suspended guest's boot id"
assert_eq "$p2" "$boot" "fork 2 too"
assert_eq "$(grep -c 'Resetting VM' "$T_TMP/f2.err")" 0 "no MAC reset, no cold boot"
assert_true "both keep their state: no second boot" test "$(count f1 'VMMTEST BOOT')$(count f2 'VMMTEST BOOT')" = 00
for v in f1 f2 b; do
	vmm stop "$v" --timeout 5
	run_wait "$v" 30
done

echo "SIGKILL of vmm run: nothing left, the next run works"
run_bg a
vmm ip a --wait 10
http_wait "$OUT" 60 >/dev/null || fail "a runs again"
kill -KILL "${RUN_PID[a]}"
run_wait a 10
nothing_left "after SIGKILL"
assert_eq "$(qemu_here a)" "" "QEMU died with vmm run"
run_bg a
vmm ip a --wait 10
assert_rc 0 "the next run gets an address"
http_wait "$OUT" 120 >/dev/null && ok "and is reachable" || fail "reachable after the SIGKILL"
vmm stop a --timeout 5
run_wait a 30
assert_eq "$RUN_RC" 0 "stop"
nothing_left "after stop"

echo "eight VMs at once"
addrs=()
for i in 1 2 3 4 5 6 7 8; do
	net_create "m$i" || fail "create m$i"
	"$VMM" set "m$i" --memory 128 >/dev/null
	run_bg "m$i"
done
for i in 1 2 3 4 5 6 7 8; do
	vmm ip "m$i" --wait 20
	addrs+=("$OUT")
done
assert_eq "$(printf '%s\n' "${addrs[@]}" | sort -u | wc -l)" 8 "eight distinct addresses"
reached=0
for i in 1 2 3 4 5 6 7 8; do
	page=$(http_wait "${addrs[$((i - 1))]}" 300) && [ -n "$page" ] && reached=$((reached + 1))
done
assert_eq "$reached" 8 "each answers HTTP at its address"
for i in 1 2 3 4 5 6 7 8; do "$VMM" stop "m$i" --timeout 2 >/dev/null 2>&1 & done
wait_all=0
for i in 1 2 3 4 5 6 7 8; do run_wait "m$i" 60; [ "$RUN_RC" = 0 ] || wait_all=1; done
assert_eq "$wait_all" 0 "all stop"
nothing_left "after eight"

echo "Tart's softnet flags"
net_create s
run_bg s --net-softnet
vmm ip s --wait 10
S=$OUT
http_wait "$S" >/dev/null || fail "softnet guest reachable from the host"
out=$(guest_sh "$S" 'timeout 8 wget -q -O - http://198.51.100.2:8000/ 2>&1 || echo blocked')
assert_contains "$out" "blocked" "--net-softnet: a non-global destination is blocked"
vmm stop s --timeout 5
run_wait s 30
run_bg s --net-softnet-allow 198.51.100.0/24
vmm ip s --wait 10
S=$OUT
http_wait "$S" >/dev/null || fail "softnet-allow guest reachable"
out=$(guest_sh "$S" 'timeout 15 wget -q -O - http://198.51.100.2:8000/ 2>&1 || echo blocked')
assert_eq "$out" "outside says hello" "--net-softnet-allow opens that CIDR"
vmm stop s --timeout 5
run_wait s 30
port=$(reg_free_port)
run_bg s --net-softnet-allow 198.51.100.0/24 --net-softnet-block 198.51.100.2/32 --net-softnet-expose "$port:80"
vmm ip s --wait 10
S=$OUT
http_wait "$S" >/dev/null || fail "softnet-block guest reachable"
out=$(guest_sh "$S" 'timeout 8 wget -q -O - http://198.51.100.2:8000/ 2>&1 || echo blocked')
assert_contains "$out" "blocked" "--net-softnet-block wins over --net-softnet-allow"
assert_match "$(curl -s -m 10 "http://127.0.0.1:$port/")" '^vmmtest ' "--net-softnet-expose $port:80 forwards a host port"
vmm stop s --timeout 5
run_wait s 30
run_bg s --net-host
vmm ip s --wait 10
S=$OUT
http_wait "$S" >/dev/null || fail "--net-host guest reachable"
out=$(guest_sh "$S" 'timeout 8 wget -q -O - http://198.51.100.2:8000/ 2>&1 || echo blocked')
assert_contains "$out" "blocked" "--net-host: nothing but the host"
vmm stop s --timeout 5
run_wait s 30

echo "--publish on the default network"
port=$(reg_free_port)
run_bg s --publish "127.0.0.1:$port:80"
vmm ip s --wait 10
http_wait "$OUT" >/dev/null || fail "published guest reachable"
assert_match "$(curl -s -m 10 "http://127.0.0.1:$port/")" '^vmmtest ' "--publish 127.0.0.1:$port:80"
vmm stop s --timeout 5
run_wait s 30
nothing_left "after the softnet runs"

echo "an ordinary user without cap_net_admin: user-mode network, said so"
chmod 755 "$T_TMP"
U_HOME=$T_TMP/uhome
mkdir -p "$U_HOME"
chmod 777 "$U_HOME"
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups env VMM_HOME="$U_HOME" "$@"; }
as_nobody "$VMM" create u --kernel "$guest_dir/vmlinuz" --initramfs "$guest_dir/initramfs.img" \
	--cmdline "$NET_CMDLINE" --disk-size 1 >/dev/null
as_nobody "$VMM" set u --memory 192 --cpu 1 >/dev/null
port=$(reg_free_port)
as_nobody "$VMM" run u --publish "127.0.0.1:$port:80" </dev/null >"$T_TMP/u.console" 2>"$T_TMP/u.err" &
RUN_PID[u]=$!
t_defer "run_kill u"
upage=""
for _ in $(seq 1 240); do
	upage=$(curl -s -m 2 "http://127.0.0.1:$port/") && [ -n "$upage" ] && break
	sleep 1
done
assert_match "$upage" '^vmmtest ' "the guest answers through --publish 127.0.0.1:$port:80"
assert_contains "$(cat "$T_TMP/u.err")" "without CAP_NET_ADMIN" "vmm run says why it is on the user-mode network"
assert_eq "$(grep -c "without CAP_NET_ADMIN" "$T_TMP/u.err")" 1 "in one line"
VMM_HOME=$U_HOME vmm ip u
assert_rc 1 "vmm ip cannot answer"
assert_contains "$ERR" "user-mode network" "and says why"
assert_contains "$ERR" "--publish" "suggesting --publish"
assert_eq "$(host_links)" "" "nothing was added to the host"
as_nobody "$VMM" suspend u
assert_eq "$?" 0 "suspend on the user-mode network"
run_wait u 60

echo "a state saved on the user-mode network resumes there, and says so"
# QEMU's user-mode NAT saves a section of its own in the state: only it can load it
cp -a "$U_HOME/vms/u" "$VMM_HOME/vms/u"
chown -R root:root "$VMM_HOME/vms/u"
port=$(reg_free_port)
run_bg u --publish "127.0.0.1:$port:80"
page=""
for _ in $(seq 1 120); do
	page=$(curl -s -m 2 "http://127.0.0.1:$port/") && [ -n "$page" ] && break
	sleep 0.5
done
assert_eq "$page" "$upage" "root resumes it with the memory it was suspended with"
assert_eq "$(count u "VMMTEST BOOT")" 1 "no second boot"
assert_contains "$(cat "$T_TMP/u.err")" "saved on the user-mode network" "and says where it runs"
vmm ip u
assert_rc 1 "vmm ip cannot answer there"
assert_contains "$ERR" "user-mode network" "and says why"
vmm suspend u
run_wait u 60
vmm run u --net-bridged vmmto
assert_rc 1 "--net-bridged refuses such a state"
assert_contains "$ERR" "resumes only there" "saying why"
assert_eq "$(state_of u)" suspended "and keeps it"
vmm stop u
assert_rc 0 "stop discards it"

echo "an ordinary user with cap_net_admin (make install): the default network"
if command -v setcap >/dev/null; then
	cp "$VMM" "$T_TMP/capvmm"
	chmod 755 "$T_TMP/capvmm"
	setcap cap_net_admin+ep "$T_TMP/capvmm"
	# this machine's /dev/net/tun may be root's alone; Debian's is 0666: make it so in
	# a mount namespace of this test only
	mknod "$T_TMP/tun" c 10 200
	chmod 666 "$T_TMP/tun"
	rm -rf "$U_HOME/vms/u/state.vmmsave"
	unshare --mount sh -c "mount --bind '$T_TMP/tun' /dev/net/tun &&
		exec setpriv --reuid=65534 --regid=65534 --clear-groups env VMM_HOME='$U_HOME' \
		'$T_TMP/capvmm' run u" </dev/null >"$T_TMP/c.console" 2>"$T_TMP/c.err" &
	RUN_PID[c]=$!
	t_defer "run_kill c"
	caddr=""
	for _ in $(seq 1 100); do
		caddr=$(as_nobody "$T_TMP/capvmm" ip u 2>/dev/null) && break
		sleep 0.1
	done
	assert_match "$caddr" '^[0-9.]+$' "vmm ip answers ($caddr)"
	cpage=$(http_wait "$caddr" 240)
	assert_match "$cpage" '^vmmtest ' "the host reaches the guest of an ordinary user by address"
	assert_eq "$(grep -c "CAP_NET_ADMIN" "$T_TMP/c.err")" 0 "no fallback notice"
	as_nobody "$T_TMP/capvmm" stop u --timeout 5 >/dev/null
	run_wait c 30
	nothing_left "after the ordinary user's VM"
else
	fail "setcap is missing (make deps installs libcap2-bin)"
fi

echo "DNS: the guest's 10.0.2.3 forwards to the host's resolver"
# The host's resolver is whatever /etc/resolv.conf names; this test gives that
# address to a dnsmasq inside its own namespaces (nothing leaves them).
resolver=$(awk '/^nameserver/ { print $2; exit }' /etc/resolv.conf)
case $resolver in
127.*)
	dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces \
		--listen-address="$resolver" --address=/vmmtest.example/198.51.100.77 \
		--pid-file= --conf-file=/dev/null --user=root >/dev/null 2>&1 &
	t_defer "kill $!" ;;
[0-9]*.*)
	nsenter -t "$OUT_PID" -n ip addr add "$resolver/32" dev vmmti
	ip route add "$resolver/32" via 198.51.100.2
	nsenter -t "$OUT_PID" -n dnsmasq --keep-in-foreground --no-resolv --no-hosts \
		--bind-interfaces --listen-address="$resolver" \
		--address=/vmmtest.example/198.51.100.77 --pid-file= --conf-file=/dev/null \
		--user=root >/dev/null 2>&1 &
	t_defer "kill $!" ;;
*) fail "no IPv4 nameserver in /etc/resolv.conf (\"$resolver\"): DNS forwarding untested" ;;
esac
net_create d
run_bg d
vmm ip d --wait 10
http_wait "$OUT" >/dev/null || fail "the DNS test guest is reachable"
out=$(guest_sh "$OUT" 'timeout 10 nslookup -type=A vmmtest.example 2>&1 | grep -c 198.51.100.77')
assert_eq "$out" "1" "the guest resolves a name through 10.0.2.3 (the host's resolver, $resolver)"
vmm stop d --timeout 5
run_wait d 30
ip route del "$resolver/32" 2>/dev/null

echo "bad input"
vmm run s --net-softnet-allow 10.0.0.0/99
assert_rc 64 "a bad CIDR is a usage error"
assert_contains "$ERR" '"10.0.0.0/99" is not an IPv4 CIDR' "naming it"
vmm run s --net-softnet --net-bridged br0
assert_rc 64 "--net-softnet with --net-bridged"
assert_contains "$ERR" "mutually exclusive" "Tart's text"
vmm run s --net-bridged vmm-no-such0
assert_rc 1 "a missing bridge"
assert_eq "$ERR" 'vmm: run "s": --net-bridged `vmm-no-such0`: no such interface' "one line naming it"
ip route add 10.77.0.0/29 dev vmmto
VMM_NET_POOL=10.77.0.0/29 vmm run s
assert_rc 1 "no free subnet"
assert_contains "$ERR" "no free subnet" "says so"
assert_eq "$(echo "$ERR" | wc -l)" 1 "in one line"
ip route del 10.77.0.0/29 dev vmmto
assert_eq "$(state_of s)" stopped "the VM is untouched"
nothing_left "after the errors"

t_done
