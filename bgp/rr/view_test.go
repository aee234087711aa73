package rr

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"
)

// TestRoutesAndSessions: the snapshots of a group's reflected routes and
// of its CPEs' sessions, live and after a CPE's session drops (its routes
// kept stale).
func TestRoutesAndSessions(t *testing.T) {
	leakCheck(t)
	h := startHub(t, Config{}, acme("127.0.0.1"))
	hub := listenOf(h, "acme")
	mustUp(t, h, cpe("a", "acme", addr(2), "198.51.100.2:4500", "10.1.0.0/16", "fd00:1::/48"))
	mustUp(t, h, cpe("b", "acme", addr(3), "198.51.100.3:0", "10.2.0.0/24"))
	mustUp(t, h, cpe("c", "acme", addr(4), "198.51.100.4:4500", "10.4.0.0/24")) // never connects
	// 10.9.0.0/24 is not a's: received, not accepted.
	a := runCPE(t, addr(2), hub, "198.51.100.2:4500", "10.1.0.0/24", "fd00:1::/48", "10.9.0.0/24")
	b := runCPE(t, addr(3), hub, "198.51.100.3:0", "10.2.0.0/24")
	b.waitRoutes(t, map[string]string{"10.1.0.0/24": "198.51.100.2:4500", "fd00:1::/48": "198.51.100.2:4500"})
	a.waitRoutes(t, map[string]string{"10.2.0.0/24": "198.51.100.3:0"})
	waitStats(t, h, "acme", func(s Stats) bool { return s.ForeignPrefix == 1 })

	routes, err := h.Routes("acme")
	if err != nil {
		t.Fatal(err)
	}
	want := []Route{
		{Prefix: netip.MustParsePrefix("10.1.0.0/24"), Endpoint: netip.MustParseAddrPort("198.51.100.2:4500"), NextHop: netip.MustParseAddr("198.51.100.2"), CPE: "a", LocalPref: 100},
		{Prefix: netip.MustParsePrefix("10.2.0.0/24"), Endpoint: netip.MustParseAddrPort("198.51.100.3:0"), NextHop: netip.MustParseAddr("198.51.100.3"), CPE: "b", LocalPref: 100},
		{Prefix: netip.MustParsePrefix("fd00:1::/48"), Endpoint: netip.MustParseAddrPort("198.51.100.2:4500"), NextHop: netip.MustParseAddr("::ffff:198.51.100.2"), CPE: "a", LocalPref: 100},
	}
	if len(routes) != len(want) {
		t.Fatalf("routes %+v, want %+v", routes, want)
	}
	for i := range want {
		if routes[i] != want[i] {
			t.Errorf("route %d: %+v, want %+v", i, routes[i], want[i])
		}
	}

	ctx := context.Background()
	before := time.Now()
	ss, err := h.Sessions(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 3 || ss[0].CPE != "a" || ss[1].CPE != "b" || ss[2].CPE != "c" {
		t.Fatalf("sessions %+v", ss)
	}
	if s := ss[0]; s.State != "ESTABLISHED" || s.Received != 3 || s.Accepted != 2 || s.Stale != 0 ||
		s.Overlay != netip.MustParseAddr(addr(2)) || s.Endpoint != netip.MustParseAddrPort("198.51.100.2:4500") ||
		s.Since.IsZero() || s.Uptime(before) < 0 {
		t.Errorf("a's session %+v", s)
	}
	if s := ss[1]; s.State != "ESTABLISHED" || s.Received != 1 || s.Accepted != 1 {
		t.Errorf("b's session %+v", s)
	}
	if s := ss[2]; s.State == "ESTABLISHED" || !s.Since.IsZero() || s.Uptime(before) != 0 || s.Received != 0 || s.Accepted != 0 {
		t.Errorf("c never connected: %+v", s)
	}

	a.stop()
	waitStats(t, h, "acme", func(s Stats) bool { return s.StaleRoutes == 2 && s.Sessions == 1 })
	ss, err = h.Sessions(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if s := ss[0]; s.State == "ESTABLISHED" || !s.Since.IsZero() || s.Accepted != 2 || s.Stale != 2 {
		t.Errorf("a's session after it dropped: %+v", s)
	}
	routes, _ = h.Routes("acme")
	stale := 0
	for _, r := range routes {
		if r.Stale {
			stale++
			if r.CPE != "a" {
				t.Errorf("stale route of %s", r.CPE)
			}
		}
	}
	if stale != 2 {
		t.Errorf("%d stale routes, want a's 2: %+v", stale, routes)
	}

	if _, err := h.Routes("nope"); !errors.Is(err, ErrNoGroup) {
		t.Errorf("Routes of an unknown group: %v", err)
	}
	if _, err := h.Sessions(ctx, "nope"); !errors.Is(err, ErrNoGroup) {
		t.Errorf("Sessions of an unknown group: %v", err)
	}
}
