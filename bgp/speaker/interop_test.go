package speaker

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/bgp/internal/gobgptest"
	"github.com/mpsa-vpn/mpsa/bgp/internal/peertest"
)

// pairVia starts two speakers that dial hub from 127.0.0.2 and 127.0.0.3
// and waits until each holds the other's routes with their endpoints.
func pairVia(t *testing.T, hub string) (a, b *runningSpeaker) {
	a = start(t, Config{ASN: 65000, RouterID: netip.MustParseAddr("127.0.0.2"), Dial: dialFrom("127.0.0.2", hub),
		Prefixes: pfx("10.1.0.0/24", "fd00:1::/48"), Endpoint: netip.MustParseAddrPort("192.0.2.1:4500")})
	b = start(t, Config{ASN: 65000, RouterID: netip.MustParseAddr("127.0.0.3"), Dial: dialFrom("127.0.0.3", hub),
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
	port, err := gobgptest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	grpc, err := gobgptest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	d := peertest.Gobgpd(t, fmt.Sprintf(`
[global.config]
  as = 65000
  router-id = "10.255.255.1"
  port = %d
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
`, port), grpc)
	_, b := pairVia(t, fmt.Sprintf("127.0.0.1:%d", port))
	d.Kill()
	waitRoutes(t, b.sink, 10*time.Second, map[string]string{})
}

// TestBIRDReflects: BIRD 2 as route reflector. BIRD does not know
// attribute 23 and passes it on with the Partial flag set, which must not
// matter; its IPv6 channel needs extended next hop for our IPv4-mapped
// next hops.
func TestBIRDReflects(t *testing.T) {
	leakCheck(t)
	port, err := gobgptest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	bird := peertest.Bird(t, fmt.Sprintf(`
router id 10.255.255.2;
template bgp cpe {
  local 127.0.0.1 port %d as 65000;
  neighbor range 127.0.0.0/8 as 65000;
  rr client;
  rr cluster id 10.255.255.2;
  ipv4 { import all; export all; };
  ipv6 { import all; export all; extended next hop on; };
}
protocol bgp dyn from cpe { dynamic name "cpe"; }
`, port))
	a, b := pairVia(t, fmt.Sprintf("127.0.0.1:%d", port))
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
