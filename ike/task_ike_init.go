package ike

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/ike/wire"
	"github.com/mpsa-vpn/mpsa/transform"
)

// maxInitRetries bounds COOKIE and INVALID_KE_PAYLOAD round trips of one
// IKE_SA_INIT (msgboxio/ike looped forever on cookies).
const maxInitRetries = 3

// ikeInitTask is the initiator's IKE_SA_INIT (RFC 7296 §1.2):
//
//	HDR, SAi1, KEi, Ni, N(NAT_DETECTION_*), [N(IKEV2_FRAGMENTATION_SUPPORTED)],
//	     [N(SIGNATURE_HASH_ALGORITHMS)], [V+]  -->
//	                      <--  HDR, SAr1, KEr, Nr, N(NAT_DETECTION_*), [CERTREQ], ...
//
// A COOKIE or INVALID_KE_PAYLOAD answer makes it send the request again with
// message ID 0 (§2.6, §1.2).
type ikeInitTask struct {
	group transform.DH
}

func (t *ikeInitTask) exchange() wire.ExchangeType { return wire.IKESAInit }

func (t *ikeInitTask) build(sa *ikeSA) ([]wire.Payload, error) {
	h, m := sa.h, sa.h.m
	d := sa.init
	if d == nil {
		ni, err := m.nonce()
		if err != nil {
			return nil, err
		}
		d = &initData{ni: ni}
		sa.init = d
	}
	if t.group == transform.DHNone {
		t.group = m.cfg.Proposals.IKE[0].DH
	}
	if d.dh == nil || d.dh.Group() != t.group {
		if d.dh != nil {
			d.dh.Wipe()
		}
		dh, err := suite.GenerateDH(t.group, m.rand)
		if err != nil {
			return nil, err
		}
		d.dh = dh
	}
	var ps []wire.Payload
	if d.cookie != nil {
		ps = append(ps, &wire.Notify{NotifyType: wire.NotifyCookie, Data: d.cookie})
	}
	ps = append(ps, ikeSAPayload(m.cfg.Proposals.IKE, nil), &wire.KE{Group: t.group, Data: d.dh.PublicValue()},
		&wire.Nonce{Data: d.ni})
	ps = append(ps, natdNotifies(sa.spiI, 0, h.natdLocal(), h.remote, m.cfg.ForceEncap, m.rand)...)
	ps = append(ps, m.initExtras()...)
	return ps, nil
}

// initExtras are the status notifies and vendor IDs of our IKE_SA_INIT.
func (m *Manager) initExtras() []wire.Payload {
	var ps []wire.Payload
	if m.cfg.Fragmentation {
		ps = append(ps, &wire.Notify{NotifyType: wire.NotifyIKEv2FragmentationSupported})
	}
	ps = append(ps, &wire.Notify{NotifyType: wire.NotifySignatureHashAlgorithms,
		Data: auth.AppendHashAlgorithms(nil, auth.SupportedHashes())})
	for _, v := range m.cfg.Policy.VendorIDs {
		ps = append(ps, &wire.Vendor{Data: v})
	}
	return ps
}

func (t *ikeInitTask) process(sa *ikeSA, in *inMsg) error {
	h, m := sa.h, sa.h.m
	d := sa.init
	ps := in.payloads
	if n := wire.FindNotify(ps, wire.NotifyCookie); n != nil {
		if d.tries >= maxInitRetries || len(n.Data) == 0 || len(n.Data) > 64 {
			return fmt.Errorf("ike: responder keeps asking for cookies")
		}
		d.tries++
		d.cookie = bytes.Clone(n.Data)
		sa.log.Debug("responder demands a cookie", "reason", "COOKIE")
		return errResend
	}
	if n := wire.FindNotify(ps, wire.NotifyInvalidKEPayload); n != nil {
		if len(n.Data) != 2 {
			return &ProtocolError{Exchange: wire.IKESAInit, Type: n.NotifyType}
		}
		g := transform.DH(binary.BigEndian.Uint16(n.Data))
		if d.tries >= maxInitRetries || g == t.group || !dhOffered(m.cfg.Proposals.IKE, g) {
			return &ProtocolError{Exchange: wire.IKESAInit, Type: n.NotifyType, Data: n.Data}
		}
		d.tries++
		sa.log.Info("responder wants another DH group", "reason", fmt.Sprintf("INVALID_KE_PAYLOAD(%v)", g))
		t.group = g
		return errResend
	}
	if err := errorNotify(wire.IKESAInit, ps); err != nil {
		return err
	}
	if in.hdr.SPIr == 0 {
		return &ProtocolError{Exchange: wire.IKESAInit, Type: wire.NotifyInvalidSyntax}
	}
	sel, _, ok := acceptIKE(m.cfg.Proposals.IKE, wire.Find(ps, wire.PayloadSA).(*wire.SA), 0)
	ke := wire.Find(ps, wire.PayloadKE).(*wire.KE)
	if !ok || ke.Group != t.group || sel.DH != t.group {
		return fmt.Errorf("ike: responder chose a proposal we did not offer")
	}
	shared, err := d.dh.SharedSecret(ke.Data)
	if err != nil {
		return err
	}
	nr := wire.Find(ps, wire.PayloadNonce).(*wire.Nonce).Data
	sa.spiR = in.hdr.SPIr
	sa.relog()
	keys, err := suite.DeriveIKEKeys(sel, shared, d.ni, nr, sa.spiI, sa.spiR)
	clear(shared)
	if err != nil {
		return err
	}
	sa.suite = sel
	if err := sa.setKeys(keys, true); err != nil {
		return err
	}
	d.nr = bytes.Clone(nr)
	d.reqRaw = in.req[0]
	d.respRaw = bytes.Clone(in.msg.Raw)
	d.dh.Wipe()
	d.dh = nil
	if !known(h.local.Addr()) && known(in.pkt.dst.Addr()) {
		h.local = in.pkt.dst
	}
	h.natRemote, h.natLocal, _ = checkNATD(ps, sa.spiI, sa.spiR, in.pkt.src, h.localOf(in.pkt))
	h.learnInit(ps)
	if h.natLocal || h.natRemote || m.cfg.MOBIKE || m.cfg.ForceEncap {
		h.float()
	}
	if h.natLocal {
		h.keepaliveAt = m.clock.Now().Add(m.cfg.NATKeepalive)
	}
	sa.log.Debug("IKE_SA_INIT done", "reason", sel.String(), "local", h.local, "peer", h.remote)
	sa.enqueueFirst(&ikeAuthTask{})
	return nil
}

