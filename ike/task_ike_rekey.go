package ike

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/ike/wire"
	"github.com/mpsa-vpn/mpsa/transform"
)

// ikeRekeyTask rekeys the IKE SA (RFC 7296 §1.3.2, §2.18):
//
//	HDR, SK {SA, Ni, KEi}  -->  <--  HDR, SK {SA, Nr, KEr}
//
// The new IKE SA takes over the CHILD_SAs; the initiator of the rekey then
// deletes the old one. When both sides rekey at once (§2.8.2) the new SA
// created with the lowest of the four nonces is deleted by its creator, and
// the other side's rekey stands.
type ikeRekeyTask struct {
	newSPI uint64
	ni     []byte
	dh     *suite.DH
	group  transform.DH
	tries  int
	done   chan error
}

// collision is the IKE SA the peer's rekey created while ours was in flight.
type collision struct {
	sa     *ikeSA
	ni, nr []byte // the peer's exchange: its Ni, our Nr
}

func (t *ikeRekeyTask) exchange() wire.ExchangeType { return wire.CreateChildSA }

func (t *ikeRekeyTask) build(sa *ikeSA) ([]wire.Payload, error) {
	h, m := sa.h, sa.h.m
	if sa.state != StateEstablished || h.cur != sa {
		return nil, errSkip
	}
	var err error
	if t.newSPI, err = m.newSPI(); err != nil {
		return nil, err
	}
	if t.ni, err = m.nonce(); err != nil {
		return nil, err
	}
	if t.group == transform.DHNone {
		t.group = sa.suite.DH
	}
	if t.dh, err = suite.GenerateDH(t.group, m.rand); err != nil {
		return nil, err
	}
	// Offer the current suite first, then the others.
	suites := []suite.Suite{sa.suite}
	for _, s := range m.cfg.Proposals.IKE {
		if s != sa.suite && s.DH == t.group {
			suites = append(suites, s)
		}
	}
	for _, s := range m.cfg.Proposals.IKE {
		if s != sa.suite && s.DH != t.group {
			suites = append(suites, s)
		}
	}
	sa.rekey = t
	spi := binary.BigEndian.AppendUint64(nil, t.newSPI)
	return []wire.Payload{ikeSAPayload(suites, spi), &wire.Nonce{Data: t.ni}, &wire.KE{Group: t.group, Data: t.dh.PublicValue()}}, nil
}

