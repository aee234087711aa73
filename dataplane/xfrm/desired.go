package xfrm

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/routing"
)

// inputs is everything the desired objects are computed from.
type inputs struct {
	sas       []dataplane.SA // validated; keys are the backend's copies
	routes    map[netip.Prefix]routing.NextHop
	endpoints []netip.AddrPort
	bypass    []netip.Prefix
	prioBase  uint32
	reqids    *reqids // updated in place: pass a clone unless committing

	// source returns the outer source address the kernel would use
	// towards dst; nil means none is known.
	source func(dst netip.Addr) (netip.Addr, bool)
}

// desired is the set of objects the kernel should hold.
type desired struct {
	states   map[stateID]*kstate
	policies map[policyID]pval

	// problems says what could not be installed as the FIB asked (the
	// affected prefixes are blocked): the maxProblems first by prefix;
	// nproblems counts them all.
	problems  []string
	nproblems int
	top       []problem // the first maxProblems, sorted
}

const maxProblems = 8

type problem struct {
	at  netip.Prefix
	msg string
}

// problem records one; only the first maxProblems by prefix are kept (and
// formatted), so a FIB whose every entry is blocked costs no more.
func (d *desired) problem(at netip.Prefix, format string, args ...any) {
	d.nproblems++
	if len(d.top) == maxProblems && comparePrefix(at, d.top[maxProblems-1].at) >= 0 {
		return
	}
	pr := problem{at, fmt.Sprintf(format, args...)}
	i, _ := slices.BinarySearchFunc(d.top, pr, func(a, b problem) int { return comparePrefix(a.at, b.at) })
	d.top = slices.Insert(d.top, i, pr)
	if len(d.top) > maxProblems {
		d.top = d.top[:maxProblems]
	}
}

// portRange is the lowest and highest UDP port (0: raw ESP) the FIB's
// routes ask for at one group endpoint.
type portRange struct{ lo, hi uint16 }

// groupEndpoints are the remote ESP endpoints of each tunnel, as the FIB's
// routes name them.
type groupEndpoints map[routing.Tunnel]map[netip.Addr]portRange

// endpointsOf collects the endpoints of routes.
func endpointsOf(routes map[netip.Prefix]routing.NextHop) groupEndpoints {
	eps := make(groupEndpoints)
	for _, nh := range routes {
		if nh.Tunnel == 0 || nh.Local || !nh.Endpoint.IsValid() {
			continue
		}
		m := eps[nh.Tunnel]
		if m == nil {
			m = make(map[netip.Addr]portRange)
			eps[nh.Tunnel] = m
		}
		port := nh.Endpoint.Port()
		r, seen := m[nh.Endpoint.Addr()]
		if !seen {
			r = portRange{port, port}
		}
		m[nh.Endpoint.Addr()] = portRange{min(r.lo, port), max(r.hi, port)}
	}
	return eps
}

// outKind says how a tunnel sends.
type outKind uint8

const (
	outNone  outKind = iota // no outbound SA: its prefixes are blocked
	outPeer                 // a point-to-point SA (CHILD_SA) to a fixed peer
	outGroup                // a group SA: to each route's endpoint
)

// tunnelCtx is what a tunnel's SAs decide for the policies of every prefix
// routed through it.
type tunnelCtx struct {
	rid  uint32
	out  outKind
	peer tmpl // outPeer: the outbound template (zero: blocked)
	in   tmpl // the inbound template (a placeholder when no SA receives)
}

// tunnelAddr is a group endpoint address of a tunnel.
type tunnelAddr struct {
	tunnel routing.Tunnel
	addr   netip.Addr
}

// saLevel is what the SAs, this node's endpoints and the set of group
// endpoints the FIB names decide: every state, and per tunnel and group
// endpoint what the prefixes' policies need. It does not depend on the
// individual prefixes.
type saLevel struct {
	states map[stateID]*kstate
	local  map[netip.Addr]bool // this node's outer addresses
	// tunnels has every tunnel of an SA or a route.
	tunnels map[routing.Tunnel]tunnelCtx
	// reach is the outer source towards each group endpoint of a tunnel
	// with an outbound group SA; an endpoint missing has none.
	reach    map[tunnelAddr]netip.Addr
	problems []problem // sorted by prefix
}

