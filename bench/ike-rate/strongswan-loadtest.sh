#!/bin/bash
# strongswan-loadtest.sh - IKE_SA setup-rate anchor: strongSwan's load-tester plugin (charon
# 5.9.8, as IKEv2 INITIATOR) against a responder: by default a strongSwan charon responder
# (swanctl, PSK) in another netns; with --target ADDR any other responder (e.g. OUR hub).
#
# Usage: strongswan-loadtest.sh [options]
#   --count N         IKE_SAs per run (default 5000)
#   --runs R          repetitions (default 3); prints min/median/max
#   --ike PROP        IKE proposal the load tester offers (ONE proposal, default aes128-sha256-x25519;
#                     e.g. aes128-sha256-ecp256, aes128gcm16-prfsha256-x25519)
#   --esp PROP        ESP proposal (default aes128gcm16)
#   --threads T       load-tester initiator threads (default 4)
#   --window W        init_limit: max half-open IKE_SAs in flight (default 32, 0 = open loop)
#   --delay MS        per-thread pause after each initiation / while window full (default 1;
#                     must be >0 when --window is used, else the plugin busy-loops)
#   --no-vip          do not request virtual IPs (then TSi = --tsi, default 10.99.2.0/24)
#   --tsi TS / --tsr TS   TSi (only with --no-vip) / TSr proposed (default TSr 10.99.1.0/24)
#   --psk KEY         pre-shared key (default loadtest-psk-0123456789)
#   --initiator-id P  IDi printf pattern, %d = client number, %d = auth round
#                     (default c%d-r%d.strongswan.org -> c1-r1.strongswan.org, c2-r1..., FQDN)
#   --responder-id ID IDr the initiators require + send (default srv.strongswan.org)
#   --resp-match ID   remote id the strongSwan responder accepts (default *.strongswan.org)
#   --resp-kernel M   strongSwan responder's kernel iface: libipsec (default, userspace ESP,
#                     real SA install + per-SA route) | fake (IKE only, no SA install)
#   --resp-ike LIST   proposals the strongSwan responder accepts
#                     (default aes128-sha256-x25519,aes128-sha256-ecp256,aes128gcm16-prfsha256-x25519,aes256-sha256-x25519)
#   --pin             responder on CPU 0, load tester on CPU 1 (taskset); default: float on both
#   --delete          delete each IKE_SA right after it is established (adds INFORMATIONAL load)
#   --target ADDR     EXTERNAL responder: start no strongSwan responder, initiate to ADDR
#   --target-pid PID  pid of the external responder, for CPU accounting (optional)
#   --init-netns NS / --resp-netns NS   (default sswi / sswr; created with lab.sh if missing)
#   --init-addr A / --resp-addr A       (default 192.0.2.2 / 192.0.2.1)
#   --stall S         abort a run after S seconds without a new established IKE_SA (default 30)
#   --log L           initiator/responder charon log level (default 0: only the per-SA lines)
#   --out FILE        append one TSV line per run (default: ./results.tsv next to this script)
#   --label TXT       free text stored in the TSV
#   --wait-quiet S    before each run wait up to S s until other processes use <= --quiet-pct
#                     (default 25) % of the machine (shared dev VM: other benchmarks run too)
# Rate = established IKE_SAs (initiator log "IKE_SA load-test[n] established", i.e. after the
# IKE_AUTH response incl. CHILD_SA) / (last established - first "initiating IKE_SA") timestamps.
# CPU = utime+stime deltas from /proc/PID/stat (initiator minus its measured startup cost).
# Also reported: per-SA latency percentiles, UDP RcvbufErrors in both netns (drops -> 4 s
# retransmits), and the CPU share used by OTHER processes during the run.
# Example (our hub at 192.0.2.1 in netns sswr, accepting PSK 'loadtest-psk-0123456789',
#          IDi *.strongswan.org, presenting IDr srv.strongswan.org, pool for CP requests):
#   ./strongswan-loadtest.sh --target 192.0.2.1 --target-pid $(pidof hub) --count 2000
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SSWDIR=${SSWDIR:-$HERE/strongswan}
. "$SSWDIR/common.sh"

