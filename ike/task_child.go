package ike

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/ike/wire"
	"github.com/mpsa-vpn/mpsa/transform"
)

// maxChildRetries bounds INVALID_KE_PAYLOAD and TEMPORARY_FAILURE retries of
// one CREATE_CHILD_SA.
const maxChildRetries = 3

// childTask creates a CHILD_SA or rekeys one (RFC 7296 §1.3.1, §1.3.3):
//
//	HDR, SK {[N(REKEY_SA)], SA, Ni, [KEi], TSi, TSr}  -->
//	                     <--  HDR, SK {SA, Nr, [KEr], TSi, TSr}
//
// After a rekey the initiator deletes the old CHILD_SA, unless both sides
// rekeyed it at once and ours holds the lowest nonce (§2.8.1): then ours is
// the redundant one and we delete it instead.
type childTask struct {
	rekey    *child // nil: a new CHILD_SA
	tsi, tsr []wire.Selector
	spi      uint32
	ni       []byte
	dh       *suite.DH
	group    transform.DH
	tries    int
	created  uint32
	done     chan error
}

func (t *childTask) exchange() wire.ExchangeType { return wire.CreateChildSA }

func (t *childTask) build(sa *ikeSA) ([]wire.Payload, error) {
	h, m := sa.h, sa.h.m
	if sa.state != StateEstablished {
		return nil, ErrNotEstablished
	}
	var ps []wire.Payload
	if c := t.rekey; c != nil {
		if c.state != childInstalled {
			return nil, errSkip
		}
		c.state = childRekeying
		c.collision = nil
		t.tsi, t.tsr = c.localTS, c.remoteTS
		ps = append(ps, &wire.Notify{Protocol: wire.ProtoESP, SPI: spiBytes(c.inSPI), NotifyType: wire.NotifyRekeySA})
	}
	var err error
	if t.spi, err = m.newChildSPI(); err != nil {
		return nil, err
	}
	if t.ni, err = m.nonce(); err != nil {
		return nil, err
	}
	pfs := m.cfg.Proposals.PFS
	if len(pfs) > 0 {
		if t.group == transform.DHNone {
			t.group = pfs[0]
		}
		if t.dh, err = suite.GenerateDH(t.group, m.rand); err != nil {
			return nil, err
		}
	}
	ps = append(ps, espSAPayload(m.cfg.Proposals.ESP, pfs, t.spi), &wire.Nonce{Data: t.ni})
	if t.dh != nil {
		ps = append(ps, &wire.KE{Group: t.group, Data: t.dh.PublicValue()})
	}
	ps = append(ps, &wire.TS{Selectors: t.tsi}, &wire.TS{Responder: true, Selectors: t.tsr})
	_ = h
	return ps, nil
}

