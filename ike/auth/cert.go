package auth

import (
	"crypto/sha1"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// CertX509Signature is the Cert Encoding of a DER X.509 certificate in CERT,
// and of a list of CA key hashes in CERTREQ (RFC 7296 §3.6, §3.7).
const CertX509Signature uint8 = 4

// Bounds on certificate input from the network.
const (
	MaxChainLen = 8         // CERT payloads accepted per peer (leaf + intermediates)
	MaxCertLen  = 16 * 1024 // octets per DER certificate
	maxCAHashes = 1024      // key hashes per CERTREQ
)

// KeyHash is the SHA-1 hash of a certificate's SubjectPublicKeyInfo, the way
// CERTREQ names a trusted CA (RFC 7296 §3.7).
type KeyHash [sha1.Size]byte

// CAKeyHash returns the CERTREQ hash of c's public key.
func CAKeyHash(c *x509.Certificate) KeyHash { return sha1.Sum(c.RawSubjectPublicKeyInfo) }

// AppendCertReq appends the Certification Authority data of a CERTREQ
// payload (encoding CertX509Signature): the hashes concatenated.
func AppendCertReq(b []byte, hashes []KeyHash) []byte {
	for _, h := range hashes {
		b = append(b, h[:]...)
	}
	return b
}

// ParseCertReq splits CERTREQ Certification Authority data into key hashes.
// Empty data (a CERTREQ that names no CA) gives no hashes and no error.
func ParseCertReq(data []byte) ([]KeyHash, error) {
	if len(data)%sha1.Size != 0 {
		return nil, fmt.Errorf("auth: CERTREQ data of %d octets is not a list of SHA-1 hashes", len(data))
	}
	if len(data)/sha1.Size > maxCAHashes {
		return nil, fmt.Errorf("auth: CERTREQ with %d hashes, at most %d", len(data)/sha1.Size, maxCAHashes)
	}
	out := make([]KeyHash, len(data)/sha1.Size)
	for i := range out {
		copy(out[i][:], data[i*sha1.Size:])
	}
	return out, nil
}

// CAPool is a set of trusted CA certificates that peer chains must lead to.
// It is immutable once built and safe for concurrent use.
type CAPool struct {
	roots  *x509.CertPool
	certs  []*x509.Certificate
	hashes []KeyHash
}

// NewCAPool builds a pool from CA certificates (BasicConstraints cA = TRUE).
func NewCAPool(cas ...*x509.Certificate) (*CAPool, error) {
	if len(cas) == 0 {
		return nil, errors.New("auth: empty CA pool")
	}
	p := &CAPool{roots: x509.NewCertPool()}
	for _, c := range cas {
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, fmt.Errorf("auth: %q is not a CA certificate", c.Subject)
		}
		p.roots.AddCert(c)
		p.certs = append(p.certs, c)
		if h := CAKeyHash(c); !slices.Contains(p.hashes, h) {
			p.hashes = append(p.hashes, h)
		}
	}
	return p, nil
}

// KeyHashes returns the pool's CA key hashes, for our CERTREQ payloads.
func (p *CAPool) KeyHashes() []KeyHash { return slices.Clone(p.hashes) }

// Trusts reports whether a CERTREQ hash names one of the pool's CAs, so a
// side can decide which chain to send.
func (p *CAPool) Trusts(h KeyHash) bool { return slices.Contains(p.hashes, h) }

// VerifyChain parses the peer's CERT payloads (DER, end-entity first, then
// intermediates in any order), validates the chain to one of the pool's CAs
// at time now (signatures, validity periods, CA constraints), checks that the
// end-entity key may sign (KeyUsage digitalSignature or nonRepudiation when
// the extension is present) and that id is bound to the certificate
// (BindsIdentity). It returns the end-entity certificate, whose public key
// verifies AUTH. Failures wrap ErrAuthFailed.
func (p *CAPool) VerifyChain(certs [][]byte, id ID, now time.Time) (*x509.Certificate, error) {
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no certificate", ErrAuthFailed)
	}
	if len(certs) > MaxChainLen {
		return nil, fmt.Errorf("%w: %d certificates, at most %d", ErrAuthFailed, len(certs), MaxChainLen)
	}
	parsed := make([]*x509.Certificate, len(certs))
	for i, der := range certs {
		if len(der) > MaxCertLen {
			return nil, fmt.Errorf("%w: certificate of %d octets", ErrAuthFailed, len(der))
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrAuthFailed, err)
		}
		parsed[i] = c
	}
	leaf := parsed[0]
	inter := x509.NewCertPool()
	for _, c := range parsed[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         p.roots,
		Intermediates: inter,
		CurrentTime:   now,
		// IKE does not require an EKU (RFC 4945 §5.1.3.12).
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: certificate %q: %v", ErrAuthFailed, leaf.Subject, err)
	}
	if leaf.KeyUsage != 0 && leaf.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return nil, fmt.Errorf("%w: certificate %q: key usage forbids signatures", ErrAuthFailed, leaf.Subject)
	}
	if err := BindsIdentity(leaf, id); err != nil {
		return nil, err
	}
	return leaf, nil
}

// BindsIdentity checks that c vouches for id (RFC 4945 §3.1): an FQDN must be
// a subjectAltName dNSName, an email address an rfc822Name, an IP address an
// iPAddress; a DN must equal the subject; a KEY_ID must equal the subject key
// identifier. Errors wrap ErrAuthFailed.
func BindsIdentity(c *x509.Certificate, id ID) error {
	ok := false
	switch id.Type {
	case IDFQDN:
		ok = slices.ContainsFunc(c.DNSNames, func(n string) bool { return strings.EqualFold(n, id.data) })
	case IDRFC822:
		ok = slices.Contains(c.EmailAddresses, id.data)
	case IDIPv4, IDIPv6:
		a, _ := id.Addr()
		for _, ip := range c.IPAddresses {
			if b, valid := netipFromIP(ip); valid && b == a {
				ok = true
			}
		}
	case IDDN:
		ok = id.Equal(ID{Type: IDDN, data: string(c.RawSubject)})
	case IDKeyID:
		ok = len(c.SubjectKeyId) > 0 && string(c.SubjectKeyId) == id.data
	}
	if !ok {
		return fmt.Errorf("%w: identity %v is not in certificate %q", ErrAuthFailed, id, c.Subject)
	}
	return nil
}

// CertID returns the subject DN of c as an identity, the default IDi/IDr of a
// side that authenticates with c.
func CertID(c *x509.Certificate) (ID, error) { return NewID(IDDN, c.RawSubject) }

func netipFromIP(ip []byte) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	return a.Unmap(), ok
}
