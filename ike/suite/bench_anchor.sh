#!/bin/bash
# bench_anchor.sh - ike/suite benchmarks next to OpenSSL, measured in one run.
#
# OpenSSL is the anchor: strongSwan's openssl plugin does its Diffie-Hellman
# and IKE encryption with it. Compared per operation:
#   DH shared secret   BenchmarkDHShared/G          vs  openssl speed ecdhp256|ecdhp384|ecdhx25519|ffdh2048
#   SK protection      BenchmarkSK{Seal,Open}/SUITE  vs  openssl speed -evp CIPHER (+ -evp sha256 for CBC/HMAC)
#                      (1 KiB of inner payloads)
# Usage: ike/suite/bench_anchor.sh [go benchtime, default 1s] [openssl seconds, default 1] [rounds, default 3]
# Go and OpenSSL alternate ROUNDS times (so both see the same machine load;
# openssl runs with -elapsed so both count wall-clock time);
# prints a Markdown table of medians: Go ns/op, OpenSSL ns/op, ratio Go/OpenSSL
# (the median of the per-round ratios).
set -euo pipefail
cd "$(dirname "$0")/../.."
BT=${1:-1s}
OS=${2:-1}
ROUNDS=${3:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

go test -c -o "$tmp/suite.test" ./ike/suite
for r in $(seq 1 "$ROUNDS"); do
	mkdir "$tmp/$r"
	(cd ike/suite && "$tmp/suite.test" -test.run '^$' -test.benchtime "$BT" \
		-test.bench 'BenchmarkDHShared|BenchmarkSK(Seal|Open)/(AES_GCM_16_128|AES_GCM_16_256|CHACHA20|AES_CBC_256)') > "$tmp/$r/go.txt"
	openssl speed -elapsed -seconds "$OS" ecdhp256 ecdhp384 ecdhx25519 ffdh2048 > "$tmp/$r/dh.txt" 2>/dev/null
	for c in aes-128-gcm aes-256-gcm chacha20-poly1305 aes-256-cbc sha256; do
		openssl speed -elapsed -seconds "$OS" -bytes 1024 -evp "$c" 2>/dev/null | tail -1
	done > "$tmp/$r/sym.txt"
done

python3 - "$tmp" "$ROUNDS" <<'EOF'
import re, statistics, sys
def parse(d):
  go = {}
  for line in open(d + "/go.txt"):
      m = re.match(r"Benchmark(\S+?)-\d+\s+\d+\s+([\d.]+) ns/op", line)
      if m:
          go[m.group(1)] = float(m.group(2))
  ossl = {}
  for line in open(d + "/dh.txt"):
      m = re.search(r"bits (?:ecdh \((\w+)\)|(ffdh))\s+[\d.]+s\s+([\d.]+)", line)
      if m:
          ossl[(m.group(1) or m.group(2)).lower()] = 1e9 / float(m.group(3))
  for line in open(d + "/sym.txt"):
      f = line.split()
      ossl[f[0].lower()] = 1024 / (float(f[1].rstrip("k")) * 1000) * 1e9   # ns per 1 KiB
  rows = [
      ("DH CURVE_25519 shared secret", "DHShared/CURVE_25519", ossl.get("x25519")),
      ("DH ECP_256 shared secret", "DHShared/ECP_256", ossl.get("nistp256")),
      ("DH ECP_384 shared secret", "DHShared/ECP_384", ossl.get("nistp384")),
      ("DH MODP_2048 shared secret", "DHShared/MODP_2048", ossl.get("ffdh")),
  ]
  sk = [
      ("AES_GCM_16_128", "aes-128-gcm", None),
      ("AES_GCM_16_256", "aes-256-gcm", None),
      ("CHACHA20_POLY1305", "chacha20-poly1305", None),
      ("AES_CBC_256/HMAC_SHA2_256_128", "aes-256-cbc", "sha256"),
  ]
  for name, c, h in sk:
      anchor = ossl.get(c)
      if anchor is not None and h:
          anchor += ossl.get(h, 0)
      for op in ("Seal", "Open"):
          key = next((k for k in go if k.startswith("SK%s/%s" % (op, name))), None)
          rows.append(("SK %s 1 KiB %s" % (op.lower(), name), key, anchor))
  return rows, go

results = {}  # label -> list of (go, anchor)
order = []
for r in range(1, int(sys.argv[2]) + 1):
    rows, go = parse("%s/%d" % (sys.argv[1], r))
    for label, key, anchor in rows:
        g = go.get(key or "")
        if label not in results:
            results[label] = []
            order.append(label)
        if g is not None and anchor is not None:
            results[label].append((g, anchor))

print("| operation | Go ns/op | OpenSSL ns/op | Go/OpenSSL |")
print("| --- | ---: | ---: | ---: |")
for label in order:
    v = results[label]
    if not v:
        print("| %s | n/a | n/a | n/a |" % label)
        continue
    g = statistics.median(x[0] for x in v)
    a = statistics.median(x[1] for x in v)
    ratio = statistics.median(x[0] / x[1] for x in v)
    print("| %s | %.0f | %.0f | %.1f |" % (label, g, a, ratio))
EOF
