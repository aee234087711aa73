package mpsa

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"golang.org/x/crypto/cryptobyte"

	"github.com/mpsa-vpn/mpsa/transform"
)

// Transform-like substructure types of MPSA_PUT (draft §3.2.2; 241–255 is the
// private-use range of IKEv2 Transform Types). Each has Transform ID 1.
const (
	TypeNonce    transform.Type = 241 // NONCE
	TypeSKd      transform.Type = 242 // SKD
	TypeLife     transform.Type = 243 // LIFE
	TypeRoll1    transform.Type = 244 // ROLL1
	TypeRoll2    transform.Type = 245 // ROLL2
	TypeSenderID transform.Type = 246 // SENDER_ID, this product's (RFC 6054 for group SAs)
)

// Attribute types of those substructures (private-use range 16384–32767 of
// RFC 7296 §3.3.5). All are TLV (AF=0) except AttrSenderIDBits, which is TV.
const (
	AttrNonce        uint16 = 16384 // Nonce value, 16–256 octets
	AttrSKd          uint16 = 16385 // SK_d value, the PRF's preferred key length
	AttrLife         uint16 = 16386 // Lifetime, 4 octets, seconds
	AttrRoll1        uint16 = 16387 // Rollover time 1, 4 octets, seconds (the draft's figure wrongly shows 16386)
	AttrRoll2        uint16 = 16388 // Rollover time 2, 4 octets, seconds (the draft's figure wrongly shows 16386)
	AttrSenderIDBits uint16 = 16389 // TV: length of the Sender-ID in bits, 1–32
	AttrSenderID     uint16 = 16390 // TLV, 4 octets: this CPE's Sender-ID, 1 … 2^bits-1
)

// Size limits.
const (
	MinNonceLen = 16  // draft §3.2.2
	MaxNonceLen = 256 // draft §3.2.2
	// MaxSenderIDBits is the widest Sender-ID: half the 8-octet IV of
	// AES-GCM and ChaCha20-Poly1305 in ESP, leaving a 32-bit counter.
	MaxSenderIDBits = 32
)

const (
	transformIDOne   = 1 // the only Transform ID of types 241–246
	lastSubstruc     = 0
	moreTransforms   = 3
	proposalHdrLen   = 8 + 4 // proposal header plus the 4-octet SPI
	transformHdrLen  = 8
	attrFormatTV     = 0x8000
	maxTransformsPut = 9
)

// Put is the content of one MPSA_PUT: a group SA as the hub hands it to one
// CPE. Durations are whole seconds on the wire (Encode truncates); Life,
// Roll1 and Roll2 count from the moment the CPE receives it.
//
// Put holds secrets (Nonce, SKd): never log it with %v (String prints only
// the SPI and suite) and call Wipe when done with it.
type Put struct {
	SPI   uint32
	Suite transform.ESP
	PRF   transform.PRF
	Nonce []byte
	SKd   []byte
	Life  time.Duration // time left of the SA; > 0
	Roll1 time.Duration // delay until the new SA is used outbound
	Roll2 time.Duration // delay until the previous SA is removed inbound

	// SenderIDBits > 0 gives this CPE a Sender-ID (RFC 6054): the high
	// SenderIDBits of every IV it sends on the SA carry SenderID. Required
	// for AEAD suites, optional for AES-CBC (where it buys per-sender
	// anti-replay).
	SenderIDBits uint8
	SenderID     uint32
}

// String never prints key material.
func (p *Put) String() string {
	return fmt.Sprintf("MPSA_PUT esp_spi=%08x %v %v life=%v", p.SPI, p.Suite, p.PRF, p.Life)
}

// GoString never prints key material either.
func (p *Put) GoString() string { return p.String() }

// Wipe zeroes the Nonce and SK_d in place.
func (p *Put) Wipe() {
	clear(p.Nonce)
	clear(p.SKd)
}

