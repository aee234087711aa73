package wire

import "golang.org/x/crypto/cryptobyte"

// Auth is the Authentication payload (RFC 7296 §3.8):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Auth Method   |                RESERVED                       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                      Authentication Data                      ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// For AuthDigitalSignature, Data starts with the RFC 7427 ASN.1 length and
// AlgorithmIdentifier; package ike/auth reads it.
type Auth struct {
	Method AuthMethod
	Data   []byte
}

// Type implements Payload.
func (p *Auth) Type() PayloadType { return PayloadAUTH }

func (p *Auth) marshal(b *builder) {
	b.AddUint8(uint8(p.Method))
	b.AddBytes([]byte{0, 0, 0})
	b.AddBytes(p.Data)
}

func (p *Auth) unmarshal(s cryptobyte.String) error {
	var m uint8
	if !s.ReadUint8(&m) || !s.Skip(3) {
		return syntaxError("truncated AUTH")
	}
	p.Method, p.Data = AuthMethod(m), s
	return nil
}
