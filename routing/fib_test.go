package routing

import (
	"errors"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
	ap   = netip.MustParseAddrPort
)

var (
	epHub = ap("203.0.113.1:4500")
	ep1   = ap("198.51.100.1:4500")
	ep2   = ap("198.51.100.2:0")
	ep3   = ap("[2001:db8:ffff::3]:4500")
	peerA = addr("100.64.0.1")
	peerB = addr("100.64.0.2")
)

// cpe is a CPE's overlay address route: a /32 to its ESP endpoint.
func cpe(p string, ep netip.AddrPort) Route {
	return Route{Prefix: pfx(p), Endpoint: ep, Tunnel: 1, Source: SourceStatic}
}

// bgp is a route learned from peer with only a NEXT_HOP.
func bgp(p, nh string, peer netip.Addr) Route {
	return Route{Prefix: pfx(p), NextHop: addr(nh), Peer: peer, Source: SourceBGP, LocalPref: 100, Tunnel: 1}
}

func mustApply(t *testing.T, f *FIB, routes ...Route) {
	t.Helper()
	ops := make([]Op, len(routes))
	for i, r := range routes {
		ops[i] = Op{Route: r}
	}
	if err := f.Apply(ops); err != nil {
		t.Fatal(err)
	}
}

// status returns the single path of p (failing if there is not exactly one).
func status(t *testing.T, f *FIB, p string) RouteStatus {
	t.Helper()
	sts := f.Route(pfx(p))
	if len(sts) != 1 {
		t.Fatalf("Route(%s): %d paths, want 1", p, len(sts))
	}
	return sts[0]
}

