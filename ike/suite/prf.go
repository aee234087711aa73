package suite

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"

	"github.com/mpsa-vpn/mpsa/transform"
)

// PRF is a negotiated pseudorandom function (RFC 7296 §2.13).
type PRF struct {
	ID     transform.PRF
	newH   func() hash.Hash
	keyLen int
}

// NewPRF returns the PRF for id.
func NewPRF(id transform.PRF) (PRF, error) {
	var h func() hash.Hash
	switch id {
	case transform.PRFHMACSHA1:
		h = sha1.New
	case transform.PRFHMACSHA2256:
		h = sha256.New
	case transform.PRFHMACSHA2384:
		h = sha512.New384
	case transform.PRFHMACSHA2512:
		h = sha512.New
	default:
		return PRF{}, fmt.Errorf("suite: unsupported PRF %v", id)
	}
	kl, _ := id.KeyLen()
	return PRF{ID: id, newH: h, keyLen: kl}, nil
}

// KeyLen is the preferred key length in octets (the size of SK_d, SK_pi, SK_pr).
func (p PRF) KeyLen() int { return p.keyLen }

// Size is the output length in octets.
func (p PRF) Size() int { return p.newH().Size() }

// Sum returns prf(key, data...) as a new slice.
func (p PRF) Sum(key []byte, data ...[]byte) []byte {
	m := hmac.New(p.newH, key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)
}

// PlusInto fills out with prf+(key, seed) (RFC 7296 §2.13):
//
//	prf+ (K,S) = T1 | T2 | T3 | T4 | ...
//	T1 = prf (K, S | 0x01)
//	T2 = prf (K, T1 | S | 0x02)
//
// It fails when out would need more than 255 iterations.
func (p PRF) PlusInto(out, key, seed []byte) error {
	m := hmac.New(p.newH, key)
	size := m.Size()
	if len(out) > 255*size {
		return fmt.Errorf("suite: prf+ asked for %d octets, at most %d", len(out), 255*size)
	}
	var t []byte
	for i := byte(1); len(out) > 0; i++ {
		m.Reset()
		m.Write(t)
		m.Write(seed)
		m.Write([]byte{i})
		t = m.Sum(t[:0])
		n := copy(out, t)
		out = out[n:]
	}
	clear(t)
	return nil
}

// Plus returns n octets of prf+(key, seed).
func (p PRF) Plus(key, seed []byte, n int) ([]byte, error) {
	out := make([]byte, n)
	if err := p.PlusInto(out, key, seed); err != nil {
		return nil, err
	}
	return out, nil
}
