#!/bin/sh
# BGP route reflector benchmark: bare GoBGP, our hub and BIRD 2 in the same
# run, alternating, R rounds. Results go to stdout, one line per run.
#
#   bench/bgp/run.sh [N] [K] [R] [variants...]
#
# variants: "gobgp:phased hub:phased bird:phased gobgp:storm hub:storm hub-restarting:storm bird:storm"
set -eu
N=${1:-1000}
K=${2:-4}
R=${3:-1}
shift 3 2>/dev/null || shift $#
VARIANTS=${*:-"gobgp:phased hub:phased bird:phased hub-restarting:storm gobgp:storm"}
cd "$(dirname "$0")/../.."
BIN=$(mktemp -d)
trap 'rm -rf "$BIN"' EXIT
go build -o "$BIN/" ./bench/bgp/cmd/rr-gobgp ./bench/bgp/cmd/rr-hub ./bench/bgp/cmd/bgpbench
echo "# $(date -u +%FT%TZ) N=$N K=$K rounds=$R nproc=$(nproc) load: $(cut -d' ' -f1-3 /proc/loadavg)"
r=0
while [ "$r" -lt "$R" ]; do
	for v in $VARIANTS; do
		rr=${v%%:*}
		mode=${v#*:}
		flag=""
		[ "$mode" = phased ] && flag="-phased"
		"$BIN/bgpbench" -rr "$rr" -bin "$BIN" -n "$N" -k "$K" $flag 2>/dev/null | grep '^rr=' || echo "rr=$rr mode=$mode n=$N k=$K FAILED"
	done
	r=$((r + 1))
done
