package routing

import (
	"net/netip"
	"slices"
)

// naive computes everything the FIB answers from scratch, by the rules in
// the package doc, with linear scans and no caching. It is slow on purpose:
// the differential tests hold the real FIB to it.
type naive struct {
	cfg    config
	routes map[netip.Prefix][]Route // paths of each prefix, most preferred first
}

type naiveValue struct {
	hops   []NextHop
	depth  int
	via    netip.Prefix
	reason Reason
}

func newNaive(cfg config) *naive {
	return &naive{cfg: cfg, routes: make(map[netip.Prefix][]Route)}
}

func (n *naive) upsert(r Route) {
	paths := slices.DeleteFunc(n.routes[r.Prefix], func(x Route) bool { return x.Peer == r.Peer })
	paths = append(paths, r)
	slices.SortFunc(paths, func(a, b Route) int { return comparePaths(&a, &b) })
	n.routes[r.Prefix] = paths
}

func (n *naive) withdraw(p netip.Prefix, peer netip.Addr) {
	paths := slices.DeleteFunc(n.routes[p], func(x Route) bool { return x.Peer == peer })
	if len(paths) == 0 {
		delete(n.routes, p)
		return
	}
	n.routes[p] = paths
}

func (n *naive) withdrawPeer(peer netip.Addr) int {
	count := 0
	for p, paths := range n.routes {
		for _, r := range paths {
			if r.Peer == peer {
				count++
				n.withdraw(p, peer)
				break
			}
		}
	}
	return count
}

// lpm is the longest prefix holding a, resolved or not.
func (n *naive) lpm(a netip.Addr) (netip.Prefix, bool) {
	best, ok := netip.Prefix{}, false
	for p := range n.routes {
		if p.Contains(a) && (!ok || p.Bits() > best.Bits()) {
			best, ok = p, true
		}
	}
	return best, ok
}

// reaches reports whether the recursive paths lead from prefix from to
// prefix to (through any number of next-hop lookups).
func (n *naive) reaches(from, to netip.Prefix) bool {
	seen := map[netip.Prefix]bool{from: true}
	stack := []netip.Prefix{from}
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if x == to {
			return true
		}
		for i := range n.routes[x] {
			r := &n.routes[x][i]
			if _, ok := n.cfg.terminal(r); ok {
				continue
			}
			if t, ok := n.lpm(r.NextHop); ok && !seen[t] {
				seen[t] = true
				stack = append(stack, t)
			}
		}
	}
	return false
}

// resolve computes every prefix's value and every path's status.
type naiveResult struct {
	values map[netip.Prefix]naiveValue
	paths  map[netip.Prefix][]RouteStatus
}

func (n *naive) resolve() naiveResult {
	res := naiveResult{values: map[netip.Prefix]naiveValue{}, paths: map[netip.Prefix][]RouteStatus{}}
	var value func(x netip.Prefix) naiveValue
	value = func(x netip.Prefix) naiveValue {
		if v, ok := res.values[x]; ok {
			return v
		}
		paths := n.routes[x]
		st := make([]RouteStatus, len(paths))
		var v naiveValue
		best := -1
		for i := range paths {
			r := &paths[i]
			s := &st[i]
			s.Route = *r
			if nh, ok := n.cfg.terminal(r); ok {
				s.Resolved, s.NextHops = true, []NextHop{nh}
			} else if t, ok := n.lpm(r.NextHop); !ok {
				s.Reason = ReasonNoRoute
			} else if s.Via = t; t == x || n.reaches(t, x) {
				s.Reason = ReasonLoop
			} else if tv := value(t); len(tv.hops) == 0 {
				s.Reason = ReasonNextHopUnresolved
			} else if tv.depth+1 > n.cfg.maxDepth {
				s.Reason, s.Depth = ReasonTooDeep, tv.depth+1
			} else {
				s.Resolved, s.NextHops, s.Depth = true, tv.hops, tv.depth+1
			}
			if !s.Resolved {
				continue
			}
			switch {
			case best < 0:
				best = i
				s.Selected = true
				v = naiveValue{hops: appendHops(nil, s.NextHops), depth: s.Depth, via: s.Via}
			case n.cfg.multipath && equalCost(&paths[best], r):
				s.Selected = true
				v.hops = appendHops(v.hops, s.NextHops)
			}
		}
		if best < 0 && len(st) > 0 {
			v.reason = st[0].Reason
		}
		res.values[x] = v
		res.paths[x] = st
		return v
	}
	for p := range n.routes {
		value(p)
	}
	return res
}

// resolved returns the forwarding entries: resolved prefixes and their hops.
func (r naiveResult) resolved() map[netip.Prefix][]NextHop {
	m := make(map[netip.Prefix][]NextHop)
	for p, v := range r.values {
		if len(v.hops) > 0 {
			m[p] = v.hops
		}
	}
	return m
}

// lookup is the longest resolved prefix holding dst.
func lookupIn(fwd map[netip.Prefix][]NextHop, dst netip.Addr, flow uint32) (NextHop, bool) {
	best, ok := netip.Prefix{}, false
	for p := range fwd {
		if p.Contains(dst) && (!ok || p.Bits() > best.Bits()) {
			best, ok = p, true
		}
	}
	if !ok {
		return NextHop{}, false
	}
	hops := fwd[best]
	return hops[flow%uint32(len(hops))], true
}
