package suite

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"

	"github.com/mpsa-vpn/mpsa/transform"
)

// PRF is a negotiated pseudorandom function (RFC 7296 §2.13).
type PRF struct {
	ID     transform.PRF
	mac    macHash
	size   int
	keyLen int
}

// NewPRF returns the PRF for id.
func NewPRF(id transform.PRF) (PRF, error) {
	var mh macHash
	var size int
	switch id {
	case transform.PRFHMACSHA1:
		mh, size = macSHA1, sha1.Size
	case transform.PRFHMACSHA2256:
		mh, size = macSHA256, sha256.Size
	case transform.PRFHMACSHA2384:
		mh, size = macSHA384, sha512.Size384
	case transform.PRFHMACSHA2512:
		mh, size = macSHA512, sha512.Size
	default:
		return PRF{}, fmt.Errorf("suite: unsupported PRF %v", id)
	}
	kl, _ := id.KeyLen()
	return PRF{ID: id, mac: mh, size: size, keyLen: kl}, nil
}

// KeyLen is the preferred key length in octets (the size of SK_d, SK_pi, SK_pr).
func (p PRF) KeyLen() int { return p.keyLen }

// Size is the output length in octets.
func (p PRF) Size() int { return p.size }

// Sum returns prf(key, data...) as a new slice.
func (p PRF) Sum(key []byte, data ...[]byte) []byte {
	m := p.mac.get(key)
	defer p.mac.put(m)
	for _, d := range data {
		m.write(d)
	}
	return m.finish(make([]byte, 0, p.size))
}

// PlusInto fills out with prf+(key, seed) (RFC 7296 §2.13):
//
//	prf+ (K,S) = T1 | T2 | T3 | T4 | ...
//	T1 = prf (K, S | 0x01)
//	T2 = prf (K, T1 | S | 0x02)
//
// It fails when out would need more than 255 iterations.
func (p PRF) PlusInto(out, key, seed []byte) error {
	if len(out) > 255*p.size {
		return fmt.Errorf("suite: prf+ asked for %d octets, at most %d", len(out), 255*p.size)
	}
	m := p.mac.get(key)
	defer p.mac.put(m)
	var t []byte
	for i := byte(1); len(out) > 0; i++ {
		if i > 1 {
			m.start()
		}
		m.write(t)
		m.write(seed)
		m.one[0] = i
		m.write(m.one[:])
		t = m.finish(m.t[:0])
		n := copy(out, t)
		out = out[n:]
	}
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
