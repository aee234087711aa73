package ike

import (
	"encoding/binary"
	"slices"

	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/ike/wire"
	"github.com/mpsa-vpn/mpsa/transform"
)

// SA payloads: this side offers one proposal per suite (strongSwan's
// "aes256-sha256-x25519,aes128gcm16-prfsha256-ecp256" gives two); the
// responder takes the first of its own suites, in its order of preference,
// that one of the initiator's proposals contains, and answers with exactly
// that combination (RFC 7296 §3.3.6).

func encrTransform(e transform.Encr, bits uint16) wire.Transform {
	if e == transform.EncrChaCha20Poly1305 {
		bits = 0
	}
	return wire.NewTransform(transform.TypeENCR, uint16(e), bits)
}

func ikeTransforms(s suite.Suite) []wire.Transform {
	ts := []wire.Transform{encrTransform(s.Encr, s.KeyBits), wire.NewTransform(transform.TypePRF, uint16(s.PRF), 0)}
	if !s.Encr.IsAEAD() {
		ts = append(ts, wire.NewTransform(transform.TypeINTEG, uint16(s.Integ), 0))
	}
	return append(ts, wire.NewTransform(transform.TypeDH, uint16(s.DH), 0))
}

// ikeSAPayload offers suites; spi is empty in IKE_SA_INIT and the new SPI
// when rekeying.
func ikeSAPayload(suites []suite.Suite, spi []byte) *wire.SA {
	sa := &wire.SA{}
	for i, s := range suites {
		sa.Proposals = append(sa.Proposals, wire.Proposal{Num: uint8(i + 1), Protocol: wire.ProtoIKE, SPI: spi, Transforms: ikeTransforms(s)})
	}
	return sa
}

// ikeSAResponse is the responder's choice.
func ikeSAResponse(s suite.Suite, num uint8, spi []byte) *wire.SA {
	return &wire.SA{Proposals: []wire.Proposal{{Num: num, Protocol: wire.ProtoIKE, SPI: spi, Transforms: ikeTransforms(s)}}}
}

// has reports whether a proposal carries a transform of type t and id, with
// exactly the key length attribute bits (0: none or, for ChaCha20, 256) and
// no attribute it does not know (RFC 7296 §3.3.6).
func has(p *wire.Proposal, t transform.Type, id uint16, bits uint16) bool {
	for i := range p.Transforms {
		tr := &p.Transforms[i]
		if tr.Type != t || tr.ID != id {
			continue
		}
		kl, ok := tr.KeyLength()
		if len(tr.Attrs) > 1 || (len(tr.Attrs) == 1 && !ok) {
			continue
		}
		if bits == 0 && (!ok || (t == transform.TypeENCR && transform.Encr(id) == transform.EncrChaCha20Poly1305 && kl == 256)) {
			return true
		}
		if bits != 0 && ok && kl == bits {
			return true
		}
	}
	return false
}

func count(p *wire.Proposal, t transform.Type) int {
	n := 0
	for i := range p.Transforms {
		if p.Transforms[i].Type == t {
			n++
		}
	}
	return n
}

// hasNoInteg: an AEAD proposal carries no integrity transform, or NONE.
func hasNoInteg(p *wire.Proposal) bool {
	n := count(p, transform.TypeINTEG)
	return n == 0 || has(p, transform.TypeINTEG, 0, 0)
}

func ikeMatches(p *wire.Proposal, s suite.Suite) bool {
	encBits := s.KeyBits
	if s.Encr == transform.EncrChaCha20Poly1305 {
		encBits = 0
	}
	if !has(p, transform.TypeENCR, uint16(s.Encr), encBits) || !has(p, transform.TypePRF, uint16(s.PRF), 0) ||
		!has(p, transform.TypeDH, uint16(s.DH), 0) {
		return false
	}
	if s.Encr.IsAEAD() {
		return hasNoInteg(p)
	}
	return has(p, transform.TypeINTEG, uint16(s.Integ), 0)
}

// selectIKE picks the responder's suite. spiLen is 0 in IKE_SA_INIT and 8
// when rekeying.
func selectIKE(ours []suite.Suite, sa *wire.SA, spiLen int) (s suite.Suite, num uint8, spi []byte, ok bool) {
	for _, s := range ours {
		for i := range sa.Proposals {
			p := &sa.Proposals[i]
			if p.Protocol == wire.ProtoIKE && len(p.SPI) == spiLen && ikeMatches(p, s) {
				return s, p.Num, p.SPI, true
			}
		}
	}
	return suite.Suite{}, 0, nil, false
}

// single checks a responder's answer: one proposal, one transform per type.
func single(sa *wire.SA, proto wire.ProtocolID, spiLen int) (*wire.Proposal, bool) {
	if len(sa.Proposals) != 1 {
		return nil, false
	}
	p := &sa.Proposals[0]
	if p.Protocol != proto || len(p.SPI) != spiLen {
		return nil, false
	}
	for _, t := range []transform.Type{transform.TypeENCR, transform.TypePRF, transform.TypeINTEG, transform.TypeDH, transform.TypeESN} {
		if count(p, t) > 1 {
			return nil, false
		}
	}
	return p, true
}

// acceptIKE checks the responder's IKE proposal against what we offered.
func acceptIKE(ours []suite.Suite, sa *wire.SA, spiLen int) (suite.Suite, []byte, bool) {
	p, ok := single(sa, wire.ProtoIKE, spiLen)
	if !ok || count(p, transform.TypeENCR) != 1 || count(p, transform.TypePRF) != 1 || count(p, transform.TypeDH) != 1 {
		return suite.Suite{}, nil, false
	}
	for _, s := range ours {
		if ikeMatches(p, s) {
			return s, p.SPI, true
		}
	}
	return suite.Suite{}, nil, false
}

