package ike

import (
	"bytes"
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/ike/iketest"
	"github.com/mpsa-vpn/mpsa/ike/wire"
)

func TestEstablish(t *testing.T) {
	p := newPair(t, nil)
	isa, rsa := p.establish(defaultConn())
	ii, ri := isa.Info(), rsa.Info()
	if ii.SPIi != ri.SPIi || ii.SPIr != ri.SPIr || ii.SPIr == 0 {
		t.Fatalf("SPIs differ: %v / %v", isa, rsa)
	}
	if !ii.RemoteID.Equal(hubID) || !ri.RemoteID.Equal(cpeID) {
		t.Fatalf("identities %v %v", ii.RemoteID, ri.RemoteID)
	}
	if ii.State != StateEstablished || ri.State != StateEstablished {
		t.Fatalf("states %v %v", ii.State, ri.State)
	}
	ic := p.i.event(EventChildUp).Child
	rc := p.r.event(EventChildUp).Child
	if ic.InSPI != rc.OutSPI || ic.OutSPI != rc.InSPI {
		t.Fatalf("CHILD_SA SPIs: %08x/%08x vs %08x/%08x", ic.InSPI, ic.OutSPI, rc.InSPI, rc.OutSPI)
	}
	if !bytes.Equal(ic.Out.EncKey, rc.In.EncKey) || !bytes.Equal(ic.In.EncKey, rc.Out.EncKey) || bytes.Equal(ic.In.EncKey, ic.Out.EncKey) {
		t.Fatal("CHILD_SA keys do not match across the pair")
	}
	if err := ic.In.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := rc.LocalTS[0].String(); got != "10.99.1.0-10.99.1.255" {
		t.Fatalf("responder's local TS %s", got)
	}
	if got := rc.RemoteTS[0].String(); got != "192.0.2.2-192.0.2.2" {
		t.Fatalf("responder's remote TS %s", got)
	}
	mirrored(t, isa, rsa)
	p.quiet()
	_ = wire.IKEAuth
}

// TestEstablishIPv6 runs the handshake, a rekey and a delete between IPv6
// addresses, with IPv6 traffic selectors and an IPv6 virtual address.
func TestEstablishIPv6(t *testing.T) {
	checkGoroutines(t)
	n := iketest.NewNet()
	clk := iketest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	hub6, cpe6 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8:1::2")
	rcfg := baseConfig(hubID)
	rcfg.LocalTS = []netip.Prefix{netip.MustParsePrefix("2001:db8:99::/48")}
	rcfg.Policy.AssignAddresses = func(context.Context, PeerInfo, []netip.Addr) ([]netip.Prefix, error) {
		return []netip.Prefix{netip.MustParsePrefix("2001:db8:100::7/128")}, nil
	}
	p := &pair{t: t, net: n, clk: clk}
	p.r = newEndpoint(t, n, clk, "hub", hub6, rcfg, 1)
	p.i = newEndpoint(t, n, clk, "cpe", cpe6, baseConfig(cpeID), 2)
	c := Connection{Remote: []netip.AddrPort{netip.AddrPortFrom(hub6, 0)}, RemoteID: hubID,
		VirtualIPs: []netip.Addr{netip.IPv6Unspecified()}, RemoteTS: []netip.Prefix{netip.MustParsePrefix("2001:db8:99::/48")}}
	a, b := p.establish(c)
	ic := p.i.event(EventChildUp).Child
	if got := ic.LocalTS[0].String(); got != "2001:db8:100::7-2001:db8:100::7" {
		t.Fatalf("TSi %s", got)
	}
	if v := a.Info().VIPs; len(v) != 1 || v[0] != netip.MustParsePrefix("2001:db8:100::7/128") {
		t.Fatalf("VIPs %v", v)
	}
	if a.Info().NATLocal || b.Info().NATRemote {
		t.Fatal("NAT detected between plain IPv6 addresses")
	}
	done := async(func() error { return b.RekeyChild(ctx(t), firstChild(b).InSPI) })
	p.expect(wire.CreateChildSA, false)
	p.expect(wire.CreateChildSA, true)
	p.expect(wire.Informational, false)
	p.expect(wire.Informational, true)
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	mirrored(t, a, b)
}