func (s *saLevel) addState(k *kstate) error {
	if other, dup := s.states[k.stateID]; dup {
		return fmt.Errorf("xfrm: SA %08x: two states with destination %v (reqids %#x and %#x)", k.spi, k.dst, other.reqid, k.reqid)
	}
	s.states[k.stateID] = k
	return nil
}

// compute returns the objects that install in.sas and in.routes. An error
// means the SAs cannot be installed as given (the State is refused); what
// the FIB asks for and cannot be done is blocked and reported as problems.
// It is the whole computation at once; the backend reaches the same
// objects incrementally (see engine).
func compute(in *inputs) (*desired, error) {
	s, err := computeSAs(in, endpointsOf(in.routes), in.tunnels())
	if err != nil {
		return nil, err
	}
	d := &desired{states: s.states, policies: make(map[policyID]pval, 3*len(in.routes))}
	for _, pr := range s.problems {
		d.problem(pr.at, "%s", pr.msg)
	}
	tunnelled := make(map[netip.Prefix]bool, len(in.routes))
	var candidates []netip.Prefix
	for p, nh := range in.routes {
		if !isTunnelRoute(nh) {
			candidates = append(candidates, p)
			continue
		}
		r := s.tunnelPolicies(p, nh, in.prioBase)
		if r.problem.kind != problemNone {
			d.problem(p, "%s", r.problem.text(p))
		}
		if !r.tunnelled {
			continue
		}
		tunnelled[p] = true
		ids := prefixPolicyIDs(p)
		d.policies[ids[0]] = r.out
		d.policies[ids[1]], d.policies[ids[2]] = r.in, r.in
	}

	// Bypass: local and underlay entries, and configured prefixes, that a
	// shorter tunnelled prefix would otherwise capture. A configured
	// prefix equal to a tunnelled one replaces its policies.
	candidates = append(candidates, in.bypass...)
	for _, b := range candidates {
		if !coveredBy(b, tunnelled) {
			continue
		}
		v := bypassPolicy(b, in.prioBase)
		for _, id := range prefixPolicyIDs(b) {
			d.policies[id] = v
		}
	}
	for _, pr := range d.top {
		d.problems = append(d.problems, pr.msg)
	}
	return d, nil
}

// tunnels counts the routes of each tunnel.
func (in *inputs) tunnels() map[routing.Tunnel]int {
	m := make(map[routing.Tunnel]int)
	for _, nh := range in.routes {
		if isTunnelRoute(nh) {
			m[nh.Tunnel]++
		}
	}
	return m
}

// isTunnelRoute reports whether a FIB entry goes through a tunnel.
func isTunnelRoute(nh routing.NextHop) bool { return nh.Tunnel != 0 && !nh.Local }

func prio(base uint32, p netip.Prefix) uint32 {
	return base + uint32(maxBits(p.Addr().Is4())-p.Bits())
}

// bypassPolicy is what an allow policy of prefix b says.
func bypassPolicy(b netip.Prefix, base uint32) pval { return pval{prio: prio(base, b)} }