N=5000 RUNS=3 IKE=aes128-sha256-x25519 ESP=aes128gcm16 THREADS=4 WINDOW=32 DELAY=1
VIP=1 TSI=10.99.2.0/24 TSR=10.99.1.0/24 PSK=loadtest-psk-0123456789
IDI='c%d-r%d.strongswan.org' IDR=srv.strongswan.org MATCH='*.strongswan.org'
RKERNEL=libipsec RIKE=aes128-sha256-x25519,aes128-sha256-ecp256,aes128gcm16-prfsha256-x25519,aes256-sha256-x25519
PIN=0 DEL=0 TARGET="" TPID="" INS=sswi RNS=sswr IADDR=192.0.2.2 RADDR=192.0.2.1 STALL=30 LOG=0
OUT=${OUT:-/tmp/ike-rate-results.tsv} LABEL="" WAITQ=0 QUIET_PCT=25
while [ $# -gt 0 ]; do
	case "$1" in
		--count) N=$2; shift ;;
		--runs) RUNS=$2; shift ;;
		--ike) IKE=$2; shift ;;
		--esp) ESP=$2; shift ;;
		--threads) THREADS=$2; shift ;;
		--window) WINDOW=$2; shift ;;
		--delay) DELAY=$2; shift ;;
		--no-vip) VIP=0 ;;
		--tsi) TSI=$2; shift ;;
		--tsr) TSR=$2; shift ;;
		--psk) PSK=$2; shift ;;
		--initiator-id) IDI=$2; shift ;;
		--responder-id) IDR=$2; shift ;;
		--resp-match) MATCH=$2; shift ;;
		--resp-kernel) RKERNEL=$2; shift ;;
		--resp-ike) RIKE=$2; shift ;;
		--pin) PIN=1 ;;
		--delete) DEL=1 ;;
		--target) TARGET=$2; RADDR=$2; shift ;;
		--target-pid) TPID=$2; shift ;;
		--init-netns) INS=$2; shift ;;
		--resp-netns) RNS=$2; shift ;;
		--init-addr) IADDR=$2; shift ;;
		--resp-addr) RADDR=$2; shift ;;
		--stall) STALL=$2; shift ;;
		--log) LOG=$2; shift ;;
		--out) OUT=$2; shift ;;
		--label) LABEL=$2; shift ;;
		--wait-quiet) WAITQ=$2; shift ;;
		--quiet-pct) QUIET_PCT=$2; shift ;;
		-h|--help) sed -n '2,48p' "$0"; exit 0 ;;
		*) ssw_die "unknown option $1 (see --help)" ;;
	esac
	shift
done
[ "$WINDOW" != 0 ] && [ "$DELAY" = 0 ] && ssw_die "--window needs --delay >= 1 (load-tester busy-waits otherwise)"
[ -f /usr/lib/ipsec/plugins/libstrongswan-load-tester.so ] || "$SSWDIR/install.sh"
ITER=$(( (N + THREADS - 1) / THREADS )); N=$(( ITER * THREADS ))

# lab: create the default namespaces if they are missing
if ! ip netns list | awk '{print $1}' | grep -qx "$INS"; then
	[ -z "$TARGET" ] || ssw_die "netns $INS missing"
	"$SSWDIR/lab.sh" up "$RNS" "$INS"
fi

RNAME=ltresp INAME=ltinit
RCPUS="" ICPUS=""
[ "$PIN" = 1 ] && RCPUS=0 ICPUS=1

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# run-queue wait of all threads of a process, ns (/proc/PID/task/*/schedstat field 2): time the
# process was runnable but other processes had the CPU (the machine is shared)
sched_wait() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s+=$2} END{printf "%.0f\n", s}'; }
nthreads() { awk '/^Threads/{print $2}' /proc/"$1"/status 2>/dev/null || echo 0; }
TCK=$(getconf CLK_TCK)