func (t *ikeInitTask) abort(sa *ikeSA, err error) {
	if err != nil {
		sa.h.die(err)
	}
}

// learnInit takes what the peer announced in IKE_SA_INIT.
func (h *SA) learnInit(ps []wire.Payload) {
	h.changed()
	h.fragmentation = h.m.cfg.Fragmentation && wire.FindNotify(ps, wire.NotifyIKEv2FragmentationSupported) != nil
	if n := wire.FindNotify(ps, wire.NotifySignatureHashAlgorithms); n != nil {
		h.peerHashes, _ = auth.ParseHashAlgorithms(n.Data)
	}
	h.vendorIDs = nil
	for _, p := range ps {
		if v, ok := p.(*wire.Vendor); ok {
			h.vendorIDs = append(h.vendorIDs, bytes.Clone(v.Data))
		}
	}
}

// errorNotify returns a *ProtocolError for the first error notify in ps.
func errorNotify(ex wire.ExchangeType, ps []wire.Payload) error {
	for _, p := range ps {
		if n, ok := p.(*wire.Notify); ok && n.NotifyType.IsError() {
			return &ProtocolError{Exchange: ex, Type: n.NotifyType, Data: bytes.Clone(n.Data)}
		}
	}
	return nil
}

// acceptInit runs the responder's stateless checks on a new IKE_SA_INIT
// request and, when it is acceptable, creates the half-open SA. Replies
// before that point are the notifies RFC 7296 §2.21.1 allows, rate limited.
func (m *Manager) acceptInit(p *packet, hdr wire.Header) {
	if hdr.SPIi == 0 || hdr.SPIr != 0 || hdr.MessageID != 0 || !hdr.IsInitiator() {
		m.stats.malformed.Add(1)
		return
	}
	key := halfOpenKey{spiI: hdr.SPIi, remote: p.src}
	m.mu.Lock()
	sa := m.halfOpen[key]
	m.mu.Unlock()
	if sa != nil {
		sa.h.runPacket(func() { sa.handlePacket(p, hdr) })
		return
	}
	msg, err := m.decodeOuter(p.data)
	if err != nil {
		if ne, ok := wire.AsNotifyError(err); ok && ne.Type == wire.NotifyUnsupportedCriticalPayload {
			// RFC 7296 §2.5: the response names the payload type; like
			// every answer before authentication, rate limited.
			m.replyUnauth(p, hdr, ne.Notify())
		}
		return
	}
	ps := msg.Payloads
	ni := wire.Find(ps, wire.PayloadNonce).(*wire.Nonce).Data
	if m.stats.halfOpen.Load() >= int64(m.cfg.CookieThreshold) {
		c := wire.FindNotify(ps, wire.NotifyCookie)
		if c == nil || !m.cookies.verify(c.Data, ni, p.src.Addr(), hdr.SPIi) {
			m.stats.cookiesSent.Add(1)
			m.replyUnauth(p, hdr, &wire.Notify{NotifyType: wire.NotifyCookie, Data: m.cookies.make(ni, p.src.Addr(), hdr.SPIi)})
			return
		}
	}
	if m.stats.halfOpen.Load() >= int64(m.cfg.MaxHalfOpen) {
		m.stats.halfOpenDrops.Add(1)
		return
	}
	sel, num, _, ok := selectIKE(m.cfg.Proposals.IKE, wire.Find(ps, wire.PayloadSA).(*wire.SA), 0)
	if !ok {
		m.stats.noProposalSent.Add(1)
		m.log.Debug("no acceptable IKE proposal", "peer", p.src, "reason", "NO_PROPOSAL_CHOSEN")
		m.replyUnauth(p, hdr, &wire.Notify{NotifyType: wire.NotifyNoProposalChosen})
		return
	}
	ke := wire.Find(ps, wire.PayloadKE).(*wire.KE)
	if ke.Group != sel.DH {
		m.stats.invalidKESent.Add(1)
		m.replyUnauth(p, hdr, &wire.Notify{NotifyType: wire.NotifyInvalidKEPayload, Data: binary.BigEndian.AppendUint16(nil, uint16(sel.DH))})
		return
	}
	if n, err := suite.DHPublicLen(sel.DH); err != nil || len(ke.Data) != n {
		m.stats.malformed.Add(1)
		return
	}
	if !m.limiter.allow() {
		m.stats.rateLimited.Add(1)
		return
	}
	h, err := m.newHandle("", false)
	if err != nil {
		return
	}
	spiR, err := m.newSPI()
	if err != nil {
		m.removeHandle(h)
		return
	}
	m.mu.Lock()
	if m.halfOpen[key] != nil {
		// A copy of the request won the race.
		m.mu.Unlock()
		m.removeHandle(h)
		return
	}
	sa = &ikeSA{h: h, spiI: hdr.SPIi, spiR: spiR, state: StateConnecting, halfOpen: &key}
	m.sas[spiR] = sa
	m.halfOpen[key] = sa
	m.mu.Unlock()
	m.stats.halfOpen.Add(1)
	sa.relog()
	h.cur = sa
	h.log = sa.log
	h.local, h.remote, h.natt = p.dst, p.src, p.natt
	sa.deadline = m.clock.Now().Add(m.cfg.HalfOpenTimeout)
	h.run(func() { sa.respondInit(&inMsg{hdr: hdr, msg: msg, payloads: ps, pkt: p}, sel, num) })
}