func (t *ikeRekeyTask) process(sa *ikeSA, in *inMsg) error {
	h, m := sa.h, sa.h.m
	sa.rekey = nil
	defer t.wipe()
	ps := in.payloads
	if n := wire.FindNotify(ps, wire.NotifyInvalidKEPayload); n != nil && len(n.Data) == 2 && t.tries < maxChildRetries {
		g := transform.DH(binary.BigEndian.Uint16(n.Data))
		if g != t.group && dhOffered(m.cfg.Proposals.IKE, g) {
			t.tries++
			t.group = g
			sa.pending = append([]task{t}, sa.pending...)
			return nil
		}
	}
	if wire.FindNotify(ps, wire.NotifyTemporaryFailure) != nil {
		if sa.peerRekey != nil {
			// The peer's rekey went through first: use its SA.
			col := sa.peerRekey
			sa.peerRekey = nil
			h.switchTo(col.sa, sa, false)
			t.finish(nil)
			return nil
		}
		if t.tries < maxChildRetries {
			t.tries++
			sa.retryAt = m.clock.Now().Add(DefaultRetryDelay)
			sa.pending = append([]task{t}, sa.pending...)
			return nil
		}
	}
	if err := errorNotify(wire.CreateChildSA, ps); err != nil {
		return err
	}
	saP, _ := wire.Find(ps, wire.PayloadSA).(*wire.SA)
	nr, _ := wire.Find(ps, wire.PayloadNonce).(*wire.Nonce)
	ke, _ := wire.Find(ps, wire.PayloadKE).(*wire.KE)
	if saP == nil || nr == nil || ke == nil || ke.Group != t.group {
		return errors.New("ike: IKE rekey response lacks SA, Nr or our KE group")
	}
	sel, spiR, ok := acceptIKE(m.cfg.Proposals.IKE, saP, 8)
	if !ok || sel.DH != t.group {
		return errors.New("ike: responder chose an IKE proposal we did not offer")
	}
	shared, err := t.dh.SharedSecret(ke.Data)
	if err != nil {
		return err
	}
	peerSPI := binary.BigEndian.Uint64(spiR)
	keys, err := suite.DeriveRekeyedIKEKeys(sa.keys, sel, shared, t.ni, nr.Data, t.newSPI, peerSPI)
	clear(shared)
	if err != nil {
		return err
	}
	nsa := h.newIKESA(true, t.newSPI, peerSPI)
	nsa.suite = sel
	if err := nsa.setKeys(keys, false); err != nil {
		nsa.destroy()
		return err
	}
	nsa.setState(StateEstablished, "rekeyed")
	if col := sa.peerRekey; col != nil {
		sa.peerRekey = nil
		if lowestIsOurs(t.ni, nr.Data, col.ni, col.nr) {
			// Ours is redundant: delete it, keep the peer's, and let
			// the peer delete the old one.
			sa.log.Info("IKE rekey collision: ours is redundant", "reason", "lowest nonce")
			h.others = append(h.others, nsa)
			nsa.enqueue(&deleteIKETask{})
			h.switchTo(col.sa, sa, false)
		} else {
			sa.log.Info("IKE rekey collision: ours wins", "reason", "lowest nonce")
			h.switchTo(nsa, sa, true)
			// col.sa stays among others until the peer deletes it.
		}
	} else {
		h.switchTo(nsa, sa, true)
	}
	t.finish(nil)
	return nil
}

func (t *ikeRekeyTask) wipe() {
	if t.dh != nil {
		t.dh.Wipe()
		t.dh = nil
	}
}

func (t *ikeRekeyTask) finish(err error) {
	t.wipe()
	if t.done != nil {
		t.done <- err
		t.done = nil
	}
}

func (t *ikeRekeyTask) abort(sa *ikeSA, err error) {
	if sa.rekey == t {
		sa.rekey = nil
	}
	if col := sa.peerRekey; col != nil && sa.state == StateEstablished && !errors.Is(err, ErrClosed) {
		sa.peerRekey = nil
		sa.h.switchTo(col.sa, sa, false)
	} else if err != nil && sa.state == StateEstablished && !errors.Is(err, ErrClosed) {
		sa.log.Info("IKE rekey failed", "reason", errString(err))
		sa.rekeyAt = sa.h.m.clock.Now().Add(DefaultRetryDelay * 5)
	}
	t.finish(err)
}

// switchTo makes nsa the handle's current IKE SA in place of old (RFC 7296
// §2.18): CHILD_SAs and queued exchanges move over, old waits for its
// DELETE, which we send when deleteOld (we won the rekey).
func (h *SA) switchTo(nsa, old *ikeSA, deleteOld bool) {
	m := h.m
	for i, o := range h.others {
		if o == nsa {
			h.others = append(h.others[:i], h.others[i+1:]...)
			break
		}
	}
	old.setState(StateRekeyed, "replaced by rekeyed IKE SA")
	old.rekeyAt = timeZero
	var keep []task
	for _, t := range old.pending {
		if _, del := t.(*deleteIKETask); del {
			keep = append(keep, t)
			continue
		}
		nsa.pending = append(nsa.pending, t)
	}
	old.pending = keep
	h.cur = nsa
	h.others = append(h.others, old)
	h.log = nsa.log
	if m.cfg.IKERekeyTime > 0 {
		nsa.rekeyAt = m.clock.Now().Add(m.jitter(m.cfg.IKERekeyTime))
	}
	info := h.snapshot()
	info.OldSPIi, info.OldSPIr = old.spiI, old.spiR
	h.log.Info("IKE SA rekeyed", "state", StateEstablished, "reason", fmt.Sprintf("replaces %016x_i %016x_r", old.spiI, old.spiR))
	m.events.push(Event{Kind: EventIKERekeyed, SA: h, Info: info})
	if deleteOld {
		old.enqueue(&deleteIKETask{})
	} else {
		// The peer deletes it; forget it if that never comes.
		old.deadline = m.clock.Now().Add(m.cfg.HalfOpenTimeout)
	}
	nsa.startNext()
}

