package ike

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/ike/wire"
	"github.com/mpsa-vpn/mpsa/transform"
)

// ikeAuthTask is the initiator's IKE_AUTH (RFC 7296 §1.2) with the first
// CHILD_SA:
//
//	HDR, SK {IDi, [CERT+], [CERTREQ], [IDr], AUTH, [CP(CFG_REQUEST)],
//	         [N(INITIAL_CONTACT)], [N(MOBIKE_SUPPORTED)], SAi2, TSi, TSr}  -->
//	                    <--  HDR, SK {IDr, [CERT+], AUTH, [CP(CFG_REPLY)], SAr2, TSi, TSr}
type ikeAuthTask struct {
	peer     *auth.Peer
	childSPI uint32
	tsi, tsr []wire.Selector
}

func (t *ikeAuthTask) exchange() wire.ExchangeType { return wire.IKEAuth }

func (t *ikeAuthTask) build(sa *ikeSA) ([]wire.Payload, error) {
	h, m := sa.h, sa.h.m
	c := h.conn
	d := sa.init
	t.peer = c.Peer
	if t.peer == nil && !c.RemoteID.IsZero() {
		p, err := m.cfg.Peers(context.Background(), c.RemoteID)
		if err != nil {
			return nil, err
		}
		t.peer = p
	}
	cred := h.credFor(t.peer)
	octets := auth.SignedOctets(sa.keys.PRF, sa.keys.SKpi, d.reqRaw, d.nr, h.localID)
	method, data, err := cred.Authenticate(sa.keys.PRF, octets, t.peer, h.peerHashes, m.rand)
	if err != nil {
		return nil, fmt.Errorf("ike: our AUTH: %w", err)
	}
	ps := []wire.Payload{idPayload(h.localID, false)}
	for _, der := range cred.CertPayloads() {
		ps = append(ps, &wire.Cert{Encoding: wire.CertX509Signature, Data: der})
	}
	if t.peer != nil && t.peer.CAs != nil {
		ps = append(ps, &wire.CertReq{Encoding: wire.CertX509Signature, Data: auth.AppendCertReq(nil, t.peer.CAs.KeyHashes())})
	} else if m.cfg.CertReqCAs != nil {
		ps = append(ps, &wire.CertReq{Encoding: wire.CertX509Signature, Data: auth.AppendCertReq(nil, m.cfg.CertReqCAs.KeyHashes())})
	}
	if !c.RemoteID.IsZero() {
		ps = append(ps, idPayload(c.RemoteID, true))
	}
	ps = append(ps, &wire.Auth{Method: wire.AuthMethod(method), Data: data})
	if m.firstContact(h) {
		ps = append(ps, &wire.Notify{NotifyType: wire.NotifyInitialContact})
	}
	if m.cfg.MOBIKE {
		ps = append(ps, &wire.Notify{NotifyType: wire.NotifyMOBIKESupported})
	}
	for _, n := range c.Notifies {
		ps = append(ps, n)
	}
	if f := m.cfg.Policy.AuthNotifies; f != nil {
		for _, n := range f(h.peerInfo(), nil) {
			ps = append(ps, n)
		}
	}
	if len(c.VirtualIPs) > 0 {
		cp := &wire.CP{CfgType: wire.CfgRequest}
		for _, a := range c.VirtualIPs {
			attr := wire.CfgAttr{Type: wire.AttrInternalIP4Address}
			if a.Is6() {
				attr.Type = wire.AttrInternalIP6Address
			}
			if !a.IsUnspecified() {
				attr = wire.AddrAttr(hostPrefix(a))
			}
			cp.Attrs = append(cp.Attrs, attr)
		}
		ps = append(ps, cp)
	}
	if !c.Childless {
		if t.childSPI == 0 {
			spi, err := m.newChildSPI()
			if err != nil {
				return nil, err
			}
			t.childSPI = spi
		}
		t.tsi, t.tsr = h.initiatorTS()
		ps = append(ps, espSAPayload(m.cfg.Proposals.ESP, nil, t.childSPI), &wire.TS{Selectors: t.tsi},
			&wire.TS{Responder: true, Selectors: t.tsr})
	}
	return ps, nil
}

