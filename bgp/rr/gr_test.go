package rr

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/bgp/speaker"
)

// TestHubRestart: the hub restarts (Close, then a new Hub whose group is
// Restarting, with the CPEs re-registered from IKE state). The CPEs keep
// forwarding on the routes they had — b never withdraws a's routes — and
// the new hub sends its table only when both CPEs are back and have sent
// End-of-RIB.
func TestHubRestart(t *testing.T) {
	leakCheck(t)
	g := acme("127.0.0.1")
	h1 := startHub(t, Config{}, g)
	hub := listenOf(h1, "acme")
	listen := netip.MustParseAddrPort(hub)
	ca := cpe("a", "acme", addr(2), "198.51.100.2:4500", "10.1.0.0/16", "fd00:1::/48")
	cb := cpe("b", "acme", addr(3), "198.51.100.3:4500", "10.2.0.0/16")
	mustUp(t, h1, ca)
	mustUp(t, h1, cb)
	a := runCPE(t, addr(2), hub, "198.51.100.2:4500", "10.1.0.0/24", "fd00:1::/48")
	b := runCPE(t, addr(3), hub, "198.51.100.3:4500", "10.2.0.0/24")
	b.waitRoutes(t, map[string]string{"10.1.0.0/24": "198.51.100.2:4500", "fd00:1::/48": "198.51.100.2:4500"})
	a.waitRoutes(t, map[string]string{"10.2.0.0/24": "198.51.100.3:4500"})
	before := b.sink.Withdrawals()

	h1.Close()
	b.waitFor(t, "b keeps a's routes as stale", func() bool {
		return b.State() != speaker.StateEstablished && b.Stats().StaleRoutes == 2
	})

	h2 := startHub(t, Config{}, GroupConfig{Name: "acme", Listen: []netip.AddrPort{listen}, Restarting: true, DeferralTime: 30 * time.Second})
	if h2.Synced("acme") {
		t.Fatal("restarting group synced before any CPE is back")
	}
	mustUp(t, h2, ca)
	mustUp(t, h2, cb)
	b.waitFor(t, "b fresh again", func() bool {
		return b.State() == speaker.StateEstablished && b.Stats().StaleRoutes == 0 && b.sink.Len() == 2
	})
	a.waitFor(t, "a fresh again", func() bool {
		return a.State() == speaker.StateEstablished && a.Stats().StaleRoutes == 0 && a.sink.Len() == 1
	})
	if !h2.Synced("acme") {
		t.Error("group not synced after every CPE sent End-of-RIB")
	}
	if n := b.sink.Withdrawals() - before; n != 0 {
		t.Errorf("b withdrew %d routes across the hub restart", n)
	}
	b.waitRoutes(t, map[string]string{"10.1.0.0/24": "198.51.100.2:4500", "fd00:1::/48": "198.51.100.2:4500"})
	// The sync session has gone once GoBGP ended its deferral.
	waitStats(t, h2, "acme", func(Stats) bool {
		h2.mu.Lock()
		defer h2.mu.Unlock()
		g := h2.groups["acme"]
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.sync == nil
	})
}

// TestHubRestartDeferralTimeout: a registered CPE that never comes back
// does not hold the others' routes forever.
func TestHubRestartDeferralTimeout(t *testing.T) {
	leakCheck(t)
	h := startHub(t, Config{}, GroupConfig{Name: "acme", Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
		Restarting: true, DeferralTime: time.Second})
	hub := listenOf(h, "acme")
	mustUp(t, h, cpe("a", "acme", addr(2), "198.51.100.2:4500", "10.1.0.0/16"))
	mustUp(t, h, cpe("b", "acme", addr(3), "198.51.100.3:4500", "10.2.0.0/16"))
	mustUp(t, h, cpe("gone", "acme", addr(4), "198.51.100.4:4500", "10.4.0.0/16"))
	b := runCPE(t, addr(3), hub, "198.51.100.3:4500", "10.2.0.0/24")
	runCPE(t, addr(2), hub, "198.51.100.2:4500", "10.1.0.0/24")
	t0 := time.Now()
	b.waitRoutes(t, map[string]string{"10.1.0.0/24": "198.51.100.2:4500"})
	if d := time.Since(t0); d < 500*time.Millisecond {
		t.Errorf("routes sent after %v, before the deferral time", d)
	}
}

// TestCPERestart: a CPE's BGP session drops while its IKE SA lives; the
// hub keeps its routes meanwhile, and when the CPE is back its End-of-RIB
// removes only what it did not announce again.
func TestCPERestart(t *testing.T) {
	leakCheck(t)
	h := startHub(t, Config{}, acme("127.0.0.1"))
	hub := listenOf(h, "acme")
	mustUp(t, h, cpe("a", "acme", addr(2), "198.51.100.2:4500", "10.1.0.0/16", "fd00:1::/48"))
	mustUp(t, h, cpe("b", "acme", addr(3), "198.51.100.3:4500", "10.2.0.0/16"))
	a := runCPE(t, addr(2), hub, "198.51.100.2:4500", "10.1.0.0/24", "fd00:1::/48")
	b := runCPE(t, addr(3), hub, "198.51.100.3:4500", "10.2.0.0/24")
	b.waitRoutes(t, map[string]string{"10.1.0.0/24": "198.51.100.2:4500", "fd00:1::/48": "198.51.100.2:4500"})
	before := b.sink.Withdrawals()
	a.stop()
	waitStats(t, h, "acme", func(s Stats) bool { return s.StaleRoutes == 2 && s.Sessions == 1 })
	if b.sink.Len() != 2 {
		t.Fatalf("b lost a's routes while a restarts:\n%s", b.sink)
	}
	runCPE(t, addr(2), hub, "198.51.100.2:4500", "10.1.0.0/24")
	b.waitRoutes(t, map[string]string{"10.1.0.0/24": "198.51.100.2:4500"})
	if n := b.sink.Withdrawals() - before; n != 1 {
		t.Errorf("b saw %d withdrawals, want 1 (fd00:1::/48)", n)
	}
	waitStats(t, h, "acme", func(s Stats) bool { return s.StaleRoutes == 0 && s.Routes == 2 })
}

// TestCPERestartTimeout: a CPE whose session does not come back within the
// restart time loses its routes even while its IKE SA lives.
func TestCPERestartTimeout(t *testing.T) {
	leakCheck(t)
	h := startHub(t, Config{RestartTime: time.Second}, acme("127.0.0.1"))
	hub := listenOf(h, "acme")
	mustUp(t, h, cpe("a", "acme", addr(2), "198.51.100.2:4500", "10.1.0.0/16"))
	mustUp(t, h, cpe("b", "acme", addr(3), "198.51.100.3:4500", "10.2.0.0/16"))
	a := runCPE(t, addr(2), hub, "198.51.100.2:4500", "10.1.0.0/24")
	b := runCPE(t, addr(3), hub, "198.51.100.3:4500", "10.2.0.0/24")
	b.waitRoutes(t, map[string]string{"10.1.0.0/24": "198.51.100.2:4500"})
	t0 := time.Now()
	a.stop()
	b.waitRoutes(t, map[string]string{})
	if d := time.Since(t0); d < 900*time.Millisecond {
		t.Errorf("routes withdrawn after %v, before the restart time", d)
	}
	if err := h.CPEDown(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
}
