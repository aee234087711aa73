package wire

import (
	"fmt"
)

// Message is one IKEv2 message: the header and its top-level payloads. In
// a protected message the last payload is an *Encrypted (SK) or *Fragment
// (SKF); its inner payloads are decoded by DecodePayloads once opened.
type Message struct {
	Header
	Payloads []Payload
	// Raw is the message as received or as last encoded. Decode sets it to
	// the buffer it was given (no copy).
	Raw []byte
}

// Decode parses a whole IKE message. The header's Length must equal len(b)
// and the major version must be 2 (otherwise a *NotifyError of type
// INVALID_MAJOR_VERSION). A critical payload of unknown type yields a
// *NotifyError of type UNSUPPORTED_CRITICAL_PAYLOAD. The message aliases b.
func Decode(b []byte) (*Message, error) {
	h, err := DecodeHeader(b)
	if err != nil {
		return nil, err
	}
	if int64(h.Length) != int64(len(b)) {
		return nil, ErrLength
	}
	if h.MajorVersion() != 2 {
		return nil, Errorf(NotifyInvalidMajorVersion, "version %#x", h.Version)
	}
	ps, err := decodeChain(h.NextPayload, b[HeaderLen:], false)
	if err != nil {
		return nil, err
	}
	return &Message{Header: h, Payloads: ps, Raw: b}, nil
}

// Encode encodes m with its payloads as they are (an SK payload must already
// carry its protected Body) and sets m.Raw and m.Length.
func (m *Message) Encode() ([]byte, error) {
	b := newBuilder(HeaderLen + chainSizeHint)
	b.buf = b.buf[:HeaderLen]
	addChain(b, m.Payloads)
	out, err := b.Bytes()
	if err != nil {
		return nil, err
	}
	next := PayloadNone
	if len(m.Payloads) > 0 {
		next = m.Payloads[0].Type()
	}
	m.Header.append(out[:0], next, len(out))
	m.Length, m.Raw = uint32(len(out)), out
	if m.Version == 0 {
		m.Version = Version
	}
	m.NextPayload = next
	return out, nil
}

// Find returns the first payload of type t in ps, or nil.
func Find(ps []Payload, t PayloadType) Payload {
	for _, p := range ps {
		if p.Type() == t {
			return p
		}
	}
	return nil
}

// FindNotify returns the first notify of type t in ps, or nil.
func FindNotify(ps []Payload, t NotifyType) *Notify {
	for _, p := range ps {
		if n, ok := p.(*Notify); ok && n.NotifyType == t {
			return n
		}
	}
	return nil
}

// Encrypted returns the message's SK payload and the octets that precede
// its body (the IKE header, any unprotected payloads and the SK generic
// header): the associated data of RFC 5282 §5.1 and the start of the span
// the ICV covers (RFC 7296 §3.14). It returns nil if m has no SK payload.
func (m *Message) Encrypted() (sk *Encrypted, prefix []byte) {
	if len(m.Payloads) == 0 {
		return nil, nil
	}
	sk, ok := m.Payloads[len(m.Payloads)-1].(*Encrypted)
	if !ok || len(m.Raw) < len(sk.Body) {
		return nil, nil
	}
	return sk, m.Raw[:len(m.Raw)-len(sk.Body)]
}

// Fragment returns the message's SKF payload and the octets that precede
// its IV (IKE header, unprotected payloads, SKF header with Fragment Number
// and Total Fragments: the associated data of RFC 7383 §2.5.3).
func (m *Message) Fragment() (skf *Fragment, prefix []byte) {
	if len(m.Payloads) == 0 {
		return nil, nil
	}
	skf, ok := m.Payloads[len(m.Payloads)-1].(*Fragment)
	if !ok || len(m.Raw) < len(skf.Body) {
		return nil, nil
	}
	return skf, m.Raw[:len(m.Raw)-len(skf.Body)]
}

// Sealer protects the plaintext of an SK or SKF payload with the keys of
// one direction of an IKE SA (package ike/suite implements it).
type Sealer interface {
	// SealedLen returns the length of the payload body (IV, ciphertext
	// with padding and Pad Length, ICV) for n octets of plaintext.
	SealedLen(n int) int
	// Seal appends the body to msg, which holds the message so far with
	// every length already final: the associated data for AEAD ciphers and
	// the start of the span the ICV covers otherwise. It must append exactly
	// SealedLen(len(plaintext)) octets.
	Seal(msg, plaintext []byte) ([]byte, error)
}