// credFor returns how we authenticate to peer: with its pre-shared key when
// it authenticates with one only (no CA pool), even if we also hold a
// certificate for other peers, as strongSwan chooses the local method per
// connection; otherwise with Config.Local.
func (h *SA) credFor(peer *auth.Peer) *auth.Local {
	c := h.localCred
	if peer != nil && peer.PSK != nil && peer.CAs == nil && c.Signer != nil {
		return &auth.Local{ID: c.ID, PSK: peer.PSK}
	}
	return c
}

// initiatorTS returns the TSi and TSr an initiator proposes.
func (h *SA) initiatorTS() (tsi, tsr []wire.Selector) {
	c := h.conn
	switch {
	case len(c.LocalTS) > 0:
		tsi = selectors(c.LocalTS)
	case len(c.VirtualIPs) > 0:
		for _, a := range c.VirtualIPs {
			tsi = append(tsi, wire.SelectorFromPrefix(netip.PrefixFrom(a, 0)))
		}
	case known(h.natdLocal().Addr()):
		tsi = selectors([]netip.Prefix{hostPrefix(h.local.Addr())})
	default:
		// Our address is unknown: any of the peer's family; the
		// responder narrows.
		tsi = selectors([]netip.Prefix{netip.PrefixFrom(unspecified(h.remote.Addr()), 0)})
	}
	if len(c.RemoteTS) > 0 {
		tsr = selectors(c.RemoteTS)
	} else {
		tsr = selectors([]netip.Prefix{netip.PrefixFrom(h.remote.Addr(), 0)})
	}
	return tsi, tsr
}

func idPayload(id auth.ID, responder bool) *wire.ID {
	return &wire.ID{Responder: responder, IDType: wire.IDType(id.Type), Data: id.Data()}
}

// firstContact reports whether our IKE_AUTH should carry INITIAL_CONTACT
// (RFC 7296 §2.4), which asserts that this IKE SA is to be the only one
// with the peer, who then deletes any other it holds for us: only when we
// hold no other IKE SA with this peer, neither established nor being set
// up. (Two SAs set up at once to one peer would otherwise each delete the
// other there.)
func (m *Manager) firstContact(h *SA) bool {
	for _, o := range m.Handles() {
		if o == h {
			continue
		}
		i := o.Info()
		if i.State == StateDead {
			continue
		}
		if i.Remote.Addr() == h.remote.Addr() || (!h.conn.RemoteID.IsZero() && i.RemoteID.Equal(h.conn.RemoteID)) {
			return false
		}
	}
	return true
}

// childErrors are the notifies that refuse the CHILD_SA of IKE_AUTH but
// not the IKE SA (RFC 7296 §1.2, §3.15.4).
var childErrors = map[wire.NotifyType]bool{
	wire.NotifyNoProposalChosen: true, wire.NotifyTSUnacceptable: true, wire.NotifySinglePairRequired: true,
	wire.NotifyInternalAddressFailure: true, wire.NotifyFailedCPRequired: true, wire.NotifyInvalidSelectors: true,
	wire.NotifyNoAdditionalSAs: true,
}

