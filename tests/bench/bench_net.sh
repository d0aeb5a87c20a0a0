#!/usr/bin/env bash
# The default network (vm/net.h), inside a network namespace made here:
#  1. setup + teardown of one VM's network: vmm (tests/bench/net_bench.c, the
#     code `vmm run` uses) against the same topology made with iproute2, nft and
#     slirp4netns from a shell script, alternating; then again with eight VMs
#     running.  Teardown is what the caller waits for; the kernel then removes
#     the namespace asynchronously, and "clean" is when the host's end of the
#     VM's network is gone (shown, not part of the target).
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
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "eth0" ip daddr 10.249.0.2 dnat to 10.0.2.15
		iifname "slirp0" dnat to 10.0.2.15
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname { "slirp0", "eth0" } masquerade
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "tap0" ip saddr != 10.0.2.15 drop
		iifname "tap0" oifname "slirp0" accept
		oifname "tap0" ip daddr 10.0.2.15 ct status dnat accept
	}
}
EOF
shell_net() { # prints "setup_ms teardown_ms clean_ms"
	local t0 t1 t2 t3 ns=vmmbench$$ pid
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
	t2=$(now)
	while ip link show vmmbench >/dev/null 2>&1; do sleep 0.001; done
	t3=$(now)
	rm -f "$T_TMP/ready"
	wait $pid 2>/dev/null
	echo "$(ms "$t0" "$t1") $(ms "$t1" "$t2") $(ms "$t1" "$t3")"
}

col() { # n: column n of the lines on stdin, median
	awk -v n="$1" '{print $n}' | median
}

measure() { # label
	local v=() s=() i
	for ((i = 0; i < RUNS; i++)); do
		if ((i % 2)); then
			v+=("$("$bin" 1 | awk '{printf "%.2f %.2f %.2f\n", $1*1000, $2*1000, $3*1000}')") || exit 1
			s+=("$(shell_net)")
		else
			s+=("$(shell_net)")
			v+=("$("$bin" 1 | awk '{printf "%.2f %.2f %.2f\n", $1*1000, $2*1000, $3*1000}')") || exit 1
		fi
	done
	local vl sl
	vl=$(printf '%s\n' "${v[@]}")
	sl=$(printf '%s\n' "${s[@]}")
	local vs vt vc ss st_ sc tot stot ratio verdict
	vs=$(col 1 <<<"$vl") vt=$(col 2 <<<"$vl") vc=$(col 3 <<<"$vl")
	ss=$(col 1 <<<"$sl") st_=$(col 2 <<<"$sl") sc=$(col 3 <<<"$sl")
	tot=$(awk '{print $1 + $2}' <<<"$vl" | median)
	stot=$(awk '{print $1 + $2}' <<<"$sl" | median)
	ratio=$(awk -v a="$tot" -v b="$stot" 'BEGIN { printf "%.2f", a / b }')
	verdict=$(awk -v t="$tot" 'BEGIN { print (t <= 50) ? "met" : "MISSED" }')
	printf '  %-13s vmm: setup %5s + teardown %4s = %5s ms (clean after %5s) | shell: %6s + %5s = %6s ms (clean after %5s) | ratio %s | <= 50 ms %s\n' \
		"$1" "$vs" "$vt" "$tot" "$vc" "$ss" "$st_" "$stot" "$sc" "$ratio" "$verdict"
	[ "$verdict" = met ]
}

rc=0
echo "network setup + teardown, median of $RUNS runs each, alternating"
measure "no other VM" || rc=1

for i in 1 2 3 4 5 6 7 8; do
	guest_create "m$i" 128 "console=ttyS0 quiet vmmtest.net=dhcp" || exit 1
	run_bg "m$i"
done
for i in 1 2 3 4 5 6 7 8; do
	a=$("$VMM" ip "m$i" --wait 30) || exit 1
	# booted and idle, as VMs that run are
	until curl -s -m 2 -o /dev/null "http://$a/"; do sleep 1; done
done
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
