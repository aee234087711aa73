package routing

import (
	"math/rand/v2"
	"net/netip"
	"sync"

	"github.com/gaissmai/bart"
)

// FIB is the forwarding information base. Its methods are safe for
// concurrent use; lookups never wait for updates.
type FIB struct {
	cfg config
	tbl [2]*bart.Table[*slot] // the two copies readers use (leftright.go)
	lr  leftRight

	mu sync.Mutex
	// mu guards the following fields.
	w    *writer
	subs []*Subscription
}

// New returns an empty FIB.
func New(opts ...Option) *FIB {
	f := &FIB{cfg: newConfig(opts)}
	f.tbl[0], f.tbl[1] = new(bart.Table[*slot]), new(bart.Table[*slot])
	// Readers start on side 0; the writer owns side 1.
	f.w = newWriter(&f.cfg, f.tbl[0], f.tbl[1])
	f.w.side = 1
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
// and subscribers see either none or all of it. If any route is invalid,
// Apply returns a *RouteError naming it and changes nothing.
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
	for i := range ops {
		if ops[i].Withdraw {
			f.w.withdraw(ops[i].Route.Prefix, ops[i].Route.Peer)
		} else {
			f.w.upsert(&ops[i].Route)
		}
	}
	f.commitLocked()
	return nil
}

// WithdrawPeer removes every path the peer advertised (its BGP session went
// away), atomically, and returns how many there were.
func (f *FIB) WithdrawPeer(peer netip.Addr) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, p := range f.w.peerPaths(peer) {
		if f.w.withdraw(p, peer) {
			n++
		}
	}
	if n > 0 {
		f.commitLocked()
	}
	return n
}

// commitLocked resolves what the batch changed, publishes it to readers and
// hands the changes to subscribers.
func (f *FIB) commitLocked() {
	w := f.w
	w.retargetMoved()
	w.propagate()
	changes := w.finish(len(f.subs) > 0)
	if len(w.pubs) > 0 || len(w.replay) > 0 {
		f.publishLocked()
	}
	w.batches++
	for _, s := range f.subs {
		s.publish(changes, f.cfg.maxPending)
	}
	w.reset()
}

// publishLocked makes the standby side current for readers and brings the
// other side up to date.
func (f *FIB) publishLocked() {
	w := f.w
	s := w.side
	for _, sl := range w.pubs {
		sl.pub[s] = sl.res()
	}
	f.lr.flip(s)
	o := s ^ 1
	t := f.tbl[o]
	for _, op := range w.replay {
		if op.s == nil {
			t.Delete(op.p)
		} else {
			t.Insert(op.p, op.s)
		}
	}
	for _, sl := range w.pubs {
		sl.pub[o] = sl.res()
	}
	w.side = o
}

// Lookup returns where packets to dst go: the best path of the longest
// resolved prefix holding dst. It does not allocate.
func (f *FIB) Lookup(dst netip.Addr) (NextHop, bool) {
	return f.lookup(dst, 0, rand.Uint32())
}

// LookupFlow is Lookup for one flow: with multipath on, flows (by flowHash)
// are spread over the equal-cost next hops of the matching prefix.
func (f *FIB) LookupFlow(dst netip.Addr, flowHash uint32) (NextHop, bool) {
	return f.lookup(dst, flowHash, flowHash)
}

func (f *FIB) lookup(dst netip.Addr, flow, stripe uint32) (nh NextHop, ok bool) {
	c, side := f.lr.arrive(stripe)
	if s, found := f.tbl[side].Lookup(dst); found {
		if r := s.pub[side]; r != nil {
			switch n := uint32(len(r.hops)); n {
			case 0:
			case 1:
				nh, ok = r.hops[0], true
			default:
				nh, ok = r.hops[flow%n], true
			}
		}
	}
	c.Add(-1)
	return nh, ok
}

// snapshotLocked lists the forwarding entries in prefix order.
func (f *FIB) snapshotLocked() []Change {
	t := f.w.standby()
	out := make([]Change, 0, t.Size())
	for p, s := range t.AllSorted() {
		out = append(out, Change{Kind: Added, Prefix: p, NextHops: s.res().hops})
	}
	return out
}
