package speaker

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/mpsa-vpn/mpsa/bgp/tunnelencap"
	"github.com/mpsa-vpn/mpsa/routing"
)

// scanUpdate checks the framing of an UPDATE body (RFC 4271 §4.3, RFC 7606
// §4) before the codec sees it: the withdrawn routes and path attribute
// lengths fit, every attribute header fits the attribute block exactly, and
// MP_REACH_NLRI / MP_UNREACH_NLRI appear at most once (RFC 7606 §3(g)).
// Failing any of these leaves no reliable way to find the NLRI, so it
// resets the session. It returns the raw Tunnel Encapsulation attribute.
func scanUpdate(body []byte) (encap []byte, hasEncap bool, err error) {
	malformed := func(what string) error {
		return notify(errUpdate, bgp.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST, nil, "malformed UPDATE: %s", what)
	}
	if len(body) < 4 {
		return nil, false, malformed("short")
	}
	wl := int(binary.BigEndian.Uint16(body))
	if 2+wl+2 > len(body) {
		return nil, false, malformed("withdrawn routes length")
	}
	rest := body[2+wl:]
	al := int(binary.BigEndian.Uint16(rest))
	if 2+al > len(rest) {
		return nil, false, malformed("path attributes length")
	}
	attrs := rest[2 : 2+al]
	var reach, unreach int
	for a := attrs; len(a) > 0; {
		if len(a) < 3 {
			return nil, false, malformed("attribute header")
		}
		hdr, n := 3, int(a[2])
		if a[0]&0x10 != 0 {
			if len(a) < 4 {
				return nil, false, malformed("attribute header")
			}
			hdr, n = 4, int(binary.BigEndian.Uint16(a[2:]))
		}
		if hdr+n > len(a) {
			return nil, false, malformed("attribute length")
		}
		switch bgp.BGPAttrType(a[1]) {
		case bgp.BGP_ATTR_TYPE_MP_REACH_NLRI:
			reach++
		case bgp.BGP_ATTR_TYPE_MP_UNREACH_NLRI:
			unreach++
		}
		a = a[hdr+n:]
	}
	if reach > 1 || unreach > 1 {
		return nil, false, malformed("repeated MP_REACH_NLRI or MP_UNREACH_NLRI")
	}
	encap, hasEncap, _ = tunnelencap.FindAttribute(attrs)
	return encap, hasEncap, nil
}