func TestRecursion(t *testing.T) {
	hub := Route{Prefix: pfx("0.0.0.0/0"), Endpoint: epHub, Tunnel: 2, Source: SourceStatic}
	type want struct {
		prefix string
		reason Reason
		via    string // "" = none
		depth  int
	}
	type look struct {
		dst string
		nh  NextHop
		ok  bool
	}
	cases := []struct {
		name   string
		opts   []Option
		routes []Route
		want   []want
		look   []look
	}{{
		name:   "explicit endpoint",
		routes: []Route{{Prefix: pfx("10.1.0.0/24"), Endpoint: ep1, Tunnel: 1, Peer: peerA, Source: SourceBGP}},
		want:   []want{{"10.1.0.0/24", ReasonNone, "", 0}},
		look:   []look{{"10.1.0.9", NextHop{Endpoint: ep1, Tunnel: 1}, true}, {"10.2.0.1", NextHop{}, false}},
	}, {
		name:   "one level",
		routes: []Route{cpe("100.64.0.1/32", ep1), bgp("10.1.0.0/24", "100.64.0.1", peerA)},
		want:   []want{{"10.1.0.0/24", ReasonNone, "100.64.0.1/32", 1}},
		look:   []look{{"10.1.0.9", NextHop{Endpoint: ep1, Tunnel: 1}, true}},
	}, {
		name: "three levels",
		routes: []Route{
			cpe("100.64.0.1/32", ep1),
			bgp("10.1.0.0/24", "100.64.0.1", peerA),
			bgp("10.2.0.0/24", "10.1.0.1", peerA),
			bgp("10.3.0.0/24", "10.2.0.77", peerA),
		},
		want: []want{
			{"10.1.0.0/24", ReasonNone, "100.64.0.1/32", 1},
			{"10.2.0.0/24", ReasonNone, "10.1.0.0/24", 2},
			{"10.3.0.0/24", ReasonNone, "10.2.0.0/24", 3},
		},
		look: []look{{"10.3.0.200", NextHop{Endpoint: ep1, Tunnel: 1}, true}},
	}, {
		name: "too deep",
		opts: []Option{WithMaxDepth(2)},
		routes: []Route{
			cpe("100.64.0.1/32", ep1),
			bgp("10.1.0.0/24", "100.64.0.1", peerA),
			bgp("10.2.0.0/24", "10.1.0.1", peerA),
			bgp("10.3.0.0/24", "10.2.0.77", peerA),
		},
		want: []want{{"10.2.0.0/24", ReasonNone, "10.1.0.0/24", 2}, {"10.3.0.0/24", ReasonTooDeep, "10.2.0.0/24", 3}},
		look: []look{{"10.3.0.200", NextHop{}, false}},
	}, {
		name:   "connected next hop",
		routes: []Route{{Prefix: pfx("192.168.1.0/24"), Source: SourceConnected}, bgp("10.4.0.0/24", "192.168.1.5", peerA)},
		want:   []want{{"10.4.0.0/24", ReasonNone, "192.168.1.0/24", 1}},
		look:   []look{{"10.4.0.1", NextHop{Local: true}, true}, {"192.168.1.9", NextHop{Local: true}, true}},
	}, {
		name: "underlay next hop",
		opts: []Option{WithUnderlay(Underlay{Prefix: pfx("198.51.100.0/24"), Port: 4500, Tunnel: 9})},
		routes: []Route{
			{Prefix: pfx("10.5.0.0/24"), NextHop: addr("198.51.100.7"), Tunnel: 3, Peer: peerA, Source: SourceBGP},
			{Prefix: pfx("10.6.0.0/24"), NextHop: addr("198.51.100.8"), Peer: peerA, Source: SourceBGP},
		},
		want: []want{{"10.5.0.0/24", ReasonNone, "", 0}},
		look: []look{
			{"10.5.0.1", NextHop{Endpoint: ap("198.51.100.7:4500"), Tunnel: 3}, true},
			{"10.6.0.1", NextHop{Endpoint: ap("198.51.100.8:4500"), Tunnel: 9}, true},
		},
	}, {
		name:   "next hop through the default route",
		routes: []Route{hub, bgp("10.6.0.0/24", "100.64.9.9", peerA)},
		want:   []want{{"10.6.0.0/24", ReasonNone, "0.0.0.0/0", 1}},
		look:   []look{{"10.6.0.1", NextHop{Endpoint: epHub, Tunnel: 2}, true}},
	}, {
		// The next hop's longest match does not resolve: no fall-back for
		// the next hop, but packets take the default route.
		name: "next hop via an unresolved prefix",
		routes: []Route{
			hub,
			bgp("10.8.0.0/16", "10.9.0.1", peerA), bgp("10.9.0.0/16", "10.8.0.1", peerA), // a loop
			bgp("10.6.0.0/24", "10.9.9.9", peerA),
		},
		want: []want{{"10.9.0.0/16", ReasonLoop, "10.8.0.0/16", 0}, {"10.6.0.0/24", ReasonNextHopUnresolved, "10.9.0.0/16", 0}},
		look: []look{{"10.6.0.1", NextHop{Endpoint: epHub, Tunnel: 2}, true}},
	}, {
		name:   "no route to next hop",
		routes: []Route{bgp("10.6.0.0/24", "100.64.9.9", peerA)},
		want:   []want{{"10.6.0.0/24", ReasonNoRoute, "", 0}},
		look:   []look{{"10.6.0.1", NextHop{}, false}},
	}, {
		name:   "two-route loop",
		routes: []Route{hub, bgp("10.7.0.0/24", "10.8.0.1", peerA), bgp("10.8.0.0/24", "10.7.0.1", peerA)},
		want:   []want{{"10.7.0.0/24", ReasonLoop, "10.8.0.0/24", 0}, {"10.8.0.0/24", ReasonLoop, "10.7.0.0/24", 0}},
		look:   []look{{"10.7.0.1", NextHop{Endpoint: epHub, Tunnel: 2}, true}},
	}, {
		name: "three-route loop",
		routes: []Route{
			bgp("10.7.0.0/24", "10.8.0.1", peerA), bgp("10.8.0.0/24", "10.9.0.1", peerA), bgp("10.9.0.0/24", "10.7.0.1", peerA),
			bgp("10.10.0.0/24", "10.9.0.5", peerA), // depends on the loop
		},
		want: []want{
			{"10.7.0.0/24", ReasonLoop, "10.8.0.0/24", 0},
			{"10.9.0.0/24", ReasonLoop, "10.7.0.0/24", 0},
			{"10.10.0.0/24", ReasonNextHopUnresolved, "10.9.0.0/24", 0},
		},
	}, {
		name:   "next hop inside its own prefix",
		routes: []Route{bgp("10.9.0.0/24", "10.9.0.1", peerA)},
		want:   []want{{"10.9.0.0/24", ReasonLoop, "10.9.0.0/24", 0}},
	}, {
		name:   "next hop inside its own prefix with a longer route",
		routes: []Route{bgp("10.9.0.0/24", "10.9.0.1", peerA), cpe("10.9.0.1/32", ep2)},
		want:   []want{{"10.9.0.0/24", ReasonNone, "10.9.0.1/32", 1}},
		look:   []look{{"10.9.0.200", NextHop{Endpoint: ep2, Tunnel: 1}, true}},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := New(c.opts...)
			mustApply(t, f, c.routes...)
			for _, w := range c.want {
				st := status(t, f, w.prefix)
				var via netip.Prefix
				if w.via != "" {
					via = pfx(w.via)
				}
				if st.Reason != w.reason || st.Via != via || st.Depth != w.depth || st.Resolved != (w.reason == ReasonNone) {
					t.Errorf("%s: reason %q via %s depth %d resolved %v; want %q via %s depth %d",
						w.prefix, st.Reason, st.Via, st.Depth, st.Resolved, w.reason, via, w.depth)
				}
			}
			for _, l := range c.look {
				nh, ok := f.Lookup(addr(l.dst))
				if nh != l.nh || ok != l.ok {
					t.Errorf("Lookup(%s) = %+v %v, want %+v %v", l.dst, nh, ok, l.nh, l.ok)
				}
			}
		})
	}
}

