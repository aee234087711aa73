package routing

import (
	"fmt"
	"net/netip"
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
