package wire

import (
	"golang.org/x/crypto/cryptobyte"
)

// Payload is one IKEv2 payload. Its generic header (RFC 7296 §3.2) is
// written and read by the message codec:
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Next Payload  |C|  RESERVED   |         Payload Length        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Payload Length includes these four octets. The payload types of this
// package implement it; the set is closed.
type Payload interface {
	// Type is the payload type announced in the previous Next Payload field.
	Type() PayloadType
	// marshal writes the body (after the generic header).
	marshal(b *builder)
	// unmarshal reads the whole body; it returns a *NotifyError on bad input.
	unmarshal(body cryptobyte.String) error
}

// genericHeaderLen is the length of the generic payload header.
const genericHeaderLen = 4

// flagCritical is the critical bit of the generic payload header.
const flagCritical = 0x80

// MaxPayloads bounds the number of payloads decoded from one chain, so that a
// datagram of tiny payloads cannot make the decoder allocate without limit.
const MaxPayloads = 64

// Unknown is a payload whose type this codec does not implement, kept so
// that a message can be re-encoded. Decoding fails instead when its critical
// bit is set (UNSUPPORTED_CRITICAL_PAYLOAD).
type Unknown struct {
	PType    PayloadType
	Critical bool
	Body     []byte
}

// Type implements Payload.
func (p *Unknown) Type() PayloadType { return p.PType }

func (p *Unknown) marshal(b *builder) { b.AddBytes(p.Body) }

func (p *Unknown) unmarshal(body cryptobyte.String) error {
	p.Body = body
	return nil
}

// addLength16 writes a 16-bit length that counts hdr octets (the length
// field and what precedes it in its header, already written but for the
// length) plus what f writes, as IKE's substructure lengths do. The length
// is filled in once f is done.
func addLength16(b *builder, hdr int, f func(*builder)) {
	at := len(b.buf)
	b.AddUint16(0)
	f(b)
	n := hdr + len(b.buf) - at - 2
	if n > 0xffff {
		b.SetError(ErrTooLarge)
		return
	}
	b.buf[at], b.buf[at+1] = byte(n>>8), byte(n)
}

// addPayload writes the generic header with next as its Next Payload, then
// p's body.
func addPayload(b *builder, p Payload, next PayloadType) {
	var flags uint8
	if u, ok := p.(*Unknown); ok && u.Critical {
		flags = flagCritical
	}
	b.AddUint8(uint8(next))
	b.AddUint8(flags)
	addLength16(b, genericHeaderLen, p.marshal)
}

// readGeneric reads one generic payload header and its body (RFC 7296 §3.2).
func readGeneric(s *cryptobyte.String) (next PayloadType, critical bool, body cryptobyte.String, err error) {
	var n, flags uint8
	var plen uint16
	if !s.ReadUint8(&n) || !s.ReadUint8(&flags) || !s.ReadUint16(&plen) {
		return 0, false, nil, syntaxError("truncated payload header")
	}
	if plen < genericHeaderLen || !s.ReadBytes((*[]byte)(&body), int(plen)-genericHeaderLen) {
		return 0, false, nil, syntaxError("payload length %d does not fit", plen)
	}
	return PayloadType(n), flags&flagCritical != 0, body, nil
}

// newPayload returns an empty payload of type t, or nil if t is not
// implemented.
func newPayload(t PayloadType) Payload {
	switch t {
	case PayloadSA:
		return new(SA)
	case PayloadKE:
		return new(KE)
	case PayloadIDi:
		return &ID{}
	case PayloadIDr:
		return &ID{Responder: true}
	case PayloadCERT:
		return new(Cert)
	case PayloadCERTREQ:
		return new(CertReq)
	case PayloadAUTH:
		return new(Auth)
	case PayloadNonce:
		return new(Nonce)
	case PayloadN:
		return new(Notify)
	case PayloadD:
		return new(Delete)
	case PayloadV:
		return new(Vendor)
	case PayloadTSi:
		return &TS{}
	case PayloadTSr:
		return &TS{Responder: true}
	case PayloadCP:
		return new(CP)
	case PayloadSK:
		return new(Encrypted)
	case PayloadSKF:
		return new(Fragment)
	}
	return nil
}

// decodeChain reads the payload chain that starts with type first and fills
// the whole of s. With inner set (the plaintext of SK/SKF) an SK or SKF
// payload is a syntax error; otherwise SK or SKF must be the last payload and
// its Next Payload names the first payload inside it.
func decodeChain(first PayloadType, s cryptobyte.String, inner bool) ([]Payload, error) {
	var out []Payload
	next := first
	for next != PayloadNone {
		if len(out) == MaxPayloads {
			return nil, syntaxError("more than %d payloads", MaxPayloads)
		}
		t := next
		n, critical, body, err := readGeneric(&s)
		if err != nil {
			return nil, err
		}
		next = n
		p := newPayload(t)
		if p == nil {
			if critical {
				return nil, &NotifyError{Type: NotifyUnsupportedCriticalPayload, Data: []byte{byte(t)},
					msg: "critical payload " + t.String()}
			}
			p = &Unknown{PType: t}
		}
		if err := p.unmarshal(body); err != nil {
			return nil, err
		}
		switch p := p.(type) {
		case *Encrypted:
			if inner {
				return nil, syntaxError("SK inside SK")
			}
			p.Inner, next = next, PayloadNone
		case *Fragment:
			if inner {
				return nil, syntaxError("SKF inside SK")
			}
			p.Inner, next = next, PayloadNone
		}
		out = append(out, p)
	}
	if !s.Empty() {
		return nil, syntaxError("%d octets after the last payload", len(s))
	}
	return out, nil
}

// DecodePayloads decodes a payload chain that is not a whole message: the
// plaintext of an SK payload (RFC 7296 §3.14) without its padding, whose
// first payload has type first.
func DecodePayloads(first PayloadType, b []byte) ([]Payload, error) {
	return decodeChain(first, b, true)
}

// addChain writes payloads as a chain. The Next Payload of the last one is
// last (PayloadNone, or for SK the first inner payload).
func addChain(b *builder, ps []Payload) {
	for i, p := range ps {
		next := PayloadNone
		if i+1 < len(ps) {
			next = ps[i+1].Type()
		}
		switch p := p.(type) {
		case *Encrypted:
			next = p.Inner
		case *Fragment:
			next = p.Inner
		}
		addPayload(b, p, next)
	}
}

// EncodePayloads encodes ps as a chain, for the plaintext of an SK payload;
// the caller puts the returned first type into the SK header.
func EncodePayloads(ps []Payload) (first PayloadType, b []byte, err error) {
	for _, p := range ps {
		if t := p.Type(); t == PayloadSK || t == PayloadSKF {
			return 0, nil, syntaxError("SK inside SK")
		}
	}
	bld := newBuilder(chainSizeHint)
	addChain(bld, ps)
	b, err = bld.Bytes()
	if err != nil {
		return 0, nil, err
	}
	if len(ps) > 0 {
		first = ps[0].Type()
	}
	return first, b, nil
}
