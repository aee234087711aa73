# cases.d/cpe.sh - our CPE's userspace data plane (dataplane/userspace) as
# datapath-bench cases: cpe (AES-128-GCM-16 with Sender-IDs, ESP-in-UDP 4500),
# cpe_cbc (AES-128-CBC + HMAC-SHA2-256-128), cpe_raw (AES-GCM over raw ESP).
# Two peers with a static group SA, run by bench/datapath/cpe-bench.
# Built from the checkout at $MPSA_REPO (default: two levels up) into
# $HERE/bin/cpe-bench unless CPE_BIN is set.

CPE_BIN=${CPE_BIN:-$HERE/bin/cpe-bench}
CPE_PIDS=""

cpe_build() {
  [ -x "$CPE_BIN" ] && return 0
  local repo=${MPSA_REPO:-$HERE/../..}
  [ -f "$repo/go.mod" ] || { log "set MPSA_REPO to the mpsa checkout (or CPE_BIN)"; return 2; }
  log "building cpe-bench from $repo"
  (cd "$repo" && /usr/local/go/bin/go build -o "$CPE_BIN" ./bench/datapath/cpe-bench) || return 2
}

cpe_up() { # cpe_up SUITE [--raw]
  cpe_build || return 2
  start_bg "$NS_A" "$OUT/logs/cpe-a.log" "$CPE_BIN" -tun cpe0 -inner 10.98.3.1/24 -remote 10.98.3.2/32 -peer 10.98.0.2 -suite "$1" -sender-id 1 ${2:-}
  CPE_PIDS=$LAST_PID
  start_bg "$NS_B" "$OUT/logs/cpe-b.log" "$CPE_BIN" -tun cpe0 -inner 10.98.3.2/24 -remote 10.98.3.1/32 -peer 10.98.0.1 -suite "$1" -sender-id 2 ${2:-}
  CPE_PIDS="$CPE_PIDS $LAST_PID"
  wait_for 10 ip netns exec "$NS_A" ip link show cpe0 || return 1
  wait_for 10 ip netns exec "$NS_B" ip link show cpe0 || return 1
  TARGET=10.98.3.2
  BIND=""
  MON_PIDS=$CPE_PIDS
  TUN_A=cpe0
}

case_cpe_up() { cpe_up gcm; }
case_cpe_down() { stop_pids $CPE_PIDS; CPE_PIDS=""; }
case_cpe_cbc_up() { cpe_up cbc; }
case_cpe_cbc_down() { case_cpe_down; }
case_cpe_raw_up() { cpe_up gcm -raw; }
case_cpe_raw_down() { case_cpe_down; }