// respondRekeyIKE answers the peer's IKE rekey.
func (sa *ikeSA) respondRekeyIKE(in *inMsg) ([]wire.Payload, func()) {
	h, m := sa.h, sa.h.m
	ps := in.payloads
	// §2.25.2: refuse while closing, or while we create, rekey or delete
	// a CHILD_SA.
	if sa.state != StateEstablished || sa != h.cur {
		return notify(wire.NotifyTemporaryFailure), nil
	}
	if a := sa.active; a != nil {
		switch a.t.(type) {
		case *childTask, *deleteChildTask, *deleteIKETask:
			return notify(wire.NotifyTemporaryFailure), nil
		}
	}
	saP := wire.Find(ps, wire.PayloadSA).(*wire.SA)
	ni := wire.Find(ps, wire.PayloadNonce).(*wire.Nonce).Data
	ke, _ := wire.Find(ps, wire.PayloadKE).(*wire.KE)
	sel, num, spiI, ok := selectIKE(m.cfg.Proposals.IKE, saP, 8)
	if !ok {
		return notify(wire.NotifyNoProposalChosen), nil
	}
	if ke == nil || ke.Group != sel.DH {
		return []wire.Payload{&wire.Notify{NotifyType: wire.NotifyInvalidKEPayload, Data: binary.BigEndian.AppendUint16(nil, uint16(sel.DH))}}, nil
	}
	dh, err := suite.GenerateDH(sel.DH, m.rand)
	if err != nil {
		return notify(wire.NotifyNoProposalChosen), nil
	}
	defer dh.Wipe()
	shared, err := dh.SharedSecret(ke.Data)
	if err != nil {
		return notify(wire.NotifyInvalidSyntax), nil
	}
	nr, err := m.nonce()
	if err != nil {
		return notify(wire.NotifyNoProposalChosen), nil
	}
	ourSPI, err := m.newSPI()
	if err != nil {
		return notify(wire.NotifyNoProposalChosen), nil
	}
	peerSPI := binary.BigEndian.Uint64(spiI)
	keys, err := suite.DeriveRekeyedIKEKeys(sa.keys, sel, shared, ni, nr, peerSPI, ourSPI)
	clear(shared)
	if err != nil {
		return notify(wire.NotifyNoProposalChosen), nil
	}
	nsa := h.newIKESA(false, peerSPI, ourSPI)
	nsa.suite = sel
	if err := nsa.setKeys(keys, false); err != nil {
		nsa.destroy()
		return notify(wire.NotifyNoProposalChosen), nil
	}
	nsa.setState(StateEstablished, "rekeyed by peer")
	resp := []wire.Payload{ikeSAResponse(sel, num, binary.BigEndian.AppendUint64(nil, ourSPI)), &wire.Nonce{Data: nr},
		&wire.KE{Group: sel.DH, Data: append([]byte(nil), dh.PublicValue()...)}}
	peerNi := append([]byte(nil), ni...)
	return resp, func() {
		if sa.rekey != nil {
			// Both sides rekey (§2.8.2): decide when our response comes.
			sa.log.Debug("IKE rekey collision")
			sa.peerRekey = &collision{sa: nsa, ni: peerNi, nr: nr}
			h.others = append(h.others, nsa)
			return
		}
		h.switchTo(nsa, sa, false)
	}
}
