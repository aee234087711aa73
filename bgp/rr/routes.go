package rr

import (
	"context"
	"net/netip"
	"sync/atomic"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/mpsa-vpn/mpsa/bgp/tunnelencap"
)

// announceLocked validates one route a CPE announced and re-originates it
// (or withdraws what the hub had for the prefix if it fails).
func (g *group) announceLocked(ctx context.Context, c *cpeState, p *api.Path) {
	g.acceptLocked(ctx, c, p, false)
}

// acceptLocked is announceLocked; quiet (a route the CPE announced
// earlier, checked again after a change of policy or authorisation) leaves
// drops uncounted and unlogged: they were counted when it arrived.
func (g *group) acceptLocked(ctx context.Context, c *cpeState, p *api.Path, quiet bool) {
	pfx, ok := prefixOf(p)
	if !ok {
		if !quiet {
			g.stats.badRoute.Add(1)
		}
		return
	}
	if !c.authorised(pfx, g.pol.moreSpecifics) {
		if !quiet {
			g.stats.foreignPrefix.Add(1)
			if g.logs.allow() {
				reason := "foreign prefix"
				if c.within(pfx) {
					reason = "more specific of an authorised prefix"
				}
				g.log.Warn("CPE route dropped: prefix not authorised", "id", c.ID, "peer", c.Overlay.String(),
					"prefix", pfx.String(), "reason", reason)
			}
		}
		g.withdrawLocked(ctx, c, pfx)
		return
	}
	attrs, err := apiutil.GetNativePathAttributes(p)
	if err != nil {
		if !quiet {
			g.stats.badRoute.Add(1)
		}
		g.withdrawLocked(ctx, c, pfx)
		return
	}
	a := announced{origin: bgp.BGP_ORIGIN_ATTR_TYPE_IGP, localPref: DefaultLocalPref}
	var nh netip.Addr
	var encap tunnelencap.Endpoint
	hasEncap, badEncap := false, false
	for _, at := range attrs {
		switch at := at.(type) {
		case *bgp.PathAttributeOrigin:
			a.origin = at.Value
		case *bgp.PathAttributeLocalPref:
			a.localPref = at.Value
		case *bgp.PathAttributeMultiExitDisc:
			a.med, a.hasMED = at.Value, true
		case *bgp.PathAttributeNextHop:
			nh, _ = netip.AddrFromSlice(at.Value)
		case *bgp.PathAttributeMpReachNLRI:
			nh, _ = netip.AddrFromSlice(at.Nexthop)
		case *bgp.PathAttributeTunnelEncap:
			b, err := at.Serialize()
			if err != nil {
				badEncap = true
				break
			}
			hdr := 3
			if bgp.BGPAttrFlag(b[0])&bgp.BGP_ATTR_FLAG_EXTENDED_LENGTH != 0 {
				hdr = 4
			}
			ep, found, err := tunnelencap.Decode(b[hdr:])
			badEncap = err != nil
			encap, hasEncap = ep, found
		}
	}
	claimed := netip.AddrPortFrom(nh.Unmap(), 0)
	if hasEncap {
		claimed = tunnelencap.Resolve(encap, nh)
	}
	if g.pol.localPref != 0 {
		a.localPref = g.pol.localPref
	}
	if badEncap || claimed != c.Endpoint {
		if g.hub.cfg.Endpoint == EndpointReject {
			if !quiet {
				g.stats.epReject.Add(1)
				if g.logs.allow() {
					g.log.Warn("CPE route dropped: endpoint is not the CPE's IKE address", "id", c.ID, "peer", c.Overlay.String(),
						"prefix", pfx.String(), "endpoint", claimed.String(), "reason", "foreign endpoint")
				}
			}
			g.withdrawLocked(ctx, c, pfx)
			return
		}
		if !quiet {
			g.stats.epRewrite.Add(1)
			if g.logs.allow() {
				g.log.Info("CPE route endpoint rewritten to the CPE's IKE address", "id", c.ID, "peer", c.Overlay.String(),
					"prefix", pfx.String(), "endpoint", c.Endpoint.String(), "reason", "advertised "+claimed.String())
			}
		}
	}
	if _, ok := c.routes[pfx]; !ok && len(c.routes) >= g.pol.max {
		if quiet {
			return
		}
		g.stats.tooMany.Add(1)
		if g.logs.allow() {
			g.log.Warn("CPE route dropped: too many routes", "id", c.ID, "peer", c.Overlay.String(),
				"prefix", pfx.String(), "routes", len(c.routes), "reason", "route limit")
		}
		return
	}
	a.src = sourceID(c.routerID)
	if old, ok := c.routes[pfx]; ok && old.same(a) {
		// Re-advertised unchanged (after a CPE restart): only fresh again.
		old.stale = false
		c.routes[pfx] = old
		return
	}
	g.originateLocked(ctx, c, pfx, a)
}

