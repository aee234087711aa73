package wire

import "golang.org/x/crypto/cryptobyte"

// Encrypted is the Encrypted and Authenticated payload SK (RFC 7296 §3.14).
// Body is everything after the generic header: IV, ciphertext (with padding
// and Pad Length inside) and ICV, as the negotiated transform lays them out.
// Its Next Payload field names the first payload inside, Inner. SK is always
// the last payload of a message.
type Encrypted struct {
	Inner PayloadType
	Body  []byte
}

// Type implements Payload.
func (p *Encrypted) Type() PayloadType { return PayloadSK }

func (p *Encrypted) marshal(b *builder) { b.AddBytes(p.Body) }

func (p *Encrypted) unmarshal(s cryptobyte.String) error {
	p.Body = s
	return nil
}

// Fragment is the Encrypted Fragment payload SKF (RFC 7383 §2.5):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Next Payload  |C|  RESERVED   |         Payload Length        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|        Fragment Number        |        Total Fragments        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                     Initialization Vector                     |
//	~                      Encrypted content                        ~
//	~                    Integrity Checksum Data                    ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Inner is the first inner payload type in fragment 1 and zero in the
// others. Numbers count from 1.
type Fragment struct {
	Inner  PayloadType
	Number uint16
	Total  uint16
	Body   []byte
}

// Type implements Payload.
func (p *Fragment) Type() PayloadType { return PayloadSKF }

func (p *Fragment) marshal(b *builder) {
	b.AddUint16(p.Number)
	b.AddUint16(p.Total)
	b.AddBytes(p.Body)
}

func (p *Fragment) unmarshal(s cryptobyte.String) error {
	if !s.ReadUint16(&p.Number) || !s.ReadUint16(&p.Total) {
		return syntaxError("truncated SKF")
	}
	if p.Number == 0 || p.Number > p.Total {
		return syntaxError("fragment %d of %d", p.Number, p.Total)
	}
	p.Body = s
	return nil
}