// A path that loops back through its own prefix is skipped in favour of a
// worse path; whatever resolves only through the loop is reported.
func TestLoopWithAlternative(t *testing.T) {
	f := New()
	p1 := bgp("10.1.0.0/24", "10.2.0.1", peerA)
	p1.LocalPref = 200
	p2 := Route{Prefix: pfx("10.1.0.0/24"), Endpoint: ep1, Tunnel: 1, Peer: peerB, Source: SourceBGP, LocalPref: 100}
	mustApply(t, f, p1, p2, bgp("10.2.0.0/24", "10.1.0.1", peerA))
	sts := f.Route(pfx("10.1.0.0/24"))
	if len(sts) != 2 || sts[0].Reason != ReasonLoop || sts[0].Selected || !sts[1].Selected || !sts[1].Resolved {
		t.Fatalf("10.1.0.0/24: %+v", sts)
	}
	if st := status(t, f, "10.2.0.0/24"); st.Reason != ReasonLoop {
		t.Fatalf("10.2.0.0/24: %+v", st)
	}
	if nh, _ := f.Lookup(addr("10.1.0.1")); nh.Endpoint != ep1 {
		t.Fatalf("Lookup = %+v", nh)
	}
	un := f.Unresolved()
	if len(un) != 2 || un[0].Route.Prefix != pfx("10.1.0.0/24") || un[1].Route.Prefix != pfx("10.2.0.0/24") {
		t.Fatalf("Unresolved = %+v", un)
	}
}

// drain returns everything pending on the subscription, merged.
func drain(t *testing.T, s *Subscription) []Change {
	t.Helper()
	var out []Change
	for {
		u, ok, err := s.TryNext()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		out = append(out, u.Changes...)
	}
}

