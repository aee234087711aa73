package wire

import (
	"encoding/binary"

	"golang.org/x/crypto/cryptobyte"
)

// Delete is the Delete payload (RFC 7296 §3.11):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Protocol ID   |   SPI Size    |          Num of SPIs          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~               Security Parameter Index(es) (SPI)              ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Deleting the IKE SA (ProtoIKE) carries no SPIs; ESP and AH carry 4-octet
// SPIs, which the decoder enforces.
type Delete struct {
	Protocol ProtocolID
	SPIs     []uint32
}

// Type implements Payload.
func (p *Delete) Type() PayloadType { return PayloadD }

func (p *Delete) marshal(b *builder) {
	if len(p.SPIs) > 0xffff {
		b.SetError(ErrTooLarge)
		return
	}
	b.AddUint8(uint8(p.Protocol))
	if p.Protocol == ProtoIKE {
		b.AddUint8(0)
	} else {
		b.AddUint8(4)
	}
	b.AddUint16(uint16(len(p.SPIs)))
	for _, spi := range p.SPIs {
		b.AddUint32(spi)
	}
}

func (p *Delete) unmarshal(s cryptobyte.String) error {
	var proto, spiSize uint8
	var n uint16
	if !s.ReadUint8(&proto) || !s.ReadUint8(&spiSize) || !s.ReadUint16(&n) {
		return syntaxError("truncated delete")
	}
	p.Protocol = ProtocolID(proto)
	switch {
	case p.Protocol == ProtoIKE && spiSize == 0 && n == 0 && s.Empty():
		p.SPIs = nil
		return nil
	case (p.Protocol == ProtoESP || p.Protocol == ProtoAH) && spiSize == 4 && len(s) == 4*int(n):
		p.SPIs = make([]uint32, n)
		for i := range p.SPIs {
			p.SPIs[i] = binary.BigEndian.Uint32(s[4*i:])
		}
		return nil
	}
	return syntaxError("delete of %v with %d SPIs of %d octets in %d octets", p.Protocol, n, spiSize, len(s))
}