// computeSAs computes the states of in.sas, with the group endpoints eps
// and the tunnels the routes use, and what the tunnels decide for the
// prefixes' policies. It syncs in.reqids.
func computeSAs(in *inputs, eps groupEndpoints, routeTunnels map[routing.Tunnel]int) (*saLevel, error) {
	s := &saLevel{
		states:  make(map[stateID]*kstate),
		local:   make(map[netip.Addr]bool),
		tunnels: make(map[routing.Tunnel]tunnelCtx),
		reach:   make(map[tunnelAddr]netip.Addr),
	}
	sas := slices.Clone(in.sas)
	slices.SortFunc(sas, func(a, b dataplane.SA) int {
		if c := (reqKey{a.Tunnel, a.Keys.SPI}).compare(reqKey{b.Tunnel, b.Keys.SPI}); c != 0 {
			return c
		}
		return int(a.Dir) - int(b.Dir)
	})

	// Request IDs: one per tunnel of an SA or a route, one per tunnel-less SA.
	keys := make(map[reqKey]bool, len(sas)+len(routeTunnels))
	for i := range sas {
		keys[keyOf(&sas[i])] = true
	}
	for t := range routeTunnels {
		keys[reqKey{tunnel: t}] = true
	}
	if !in.reqids.sync(keys) {
		return nil, fmt.Errorf("xfrm: more than %d tunnels", in.reqids.span)
	}

	for _, ep := range in.endpoints {
		s.local[ep.Addr()] = true
	}
	for i := range sas {
		if sas[i].Local.IsValid() {
			s.local[sas[i].Local] = true
		}
	}

	// Remote ESP endpoints of the group tunnels: one state per (address,
	// SPI), so where routes ask for two ports the higher one wins, which
	// prefers ESP-in-UDP (it crosses NATs) over raw ESP.
	endpoints := make(map[routing.Tunnel]map[netip.Addr]uint16, len(eps))
	for t, m := range eps {
		e := make(map[netip.Addr]uint16, len(m))
		for a, r := range m {
			if s.local[a] {
				continue
			}
			if r.lo != r.hi {
				s.problem(netip.PrefixFrom(a, a.BitLen()), fmt.Sprintf("endpoint %v: routes ask for ports %d and %d; using %d", a, r.lo, r.hi, r.hi))
			}
			e[a] = r.hi
		}
		endpoints[t] = e
	}

	outSA := make(map[routing.Tunnel]*dataplane.SA)
	inTmpl := make(map[routing.Tunnel]tmpl)
	for i := range sas {
		sa := &sas[i]
		spi := sa.Keys.SPI
		if sa.SenderIDBits > 0 {
			return nil, fmt.Errorf("SA %08x: %w", spi, ErrSenderID)
		}
		rid := in.reqids.get(keyOf(sa))
		if sa.Dir&dataplane.In != 0 {
			var targets []stateID
			var srcs []netip.Addr
			var encaps []encap
			if sa.Peer.IsValid() {
				peer := sa.Peer.Addr()
				l, ok := in.localFor(sa, peer)
				if !ok {
					return nil, fmt.Errorf("xfrm: SA %08x: no local address towards peer %v", spi, peer)
				}
				var e encap
				if sa.Peer.Port() != 0 {
					e = encap{sport: sa.Peer.Port(), dport: in.localPort(peer.Is4())}
				}
				targets, srcs, encaps = []stateID{{l, spi}}, []netip.Addr{peer}, []encap{e}
			} else {
				eps := in.endpoints
				if sa.Local.IsValid() {
					ep, _ := in.endpointFor(sa.Local.Is4())
					eps = []netip.AddrPort{netip.AddrPortFrom(sa.Local, ep.Port())}
				}
				for _, ep := range eps {
					var e encap
					if ep.Port() != 0 {
						e = encap{sport: DefaultEncapPort, dport: ep.Port()}
					}
					targets = append(targets, stateID{ep.Addr(), spi})
					srcs = append(srcs, anyAddr(ep.Addr().Is4()))
					encaps = append(encaps, e)
				}
				if len(targets) == 0 {
					return nil, fmt.Errorf("xfrm: group SA %08x: no local endpoint to receive it on (Config.Endpoints)", spi)
				}
			}
			for j, id := range targets {
				k := &kstate{stateID: id, src: srcs[j], reqid: rid, in: true, encap: encaps[j],
					replay: uint32(min(sa.ReplayWindow, MaxReplayWindow)), sel: selectorOf(sa), keys: &sa.Keys}
				if err := s.addState(k); err != nil {
					return nil, err
				}
				if _, seen := inTmpl[sa.Tunnel]; !seen && sa.Tunnel != 0 {
					inTmpl[sa.Tunnel] = tmpl{src: k.src, dst: k.dst, reqid: rid}
				}
			}
		}
		if sa.Dir&dataplane.Out == 0 {
			continue
		}
		outSA[sa.Tunnel] = sa
		if sa.Peer.IsValid() {
			peer := sa.Peer.Addr()
			l, ok := in.localFor(sa, peer)
			if !ok {
				return nil, fmt.Errorf("xfrm: SA %08x: no local address towards peer %v", spi, peer)
			}
			var e encap
			if sa.Peer.Port() != 0 {
				e = encap{sport: in.localPort(peer.Is4()), dport: sa.Peer.Port()}
			}
			if err := s.addState(&kstate{stateID: stateID{peer, spi}, src: l, reqid: rid, encap: e, keys: &sa.Keys}); err != nil {
				return nil, err
			}
			continue
		}
		eps := endpoints[sa.Tunnel]
		addrs := make([]netip.Addr, 0, len(eps))
		for a := range eps {
			addrs = append(addrs, a)
		}
		slices.SortFunc(addrs, netip.Addr.Compare)
		for _, a := range addrs {
			l, ok := in.localFor(sa, a)
			if !ok {
				s.problem(netip.PrefixFrom(a, a.BitLen()), fmt.Sprintf("endpoint %v of tunnel %d: no local address of its family; its prefixes are blocked", a, sa.Tunnel))
				continue
			}
			var e encap
			if port := eps[a]; port != 0 {
				e = encap{sport: in.localPort(a.Is4()), dport: port}
			}
			if err := s.addState(&kstate{stateID: stateID{a, spi}, src: l, reqid: rid, encap: e, keys: &sa.Keys}); err != nil {
				return nil, err
			}
			s.reach[tunnelAddr{sa.Tunnel, a}] = l
		}
	}

	// What each tunnel decides for its prefixes' policies.
	placeholder := netip.IPv4Unspecified()
	if len(in.endpoints) > 0 {
		placeholder = in.endpoints[0].Addr()
	}
	for k, rid := range in.reqids.ids {
		if k.tunnel == 0 {
			continue
		}
		c := tunnelCtx{rid: rid}
		if sa := outSA[k.tunnel]; sa != nil {
			c.out = outGroup
			if sa.Peer.IsValid() {
				c.out = outPeer
				if l, ok := in.localFor(sa, sa.Peer.Addr()); ok {
					c.peer = tmpl{src: l, dst: sa.Peer.Addr(), reqid: rid}
				}
			}
		}
		t, ok := inTmpl[k.tunnel]
		if !ok {
			// No SA receives this tunnel yet: a template no state
			// satisfies, so the prefix's packets are accepted only once
			// one does.
			t = tmpl{src: anyAddr(placeholder.Is4()), dst: placeholder, reqid: rid}
		}
		c.in = t
		s.tunnels[k.tunnel] = c
	}
	slices.SortFunc(s.problems, func(a, b problem) int { return comparePrefix(a.at, b.at) })
	return s, nil
}