func (t *ikeAuthTask) process(sa *ikeSA, in *inMsg) error {
	h, m := sa.h, sa.h.m
	c := h.conn
	d := sa.init
	ps := in.payloads
	idr, ok := wire.Find(ps, wire.PayloadIDr).(*wire.ID)
	a, ok2 := wire.Find(ps, wire.PayloadAUTH).(*wire.Auth)
	if !ok || !ok2 {
		if err := errorNotify(wire.IKEAuth, ps); err != nil {
			var pe *ProtocolError
			if errors.As(err, &pe) && pe.Type == wire.NotifyAuthenticationFailed {
				m.stats.authFailures.Add(1)
				return fmt.Errorf("%w: %w", ErrAuthFailed, err)
			}
			return err
		}
		return fmt.Errorf("ike: IKE_AUTH response without IDr and AUTH")
	}
	id, err := auth.NewID(auth.IDType(idr.IDType), idr.Data)
	if err == nil && !c.RemoteID.IsZero() && !c.RemoteID.Equal(id) {
		err = fmt.Errorf("responder is %v, want %v", id, c.RemoteID)
	}
	peer := t.peer
	if err == nil && peer == nil {
		peer, err = m.cfg.Peers(context.Background(), id)
	}
	if err == nil {
		octets := auth.SignedOctets(sa.keys.PRF, sa.keys.SKpr, d.respRaw, d.ni, id)
		err = peer.Verify(sa.keys.PRF, id, auth.Method(a.Method), a.Data, octets, certData(ps), m.clock.Now())
	}
	if err != nil {
		m.stats.authFailures.Add(1)
		sa.log.Warn("responder authentication failed", "id", id, "peer", h.remote, "reason", "AUTHENTICATION_FAILED", "err", err)
		sa.sendOneShot(wire.Informational, []wire.Payload{&wire.Notify{NotifyType: wire.NotifyAuthenticationFailed}})
		return fmt.Errorf("%w: %v", ErrAuthFailed, err)
	}
	h.setPeerID(id)
	h.peer = peer
	h.mobike = m.cfg.MOBIKE && wire.FindNotify(ps, wire.NotifyMOBIKESupported) != nil
	h.authNotifies = statusNotifies(ps)
	if cp, ok := wire.Find(ps, wire.PayloadCP).(*wire.CP); ok && cp.CfgType == wire.CfgReply {
		for _, at := range cp.Attrs {
			if p, ok := at.Addr(); ok {
				h.vips = append(h.vips, p)
			}
		}
	}
	var childErr error
	var keys suite.ChildSAKeys
	var ch *child
	if t.childSPI != 0 {
		ch, keys, childErr = t.acceptChild(sa, ps)
		if childErr != nil {
			m.releaseChildSPI(t.childSPI)
			sa.log.Warn("CHILD_SA not established, keeping IKE SA", "reason", errString(childErr))
			childErr = &ChildError{Err: childErr}
		}
	}
	sa.establish()
	if ch != nil {
		h.addChild(ch, keys, true)
	}
	h.release(childErr)
	return nil
}

// acceptChild checks the CHILD_SA part of the IKE_AUTH response.
func (t *ikeAuthTask) acceptChild(sa *ikeSA, ps []wire.Payload) (*child, suite.ChildSAKeys, error) {
	m := sa.h.m
	for _, p := range ps {
		if n, ok := p.(*wire.Notify); ok && childErrors[n.NotifyType] {
			return nil, suite.ChildSAKeys{}, &ProtocolError{Exchange: wire.IKEAuth, Type: n.NotifyType}
		}
	}
	saP, ok := wire.Find(ps, wire.PayloadSA).(*wire.SA)
	if !ok {
		return nil, suite.ChildSAKeys{}, errors.New("ike: no CHILD_SA in IKE_AUTH response")
	}
	choice, ok := acceptESP(m.cfg.Proposals.ESP, saP, transform.DHNone)
	if !ok {
		return nil, suite.ChildSAKeys{}, errors.New("ike: responder chose an ESP proposal we did not offer")
	}
	tsi := wire.Find(ps, wire.PayloadTSi).(*wire.TS).Selectors
	tsr := wire.Find(ps, wire.PayloadTSr).(*wire.TS).Selectors
	if len(tsi) == 0 || len(tsr) == 0 || !covers(t.tsi, tsi) || !covers(t.tsr, tsr) {
		return nil, suite.ChildSAKeys{}, errors.New("ike: responder widened the traffic selectors")
	}
	d := sa.init
	keys, err := sa.keys.DeriveChildKeys(choice.suite, nil, d.ni, d.nr, t.childSPI, choice.peerSPI)
	if err != nil {
		return nil, suite.ChildSAKeys{}, err
	}
	return &child{inSPI: t.childSPI, outSPI: choice.peerSPI, suite: choice.suite, localTS: tsi, remoteTS: tsr}, keys, nil
}

