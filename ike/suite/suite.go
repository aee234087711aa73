package suite

import (
	"errors"
	"fmt"

	"github.com/mpsa-vpn/mpsa/transform"
)

// Errors callers test for.
var (
	// ErrIntegrity means an SK payload failed its integrity check (ICV or
	// AEAD tag mismatch) or could not be decrypted into a well-formed
	// plaintext. RFC 7296 §2.21: such a message is dropped silently.
	ErrIntegrity = errors.New("suite: SK payload integrity check failed")
	// ErrInvalidKE means a peer's Key Exchange data is not a valid public
	// value of the group (RFC 7296 §3.4, RFC 6989): answer INVALID_SYNTAX
	// in IKE_SA_INIT or fail the exchange.
	ErrInvalidKE = errors.New("suite: invalid key exchange public value")
	// ErrUnsupported means a transform or combination this package does not
	// implement.
	ErrUnsupported = errors.New("suite: unsupported transform")
)

// Suite is the transform set negotiated for one IKE SA (RFC 7296 §3.3): an
// encryption algorithm with its key length, a PRF, an integrity algorithm
// (transform.IntegNone with AEAD ciphers) and a Diffie-Hellman group. The zero
// value is not a valid suite.
type Suite struct {
	Encr    transform.Encr
	KeyBits uint16 // Key Length attribute in bits; 0 for ChaCha20-Poly1305
	PRF     transform.PRF
	Integ   transform.Integ
	DH      transform.DH
}

// Validate checks that s is a combination this package implements.
func (s Suite) Validate() error {
	if _, err := s.Encr.KeyLen(s.KeyBits); err != nil {
		return fmt.Errorf("suite: %w: %v", ErrUnsupported, err)
	}
	if s.Encr.IsAEAD() != (s.Integ == transform.IntegNone) {
		if s.Encr.IsAEAD() {
			return fmt.Errorf("suite: %w: %v is AEAD and takes no integrity transform, got %v", ErrUnsupported, s.Encr, s.Integ)
		}
		return fmt.Errorf("suite: %w: %v needs an integrity transform", ErrUnsupported, s.Encr)
	}
	if _, err := s.Integ.KeyLen(); err != nil {
		return fmt.Errorf("suite: %w: %v", ErrUnsupported, err)
	}
	if _, err := s.PRF.KeyLen(); err != nil {
		return fmt.Errorf("suite: %w: %v", ErrUnsupported, err)
	}
	if _, err := DHPublicLen(s.DH); err != nil {
		return err
	}
	return nil
}

// KeyLens returns the sizes in octets of the SK_e* keys (with the 4-octet
// salt for AEAD ciphers, RFC 5282 §7.1), of the SK_a* keys (0 for AEAD) and
// of SK_d, SK_pi and SK_pr (the PRF's preferred key length).
func (s Suite) KeyLens() (encr, integ, prf int, err error) {
	if err := s.Validate(); err != nil {
		return 0, 0, 0, err
	}
	encr, _ = s.Encr.KeyLen(s.KeyBits)
	integ, _ = s.Integ.KeyLen()
	prf, _ = s.PRF.KeyLen()
	return encr, integ, prf, nil
}

// String names the suite like "AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519".
func (s Suite) String() string {
	name := s.Encr.String()
	if s.KeyBits != 0 {
		name = fmt.Sprintf("%s_%d", name, s.KeyBits)
	}
	if s.Integ != transform.IntegNone {
		name += "/" + s.Integ.String()
	}
	return name + "/" + s.PRF.String() + "/" + s.DH.String()
}
