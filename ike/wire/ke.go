package wire

import (
	"golang.org/x/crypto/cryptobyte"

	"github.com/mpsa-vpn/mpsa/transform"
)

// KE is the Key Exchange payload (RFC 7296 §3.4):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   Diffie-Hellman Group Num    |           RESERVED            |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                       Key Exchange Data                       ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type KE struct {
	Group transform.DH
	Data  []byte
}

// Type implements Payload.
func (p *KE) Type() PayloadType { return PayloadKE }

func (p *KE) marshal(b *builder) {
	b.AddUint16(uint16(p.Group))
	b.AddUint16(0)
	b.AddBytes(p.Data)
}

func (p *KE) unmarshal(s cryptobyte.String) error {
	var g, res uint16
	if !s.ReadUint16(&g) || !s.ReadUint16(&res) {
		return syntaxError("truncated KE")
	}
	p.Group, p.Data = transform.DH(g), s
	return nil
}
