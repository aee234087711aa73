package auth

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/mpsa-vpn/mpsa/ike/suite"
)

// Local is how this side authenticates itself: its identity and either a
// pre-shared key or a private key with its certificate chain.
//
// Local holds secrets: String prints no key material.
type Local struct {
	ID ID
	// PSK authenticates with method 2. When nil and Signer is nil, the
	// peer's Peer.PSK is used (one key per peer, as a hub keeps it).
	PSK []byte
	// Signer authenticates with a signature (RFC 7427 method 14, or the
	// legacy ECDSA methods when the peer announced no hash algorithms).
	Signer crypto.Signer
	// Certs is the chain sent in CERT payloads: end-entity first, then
	// intermediates. Required with Signer.
	Certs []*x509.Certificate
	// RSAPSS selects RSASSA-PSS for RSA keys.
	RSAPSS bool
}

// Validate checks that l is usable: an identity, and a signer whose key
// matches the end-entity certificate, or no signer (PSK).
func (l *Local) Validate() error {
	if l.ID.IsZero() {
		return errors.New("auth: local identity missing")
	}
	if l.Signer == nil {
		if l.PSK != nil && len(l.PSK) < MinPSKLen {
			return fmt.Errorf("auth: pre-shared key shorter than %d octets", MinPSKLen)
		}
		return nil
	}
	if len(l.Certs) == 0 {
		return errors.New("auth: signature authentication needs a certificate")
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pub, ok := l.Signer.Public().(equaler)
	if !ok || !pub.Equal(l.Certs[0].PublicKey) {
		return errors.New("auth: private key does not match the certificate")
	}
	if err := BindsIdentity(l.Certs[0], l.ID); err != nil {
		return fmt.Errorf("auth: local identity: %w", err)
	}
	return nil
}

// UsesSignature reports whether l authenticates with a certificate (and so
// sends CERT payloads and wants the peer's SIGNATURE_HASH_ALGORITHMS).
func (l *Local) UsesSignature() bool { return l.Signer != nil }

// CertPayloads returns the DER certificates to send, one CERT payload each.
func (l *Local) CertPayloads() [][]byte {
	out := make([][]byte, len(l.Certs))
	for i, c := range l.Certs {
		out[i] = c.Raw
	}
	return out
}

// Authenticate computes this side's AUTH payload over octets (SignedOctets
// for this side: our IKE_SA_INIT message, the peer's nonce, our SK_p and our
// ID). peer is what the lookup returned for the other side (may be
// nil); peerHashes is the peer's SIGNATURE_HASH_ALGORITHMS (nil if none).
func (l *Local) Authenticate(prf suite.PRF, octets []byte, peer *Peer, peerHashes []HashAlg, rand io.Reader) (Method, []byte, error) {
	if l.Signer != nil {
		return Sign(l.Signer, octets, SignOptions{PeerHashes: peerHashes, RSAPSS: l.RSAPSS}, rand)
	}
	psk := l.PSK
	if psk == nil && peer != nil {
		psk = peer.PSK
	}
	if len(psk) == 0 {
		return 0, nil, errors.New("auth: no credential to authenticate with")
	}
	return MethodPSK, PSKAuth(prf, psk, octets), nil
}

// String never prints key material (value receiver: %v of a Local or a
// *Local is safe).
func (l Local) String() string {
	kind := "psk"
	if l.Signer != nil {
		kind = "signature"
	} else if l.PSK == nil {
		kind = "peer psk"
	}
	return fmt.Sprintf("local %v (%s)", l.ID, kind)
}

// GoString never prints key material either.
func (l Local) GoString() string { return l.String() }

// Peer is how a peer must authenticate, as the lookup hook returns it for
// the peer's identity.
//
// Peer holds secrets: String prints no key material.
type Peer struct {
	// PSK, when non-nil, allows method 2 with this key.
	PSK []byte
	// CAs, when non-nil, allows signature methods with a certificate chain
	// to one of these CAs that is bound to the peer's identity.
	CAs *CAPool
	// Tag is opaque to IKE and handed back with the SA's events (the hub
	// puts the CPE's group or database record here).
	Tag any
}

// Verify checks the peer's AUTH payload: method and authData from it,
// octets from SignedOctets for the peer's side, certs the DER data of its
// CERT payloads (X.509 encoding only), id its IDi/IDr, now the validation
// time. Every failure wraps ErrAuthFailed.
func (p *Peer) Verify(prf suite.PRF, id ID, method Method, authData, octets []byte, certs [][]byte, now time.Time) error {
	if method == MethodPSK {
		if p.PSK == nil {
			return fmt.Errorf("%w: %v may not use a pre-shared key", ErrAuthFailed, id)
		}
		return VerifyPSK(prf, p.PSK, octets, authData)
	}
	if p.CAs == nil {
		return fmt.Errorf("%w: %v may not use %v", ErrAuthFailed, id, method)
	}
	leaf, err := p.CAs.VerifyChain(certs, id, now)
	if err != nil {
		return err
	}
	return VerifySignature(leaf.PublicKey, method, octets, authData)
}

// String never prints key material (value receiver: %v of a Peer or a
// *Peer is safe).
func (p Peer) String() string {
	return fmt.Sprintf("peer (psk %t, cas %t)", p.PSK != nil, p.CAs != nil)
}

// GoString never prints key material either.
func (p Peer) GoString() string { return p.String() }

// ErrUnknownPeer is returned by a Lookup for an identity it does not
// authorise; the exchange ends with AUTHENTICATION_FAILED.
var ErrUnknownPeer = errors.New("auth: unknown peer identity")

// Lookup returns how the peer claiming id must authenticate. The hub plugs
// in its CPE database here; it is called once per IKE_AUTH on the SA's
// goroutine, so it should answer quickly or honour ctx. Return an error
// wrapping ErrUnknownPeer to refuse an identity.
type Lookup func(ctx context.Context, id ID) (*Peer, error)

// Rule pairs a pattern with the credentials of the peers it matches.
type Rule struct {
	Pattern Pattern
	Peer    *Peer
}

// Static returns a Lookup over fixed rules: the first rule whose pattern
// matches wins.
func Static(rules ...Rule) Lookup {
	return func(_ context.Context, id ID) (*Peer, error) {
		for _, r := range rules {
			if r.Pattern.Match(id) {
				return r.Peer, nil
			}
		}
		return nil, fmt.Errorf("%w: %v", ErrUnknownPeer, id)
	}
}