func (t *ikeAuthTask) abort(sa *ikeSA, err error) {
	if t.childSPI != 0 {
		sa.h.m.releaseChildSPI(t.childSPI)
	}
	if err != nil {
		sa.h.die(err)
	}
}

// certData returns the DER of the X.509 CERT payloads.
func certData(ps []wire.Payload) [][]byte {
	var out [][]byte
	for _, p := range ps {
		if c, ok := p.(*wire.Cert); ok && c.Encoding == wire.CertX509Signature {
			out = append(out, c.Data)
		}
	}
	return out
}

// statusNotifies copies the status notifies of ps.
func statusNotifies(ps []wire.Payload) []*wire.Notify {
	var out []*wire.Notify
	for _, p := range ps {
		if n, ok := p.(*wire.Notify); ok && !n.NotifyType.IsError() {
			out = append(out, &wire.Notify{Protocol: n.Protocol, SPI: bytes.Clone(n.SPI), NotifyType: n.NotifyType, Data: bytes.Clone(n.Data)})
		}
	}
	return out
}

// establish moves an authenticated IKE SA to ESTABLISHED.
func (sa *ikeSA) establish() {
	h, m := sa.h, sa.h.m
	if !sa.initiator {
		m.stats.halfOpen.Add(-1)
		m.mu.Lock()
		if k := sa.halfOpen; k != nil && m.halfOpen[*k] == sa {
			delete(m.halfOpen, *k)
		}
		m.mu.Unlock()
		sa.halfOpen = nil
	}
	sa.setState(StateEstablished, "authenticated")
	sa.init.wipe()
	sa.init = nil
	sa.keys = sa.keys.Trim() // SK_pi and SK_pr are done with
	sa.deadline = timeZero
	now := m.clock.Now()
	h.established, h.lastRecv = now, now
	if m.cfg.IKERekeyTime > 0 {
		sa.rekeyAt = now.Add(m.jitter(m.cfg.IKERekeyTime))
	}
	m.stats.established.Add(1)
	h.log.Info("IKE SA established", "state", StateEstablished, "id", h.peerID, "peer", h.remote, "local", h.local)
	h.emit(EventIKEUp, nil, nil)
}

// sendOneShot sends a request without waiting for or retransmitting it, as
// the initiator's AUTHENTICATION_FAILED notice before it gives up.
func (sa *ikeSA) sendOneShot(ex wire.ExchangeType, ps []wire.Payload) {
	pkts, err := sa.encode(sa.header(ex, sa.nextReqID, false), ps)
	if err == nil {
		sa.nextReqID++
		sa.h.transmit(pkts)
	}
}