// Validate checks every rule a decoder enforces, so that what Encode
// produces always decodes.
func (p *Put) Validate() error {
	if p.SPI < 256 {
		return fieldErr("SPI", "%08x is reserved (RFC 4303 §2.1)", p.SPI)
	}
	if _, err := p.Suite.Encr.KeyLen(p.Suite.KeyBits); err != nil {
		return fieldErr("ENCR", "unsupported %v with key length %d", p.Suite.Encr, p.Suite.KeyBits)
	}
	if err := p.Suite.Validate(); err != nil {
		return fieldErr("INTEG", "%v", err)
	}
	pl, err := p.PRF.KeyLen()
	if err != nil {
		return fieldErr("PRF", "unsupported %v", p.PRF)
	}
	if len(p.Nonce) < MinNonceLen || len(p.Nonce) > MaxNonceLen {
		return fieldErr("NONCE", "%d octets, want %d to %d", len(p.Nonce), MinNonceLen, MaxNonceLen)
	}
	if len(p.SKd) != pl {
		return fieldErr("SK_d", "%d octets, %v needs %d", len(p.SKd), p.PRF, pl)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"LIFE", p.Life}, {"ROLL1", p.Roll1}, {"ROLL2", p.Roll2}} {
		if d.v < 0 || d.v/time.Second > math.MaxUint32 {
			return fieldErr(d.name, "%v does not fit 32-bit seconds", d.v)
		}
	}
	if p.Life < time.Second {
		return fieldErr("LIFE", "0 seconds")
	}
	if secs(p.Roll1) > secs(p.Roll2) {
		return fieldErr("ROLL2", "%d s is before ROLL1 %d s", secs(p.Roll2), secs(p.Roll1))
	}
	if secs(p.Roll2) >= secs(p.Life) {
		return fieldErr("ROLL2", "%d s is not before LIFE %d s", secs(p.Roll2), secs(p.Life))
	}
	aead := p.Suite.Encr.IsAEAD()
	switch {
	case aead && p.SenderIDBits == 0:
		return fieldErr("SENDER_ID", "missing; %v on a shared key needs one (RFC 6054)", p.Suite.Encr)
	case p.SenderIDBits > MaxSenderIDBits:
		return fieldErr("SENDER_ID", "%d bits, at most %d", p.SenderIDBits, MaxSenderIDBits)
	case p.SenderIDBits != 0 && (p.SenderID == 0 || uint64(p.SenderID) >= 1<<p.SenderIDBits):
		return fieldErr("SENDER_ID", "value %d outside 1 to %d", p.SenderID, uint64(1)<<p.SenderIDBits-1)
	}
	return nil
}

func secs(d time.Duration) uint32 { return uint32(d / time.Second) }

// Encode validates p and returns the MPSA_PUT notify: protocol ESP, the SPI in
// the notify header and in the proposal-like substructure, transforms in the
// draft's order (ENCR, PRF, INTEG, NONCE, SKD, LIFE, ROLL1, ROLL2) followed by
// SENDER_ID when there is one; AEAD suites carry no INTEG. The caller wipes the
// returned Data (it holds SK_d) once sent.
func (p *Put) Encode() (Notify, error) {
	if err := p.Validate(); err != nil {
		return Notify{}, err
	}
	data, err := p.appendData(make([]byte, 0, p.dataLen()))
	if err != nil {
		return Notify{}, err
	}
	spi := binary.BigEndian.AppendUint32(nil, p.SPI)
	return Notify{Protocol: ProtocolESP, Type: NotifyPut, SPI: spi, Data: data}, nil
}

// dataLen is the exact encoded length, so Encode allocates once and leaves no
// stray copies of SK_d behind.
func (p *Put) dataLen() int {
	n := proposalHdrLen
	n += transformHdrLen // ENCR
	if p.Suite.Encr.NeedsKeyLength() {
		n += 4
	}
	n += transformHdrLen // PRF
	if p.Suite.Integ != transform.IntegNone {
		n += transformHdrLen
	}
	n += transformHdrLen + 4 + len(p.Nonce)
	n += transformHdrLen + 4 + len(p.SKd)
	n += 3 * (transformHdrLen + 4 + 4)
	if p.SenderIDBits != 0 {
		n += transformHdrLen + 4 + 4 + 4
	}
	return n
}

type wireTransform struct {
	typ     transform.Type
	id      uint16
	attrLen int
	attrs   func(b *cryptobyte.Builder)
}

