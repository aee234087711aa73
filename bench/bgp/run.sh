#!/bin/sh
# BGP route reflector benchmark: bare GoBGP, our hub and BIRD 2 in the same
# run, alternating, R rounds. Results go to stdout, one line per run.
#
#   bench/bgp/run.sh [N] [K] [R] [variants...]
#
# variants: "gobgp:phased hub:phased bird:phased gobgp:storm hub:storm hub-restarting:storm bird:storm"
#
# Environment:
#   BGPBENCH_COUNT=1|0   counting load generator (bgpbench -count); default 1 for N > 2000
#   BGPBENCH_TIMEOUT=D   bgpbench -timeout per run; default 15m, 70m for N > 2000
#   BGPBENCH_LOG=FILE    bgpbench's stderr (progress lines every 30 s) appended here; default none
set -eu
N=${1:-1000}
K=${2:-4}
R=${3:-1}
shift 3 2>/dev/null || shift $#
VARIANTS=${*:-"gobgp:phased hub:phased bird:phased hub-restarting:storm gobgp:storm"}
if [ "$N" -gt 2000 ]; then
	COUNT=${BGPBENCH_COUNT:-1}
	TIMEOUT=${BGPBENCH_TIMEOUT:-70m}
else
	COUNT=${BGPBENCH_COUNT:-0}
	TIMEOUT=${BGPBENCH_TIMEOUT:-15m}
fi
LOG=${BGPBENCH_LOG:-/dev/null}
countflag=""
[ "$COUNT" = 1 ] && countflag="-count"
# a socket per CPE on each side, plus the reflector's own
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cd "$(dirname "$0")/../.."
BIN=$(mktemp -d)
trap 'rm -rf "$BIN"' EXIT
go build -o "$BIN/" ./bench/bgp/cmd/rr-gobgp ./bench/bgp/cmd/rr-hub ./bench/bgp/cmd/bgpbench
echo "# $(date -u +%FT%TZ) N=$N K=$K rounds=$R nproc=$(nproc) load: $(cut -d' ' -f1-3 /proc/loadavg) loadgen=$([ "$COUNT" = 1 ] && echo count || echo speaker) timeout=$TIMEOUT nofile=$(ulimit -n)"
r=0
while [ "$r" -lt "$R" ]; do
	for v in $VARIANTS; do
		rr=${v%%:*}
		mode=${v#*:}
		flag=""
		[ "$mode" = phased ] && flag="-phased"
		echo "# $(date -u +%FT%TZ) start $v load: $(cut -d' ' -f1-3 /proc/loadavg)"
		"$BIN/bgpbench" -rr "$rr" -bin "$BIN" -n "$N" -k "$K" -timeout "$TIMEOUT" $flag $countflag 2>>"$LOG" | grep '^rr=' || echo "rr=$rr mode=$mode n=$N k=$K FAILED"
	done
	r=$((r + 1))
done
