package wire

import "golang.org/x/crypto/cryptobyte"

// ID is the IDi or IDr payload (RFC 7296 §3.5):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   ID Type     |                 RESERVED                      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                   Identification Data                         ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Responder selects IDr over IDi. The AUTH computation signs the body of
// this payload (ID Type, RESERVED and data), see Body.
type ID struct {
	Responder bool
	IDType    IDType
	Data      []byte
}

// Type implements Payload.
func (p *ID) Type() PayloadType {
	if p.Responder {
		return PayloadIDr
	}
	return PayloadIDi
}

func (p *ID) marshal(b *builder) {
	b.AddUint8(uint8(p.IDType))
	b.AddBytes([]byte{0, 0, 0})
	b.AddBytes(p.Data)
}

func (p *ID) unmarshal(s cryptobyte.String) error {
	var t uint8
	if !s.ReadUint8(&t) || !s.Skip(3) {
		return syntaxError("truncated ID")
	}
	p.IDType, p.Data = IDType(t), s
	return nil
}

// Body returns the payload body without the generic header, RestOfInitIDPayload
// / RestOfRespIDPayload in RFC 7296 §2.15.
func (p *ID) Body() []byte {
	b := make([]byte, 4, 4+len(p.Data))
	b[0] = byte(p.IDType)
	return append(b, p.Data...)
}