// handleUpdate applies one UPDATE message with RFC 7606 error handling.
func (ss *session) handleUpdate(raw []byte) error {
	sp := ss.sp
	encap, hasEncap, err := scanUpdate(raw[headerLen:])
	if err != nil {
		return err
	}
	m, perr := safeParse(raw)
	var u *bgp.BGPUpdate
	if m != nil {
		u, _ = m.Body.(*bgp.BGPUpdate)
	}
	withdrawAll := false
	if perr != nil {
		var me *bgp.MessageError
		if u == nil || !errors.As(perr, &me) {
			return asNotify(perr, errUpdate, bgp.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST)
		}
		switch me.ErrorHandling {
		case bgp.ERROR_HANDLING_NONE:
		case bgp.ERROR_HANDLING_ATTRIBUTE_DISCARD:
			sp.stats.attrDiscard.Add(1)
		case bgp.ERROR_HANDLING_TREAT_AS_WITHDRAW:
			withdrawAll = true
		default: // AFI/SAFI disable is not offered by the peer; reset.
			return asNotify(perr, errUpdate, bgp.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST)
		}
	}
	if !withdrawAll {
		if _, verr := bgp.ValidateUpdateMsg(u, ss.families, false, false, true); verr != nil {
			var me *bgp.MessageError
			if !errors.As(verr, &me) {
				return asNotify(verr, errUpdate, bgp.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST)
			}
			switch me.ErrorHandling {
			case bgp.ERROR_HANDLING_NONE:
			case bgp.ERROR_HANDLING_ATTRIBUTE_DISCARD:
				sp.stats.attrDiscard.Add(1)
			case bgp.ERROR_HANDLING_TREAT_AS_WITHDRAW:
				withdrawAll = true
			default:
				return asNotify(verr, errUpdate, bgp.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST)
			}
		}
	}
	if eor, f := u.IsEndOfRib(); eor && !withdrawAll {
		ss.endOfRIB(f)
		return nil
	}

	// Collect NLRI by family.
	var withdrawn, announced []netip.Prefix
	var nh4, nh6 netip.Addr
	var attrs routeAttrs
	attrs.localPref = DefaultLocalPref
	for _, p := range u.WithdrawnRoutes {
		withdrawn = ss.appendPrefix(withdrawn, p, bgp.RF_IPv4_UC)
	}
	for _, p := range u.NLRI {
		announced = ss.appendPrefix(announced, p, bgp.RF_IPv4_UC)
	}
	var mpAnnounced []netip.Prefix
	for _, a := range u.PathAttributes {
		switch a := a.(type) {
		case *bgp.PathAttributeNextHop:
			nh4 = addrOf(a.Value)
		case *bgp.PathAttributeMpReachNLRI:
			f := bgp.AfiSafiToRouteFamily(a.AFI, a.SAFI)
			nh6 = addrOf(a.Nexthop)
			for _, p := range a.Value {
				mpAnnounced = ss.appendPrefix(mpAnnounced, p, f)
			}
		case *bgp.PathAttributeMpUnreachNLRI:
			f := bgp.AfiSafiToRouteFamily(a.AFI, a.SAFI)
			for _, p := range a.Value {
				withdrawn = ss.appendPrefix(withdrawn, p, f)
			}
		case *bgp.PathAttributeLocalPref:
			attrs.localPref = a.Value
		case *bgp.PathAttributeOriginatorId:
			if id, ok := netip.AddrFromSlice(a.Value.To4()); ok && id == sp.cfg.RouterID {
				attrs.own = true
			}
		}
	}
	if !withdrawAll && hasEncap {
		ep, found, err := tunnelencap.Decode(encap)
		if err != nil {
			sp.stats.badEncap.Add(1)
			ss.log.Debug("malformed Tunnel Encapsulation attribute, treating UPDATE as withdraw", "err", err)
			withdrawAll = true
		} else if found {
			attrs.encap, attrs.hasEncap = ep, true
		}
	}
	if withdrawAll {
		sp.stats.treatAsWithdraw.Add(1)
	}

	sp.ribMu.Lock()
	defer sp.ribMu.Unlock()
	for _, p := range withdrawn {
		sp.withdrawLocked(p)
	}
	if err := ss.announce(announced, nh4, attrs, withdrawAll); err != nil {
		return err
	}
	return ss.announce(mpAnnounced, nh6, attrs, withdrawAll)
}

// routeAttrs are the attributes of one UPDATE that make up a route.
type routeAttrs struct {
	localPref uint32
	own       bool
	encap     netip.AddrPort
	hasEncap  bool
}

// announce installs prefixes learned with next hop nh; called with ribMu held.
func (ss *session) announce(prefixes []netip.Prefix, nh netip.Addr, a routeAttrs, withdraw bool) error {
	sp := ss.sp
	if len(prefixes) == 0 {
		return nil
	}
	if a.own && !withdraw {
		sp.stats.own.Add(uint64(len(prefixes)))
		withdraw = true // our own route reflected back replaces nothing we use
	}
	r := routing.Route{
		NextHop:   nh,
		Tunnel:    sp.cfg.Tunnel,
		Peer:      ss.peerID,
		Source:    routing.SourceBGP,
		LocalPref: a.localPref,
	}
	if a.hasEncap {
		r.Endpoint = tunnelencap.Resolve(a.encap, nh)
		if !r.Endpoint.IsValid() {
			withdraw = true
		}
	}
	for _, p := range prefixes {
		if withdraw {
			sp.withdrawLocked(p)
			continue
		}
		r.Prefix = p
		if err := sp.upsertLocked(r); err != nil {
			e := notify(errCease, subMaxPrefix, maxPrefixData(familyOf(p), sp.cfg.MaxRoutes), "more than %d routes", sp.cfg.MaxRoutes)
			e.hard = true
			return e
		}
	}
	return nil
}

