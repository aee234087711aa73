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