func espTransforms(s transform.ESP, dh transform.DH) []wire.Transform {
	ts := []wire.Transform{encrTransform(s.Encr, s.KeyBits)}
	if !s.Encr.IsAEAD() {
		ts = append(ts, wire.NewTransform(transform.TypeINTEG, uint16(s.Integ), 0))
	}
	if dh != transform.DHNone {
		ts = append(ts, wire.NewTransform(transform.TypeDH, uint16(dh), 0))
	}
	return append(ts, wire.NewTransform(transform.TypeESN, transform.ESNNone, 0))
}

func spiBytes(spi uint32) []byte { return binary.BigEndian.AppendUint32(nil, spi) }

// espSAPayload offers ESP suites with our inbound SPI; pfs groups are
// included (CREATE_CHILD_SA) when not empty.
func espSAPayload(suites []transform.ESP, pfs []transform.DH, spi uint32) *wire.SA {
	sa := &wire.SA{}
	for i, s := range suites {
		ts := espTransforms(s, transform.DHNone)
		if len(pfs) > 0 {
			ts = ts[:len(ts)-1]
			for _, g := range pfs {
				ts = append(ts, wire.NewTransform(transform.TypeDH, uint16(g), 0))
			}
			ts = append(ts, wire.NewTransform(transform.TypeESN, transform.ESNNone, 0))
		}
		sa.Proposals = append(sa.Proposals, wire.Proposal{Num: uint8(i + 1), Protocol: wire.ProtoESP, SPI: spiBytes(spi), Transforms: ts})
	}
	return sa
}

func espMatches(p *wire.Proposal, s transform.ESP) bool {
	encBits := s.KeyBits
	if s.Encr == transform.EncrChaCha20Poly1305 {
		encBits = 0
	}
	if !has(p, transform.TypeENCR, uint16(s.Encr), encBits) {
		return false
	}
	if count(p, transform.TypeESN) > 0 && !has(p, transform.TypeESN, transform.ESNNone, 0) {
		return false
	}
	if s.Encr.IsAEAD() {
		return hasNoInteg(p)
	}
	return has(p, transform.TypeINTEG, uint16(s.Integ), 0)
}

// espChoice is the responder's pick of a CHILD_SA proposal.
type espChoice struct {
	suite   transform.ESP
	dh      transform.DH // PFS group, DHNone without PFS
	num     uint8
	peerSPI uint32
}

// selectESP picks the responder's ESP suite. In IKE_AUTH (inAuth) DH
// transforms are ignored (RFC 7296 §1.2). Otherwise ke is the group of the
// initiator's KE payload (DHNone if absent). It returns the notify to answer
// with when nothing fits: NO_PROPOSAL_CHOSEN, or INVALID_KE_PAYLOAD with the
// group wanted.
func selectESP(ours []transform.ESP, pfs []transform.DH, sa *wire.SA, ke transform.DH, inAuth bool) (espChoice, *wire.Notify) {
	var wantKE transform.DH
	for _, s := range ours {
		for i := range sa.Proposals {
			p := &sa.Proposals[i]
			if p.Protocol != wire.ProtoESP || len(p.SPI) != 4 || !espMatches(p, s) {
				continue
			}
			c := espChoice{suite: s, num: p.Num, peerSPI: binary.BigEndian.Uint32(p.SPI)}
			if inAuth {
				return c, nil
			}
			noDH := count(p, transform.TypeDH) == 0 || has(p, transform.TypeDH, 0, 0)
			if len(pfs) == 0 {
				if noDH && ke == transform.DHNone {
					return c, nil
				}
				// The peer wants PFS we do not do.
				continue
			}
			for _, g := range pfs {
				if !has(p, transform.TypeDH, uint16(g), 0) {
					continue
				}
				if ke == g {
					c.dh = g
					return c, nil
				}
				if wantKE == transform.DHNone {
					wantKE = g
				}
			}
		}
	}
	if wantKE != transform.DHNone {
		return espChoice{}, &wire.Notify{NotifyType: wire.NotifyInvalidKEPayload, Data: binary.BigEndian.AppendUint16(nil, uint16(wantKE))}
	}
	return espChoice{}, &wire.Notify{NotifyType: wire.NotifyNoProposalChosen}
}

// espSAResponse is the responder's answer with our inbound SPI.
func espSAResponse(c espChoice, spi uint32) *wire.SA {
	return &wire.SA{Proposals: []wire.Proposal{{Num: c.num, Protocol: wire.ProtoESP, SPI: spiBytes(spi), Transforms: espTransforms(c.suite, c.dh)}}}
}

// acceptESP checks the responder's ESP proposal; dh is the group of our KE
// payload (DHNone without PFS).
func acceptESP(ours []transform.ESP, sa *wire.SA, dh transform.DH) (espChoice, bool) {
	p, ok := single(sa, wire.ProtoESP, 4)
	if !ok || count(p, transform.TypeENCR) != 1 {
		return espChoice{}, false
	}
	if dh == transform.DHNone {
		if count(p, transform.TypeDH) != 0 && !has(p, transform.TypeDH, 0, 0) {
			return espChoice{}, false
		}
	} else if !has(p, transform.TypeDH, uint16(dh), 0) {
		return espChoice{}, false
	}
	for _, s := range ours {
		if espMatches(p, s) {
			return espChoice{suite: s, dh: dh, num: p.Num, peerSPI: binary.BigEndian.Uint32(p.SPI)}, true
		}
	}
	return espChoice{}, false
}

// dhOffered reports whether g is one of the DH groups of our IKE suites.
func dhOffered(suites []suite.Suite, g transform.DH) bool {
	return slices.ContainsFunc(suites, func(s suite.Suite) bool { return s.DH == g })
}
