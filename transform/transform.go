// Package transform names the IANA IKEv2 transform identifiers (RFC 7296
// §3.3.2, IANA "IKEv2 Transform Type Values") that IKE, MPSA and ESP share,
// and knows the key and ICV sizes each implies.
//
// It is the common language of the three layers: IKE negotiates a Suite, MPSA
// carries one in MPSA_PUT, ESP builds its cipher from one. Only the transforms
// this product implements are named; everything else is "unsupported".
package transform

import "fmt"

// Type is a transform type (RFC 7296 §3.3.2).
type Type uint8

// Transform types.
const (
	TypeENCR  Type = 1 // Encryption Algorithm
	TypePRF   Type = 2 // Pseudorandom Function
	TypeINTEG Type = 3 // Integrity Algorithm
	TypeDH    Type = 4 // Key Exchange Method (Diffie-Hellman group)
	TypeESN   Type = 5 // Extended Sequence Numbers
)

// Encr is an encryption transform ID (Transform Type 1).
type Encr uint16

// Encryption transforms (IANA).
const (
	EncrAESCBC           Encr = 12 // RFC 3602; key length attribute 128 or 256
	EncrAESGCM16         Encr = 20 // RFC 4106 (ESP), RFC 5282 (IKE); 16-octet ICV
	EncrChaCha20Poly1305 Encr = 28 // RFC 7634; 256-bit key, no key length attribute
)

// PRF is a pseudorandom function transform ID (Transform Type 2).
type PRF uint16

// PRF transforms (IANA).
const (
	PRFHMACSHA1    PRF = 2 // RFC 2104
	PRFHMACSHA2256 PRF = 5 // RFC 4868
	PRFHMACSHA2384 PRF = 6
	PRFHMACSHA2512 PRF = 7
)

// Integ is an integrity transform ID (Transform Type 3).
type Integ uint16

// Integrity transforms (IANA). IntegNone is used with AEAD ciphers.
const (
	IntegNone          Integ = 0
	IntegHMACSHA196    Integ = 2  // RFC 2404
	IntegHMACSHA256128 Integ = 12 // RFC 4868
	IntegHMACSHA384192 Integ = 13
	IntegHMACSHA512256 Integ = 14
)

// DH is a key exchange method (Transform Type 4).
type DH uint16

// Key exchange methods (IANA).
const (
	DHNone       DH = 0
	DHMODP2048   DH = 14 // RFC 3526
	DHECP256     DH = 19 // RFC 5903
	DHECP384     DH = 20
	DHCurve25519 DH = 31 // RFC 8031
)

// ESN values (Transform Type 5).
const (
	ESNNone uint16 = 0
	ESNYes  uint16 = 1
)

// AttrKeyLength is the Key Length transform attribute (RFC 7296 §3.3.5), in bits.
const AttrKeyLength uint16 = 14

// IsAEAD reports whether e is a combined-mode cipher that needs no INTEG transform.
func (e Encr) IsAEAD() bool { return e == EncrAESGCM16 || e == EncrChaCha20Poly1305 }

// KeyLen returns the length in octets of keying material taken from KEYMAT for
// cipher e with the given key length attribute (bits; 0 when absent). For the
// AEAD ciphers it includes the 4-octet salt (RFC 4106 §8.1, RFC 7634 §2;
// RFC 5282 §7.1 for IKE). It returns an error for unsupported combinations.
func (e Encr) KeyLen(keyBits uint16) (int, error) {
	switch e {
	case EncrAESCBC:
		if keyBits == 128 || keyBits == 256 {
			return int(keyBits) / 8, nil
		}
	case EncrAESGCM16:
		if keyBits == 128 || keyBits == 256 {
			return int(keyBits)/8 + 4, nil
		}
	case EncrChaCha20Poly1305:
		if keyBits == 0 || keyBits == 256 {
			return 32 + 4, nil
		}
	}
	return 0, fmt.Errorf("transform: unsupported encryption %v with key length %d", e, keyBits)
}

// NeedsKeyLength reports whether the Key Length attribute is mandatory for e.
func (e Encr) NeedsKeyLength() bool { return e == EncrAESCBC || e == EncrAESGCM16 }

func (e Encr) String() string {
	switch e {
	case EncrAESCBC:
		return "AES_CBC"
	case EncrAESGCM16:
		return "AES_GCM_16"
	case EncrChaCha20Poly1305:
		return "CHACHA20_POLY1305"
	}
	return fmt.Sprintf("ENCR(%d)", uint16(e))
}