func (s *saLevel) problem(at netip.Prefix, msg string) {
	s.problems = append(s.problems, problem{at, msg})
}

// problemKind says why a tunnelled prefix is not tunnelled as asked.
type problemKind uint8

const (
	problemNone      problemKind = iota
	problemNoSA                  // the tunnel has no outbound SA: blocked
	problemNoEP                  // the route has no ESP endpoint: blocked
	problemOurselves             // the endpoint is this node: not tunnelled
)

// routeProblem is a problem of one prefix, formatted only when reported.
type routeProblem struct {
	kind     problemKind
	tunnel   routing.Tunnel
	endpoint netip.AddrPort
}

func (r routeProblem) text(p netip.Prefix) string {
	switch r.kind {
	case problemNoSA:
		return fmt.Sprintf("prefix %v: tunnel %d has no outbound SA; blocked", p, r.tunnel)
	case problemNoEP:
		return fmt.Sprintf("prefix %v: tunnel %d route has no ESP endpoint; blocked", p, r.tunnel)
	case problemOurselves:
		return fmt.Sprintf("prefix %v: endpoint %v is this node; not tunnelled", p, r.endpoint)
	}
	return ""
}

// prefixPolicies is what a tunnelled FIB entry asks of the kernel.
type prefixPolicies struct {
	tunnelled bool // the prefix has tunnel policies (out, and in = fwd)
	out, in   pval
	problem   routeProblem
}

// prefixPolicyIDs returns the IDs of the policies a prefix has: out
// (any → p), in and fwd (p → any; both take prefixPolicies.in).
// policyID.prefix is the way back.
func prefixPolicyIDs(p netip.Prefix) [3]policyID {
	a := anyPrefix(p.Addr().Is4())
	return [3]policyID{{dirOut, a, p}, {dirIn, p, a}, {dirFwd, p, a}}
}

