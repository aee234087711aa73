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

func (d *desired) addState(s *kstate) error {
	if other, dup := d.states[s.stateID]; dup {
		return fmt.Errorf("xfrm: SA %08x: two states with destination %v (reqids %#x and %#x)", s.spi, s.dst, other.reqid, s.reqid)
	}
	d.states[s.stateID] = s
	return nil
}

// compute returns the objects that install in.sas and in.routes. An error
// means the SAs cannot be installed as given (the State is refused); what
// the FIB asks for and cannot be done is blocked and reported as problems.
func compute(in *inputs) (*desired, error) {
	d := &desired{states: make(map[stateID]*kstate), policies: make(map[policyID]pval, 3*len(in.routes))}

	sas := slices.Clone(in.sas)
	slices.SortFunc(sas, func(a, b dataplane.SA) int {
		if c := (reqKey{a.Tunnel, a.Keys.SPI}).compare(reqKey{b.Tunnel, b.Keys.SPI}); c != 0 {
			return c
		}
		return int(a.Dir) - int(b.Dir)
	})

	// Request IDs: one per tunnel of an SA or a route, one per tunnel-less SA.
	keys := make(map[reqKey]bool)
	for i := range sas {
		keys[keyOf(&sas[i])] = true
	}
	for _, nh := range in.routes {
		if nh.Tunnel != 0 && !nh.Local {
			keys[reqKey{tunnel: nh.Tunnel}] = true
		}
	}
	if !in.reqids.sync(keys) {
		return nil, fmt.Errorf("xfrm: more than %d tunnels", in.reqids.span)
	}

	local := make(map[netip.Addr]bool)
	for _, ep := range in.endpoints {
		local[ep.Addr()] = true
	}
	for i := range sas {
		if sas[i].Local.IsValid() {
			local[sas[i].Local] = true
		}
	}

	// Remote ESP endpoints of the group tunnels, from the FIB.
	endpoints := make(map[routing.Tunnel]map[netip.Addr]uint16)
	for _, nh := range in.routes {
		if nh.Tunnel == 0 || nh.Local || !nh.Endpoint.IsValid() || local[nh.Endpoint.Addr()] {
			continue
		}
		m := endpoints[nh.Tunnel]
		if m == nil {
			m = make(map[netip.Addr]uint16)
			endpoints[nh.Tunnel] = m
		}
		addr, port := nh.Endpoint.Addr(), nh.Endpoint.Port()
		if old, seen := m[addr]; seen && old != port {
			// One state per (address, SPI): the higher port wins, which
			// prefers ESP-in-UDP (it crosses NATs) over raw ESP.
			d.problem(netip.PrefixFrom(addr, addr.BitLen()), "endpoint %v: routes ask for ports %d and %d; using %d", addr, min(old, port), max(old, port), max(old, port))
			port = max(old, port)
		}
		m[addr] = port
	}

	outSA := make(map[routing.Tunnel]*dataplane.SA)
	inTmpl := make(map[routing.Tunnel]tmpl)
	// reach[tunnel][endpoint] is the outer source towards a group endpoint.
	reach := make(map[routing.Tunnel]map[netip.Addr]netip.Addr)
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
				s := &kstate{stateID: id, src: srcs[j], reqid: rid, in: true, encap: encaps[j],
					replay: uint32(min(sa.ReplayWindow, MaxReplayWindow)), sel: selectorOf(sa), keys: &sa.Keys}
				if err := d.addState(s); err != nil {
					return nil, err
				}
				if _, seen := inTmpl[sa.Tunnel]; !seen && sa.Tunnel != 0 {
					inTmpl[sa.Tunnel] = tmpl{src: s.src, dst: s.dst, reqid: rid}
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
			if err := d.addState(&kstate{stateID: stateID{peer, spi}, src: l, reqid: rid, encap: e, keys: &sa.Keys}); err != nil {
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
		r := make(map[netip.Addr]netip.Addr, len(addrs))
		reach[sa.Tunnel] = r
		for _, a := range addrs {
			l, ok := in.localFor(sa, a)
			if !ok {
				d.problem(netip.PrefixFrom(a, a.BitLen()), "endpoint %v of tunnel %d: no local address of its family; its prefixes are blocked", a, sa.Tunnel)
				continue
			}
			var e encap
			if port := eps[a]; port != 0 {
				e = encap{sport: in.localPort(a.Is4()), dport: port}
			}
			if err := d.addState(&kstate{stateID: stateID{a, spi}, src: l, reqid: rid, encap: e, keys: &sa.Keys}); err != nil {
				return nil, err
			}
			r[a] = l
		}
	}

	// Policies.
	tunnelled := make(map[netip.Prefix]bool, len(in.routes))
	var candidates []netip.Prefix
	for p, nh := range in.routes {
		if nh.Tunnel == 0 || nh.Local {
			candidates = append(candidates, p)
			continue
		}
		if nh.Endpoint.IsValid() && local[nh.Endpoint.Addr()] && outSA[nh.Tunnel] != nil && !outSA[nh.Tunnel].Peer.IsValid() {
			// A route back to ourselves: the kernel delivers it locally.
			d.problem(p, "prefix %v: endpoint %v is this node; not tunnelled", p, nh.Endpoint)
			continue
		}
		tunnelled[p] = true
		is4 := p.Addr().Is4()
		prio := in.prioBase + uint32(maxBits(is4)-p.Bits())
		rid := in.reqids.get(reqKey{tunnel: nh.Tunnel})

		out := kpolicy{policyID: policyID{dirOut, anyPrefix(is4), p}, pval: pval{prio: prio}}
		switch sa := outSA[nh.Tunnel]; {
		case sa == nil:
			out.block = true
			d.problem(p, "prefix %v: tunnel %d has no outbound SA; blocked", p, nh.Tunnel)
		case sa.Peer.IsValid():
			if l, ok := in.localFor(sa, sa.Peer.Addr()); ok {
				out.tmpl = tmpl{src: l, dst: sa.Peer.Addr(), reqid: rid}
			} else {
				out.block = true
			}
		case !nh.Endpoint.IsValid():
			out.block = true
			d.problem(p, "prefix %v: tunnel %d route has no ESP endpoint; blocked", p, nh.Tunnel)
		default:
			if l, ok := reach[nh.Tunnel][nh.Endpoint.Addr()]; ok {
				out.tmpl = tmpl{src: l, dst: nh.Endpoint.Addr(), reqid: rid}
			} else {
				out.block = true
			}
		}
		d.policies[out.policyID] = out.pval

		t, ok := inTmpl[nh.Tunnel]
		if !ok {
			// No SA receives this tunnel yet: a template no state
			// satisfies, so the prefix's packets are accepted only once
			// one does.
			dst := netip.IPv4Unspecified()
			if len(in.endpoints) > 0 {
				dst = in.endpoints[0].Addr()
			}
			t = tmpl{src: anyAddr(dst.Is4()), dst: dst, reqid: rid}
		}
		for _, dir := range []pdir{dirIn, dirFwd} {
			d.policies[policyID{dir, p, anyPrefix(is4)}] = pval{prio: prio, tmpl: t}
		}
	}

	// Bypass: local and underlay entries, and configured prefixes, that a
	// shorter tunnelled prefix would otherwise capture. A configured
	// prefix equal to a tunnelled one replaces its policies.
	candidates = append(candidates, in.bypass...)
	for _, b := range candidates {
		if !coveredBy(b, tunnelled) {
			continue
		}
		is4 := b.Addr().Is4()
		prio := in.prioBase + uint32(maxBits(is4)-b.Bits())
		for _, id := range []policyID{{dirOut, anyPrefix(is4), b}, {dirIn, b, anyPrefix(is4)}, {dirFwd, b, anyPrefix(is4)}} {
			d.policies[id] = pval{prio: prio}
		}
	}
	for _, pr := range d.top {
		d.problems = append(d.problems, pr.msg)
	}
	return d, nil
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