// respondAuth is the responder's IKE_AUTH: authenticate the initiator,
// authorise it, prove our identity and create the CHILD_SA.
func (sa *ikeSA) respondAuth(in *inMsg) ([]wire.Payload, func()) {
	h, m := sa.h, sa.h.m
	d := sa.init
	if sa.state != StateConnecting || d == nil {
		return []wire.Payload{&wire.Notify{NotifyType: wire.NotifyInvalidSyntax}}, nil
	}
	ps := in.payloads
	idi := wire.Find(ps, wire.PayloadIDi).(*wire.ID)
	a := wire.Find(ps, wire.PayloadAUTH).(*wire.Auth)
	ctx := context.Background()
	id, err := auth.NewID(auth.IDType(idi.IDType), idi.Data)
	var peer *auth.Peer
	if err == nil {
		peer, err = m.cfg.Peers(ctx, id)
	}
	if err == nil {
		octets := auth.SignedOctets(sa.keys.PRF, sa.keys.SKpi, d.reqRaw, d.nr, id)
		err = peer.Verify(sa.keys.PRF, id, auth.Method(a.Method), a.Data, octets, certData(ps), m.clock.Now())
	}
	if err == nil {
		if idr, ok := wire.Find(ps, wire.PayloadIDr).(*wire.ID); ok {
			want, e := auth.NewID(auth.IDType(idr.IDType), idr.Data)
			if e != nil || !want.Equal(h.localID) {
				err = fmt.Errorf("initiator wants responder %v, we are %v", want, h.localID)
			}
		}
	}
	h.peerID, h.peer = id, peer
	if err == nil && m.cfg.Policy.Authorize != nil {
		err = m.cfg.Policy.Authorize(ctx, h.peerInfo())
	}
	var method auth.Method
	var data []byte
	cred := h.credFor(peer)
	if err == nil {
		octets := auth.SignedOctets(sa.keys.PRF, sa.keys.SKpr, d.respRaw, d.ni, h.localID)
		method, data, err = cred.Authenticate(sa.keys.PRF, octets, peer, h.peerHashes, m.rand)
	}
	if err != nil {
		m.stats.authFailures.Add(1)
		sa.log.Warn("initiator authentication failed", "id", id, "peer", in.pkt.src, "reason", "AUTHENTICATION_FAILED", "err", err)
		return []wire.Payload{&wire.Notify{NotifyType: wire.NotifyAuthenticationFailed}}, func() { h.die(fmt.Errorf("%w: %v", ErrAuthFailed, err)) }
	}
	h.setPeerID(id)
	h.notePath(in.pkt, false)
	resp := []wire.Payload{idPayload(h.localID, true)}
	for _, der := range cred.CertPayloads() {
		resp = append(resp, &wire.Cert{Encoding: wire.CertX509Signature, Data: der})
	}
	resp = append(resp, &wire.Auth{Method: wire.AuthMethod(method), Data: data})
	h.mobike = m.cfg.MOBIKE && wire.FindNotify(ps, wire.NotifyMOBIKESupported) != nil
	if h.mobike {
		resp = append(resp, &wire.Notify{NotifyType: wire.NotifyMOBIKESupported})
	}
	h.authNotifies = statusNotifies(ps)
	h.changed()
	if f := m.cfg.Policy.AuthNotifies; f != nil {
		for _, n := range f(h.peerInfo(), h.authNotifies) {
			resp = append(resp, n)
		}
	}
	childPs, ch, keys := sa.respondFirstChild(ps)
	resp = append(resp, childPs...)
	initialContact := wire.FindNotify(ps, wire.NotifyInitialContact) != nil
	return resp, func() {
		sa.establish()
		if ch != nil {
			h.addChild(ch, keys, false)
		}
		if initialContact {
			m.initialContact(h)
		}
	}
}

