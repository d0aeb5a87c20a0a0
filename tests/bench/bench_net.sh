#!/usr/bin/env bash
# The default network (vm/net.h), inside a network namespace made here:
#  1. setup + teardown of one VM's network (until the host's end is gone):
#     vmm (tests/bench/net_bench.c, the code `vmm run` uses) against the same
#     topology made with iproute2, nft and slirp4netns from a shell script,
#     alternating; then again with eight VMs running.
#     Targets: vmm's median setup + teardown <= 50 ms, and still with 8 VMs.
#  2. `vmm run` of the test guest to `vmm ip` answering and to the first TCP
#     connect to the guest's port 22 (medians; the second is the guest's boot).
# Prints medians and ratios; exits 1 if a target is missed.
# Env: VMM, BUILD, BENCH_RUNS (default 21), BENCH_BOOTS (default 3).
set -u
cd "$(dirname "$0")/../.."
if [ "$(id -u)" -ne 0 ]; then echo "SKIP: bench_net needs root"; exit 0; fi
source tests/integration/lib.sh
t_init
# the guest is built (downloaded) before the namespace is entered
. tests/integration/guest_lib.sh
RUNS=${BENCH_RUNS:-21}
BOOTS=${BENCH_BOOTS:-3}
BUILD=${BUILD:-build}
make -s "$BUILD/libvmm.a" >/dev/null || exit 1
bin=$T_TMP/net_bench
cc -std=gnu11 -O2 -D_GNU_SOURCE -I. tests/bench/net_bench.c "$BUILD/libvmm.a" \
	$(pkg-config --libs jansson libzstd liblz4 libmnl) -lpthread -ldl -lm -o "$bin" || exit 1

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.1f", m}'; }
now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", (b - a) * 1000 }'; }

# The baseline: the same namespace, TAP, veth pair, addresses, rules and
# slirp4netns, made and unmade by the usual tools.
RULES=$T_TMP/rules.nft
cat >"$RULES" <<'EOF'
table ip vmm {
	chain prerouting { type nat hook prerouting priority dstnat; policy accept;
		iifname "eth0" ip daddr 10.249.0.2 dnat to 10.0.2.15
		iifname "slirp0" dnat to 10.0.2.15 }
	chain postrouting { type nat hook postrouting priority srcnat; policy accept;
		oifname { "slirp0", "eth0" } masquerade }
	chain forward { type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "tap0" ip saddr != 10.0.2.15 drop
		iifname "tap0" oifname "slirp0" accept
		oifname "tap0" ip daddr 10.0.2.15 ct status dnat accept }
}
EOF
shell_net() { # prints "setup_ms teardown_ms"
	local t0 t1 t2 ns=vmmbench$$ pid
	t0=$(now)
	ip netns add $ns
	ip -n $ns link set lo up
	ip netns exec $ns sysctl -qw net.ipv4.ip_forward=1
	ip -n $ns tuntap add tap0 mode tap
	ip -n $ns link set tap0 address 52:55:0a:00:02:02
	ip -n $ns addr add 10.0.2.2/24 dev tap0
	ip -n $ns link set tap0 up
	ip link add vmmbench type veth peer name eth0 netns $ns
	ip addr add 10.249.0.1/30 dev vmmbench
	ip link set vmmbench up
	ip -n $ns addr add 10.249.0.2/30 dev eth0
	ip -n $ns link set eth0 up
	ip netns exec $ns nft -f "$RULES"
	slirp4netns --configure --mtu=65520 --disable-host-loopback --cidr=10.0.3.0/24 \
		--netns-type=path --ready-fd=9 --enable-sandbox --enable-seccomp \
		/run/netns/$ns slirp0 9>"$T_TMP/ready" >/dev/null 2>&1 &
	pid=$!
	while [ ! -s "$T_TMP/ready" ]; do sleep 0.001; done
	t1=$(now)
	kill -KILL $pid
	ip netns del $ns
	while ip link show vmmbench >/dev/null 2>&1; do sleep 0.001; done
	t2=$(now)
	rm -f "$T_TMP/ready"
	wait $pid 2>/dev/null
	echo "$(ms "$t0" "$t1") $(ms "$t1" "$t2")"
}

