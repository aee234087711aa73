package xfrm

import (
	"maps"
	"net/netip"
	"slices"

	"github.com/mpsa-vpn/mpsa/routing"
)

// engine computes, from the FIB's changes, the plan that brings the kernel
// to what compute would return for the whole FIB, touching only what the
// changes decide: a FIB update costs in proportion to its changes, not to
// the FIB.
//
// What a prefix's policies say depends on its own FIB entry, on what its
// tunnel's SAs decide (saLevel: the tunnel's reqid, how it sends, its
// inbound template, the outer source towards each group endpoint) and, for
// the allow policies of a bypass prefix, on whether a tunnelled prefix
// covers it. The engine keeps the FIB's entries with the aggregates the
// SA-level objects depend on (the group endpoints and their ports, the
// tunnels routes use). A change marks its prefix dirty; when the SA level
// changes (new SAs, new endpoints, a new group endpoint or tunnel), the
// prefixes of the tunnels and endpoints whose decisions changed become
// dirty; a prefix that becomes tunnelled or stops being makes the bypass
// prefixes it covers dirty. Only dirty prefixes are recomputed and
// compared with what is installed. Every state is compared on each round:
// there are few (SAs times endpoints).
//
// The engine is not safe for concurrent use; the backend holds its lock.
type engine struct {
	routes  map[netip.Prefix]routing.NextHop
	eps     map[tunnelAddr]portCounts // routes per group endpoint and port
	tunnels map[routing.Tunnel]int    // routes per tunnel
	cands   map[netip.Prefix]struct{} // entries not through a tunnel (bypass candidates)
	bypass  map[netip.Prefix]struct{} // Config.Bypass

	sal         *saLevel // as of the last reconciliation; nil before the first
	salDirty    bool     // the SA level must be recomputed
	full        bool     // every prefix must be recomputed and stray policies removed
	statesDirty bool     // the kernel may hold other states than sal's
	dirty       map[netip.Prefix]struct{}
	tunnelled   map[netip.Prefix]struct{}     // prefixes with tunnel policies
	problems    map[netip.Prefix]routeProblem // per-prefix problems
}

// portCounts counts the routes asking for each port of one group endpoint
// (nearly always a single port).
type portCounts []portCount

type portCount struct {
	port uint16
	n    int
}

func (pc portCounts) total() int {
	n := 0
	for _, c := range pc {
		n += c.n
	}
	return n
}

func (pc portCounts) rng() portRange {
	r := portRange{lo: pc[0].port, hi: pc[0].port}
	for _, c := range pc[1:] {
		r.lo, r.hi = min(r.lo, c.port), max(r.hi, c.port)
	}
	return r
}

func newEngine(bypass []netip.Prefix) *engine {
	e := &engine{
		routes:    make(map[netip.Prefix]routing.NextHop),
		eps:       make(map[tunnelAddr]portCounts),
		tunnels:   make(map[routing.Tunnel]int),
		cands:     make(map[netip.Prefix]struct{}),
		bypass:    make(map[netip.Prefix]struct{}, len(bypass)),
		salDirty:  true,
		full:      true,
		dirty:     make(map[netip.Prefix]struct{}),
		tunnelled: make(map[netip.Prefix]struct{}),
		problems:  make(map[netip.Prefix]routeProblem),
	}
	for _, b := range bypass {
		e.bypass[b] = struct{}{}
	}
	return e
}

// update folds one FIB update into the engine.
func (e *engine) update(u routing.Update) {
	if u.Snapshot {
		for p, nh := range e.routes {
			e.unindex(p, nh)
			e.dirty[p] = struct{}{}
		}
		clear(e.routes)
	}
	for _, c := range u.Changes {
		if c.Kind == routing.Removed || len(c.NextHops) == 0 {
			e.set(c.Prefix, nil)
		} else {
			e.set(c.Prefix, &c.NextHops[0])
		}
	}
}

