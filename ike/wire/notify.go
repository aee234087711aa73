package wire

import "golang.org/x/crypto/cryptobyte"

// Notify is the Notify payload (RFC 7296 §3.10):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Protocol ID  |   SPI Size    |      Notify Message Type      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                Security Parameter Index (SPI)                 ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                       Notification Data                       ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Extension packages encode and decode only Data of their own types.
type Notify struct {
	Protocol   ProtocolID
	SPI        []byte
	NotifyType NotifyType
	Data       []byte
}

// Type implements Payload.
func (p *Notify) Type() PayloadType { return PayloadN }

func (p *Notify) marshal(b *builder) {
	if len(p.SPI) > 255 {
		b.SetError(ErrTooLarge)
		return
	}
	b.AddUint8(uint8(p.Protocol))
	b.AddUint8(uint8(len(p.SPI)))
	b.AddUint16(uint16(p.NotifyType))
	b.AddBytes(p.SPI)
	b.AddBytes(p.Data)
}

func (p *Notify) unmarshal(s cryptobyte.String) error {
	var proto, spiSize uint8
	var t uint16
	if !s.ReadUint8(&proto) || !s.ReadUint8(&spiSize) || !s.ReadUint16(&t) ||
		!s.ReadBytes(&p.SPI, int(spiSize)) {
		return syntaxError("truncated notify")
	}
	p.Protocol, p.NotifyType, p.Data = ProtocolID(proto), NotifyType(t), s
	return nil
}

func (p *Notify) verify() error {
	// strongSwan rejects other protocol IDs too; RFC 7296 §3.10 allows 0..3.
	if p.Protocol > ProtoESP {
		return syntaxError("notify %v with protocol %v", p.NotifyType, p.Protocol)
	}
	return nil
}