func TestNextHopTracking(t *testing.T) {
	f := New()
	mustApply(t, f, cpe("100.64.0.1/32", ep1), cpe("100.64.0.2/32", ep2))
	var deps []Route
	for i := range 50 {
		deps = append(deps, bgp(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i), 0}), 24).String(), "100.64.0.1", peerA))
	}
	// Second level: resolves through 10.1.7.0/24.
	deps = append(deps, bgp("10.2.0.0/24", "10.1.7.1", peerA))
	// Unrelated: through the other CPE.
	deps = append(deps, bgp("10.3.0.0/24", "100.64.0.2", peerB))
	mustApply(t, f, deps...)
	sub := f.Subscribe()
	defer sub.Close()
	if u, ok, _ := sub.TryNext(); !ok || !u.Snapshot || len(u.Changes) != 54 {
		t.Fatalf("snapshot: %v %+v", ok, u)
	}

	t.Run("endpoint change reaches exactly the dependents", func(t *testing.T) {
		mustApply(t, f, cpe("100.64.0.1/32", ep3))
		ch := drain(t, sub)
		if len(ch) != 52 { // 50 + the second level + the /32 itself
			t.Fatalf("%d changes, want 52: %+v", len(ch), ch)
		}
		for _, c := range ch {
			if c.Kind != Changed || len(c.NextHops) != 1 || c.NextHops[0].Endpoint != ep3 {
				t.Fatalf("change %+v", c)
			}
			if c.Prefix == pfx("10.3.0.0/24") {
				t.Fatalf("unrelated prefix changed")
			}
		}
		if nh, _ := f.Lookup(addr("10.2.0.1")); nh.Endpoint != ep3 {
			t.Fatalf("second level: %+v", nh)
		}
	})
	t.Run("a longer prefix takes the next hop over", func(t *testing.T) {
		mustApply(t, f, cpe("10.1.7.1/32", ep2))
		ch := drain(t, sub)
		want := map[netip.Prefix]netip.AddrPort{pfx("10.1.7.1/32"): ep2, pfx("10.2.0.0/24"): ep2}
		if len(ch) != len(want) {
			t.Fatalf("changes %+v", ch)
		}
		for _, c := range ch {
			if want[c.Prefix] != c.NextHops[0].Endpoint {
				t.Fatalf("change %+v", c)
			}
		}
		if st := status(t, f, "10.2.0.0/24"); st.Via != pfx("10.1.7.1/32") || st.Depth != 1 {
			t.Fatalf("10.2.0.0/24: %+v", st)
		}
	})
	t.Run("next hop route withdrawn", func(t *testing.T) {
		if err := f.Withdraw(pfx("100.64.0.1/32"), netip.Addr{}); err != nil {
			t.Fatal(err)
		}
		ch := drain(t, sub)
		if len(ch) != 51 { // the 50 and the /32; 10.2.0.0/24 goes through 10.1.7.1/32 now
			t.Fatalf("%d changes, want 51", len(ch))
		}
		for _, c := range ch {
			if c.Kind != Removed {
				t.Fatalf("change %+v", c)
			}
		}
		if _, ok := f.Lookup(addr("10.1.3.1")); ok {
			t.Fatal("dependent still forwards")
		}
		if st := status(t, f, "10.1.3.0/24"); st.Reason != ReasonNoRoute {
			t.Fatalf("10.1.3.0/24: %+v", st)
		}
		if got := len(f.Unresolved()); got != 50 {
			t.Fatalf("Unresolved: %d paths, want 50", got)
		}
	})
	t.Run("next hop route comes back", func(t *testing.T) {
		mustApply(t, f, cpe("100.64.0.1/32", ep1))
		ch := drain(t, sub)
		if len(ch) != 51 {
			t.Fatalf("%d changes, want 51", len(ch))
		}
		for _, c := range ch {
			if c.Kind != Added || c.NextHops[0].Endpoint != ep1 {
				t.Fatalf("change %+v", c)
			}
		}
	})
	t.Run("peer goes away", func(t *testing.T) {
		if n := f.WithdrawPeer(peerA); n != 51 {
			t.Fatalf("WithdrawPeer = %d, want 51", n)
		}
		if st := f.Stats(); st.Paths != 4 || st.Prefixes4 != 4 || st.NextHops != 1 {
			t.Fatalf("Stats = %+v", st)
		}
	})
}

func TestBestPath(t *testing.T) {
	site := pfx("10.50.0.0/24")
	primary := Route{Prefix: site, NextHop: addr("100.64.0.1"), Peer: peerA, Source: SourceBGP, LocalPref: 200}
	backup := Route{Prefix: site, NextHop: addr("100.64.0.2"), Peer: peerB, Source: SourceBGP, LocalPref: 100}

	t.Run("local preference, then failover", func(t *testing.T) {
		f := New()
		mustApply(t, f, cpe("100.64.0.1/32", ep1), cpe("100.64.0.2/32", ep2), primary, backup)
		if nh, _ := f.Lookup(addr("10.50.0.1")); nh.Endpoint != ep1 {
			t.Fatalf("best = %+v", nh)
		}
		// The primary's next hop stops resolving: the backup takes over.
		if err := f.Withdraw(pfx("100.64.0.1/32"), netip.Addr{}); err != nil {
			t.Fatal(err)
		}
		if nh, _ := f.Lookup(addr("10.50.0.1")); nh.Endpoint != ep2 {
			t.Fatalf("after failover = %+v", nh)
		}
		sts := f.Route(site)
		if sts[0].Selected || !sts[1].Selected {
			t.Fatalf("selection %+v", sts)
		}
	})
	t.Run("source before local preference, lower peer last", func(t *testing.T) {
		f := New()
		st := Route{Prefix: site, Endpoint: ep3, Source: SourceStatic}
		mustApply(t, f, cpe("100.64.0.1/32", ep1), cpe("100.64.0.2/32", ep2), primary, backup, st)
		if nh, _ := f.Lookup(addr("10.50.0.1")); nh.Endpoint != ep3 {
			t.Fatalf("static should win: %+v", nh)
		}
		b2 := backup
		b2.LocalPref = 200 // ties with the primary: the lower peer address wins
		if err := f.Withdraw(site, netip.Addr{}); err != nil {
			t.Fatal(err)
		}
		mustApply(t, f, b2)
		if nh, _ := f.Lookup(addr("10.50.0.1")); nh.Endpoint != ep1 {
			t.Fatalf("tie: %+v (peer %s < %s)", nh, peerA, peerB)
		}
	})
	t.Run("multipath", func(t *testing.T) {
		f := New(WithMultipath(true))
		b2 := backup
		b2.LocalPref = 200
		mustApply(t, f, cpe("100.64.0.1/32", ep1), cpe("100.64.0.2/32", ep2), primary, b2)
		seen := map[netip.AddrPort]int{}
		for h := range uint32(64) {
			nh, ok := f.LookupFlow(addr("10.50.0.1"), h)
			if !ok {
				t.Fatal("no route")
			}
			seen[nh.Endpoint]++
			again, _ := f.LookupFlow(addr("10.50.0.1"), h)
			if again != nh {
				t.Fatal("one flow, two next hops")
			}
		}
		if seen[ep1] != 32 || seen[ep2] != 32 {
			t.Fatalf("spread %v", seen)
		}
		if nh, _ := f.Lookup(addr("10.50.0.1")); nh.Endpoint != ep1 {
			t.Fatalf("Lookup = %+v, want the best", nh)
		}
		sts := f.Route(site)
		if !sts[0].Selected || !sts[1].Selected {
			t.Fatalf("selection %+v", sts)
		}
	})
}