// EncodeEncrypted encodes a protected message: the header h, then an SK
// payload holding inner. It sets nothing in h but returns the octets.
func EncodeEncrypted(h *Header, inner []Payload, s Sealer) ([]byte, error) {
	first, plain, err := EncodePayloads(inner)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	bodyLen := s.SealedLen(len(plain))
	total := HeaderLen + genericHeaderLen + bodyLen
	if genericHeaderLen+bodyLen > 0xffff {
		return nil, ErrTooLarge
	}
	out := h.append(make([]byte, 0, total), PayloadSK, total)
	out = append(out, byte(first), 0, byte((genericHeaderLen+bodyLen)>>8), byte(genericHeaderLen+bodyLen))
	out, err = s.Seal(out, plain)
	if err != nil {
		return nil, err
	}
	if len(out) != total {
		return nil, ErrLength
	}
	return out, nil
}

// skfHeaderLen is the SKF generic header plus Fragment Number and Total.
const skfHeaderLen = genericHeaderLen + 4

// MaxFragments bounds the fragments of one message, sent or reassembled.
const MaxFragments = 64

// EncodeFragments encodes inner as one or more messages whose length does not
// exceed maxLen octets each: a single SK message if it fits, else SKF
// fragments (RFC 7383 §2.5) of equal plaintext size.
func EncodeFragments(h *Header, inner []Payload, s Sealer, maxLen int) ([][]byte, error) {
	first, plain, err := EncodePayloads(inner)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	if HeaderLen+genericHeaderLen+s.SealedLen(len(plain)) <= maxLen {
		msg, err := EncodeEncrypted(h, inner, s)
		if err != nil {
			return nil, err
		}
		return [][]byte{msg}, nil
	}
	// Largest plaintext chunk whose fragment fits maxLen.
	chunk := maxLen - HeaderLen - skfHeaderLen
	for chunk > 0 && HeaderLen+skfHeaderLen+s.SealedLen(chunk) > maxLen {
		chunk--
	}
	if chunk <= 0 {
		return nil, ErrTooLarge
	}
	total := (len(plain) + chunk - 1) / chunk
	if total > MaxFragments {
		return nil, ErrTooLarge
	}
	out := make([][]byte, 0, total)
	for i := 0; i < total; i++ {
		part := plain[i*chunk : min(len(plain), (i+1)*chunk)]
		bodyLen := s.SealedLen(len(part))
		n := HeaderLen + skfHeaderLen + bodyLen
		inner := PayloadNone
		if i == 0 {
			inner = first
		}
		b := h.append(make([]byte, 0, n), PayloadSKF, n)
		plen := skfHeaderLen + bodyLen
		b = append(b, byte(inner), 0, byte(plen>>8), byte(plen), byte((i+1)>>8), byte(i+1), byte(total>>8), byte(total))
		if b, err = s.Seal(b, part); err != nil {
			return nil, err
		}
		if len(b) != n {
			return nil, ErrLength
		}
		out = append(out, b)
	}
	return out, nil
}

// Summary lists payload types the way strongSwan logs them, for example
// "SA KE No N(NAT_DETECTION_SOURCE_IP) V". It never prints payload contents.
func Summary(ps []Payload) string {
	var b []byte
	for i, p := range ps {
		if i > 0 {
			b = append(b, ' ')
		}
		switch p := p.(type) {
		case *Notify:
			b = append(b, "N("...)
			b = append(b, p.NotifyType.String()...)
			b = append(b, ')')
		case *Delete:
			b = append(b, "D("...)
			b = append(b, p.Protocol.String()...)
			b = append(b, ')')
		case *Fragment:
			b = fmt.Appendf(b, "SKF(%d/%d)", p.Number, p.Total)
		default:
			b = append(b, p.Type().String()...)
		}
	}
	return string(b)
}

func (m *Message) String() string {
	return fmt.Sprintf("%v [ %s ]", &m.Header, Summary(m.Payloads))
}
