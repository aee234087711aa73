package suite

import (
	"crypto/rand"
	"testing"
)

// BenchmarkDH measures one side of a Diffie-Hellman exchange: generate a key
// pair and compute the shared secret with a fixed peer value (what a
// responder does per IKE_SA_INIT).
func BenchmarkDH(b *testing.B) {
	for _, g := range allGroups {
		b.Run(g.String(), func(b *testing.B) {
			peer, err := GenerateDH(g, rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			pub := peer.PublicValue()
			b.ReportAllocs()
			for b.Loop() {
				d, err := GenerateDH(g, rand.Reader)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := d.SharedSecret(pub); err != nil {
					b.Fatal(err)
				}
				d.Wipe()
			}
		})
	}
}

// BenchmarkSKSeal and BenchmarkSKOpen protect a 1 KiB inner payload chain
// (an IKE_AUTH-sized message) with each suite, in caller-owned buffers.
func BenchmarkSKSeal(b *testing.B) {
	for _, s := range skSuites {
		b.Run(s.String(), func(b *testing.B) {
			c := testCipher(b, s, 1)
			pt := make([]byte, 1024)
			pre := prefix(32)
			buf := make([]byte, 0, 2048)
			b.SetBytes(int64(len(pt)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Seal(append(buf[:0], pre...), pt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSKOpen(b *testing.B) {
	for _, s := range skSuites {
		b.Run(s.String(), func(b *testing.B) {
			c := testCipher(b, s, 1)
			msg, err := c.Seal(prefix(32), make([]byte, 1024))
			if err != nil {
				b.Fatal(err)
			}
			work := make([]byte, len(msg))
			b.SetBytes(1024)
			b.ReportAllocs()
			for b.Loop() {
				copy(work, msg)
				if _, err := c.OpenInPlace(work, 32); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDeriveIKEKeys measures SKEYSEED and the seven SK_* keys.
func BenchmarkDeriveIKEKeys(b *testing.B) {
	s := skSuites[1]
	shared, ni, nr := make([]byte, 32), make([]byte, 32), make([]byte, 32)
	b.ReportAllocs()
	for b.Loop() {
		k, err := DeriveIKEKeys(s, shared, ni, nr, 1, 2)
		if err != nil {
			b.Fatal(err)
		}
		k.Wipe()
	}
}

// BenchmarkDHShared measures the shared secret computation alone (one
// scalar multiplication or modular exponentiation), the operation `openssl
// speed ecdhp256 ecdhp384 ecdhx25519 ffdh2048` times.
func BenchmarkDHShared(b *testing.B) {
	for _, g := range allGroups {
		b.Run(g.String(), func(b *testing.B) {
			peer, err := GenerateDH(g, rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			d, err := GenerateDH(g, rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			pub := peer.PublicValue()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.SharedSecret(pub); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
