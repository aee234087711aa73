package routing

import (
	"errors"
	"fmt"
	"net/netip"
)

// Validation failures. A rejected route comes back as a *RouteError that
// wraps one of these and names the prefix; errors.Is works on it.
var (
	ErrInvalidPrefix   = errors.New("invalid or unmasked prefix")
	ErrNextHopFamily   = errors.New("next hop of the wrong address family")
	ErrSelfNextHop     = errors.New("next hop is the route's own host prefix")
	ErrNoNextHop       = errors.New("no next hop, endpoint or connected source")
	ErrInvalidSource   = errors.New("unknown route source")
	ErrInvalidEndpoint = errors.New("invalid endpoint address")
	ErrInvalidPeer     = errors.New("invalid peer address")
)

// RouteError is a route the FIB refused. Nothing of the batch that carried
// it was applied.
type RouteError struct {
	Prefix netip.Prefix
	Peer   netip.Addr
	Err    error
}

func (e *RouteError) Error() string {
	if e.Peer.IsValid() {
		return fmt.Sprintf("routing: %s from %s: %v", e.Prefix, e.Peer, e.Err)
	}
	return fmt.Sprintf("routing: %s: %v", e.Prefix, e.Err)
}

func (e *RouteError) Unwrap() error { return e.Err }

// validate checks one route the way Upsert and Apply do.
func validate(r *Route) error {
	fail := func(err error) error { return &RouteError{Prefix: r.Prefix, Peer: r.Peer, Err: err} }
	if !validPrefix(r.Prefix) {
		return fail(ErrInvalidPrefix)
	}
	if r.Peer.IsValid() && r.Peer.Zone() != "" {
		return fail(ErrInvalidPeer)
	}
	if r.Source < SourceConnected || r.Source > SourceBGP {
		return fail(ErrInvalidSource)
	}
	if r.Endpoint.IsValid() && (r.Endpoint.Addr().IsUnspecified() || r.Endpoint.Addr().Zone() != "") {
		return fail(ErrInvalidEndpoint)
	}
	if r.Endpoint != (netip.AddrPort{}) && !r.Endpoint.IsValid() {
		return fail(ErrInvalidEndpoint)
	}
	if r.NextHop.IsValid() {
		if r.NextHop.Is4() != r.Prefix.Addr().Is4() || r.NextHop.Is4In6() || r.NextHop.Zone() != "" {
			return fail(ErrNextHopFamily)
		}
	}
	if r.Source == SourceConnected || r.Endpoint.IsValid() {
		return nil
	}
	if !r.NextHop.IsValid() || r.NextHop.IsUnspecified() {
		return fail(ErrNoNextHop)
	}
	if r.Prefix.IsSingleIP() && r.Prefix.Addr() == r.NextHop {
		return fail(ErrSelfNextHop)
	}
	return nil
}

func validateWithdraw(prefix netip.Prefix, peer netip.Addr) error {
	if !validPrefix(prefix) {
		return &RouteError{Prefix: prefix, Peer: peer, Err: ErrInvalidPrefix}
	}
	return nil
}

// validPrefix accepts masked prefixes of plain IPv4 or IPv6 addresses
// (no IPv4-mapped IPv6, which would make one destination two keys).
func validPrefix(p netip.Prefix) bool {
	return p.IsValid() && p == p.Masked() && !p.Addr().Is4In6()
}
