package mpsa

import (
	"encoding/binary"
	"strconv"
	"time"

	"golang.org/x/crypto/cryptobyte"

	"github.com/mpsa-vpn/mpsa/transform"
)

// DecodePut parses and validates an MPSA_PUT notify. It refuses, with a
// *FieldError naming the field: another notify type or protocol, an SPI that
// is not 4 octets or differs between the notify and the proposal, wrong
// lengths anywhere, more than one proposal, a wrong Num Transforms or
// Last Substruc, unknown or duplicate transforms, transforms missing, unknown
// or duplicate attributes (there is no optional data in MPSA_PUT: anything
// not understood is critical), a Nonce outside 16–256 octets, an SK_d that is
// not the PRF's key length, LIFE 0, ROLL1 after ROLL2 or ROLL2 not before
// LIFE, and a Sender-ID that is missing for an AEAD suite or out of range. RESERVED fields are ignored (RFC 7296 §3.3).
//
// The returned Put owns copies of the Nonce and SK_d; the caller wipes it.
// n.Data is not kept.
func DecodePut(n Notify) (*Put, error) {
	if n.Type != NotifyPut {
		return nil, fieldErr("Notify Message Type", "%d, want %d", n.Type, NotifyPut)
	}
	if n.Protocol != ProtocolESP {
		return nil, fieldErr("Protocol ID", "%d, want %d (ESP)", n.Protocol, ProtocolESP)
	}
	if len(n.SPI) != 4 {
		return nil, fieldErr("SPI Size", "%d, want 4", len(n.SPI))
	}
	return decodePutData(binary.BigEndian.Uint32(n.SPI), n.Data)
}

// putSeen records which transforms a decoder has met.
type putSeen uint16

func bit(t transform.Type) putSeen {
	switch t {
	case transform.TypeENCR, transform.TypePRF, transform.TypeINTEG:
		return 1 << t
	case TypeNonce, TypeSKd, TypeLife, TypeRoll1, TypeRoll2, TypeSenderID:
		return 1 << (t - TypeNonce + 4)
	}
	return 0
}

func transformName(t transform.Type) string {
	switch t {
	case transform.TypeENCR:
		return "ENCR"
	case transform.TypePRF:
		return "PRF"
	case transform.TypeINTEG:
		return "INTEG"
	case TypeNonce:
		return "NONCE"
	case TypeSKd:
		return "SK_d"
	case TypeLife:
		return "LIFE"
	case TypeRoll1:
		return "ROLL1"
	case TypeRoll2:
		return "ROLL2"
	case TypeSenderID:
		return "SENDER_ID"
	}
	return "transform " + strconv.Itoa(int(t))
}

// attrOf is the attribute type each of the draft's transforms carries.
func attrOf(t transform.Type) uint16 {
	switch t {
	case TypeNonce:
		return AttrNonce
	case TypeSKd:
		return AttrSKd
	case TypeLife:
		return AttrLife
	case TypeRoll1:
		return AttrRoll1
	case TypeRoll2:
		return AttrRoll2
	}
	return 0
}