func TestValidation(t *testing.T) {
	good := bgp("10.1.0.0/24", "100.64.0.1", peerA)
	cases := []struct {
		name string
		r    Route
		err  error
	}{
		{"invalid prefix", Route{NextHop: addr("100.64.0.1"), Source: SourceBGP}, ErrInvalidPrefix},
		{"unmasked prefix", Route{Prefix: netip.PrefixFrom(addr("10.1.0.1"), 24), NextHop: addr("100.64.0.1"), Source: SourceBGP}, ErrInvalidPrefix},
		{"mapped prefix", Route{Prefix: pfx("::ffff:10.1.0.0/120"), NextHop: addr("::ffff:100.64.0.1"), Source: SourceBGP}, ErrInvalidPrefix},
		{"next hop family", Route{Prefix: pfx("10.1.0.0/24"), NextHop: addr("2001:db8::1"), Source: SourceBGP}, ErrNextHopFamily},
		{"mapped next hop", Route{Prefix: pfx("2001:db8::/64"), NextHop: addr("::ffff:100.64.0.1"), Source: SourceBGP}, ErrNextHopFamily},
		{"self next hop", Route{Prefix: pfx("100.64.0.9/32"), NextHop: addr("100.64.0.9"), Source: SourceBGP}, ErrSelfNextHop},
		{"self next hop v6", Route{Prefix: pfx("2001:db8::9/128"), NextHop: addr("2001:db8::9"), Source: SourceBGP}, ErrSelfNextHop},
		{"no next hop", Route{Prefix: pfx("10.1.0.0/24"), Source: SourceBGP}, ErrNoNextHop},
		{"unspecified next hop", Route{Prefix: pfx("10.1.0.0/24"), NextHop: addr("0.0.0.0"), Source: SourceBGP}, ErrNoNextHop},
		{"no source", Route{Prefix: pfx("10.1.0.0/24"), NextHop: addr("100.64.0.1")}, ErrInvalidSource},
		{"unknown source", Route{Prefix: pfx("10.1.0.0/24"), NextHop: addr("100.64.0.1"), Source: 9}, ErrInvalidSource},
		{"unspecified endpoint", Route{Prefix: pfx("10.1.0.0/24"), Endpoint: ap("0.0.0.0:4500"), Source: SourceBGP}, ErrInvalidEndpoint},
		{"zoned endpoint", Route{Prefix: pfx("10.1.0.0/24"), Endpoint: netip.AddrPortFrom(addr("fe80::1%eth0"), 4500), Source: SourceBGP}, ErrInvalidEndpoint},
		{"zoned peer", Route{Prefix: pfx("10.1.0.0/24"), Endpoint: ep1, Peer: addr("fe80::1%eth0"), Source: SourceBGP}, ErrInvalidPeer},
	}
	f := New()
	mustApply(t, f, cpe("100.64.0.1/32", ep1))
	before := f.Stats()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := f.Apply([]Op{{Route: good}, {Route: c.r}})
			var re *RouteError
			if !errors.Is(err, c.err) || !errors.As(err, &re) || re.Prefix != c.r.Prefix {
				t.Fatalf("err = %v, want %v naming %s", err, c.err, c.r.Prefix)
			}
			if !strings.HasPrefix(err.Error(), "routing: "+c.r.Prefix.String()) {
				t.Fatalf("message %q does not start with the prefix", err)
			}
			if st := f.Stats(); st.Paths != before.Paths || st.Batches != before.Batches {
				t.Fatalf("FIB changed by a refused batch: %+v", st)
			}
			if _, ok := f.Lookup(addr("10.1.0.1")); ok {
				t.Fatal("the good route of the refused batch was applied")
			}
		})
	}
	if err := f.Withdraw(netip.PrefixFrom(addr("10.1.0.1"), 24), peerA); !errors.Is(err, ErrInvalidPrefix) {
		t.Fatalf("Withdraw of an unmasked prefix: %v", err)
	}
	if err := f.Withdraw(pfx("10.99.0.0/24"), peerA); err != nil {
		t.Fatalf("Withdraw of an absent path: %v", err)
	}
}

