package routing

import (
	"fmt"
	"iter"
	"net/netip"
	"slices"
)

// Reason says why a path does not resolve.
type Reason uint8

// Reasons. ReasonNone means the path resolved.
const (
	ReasonNone              Reason = iota
	ReasonNoRoute                  // no route covers the next hop
	ReasonLoop                     // the next hop resolves back through this prefix
	ReasonTooDeep                  // more recursive lookups than the configured depth
	ReasonNextHopUnresolved        // the route covering the next hop does not resolve
)

func (r Reason) String() string {
	switch r {
	case ReasonNone:
		return "resolved"
	case ReasonNoRoute:
		return "no route to next hop"
	case ReasonLoop:
		return "next-hop resolution loop"
	case ReasonTooDeep:
		return "recursion too deep"
	case ReasonNextHopUnresolved:
		return "next hop via unresolved route"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// RouteStatus is one path as the FIB sees it, for status output.
type RouteStatus struct {
	Route Route

	// Selected is set on the path(s) packets to Route.Prefix use: the best
	// resolved path, or every equal-cost path with multipath on.
	Selected bool

	// Resolved reports whether the path resolves; NextHops is where it
	// leads (several with multipath further down the chain), Reason why not.
	Resolved bool
	NextHops []NextHop
	Reason   Reason

	// Via is the prefix the next hop was looked up in (invalid for a path
	// with an endpoint, a connected route or an underlay next hop), Depth
	// the number of recursive lookups the resolution took.
	Via   netip.Prefix
	Depth int
}

// Stats counts what the FIB holds.
type Stats struct {
	Prefixes4, Prefixes6 int    // prefixes with at least one path
	Paths                int    // paths (routes) in total
	Unresolved           int    // prefixes none of whose paths resolves
	NextHops             int    // distinct next hops tracked for recursive resolution
	Batches              uint64 // updates applied since New
}

// pathStatus lists the paths of prefix p (slot s) with their resolution.
func (w *writer) pathStatus(p netip.Prefix, s *slot) []RouteStatus {
	if s.d == nil {
		return []RouteStatus{statusOf(s.g.route(p), s.g.res, s.g.res.ok())}
	}
	d := s.d
	out := make([]RouteStatus, len(d.paths))
	var best *group
	for i, g := range d.paths {
		r := w.pathRes(d, g)
		sel := false
		if r.ok() {
			switch {
			case best == nil:
				best, sel = g, true
			case w.cfg.multipath && best.key.source == g.key.source && best.key.localPref == g.key.localPref:
				sel = true
			}
		}
		out[i] = statusOf(g.route(p), r, sel)
	}
	return out
}

func statusOf(r Route, res *resolution, selected bool) RouteStatus {
	return RouteStatus{Route: r, Selected: selected, Resolved: res.ok(), NextHops: res.hops,
		Reason: res.reason, Via: res.via, Depth: res.depth}
}

// Routes yields every path in prefix order, most preferred path first
// within a prefix. The FIB's lock is held while it runs: the loop body must
// not call the FIB.
func (f *FIB) Routes() iter.Seq[RouteStatus] {
	return func(yield func(RouteStatus) bool) {
		f.mu.Lock()
		defer f.mu.Unlock()
		w := f.w
		next, stop := iter.Pull2(w.unres.AllSorted())
		defer stop()
		up, us, uok := next()
		emit := func(p netip.Prefix, s *slot) bool {
			for _, st := range w.pathStatus(p, s) {
				if !yield(st) {
					return false
				}
			}
			return true
		}
		for p, id := range w.standby().AllSorted() {
			for uok && comparePrefix(up, p) < 0 {
				if !emit(up, us) {
					return
				}
				up, us, uok = next()
			}
			if !emit(p, w.slots[id]) {
				return
			}
		}
		for ; uok; up, us, uok = next() {
			if !emit(up, us) {
				return
			}
		}
	}
}

// Route returns the paths of one prefix, most preferred first.
func (f *FIB) Route(prefix netip.Prefix) []RouteStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, _ := f.w.find(prefix)
	if s == nil {
		return nil
	}
	return f.w.pathStatus(prefix, s)
}

// Unresolved returns every path that does not resolve, with the reason, in
// prefix order.
func (f *FIB) Unresolved() []RouteStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.w
	var out []RouteStatus
	for p, s := range w.unres.All() {
		out = append(out, w.pathStatus(p, s)...)
	}
	// Resolved prefixes can still have paths that do not resolve.
	for d := range w.dests {
		if !d.res.ok() {
			continue // listed above
		}
		for _, st := range w.pathStatus(d.prefix, d.slot) {
			if !st.Resolved {
				out = append(out, st)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b RouteStatus) int { return comparePrefix(a.Route.Prefix, b.Route.Prefix) })
	return out
}

// Stats returns counts of what the FIB holds.
func (f *FIB) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.w
	t := w.standby()
	return Stats{
		Prefixes4:  t.Size4() + w.unres.Size4(),
		Prefixes6:  t.Size6() + w.unres.Size6(),
		Paths:      w.paths,
		Unresolved: w.unres.Size(),
		NextHops:   len(w.tracks),
		Batches:    w.batches,
	}
}