// codecPrefix converts a prefix for GoBGP's codec.
func codecPrefix(p netip.Prefix) bgp.AddrPrefixInterface {
	if p.Addr().Is4() {
		return bgp.NewIPAddrPrefix(uint8(p.Bits()), p.Addr().String())
	}
	return bgp.NewIPv6AddrPrefix(uint8(p.Bits()), p.Addr().String())
}

// tunnelAttr is the Tunnel Encapsulation attribute for ep, octet for
// octet what tunnelencap.AppendAttribute produces (a test checks), handed
// to GoBGP as an attribute of a type it does not decode. GoBGP serializes a
// reflected path once per peer, from every peer's send loop at the same
// time, and its own Tunnel Encapsulation types write their length fields
// while serializing (v3.37.0 bgp.go TunnelEncapSubTLV.Serialize), a data
// race between the peers; an unknown attribute serializes without writes.
// `gobgp global rib` shows it as type 23 with its octets.
func tunnelAttr(ep netip.AddrPort) (bgp.PathAttributeInterface, error) {
	v, err := tunnelencap.AppendValue(nil, ep)
	if err != nil {
		return nil, err
	}
	return bgp.NewPathAttributeUnknown(bgp.BGPAttrFlag(tunnelencap.AttrFlags), bgp.BGP_ATTR_TYPE_TUNNEL_ENCAP, v), nil
}

// originateLocked puts the hub's version of a CPE route into the RIB: the
// CPE's ORIGIN and MED, the LOCAL_PREF of the policy, the CPE's BGP Identifier as
// ORIGINATOR_ID (as a reflected route would have, RFC 4456), the
// endpoint the hub saw on the IKE SA, and the CPE's path identifier so
// that two CPEs announcing one prefix stay two paths. A path that cannot
// be built withdraws what the hub held for the prefix.
func (g *group) originateLocked(ctx context.Context, c *cpeState, pfx netip.Prefix, a announced) {
	if old, ok := c.routes[pfx]; ok && old.src != a.src {
		g.withdrawLocked(ctx, c, pfx) // a new source ID does not replace the old path
	}
	nextHop := nextHopFor(pfx, &c.CPE)
	nlri := codecPrefix(pfx)
	// An empty AS_PATH, as the CPE sent it: without one GoBGP would build
	// it again for every copy it sends.
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(a.origin), bgp.NewPathAttributeAsPath(nil)}
	if pfx.Addr().Is4() && nextHop.Is4() {
		attrs = append(attrs, bgp.NewPathAttributeNextHop(nextHop.String()))
	} else {
		attrs = append(attrs, bgp.NewPathAttributeMpReachNLRI(nextHop.String(), []bgp.AddrPrefixInterface{nlri}))
	}
	attrs = append(attrs, bgp.NewPathAttributeLocalPref(a.localPref))
	if a.hasMED {
		attrs = append(attrs, bgp.NewPathAttributeMultiExitDisc(a.med))
	}
	if c.routerID.Is4() {
		attrs = append(attrs, bgp.NewPathAttributeOriginatorId(c.routerID.String()))
	}
	encap, err := tunnelAttr(c.Endpoint)
	if err != nil {
		g.stats.badRoute.Add(1)
		g.log.Warn("cannot build path", "id", c.ID, "prefix", pfx.String(), "err", err)
		g.withdrawLocked(ctx, c, pfx)
		return
	}
	attrs = append(attrs, encap)
	p, err := apiutil.NewPath(nlri, false, attrs, time.Now())
	if err != nil {
		g.stats.badRoute.Add(1)
		g.log.Warn("cannot build path", "id", c.ID, "prefix", pfx.String(), "err", err)
		g.withdrawLocked(ctx, c, pfx)
		return
	}
	p.Identifier = c.pathID
	// The CPE's BGP Identifier as the path's source: GoBGP then never sends
	// the path back to that CPE (filterPathFromSourcePeer compares router
	// IDs), as it would not reflect a route to its originator. FRR resets
	// the session when its own route comes back with its own address as
	// NEXT_HOP.
	setSource(p, g.hub.cfg.ASN, a.source())
	c.routes[pfx] = a
	g.stats.accepted.Add(1)
	g.submitLocked(c, pathOp{add: &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: p}, id: c.ID})
}