// tunnelPolicies returns the policies of prefix p, whose FIB entry nh goes
// through a tunnel.
func (s *saLevel) tunnelPolicies(p netip.Prefix, nh routing.NextHop, prioBase uint32) prefixPolicies {
	c := s.tunnels[nh.Tunnel]
	if nh.Endpoint.IsValid() && s.local[nh.Endpoint.Addr()] && c.out == outGroup {
		// A route back to ourselves: the kernel delivers it locally.
		return prefixPolicies{problem: routeProblem{kind: problemOurselves, tunnel: nh.Tunnel, endpoint: nh.Endpoint}}
	}
	r := prefixPolicies{tunnelled: true}
	pr := prio(prioBase, p)
	r.out = pval{prio: pr}
	switch c.out {
	case outNone:
		r.out.block = true
		r.problem = routeProblem{kind: problemNoSA, tunnel: nh.Tunnel}
	case outPeer:
		r.out.tmpl = c.peer
		r.out.block = !c.peer.ok()
	default:
		if !nh.Endpoint.IsValid() {
			r.out.block = true
			r.problem = routeProblem{kind: problemNoEP, tunnel: nh.Tunnel}
		} else if l, ok := s.reach[tunnelAddr{nh.Tunnel, nh.Endpoint.Addr()}]; ok {
			r.out.tmpl = tmpl{src: l, dst: nh.Endpoint.Addr(), reqid: c.rid}
		} else {
			r.out.block = true
		}
	}
	r.in = pval{prio: pr, tmpl: c.in}
	return r
}

// coveredBy reports whether a tunnelled prefix contains b (or is b).
func coveredBy(b netip.Prefix, tunnelled map[netip.Prefix]bool) bool {
	for bits := b.Bits(); bits >= 0; bits-- {
		if p, err := b.Addr().Prefix(bits); err == nil && tunnelled[p] {
			return true
		}
	}
	return false
}

func keyOf(sa *dataplane.SA) reqKey {
	if sa.Tunnel != 0 {
		return reqKey{tunnel: sa.Tunnel}
	}
	return reqKey{spi: sa.Keys.SPI}
}

// selectorOf returns the inbound state selector of sa: its selectors when a
// single kernel selector can say them, else any.
func selectorOf(sa *dataplane.SA) selector {
	r, l := sa.RemoteSelectors, sa.LocalSelectors
	if len(r) > 1 || len(l) > 1 || len(r)+len(l) == 0 {
		return selector{}
	}
	if len(r) == 1 && len(l) == 1 {
		if r[0].Addr().Is4() != l[0].Addr().Is4() {
			return selector{}
		}
		return selector{src: r[0], dst: l[0]}
	}
	if len(r) == 1 {
		return selector{src: r[0], dst: anyPrefix(r[0].Addr().Is4())}
	}
	return selector{src: anyPrefix(l[0].Addr().Is4()), dst: l[0]}
}

func (in *inputs) endpointFor(is4 bool) (netip.AddrPort, bool) {
	for _, ep := range in.endpoints {
		if ep.Addr().Is4() == is4 {
			return ep, true
		}
	}
	return netip.AddrPort{}, false
}

// localPort is the UDP port ESP-in-UDP leaves from and arrives at.
func (in *inputs) localPort(is4 bool) uint16 {
	if ep, ok := in.endpointFor(is4); ok && ep.Port() != 0 {
		return ep.Port()
	}
	return DefaultEncapPort
}

// localFor returns the outer local address sa uses towards dst.
func (in *inputs) localFor(sa *dataplane.SA, dst netip.Addr) (netip.Addr, bool) {
	if sa.Local.IsValid() && sa.Local.Is4() == dst.Is4() {
		return sa.Local, true
	}
	if ep, ok := in.endpointFor(dst.Is4()); ok {
		return ep.Addr(), true
	}
	if in.source != nil {
		if a, ok := in.source(dst); ok && a.Is4() == dst.Is4() {
			return a, true
		}
	}
	return netip.Addr{}, false
}