func (t *childTask) process(sa *ikeSA, in *inMsg) error {
	h, m := sa.h, sa.h.m
	ps := in.payloads
	defer t.wipeDH()
	if n := wire.FindNotify(ps, wire.NotifyInvalidKEPayload); n != nil && len(n.Data) == 2 && t.tries < maxChildRetries {
		g := transform.DH(binary.BigEndian.Uint16(n.Data))
		for _, ok := range m.cfg.Proposals.PFS {
			if ok == g && g != t.group {
				t.retry(sa, g, 0)
				return nil
			}
		}
	}
	if n := wire.FindNotify(ps, wire.NotifyTemporaryFailure); n != nil {
		if c := t.rekey; c != nil && c.state == childDeleted {
			// Deleted meanwhile (RFC 7296 §2.25.1): nothing to rekey.
			t.finish(sa, nil)
			return nil
		}
		if c := t.rekey; c != nil && c.collision != nil {
			// The peer's rekey of this CHILD_SA went through (§2.8.1,
			// delayed request): theirs replaces it, ours is off.
			sa.log.Debug("CHILD_SA rekey collision: peer's rekey wins", "esp_spi", fmt.Sprintf("%08x", c.inSPI), "reason", "TEMPORARY_FAILURE")
			t.finish(sa, nil)
			if c.state == childRekeying {
				c.state = childRekeyed
			}
			return nil
		}
		if t.tries < maxChildRetries {
			t.retry(sa, t.group, m.cfg.RetransmitTimeout/2+DefaultRetryDelay)
			return nil
		}
	}
	if n := wire.FindNotify(ps, wire.NotifyChildSANotFound); n != nil && t.rekey != nil {
		c := t.rekey
		t.finish(sa, nil)
		if c.collision == nil {
			h.removeChild(c, &ProtocolError{Exchange: wire.CreateChildSA, Type: n.NotifyType})
		} else if c.state == childRekeying {
			c.state = childRekeyed
		}
		return nil
	}
	if err := errorNotify(wire.CreateChildSA, ps); err != nil {
		return err
	}
	saP, _ := wire.Find(ps, wire.PayloadSA).(*wire.SA)
	nr, _ := wire.Find(ps, wire.PayloadNonce).(*wire.Nonce)
	tsi, _ := wire.Find(ps, wire.PayloadTSi).(*wire.TS)
	tsr, _ := wire.Find(ps, wire.PayloadTSr).(*wire.TS)
	if saP == nil || nr == nil || tsi == nil || tsr == nil {
		return errors.New("ike: CREATE_CHILD_SA response lacks SA, Nr or TS")
	}
	choice, ok := acceptESP(m.cfg.Proposals.ESP, saP, t.group)
	if !ok {
		return errors.New("ike: responder chose an ESP proposal we did not offer")
	}
	if !covers(t.tsi, tsi.Selectors) || !covers(t.tsr, tsr.Selectors) || len(tsi.Selectors) == 0 || len(tsr.Selectors) == 0 {
		return errors.New("ike: responder widened the traffic selectors")
	}
	var shared []byte
	if t.dh != nil {
		ke, ok := wire.Find(ps, wire.PayloadKE).(*wire.KE)
		if !ok || ke.Group != t.group {
			return errors.New("ike: CREATE_CHILD_SA response without our KE group")
		}
		var err error
		if shared, err = t.dh.SharedSecret(ke.Data); err != nil {
			return err
		}
	}
	keys, err := sa.keys.DeriveChildKeys(choice.suite, shared, t.ni, nr.Data, t.spi, choice.peerSPI)
	clear(shared)
	if err != nil {
		return err
	}
	nc := &child{inSPI: t.spi, outSPI: choice.peerSPI, suite: choice.suite, dh: t.group, localTS: tsi.Selectors, remoteTS: tsr.Selectors}
	old := t.rekey
	if old != nil {
		nc.replaces = old.inSPI
	}
	t.created = t.spi
	t.spi = 0
	h.addChild(nc, keys, true)
	if old != nil {
		switch {
		case old.state == childDeleted:
			// The peer deleted the old SA meanwhile; the new one stands.
		case old.collision != nil && lowestIsOurs(t.ni, nr.Data, old.collision.ni, old.collision.nr):
			sa.log.Info("CHILD_SA rekey collision: ours is redundant", "esp_spi", fmt.Sprintf("%08x", nc.inSPI), "reason", "lowest nonce")
			old.state = childRekeyed // the peer deletes it
			sa.enqueueFirst(&deleteChildTask{c: nc})
		default:
			old.state = childRekeyed
			sa.enqueueFirst(&deleteChildTask{c: old})
		}
	}
	t.finish(sa, nil)
	return nil
}

// retry queues the exchange again (new message ID) after delay.
func (t *childTask) retry(sa *ikeSA, group transform.DH, delay time.Duration) {
	t.tries++
	t.group = group
	sa.h.m.releaseChildSPI(t.spi)
	t.spi = 0
	t.wipeDH()
	if t.rekey != nil && t.rekey.state == childRekeying {
		t.rekey.state = childInstalled
	}
	if delay > 0 {
		sa.retryAt = sa.h.m.clock.Now().Add(delay)
	}
	sa.pending = append([]task{t}, sa.pending...)
}

func (t *childTask) wipeDH() {
	if t.dh != nil {
		t.dh.Wipe()
		t.dh = nil
	}
}

func (t *childTask) finish(sa *ikeSA, err error) {
	if t.spi != 0 {
		sa.h.m.releaseChildSPI(t.spi)
		t.spi = 0
	}
	t.wipeDH()
	if t.done != nil {
		t.done <- err
		t.done = nil
	}
}

func (t *childTask) abort(sa *ikeSA, err error) {
	if c := t.rekey; c != nil && c.state == childRekeying {
		c.state = childInstalled
		if err != nil && !errors.Is(err, ErrClosed) {
			// Try again later rather than let the SA expire.
			c.rekeyAt = sa.h.m.clock.Now().Add(DefaultRetryDelay * 5)
		}
	}
	if err != nil {
		sa.log.Info("CREATE_CHILD_SA failed", "reason", errString(err))
	}
	t.finish(sa, err)
}

// respondCreateChild answers CREATE_CHILD_SA: a new or rekeyed CHILD_SA,
// or an IKE SA rekey.
func (sa *ikeSA) respondCreateChild(in *inMsg) ([]wire.Payload, func()) {
	ps := in.payloads
	saP := wire.Find(ps, wire.PayloadSA).(*wire.SA)
	if len(saP.Proposals) > 0 && saP.Proposals[0].Protocol == wire.ProtoIKE {
		return sa.respondRekeyIKE(in)
	}
	return sa.respondChild(in)
}