// withdrawLocked removes the hub's path for a CPE prefix, if there is one.
func (g *group) withdrawLocked(ctx context.Context, c *cpeState, pfx netip.Prefix) {
	a, ok := c.routes[pfx]
	if !ok {
		return
	}
	delete(c.routes, pfx)
	p, err := apiutil.NewPath(codecPrefix(pfx), true, nil, time.Now())
	if err != nil {
		return
	}
	p.Identifier = c.pathID
	setSource(p, g.hub.cfg.ASN, a.source()) // a withdrawal only matches a path of the same source
	g.submitLocked(c, pathOp{del: &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: p.Family, Path: p}, id: c.ID})
}

// Path operations run on pathWorkers goroutines, so that GoBGP's event
// loop always finds the next one queued: issued one at a time from the
// event handler, each AddPath waited for the loop to finish the previous
// path's fan-out and for the handler to be scheduled again, which on a
// busy machine doubled the wall time of a full-mesh convergence. The
// operations of one CPE always go to the same worker, in order (a path is
// identified by the CPE's path identifier and its prefix).
const (
	pathWorkers = 4
	pathQueue   = 256 // per worker: enough to keep the loop fed, 40 octets each, allocated up front
)

// pathOp is one AddPath or DeletePath, or a barrier.
type pathOp struct {
	add     *api.AddPathRequest
	del     *api.DeletePathRequest
	barrier func()
	id      string // CPE, for logs
}

func (g *group) startWorkers() {
	for i := range g.ops {
		g.ops[i] = make(chan pathOp, pathQueue)
		g.opsWG.Add(1)
		go g.routinePaths(g.ops[i])
	}
}

// routinePaths applies path operations in order until its queue closes.
func (g *group) routinePaths(ops chan pathOp) {
	defer g.opsWG.Done()
	ctx := context.Background()
	for op := range ops {
		switch {
		case op.barrier != nil:
			op.barrier()
		case op.add != nil:
			if _, err := g.s.AddPath(ctx, op.add); err != nil {
				g.stats.badRoute.Add(1)
				g.log.Warn("AddPath failed", "id", op.id, "err", err)
			}
		case op.del != nil:
			if err := g.s.DeletePath(ctx, op.del); err != nil {
				g.log.Warn("DeletePath failed", "id", op.id, "err", err)
			}
		}
	}
}

// submitLocked queues an operation on the worker of its CPE. Ops of one
// CPE stay in order; a CPE's routes of one UPDATE reach GoBGP back to
// back, so its send loops can pack them as they pack a reflected UPDATE.
func (g *group) submitLocked(c *cpeState, op pathOp) {
	if g.closed {
		return
	}
	g.ops[c.pathID%pathWorkers] <- op
}

// barrierLocked runs f once every operation queued so far has been applied.
func (g *group) barrierLocked(f func()) {
	if g.closed {
		return
	}
	var left atomic.Int32
	left.Store(pathWorkers)
	for _, q := range g.ops {
		q <- pathOp{barrier: func() {
			if left.Add(-1) == 0 {
				f()
			}
		}}
	}
}

// stopWorkers lets the workers finish their queues and waits for them.
func (g *group) stopWorkers() {
	for _, q := range g.ops {
		close(q)
	}
	g.opsWG.Wait()
}

// setSource makes a CPE's BGP Identifier the source of a path the hub
// adds.
func setSource(p *api.Path, asn uint32, id netip.Addr) {
	if id.IsValid() {
		p.SourceAsn, p.SourceId = asn, id.String()
	}
}