func decodePutData(spi uint32, data []byte) (*Put, error) {
	s := cryptobyte.String(data)
	var last, reserved, num, proto, spiSize, numTransforms uint8
	var plen uint16
	var pspi uint32
	if !s.ReadUint8(&last) || !s.ReadUint8(&reserved) || !s.ReadUint16(&plen) ||
		!s.ReadUint8(&num) || !s.ReadUint8(&proto) || !s.ReadUint8(&spiSize) || !s.ReadUint8(&numTransforms) {
		return nil, fieldErr("proposal", "truncated: %d octets", len(data))
	}
	switch {
	case last != lastSubstruc:
		return nil, fieldErr("proposal", "Last Substruc %d: MPSA_PUT has exactly one proposal", last)
	case int(plen) != len(data):
		return nil, fieldErr("Proposal Length", "%d, Notification Data is %d octets", plen, len(data))
	case num != 1:
		return nil, fieldErr("Proposal Num", "%d, want 1", num)
	case proto != ProtocolESP:
		return nil, fieldErr("Protocol ID", "proposal says %d, want %d (ESP)", proto, ProtocolESP)
	case spiSize != 4:
		return nil, fieldErr("SPI Size", "proposal says %d, want 4", spiSize)
	case !s.ReadUint32(&pspi):
		return nil, fieldErr("SPI", "proposal truncated")
	case pspi != spi:
		return nil, fieldErr("SPI", "proposal %08x differs from notify %08x", pspi, spi)
	case numTransforms == 0 || numTransforms > maxTransformsPut:
		return nil, fieldErr("Num Transforms", "%d, want 8 or 9", numTransforms)
	}

	p := &Put{SPI: spi}
	var seen putSeen
	integNone := false
	for i := 0; !s.Empty(); i++ {
		if i >= int(numTransforms) {
			p.Wipe()
			return nil, fieldErr("Num Transforms", "%d, but more transforms follow", numTransforms)
		}
		var tlast, tres, ttype, tres2 uint8
		var tlen, tid uint16
		var attrs cryptobyte.String
		if !s.ReadUint8(&tlast) || !s.ReadUint8(&tres) || !s.ReadUint16(&tlen) ||
			tlen < transformHdrLen || !s.ReadUint8(&ttype) || !s.ReadUint8(&tres2) ||
			!s.ReadUint16(&tid) || !s.ReadBytes((*[]byte)(&attrs), int(tlen)-transformHdrLen) {
			p.Wipe()
			return nil, fieldErr("Transform Length", "transform %d truncated or shorter than its header", i+1)
		}
		typ := transform.Type(ttype)
		name := transformName(typ)
		wantLast := uint8(moreTransforms)
		if i == int(numTransforms)-1 {
			wantLast = lastSubstruc
		}
		if tlast != wantLast {
			p.Wipe()
			return nil, fieldErr("Num Transforms", "%d, but %s (transform %d) has Last Substruc %d", numTransforms, name, i+1, tlast)
		}
		b := bit(typ)
		if b == 0 {
			p.Wipe()
			return nil, fieldErr(name, "unknown transform type %d", ttype)
		}
		if seen&b != 0 {
			p.Wipe()
			return nil, fieldErr(name, "duplicate transform")
		}
		seen |= b
		if err := p.decodeTransform(typ, name, tid, attrs, &integNone); err != nil {
			p.Wipe()
			return nil, err
		}
	}
	if err := p.checkComplete(seen, numTransforms, integNone); err != nil {
		p.Wipe()
		return nil, err
	}
	return p, nil
}

func (p *Put) checkComplete(seen putSeen, numTransforms uint8, integNone bool) error {
	for _, t := range []transform.Type{transform.TypeENCR, transform.TypePRF, TypeNonce, TypeSKd, TypeLife, TypeRoll1, TypeRoll2} {
		if seen&bit(t) == 0 {
			return fieldErr(transformName(t), "missing")
		}
	}
	aead := p.Suite.Encr.IsAEAD()
	if !aead && seen&bit(transform.TypeINTEG) == 0 {
		return fieldErr("INTEG", "missing; %v needs an integrity transform", p.Suite.Encr)
	}
	if aead && seen&bit(transform.TypeINTEG) != 0 && !integNone {
		return fieldErr("INTEG", "%v with AEAD %v", p.Suite.Integ, p.Suite.Encr)
	}
	if count := popcount(seen); count != int(numTransforms) {
		return fieldErr("Num Transforms", "%d, found %d transforms", numTransforms, count)
	}
	return p.Validate()
}

func popcount(s putSeen) int {
	n := 0
	for ; s != 0; s &= s - 1 {
		n++
	}
	return n
}

// attr is one data attribute (RFC 7296 §3.3.5).
type attr struct {
	typ   uint16 // without the AF bit
	tv    bool   // AF=1: value is the 2 octets in val
	val   uint16
	bytes []byte // TLV value, aliasing the input
}

func readAttr(s *cryptobyte.String, a *attr) bool {
	var t uint16
	if !s.ReadUint16(&t) {
		return false
	}
	a.typ, a.tv = t&^attrFormatTV, t&attrFormatTV != 0
	if a.tv {
		a.bytes = nil
		return s.ReadUint16(&a.val)
	}
	var l uint16
	return s.ReadUint16(&l) && s.ReadBytes(&a.bytes, int(l))
}