func notify(t wire.NotifyType) []wire.Payload { return []wire.Payload{&wire.Notify{NotifyType: t}} }

func (sa *ikeSA) respondChild(in *inMsg) ([]wire.Payload, func()) {
	h, m := sa.h, sa.h.m
	ps := in.payloads
	if sa.state != StateEstablished || sa != h.cur {
		return notify(wire.NotifyTemporaryFailure), nil
	}
	// RFC 7296 §2.25.2: not while we rekey the IKE SA.
	if sa.rekey != nil {
		return notify(wire.NotifyTemporaryFailure), nil
	}
	var old *child
	if n := wire.FindNotify(ps, wire.NotifyRekeySA); n != nil {
		if n.Protocol != wire.ProtoESP || len(n.SPI) != 4 {
			return notify(wire.NotifyChildSANotFound), nil
		}
		// The SPI the peer receives on: our outbound SPI.
		old = h.findChildOut(binary.BigEndian.Uint32(n.SPI))
		if old == nil {
			return notify(wire.NotifyChildSANotFound), nil
		}
		// §2.25.1: refuse to rekey what we are closing or already replaced.
		if old.state == childDeleting || old.state == childRekeyed {
			return notify(wire.NotifyTemporaryFailure), nil
		}
	}
	saP := wire.Find(ps, wire.PayloadSA).(*wire.SA)
	ni := wire.Find(ps, wire.PayloadNonce).(*wire.Nonce).Data
	tsiP, _ := wire.Find(ps, wire.PayloadTSi).(*wire.TS)
	tsrP, _ := wire.Find(ps, wire.PayloadTSr).(*wire.TS)
	if tsiP == nil || tsrP == nil {
		return notify(wire.NotifyTSUnacceptable), nil
	}
	ke, _ := wire.Find(ps, wire.PayloadKE).(*wire.KE)
	group := transform.DHNone
	if ke != nil {
		group = ke.Group
	}
	choice, refusal := selectESP(m.cfg.Proposals.ESP, m.cfg.Proposals.PFS, saP, group, false)
	if refusal != nil {
		return []wire.Payload{refusal}, nil
	}
	var tsi, tsr []wire.Selector
	if old != nil {
		// A rekey keeps the CHILD_SA's selectors (RFC 7296 §2.9.2).
		tsi, tsr = narrow(tsiP.Selectors, old.remoteTS), narrow(tsrP.Selectors, old.localTS)
	} else {
		tsi, tsr = h.narrow(tsiP.Selectors, tsrP.Selectors)
	}
	if len(tsi) == 0 || len(tsr) == 0 {
		return notify(wire.NotifyTSUnacceptable), nil
	}
	nr, err := m.nonce()
	if err != nil {
		return notify(wire.NotifyNoAdditionalSAs), nil
	}
	var shared []byte
	var resp []wire.Payload
	var kePayload *wire.KE
	if choice.dh != transform.DHNone {
		dh, err := suite.GenerateDH(choice.dh, m.rand)
		if err != nil {
			return notify(wire.NotifyNoAdditionalSAs), nil
		}
		shared, err = dh.SharedSecret(ke.Data)
		kePayload = &wire.KE{Group: choice.dh, Data: append([]byte(nil), dh.PublicValue()...)}
		dh.Wipe()
		if err != nil {
			return notify(wire.NotifyInvalidSyntax), nil
		}
	}
	spi, err := m.newChildSPI()
	if err != nil {
		return notify(wire.NotifyNoAdditionalSAs), nil
	}
	keys, err := sa.keys.DeriveChildKeys(choice.suite, shared, ni, nr, choice.peerSPI, spi)
	clear(shared)
	if err != nil {
		m.releaseChildSPI(spi)
		return notify(wire.NotifyNoProposalChosen), nil
	}
	resp = append(resp, espSAResponse(choice, spi), &wire.Nonce{Data: nr})
	if kePayload != nil {
		resp = append(resp, kePayload)
	}
	resp = append(resp, &wire.TS{Selectors: tsi}, &wire.TS{Responder: true, Selectors: tsr})
	nc := &child{inSPI: spi, outSPI: choice.peerSPI, suite: choice.suite, dh: choice.dh, localTS: tsr, remoteTS: tsi}
	peerNi := append([]byte(nil), ni...)
	return resp, func() {
		if old != nil {
			nc.replaces = old.inSPI
			if old.state == childRekeying {
				// Both sides rekey this CHILD_SA (§2.8.1): decide when
				// our own response arrives.
				old.collision = &childCollision{child: nc, ni: peerNi, nr: nr}
				sa.log.Debug("CHILD_SA rekey collision", "esp_spi", fmt.Sprintf("%08x", old.inSPI))
			} else {
				old.state = childRekeyed // the peer deletes it
			}
		}
		h.addChild(nc, keys, false)
	}
}
