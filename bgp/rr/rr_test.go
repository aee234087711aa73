package rr

import (
	"bytes"
	"context"
	"net/netip"
	"testing"

	"github.com/mpsa-vpn/mpsa/bgp/speaker"
	"github.com/mpsa-vpn/mpsa/bgp/tunnelencap"
)

func acme(listen string) GroupConfig {
	return GroupConfig{Name: "acme", Listen: []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr(listen), 0)}}
}

// TestTunnelAttrOctets: the attribute the hub builds with GoBGP's types is
// octet for octet what package tunnelencap defines.
func TestTunnelAttrOctets(t *testing.T) {
	for _, ep := range []string{"198.51.100.7:0", "198.51.100.7:4500", "[2001:db8::7]:4500"} {
		a, err := tunnelAttr(netip.MustParseAddrPort(ep))
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.Serialize()
		if err != nil {
			t.Fatal(err)
		}
		want, err := tunnelencap.AppendAttribute(nil, netip.MustParseAddrPort(ep))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: GoBGP %x, tunnelencap %x", ep, got, want)
		}
	}
}

// TestReflectAndRewrite: two CPEs learn each other's routes through the
// hub; the endpoint a NATed CPE advertises is replaced by the one the hub
// saw on its IKE SA; a CPE does not get its own routes back.
func TestReflectAndRewrite(t *testing.T) {
	leakCheck(t)
	h := startHub(t, Config{}, acme("127.0.0.1"))
	hub := listenOf(h, "acme")
	mustUp(t, h, cpe("a", "acme", addr(2), "198.51.100.2:4500", "10.1.0.0/16", "fd00:1::/48"))
	mustUp(t, h, cpe("b", "acme", addr(3), "[2001:db8::3]:0", "10.2.0.0/16", "fd00:2::/48"))
	a := runCPE(t, addr(2), hub, "192.168.1.2:4500", "10.1.0.0/24", "fd00:1::/48")
	b := runCPE(t, addr(3), hub, "[2001:db8::3]:0", "10.2.0.0/24", "fd00:2::/48")

	a.waitRoutes(t, map[string]string{"10.2.0.0/24": "[2001:db8::3]:0", "fd00:2::/48": "[2001:db8::3]:0"})
	b.waitRoutes(t, map[string]string{"10.1.0.0/24": "198.51.100.2:4500", "fd00:1::/48": "198.51.100.2:4500"})
	r, _ := b.sink.Get(netip.MustParsePrefix("10.1.0.0/24"))
	if r.NextHop != netip.MustParseAddr("198.51.100.2") || r.LocalPref != 100 || r.Peer != netip.MustParseAddr("10.255.0.1") {
		t.Errorf("route at b: %+v", r)
	}
	r, _ = a.sink.Get(netip.MustParsePrefix("10.2.0.0/24"))
	if r.NextHop != netip.MustParseAddr("127.0.0.3") {
		t.Errorf("IPv4 route with an IPv6 endpoint: next hop %v, want the CPE's overlay address", r.NextHop)
	}
	if st := a.Stats(); st.OwnRoutes != 0 {
		t.Errorf("the hub sent a its own routes back: %+v", st)
	}

	st := stats(t, h, "acme")
	if st.EndpointRewrite != 2 || st.ForeignPrefix != 0 || st.Routes != 4 || st.Sessions != 2 || st.CPEs != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestForeignPrefixAndEndpoint: a CPE advertising a prefix it is not
// authorised for has it dropped, counted and logged; with the reject
// policy a foreign endpoint is dropped too. Other CPEs never see either.
func TestForeignPrefixAndEndpoint(t *testing.T) {
	leakCheck(t)
	h := startHub(t, Config{Endpoint: EndpointReject}, acme("127.0.0.1"))
	hub := listenOf(h, "acme")
	mustUp(t, h, cpe("a", "acme", addr(2), "198.51.100.2:4500", "10.1.0.0/16"))
	mustUp(t, h, cpe("b", "acme", addr(3), "198.51.100.3:4500", "10.2.0.0/16"))
	mustUp(t, h, cpe("c", "acme", addr(4), "198.51.100.4:4500", "10.4.0.0/16"))
	a := runCPE(t, addr(2), hub, "198.51.100.2:4500", "10.1.0.0/24", "10.2.0.0/24", "10.1.9.0/24") // 10.2.0.0/24 is b's
	b := runCPE(t, addr(3), hub, "198.51.100.3:4500", "10.2.0.0/24")
	c := runCPE(t, addr(4), hub, "198.51.100.99:4500", "10.4.0.0/24") // not the endpoint the hub sees

	// One UPDATE carries all three of a's IPv4 prefixes: once b holds the
	// two legitimate ones, the foreign one has been judged.
	b.waitRoutes(t, map[string]string{"10.1.0.0/24": "198.51.100.2:4500", "10.1.9.0/24": "198.51.100.2:4500"})
	a.waitRoutes(t, map[string]string{"10.2.0.0/24": "198.51.100.3:4500"})
	c.waitRoutes(t, map[string]string{"10.1.0.0/24": "198.51.100.2:4500", "10.1.9.0/24": "198.51.100.2:4500",
		"10.2.0.0/24": "198.51.100.3:4500"})
	waitStats(t, h, "acme", func(s Stats) bool { return s.EndpointReject == 1 })
	st := stats(t, h, "acme")
	if st.ForeignPrefix != 1 || st.EndpointReject != 1 || st.EndpointRewrite != 0 || st.Routes != 3 {
		t.Errorf("stats %+v", st)
	}
	// b's own 10.2.0.0/24 never comes back to b, as its own or as a's.
	if r, ok := b.sink.Get(netip.MustParsePrefix("10.2.0.0/24")); ok {
		t.Errorf("b holds %+v", r)
	}
}

// TestOnlyLiveCPEs: a session from an address that is not a live CPE's
// overlay address is refused; CPEDown closes a CPE's session and withdraws
// its routes from the others at once.
func TestOnlyLiveCPEs(t *testing.T) {
	leakCheck(t)
	h := startHub(t, Config{}, acme("127.0.0.1"))
	hub := listenOf(h, "acme")
	mustUp(t, h, cpe("a", "acme", addr(2), "198.51.100.2:4500", "10.1.0.0/16"))
	mustUp(t, h, cpe("b", "acme", addr(3), "198.51.100.3:4500", "10.2.0.0/16"))
	a := runCPE(t, addr(2), hub, "198.51.100.2:4500", "10.1.0.0/24")
	b := runCPE(t, addr(3), hub, "198.51.100.3:4500", "10.2.0.0/24")
	rogue := runCPE(t, addr(9), hub, "198.51.100.9:4500", "10.9.0.0/24")
	a.waitRoutes(t, map[string]string{"10.2.0.0/24": "198.51.100.3:4500"})
	rogue.waitFor(t, "refused", func() bool { return stats(t, h, "acme").RefusedSessions >= 2 })
	if rogue.Stats().Established != 0 {
		t.Error("rogue session established")
	}
	if _, ok := a.sink.Get(netip.MustParsePrefix("10.9.0.0/24")); ok {
		t.Error("rogue route reflected")
	}

	if err := h.CPEDown(context.Background(), "b"); err != nil {
		t.Fatal(err)
	}
	a.waitRoutes(t, map[string]string{})
	b.waitFor(t, "b's session closed", func() bool { return b.State() != speaker.StateEstablished })
	if st := stats(t, h, "acme"); st.CPEWithdrawnDown != 1 || st.CPEs != 1 {
		t.Errorf("stats %+v", st)
	}
	// b's address is no live CPE's any more: b keeps dialling and is
	// refused like the rogue (which stops, so the count is b's).
	rogue.stop()
	refused := stats(t, h, "acme").RefusedSessions
	b.waitFor(t, "b's reconnections refused", func() bool { return stats(t, h, "acme").RefusedSessions >= refused+2 })
	if n := b.Stats().Established; n != 1 {
		t.Errorf("b established %d sessions, want 1", n)
	}
	// b's IKE SA comes back: so does its session and its route.
	mustUp(t, h, cpe("b", "acme", addr(3), "198.51.100.3:4500", "10.2.0.0/16"))
	a.waitRoutes(t, map[string]string{"10.2.0.0/24": "198.51.100.3:4500"})
}

// TestCPEUpdate: a CPE's new endpoint (NAT rebinding) is re-advertised; a
// prefix it loses authorisation for is withdrawn.
func TestCPEUpdate(t *testing.T) {
	leakCheck(t)
	h := startHub(t, Config{}, acme("127.0.0.1"))
	hub := listenOf(h, "acme")
	mustUp(t, h, cpe("a", "acme", addr(2), "198.51.100.2:4500", "10.1.0.0/16", "10.11.0.0/16"))
	mustUp(t, h, cpe("b", "acme", addr(3), "198.51.100.3:4500", "10.2.0.0/16"))
	runCPE(t, addr(2), hub, "198.51.100.2:4500", "10.1.0.0/24", "10.11.0.0/24")
	b := runCPE(t, addr(3), hub, "198.51.100.3:4500", "10.2.0.0/24")
	b.waitRoutes(t, map[string]string{"10.1.0.0/24": "198.51.100.2:4500", "10.11.0.0/24": "198.51.100.2:4500"})
	mustUp(t, h, cpe("a", "acme", addr(2), "203.0.113.2:31000", "10.1.0.0/16"))
	b.waitRoutes(t, map[string]string{"10.1.0.0/24": "203.0.113.2:31000"})
}

// TestGroupsIsolated: two groups whose CPEs use the same prefixes; no CPE
// learns a route of the other group.
func TestGroupsIsolated(t *testing.T) {
	leakCheck(t)
	beta := GroupConfig{Name: "beta", Listen: []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.100"), 0)}}
	h := startHub(t, Config{}, acme("127.0.0.1"), beta)
	for i, g := range []string{"acme", "beta"} {
		base := 10 + 10*i
		mustUp(t, h, cpe(g+"1", g, addr(base+1), "198.51.100."+itoa(base+1)+":4500", "10.0.0.0/8", "fd00::/16"))
		mustUp(t, h, cpe(g+"2", g, addr(base+2), "198.51.100."+itoa(base+2)+":4500", "10.0.0.0/8", "fd00::/16"))
	}
	a1 := runCPE(t, addr(11), listenOf(h, "acme"), "198.51.100.11:4500", "10.1.0.0/24", "fd00:1::/48")
	a2 := runCPE(t, addr(12), listenOf(h, "acme"), "198.51.100.12:4500", "10.2.0.0/24")
	b1 := runCPE(t, addr(21), listenOf(h, "beta"), "198.51.100.21:4500", "10.1.0.0/24", "fd00:1::/48") // same as acme's
	b2 := runCPE(t, addr(22), listenOf(h, "beta"), "198.51.100.22:4500", "10.3.0.0/24")
	a2.waitRoutes(t, map[string]string{"10.1.0.0/24": "198.51.100.11:4500", "fd00:1::/48": "198.51.100.11:4500"})
	b2.waitRoutes(t, map[string]string{"10.1.0.0/24": "198.51.100.21:4500", "fd00:1::/48": "198.51.100.21:4500"})
	a1.waitRoutes(t, map[string]string{"10.2.0.0/24": "198.51.100.12:4500"})
	b1.waitRoutes(t, map[string]string{"10.3.0.0/24": "198.51.100.22:4500"})
	// A CPE of one group cannot even open a session with the other.
	if err := h.CPEUp(context.Background(), cpe("x", "beta", addr(11), "198.51.100.11:4500")); err == nil {
		t.Error("CPEUp accepted acme1's overlay address for a beta CPE")
	}
	if st := stats(t, h, ""); st.CPEs != 4 || st.Routes != 6 || st.Sessions != 4 {
		t.Errorf("stats %+v", st)
	}
}

func itoa(i int) string { return netip.AddrFrom4([4]byte{0, 0, 0, byte(i)}).String()[6:] }

// TestDualHomedPrefix: two CPEs of one site announce the same prefix; the
// hub keeps both paths (distinct path identifiers) and a third CPE keeps a
// route to the prefix while either is there.
func TestDualHomedPrefix(t *testing.T) {
	leakCheck(t)
	h := startHub(t, Config{}, acme("127.0.0.1"))
	hub := listenOf(h, "acme")
	mustUp(t, h, cpe("a", "acme", addr(2), "198.51.100.2:4500", "10.1.0.0/16"))
	mustUp(t, h, cpe("a2", "acme", addr(5), "198.51.100.5:4500", "10.1.0.0/16"))
	mustUp(t, h, cpe("b", "acme", addr(3), "198.51.100.3:4500", "10.2.0.0/16"))
	runCPE(t, addr(2), hub, "198.51.100.2:4500", "10.1.0.0/24")
	runCPE(t, addr(5), hub, "198.51.100.5:4500", "10.1.0.0/24")
	b := runCPE(t, addr(3), hub, "198.51.100.3:4500", "10.2.0.0/24")
	waitStats(t, h, "acme", func(s Stats) bool { return s.Routes == 3 }) // both paths of 10.1.0.0/24 kept
	b.waitFor(t, "route to the dual-homed prefix", func() bool { return b.sink.Len() == 1 })
	first, _ := b.sink.Get(netip.MustParsePrefix("10.1.0.0/24"))
	other := map[string]string{"198.51.100.2:4500": "a", "198.51.100.5:4500": "a2"}[first.Endpoint.String()]
	if other == "" {
		t.Fatalf("route %+v", first)
	}
	if err := h.CPEDown(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	want := "198.51.100.5:4500"
	if other == "a2" {
		want = "198.51.100.2:4500"
	}
	b.waitRoutes(t, map[string]string{"10.1.0.0/24": want})
}

// TestRouteLimit: a CPE announcing more specifics of its authorised
// prefix than MaxRoutesPerCPE has the rest dropped and counted.
func TestRouteLimit(t *testing.T) {
	leakCheck(t)
	h := startHub(t, Config{MaxRoutesPerCPE: 3}, acme("127.0.0.1"))
	hub := listenOf(h, "acme")
	mustUp(t, h, cpe("a", "acme", addr(2), "198.51.100.2:4500", "10.1.0.0/16"))
	mustUp(t, h, cpe("b", "acme", addr(3), "198.51.100.3:4500", "10.2.0.0/16"))
	runCPE(t, addr(2), hub, "198.51.100.2:4500", "10.1.0.0/24", "10.1.1.0/24", "10.1.2.0/24", "10.1.3.0/24", "10.1.4.0/24")
	b := runCPE(t, addr(3), hub, "198.51.100.3:4500", "10.2.0.0/24")
	waitStats(t, h, "acme", func(s Stats) bool { return s.TooManyRoutes == 2 && s.Routes == 4 })
	b.waitFor(t, "three of a's routes", func() bool { return b.sink.Len() == 3 })
}
