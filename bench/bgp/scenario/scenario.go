// Package scenario fixes the addresses of the BGP load test, shared by the
// load generator and the route reflectors under test: CPE i (0-based)
// connects from its own loopback address, advertises K prefixes (half IPv4,
// half IPv6) with its own ESP endpoint.
package scenario

import (
	"fmt"
	"net/netip"
)

// ASN is the AS of the hub and every CPE.
const ASN = 65000

// MaxCPEs is how many CPEs the address plan holds.
const MaxCPEs = 1 << 16

// CPEAddr is CPE i's session (overlay) address and BGP Identifier:
// 127.1.0.1 onwards, in 127.0.0.0/8, which Linux routes to loopback.
func CPEAddr(i int) netip.Addr {
	v := 127<<24 | 1<<16 + uint32(i) + 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Endpoint is CPE i's ESP endpoint (198.18.0.0/15, RFC 2544 benchmarking
// space), ESP in UDP.
func Endpoint(i int) netip.AddrPort {
	v := 198<<24 | 18<<16 + uint32(i) + 1
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 4500)
}

// Prefix is CPE i's j-th prefix: even j IPv4 /28s in 10.0.0.0/8, odd j IPv6
// /64s in fd00::/16. Prefixes never overlap between CPEs.
func Prefix(i, j int) netip.Prefix {
	n := uint32(i)*16 + uint32(j)
	if j%2 == 0 {
		v := 10<<24 | n<<4
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 28)
	}
	var a [16]byte
	a[0], a[1] = 0xfd, 0
	a[2], a[3], a[4], a[5] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return netip.PrefixFrom(netip.AddrFrom16(a), 64)
}

// Prefixes are CPE i's first k prefixes.
func Prefixes(i, k int) []netip.Prefix {
	out := make([]netip.Prefix, k)
	for j := range k {
		out[j] = Prefix(i, j)
	}
	return out
}

// Authorised are the prefixes the hub authorises for CPE i: room for 16
// prefixes of each family, so the incremental test can add one.
func Authorised(i int) []netip.Prefix {
	n := uint32(i) * 16
	v := 10<<24 | n<<4
	var a [16]byte
	a[0] = 0xfd
	a[2], a[3], a[4], a[5] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return []netip.Prefix{
		netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 24),
		netip.PrefixFrom(netip.AddrFrom16(a), 44),
	}
}

// ID names CPE i.
func ID(i int) string { return fmt.Sprintf("cpe%d", i) }

// BirdConfig is BIRD 2's configuration as the benchmark's route reflector:
// every CPE a dynamic iBGP neighbor from 127.0.0.0/8, a route-reflector
// client, both families, listening on 127.0.0.1:port. Logging is the
// caller's to prepend.
func BirdConfig(port int) string {
	return fmt.Sprintf(`
router id 10.255.255.1;
template bgp cpe {
  local 127.0.0.1 port %d as %d;
  neighbor range 127.0.0.0/8 as %[2]d;
  rr client;
  rr cluster id 10.255.255.1;
  hold time 240;
  ipv4 { import all; export all; };
  ipv6 { import all; export all; extended next hop on; };
}
protocol bgp dyn from cpe { dynamic name "cpe"; }
`, port, ASN)
}