func TestLookupAllocs(t *testing.T) {
	f := New(WithMultipath(true))
	b := Route{Prefix: pfx("10.50.0.0/24"), Endpoint: ep2, Peer: peerB, Source: SourceBGP}
	mustApply(t, f, cpe("100.64.0.1/32", ep1), bgp("10.50.0.0/24", "100.64.0.1", peerA), b,
		Route{Prefix: pfx("2001:db8::/48"), Endpoint: ep3, Source: SourceStatic})
	for _, d := range []netip.Addr{{}, addr("::ffff:10.50.0.1"), addr("fe80::1%eth0")} {
		if nh, ok := f.Lookup(d); ok {
			t.Fatalf("Lookup(%v) = %+v", d, nh)
		}
	}
	dsts := []netip.Addr{addr("10.50.0.1"), addr("2001:db8::1"), addr("10.99.0.1")}
	var sink NextHop
	n := testing.AllocsPerRun(1000, func() {
		for i, d := range dsts {
			a, _ := f.Lookup(d)
			c, _ := f.LookupFlow(d, uint32(i))
			sink = a
			sink = c
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations per lookup round, want 0", n)
	}
	_ = sink
}

func TestFeed(t *testing.T) {
	t.Run("snapshot then changes", func(t *testing.T) {
		f := New()
		mustApply(t, f, cpe("100.64.0.1/32", ep1), bgp("10.1.0.0/24", "100.64.0.1", peerA), bgp("10.2.0.0/24", "100.64.9.9", peerA))
		sub := f.Subscribe()
		defer sub.Close()
		u, err := sub.Next(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		want := []Change{
			{Kind: Added, Prefix: pfx("10.1.0.0/24"), NextHops: []NextHop{{Endpoint: ep1, Tunnel: 1}}},
			{Kind: Added, Prefix: pfx("100.64.0.1/32"), NextHops: []NextHop{{Endpoint: ep1, Tunnel: 1}}},
		}
		if !u.Snapshot || !reflect.DeepEqual(u.Changes, want) {
			t.Fatalf("snapshot %+v", u)
		}
		// Next blocks until a change comes.
		got := make(chan Update, 1)
		go func() {
			u, err := sub.Next(t.Context())
			if err != nil {
				t.Error(err)
			}
			got <- u
		}()
		mustApply(t, f, cpe("100.64.9.9/32", ep2))
		u = <-got
		want = []Change{
			{Kind: Added, Prefix: pfx("10.2.0.0/24"), NextHops: []NextHop{{Endpoint: ep2, Tunnel: 1}}},
			{Kind: Added, Prefix: pfx("100.64.9.9/32"), NextHops: []NextHop{{Endpoint: ep2, Tunnel: 1}}},
		}
		if u.Snapshot || !reflect.DeepEqual(u.Changes, want) {
			t.Fatalf("update %+v", u)
		}
	})
	t.Run("coalescing", func(t *testing.T) {
		f := New()
		sub := f.Subscribe()
		defer sub.Close()
		drain(t, sub)
		// Added then Removed in separate batches cancels out; Added then
		// Changed stays Added.
		mustApply(t, f, cpe("100.64.0.1/32", ep1), cpe("100.64.0.2/32", ep1))
		if err := f.Withdraw(pfx("100.64.0.1/32"), netip.Addr{}); err != nil {
			t.Fatal(err)
		}
		mustApply(t, f, cpe("100.64.0.2/32", ep2))
		u, ok, _ := sub.TryNext()
		want := []Change{{Kind: Added, Prefix: pfx("100.64.0.2/32"), NextHops: []NextHop{{Endpoint: ep2, Tunnel: 1}}}}
		if !ok || u.Snapshot || !reflect.DeepEqual(u.Changes, want) {
			t.Fatalf("update %+v", u)
		}
	})
	t.Run("a reader that falls behind gets a snapshot", func(t *testing.T) {
		f := New(WithMaxPending(8))
		sub := f.Subscribe()
		defer sub.Close()
		drain(t, sub)
		for i := range 20 {
			mustApply(t, f, cpe(netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, 1, byte(i)}), 32).String(), ep1))
		}
		sub.mu.Lock()
		held := sub.count + len(sub.folded)
		sub.mu.Unlock()
		if held > 8 {
			t.Fatalf("subscription holds %d changes, bound 8", held)
		}
		u, ok, _ := sub.TryNext()
		if !ok || !u.Snapshot || len(u.Changes) != 20 {
			t.Fatalf("update %v %+v", ok, u)
		}
	})
	t.Run("close", func(t *testing.T) {
		f := New()
		sub := f.Subscribe()
		sub.Close()
		if _, err := sub.Next(t.Context()); !errors.Is(err, ErrClosed) {
			t.Fatalf("Next after Close: %v", err)
		}
		mustApply(t, f, cpe("100.64.0.1/32", ep1)) // no one to tell
	})
}

