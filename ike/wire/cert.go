package wire

import "golang.org/x/crypto/cryptobyte"

// Cert is the Certificate payload (RFC 7296 §3.6): an encoding and its data
// (a DER certificate for CertX509Signature).
type Cert struct {
	Encoding CertEncoding
	Data     []byte
}

// Type implements Payload.
func (p *Cert) Type() PayloadType { return PayloadCERT }

func (p *Cert) marshal(b *builder) {
	b.AddUint8(uint8(p.Encoding))
	b.AddBytes(p.Data)
}

func (p *Cert) unmarshal(s cryptobyte.String) error {
	var e uint8
	if !s.ReadUint8(&e) {
		return syntaxError("truncated CERT")
	}
	p.Encoding, p.Data = CertEncoding(e), s
	return nil
}

// CertReq is the Certificate Request payload (RFC 7296 §3.7). For
// CertX509Signature, Data is a concatenation of SHA-1 hashes of the Subject
// Public Key Info of trusted CAs.
type CertReq struct {
	Encoding CertEncoding
	Data     []byte
}

// Type implements Payload.
func (p *CertReq) Type() PayloadType { return PayloadCERTREQ }

func (p *CertReq) marshal(b *builder) {
	b.AddUint8(uint8(p.Encoding))
	b.AddBytes(p.Data)
}

func (p *CertReq) unmarshal(s cryptobyte.String) error {
	var e uint8
	if !s.ReadUint8(&e) {
		return syntaxError("truncated CERTREQ")
	}
	p.Encoding, p.Data = CertEncoding(e), s
	return nil
}
