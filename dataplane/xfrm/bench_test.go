//go:build linux

package xfrm

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/routing"
)

// benchRoutes is n IPv4 /24s spread over 100 group endpoints, as a CPE of a
// large group sees them.
func benchRoutes(n int) map[netip.Prefix]routing.NextHop {
	m := make(map[netip.Prefix]routing.NextHop, n)
	for i := range n {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)
		if i>>16 > 0 {
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		}
		ep := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i % 100 >> 8), byte(i % 100)}), 4500)
		m[p.Masked()] = routing.NextHop{Endpoint: ep, Tunnel: 1}
	}
	if len(m) != n {
		panic(fmt.Sprintf("%d routes, want %d", len(m), n))
	}
	return m
}

// BenchmarkReconcile measures what one FIB update costs the backend before
// netlink: computing every object and diffing them against what is
// installed, when nothing changed. The anchor, BenchmarkRouteCopy, is one
// pass copying the same routes into a new map.
func BenchmarkReconcile(b *testing.B) {
	sas := []dataplane.SA{{Keys: testKeys(0x1001, suiteCBC, 1), Dir: dataplane.Both, Tunnel: 1}}
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			routes := benchRoutes(n)
			in := testInputs(sas, routes)
			d, err := compute(in)
			if err != nil {
				b.Fatal(err)
			}
			have := newInstalled()
			applyPlan(have, diff(have, d))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				d, err := compute(in)
				if err != nil {
					b.Fatal(err)
				}
				if p := diff(have, d); !p.empty() {
					b.Fatal("plan not empty")
				}
			}
		})
	}
}

func BenchmarkRouteCopy(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			routes := benchRoutes(n)
			b.ReportAllocs()
			for b.Loop() {
				m := make(map[netip.Prefix]routing.NextHop)
				for p, nh := range routes {
					m[p] = nh
				}
				if len(m) != n {
					b.Fatal(len(m))
				}
			}
		})
	}
}

// BenchmarkUpdate measures what one FIB update costs the backend before
// netlink with the incremental reconciliation (engine): folding the change
// in, computing what it touches and the plan against what is installed.
//   - move: one prefix moves to another endpoint of its tunnel (and back
//     in the next iteration): its out policy changes.
//   - new-endpoint: a prefix behind a new group endpoint arrives (and goes
//     in the next iteration): a new outbound state, three policies, the
//     SA level recomputed.
//   - same: an update that changes nothing.
//
// BenchmarkReconcile (the whole computation) and BenchmarkRouteCopy are
// the anchors.
func BenchmarkUpdate(b *testing.B) {
	sas := []dataplane.SA{{Keys: testKeys(0x1001, suiteCBC, 1), Dir: dataplane.Both, Tunnel: 1}}
	for _, n := range []int{1000, 10000, 100000} {
		routes := benchRoutes(n)
		var some netip.Prefix
		for p := range routes {
			some = p
			break
		}
		home := routes[some]
		var away routing.NextHop // another endpoint the FIB already has
		for _, nh := range routes {
			if nh.Endpoint != home.Endpoint {
				away = nh
				break
			}
		}
		fresh := netip.MustParsePrefix("172.16.0.0/24")
		newEP := routing.NextHop{Endpoint: netip.MustParseAddrPort("198.19.0.1:4500"), Tunnel: 1}
		for _, c := range []struct {
			name string
			upd  func(i int) routing.Update
		}{
			{"move", func(i int) routing.Update {
				nh := home
				if i%2 == 0 {
					nh = away
				}
				return routing.Update{Changes: []routing.Change{{Prefix: some, Kind: routing.Changed, NextHops: []routing.NextHop{nh}}}}
			}},
			{"new-endpoint", func(i int) routing.Update {
				if i%2 == 0 {
					return routing.Update{Changes: []routing.Change{{Prefix: fresh, Kind: routing.Added, NextHops: []routing.NextHop{newEP}}}}
				}
				return routing.Update{Changes: []routing.Change{{Prefix: fresh, Kind: routing.Removed}}}
			}},
			{"same", func(int) routing.Update {
				return routing.Update{Changes: []routing.Change{{Prefix: some, Kind: routing.Changed, NextHops: []routing.NextHop{home}}}}
			}},
		} {
			b.Run(fmt.Sprintf("routes=%d/%s", n, c.name), func(b *testing.B) {
				e := newEngine(nil)
				snap := routing.Update{Snapshot: true}
				for p, nh := range routes {
					snap.Changes = append(snap.Changes, routing.Change{Prefix: p, Kind: routing.Added, NextHops: []routing.NextHop{nh}})
				}
				e.update(snap)
				have := newInstalled()
				in := testInputs(sas, nil)
				p, err := e.reconcile(in, have)
				if err != nil {
					b.Fatal(err)
				}
				applyPlan(have, p)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					e.update(c.upd(i))
					p, err := e.reconcile(in, have)
					if err != nil {
						b.Fatal(err)
					}
					if c.name != "same" && p.empty() {
						b.Fatal("empty plan")
					}
					applyPlan(have, p)
					i++
				}
			})
		}
	}
}
