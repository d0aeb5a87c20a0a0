# Targets for the benchmarks (tests/bench/bench_*.sh): source it, call
# `target NAME VALUE OP LIMIT` for each, end with `bench_exit`.  Each target
# prints one line that tests/bench/run.sh collects:
#   TARGET <name>  <value>  (target <op> <limit>): met|MISSED
# and bench_exit exits 1 when one was missed.
BENCH_MISSED=0
target() { # name value op limit
	local verdict=met
	if ! awk -v v="$2" -v l="$4" -v op="$3" \
		'BEGIN { exit !((op == "<=" && v + 0 <= l + 0) || (op == ">=" && v + 0 >= l + 0)) }'; then
		verdict=MISSED
		BENCH_MISSED=$((BENCH_MISSED + 1))
	fi
	printf 'TARGET %-58s %10s  (target %s %s): %s\n' "$1" "$2" "$3" "$4" "$verdict"
}
bench_exit() {
	[ "$BENCH_MISSED" -eq 0 ] && exit 0
	echo "$BENCH_MISSED target(s) missed"
	exit 1
}
# median of the numbers on stdin
median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# a / b with 3 decimals
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "nan"; else printf "%.3f", a / b }'; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.4f", b - a }'; }
# The directory must be on a real disk: tmpfs would make every write free.
assert_real_disk() { # dir
	local t
	t=$(stat -f -c %T "$1")
	case $t in tmpfs | ramfs) echo "$1 is on $t: benchmarks must run on a real disk"; exit 1 ;; esac
}
