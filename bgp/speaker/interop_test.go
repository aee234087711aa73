package speaker

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/bgp/internal/peertest"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
)

// The foreign reflectors run in a namespace of the test's own, where they
// listen on the BGP port and the speakers dial them from there: nothing a
// test of another package binds on the host's loopback can get in the way.
const reflector = "127.0.0.1:179"

// dialIn is dialFrom with the socket opened inside ns.
func dialIn(ns *testenv.Netns, local, remote string) func(context.Context) (net.Conn, error) {
	dial := dialFrom(local, remote)
	return func(ctx context.Context) (c net.Conn, err error) {
		if nerr := ns.Do(func() error { c, err = dial(ctx); return nil }); nerr != nil {
			return nil, nerr
		}
		return c, err
	}
}

// pairVia starts two speakers that dial hub inside ns from 127.0.0.2 and
// 127.0.0.3 and waits until each holds the other's routes with their
// endpoints.
func pairVia(t *testing.T, ns *testenv.Netns, hub string) (a, b *runningSpeaker) {
	a = start(t, Config{ASN: 65000, RouterID: netip.MustParseAddr("127.0.0.2"), Dial: dialIn(ns, "127.0.0.2", hub),
		Prefixes: pfx("10.1.0.0/24", "fd00:1::/48"), Endpoint: netip.MustParseAddrPort("192.0.2.1:4500")})
	b = start(t, Config{ASN: 65000, RouterID: netip.MustParseAddr("127.0.0.3"), Dial: dialIn(ns, "127.0.0.3", hub),
		Prefixes: pfx("10.2.0.0/24", "fd00:2::/48"), Endpoint: netip.MustParseAddrPort("192.0.2.2:0")})
	waitRoutes(t, a.sink, 30*time.Second, map[string]string{"10.2.0.0/24": "192.0.2.2:0", "fd00:2::/48": "192.0.2.2:0"})
	waitRoutes(t, b.sink, 30*time.Second, map[string]string{"10.1.0.0/24": "192.0.2.1:4500", "fd00:1::/48": "192.0.2.1:4500"})
	return a, b
}

// TestStockGobgpd: the stock gobgpd daemon (Debian's package) as route
// reflector. Killing it (no NOTIFICATION, no GR configured) withdraws the
// routes it gave.
func TestStockGobgpd(t *testing.T) {
	leakCheck(t)
	ns := testenv.NewNetns(t, "spgo")
	d := peertest.Gobgpd(t, ns, `
[global.config]
  as = 65000
  router-id = "10.255.255.1"
  port = 179
  local-address-list = ["127.0.0.1"]
[[peer-groups]]
  [peer-groups.config]
    peer-group-name = "cpe"
    peer-as = 65000
  [peer-groups.route-reflector.config]
    route-reflector-client = true
    route-reflector-cluster-id = "10.255.255.1"
  [[peer-groups.afi-safis]]
    [peer-groups.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[peer-groups.afi-safis]]
    [peer-groups.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
[[dynamic-neighbors]]
  [dynamic-neighbors.config]
    prefix = "127.0.0.0/8"
    peer-group = "cpe"
`, 50051)
	_, b := pairVia(t, ns, reflector)
	d.Kill()
	waitRoutes(t, b.sink, 10*time.Second, map[string]string{})
}

// TestBIRDReflects: BIRD 2 as route reflector. BIRD does not know
// attribute 23 and passes it on with the Partial flag set, which must not
// matter; its IPv6 channel needs extended next hop for our IPv4-mapped
// next hops.
func TestBIRDReflects(t *testing.T) {
	leakCheck(t)
	ns := testenv.NewNetns(t, "spbird")
	bird := peertest.Bird(t, ns, `
router id 10.255.255.2;
template bgp cpe {
  local 127.0.0.1 port 179 as 65000;
  neighbor range 127.0.0.0/8 as 65000;
  rr client;
  rr cluster id 10.255.255.2;
  ipv4 { import all; export all; };
  ipv6 { import all; export all; extended next hop on; };
}
protocol bgp dyn from cpe { dynamic name "cpe"; }
`)
	a, b := pairVia(t, ns, reflector)
	out := bird.Birdc(t, "show", "route", "all", "10.1.0.0/24")
	if !strings.Contains(out, "BGP.17") && !strings.Contains(out, "BGP.23") {
		t.Errorf("BIRD does not show attribute 23 on the route:\n%s", out)
	}
	if st := a.Stats(); st.BadTunnelEncap != 0 || st.TreatAsWithdraw != 0 || st.AttributeDiscard != 0 {
		t.Errorf("a stats %+v", st)
	}
	if st := b.Stats(); st.BadTunnelEncap != 0 || st.TreatAsWithdraw != 0 {
		t.Errorf("b stats %+v", st)
	}
}
