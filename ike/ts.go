package ike

import (
	"net/netip"

	"github.com/mpsa-vpn/mpsa/ike/wire"
)

// Traffic selector narrowing (RFC 7296 §2.9): the responder answers with
// the intersection of what the initiator proposed and what its policy
// allows.

// intersect returns the selector both a and b cover.
func intersect(a, b wire.Selector) (wire.Selector, bool) {
	if a.Start.Is4() != b.Start.Is4() {
		return wire.Selector{}, false
	}
	var r wire.Selector
	switch {
	case a.IPProto == 0:
		r.IPProto = b.IPProto
	case b.IPProto == 0 || a.IPProto == b.IPProto:
		r.IPProto = a.IPProto
	default:
		return wire.Selector{}, false
	}
	r.StartPort, r.EndPort = max(a.StartPort, b.StartPort), min(a.EndPort, b.EndPort)
	if r.StartPort > r.EndPort {
		return wire.Selector{}, false
	}
	r.Start, r.End = a.Start, a.End
	if b.Start.Compare(r.Start) > 0 {
		r.Start = b.Start
	}
	if b.End.Compare(r.End) < 0 {
		r.End = b.End
	}
	if r.Start.Compare(r.End) > 0 {
		return wire.Selector{}, false
	}
	return r, true
}

// narrow intersects every proposed selector with every allowed one.
func narrow(proposed, allowed []wire.Selector) []wire.Selector {
	var out []wire.Selector
	for _, p := range proposed {
		for _, a := range allowed {
			if r, ok := intersect(p, a); ok && !containsSelector(out, r) {
				out = append(out, r)
			}
		}
	}
	return out
}

func containsSelector(ss []wire.Selector, s wire.Selector) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// covers reports whether every selector of sub lies inside one of sup, as
// an initiator checks the responder's narrowing.
func covers(sup, sub []wire.Selector) bool {
	for _, s := range sub {
		ok := false
		for _, p := range sup {
			if r, in := intersect(p, s); in && r == s {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// selectors turns prefixes into any-protocol, any-port selectors.
func selectors(ps []netip.Prefix) []wire.Selector {
	out := make([]wire.Selector, 0, len(ps))
	for _, p := range ps {
		out = append(out, wire.SelectorFromPrefix(p))
	}
	return out
}

func hostPrefix(a netip.Addr) netip.Prefix {
	return netip.PrefixFrom(a, a.BitLen())
}

// NarrowDefault is the responder narrowing used without a Policy.NarrowTS
// hook: TSr within local (the responder's own address when empty), TSi
// within the peer's virtual IPs if any, else within remote (the peer's
// address when empty).
func NarrowDefault(tsi, tsr []wire.Selector, local, remote []netip.Prefix, vips []netip.Prefix, localAddr, peerAddr netip.Addr) (ni, nr []wire.Selector) {
	allowR := selectors(local)
	if len(local) == 0 {
		allowR = selectors([]netip.Prefix{hostPrefix(localAddr)})
	}
	var allowI []wire.Selector
	switch {
	case len(vips) > 0:
		for _, v := range vips {
			allowI = append(allowI, wire.SelectorFromPrefix(hostPrefix(v.Addr())))
		}
	case len(remote) > 0:
		allowI = selectors(remote)
	default:
		allowI = selectors([]netip.Prefix{hostPrefix(peerAddr)})
	}
	return narrow(tsi, allowI), narrow(tsr, allowR)
}

// SelectorPrefixes returns the prefixes that exactly cover s's address
// range (ports and protocol ignored), for routing.
func SelectorPrefixes(s wire.Selector) []netip.Prefix {
	var out []netip.Prefix
	start, end := s.Start, s.End
	for start.IsValid() && start.Compare(end) <= 0 {
		bits := start.BitLen()
		// Grow the prefix while it stays aligned and inside the range.
		l := bits
		for l > 0 {
			p := netip.PrefixFrom(start, l-1).Masked()
			if p.Addr() != start || lastAddr(p).Compare(end) > 0 {
				break
			}
			l--
		}
		p := netip.PrefixFrom(start, l)
		out = append(out, p)
		last := lastAddr(p)
		if last == maxAddr(bits) {
			break
		}
		start = last.Next()
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	return wire.SelectorFromPrefix(p).End
}

func maxAddr(bits int) netip.Addr {
	if bits == 32 {
		return netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	var a [16]byte
	for i := range a {
		a[i] = 0xff
	}
	return netip.AddrFrom16(a)
}

// unspecified is the unspecified address of a's family.
func unspecified(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}
