package wire

import "golang.org/x/crypto/cryptobyte"

// Nonce is the Ni/Nr payload (RFC 7296 §3.9): 16 to 256 random octets,
// kept as octets (a nonce may begin with zeros).
type Nonce struct {
	Data []byte
}

// Nonce lengths allowed by RFC 7296 §3.9.
const (
	MinNonceLen = 16
	MaxNonceLen = 256
)

// Type implements Payload.
func (p *Nonce) Type() PayloadType { return PayloadNonce }

func (p *Nonce) marshal(b *builder) { b.AddBytes(p.Data) }

func (p *Nonce) unmarshal(s cryptobyte.String) error {
	p.Data = s
	return nil
}

func (p *Nonce) verify() error {
	if len(p.Data) < MinNonceLen || len(p.Data) > MaxNonceLen {
		return syntaxError("nonce of %d octets", len(p.Data))
	}
	return nil
}
