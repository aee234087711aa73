package wire

import "golang.org/x/crypto/cryptobyte"

// Vendor is the Vendor ID payload (RFC 7296 §3.12): opaque octets, usually a
// hash naming an implementation or an extension.
type Vendor struct {
	Data []byte
}

// Type implements Payload.
func (p *Vendor) Type() PayloadType { return PayloadV }

func (p *Vendor) marshal(b *builder) { b.AddBytes(p.Data) }

func (p *Vendor) unmarshal(s cryptobyte.String) error {
	p.Data = s
	return nil
}
