package suite

import (
	"crypto/ecdh"
	"crypto/subtle"
	"fmt"
	"io"
	"math/big"

	"github.com/mpsa-vpn/mpsa/transform"
)

// modp2048 is the 2048-bit MODP group, IKE group 14 (RFC 3526 §3), generator 2.
var modp2048 = func() *big.Int {
	p, ok := new(big.Int).SetString(
		"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1"+
			"29024E088A67CC74020BBEA63B139B22514A08798E3404DD"+
			"EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245"+
			"E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"+
			"EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D"+
			"C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"+
			"83655D23DCA3AD961C62F356208552BB9ED529077096966D"+
			"670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"+
			"E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9"+
			"DE2BCBF6955817183995497CEA956AE515D2261898FA0510"+
			"15728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)
	if !ok {
		panic("suite: bad MODP 2048 prime")
	}
	return p
}()

// modpExponentBits is the length of the random private exponent for MODP
// groups. Group 14 offers about 112 bits of strength (NIST SP 800-57);
// SP 800-56A and RFC 3526 §8 ask for an exponent of at least twice that
// (OpenSSL uses 225 bits). 256 bits meets it with margin and keeps a modular
// exponentiation about eight times cheaper than a full-length exponent.
const modpExponentBits = 256

// DHPublicLen returns the length in octets of a Key Exchange payload's data
// for group g (RFC 7296 §3.4): the modulus length for MODP (RFC 3526), x | y
// for ECP (RFC 5903 §7), 32 for Curve25519 (RFC 8031 §3). The codec can check
// KE lengths with it before any computation.
func DHPublicLen(g transform.DH) (int, error) {
	switch g {
	case transform.DHMODP2048:
		return 256, nil
	case transform.DHECP256:
		return 64, nil
	case transform.DHECP384:
		return 96, nil
	case transform.DHCurve25519:
		return 32, nil
	}
	return 0, fmt.Errorf("suite: %w: Diffie-Hellman group %v", ErrUnsupported, g)
}

// DH is one side's ephemeral Diffie-Hellman key. PublicValue and
// SharedSecret may be called any number of times, concurrently: a responder
// may reuse one key for several exchanges for a short while (RFC 7296
// §2.12) to halve its Diffie-Hellman cost. Wipe must not race with them;
// call it when the key is retired.
//
// MODP exponentiation uses math/big, which is not constant time; the
// exponent is ephemeral, so a timing observer sees at most the exchanges
// that use one key. The elliptic curve groups use crypto/ecdh (constant
// time).
type DH struct {
	group transform.DH
	pub   []byte

	// MODP
	x *big.Int
	// ECP, Curve25519
	priv *ecdh.PrivateKey
}

// GenerateDH draws a fresh private key for group g from rand
// (crypto/rand.Reader in production; a deterministic reader in tests).
func GenerateDH(g transform.DH, rand io.Reader) (*DH, error) {
	switch g {
	case transform.DHMODP2048:
		b := make([]byte, modpExponentBits/8)
		defer clear(b)
		for {
			if _, err := io.ReadFull(rand, b); err != nil {
				return nil, fmt.Errorf("suite: DH private exponent: %w", err)
			}
			x := new(big.Int).SetBytes(b)
			if x.BitLen() < 2 { // x must not be 0 or 1
				continue
			}
			y := new(big.Int).Exp(big.NewInt(2), x, modp2048)
			return &DH{group: g, x: x, pub: y.FillBytes(make([]byte, 256))}, nil
		}
	case transform.DHECP256, transform.DHECP384, transform.DHCurve25519:
		c, n := curveOf(g)
		b := make([]byte, n)
		defer clear(b)
		// Rejection sampling: NIST scalars must be in [1, n-1]; the
		// chance of a retry is below 2^-32.
		for range 64 {
			if _, err := io.ReadFull(rand, b); err != nil {
				return nil, fmt.Errorf("suite: DH private key: %w", err)
			}
			priv, err := c.NewPrivateKey(b)
			if err != nil {
				continue
			}
			pub := priv.PublicKey().Bytes()
			if g != transform.DHCurve25519 {
				pub = pub[1:] // drop the SEC 1 0x04 prefix: RFC 5903 §7 sends x | y
			}
			return &DH{group: g, priv: priv, pub: pub}, nil
		}
		return nil, fmt.Errorf("suite: DH private key: random source keeps returning invalid scalars")
	}
	return nil, fmt.Errorf("suite: %w: Diffie-Hellman group %v", ErrUnsupported, g)
}

// curveOf returns the ecdh curve of g and its scalar size.
func curveOf(g transform.DH) (ecdh.Curve, int) {
	switch g {
	case transform.DHECP256:
		return ecdh.P256(), 32
	case transform.DHECP384:
		return ecdh.P384(), 48
	}
	return ecdh.X25519(), 32
}

// String never prints the private key.
func (d DH) String() string { return "DH " + d.group.String() }

// GoString never prints the private key either.
func (d DH) GoString() string { return d.String() }

// Group returns the Diffie-Hellman group.
func (d *DH) Group() transform.DH { return d.group }

// PublicValue returns the Key Exchange Data to send (RFC 7296 §3.4). The
// slice belongs to d; do not modify it.
func (d *DH) PublicValue() []byte { return d.pub }

// SharedSecret validates the peer's Key Exchange Data and returns g^ir as
// RFC 7296 §2.14 uses it: for MODP the big-endian value padded to the modulus
// length, for ECP the x coordinate (RFC 5903 §7), for Curve25519 the 32-octet
// output (RFC 8031 §3).
//
// Validation (RFC 7296 §5.2.1 and RFC 6989): the length must be exact; a MODP
// value must satisfy 1 < y < p-1; an ECP value must be a point on the curve
// other than the point at infinity; a Curve25519 exchange must not produce the
// all-zero output. Failures wrap ErrInvalidKE.
func (d *DH) SharedSecret(peer []byte) ([]byte, error) {
	want, err := DHPublicLen(d.group)
	if err != nil {
		return nil, err
	}
	if len(peer) != want {
		return nil, fmt.Errorf("%w: %v public value is %d octets, want %d", ErrInvalidKE, d.group, len(peer), want)
	}
	if d.x == nil && d.priv == nil {
		return nil, fmt.Errorf("suite: Diffie-Hellman key already wiped")
	}
	switch d.group {
	case transform.DHMODP2048:
		y := new(big.Int).SetBytes(peer)
		pm1 := new(big.Int).Sub(modp2048, big.NewInt(1))
		if y.Cmp(big.NewInt(1)) <= 0 || y.Cmp(pm1) >= 0 {
			return nil, fmt.Errorf("%w: MODP public value outside (1, p-1)", ErrInvalidKE)
		}
		z := new(big.Int).Exp(y, d.x, modp2048)
		return z.FillBytes(make([]byte, 256)), nil
	case transform.DHECP256, transform.DHECP384:
		c, _ := curveOf(d.group)
		enc := make([]byte, 1+len(peer))
		enc[0] = 4
		copy(enc[1:], peer)
		pub, err := c.NewPublicKey(enc)
		if err != nil {
			return nil, fmt.Errorf("%w: %v point not on the curve", ErrInvalidKE, d.group)
		}
		z, err := d.priv.ECDH(pub)
		if err != nil {
			return nil, fmt.Errorf("%w: %v: %v", ErrInvalidKE, d.group, err)
		}
		return z, nil
	case transform.DHCurve25519:
		pub, err := ecdh.X25519().NewPublicKey(peer)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidKE, err)
		}
		z, err := d.priv.ECDH(pub)
		if err != nil || subtle.ConstantTimeCompare(z, make([]byte, 32)) == 1 {
			// crypto/ecdh already refuses the all-zero output (RFC 7748
			// §6.1); the second check keeps the rule visible here.
			return nil, fmt.Errorf("%w: Curve25519 low-order public value", ErrInvalidKE)
		}
		return z, nil
	}
	return nil, fmt.Errorf("suite: %w: Diffie-Hellman group %v", ErrUnsupported, d.group)
}

// Wipe drops the private key. crypto/ecdh keeps scalars in memory it does
// not let callers clear; the MODP exponent is zeroed in place.
func (d *DH) Wipe() {
	if d == nil {
		return
	}
	if d.x != nil {
		words := d.x.Bits()
		clear(words)
		d.x = nil
	}
	d.priv = nil
}
