package routing

import (
	"net/netip"
	"sync"

	"github.com/gaissmai/bart"
)

// FIB is the forwarding information base. Its methods are safe for
// concurrent use; lookups never wait for updates.
type FIB struct {
	cfg   config
	sides [2]side // the two copies readers use (leftright.go)
	lr    leftRight

	mu sync.Mutex
	// mu guards the following fields.
	w    *writer
	subs []*Subscription
}

// New returns an empty FIB.
func New(opts ...Option) *FIB {
	f := &FIB{cfg: newConfig(opts)}
	f.sides[0].tbl, f.sides[1].tbl = new(bart.Table[slotID]), new(bart.Table[slotID])
	// Readers start on side 0; the writer owns side 1.
	f.w = newWriter(&f.cfg, &f.sides)
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
	f.publishSlots(s)
	f.lr.flip(s)
	o := s ^ 1
	t := f.sides[o].tbl
	for _, op := range w.replay {
		if op.del {
			t.Delete(op.p)
		} else {
			t.Insert(op.p, op.id)
		}
	}
	f.publishSlots(o)
	w.side = o
	w.free = append(w.free, w.dying...)
	for _, id := range w.dying {
		w.slots[id] = nil
	}
	w.dying = w.dying[:0]
}

// publishSlots writes the queued slots' resolutions into side s, growing its
// arrays as slot ids grow.
func (f *FIB) publishSlots(s int) {
	w, sd := f.w, &f.sides[s]
	if n := len(w.slots); len(sd.pub) < n {
		if cap(sd.pub) >= n {
			sd.pub, sd.multi = sd.pub[:n], sd.multi[:n]
		} else {
			c := max(n, 2*len(sd.pub), 64)
			pub := make([]published, n, c)
			copy(pub, sd.pub)
			multi := make([]*resolution, n, c)
			copy(multi, sd.multi)
			sd.pub, sd.multi = pub, multi
		}
	}
	for _, sl := range w.pubs {
		r := sl.res()
		p := published{n: uint32(len(r.hops))}
		if p.n > 0 {
			p.hop = r.hops[0]
		}
		sd.pub[sl.id], sd.multi[sl.id] = p, r
	}
}

// Lookup returns where packets to dst go: the best path of the longest
// resolved prefix holding dst. It does not allocate.
func (f *FIB) Lookup(dst netip.Addr) (NextHop, bool) {
	return f.lookup(dst, 0, stripeHint())
}

// LookupFlow is Lookup for one flow: with multipath on, flows (by flowHash)
// are spread over the equal-cost next hops of the matching prefix.
func (f *FIB) LookupFlow(dst netip.Addr, flowHash uint32) (NextHop, bool) {
	return f.lookup(dst, flowHash, stripeHint())
}

func (f *FIB) lookup(dst netip.Addr, flow, stripe uint32) (nh NextHop, ok bool) {
	c, side := f.lr.arrive(stripe)
	sd := &f.sides[side]
	if id, found := sd.tbl.Lookup(dst); found && int(id) < len(sd.pub) {
		p := &sd.pub[id]
		switch p.n {
		case 0:
		case 1:
			nh, ok = p.hop, true
		default:
			nh, ok = sd.multi[id].hops[flow%p.n], true
		}
	}
	c.Add(-1)
	return nh, ok
}

// snapshotLocked lists the forwarding entries in prefix order.
func (f *FIB) snapshotLocked() []Change {
	t := f.w.standby()
	out := make([]Change, 0, t.Size())
	for p, id := range t.AllSorted() {
		out = append(out, Change{Kind: Added, Prefix: p, NextHops: f.w.slots[id].res().hops})
	}
	return out
}