// respondFirstChild handles CP and the CHILD_SA of an IKE_AUTH request. A
// failure refuses only the CHILD_SA, with a notify in the response.
func (sa *ikeSA) respondFirstChild(ps []wire.Payload) ([]wire.Payload, *child, suite.ChildSAKeys) {
	h, m := sa.h, sa.h.m
	var out []wire.Payload
	refuse := func(t wire.NotifyType, why string) ([]wire.Payload, *child, suite.ChildSAKeys) {
		sa.log.Info("CHILD_SA refused", "reason", t, "err", why)
		return append(out, &wire.Notify{NotifyType: t}), nil, suite.ChildSAKeys{}
	}
	if cp, ok := wire.Find(ps, wire.PayloadCP).(*wire.CP); ok && cp.CfgType == wire.CfgRequest && m.cfg.Policy.AssignAddresses != nil {
		var req []netip.Addr
		for _, at := range cp.Attrs {
			switch at.Type {
			case wire.AttrInternalIP4Address:
				a := netip.IPv4Unspecified()
				if p, ok := at.Addr(); ok {
					a = p.Addr()
				}
				req = append(req, a)
			case wire.AttrInternalIP6Address:
				a := netip.IPv6Unspecified()
				if p, ok := at.Addr(); ok {
					a = p.Addr()
				}
				req = append(req, a)
			}
		}
		if len(req) > 0 {
			vips, err := m.cfg.Policy.AssignAddresses(context.Background(), h.peerInfo(), req)
			if err != nil || len(vips) == 0 {
				return refuse(wire.NotifyInternalAddressFailure, errString(err))
			}
			h.vips = vips
			h.changed()
			reply := &wire.CP{CfgType: wire.CfgReply}
			for _, v := range vips {
				reply.Attrs = append(reply.Attrs, wire.AddrAttr(v))
			}
			out = append(out, reply)
		}
	}
	saP, ok := wire.Find(ps, wire.PayloadSA).(*wire.SA)
	if !ok {
		return out, nil, suite.ChildSAKeys{}
	}
	choice, n := selectESP(m.cfg.Proposals.ESP, nil, saP, transform.DHNone, true)
	if n != nil {
		return refuse(wire.NotifyNoProposalChosen, "no acceptable ESP proposal")
	}
	tsi, tsr := h.narrow(wire.Find(ps, wire.PayloadTSi).(*wire.TS).Selectors, wire.Find(ps, wire.PayloadTSr).(*wire.TS).Selectors)
	if len(tsi) == 0 || len(tsr) == 0 {
		return refuse(wire.NotifyTSUnacceptable, "traffic selectors do not fit the policy")
	}
	spi, err := m.newChildSPI()
	if err != nil {
		return refuse(wire.NotifyNoAdditionalSAs, err.Error())
	}
	d := sa.init
	keys, err := sa.keys.DeriveChildKeys(choice.suite, nil, d.ni, d.nr, choice.peerSPI, spi)
	if err != nil {
		m.releaseChildSPI(spi)
		return refuse(wire.NotifyNoProposalChosen, err.Error())
	}
	out = append(out, espSAResponse(choice, spi), &wire.TS{Selectors: tsi}, &wire.TS{Responder: true, Selectors: tsr})
	return out, &child{inSPI: spi, outSPI: choice.peerSPI, suite: choice.suite, localTS: tsr, remoteTS: tsi}, keys
}

// narrow applies this side's traffic selector policy as responder of an
// exchange. On the original initiator (a CPE answering the hub's
// CREATE_CHILD_SA) the policy is the Connection's: its LocalTS (or virtual
// IPs, or address) and RemoteTS.
func (h *SA) narrow(tsi, tsr []wire.Selector) (ni, nr []wire.Selector) {
	if f := h.m.cfg.Policy.NarrowTS; f != nil {
		ni, nr, err := f(h.peerInfo(), h.vips, tsi, tsr)
		if err != nil {
			return nil, nil
		}
		return ni, nr
	}
	if c := h.conn; c != nil {
		local, remote := c.LocalTS, c.RemoteTS
		if len(local) == 0 {
			for _, v := range h.vips {
				local = append(local, hostPrefix(v.Addr()))
			}
		}
		if len(local) == 0 {
			local = []netip.Prefix{hostPrefix(h.local.Addr())}
		}
		if len(remote) == 0 {
			remote = []netip.Prefix{netip.PrefixFrom(h.remote.Addr(), 0)}
		}
		// The peer's initiator side is our remote.
		return narrow(tsi, selectors(remote)), narrow(tsr, selectors(local))
	}
	return NarrowDefault(tsi, tsr, h.m.cfg.LocalTS, h.m.cfg.RemoteTS, h.vips, h.local.Addr(), h.remote.Addr())
}

// initialContact drops every other IKE SA of the peer's identity (RFC 7296
// §2.4): the peer has restarted and forgotten them. Only SAs older than h
// can be stale: one the peer set up after h (its SAs come up concurrently,
// or h's establishment ran late) is left alone. Handles are indexed by
// identity, so this costs nothing when there are none.
func (m *Manager) initialContact(h *SA) {
	id := h.peerID
	for _, o := range m.sameIdentity(h, id) {
		if o.seq > h.seq {
			continue
		}
		o.run(func() {
			if o.peerID.Equal(id) {
				o.log.Info("IKE SA replaced", "id", id, "reason", "INITIAL_CONTACT")
				o.die(ErrReplaced)
			}
		})
	}
}