measure() { # label
	local v=() s=() vs=() vt=() ss=() st_=() i line
	for ((i = 0; i < RUNS; i++)); do
		if ((i % 2)); then
			line=$("$bin" 1) || exit 1
			v+=("$line")
			s+=("$(shell_net)")
		else
			s+=("$(shell_net)")
			line=$("$bin" 1) || exit 1
			v+=("$line")
		fi
	done
	for line in "${v[@]}"; do
		read -r a b c <<<"$line"
		vs+=("$(awk -v x="$a" 'BEGIN{printf "%.2f", x*1000}')")
		vt+=("$(awk -v x="$c" 'BEGIN{printf "%.2f", x*1000}')")
	done
	for line in "${s[@]}"; do
		read -r a b <<<"$line"
		ss+=("$a")
		st_+=("$b")
	done
	local mvs mvt mss mst tot stot
	mvs=$(printf '%s\n' "${vs[@]}" | median)
	mvt=$(printf '%s\n' "${vt[@]}" | median)
	mss=$(printf '%s\n' "${ss[@]}" | median)
	mst=$(printf '%s\n' "${st_[@]}" | median)
	tot=$(paste -d' ' <(printf '%s\n' "${vs[@]}") <(printf '%s\n' "${vt[@]}") | awk '{print $1+$2}' | median)
	stot=$(paste -d' ' <(printf '%s\n' "${ss[@]}") <(printf '%s\n' "${st_[@]}") | awk '{print $1+$2}' | median)
	local ratio verdict
	ratio=$(awk -v a="$tot" -v b="$stot" 'BEGIN { printf "%.2f", a / b }')
	verdict=$(awk -v t="$tot" 'BEGIN { print (t <= 50) ? "met" : "MISSED" }')
	printf '  %-18s vmm setup %5s ms + teardown %5s ms = %5s ms | shell %5s + %5s = %6s ms | ratio %s | target <= 50 ms %s\n' \
		"$1" "$mvs" "$mvt" "$tot" "$mss" "$mst" "$stot" "$ratio" "$verdict"
	[ "$verdict" = met ]
}

rc=0
echo "network setup + teardown, median of $RUNS runs each, alternating"
measure "no other VM" || rc=1

for i in 1 2 3 4 5 6 7 8; do
	guest_create "m$i" 128 "console=ttyS0 quiet vmmtest.net=dhcp" || exit 1
	run_bg "m$i"
done
for i in 1 2 3 4 5 6 7 8; do "$VMM" ip "m$i" --wait 30 >/dev/null || exit 1; done
measure "8 VMs running" || rc=1
for i in 1 2 3 4 5 6 7 8; do "$VMM" stop "m$i" --timeout 2 >/dev/null 2>&1 & done
wait

echo "vmm run to vmm ip, and to a TCP connect to the guest's port 22 (median of $BOOTS)"
guest_create b 192 "console=ttyS0 quiet vmmtest.net=dhcp" || exit 1
ipt=() sshT=()
for ((i = 0; i < BOOTS; i++)); do
	t0=$(now)
	run_bg b
	addr=""
	until addr=$("$VMM" ip b 2>/dev/null); do sleep 0.005; done
	t1=$(now)
	until timeout 1 bash -c "exec 3<>/dev/tcp/$addr/22" 2>/dev/null; do sleep 0.05; done
	t2=$(now)
	ipt+=("$(ms "$t0" "$t1")")
	sshT+=("$(ms "$t0" "$t2")")
	"$VMM" stop b --timeout 2 >/dev/null
	run_wait b 30
done
printf '  vmm ip answers after %s ms; port 22 accepts after %s ms (TCG boot of the busybox guest)\n' \
	"$(printf '%s\n' "${ipt[@]}" | median)" "$(printf '%s\n' "${sshT[@]}" | median)"
exit $rc
