package speaker

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/bgp/internal/gobgptest"
	"github.com/mpsa-vpn/mpsa/routing"
)

// TestReflectedByGoBGP runs two speakers as clients of an embedded GoBGP
// v3.37.0 route reflector: each learns the other's IPv4 and IPv6 prefixes
// with the endpoint from the Tunnel Encapsulation attribute, never its own,
// and follows prefix and endpoint changes, route refresh and withdrawal.
func TestReflectedByGoBGP(t *testing.T) {
	leakCheck(t)
	_, o := gobgptest.StartT(t, gobgptest.Options{})
	hub := fmt.Sprintf("127.0.0.1:%d", o.Port)

	a := start(t, Config{ASN: 65000, RouterID: netip.MustParseAddr("127.0.0.2"), Dial: dialFrom("127.0.0.2", hub),
		Prefixes: pfx("10.1.0.0/24", "fd00:1::/48"), Endpoint: netip.MustParseAddrPort("192.0.2.1:4500"), Tunnel: 7})
	b := start(t, Config{ASN: 65000, RouterID: netip.MustParseAddr("127.0.0.3"), Dial: dialFrom("127.0.0.3", hub),
		Prefixes: pfx("10.2.0.0/24", "10.2.1.0/24", "fd00:2::/48"), Endpoint: netip.MustParseAddrPort("[2001:db8::2]:0")})

	waitRoutes(t, a.sink, 10*time.Second, map[string]string{
		"10.2.0.0/24": "[2001:db8::2]:0", "10.2.1.0/24": "[2001:db8::2]:0", "fd00:2::/48": "[2001:db8::2]:0"})
	waitRoutes(t, b.sink, 10*time.Second, map[string]string{"10.1.0.0/24": "192.0.2.1:4500", "fd00:1::/48": "192.0.2.1:4500"})

	r, _ := b.sink.Get(netip.MustParsePrefix("fd00:1::/48"))
	want := routing.Route{Prefix: netip.MustParsePrefix("fd00:1::/48"), NextHop: netip.MustParseAddr("192.0.2.1"),
		Endpoint: netip.MustParseAddrPort("192.0.2.1:4500"), Peer: netip.MustParseAddr(o.RouterID), Source: routing.SourceBGP, LocalPref: 100}
	if r != want {
		t.Errorf("route at b:\n got %+v\nwant %+v", r, want)
	}
	if r, _ := a.sink.Get(netip.MustParsePrefix("10.2.0.0/24")); r.Tunnel != 7 || r.NextHop != netip.MustParseAddr("127.0.0.3") {
		t.Errorf("route at a: %+v, want tunnel 7 and the session address as IPv4 next hop (IPv6 endpoint)", r)
	}

	a.SetPrefixes(pfx("10.1.1.0/24", "fd00:1::/48"))
	waitRoutes(t, b.sink, 10*time.Second, map[string]string{"10.1.1.0/24": "192.0.2.1:4500", "fd00:1::/48": "192.0.2.1:4500"})

	a.SetEndpoint(netip.MustParseAddrPort("198.51.100.9:4501"))
	waitRoutes(t, b.sink, 10*time.Second, map[string]string{"10.1.1.0/24": "198.51.100.9:4501", "fd00:1::/48": "198.51.100.9:4501"})

	before := b.sink.Upserts()
	b.Refresh()
	if err := b.sink.Wait(within(t, 10*time.Second), func(map[netip.Prefix]routing.Route) bool {
		return b.sink.Upserts() >= before+2
	}); err != nil {
		t.Fatalf("route refresh: upserts %d, before %d", b.sink.Upserts(), before)
	}

	a.stop(t)
	waitRoutes(t, b.sink, 10*time.Second, map[string]string{})
	if st := b.Stats(); st.Established != 1 || st.RoutesLearned != 0 || st.TreatAsWithdraw != 0 {
		t.Errorf("b stats %+v", st)
	}
}
