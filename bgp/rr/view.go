package rr

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// Route is a CPE route a group reflects: what the hub re-originated after
// validation (not what the CPE sent).
type Route struct {
	Prefix    netip.Prefix
	Endpoint  netip.AddrPort // the ESP endpoint the hub saw on the CPE's IKE SA
	NextHop   netip.Addr
	CPE       string // ID of the CPE that announced it
	LocalPref uint32
	Stale     bool // kept across a loss of the CPE's session (graceful restart)
}

// Session is a registered CPE's BGP session.
type Session struct {
	CPE      string
	Overlay  netip.Addr     // where the session must come from
	Endpoint netip.AddrPort // the CPE's ESP endpoint
	// State is the FSM state GoBGP reports (IDLE, ACTIVE, OPENSENT,
	// OPENCONFIRM, ESTABLISHED).
	State string
	// Since is when the session was established (zero if it is not).
	Since time.Time
	// Received counts the routes GoBGP holds from the CPE (its
	// Adj-RIB-In, before validation); Accepted those the hub reflects,
	// Stale of which are kept from an earlier session.
	Received, Accepted, Stale int
}

// Uptime is how long the session has been established at now.
func (s *Session) Uptime(now time.Time) time.Duration {
	if s.Since.IsZero() {
		return 0
	}
	return now.Sub(s.Since)
}

func (h *Hub) group(name string) (*group, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	g, ok := h.groups[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNoGroup, name)
	}
	return g, nil
}

// Routes returns a snapshot of the CPE routes a group reflects, by prefix
// then CPE. Routes of configured peers are GoBGP's own (gobgp global rib).
func (h *Hub) Routes(group string) ([]Route, error) {
	g, err := h.group(group)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	var out []Route
	for _, c := range g.byID {
		for p, a := range c.routes {
			out = append(out, Route{Prefix: p, Endpoint: c.Endpoint, NextHop: nextHopFor(p, &c.CPE), CPE: c.ID, LocalPref: a.localPref, Stale: a.stale})
		}
	}
	g.mu.Unlock()
	slices.SortFunc(out, func(a, b Route) int {
		if c := comparePrefixes(a.Prefix, b.Prefix); c != 0 {
			return c
		}
		return strings.Compare(a.CPE, b.CPE)
	})
	return out, nil
}

// Sessions returns a snapshot of the BGP sessions of a group's registered
// CPEs, by CPE ID; State and Received come from GoBGP.
func (h *Hub) Sessions(ctx context.Context, group string) ([]Session, error) {
	g, err := h.group(group)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	out := make([]Session, 0, len(g.byID))
	for _, c := range g.byID {
		s := Session{CPE: c.ID, Overlay: c.Overlay, Endpoint: c.Endpoint, State: "IDLE", Accepted: len(c.routes)}
		if c.established {
			s.Since = c.since
		}
		for _, a := range c.routes {
			if a.stale {
				s.Stale++
			}
		}
		out = append(out, s)
	}
	g.mu.Unlock()
	slices.SortFunc(out, func(a, b Session) int { return strings.Compare(a.CPE, b.CPE) })
	at := make(map[netip.Addr]int, len(out))
	for i, s := range out {
		at[s.Overlay] = i
	}
	err = g.s.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		a, err := netip.ParseAddr(peerAddress(p))
		if err != nil {
			return
		}
		i, ok := at[a.Unmap()]
		if !ok {
			return
		}
		if st := p.GetState(); st != nil {
			out[i].State = st.SessionState.String()
		}
		for _, af := range p.GetAfiSafis() {
			out[i].Received += int(af.GetState().GetReceived())
		}
	})
	if err != nil {
		return out, fmt.Errorf("rr: group %s: ListPeer: %w", group, err)
	}
	return out, nil
}