// maxPrefixData is the data of a Cease/Maximum Number of Prefixes Reached
// NOTIFICATION (RFC 4486 §4).
func maxPrefixData(f bgp.RouteFamily, n int) []byte {
	afi, safi := bgp.RouteFamilyToAfiSafi(f)
	b := make([]byte, 7)
	binary.BigEndian.PutUint16(b, afi)
	b[2] = safi
	binary.BigEndian.PutUint32(b[3:], uint32(min(int64(n), 1<<31))) // n fits: int is at most 64 bits
	return b
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// appendPrefix converts a codec prefix of family f; prefixes of families we
// did not negotiate are counted and dropped.
func (ss *session) appendPrefix(out []netip.Prefix, p bgp.AddrPrefixInterface, f bgp.RouteFamily) []netip.Prefix {
	if _, ok := ss.families[f]; !ok {
		ss.sp.stats.otherFam.Add(1)
		return out
	}
	var ip net.IP
	var bits uint8
	switch p := p.(type) {
	case *bgp.IPAddrPrefix:
		ip, bits = p.Prefix, p.Length
	case *bgp.IPv6AddrPrefix:
		ip, bits = p.Prefix, p.Length
	default:
		ss.sp.stats.otherFam.Add(1)
		return out
	}
	var a netip.Addr
	if f == bgp.RF_IPv4_UC {
		v4 := ip.To4()
		if v4 == nil {
			return out
		}
		a = netip.AddrFrom4([4]byte(v4))
	} else {
		v6 := ip.To16()
		if v6 == nil {
			return out
		}
		a = netip.AddrFrom16([16]byte(v6))
	}
	pfx, err := a.Prefix(int(bits))
	if err != nil {
		return out
	}
	return append(out, pfx)
}

// endOfRIB withdraws the routes of family f that the hub did not
// re-advertise after a graceful restart (RFC 4724 §4.2).
func (ss *session) endOfRIB(f bgp.RouteFamily) {
	sp := ss.sp
	sp.ribMu.Lock()
	defer sp.ribMu.Unlock()
	sp.flushStaleLocked([]bgp.RouteFamily{f})
	if sp.rib.stale == 0 {
		sp.stopTimerLocked(&sp.rib.staleTimer)
	}
}

// Building our UPDATEs.

// Chunk sizes keep every UPDATE below 4096 octets: an IPv4 prefix takes at
// most 5 octets, an IPv6 prefix 17, and the attributes well under 200.
const (
	chunkIPv4 = 600
	chunkIPv6 = 200
)

// syncAdvertised sends what changed between what we advertised and what
// the configuration asks for; all=true (a new session) sends everything
// and then End-of-RIB for every family.
func (ss *session) syncAdvertised(all bool) error {
	want, ep := ss.sp.advertisement()
	if all || ep != ss.advEP {
		clear(ss.adv)
		ss.advEP = ep
	}
	wantSet := make(map[netip.Prefix]struct{}, len(want))
	var add []netip.Prefix
	for _, p := range want {
		wantSet[p] = struct{}{}
		if _, ok := ss.adv[p]; !ok {
			add = append(add, p)
		}
	}
	var del []netip.Prefix
	for p := range ss.adv {
		if _, ok := wantSet[p]; !ok {
			del = append(del, p)
		}
	}
	if err := ss.sendWithdraw(del); err != nil {
		return err
	}
	if err := ss.sendAnnounce(add); err != nil {
		return err
	}
	if all {
		ss.eorPending = true
	}
	return ss.sendEndOfRIB()
}

// sendEndOfRIB sends the End-of-RIB markers of a new session unless they
// are held back (Config.DeferEndOfRIB).
func (ss *session) sendEndOfRIB() error {
	if !ss.eorPending || ss.sp.cfg.DeferEndOfRIB && !ss.sp.eorReleased.Load() {
		return nil
	}
	ss.eorPending = false
	for _, f := range ourFamilies {
		if _, ok := ss.families[f]; ok {
			if err := ss.write(bgp.NewEndOfRib(f)); err != nil {
				return err
			}
		}
	}
	return nil
}

// advertiseFamily re-sends every prefix of family f (ROUTE-REFRESH).
func (ss *session) advertiseFamily(f bgp.RouteFamily) error {
	var ps []netip.Prefix
	for p := range ss.adv {
		if familyOf(p) == f {
			ps = append(ps, p)
		}
	}
	for _, p := range ps {
		delete(ss.adv, p)
	}
	return ss.sendAnnounce(ps)
}

func toCodec(p netip.Prefix) bgp.AddrPrefixInterface {
	if p.Addr().Is4() {
		return bgp.NewIPAddrPrefix(uint8(p.Bits()), p.Addr().String())
	}
	return bgp.NewIPv6AddrPrefix(uint8(p.Bits()), p.Addr().String())
}

// nextHop picks the NEXT_HOP for family f: the ESP endpoint where the
// family allows it (so speakers without the Tunnel Encapsulation attribute
// still reach it, RFC 5565), else our session address.
func (ss *session) nextHop(f bgp.RouteFamily) (netip.Addr, bool) {
	ep := ss.advEP.Addr().Unmap()
	if f == bgp.RF_IPv4_UC {
		switch {
		case ep.Is4():
			return ep, true
		case ss.localAddr.Is4():
			return ss.localAddr, true
		}
		return netip.Addr{}, false
	}
	for _, a := range []netip.Addr{ep, ss.localAddr} {
		switch {
		case a.Is6():
			return a, true
		case a.Is4():
			return netip.AddrFrom16(a.As16()), true // IPv4-mapped (RFC 4291 §2.5.5.2)
		}
	}
	return netip.Addr{}, false
}

func (ss *session) commonAttrs() []bgp.PathAttributeInterface {
	attrs := []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP),
		bgp.NewPathAttributeAsPath(nil),
		bgp.NewPathAttributeLocalPref(DefaultLocalPref),
	}
	if v, err := tunnelencap.AppendValue(nil, ss.advEP); err == nil {
		attrs = append(attrs, bgp.NewPathAttributeUnknown(tunnelencap.AttrFlags, tunnelencap.AttrType, v))
	}
	return attrs
}

