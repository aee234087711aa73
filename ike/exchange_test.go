package ike

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/netip"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/ike/iketest"
	"github.com/mpsa-vpn/mpsa/ike/suite"
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
	// Established SAs keep only SK_d of their keys: SK_pi and SK_pr
	// served the AUTH payloads, SK_e and SK_a live in the SK ciphers.
	for _, h := range []*SA{isa, rsa} {
		if err := h.call(ctx(t), func() error {
			if k := h.cur.keys; len(k.SKd) == 0 || k.SKpi != nil || k.SKpr != nil || k.SKei != nil || k.SKai != nil {
				t.Errorf("established SA keeps %d/%d/%d octets of SK_d/SK_pi/SK_ei", len(k.SKd), len(k.SKpi), len(k.SKei))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
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

// TestKeyLog: the KeyLog hook sees the keys of the first and of a rekeyed
// IKE SA on both sides, with the SPIs of each.
func TestKeyLog(t *testing.T) {
	type entry struct {
		spiI, spiR uint64
		skei       string
	}
	logs := map[string]chan entry{"cpe": make(chan entry, 4), "hub": make(chan entry, 4)}
	hook := func(side string) func(uint64, uint64, *suite.IKEKeys) {
		return func(i, r uint64, k *suite.IKEKeys) { logs[side] <- entry{i, r, string(k.SKei)} }
	}
	p := newPair(t, func(i, r *Config) { i.KeyLog, r.KeyLog = hook("cpe"), hook("hub") })
	a, _ := p.establish(defaultConn())
	for round := 0; round < 2; round++ {
		ci, hi := <-logs["cpe"], <-logs["hub"]
		info := a.Info()
		if ci != hi || ci.spiI != info.SPIi || ci.spiR != info.SPIr || len(ci.skei) == 0 {
			t.Fatalf("round %d: cpe %x/%x, hub %x/%x, SA %x/%x", round, ci.spiI, ci.spiR, hi.spiI, hi.spiR, info.SPIi, info.SPIr)
		}
		if round == 0 {
			done := async(func() error { return a.RekeyIKE(ctx(t)) })
			p.expect(wire.CreateChildSA, false)
			p.expect(wire.CreateChildSA, true)
			p.expect(wire.Informational, false)
			p.expect(wire.Informational, true)
			if err := wait(t, done); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestPSKPeerOfCertificateResponder: a hub that has a certificate for some
// CPEs authenticates with the PSK to a CPE whose lookup entry holds only a
// PSK.
func TestPSKPeerOfCertificateResponder(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hub.example.net"},
		DNSNames: []string{"hub.example.net"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := newPair(t, func(i, r *Config) {
		r.Local = auth.Local{ID: hubID, Signer: key, Certs: []*x509.Certificate{cert}}
	})
	a, _ := p.establish(defaultConn())
	if a.Info().State != StateEstablished {
		t.Fatal("not established")
	}
}