// set makes nh (nil: none) the FIB entry of p.
func (e *engine) set(p netip.Prefix, nh *routing.NextHop) {
	if old, ok := e.routes[p]; ok {
		if nh != nil && old == *nh {
			return
		}
		e.unindex(p, old)
		delete(e.routes, p)
	}
	if nh != nil {
		e.routes[p] = *nh
		e.index(p, *nh)
	}
	e.dirty[p] = struct{}{}
}

func (e *engine) index(p netip.Prefix, nh routing.NextHop) {
	if !isTunnelRoute(nh) {
		e.cands[p] = struct{}{}
		return
	}
	if e.tunnels[nh.Tunnel]++; e.tunnels[nh.Tunnel] == 1 {
		e.salDirty = true // a new tunnel needs a reqid
	}
	if !nh.Endpoint.IsValid() {
		return
	}
	k := tunnelAddr{nh.Tunnel, nh.Endpoint.Addr()}
	pc := e.eps[k]
	var before portRange
	if len(pc) > 0 {
		before = pc.rng()
	}
	i := slices.IndexFunc(pc, func(c portCount) bool { return c.port == nh.Endpoint.Port() })
	if i < 0 {
		pc = append(pc, portCount{port: nh.Endpoint.Port()})
		i = len(pc) - 1
	}
	pc[i].n++
	e.eps[k] = pc
	if len(pc) == 1 && pc[0].n == 1 || pc.rng() != before {
		e.salDirty = true // a new group endpoint, or its ports changed
	}
}

func (e *engine) unindex(p netip.Prefix, nh routing.NextHop) {
	if !isTunnelRoute(nh) {
		delete(e.cands, p)
		return
	}
	if e.tunnels[nh.Tunnel]--; e.tunnels[nh.Tunnel] == 0 {
		delete(e.tunnels, nh.Tunnel)
		e.salDirty = true
	}
	if !nh.Endpoint.IsValid() {
		return
	}
	k := tunnelAddr{nh.Tunnel, nh.Endpoint.Addr()}
	pc := e.eps[k]
	before := pc.rng()
	i := slices.IndexFunc(pc, func(c portCount) bool { return c.port == nh.Endpoint.Port() })
	if pc[i].n--; pc[i].n == 0 {
		pc = slices.Delete(pc, i, i+1)
	}
	if len(pc) == 0 {
		delete(e.eps, k)
		e.salDirty = true
		return
	}
	e.eps[k] = pc
	if pc.rng() != before {
		e.salDirty = true
	}
}

// groupEndpoints returns the endpoints the engine's routes name.
func (e *engine) groupEndpoints() groupEndpoints {
	eps := make(groupEndpoints)
	for k, pc := range e.eps {
		m := eps[k.tunnel]
		if m == nil {
			m = make(map[netip.Addr]portRange)
			eps[k.tunnel] = m
		}
		m[k.addr] = pc.rng()
	}
	return eps
}

// changeSAs marks the SA level for recomputation (new SAs or endpoints).
func (e *engine) changeSAs() { e.salDirty = true }

// retry marks what the kernel refused of the last plan, so the next round
// tries it again: the prefixes of refused policies, all prefixes (and a
// search for strays) when a refused policy has none, the states when a
// state change failed.
func (e *engine) retry(failed []netip.Prefix, all, states bool) {
	e.full = e.full || all
	e.statesDirty = e.statesDirty || states
	for _, p := range failed {
		e.dirty[p] = struct{}{}
	}
}

