package routing

import "net/netip"

// comparePaths orders the paths of one prefix, most preferred first (see
// Best path in the package doc): lower Source, then higher LocalPref, then
// the lower Peer address. Two paths of one prefix never have the same Peer,
// so the order is total.
func comparePaths(a, b *Route) int {
	if a.Source != b.Source {
		if a.Source < b.Source {
			return -1
		}
		return 1
	}
	if a.LocalPref != b.LocalPref {
		if a.LocalPref > b.LocalPref {
			return -1
		}
		return 1
	}
	return a.Peer.Compare(b.Peer)
}

// equalCost reports whether two paths tie for multipath.
func equalCost(a, b *Route) bool {
	return a.Source == b.Source && a.LocalPref == b.LocalPref
}

// terminal returns where a path goes without a recursive lookup: local
// delivery for a connected route, the Tunnel Encapsulation endpoint, or an
// underlay next hop. ok is false for a path that needs its next hop looked
// up in the FIB.
func (c *config) terminal(r *Route) (nh NextHop, ok bool) {
	switch {
	case r.Source == SourceConnected:
		return NextHop{Local: true}, true
	case r.Endpoint.IsValid():
		return NextHop{Endpoint: r.Endpoint, Tunnel: r.Tunnel}, true
	}
	if u, ok := c.underlayFor(r.NextHop); ok {
		t := r.Tunnel
		if t == 0 {
			t = u.Tunnel
		}
		return NextHop{Endpoint: netip.AddrPortFrom(r.NextHop, u.Port), Tunnel: t}, true
	}
	return NextHop{}, false
}

// appendHops appends the hops not already in dst.
func appendHops(dst, src []NextHop) []NextHop {
outer:
	for _, h := range src {
		for _, d := range dst {
			if d == h {
				continue outer
			}
		}
		dst = append(dst, h)
	}
	return dst
}