// Readers run against a writer that moves every entry to a new generation in
// each batch; a batch must be seen all at once, so the generations a reader
// sees never go backwards, and a route that stays is never missing. A
// subscriber follows along and must end up with the FIB's final entries.
func TestConcurrentReadersAndWriter(t *testing.T) {
	const (
		prefixes    = 128
		generations = 300
		readers     = 4
	)
	genEndpoint := func(g int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(g >> 8), byte(g)}), 4500)
	}
	genOf := func(ep netip.AddrPort) int {
		b := ep.Addr().As4()
		return int(b[2])<<8 | int(b[3])
	}
	dst := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 1, byte(i), 1}) }
	batch := func(g int) []Op {
		ops := []Op{{Route: cpe("100.64.0.1/32", genEndpoint(g))}}
		for i := range prefixes {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i), 0}), 24)
			switch {
			case i%2 == 0: // resolves through the /32: one shared slot
				ops = append(ops, Op{Route: Route{Prefix: p, NextHop: addr("100.64.0.1"), Peer: peerA, Source: SourceBGP, Tunnel: 1}})
			case i%4 == 1 && g%3 == 2: // comes and goes
				ops = append(ops, Op{Route: Route{Prefix: p, Peer: peerB}, Withdraw: true})
			default: // its own endpoint
				ops = append(ops, Op{Route: Route{Prefix: p, Endpoint: genEndpoint(g), Peer: peerB, Source: SourceBGP, Tunnel: 1}})
			}
		}
		return ops
	}
	f := New()
	if err := f.Apply(append(batch(1), Op{Route: Route{Prefix: pfx("0.0.0.0/0"), Endpoint: epHub, Source: SourceStatic}})); err != nil {
		t.Fatal(err)
	}
	sub := f.Subscribe()
	defer sub.Close()
	done := make(chan struct{})
	errs := make(chan error, readers+1)
	for r := range readers {
		go func() {
			last, n := 0, 0
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				i := (n*7 + r) % prefixes
				n++
				nh, ok := f.LookupFlow(dst(i), uint32(n))
				if !ok {
					errs <- errors.New("lookup found no route")
					return
				}
				if nh.Endpoint == epHub {
					if i%4 != 1 {
						errs <- errors.New("a route that never goes away fell back to the default")
						return
					}
					continue
				}
				g := genOf(nh.Endpoint)
				if g < last {
					errs <- errors.New("generation went backwards: a batch was seen in part")
					return
				}
				last = g
			}
		}()
	}
	// The writer's last batch adds a marker route. The subscriber has seen
	// every batch once it holds the marker; only then may it stop, since
	// Close drops what is still pending.
	marker := Route{Prefix: pfx("192.0.2.0/24"), Endpoint: epHub, Source: SourceStatic}
	fs := feedState{}
	subDone := make(chan error, 1)
	go func() {
		for {
			u, err := sub.Next(t.Context())
			if err == nil {
				fs, err = fs.update(u)
			}
			if err != nil {
				subDone <- err
				return
			}
			if _, ok := fs[marker.Prefix]; ok {
				subDone <- nil
				return
			}
		}
	}()
	for g := 2; g <= generations; g++ {
		if err := f.Apply(batch(g)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Apply([]Op{{Route: marker}}); err != nil {
		t.Fatal(err)
	}
	close(done)
	for range readers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-subDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the subscriber did not catch up with the last batch within 30s")
	}
	want := feedState{}
	for _, c := range f.Subscribe().mustSnapshot(t) {
		want[c.Prefix] = c.NextHops
	}
	if !reflect.DeepEqual(fs, want) {
		t.Fatalf("subscriber ended with %d entries, FIB has %d", len(fs), len(want))
	}
}