// reconcile returns the plan that brings have to what in.sas and the
// engine's FIB want (in.routes is not used: the engine has its own). On
// an error (the SAs cannot be installed) nothing changes and the next
// round tries again; otherwise the engine counts the plan as applied: the
// caller reports what the kernel refused with retry. It syncs in.reqids.
func (e *engine) reconcile(in *inputs, have *installed) (*plan, error) {
	sal := e.sal
	var dirtyTunnels map[routing.Tunnel]bool
	var dirtyReach map[tunnelAddr]bool
	all := e.full
	if e.salDirty || sal == nil {
		next, err := computeSAs(in, e.groupEndpoints(), e.tunnels)
		if err != nil {
			return nil, err
		}
		if sal == nil || !maps.Equal(sal.local, next.local) {
			all = true
		} else {
			dirtyTunnels = changedKeys(sal.tunnels, next.tunnels)
			dirtyReach = changedKeys(sal.reach, next.reach)
		}
		sal = next
	}

	// The prefixes to recompute.
	dirty := e.dirty
	if all {
		for p := range e.routes {
			dirty[p] = struct{}{}
		}
		for p := range e.bypass {
			dirty[p] = struct{}{}
		}
	} else if len(dirtyTunnels)+len(dirtyReach) > 0 && e.needScan(dirtyTunnels, dirtyReach) {
		for p, nh := range e.routes {
			if !isTunnelRoute(nh) {
				continue
			}
			if dirtyTunnels[nh.Tunnel] || nh.Endpoint.IsValid() && dirtyReach[tunnelAddr{nh.Tunnel, nh.Endpoint.Addr()}] {
				dirty[p] = struct{}{}
			}
		}
	}
	p := &plan{}
	if e.full {
		// Also whatever is installed: policies of prefixes no longer
		// known go, and anything not of the backend's shapes.
		for id := range have.policies {
			if pfx, ok := id.prefix(); ok {
				dirty[pfx] = struct{}{}
			} else {
				p.delPolicies = append(p.delPolicies, id)
			}
		}
	}

	// Tunnel policies first: the bypass prefixes depend on which
	// prefixes end up tunnelled.
	results := make(map[netip.Prefix]prefixPolicies, len(dirty))
	var flips []netip.Prefix
	for pfx := range dirty {
		var r prefixPolicies
		if nh, ok := e.routes[pfx]; ok && isTunnelRoute(nh) {
			r = sal.tunnelPolicies(pfx, nh, in.prioBase)
			results[pfx] = r
		}
		_, was := e.tunnelled[pfx]
		if r.tunnelled != was {
			flips = append(flips, pfx)
			if r.tunnelled {
				e.tunnelled[pfx] = struct{}{}
			} else {
				delete(e.tunnelled, pfx)
			}
		}
		if r.problem.kind != problemNone {
			e.problems[pfx] = r.problem
		} else {
			delete(e.problems, pfx)
		}
	}
	// Bypass prefixes under a prefix that became tunnelled or stopped.
	if len(flips) > 0 {
		check := func(c netip.Prefix) {
			if _, ok := dirty[c]; ok {
				return
			}
			if len(flips) > maxBits(c.Addr().Is4()) {
				dirty[c] = struct{}{} // cheaper than comparing every flip
				return
			}
			for _, f := range flips {
				if f.Bits() <= c.Bits() && f.Addr().Is4() == c.Addr().Is4() && f.Contains(c.Addr()) {
					dirty[c] = struct{}{}
					return
				}
			}
		}
		for c := range e.cands {
			check(c)
		}
		for c := range e.bypass {
			check(c)
		}
	}

	// Every dirty prefix's policies against what is installed.
	for pfx := range dirty {
		var want prefixPolicies
		if r, ok := results[pfx]; ok && r.tunnelled {
			want = r
		}
		_, cand := e.cands[pfx]
		_, byp := e.bypass[pfx]
		if (cand || byp) && e.covered(pfx) {
			v := bypassPolicy(pfx, in.prioBase)
			want = prefixPolicies{tunnelled: true, out: v, in: v}
		}
		vals := [3]pval{want.out, want.in, want.in}
		for i, id := range prefixPolicyIDs(pfx) {
			old, installed := have.policies[id]
			switch {
			case want.tunnelled && (!installed || old != vals[i]):
				p.policies = append(p.policies, kpolicy{id, vals[i]})
			case !want.tunnelled && installed:
				p.delPolicies = append(p.delPolicies, id)
			}
		}
	}

	// States: all of them (few), when the SA level was recomputed or the
	// kernel refused a change.
	if sal != e.sal || e.statesDirty || e.full {
		p.diffStates(have.states, sal.states)
	}
	p.sort()

	e.sal, e.salDirty, e.full, e.statesDirty = sal, false, false, false
	if len(e.dirty) > 256 {
		// Clearing a map costs its capacity, not its length: let a big
		// round's map go rather than pay for it on every small one.
		e.dirty = make(map[netip.Prefix]struct{})
	} else {
		clear(e.dirty)
	}
	return p, nil
}

