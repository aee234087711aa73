package auth

import (
	"crypto"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
)

// HashAlg is an IKEv2 hash algorithm as announced in the
// SIGNATURE_HASH_ALGORITHMS notify (RFC 7427 §4, IANA "IKEv2 Hash
// Algorithms").
type HashAlg uint16

// Hash algorithms.
const (
	HashSHA1     HashAlg = 1
	HashSHA256   HashAlg = 2
	HashSHA384   HashAlg = 3
	HashSHA512   HashAlg = 4
	HashIdentity HashAlg = 5 // RFC 8420, for EdDSA
)

func (h HashAlg) String() string {
	switch h {
	case HashSHA1:
		return "SHA1"
	case HashSHA256:
		return "SHA2_256"
	case HashSHA384:
		return "SHA2_384"
	case HashSHA512:
		return "SHA2_512"
	case HashIdentity:
		return "IDENTITY"
	}
	return "HASH(" + strconv.Itoa(int(h)) + ")"
}

func (h HashAlg) crypto() crypto.Hash {
	switch h {
	case HashSHA1:
		return crypto.SHA1
	case HashSHA256:
		return crypto.SHA256
	case HashSHA384:
		return crypto.SHA384
	case HashSHA512:
		return crypto.SHA512
	}
	return 0
}

// SupportedHashes lists the hash algorithms this package accepts in RFC 7427
// signatures, for our own SIGNATURE_HASH_ALGORITHMS notify. SHA-1 is not
// offered (RFC 8247 §3.2).
func SupportedHashes() []HashAlg {
	return []HashAlg{HashSHA256, HashSHA384, HashSHA512, HashIdentity}
}

// maxHashAlgs bounds the entries read from one notify.
const maxHashAlgs = 64

// AppendHashAlgorithms appends the Notification Data of a
// SIGNATURE_HASH_ALGORITHMS notify: each algorithm as a 16-bit number.
func AppendHashAlgorithms(b []byte, algs []HashAlg) []byte {
	for _, h := range algs {
		b = binary.BigEndian.AppendUint16(b, uint16(h))
	}
	return b
}

// ParseHashAlgorithms decodes SIGNATURE_HASH_ALGORITHMS Notification Data.
// Unknown values are kept (and never chosen); an odd length, no entries or
// more than 64 entries is an error.
func ParseHashAlgorithms(data []byte) ([]HashAlg, error) {
	if len(data) == 0 || len(data)%2 != 0 {
		return nil, fmt.Errorf("auth: SIGNATURE_HASH_ALGORITHMS data of %d octets", len(data))
	}
	if len(data)/2 > maxHashAlgs {
		return nil, fmt.Errorf("auth: SIGNATURE_HASH_ALGORITHMS with %d entries, at most %d", len(data)/2, maxHashAlgs)
	}
	algs := make([]HashAlg, len(data)/2)
	for i := range algs {
		algs[i] = HashAlg(binary.BigEndian.Uint16(data[2*i:]))
	}
	return algs, nil
}

// pickHash chooses the hash for an RFC 7427 signature: pref first if the
// peer announced it, then the others this package supports, strongest
// first. ok is false when the peer announced none of them.
func pickHash(pref HashAlg, peer []HashAlg) (HashAlg, bool) {
	if slices.Contains(peer, pref) {
		return pref, true
	}
	for _, h := range []HashAlg{HashSHA512, HashSHA384, HashSHA256} {
		if slices.Contains(peer, h) {
			return h, true
		}
	}
	return 0, false
}
