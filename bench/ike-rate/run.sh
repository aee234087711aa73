#!/bin/bash
# run.sh - IKE responder benchmark of issue 2: strongSwan's load-tester (charon as IKEv2 initiator)
# against, in the same run and alternating run by run, (a) charon as the responder with its SA
# installation faked (--resp-kernel fake) and (b) our responder, cmd/ikerate-responder (package ike
# with PSK, IPv4+IPv6 virtual IPs from a pool, one CHILD_SA per IKE SA, installation discarded).
# Both get the same load (same script, proposals, ids, window, threads); per run the script records
# responder CPU (utime+stime of the responder process) per established SA and setups per second.
#
# Usage: run.sh [options] [-- extra strongswan-loadtest.sh options]
#   --count N       IKE SAs per run (default 5000)
#   --runs R        runs per responder (default 3); medians are reported
#   --ike PROP      IKE proposal of the load-tester (default aes128-sha256-x25519)
#   --esp PROP      ESP proposal (default aes128gcm16)
#   --out FILE      results TSV (default /tmp/ikerate-results.tsv; appended to)
#   --tag TXT       label suffix, to tell sessions apart in --out (default: the proposal)
#   --only WHICH    charon | mpsa: run one responder only
#   --profile FILE  CPU profile of our responder during its last run (go tool pprof)
#   --rcvbuf B      SO_RCVBUF of our responder's sockets (default 0: the system's, as charon)
# Needs root, Debian's strongSwan and the load-tester plugin (strongswan/install.sh builds it) and Go.
# Namespaces ikbr (responder, 192.0.2.1) and ikbi (initiator, 192.0.2.2) are created if missing and
# removed at the end if this script created them; charon instances live in $SSW_LAB_DIR
# (default /tmp/ikerate-lab). Summary: cmd/ikerate-summary (printed at the end).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export SSW_LAB_DIR=${SSW_LAB_DIR:-/tmp/ikerate-lab}
. "$HERE/strongswan/common.sh"

N=5000 RUNS=3 IKE=aes128-sha256-x25519 ESP=aes128gcm16 OUT=/tmp/ikerate-results.tsv TAG="" ONLY="" PROFILE="" RCVBUF=0
RNS=ikbr INS=ikbi RADDR=192.0.2.1
while [ $# -gt 0 ]; do
	case "$1" in
		--count) N=$2; shift ;;
		--runs) RUNS=$2; shift ;;
		--ike) IKE=$2; shift ;;
		--esp) ESP=$2; shift ;;
		--out) OUT=$2; shift ;;
		--tag) TAG=$2; shift ;;
		--only) ONLY=$2; shift ;;
		--profile) PROFILE=$2; shift ;;
		--rcvbuf) RCVBUF=$2; shift ;;
		--) shift; break ;;
		-h|--help) sed -n '2,22p' "$0"; exit 0 ;;
		*) ssw_die "unknown option $1 (see --help)" ;;
	esac
	shift
done
EXTRA=("$@")
# strongswan-loadtest.sh --pin puts charon's responder on CPU 0 and the load-tester on CPU 1: ours too
PINRESP=""
for a in "${EXTRA[@]}"; do [ "$a" = --pin ] && PINRESP="taskset -c 0"; done
TAG=${TAG:-$IKE}
[ "$(id -u)" = 0 ] || ssw_die "needs root (network namespaces)"
[ -f /usr/lib/ipsec/plugins/libstrongswan-load-tester.so ] || "$HERE/strongswan/install.sh"

WORK=$(mktemp -d /tmp/ikerate.XXXXXX)
CREATED=0 RPID=""
cleanup() {
	if [ -n "$RPID" ] && kill -0 "$RPID" 2>/dev/null; then kill -TERM "$RPID"; wait "$RPID" 2>/dev/null || true; fi
	[ "$CREATED" = 1 ] && "$HERE/strongswan/lab.sh" down "$RNS" "$INS" > /dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT

(cd "$ROOT" && go build -o "$WORK/" ./bench/ike-rate/cmd/ikerate-responder ./bench/ike-rate/cmd/ikerate-summary)
if ! ip netns list | awk '{print $1}' | grep -qx "$RNS"; then
	"$HERE/strongswan/lab.sh" up "$RNS" "$INS" > /dev/null
	CREATED=1
fi

LT=("$HERE/strongswan-loadtest.sh" --count "$N" --runs 1 --ike "$IKE" --esp "$ESP" --out "$OUT"
	--init-netns "$INS" --resp-netns "$RNS" --resp-addr "$RADDR" "${EXTRA[@]}")

run_charon() {
	"${LT[@]}" --resp-kernel fake --resp-ike "$IKE" --label "charon-fake $TAG" | grep '^run'
}

run_mpsa() { # $1 = profile file or ""
	local prof=() log="$WORK/responder.log"
	[ -n "$1" ] && prof=(-cpuprofile "$1")
	$PINRESP ip netns exec "$RNS" "$WORK/ikerate-responder" -listen "$RADDR" -ike "$IKE" -esp "$ESP" \
		-rcvbuf "$RCVBUF" "${prof[@]}" > "$log" 2>&1 &
	RPID=$!
	local i
	for i in $(seq 1 100); do grep -q '^ready' "$log" && break; sleep 0.1; done
	grep -q '^ready' "$log" || { cat "$log"; ssw_die "ikerate-responder did not start"; }
	"${LT[@]}" --target "$RADDR" --target-pid "$RPID" --label "mpsa $TAG" | grep '^run'
	kill -TERM "$RPID"
	wait "$RPID" || true
	RPID=""
	grep -E '^(counts|stats|rusage)' "$log" | sed 's/^/    /'
	grep -vE '^(ready|counts|stats|rusage)' "$log" | head -5 || true
}

echo "# ike-rate: N=$N runs=$RUNS ike=$IKE esp=$ESP out=$OUT load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$RUNS"); do
	if [ "$ONLY" != mpsa ]; then echo "charon-fake round $r:"; run_charon; fi
	if [ "$ONLY" != charon ]; then
		p=""; [ "$r" = "$RUNS" ] && p=$PROFILE
		echo "mpsa round $r:"; run_mpsa "$p"
	fi
done
"$WORK/ikerate-summary" -anchor "charon-fake $TAG" -subject "mpsa $TAG" -last $((RUNS)) "$OUT"
