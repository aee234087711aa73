// Package speakertest provides a RouteSink that records routes, for tests
// of the speaker and of what the hub reflects.
package speakertest

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"

	"github.com/mpsa-vpn/mpsa/routing"
)

type key struct {
	prefix netip.Prefix
	peer   netip.Addr
}

// Sink records the routes a speaker gives it. It satisfies
// speaker.RouteSink. Wait blocks until a condition on the routes holds.
type Sink struct {
	mu        sync.Mutex
	routes    map[key]routing.Route
	changed   chan struct{} // closed and replaced on every change
	upserts   int
	withdraws int
}

// NewSink returns an empty sink.
func NewSink() *Sink {
	return &Sink{routes: map[key]routing.Route{}, changed: make(chan struct{})}
}

func (s *Sink) changedLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Upsert adds or replaces a route.
func (s *Sink) Upsert(r routing.Route) error {
	if !r.Prefix.IsValid() || r.Prefix != r.Prefix.Masked() {
		return fmt.Errorf("speakertest: bad prefix %v", r.Prefix)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routes[key{r.Prefix, r.Peer}] = r
	s.upserts++
	s.changedLocked()
	return nil
}

// Withdraw removes a route.
func (s *Sink) Withdraw(p netip.Prefix, peer netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.routes, key{p, peer})
	s.withdraws++
	s.changedLocked()
	return nil
}

// WithdrawPeer removes every route of peer.
func (s *Sink) WithdrawPeer(peer netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.routes {
		if k.peer == peer {
			delete(s.routes, k)
			s.withdraws++
		}
	}
	s.changedLocked()
}

// Routes returns the routes, sorted by prefix.
func (s *Sink) Routes() []routing.Route {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]routing.Route, 0, len(s.routes))
	for _, r := range s.routes {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Prefix.String() < out[j].Prefix.String() })
	return out
}

// Len returns the number of routes.
func (s *Sink) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.routes)
}

// Upserts returns how many times Upsert was called.
func (s *Sink) Upserts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.upserts
}

// Withdrawals returns how many routes Withdraw and WithdrawPeer removed
// or were asked to remove.
func (s *Sink) Withdrawals() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.withdraws
}

// Get returns the route for prefix from any peer.
func (s *Sink) Get(p netip.Prefix) (routing.Route, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, r := range s.routes {
		if k.prefix == p {
			return r, true
		}
	}
	return routing.Route{}, false
}

// String renders the routes one per line as "prefix nexthop endpoint",
// for test failure messages.
func (s *Sink) String() string {
	var b strings.Builder
	for _, r := range s.Routes() {
		fmt.Fprintf(&b, "%s nh=%s ep=%s peer=%s\n", r.Prefix, r.NextHop, r.Endpoint, r.Peer)
	}
	return b.String()
}

// Wait blocks until cond holds for the routes or ctx ends; it returns
// ctx.Err() in the latter case. cond gets a snapshot of the routes by
// prefix and may call the sink's methods.
func (s *Sink) Wait(ctx context.Context, cond func(routes map[netip.Prefix]routing.Route) bool) error {
	for {
		s.mu.Lock()
		view := make(map[netip.Prefix]routing.Route, len(s.routes))
		for k, r := range s.routes {
			view[k.prefix] = r
		}
		ch := s.changed
		s.mu.Unlock()
		if cond(view) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
