package suite

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"math/big"
	"testing"

	"github.com/mpsa-vpn/mpsa/transform"
)

var allGroups = []transform.DH{transform.DHMODP2048, transform.DHECP256, transform.DHECP384, transform.DHCurve25519}

// TestDHAgreement runs each group between two fresh keys.
func TestDHAgreement(t *testing.T) {
	for _, g := range allGroups {
		a, err := GenerateDH(g, rand.Reader)
		if err != nil {
			t.Fatalf("%v: %v", g, err)
		}
		b, err := GenerateDH(g, rand.Reader)
		if err != nil {
			t.Fatalf("%v: %v", g, err)
		}
		n, _ := DHPublicLen(g)
		if len(a.PublicValue()) != n || a.Group() != g {
			t.Errorf("%v: public value of %d octets, want %d", g, len(a.PublicValue()), n)
		}
		za, err1 := a.SharedSecret(b.PublicValue())
		zb, err2 := b.SharedSecret(a.PublicValue())
		if err1 != nil || err2 != nil || !bytes.Equal(za, zb) {
			t.Errorf("%v: shared secrets differ (%v, %v)", g, err1, err2)
		}
		a.Wipe()
		if _, err := a.SharedSecret(b.PublicValue()); err == nil {
			t.Errorf("%v: wiped key still computes", g)
		}
	}
}

// TestDHKnownAnswers uses RFC 5903 §8 (ECP 256/384), RFC 7748 §6.1
// (Curve25519) and the MODP vectors of testdata/gen_vectors.py; private keys
// come in through the injected random source.
func TestDHKnownAnswers(t *testing.T) {
	tests := []struct {
		name         string
		g            transform.DH
		i, gi        string
		r, gr        string
		gir          string
		retryPrefixI string // random bytes consumed before i (rejected scalars)
	}{
		{
			name: "rfc5903-ecp256", g: transform.DHECP256,
			i:   "C88F01F5 10D9AC3F 70A292DA A2316DE5 44E9AAB8 AFE84049 C62A9C57 862D1433",
			gi:  "DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF 945D0C37 72581180 5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58 389E0577 B8990BB3",
			r:   "C6EF9C5D 78AE012A 011164AC B397CE20 88685D8F 06BF9BE0 B283AB46 476BEE53",
			gr:  "D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C 736FC755 4494BF63 56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83 53E74F33 039872AB",
			gir: "D6840F6B 42F6EDAF D13116E0 E1256520 2FEF8E9E CE7DCE03 812464D0 4B9442DE",
			// an all-ones scalar exceeds the group order and must be skipped
			retryPrefixI: "FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF",
		},
		{
			name: "rfc5903-ecp384", g: transform.DHECP384,
			i:   "099F3C70 34D4A2C6 99884D73 A375A67F 7624EF7C 6B3C0F16 0647B674 14DCE655 E35B5380 41E649EE 3FAEF896 783AB194",
			gi:  "667842D7 D180AC2C DE6F74F3 7551F557 55C7645C 20EF73E3 1634FE72 B4C55EE6 DE3AC808 ACB4BDB4 C88732AE E95F41AA 9482ED1F C0EEB9CA FC498462 5CCFC23F 65032149 E0E144AD A0241815 35A0F38E EB9FCFF3 C2C947DA E69B4C63 4573A81C",
			r:   "41CB0779 B4BDB85D 47846725 FBEC3C94 30FAB46C C8DC5060 855CC9BD A0AA2942 E0308312 916B8ED2 960E4BD5 5A7448FC",
			gr:  "E558DBEF 53EECDE3 D3FCCFC1 AEA08A89 A987475D 12FD950D 83CFA417 32BC509D 0D1AC43A 0336DEF9 6FDA41D0 774A3571 DCFBEC7A ACF31964 72169E83 8430367F 66EEBE3C 6E70C416 DD5F0C68 759DD1FF F83FA401 42209DFF 5EAAD96D B9E6386C",
			gir: "11187331 C279962D 93D60424 3FD592CB 9D0A926F 422E4718 7521287E 7156C5C4 D6031355 69B9E9D0 9CF5D4A2 70F59746",
		},
		{
			name: "rfc7748-x25519", g: transform.DHCurve25519,
			i:   "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
			gi:  "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
			r:   "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
			gr:  "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
			gir: "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742",
		},
	}
	v := loadVectors(t)
	for _, m := range v.MODP {
		tests = append(tests, struct {
			name         string
			g            transform.DH
			i, gi        string
			r, gr        string
			gir          string
			retryPrefixI string
		}{"gen_vectors-modp2048", transform.DHMODP2048, hexs(m.XA), hexs(m.YA), hexs(m.XB), hexs(m.YB), hexs(m.Shared), ""})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := append(unhex(t, tt.retryPrefixI), unhex(t, tt.i)...)
			a, err := GenerateDH(tt.g, bytes.NewReader(src))
			if err != nil {
				t.Fatal(err)
			}
			b, err := GenerateDH(tt.g, bytes.NewReader(unhex(t, tt.r)))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a.PublicValue(), unhex(t, tt.gi)) {
				t.Errorf("g^i = %X", a.PublicValue())
			}
			if !bytes.Equal(b.PublicValue(), unhex(t, tt.gr)) {
				t.Errorf("g^r = %X", b.PublicValue())
			}
			z, err := a.SharedSecret(unhex(t, tt.gr))
			if err != nil || !bytes.Equal(z, unhex(t, tt.gir)) {
				t.Errorf("g^ir = %X, %v", z, err)
			}
			z, err = b.SharedSecret(unhex(t, tt.gi))
			if err != nil || !bytes.Equal(z, unhex(t, tt.gir)) {
				t.Errorf("g^ri = %X, %v", z, err)
			}
		})
	}
}