// KeyLen returns the preferred key length of the PRF in octets, which is also
// the size of SK_d, SK_pi and SK_pr (RFC 7296 §2.14).
func (p PRF) KeyLen() (int, error) {
	switch p {
	case PRFHMACSHA1:
		return 20, nil
	case PRFHMACSHA2256:
		return 32, nil
	case PRFHMACSHA2384:
		return 48, nil
	case PRFHMACSHA2512:
		return 64, nil
	}
	return 0, fmt.Errorf("transform: unsupported PRF %v", p)
}

func (p PRF) String() string {
	switch p {
	case PRFHMACSHA1:
		return "PRF_HMAC_SHA1"
	case PRFHMACSHA2256:
		return "PRF_HMAC_SHA2_256"
	case PRFHMACSHA2384:
		return "PRF_HMAC_SHA2_384"
	case PRFHMACSHA2512:
		return "PRF_HMAC_SHA2_512"
	}
	return fmt.Sprintf("PRF(%d)", uint16(p))
}

// KeyLen returns the integrity key length in octets (RFC 2404, RFC 4868).
func (i Integ) KeyLen() (int, error) {
	switch i {
	case IntegNone:
		return 0, nil
	case IntegHMACSHA196:
		return 20, nil
	case IntegHMACSHA256128:
		return 32, nil
	case IntegHMACSHA384192:
		return 48, nil
	case IntegHMACSHA512256:
		return 64, nil
	}
	return 0, fmt.Errorf("transform: unsupported integrity %v", i)
}

// ICVLen returns the truncated ICV length in octets.
func (i Integ) ICVLen() (int, error) {
	switch i {
	case IntegNone:
		return 0, nil
	case IntegHMACSHA196:
		return 12, nil
	case IntegHMACSHA256128:
		return 16, nil
	case IntegHMACSHA384192:
		return 24, nil
	case IntegHMACSHA512256:
		return 32, nil
	}
	return 0, fmt.Errorf("transform: unsupported integrity %v", i)
}

func (i Integ) String() string {
	switch i {
	case IntegNone:
		return "NONE"
	case IntegHMACSHA196:
		return "HMAC_SHA1_96"
	case IntegHMACSHA256128:
		return "HMAC_SHA2_256_128"
	case IntegHMACSHA384192:
		return "HMAC_SHA2_384_192"
	case IntegHMACSHA512256:
		return "HMAC_SHA2_512_256"
	}
	return fmt.Sprintf("INTEG(%d)", uint16(i))
}

func (d DH) String() string {
	switch d {
	case DHNone:
		return "NONE"
	case DHMODP2048:
		return "MODP_2048"
	case DHECP256:
		return "ECP_256"
	case DHECP384:
		return "ECP_384"
	case DHCurve25519:
		return "CURVE_25519"
	}
	return fmt.Sprintf("DH(%d)", uint16(d))
}

// ESP is the cipher suite of one ESP SA: what an ESP implementation needs to
// build its transform. The zero value is not a valid suite.
type ESP struct {
	Encr    Encr
	KeyBits uint16 // Key Length attribute in bits; 0 for ChaCha20-Poly1305
	Integ   Integ  // IntegNone for AEAD ciphers
}

// Validate checks that s is a combination this product implements.
func (s ESP) Validate() error {
	if _, err := s.Encr.KeyLen(s.KeyBits); err != nil {
		return err
	}
	if s.Encr.IsAEAD() != (s.Integ == IntegNone) {
		if s.Encr.IsAEAD() {
			return fmt.Errorf("transform: %v is AEAD and takes no integrity transform, got %v", s.Encr, s.Integ)
		}
		return fmt.Errorf("transform: %v needs an integrity transform", s.Encr)
	}
	_, err := s.Integ.KeyLen()
	return err
}

// KeyLens returns the encryption key length (with salt for AEAD) and the
// integrity key length, in octets, in the order they are taken from KEYMAT.
func (s ESP) KeyLens() (encr, integ int, err error) {
	if err := s.Validate(); err != nil {
		return 0, 0, err
	}
	encr, _ = s.Encr.KeyLen(s.KeyBits)
	integ, _ = s.Integ.KeyLen()
	return encr, integ, nil
}

func (s ESP) String() string {
	name := s.Encr.String()
	if s.KeyBits != 0 {
		name = fmt.Sprintf("%s_%d", name, s.KeyBits)
	}
	if s.Integ != IntegNone {
		name += "/" + s.Integ.String()
	}
	return name
}
