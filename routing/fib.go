package routing

import (
	"iter"
	"net/netip"
	"slices"
	"sync"
)

// FIB is the forwarding information base. Its methods are safe for
// concurrent use; lookups never wait for updates.
type FIB struct {
	cfg config

	mu sync.Mutex
	// mu guards the following fields.
	ref     *naive
	fwd     map[netip.Prefix][]NextHop
	result  naiveResult
	subs    []*Subscription
	batches uint64

	view sync.RWMutex // guards lookups of fwd (interim)
}

// New returns an empty FIB.
func New(opts ...Option) *FIB {
	cfg := newConfig(opts)
	f := &FIB{cfg: cfg, ref: newNaive(cfg), fwd: map[netip.Prefix][]NextHop{}}
	f.result = f.ref.resolve()
	return f
}

// Op is one change of a batch given to Apply: Route is added or replaces
// the path with the same (Prefix, Peer); with Withdraw set the path
// (Route.Prefix, Route.Peer) is removed and the other fields are ignored.
type Op struct {
	Route    Route
	Withdraw bool
}

// Upsert adds the route, or replaces the path of the same (Prefix, Peer).
func (f *FIB) Upsert(r Route) error { return f.Apply([]Op{{Route: r}}) }

// Withdraw removes the path (prefix, peer); withdrawing a path the FIB does
// not hold is not an error.
func (f *FIB) Withdraw(prefix netip.Prefix, peer netip.Addr) error {
	return f.Apply([]Op{{Route: Route{Prefix: prefix, Peer: peer}, Withdraw: true}})
}

// Apply applies a batch (the routes of one BGP UPDATE) atomically: lookups
// see either none or all of it. If any route is invalid, Apply returns a
// *RouteError naming it and changes nothing.
func (f *FIB) Apply(ops []Op) error {
	for i := range ops {
		var err error
		if ops[i].Withdraw {
			err = validateWithdraw(ops[i].Route.Prefix, ops[i].Route.Peer)
		} else {
			err = validate(&ops[i].Route)
		}
		if err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, op := range ops {
		if op.Withdraw {
			f.ref.withdraw(op.Route.Prefix, op.Route.Peer)
		} else {
			f.ref.upsert(op.Route)
		}
	}
	f.commitLocked()
	return nil
}

// WithdrawPeer removes every path the peer advertised (its BGP session went
// away) and returns how many there were.
func (f *FIB) WithdrawPeer(peer netip.Addr) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.ref.withdrawPeer(peer)
	if n > 0 {
		f.commitLocked()
	}
	return n
}

func (f *FIB) commitLocked() {
	f.batches++
	f.result = f.ref.resolve()
	fwd := f.result.resolved()
	var changes []Change
	for p, hops := range fwd {
		old, ok := f.fwd[p]
		switch {
		case !ok:
			changes = append(changes, Change{Kind: Added, Prefix: p, NextHops: hops})
		case !slices.Equal(old, hops):
			changes = append(changes, Change{Kind: Changed, Prefix: p, NextHops: hops})
		}
	}
	for p := range f.fwd {
		if _, ok := fwd[p]; !ok {
			changes = append(changes, Change{Kind: Removed, Prefix: p})
		}
	}
	f.view.Lock()
	f.fwd = fwd
	f.view.Unlock()
	for _, s := range f.subs {
		s.publish(changes, f.cfg.maxPending)
	}
}

// Lookup returns where packets to dst go: the best path of the longest
// resolved prefix holding dst.
func (f *FIB) Lookup(dst netip.Addr) (NextHop, bool) { return f.LookupFlow(dst, 0) }

// LookupFlow is Lookup for one flow: with multipath on, flows (by flowHash)
// are spread over the equal-cost next hops of the matching prefix.
func (f *FIB) LookupFlow(dst netip.Addr, flowHash uint32) (NextHop, bool) {
	f.view.RLock()
	defer f.view.RUnlock()
	return lookupIn(f.fwd, dst, flowHash)
}

// snapshotLocked lists the forwarding entries in prefix order.
func (f *FIB) snapshotLocked() []Change {
	out := make([]Change, 0, len(f.fwd))
	for p, hops := range f.fwd {
		out = append(out, Change{Kind: Added, Prefix: p, NextHops: hops})
	}
	slices.SortFunc(out, func(a, b Change) int { return comparePrefix(a.Prefix, b.Prefix) })
	return out
}

// Routes yields every path in prefix order, most preferred path first
// within a prefix. The FIB's lock is held while it runs: the loop body must
// not call the FIB.
func (f *FIB) Routes() iter.Seq[RouteStatus] {
	return func(yield func(RouteStatus) bool) {
		f.mu.Lock()
		defer f.mu.Unlock()
		keys := make([]netip.Prefix, 0, len(f.result.paths))
		for p := range f.result.paths {
			keys = append(keys, p)
		}
		slices.SortFunc(keys, comparePrefix)
		for _, p := range keys {
			for _, st := range f.result.paths[p] {
				if !yield(st) {
					return
				}
			}
		}
	}
}

// Route returns the paths of one prefix, most preferred first.
func (f *FIB) Route(prefix netip.Prefix) []RouteStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.result.paths[prefix])
}

// Unresolved returns every path that does not resolve, with the reason, in
// prefix order.
func (f *FIB) Unresolved() []RouteStatus {
	var out []RouteStatus
	for st := range f.Routes() {
		if !st.Resolved {
			out = append(out, st)
		}
	}
	return out
}

// Stats returns counts of what the FIB holds.
func (f *FIB) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s Stats
	for p, paths := range f.ref.routes {
		if p.Addr().Is4() {
			s.Prefixes4++
		} else {
			s.Prefixes6++
		}
		s.Paths += len(paths)
		if len(f.result.values[p].hops) == 0 {
			s.Unresolved++
		}
	}
	s.Batches = f.batches
	return s
}