func tlv(typ uint16, v []byte) (int, func(*cryptobyte.Builder)) {
	return 4 + len(v), func(b *cryptobyte.Builder) {
		b.AddUint16(typ)
		b.AddUint16(uint16(len(v)))
		b.AddBytes(v)
	}
}

func tlv32(typ uint16, v uint32) (int, func(*cryptobyte.Builder)) {
	return 8, func(b *cryptobyte.Builder) {
		b.AddUint16(typ)
		b.AddUint16(4)
		b.AddUint32(v)
	}
}

// one builds a transform of the MPSA types (Transform ID 1) from the result of
// tlv or tlv32: one(TypeLife)(tlv32(AttrLife, 3600)).
func one(typ transform.Type) func(int, func(*cryptobyte.Builder)) wireTransform {
	return func(attrLen int, attrs func(*cryptobyte.Builder)) wireTransform {
		return wireTransform{typ: typ, id: transformIDOne, attrLen: attrLen, attrs: attrs}
	}
}

// appendData writes the Notification Data straight into out, which must have
// room for dataLen octets, so that no intermediate buffer holds SK_d.
func (p *Put) appendData(out []byte) ([]byte, error) {
	var ts [maxTransformsPut]wireTransform
	n := 0
	add := func(t wireTransform) { ts[n] = t; n++ }
	encr := wireTransform{typ: transform.TypeENCR, id: uint16(p.Suite.Encr)}
	if p.Suite.Encr.NeedsKeyLength() {
		encr.attrLen = 4
		encr.attrs = func(b *cryptobyte.Builder) {
			b.AddUint16(attrFormatTV | transform.AttrKeyLength)
			b.AddUint16(p.Suite.KeyBits)
		}
	}
	add(encr)
	add(wireTransform{typ: transform.TypePRF, id: uint16(p.PRF)})
	if p.Suite.Integ != transform.IntegNone {
		add(wireTransform{typ: transform.TypeINTEG, id: uint16(p.Suite.Integ)})
	}
	add(one(TypeNonce)(tlv(AttrNonce, p.Nonce)))
	add(one(TypeSKd)(tlv(AttrSKd, p.SKd)))
	add(one(TypeLife)(tlv32(AttrLife, secs(p.Life))))
	add(one(TypeRoll1)(tlv32(AttrRoll1, secs(p.Roll1))))
	add(one(TypeRoll2)(tlv32(AttrRoll2, secs(p.Roll2))))
	if p.SenderIDBits != 0 {
		_, sid := tlv32(AttrSenderID, p.SenderID)
		add(wireTransform{typ: TypeSenderID, id: transformIDOne, attrLen: 12, attrs: func(b *cryptobyte.Builder) {
			b.AddUint16(attrFormatTV | AttrSenderIDBits)
			b.AddUint16(uint16(p.SenderIDBits))
			sid(b)
		}})
	}

	// RFC 7296 §3.3.1 proposal substructure; its length counts its header.
	b := cryptobyte.NewFixedBuilder(out)
	b.AddUint8(lastSubstruc)
	b.AddUint8(0)
	b.AddUint16(uint16(p.dataLen()))
	b.AddUint8(1) // Proposal Num
	b.AddUint8(ProtocolESP)
	b.AddUint8(4) // SPI Size
	b.AddUint8(uint8(n))
	b.AddUint32(p.SPI)
	for i, t := range ts[:n] {
		// RFC 7296 §3.3.2 transform substructure, length including header.
		last := uint8(moreTransforms)
		if i == n-1 {
			last = lastSubstruc
		}
		b.AddUint8(last)
		b.AddUint8(0)
		b.AddUint16(uint16(transformHdrLen + t.attrLen))
		b.AddUint8(uint8(t.typ))
		b.AddUint8(0)
		b.AddUint16(t.id)
		if t.attrs != nil {
			t.attrs(b)
		}
	}
	data, err := b.Bytes()
	if err != nil {
		clear(out[:cap(out)])
		return nil, fmt.Errorf("mpsa: encoding MPSA_PUT: %w", err)
	}
	return data, nil
}