// decodeTransform fills p from one transform. attrs aliases the input.
func (p *Put) decodeTransform(typ transform.Type, name string, id uint16, attrs cryptobyte.String, integNone *bool) error {
	switch typ {
	case transform.TypeENCR:
		p.Suite.Encr = transform.Encr(id)
		switch p.Suite.Encr {
		case transform.EncrAESCBC, transform.EncrAESGCM16, transform.EncrChaCha20Poly1305:
		default:
			return fieldErr(name, "unsupported transform ID %d", id)
		}
		var haveKeyLen bool
		var a attr
		for !attrs.Empty() {
			if !readAttr(&attrs, &a) {
				return fieldErr(name, "attribute truncated")
			}
			if a.typ != transform.AttrKeyLength || !a.tv {
				return fieldErr(name, "unknown attribute %d (AF=%t)", a.typ, a.tv)
			}
			if haveKeyLen {
				return fieldErr(name, "duplicate Key Length attribute")
			}
			haveKeyLen = true
			p.Suite.KeyBits = a.val
		}
		if p.Suite.Encr.NeedsKeyLength() && !haveKeyLen {
			return fieldErr(name, "%v without Key Length attribute", p.Suite.Encr)
		}
		if _, err := p.Suite.Encr.KeyLen(p.Suite.KeyBits); err != nil {
			return fieldErr(name, "%v does not take key length %d", p.Suite.Encr, p.Suite.KeyBits)
		}
		return nil
	case transform.TypePRF:
		p.PRF = transform.PRF(id)
		if _, err := p.PRF.KeyLen(); err != nil {
			return fieldErr(name, "unsupported transform ID %d", id)
		}
		return noAttrs(name, attrs)
	case transform.TypeINTEG:
		p.Suite.Integ = transform.Integ(id)
		if _, err := p.Suite.Integ.KeyLen(); err != nil {
			return fieldErr(name, "unsupported transform ID %d", id)
		}
		*integNone = p.Suite.Integ == transform.IntegNone
		return noAttrs(name, attrs)
	}

	if id != transformIDOne {
		return fieldErr(name, "Transform ID %d, want 1", id)
	}
	if typ == TypeSenderID {
		return p.decodeSenderID(name, attrs)
	}
	want := attrOf(typ)
	var a attr
	if !readAttr(&attrs, &a) {
		return fieldErr(name, "attribute truncated")
	}
	if a.typ != want || a.tv {
		hint := ""
		if a.typ == AttrLife && (typ == TypeRoll1 || typ == TypeRoll2) {
			hint = " (the draft's figure shows 16386 here; its text's value is the right one)"
		}
		return fieldErr(name, "attribute type %d (AF=%t), want TLV %d%s", a.typ, a.tv, want, hint)
	}
	if !attrs.Empty() {
		return fieldErr(name, "%d octets after the attribute", len(attrs))
	}
	switch typ {
	case TypeNonce:
		if len(a.bytes) < MinNonceLen || len(a.bytes) > MaxNonceLen {
			return fieldErr(name, "%d octets, want %d to %d", len(a.bytes), MinNonceLen, MaxNonceLen)
		}
		p.Nonce = append([]byte(nil), a.bytes...)
	case TypeSKd:
		if len(a.bytes) > 64 {
			return fieldErr(name, "%d octets, longer than any PRF key", len(a.bytes))
		}
		p.SKd = append([]byte(nil), a.bytes...)
	default:
		if len(a.bytes) != 4 {
			return fieldErr(name, "Attribute Length %d, want 4", len(a.bytes))
		}
		d := time.Duration(binary.BigEndian.Uint32(a.bytes)) * time.Second
		switch typ {
		case TypeLife:
			if d == 0 {
				return fieldErr(name, "0 seconds")
			}
			p.Life = d
		case TypeRoll1:
			p.Roll1 = d
		case TypeRoll2:
			p.Roll2 = d
		}
	}
	return nil
}

func (p *Put) decodeSenderID(name string, attrs cryptobyte.String) error {
	var haveBits, haveID bool
	var a attr
	for !attrs.Empty() {
		if !readAttr(&attrs, &a) {
			return fieldErr(name, "attribute truncated")
		}
		switch {
		case a.typ == AttrSenderIDBits && a.tv && !haveBits:
			haveBits = true
			if a.val == 0 || a.val > MaxSenderIDBits {
				return fieldErr(name, "%d bits, want 1 to %d", a.val, MaxSenderIDBits)
			}
			p.SenderIDBits = uint8(a.val)
		case a.typ == AttrSenderID && !a.tv && !haveID:
			haveID = true
			if len(a.bytes) != 4 {
				return fieldErr(name, "Attribute Length %d, want 4", len(a.bytes))
			}
			p.SenderID = binary.BigEndian.Uint32(a.bytes)
		default:
			return fieldErr(name, "unknown or duplicate attribute %d (AF=%t)", a.typ, a.tv)
		}
	}
	if !haveBits || !haveID {
		return fieldErr(name, "needs both attributes %d and %d", AttrSenderIDBits, AttrSenderID)
	}
	return nil
}

func noAttrs(name string, attrs cryptobyte.String) error {
	if !attrs.Empty() {
		return fieldErr(name, "unexpected attributes (%d octets)", len(attrs))
	}
	return nil
}
