package routing

import (
	"fmt"
	"net/netip"
	"slices"
)

// Recursive resolution and next-hop tracking.
//
// The prefixes that next hops resolve through (targets) and the recursive
// paths between them form a small graph, the core: target X has an edge to
// target Y when one of X's paths has a next hop whose longest match is Y.
// The edges do not depend on what resolves, so neither do the loops: a path
// of X whose next hop's target lies in X's strongly connected component (or
// is X) is a loop and never followed. Without those paths the core is
// acyclic, and Tarjan's algorithm numbers its components so that every
// target comes after the targets it depends on. Resolving in that order
// visits each target once; a change at a target flows to the tracks that
// point at it, from each track to its groups, and from each group to its
// member prefixes and dests: exactly the dependents.

// deriveTrack computes what a recursive path through t resolves to.
func (w *writer) deriveTrack(t *track) *resolution {
	x := t.target
	if x == nil {
		return &resolution{reason: ReasonNoRoute}
	}
	r := x.res
	switch {
	case !r.ok():
		return &resolution{reason: ReasonNextHopUnresolved, via: x.prefix}
	case r.depth+1 > w.cfg.maxDepth:
		return &resolution{reason: ReasonTooDeep, via: x.prefix, depth: r.depth + 1}
	}
	return &resolution{hops: r.hops, via: x.prefix, depth: r.depth + 1}
}

// trackChanged follows a change of t's target or of the target's value to
// t's groups and on to their dests.
func (w *writer) trackChanged(t *track) {
	nr := w.deriveTrack(t)
	changed := !sameValue(nr, t.res)
	t.res = nr
	for g := range t.groups {
		g.res = nr
		if !changed {
			continue
		}
		w.markChanged(g)
		w.queuePub(g.slot)
		for d := range g.dests {
			if d.target() {
				w.push(d)
			} else {
				w.reevalDest(d)
			}
		}
	}
}

// pathRes is what path g of dest d resolves to, in d's context: a path of
// a target that leads back into the target's component is a loop.
func (w *writer) pathRes(d *dest, g *group) *resolution {
	if g.track != nil && d.target() {
		if x := g.track.target; x != nil && (x == d || x.scc == d.scc) {
			return &resolution{reason: ReasonLoop, via: x.prefix}
		}
	}
	return g.res
}

// evalDest selects d's best resolved path (and the equal-cost ones with
// multipath on) and returns the prefix's value.
func (w *writer) evalDest(d *dest) *resolution {
	var best *group
	var bestRes, first *resolution
	var hops []NextHop
	for i, g := range d.paths {
		r := w.pathRes(d, g)
		if i == 0 {
			first = r
		}
		if !r.ok() {
			continue
		}
		switch {
		case best == nil:
			best, bestRes, hops = g, r, r.hops
		case w.cfg.multipath && best.key.source == g.key.source && best.key.localPref == g.key.localPref:
			if len(hops) == len(bestRes.hops) {
				hops = slices.Clone(hops)
			}
			hops = appendHops(hops, r.hops)
		}
	}
	if best == nil {
		if first == nil {
			return &resolution{reason: ReasonNoRoute}
		}
		return &resolution{reason: first.reason}
	}
	if len(hops) == len(bestRes.hops) {
		return bestRes
	}
	return &resolution{hops: hops, via: bestRes.via, depth: bestRes.depth}
}

// push queues target d for evaluation in component order.
func (w *writer) push(d *dest) {
	if d.inHeap {
		return
	}
	d.inHeap = true
	h := append(w.heap, d)
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if h[p].scc <= h[i].scc {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
	w.heap = h
}

func (w *writer) pop() *dest {
	h := w.heap
	d := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h[n] = nil
	h = h[:n]
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < n && h[l].scc < h[m].scc {
			m = l
		}
		if l+1 < n && h[l+1].scc < h[m].scc {
			m = l + 1
		}
		if m == i {
			break
		}
		h[m], h[i] = h[i], h[m]
		i = m
	}
	w.heap = h
	d.inHeap = false
	return d
}

// components numbers the strongly connected components of the core
// (Tarjan), dependencies first.
func (w *writer) components() {
	type state struct{ index, low int }
	st := make(map[*dest]*state, len(w.targets))
	var stack []*dest
	onStack := make(map[*dest]bool)
	loops := make(map[netip.Prefix]struct{})
	index, comp := 0, 0
	var visit func(v *dest)
	visit = func(v *dest) {
		sv := &state{index, index}
		st[v] = sv
		index++
		stack = append(stack, v)
		onStack[v] = true
		for _, g := range v.paths {
			if g.track == nil || g.track.target == nil {
				continue
			}
			u := g.track.target
			if su, seen := st[u]; !seen {
				visit(u)
				sv.low = min(sv.low, st[u].low)
			} else if onStack[u] {
				sv.low = min(sv.low, su.index)
			}
		}
		if sv.low == sv.index {
			top := len(stack)
			for {
				u := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[u] = false
				u.scc = comp
				if u == v {
					break
				}
			}
			if n := top - len(stack); n > 1 || selfLoop(v) {
				for _, u := range stack[len(stack) : len(stack)+n] {
					loops[u.prefix] = struct{}{}
				}
			}
			comp++
		}
	}
	for d := range w.targets {
		if _, seen := st[d]; !seen {
			visit(d)
		}
	}
	w.logLoops(loops)
}