// changedKeys returns the keys whose values differ between old and next,
// present in only one of them included.
func changedKeys[K, V comparable](old, next map[K]V) map[K]bool {
	changed := make(map[K]bool)
	for k, v := range next {
		if o, ok := old[k]; !ok || o != v {
			changed[k] = true
		}
	}
	for k := range old {
		if _, ok := next[k]; !ok {
			changed[k] = true
		}
	}
	return changed
}

// needScan reports whether the prefixes of the tunnels and endpoints whose
// SA-level decisions changed must be looked for among all routes: not when
// the dirty prefixes already include every route of each changed endpoint
// (a new group endpoint arrives with its routes).
func (e *engine) needScan(tunnels map[routing.Tunnel]bool, reach map[tunnelAddr]bool) bool {
	for t := range tunnels {
		if e.tunnels[t] > 0 {
			return true
		}
	}
	seen := make(map[tunnelAddr]int, len(reach))
	for p := range e.dirty {
		if nh, ok := e.routes[p]; ok && isTunnelRoute(nh) && nh.Endpoint.IsValid() {
			if k := (tunnelAddr{nh.Tunnel, nh.Endpoint.Addr()}); reach[k] {
				seen[k]++
			}
		}
	}
	for k := range reach {
		if seen[k] != e.eps[k].total() {
			return true
		}
	}
	return false
}

// covered reports whether a tunnelled prefix contains b (or is b).
func (e *engine) covered(b netip.Prefix) bool {
	for bits := b.Bits(); bits >= 0; bits-- {
		if p, err := b.Addr().Prefix(bits); err == nil {
			if _, ok := e.tunnelled[p]; ok {
				return true
			}
		}
	}
	return false
}

// problemCount returns how many FIB entries are not tunnelled as asked.
func (e *engine) problemCount() int {
	if e.sal == nil {
		return 0
	}
	return len(e.sal.problems) + len(e.problems)
}

// report returns how many FIB entries are not tunnelled as asked and what
// the first maxProblems of them (by prefix) are.
func (e *engine) report() (n int, top []string) {
	if e.sal == nil {
		return 0, nil
	}
	d := &desired{}
	for _, pr := range e.sal.problems {
		d.problem(pr.at, "%s", pr.msg)
	}
	for p, rp := range e.problems {
		d.nproblems++
		if len(d.top) == maxProblems && comparePrefix(p, d.top[maxProblems-1].at) >= 0 {
			continue
		}
		d.top = append(d.top, problem{p, rp.text(p)})
		slices.SortFunc(d.top, func(a, b problem) int { return comparePrefix(a.at, b.at) })
		if len(d.top) > maxProblems {
			d.top = d.top[:maxProblems]
		}
	}
	for _, pr := range d.top {
		top = append(top, pr.msg)
	}
	return d.nproblems, top
}

// prefix returns the prefix a policy of the backend's shapes belongs to:
// out policies are any → prefix, in and fwd policies prefix → any.
func (id policyID) prefix() (netip.Prefix, bool) {
	switch id.dir {
	case dirOut:
		if id.src == anyPrefix(id.dst.Addr().Is4()) {
			return id.dst, true
		}
	case dirIn, dirFwd:
		if id.dst == anyPrefix(id.src.Addr().Is4()) {
			return id.src, true
		}
	}
	return netip.Prefix{}, false
}