// respondInit answers an accepted IKE_SA_INIT request:
//
//	HDR, SAi1, KEi, Ni  -->  <--  HDR, SAr1, KEr, Nr, N(NAT_DETECTION_*), [CERTREQ], ...
func (sa *ikeSA) respondInit(in *inMsg, sel suite.Suite, num uint8) {
	h, m := sa.h, sa.h.m
	ps := in.payloads
	ke := wire.Find(ps, wire.PayloadKE).(*wire.KE)
	ni := wire.Find(ps, wire.PayloadNonce).(*wire.Nonce).Data
	dh, err := suite.GenerateDH(sel.DH, m.rand)
	if err != nil {
		h.die(err)
		return
	}
	defer dh.Wipe()
	shared, err := dh.SharedSecret(ke.Data)
	if err != nil {
		m.stats.malformed.Add(1)
		h.die(err)
		return
	}
	nr, err := m.nonce()
	if err != nil {
		h.die(err)
		return
	}
	keys, err := suite.DeriveIKEKeys(sel, shared, ni, nr, sa.spiI, sa.spiR)
	clear(shared)
	if err == nil {
		sa.suite = sel
		err = sa.setKeys(keys, true)
	}
	if err != nil {
		h.die(err)
		return
	}
	p := in.pkt
	// The socket may not have told where the request was sent to: then
	// our address is the one the response leaves from.
	h.lookupLocal()
	local := h.localOf(p)
	h.natRemote, h.natLocal, _ = checkNATD(ps, sa.spiI, 0, p.src, local)
	h.learnInit(ps)
	resp := []wire.Payload{ikeSAResponse(sel, num, nil), &wire.KE{Group: sel.DH, Data: dh.PublicValue()}, &wire.Nonce{Data: nr}}
	resp = append(resp, natdNotifies(sa.spiI, sa.spiR, local, p.src, m.cfg.ForceEncap, m.rand)...)
	if m.cfg.CertReqCAs != nil {
		resp = append(resp, &wire.CertReq{Encoding: wire.CertX509Signature, Data: auth.AppendCertReq(nil, m.cfg.CertReqCAs.KeyHashes())})
	}
	resp = append(resp, m.initExtras()...)
	// The datagram is this SA's own copy (Manager.input): keep it as it
	// is for AUTH, with Ni inside it.
	sa.init = &initData{ni: ni, nr: nr, reqRaw: p.data}
	sa.expReqID = 1
	sa.respond(in, sha256Sum(p.data), resp)
	sa.init.respRaw = sa.cache.pkts[0]
	if h.natLocal {
		h.keepaliveAt = m.clock.Now().Add(m.cfg.NATKeepalive)
	}
}