write_init_conf() { # $1 = initiators (0 = idle, for calibration)
	local d; d=$(ssw_dir "$INAME")
	mkdir -p "$d/run" "$d/swanctl"
	local vipl="request_virtual_ip = no
			initiator_tsi = $TSI"
	[ "$VIP" = 1 ] && vipl="request_virtual_ip = yes"
	cat > "$d/lt.conf" <<EOF
	# load-tester initiator (strongswan-loadtest.sh)
	reuse_ikesa = no
	dos_protection = no
	ikesa_table_size = 32768
	ikesa_table_segments = 16
	install_virtual_ip = no
	install_routes = no
	plugins {
		load-tester {
			load = yes
			enable = yes
			fake_kernel = yes
			initiators = $1
			iterations = $ITER
			delay = $DELAY
			init_limit = $WINDOW
			initiator = $IADDR
			responder = $RADDR
			proposal = $IKE
			esp = $ESP
			initiator_auth = psk
			responder_auth = psk
			preshared_key = $PSK
			initiator_id = $IDI
			responder_id = $IDR
			$vipl
			initiator_tsr = $TSR
			ike_rekey = 0
			child_rekey = 0
			delete_after_established = $( [ "$DEL" = 1 ] && echo yes || echo no )
			shutdown_when_complete = no
			socket = unix://$d/charon.ldt
		}
	}
EOF
	ssw_write_strongswan_conf "$INAME" netlink "$LOG" "$d/lt.conf"
	echo "connections {}" > "$d/swanctl/swanctl.conf"
}

start_resp() {
	[ -n "$TARGET" ] && return 0
	local pool=() rts=dynamic
	# both families, as the load-tester asks for INTERNAL_IP4_ADDRESS and INTERNAL_IP6_ADDRESS
	[ "$VIP" = 1 ] && pool=(--pool 10.99.128.0/17,fd99::/108) || rts=$TSI
	SSW_CPUS=$RCPUS "$SSWDIR/responder.sh" --name "$RNAME" --netns "$RNS" --local "$RADDR" \
		--psk "$PSK" --local-id "$IDR" --remote-id "$MATCH" --ike "$RIKE" --esp "$ESP" \
		--local-ts "$TSR" --remote-ts "$rts" "${pool[@]}" --kernel "$RKERNEL" --log "$LOG" --tune \
		$( [ -n "$RCPUS" ] && echo "--cpus $RCPUS" ) > /dev/null
}

stop_all() {
	ssw_stop "$INAME" > /dev/null 2>&1 || true
	[ -n "$TARGET" ] || ssw_stop "$RNAME" > /dev/null 2>&1 || true
}
trap stop_all EXIT

# calibration: CPU an idle load-tester charon needs to start (subtracted below)
stop_all
write_init_conf 0
SSW_CPUS=$ICPUS ssw_start "$INAME" "$INS" > /dev/null
sleep 0.5
IBASE=$(cpu_ticks "$(ssw_pid "$INAME")")
ssw_stop "$INAME" > /dev/null

CPU_MODEL=$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)
echo "# strongSwan $(/usr/lib/ipsec/charon --version 2>/dev/null | awk '{print $NF}') load test: N=$N ike=$IKE esp=$ESP threads=$THREADS window=$WINDOW delay=${DELAY}ms vip=$VIP pin=$PIN delete=$DEL target=${TARGET:-strongswan($RKERNEL)}"
echo "# cpu: $CPU_MODEL x $(nproc); initiator startup cost subtracted: $(awk -v t="$IBASE" -v h="$TCK" 'BEGIN{printf "%.2f", t/h}')s"
[ -f "$OUT" ] || printf "date\tlabel\ttarget\tresp_kernel\tike\tesp\tN\testablished\tresp_established\tseconds\trate_per_s\tresp_cpu_s\tinit_cpu_s\tresp_cpu_ms_per_sa\tinit_cpu_ms_per_sa\tlat_p50_ms\tlat_p90_ms\tlat_max_ms\tudp_drops_resp\tudp_drops_init\tother_load_pct\tthreads\twindow\tdelay\tvip\tpin\tdelete\tresp_wait_ms_per_sa\tresp_threads\tresp_rss0_kib\tresp_rss1_kib\n" > "$OUT"

