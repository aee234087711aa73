package suite

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/mpsa-vpn/mpsa/transform"
)

// FuzzSKOpen feeds arbitrary messages to every SK protection. Open must never
// panic, must fail with ErrIntegrity on anything it rejects, and anything it
// accepts must decrypt identically in place. Seeds are sealed messages of
// each suite (with the 28-octet IKE header + 4-octet SK header prefix) and
// their truncations.
func FuzzSKOpen(f *testing.F) {
	for i, s := range skSuites {
		c := testCipher(f, s, 9)
		for _, n := range []int{0, 15, 16, 60} {
			msg, err := c.Seal(prefix(32), bytes.Repeat([]byte{byte(n)}, n))
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint8(i), uint16(32), msg)
			f.Add(uint8(i), uint16(32), msg[:len(msg)-1])
		}
	}
	ciphers := make([]*SKCipher, len(skSuites))
	for i, s := range skSuites {
		ciphers[i] = testCipher(f, s, 9)
	}
	f.Fuzz(func(t *testing.T, which uint8, off uint16, msg []byte) {
		c := ciphers[int(which)%len(ciphers)]
		got, err := c.Open(nil, msg, int(off))
		if err != nil {
			if !errors.Is(err, ErrIntegrity) {
				t.Fatalf("error %v does not wrap ErrIntegrity", err)
			}
			return
		}
		if len(got) > len(msg) {
			t.Fatalf("plaintext of %d octets from a %d-octet message", len(got), len(msg))
		}
		in, err := c.OpenInPlace(bytes.Clone(msg), int(off))
		if err != nil || !bytes.Equal(in, got) {
			t.Fatalf("OpenInPlace differs: %x, %v; Open gave %x", in, err, got)
		}
	})
}

// FuzzDHSharedSecret feeds arbitrary peer public values to every group: no
// panic, and any failure wraps ErrInvalidKE.
func FuzzDHSharedSecret(f *testing.F) {
	keys := map[transform.DH]*DH{}
	for i, g := range allGroups {
		d, err := GenerateDH(g, rand.Reader)
		if err != nil {
			f.Fatal(err)
		}
		keys[g] = d
		peer, _ := GenerateDH(g, rand.Reader)
		f.Add(uint8(i), peer.PublicValue())
		f.Add(uint8(i), make([]byte, len(peer.PublicValue())))
	}
	f.Fuzz(func(t *testing.T, which uint8, pub []byte) {
		g := allGroups[int(which)%len(allGroups)]
		z, err := keys[g].SharedSecret(pub)
		if err != nil {
			if !errors.Is(err, ErrInvalidKE) {
				t.Fatalf("%v: error %v does not wrap ErrInvalidKE", g, err)
			}
			return
		}
		if len(z) == 0 {
			t.Fatalf("%v: empty shared secret", g)
		}
	})
}