func (s *Subscription) mustSnapshot(t *testing.T) []Change {
	t.Helper()
	defer s.Close()
	u, ok, err := s.TryNext()
	if err != nil || !ok || !u.Snapshot {
		t.Fatalf("snapshot: %v %v %+v", ok, err, u)
	}
	return u.Changes
}

func TestLoopsAreLogged(t *testing.T) {
	var buf strings.Builder
	f := New(WithLogger(slog.New(slog.NewTextHandler(&buf, nil))))
	mustApply(t, f, bgp("10.7.0.0/24", "10.8.0.1", peerA), bgp("10.8.0.0/24", "10.7.0.1", peerA))
	out := buf.String()
	for _, want := range []string{`msg="next-hop resolution loop"`, "component=routing", "prefix=10.7.0.0/24", "prefix=10.8.0.0/24"} {
		if !strings.Contains(out, want) {
			t.Fatalf("log lacks %s:\n%s", want, out)
		}
	}
	buf.Reset()
	mustApply(t, f, Route{Prefix: pfx("10.8.0.0/24"), Endpoint: ep1, Peer: peerA, Source: SourceBGP})
	if out := buf.String(); !strings.Contains(out, "loop gone") || !strings.Contains(out, "prefix=10.7.0.0/24") {
		t.Fatalf("log after the loop was broken:\n%s", out)
	}
}

// Batches larger than the writer's reusable buffers, and the FIB emptied
// and refilled.
func TestLargeBatches(t *testing.T) {
	f := New()
	sub := f.Subscribe()
	defer sub.Close()
	drain(t, sub)
	const n = 6000
	add := []Op{{Route: cpe("100.64.0.1/32", ep1)}}
	del := []Op{{Route: Route{Prefix: pfx("100.64.0.1/32")}, Withdraw: true}}
	for i := range n {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)
		r := Route{Prefix: p, NextHop: addr("100.64.0.1"), Peer: peerA, Source: SourceBGP}
		if i%3 == 0 {
			r = Route{Prefix: p, Endpoint: ep2, Peer: peerB, Source: SourceBGP}
		}
		add = append(add, Op{Route: r})
		del = append(del, Op{Route: Route{Prefix: p, Peer: r.Peer}, Withdraw: true})
	}
	for round := range 3 {
		if err := f.Apply(add); err != nil {
			t.Fatal(err)
		}
		if st := f.Stats(); st.Paths != n+1 || st.Unresolved != 0 || st.NextHops != 1 {
			t.Fatalf("round %d: Stats = %+v", round, st)
		}
		// 10.23.109.0/24 is i=5997 (an endpoint), 10.23.110.0/24 i=5998 (a next hop).
		if nh, _ := f.Lookup(addr("10.23.109.9")); nh.Endpoint != ep2 {
			t.Fatalf("round %d: lookup %+v", round, nh)
		}
		if nh, _ := f.Lookup(addr("10.23.110.9")); nh.Endpoint != ep1 {
			t.Fatalf("round %d: lookup %+v", round, nh)
		}
		if ch := drain(t, sub); len(ch) != n+1 {
			t.Fatalf("round %d: %d changes after adding, want %d", round, len(ch), n+1)
		}
		if err := f.Apply(del); err != nil {
			t.Fatal(err)
		}
		if st := f.Stats(); st.Paths != 0 || st.Prefixes4 != 0 || st.NextHops != 0 {
			t.Fatalf("round %d: Stats after withdrawing everything = %+v", round, st)
		}
		if ch := drain(t, sub); len(ch) != n+1 {
			t.Fatalf("round %d: %d changes after withdrawing, want %d", round, len(ch), n+1)
		}
		if _, ok := f.Lookup(addr("10.1.1.1")); ok {
			t.Fatalf("round %d: lookup in an empty FIB", round)
		}
	}
}