# machine-wide busy ticks (all CPUs) from /proc/stat
busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
udp_drops() { ip netns exec "$1" cat /proc/net/snmp 2>/dev/null | awk '/^Udp:/{ if (!h) {for(i=1;i<=NF;i++) c[$i]=i; h=1} else print $(c["RcvbufErrors"]) }'; }
# wait (bounded) until other processes use less than QUIET_PCT % of the machine
wait_quiet() {
	[ "$WAITQ" -gt 0 ] || return 0
	local t=0 b0 b1
	while [ "$t" -lt "$WAITQ" ]; do
		b0=$(busy_ticks); sleep 2; b1=$(busy_ticks); t=$((t + 2))
		local pct=$(( (b1 - b0) * 100 / (2 * TCK * $(nproc)) ))
		[ "$pct" -le "$QUIET_PCT" ] && return 0
		echo "  (machine busy ${pct}% from other processes, waiting ...)" >&2
	done
}

RATES=()
for run in $(seq 1 "$RUNS"); do
	stop_all
	wait_quiet
	start_resp
	RPID=$TPID
	[ -z "$TARGET" ] && RPID=$(ssw_pid "$RNAME")
	R0=0; [ -n "$RPID" ] && R0=$(cpu_ticks "$RPID")
	RW0=0; [ -n "$RPID" ] && RW0=$(sched_wait "$RPID")
	RSS0=$(awk '/^VmRSS/{print $2}' /proc/"$RPID"/status 2>/dev/null || echo 0)
	write_init_conf "$THREADS"
	DR0=$(udp_drops "$RNS" || true); DI0=$(udp_drops "$INS")
	B0=$(busy_ticks)
	W0=$(date +%s.%N)
	SSW_CPUS=$ICPUS ssw_start "$INAME" "$INS" > /dev/null
	IPID=$(ssw_pid "$INAME")
	ILOG=$(ssw_dir "$INAME")/charon.log
	last=-1 since=$(date +%s)
	while :; do
		n=$(grep -c '\] established between' "$ILOG" || true)
		[ "$n" -ge "$N" ] && break
		if [ "$n" != "$last" ]; then last=$n since=$(date +%s); fi
		if [ $(( $(date +%s) - since )) -ge "$STALL" ]; then echo "run $run: stalled at $n/$N established" >&2; break; fi
		sleep 0.2
	done
	W1=$(date +%s.%N)
	B1=$(busy_ticks)
	R1=0; [ -n "$RPID" ] && R1=$(cpu_ticks "$RPID")
	RW1=0; [ -n "$RPID" ] && RW1=$(sched_wait "$RPID")
	RTH=0; [ -n "$RPID" ] && RTH=$(nthreads "$RPID")
	RSS1=$(awk '/^VmRSS/{print $2}' /proc/"$RPID"/status 2>/dev/null || echo 0)
	I1=$(cpu_ticks "$IPID")
	DR1=$(udp_drops "$RNS" || true); DI1=$(udp_drops "$INS")
	ddr=$(( ${DR1:-0} - ${DR0:-0} )); ddi=$(( ${DI1:-0} - ${DI0:-0} ))
	resp_est=""
	[ -z "$TARGET" ] && resp_est=$(grep -c '\] established between' "$(ssw_dir "$RNAME")/charon.log" || true)
	read -r t0 t1 nest < <(awk '/initiating IKE_SA/ && !t0 {t0=$1} /\] established between/ {t1=$1; n++} END{printf "%s %s %d\n", (t0?t0:0), (t1?t1:0), n+0}' "$ILOG")
	# per-IKE_SA latency: "initiating IKE_SA load-test[k]" -> "IKE_SA load-test[k] established"
	read -r p50 p90 pmax < <(awk '
		match($0, /load-test\[[0-9]+\]/) { id=substr($0, RSTART, RLENGTH) }
		/initiating IKE_SA/ { s[id]=$1 }
		/\] established between/ { if (id in s) printf "%.1f\n", 1000*($1-s[id]) }' "$ILOG" | sort -n |
		awk '{a[NR]=$1} END{ k=int(NR*0.9); if (k<1) k=1; if (NR) printf "%s %s %s\n", a[int((NR+1)/2)], a[k], a[NR]; else print "0 0 0" }')
	line=$(awk -v t0="$t0" -v t1="$t1" -v n="$nest" -v r0="$R0" -v r1="$R1" -v i1="$I1" -v ib="$IBASE" -v h="$TCK" \
		-v b0="$B0" -v b1="$B1" -v cpus="$(nproc)" -v want="$N" -v wall="$(awk -v a="$W0" -v b="$W1" 'BEGIN{print b-a}')" 'BEGIN{
		d=t1-t0; if (n<=0 || d<=0) { d=wall; n=0 }
		dc=d; if (n < want) dc=wall;   # stalled run: CPU share over the whole wall time
		rc=(r1-r0)/h; ic=(i1-ib)/h;
		other=((b1-b0)/h - rc - (i1-ib)/h) / wall * 100 / cpus; if (other<0) other=0; if (other>100) other=100;
		printf "%.3f %.0f %.2f %.2f %.3f %.3f %.0f %.0f %.0f", d, n/d, rc, ic, (n>0? rc*1000/n : 0), (n>0? ic*1000/n : 0), 100*rc/dc, 100*ic/dc, other }')
	[ -n "${LT_DEBUG:-}" ] && echo "debug: B0=$B0 B1=$B1 W0=$W0 W1=$W1 R0=$R0 R1=$R1 I1=$I1 IB=$IBASE" >&2
	read -r secs rate rcpu icpu rms ims rpct ipct other <<< "$line"
	RATES+=("$rate")
	rwait=$(awk -v a="$RW0" -v b="$RW1" -v n="$nest" 'BEGIN{printf "%.3f", (n>0? (b-a)/1e6/n : 0)}')
	echo "run $run: established $nest/$N${resp_est:+ (responder: $resp_est)} in ${secs}s = $rate IKE_SA/s | CPU responder ${rcpu}s (${rpct}% of 1 core, ${rms} ms/SA), initiator ${icpu}s (${ipct}%, ${ims} ms/SA) | latency p50 ${p50} p90 ${p90} max ${pmax} ms | UDP rcvbuf drops resp ${ddr} init ${ddi} | other load ${other}% of machine | responder RSS ${RSS0:-0} -> ${RSS1:-0} KiB, ${RTH} threads, run-queue wait ${rwait} ms/SA"
	printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" \
		"$(date -Is)" "$LABEL" "${TARGET:-strongswan}" "$([ -z "$TARGET" ] && echo "$RKERNEL" || echo ext)" "$IKE" "$ESP" "$N" "$nest" "$resp_est" \
		"$secs" "$rate" "$rcpu" "$icpu" "$rms" "$ims" "$p50" "$p90" "$pmax" "$ddr" "$ddi" "$other" "$THREADS" "$WINDOW" "$DELAY" "$VIP" "$PIN" "$DEL" "$rwait" "$RTH" "${RSS0:-0}" "${RSS1:-0}" >> "$OUT"
done
stop_all
printf '%s\n' "${RATES[@]}" | sort -n | awk '{a[NR]=$1} END{ m=(NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; printf "SUMMARY rate IKE_SA/s: min %d median %d max %d (runs %d)\n", a[1], m, a[NR], NR}'