func hexs(b []byte) string { return hex.EncodeToString(b) }

// TestDHRejectsInvalidPublicValues covers RFC 7296 §5.2.1 / RFC 6989 checks.
func TestDHRejectsInvalidPublicValues(t *testing.T) {
	pad := func(v *big.Int, n int) []byte { return v.FillBytes(make([]byte, n)) }
	p := modp2048
	pm1 := new(big.Int).Sub(p, big.NewInt(1))
	// ECP: (x, y) = (1, 1) is not on either curve; the all-zero encoding
	// is the SEC 1 point at infinity sent as x | y.
	offCurve256 := append(pad(big.NewInt(1), 32), pad(big.NewInt(1), 32)...)
	offCurve384 := append(pad(big.NewInt(1), 48), pad(big.NewInt(1), 48)...)
	tests := []struct {
		name string
		g    transform.DH
		pub  []byte
	}{
		{"modp zero", transform.DHMODP2048, make([]byte, 256)},
		{"modp one", transform.DHMODP2048, pad(big.NewInt(1), 256)},
		{"modp p-1", transform.DHMODP2048, pad(pm1, 256)},
		{"modp p", transform.DHMODP2048, pad(p, 256)},
		{"modp all ones", transform.DHMODP2048, bytes.Repeat([]byte{0xff}, 256)},
		{"modp short", transform.DHMODP2048, pad(big.NewInt(2), 255)},
		{"modp long", transform.DHMODP2048, pad(big.NewInt(2), 257)},
		{"ecp256 off curve", transform.DHECP256, offCurve256},
		{"ecp256 infinity", transform.DHECP256, make([]byte, 64)},
		{"ecp256 x only", transform.DHECP256, make([]byte, 32)},
		{"ecp256 with 04 prefix", transform.DHECP256, make([]byte, 65)},
		{"ecp384 off curve", transform.DHECP384, offCurve384},
		{"ecp384 infinity", transform.DHECP384, make([]byte, 96)},
		// Curve25519 points of small order (RFC 7748 §7): the output would
		// be all zeros.
		{"x25519 zero", transform.DHCurve25519, make([]byte, 32)},
		{"x25519 one", transform.DHCurve25519, append([]byte{1}, make([]byte, 31)...)},
		{"x25519 order 8", transform.DHCurve25519, unhex(t, "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")},
		{"x25519 order 8 b", transform.DHCurve25519, unhex(t, "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157")},
		{"x25519 p-1", transform.DHCurve25519, unhex(t, "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")},
		{"x25519 short", transform.DHCurve25519, make([]byte, 31)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := GenerateDH(tt.g, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			z, err := d.SharedSecret(tt.pub)
			if !errors.Is(err, ErrInvalidKE) {
				t.Errorf("SharedSecret = %x, %v; want ErrInvalidKE", z, err)
			}
		})
	}
	if _, err := GenerateDH(transform.DH(15), rand.Reader); !errors.Is(err, ErrUnsupported) {
		t.Errorf("MODP 3072: %v, want ErrUnsupported", err)
	}
	if _, err := GenerateDH(transform.DHECP256, bytes.NewReader(nil)); err == nil {
		t.Error("GenerateDH with an empty random source succeeded")
	}
}