func (ss *session) sendAnnounce(ps []netip.Prefix) error {
	var v4, v6 []bgp.AddrPrefixInterface
	var v4p, v6p []netip.Prefix
	for _, p := range ps {
		f := familyOf(p)
		if _, ok := ss.families[f]; !ok {
			continue
		}
		if f == bgp.RF_IPv4_UC {
			v4, v4p = append(v4, toCodec(p)), append(v4p, p)
		} else {
			v6, v6p = append(v6, toCodec(p)), append(v6p, p)
		}
	}
	if len(v4) > 0 {
		nh, ok := ss.nextHop(bgp.RF_IPv4_UC)
		if !ok {
			ss.log.Warn("no IPv4 next hop for IPv4 prefixes; not advertising them")
		} else {
			for i := 0; i < len(v4); i += chunkIPv4 {
				chunk := v4[i:min(i+chunkIPv4, len(v4))]
				nlri := make([]*bgp.IPAddrPrefix, len(chunk))
				for j, p := range chunk {
					nlri[j] = p.(*bgp.IPAddrPrefix)
				}
				attrs := ss.commonAttrs()
				attrs = append(attrs[:2:2], append([]bgp.PathAttributeInterface{bgp.NewPathAttributeNextHop(nh.String())}, attrs[2:]...)...)
				if err := ss.write(bgp.NewBGPUpdateMessage(nil, attrs, nlri)); err != nil {
					return err
				}
			}
			for _, p := range v4p {
				ss.adv[p] = struct{}{}
			}
		}
	}
	if len(v6) > 0 {
		nh, ok := ss.nextHop(bgp.RF_IPv6_UC)
		if !ok {
			ss.log.Warn("no IPv6 next hop for IPv6 prefixes; not advertising them")
			return nil
		}
		for i := 0; i < len(v6); i += chunkIPv6 {
			chunk := v6[i:min(i+chunkIPv6, len(v6))]
			attrs := ss.commonAttrs()
			reach := bgp.NewPathAttributeMpReachNLRI(nh.String(), chunk)
			attrs = append(attrs[:3:3], append([]bgp.PathAttributeInterface{reach}, attrs[3:]...)...)
			if err := ss.write(bgp.NewBGPUpdateMessage(nil, attrs, nil)); err != nil {
				return err
			}
		}
		for _, p := range v6p {
			ss.adv[p] = struct{}{}
		}
	}
	return nil
}

func (ss *session) sendWithdraw(ps []netip.Prefix) error {
	var v4 []*bgp.IPAddrPrefix
	var v6 []bgp.AddrPrefixInterface
	for _, p := range ps {
		delete(ss.adv, p)
		if _, ok := ss.families[familyOf(p)]; !ok {
			continue
		}
		if p.Addr().Is4() {
			v4 = append(v4, toCodec(p).(*bgp.IPAddrPrefix))
		} else {
			v6 = append(v6, toCodec(p))
		}
	}
	for i := 0; i < len(v4); i += chunkIPv4 {
		if err := ss.write(bgp.NewBGPUpdateMessage(v4[i:min(i+chunkIPv4, len(v4))], nil, nil)); err != nil {
			return err
		}
	}
	for i := 0; i < len(v6); i += chunkIPv6 {
		un := bgp.NewPathAttributeMpUnreachNLRI(v6[i:min(i+chunkIPv6, len(v6))])
		if err := ss.write(bgp.NewBGPUpdateMessage(nil, []bgp.PathAttributeInterface{un}, nil)); err != nil {
			return err
		}
	}
	return nil
}