func selfLoop(d *dest) bool {
	for _, g := range d.paths {
		if g.track != nil && g.track.target == d {
			return true
		}
	}
	return false
}

// maxLoopLogs bounds the loop messages of one batch.
const maxLoopLogs = 16

// logLoops reports the prefixes that entered or left a resolution loop.
func (w *writer) logLoops(now map[netip.Prefix]struct{}) {
	logged := 0
	for p := range now {
		if _, was := w.loops[p]; !was {
			if logged++; logged <= maxLoopLogs {
				w.cfg.log.Warn("next-hop resolution loop", "prefix", p, "reason", ReasonLoop.String())
			}
		}
	}
	for p := range w.loops {
		if _, is := now[p]; !is {
			if logged++; logged <= maxLoopLogs {
				w.cfg.log.Info("next-hop resolution loop gone", "prefix", p)
			}
		}
	}
	if logged > maxLoopLogs {
		w.cfg.log.Warn("more next-hop resolution loops changed than logged",
			"reason", fmt.Sprintf("%d changed, %d logged", logged, maxLoopLogs))
	}
	w.loops = now
}

// retargetMoved re-targets the tracked next hops inside prefixes that
// appeared or went away in this batch.
func (w *writer) retargetMoved() {
	for _, p := range w.moved {
		for _, t := range w.trackTbl.Subnets(p) {
			if t.gen == w.gen {
				continue
			}
			t.gen = w.gen
			w.retarget(t, w.lpmDest(t.addr))
		}
	}
	w.moved = w.moved[:0]
}

// propagate evaluates the dirty targets in component order.
func (w *writer) propagate() {
	if w.coreDirty {
		w.coreDirty = false
		w.components()
		for _, d := range w.heap {
			d.inHeap = false
		}
		w.heap = w.heap[:0]
		for d := range w.targets {
			w.push(d)
		}
	}
	for len(w.heap) > 0 {
		d := w.pop()
		switch {
		case d.dead:
		case !d.target():
			w.reevalDest(d)
		default:
			if w.setDestRes(d, w.evalDest(d)) {
				for t := range d.trackers {
					w.trackChanged(t)
				}
			}
		}
	}
}

// finish puts every prefix the batch changed where its resolution says
// (lookup tables or unres) and returns the changes for subscribers (only
// when collect is set).
func (w *writer) finish(collect bool) []Change {
	var out []Change
	if collect {
		n := w.touchBuf.n
		for _, g := range w.changed {
			n += g.members.live()
		}
		out = make([]Change, 0, n)
	}
	w.touchBuf.each(func(t *touch) {
		p := t.p
		var now []NextHop
		if t.s != nil {
			if r := t.s.res(); r.ok() {
				now = r.hops
				if t.loc == locUnres {
					w.unres.Delete(p)
					w.tableInsert(p, t.s)
					t.loc = locTable
				}
			} else if t.loc == locTable {
				w.tableDelete(p)
				w.unres.Insert(p, t.s)
				t.loc = locUnres
			}
		}
		if collect {
			out = appendChange(out, p, t.old, now)
		}
	})
	for _, g := range w.changed {
		if g.dead {
			continue
		}
		o, n := w.publishedRes(g.slot), g.res
		if o == nil || sameValue(o, n) {
			continue // a new group's members were all touched
		}
		move := o.ok() != n.ok()
		var old, now []NextHop
		if o.ok() {
			old = o.hops
		}
		if n.ok() {
			now = n.hops
		}
		g.members.each(func(p netip.Prefix) {
			if len(w.touched) > 0 {
				if _, ok := w.touched[p]; ok {
					return
				}
			}
			if move {
				if n.ok() {
					w.unres.Delete(p)
					w.tableInsert(p, g.slot)
				} else {
					w.tableDelete(p)
					w.unres.Insert(p, g.slot)
				}
			}
			if collect {
				out = appendChange(out, p, old, now)
			}
		})
	}
	return out
}

func appendChange(out []Change, p netip.Prefix, old, now []NextHop) []Change {
	switch {
	case old == nil && now == nil:
		return out
	case old == nil:
		return append(out, Change{Kind: Added, Prefix: p, NextHops: now})
	case now == nil:
		return append(out, Change{Kind: Removed, Prefix: p})
	case !slices.Equal(old, now):
		return append(out, Change{Kind: Changed, Prefix: p, NextHops: now})
	}
	return out
}

// reset forgets the batch.
func (w *writer) reset() {
	w.gen++
	// Delete the keys one by one: clearing or ranging over a map that once
	// grew large costs its capacity, not its length.
	if w.touchBuf.n > 4096 {
		w.touched = make(map[netip.Prefix]*touch)
	} else {
		w.touchBuf.each(func(t *touch) { delete(w.touched, t.p) })
	}
	w.touchBuf.reset()
	if cap(w.replay) > 4096 {
		w.replay = nil
	} else {
		w.replay = w.replay[:0]
	}
	clear(w.changed)
	w.changed = w.changed[:0]
	clear(w.pubs)
	w.pubs = w.pubs[:0]
}
