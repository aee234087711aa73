package auth

import (
	"crypto/rand"
	"errors"
	"testing"
)

// FuzzNewID feeds arbitrary Identification Data of every type: no panic, a
// printable String, and an ID equal to itself.
func FuzzNewID(f *testing.F) {
	for _, s := range []string{"fqdn:cpe1.example.net", "ipv4:192.0.2.1", "ipv6:2001:db8::1", "rfc822:a@b", "dn:C=CH,O=Acme,CN=cpe1+OU=x", "keyid:0102"} {
		id := MustParseID(s)
		f.Add(uint8(id.Type), id.Data())
	}
	f.Add(uint8(IDDN), []byte{0x30, 0x06, 0x31, 0x04, 0x30, 0x02, 0x06, 0x00})
	f.Fuzz(func(t *testing.T, typ uint8, data []byte) {
		id, err := NewID(IDType(typ), data)
		if err != nil {
			if !errors.Is(err, ErrBadID) {
				t.Fatalf("error %v does not wrap ErrBadID", err)
			}
			return
		}
		if !id.Equal(id) {
			t.Fatalf("%v not equal to itself", id)
		}
		s := id.String()
		for _, r := range s {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("String() %q carries control characters", s)
			}
		}
	})
}

// FuzzParseID feeds arbitrary configuration strings: anything accepted must
// print to a string that parses back to an equal identity.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"fqdn:cpe1.example.net", "192.0.2.1", "2001:db8::1", "a@b", `dn:CN=a\,b+OU=x;O=y`, "keyid:0a:1b", "dn:CN=#0c0178", "dn:1.2.3=#0500"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			return
		}
		back, err := ParseID(id.String())
		if id.Type != IDFQDN && id.Type != IDRFC822 { // those may print quoted
			if err != nil || !back.Equal(id) {
				t.Fatalf("ParseID(%q) = %v; String() %q parses to %v, %v", s, id, id.String(), back, err)
			}
		}
		p, err := ParsePattern(s)
		if err == nil && !p.Match(id) && s != "*" {
			t.Fatalf("pattern %q does not match its own identity %v", s, id)
		}
	})
}

func FuzzParseHashAlgorithms(f *testing.F) {
	f.Add(AppendHashAlgorithms(nil, SupportedHashes()))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, data []byte) {
		algs, err := ParseHashAlgorithms(data)
		if err != nil {
			return
		}
		if got := AppendHashAlgorithms(nil, algs); string(got) != string(data) {
			t.Fatalf("re-encoded %x, was %x", got, data)
		}
	})
}

func FuzzParseCertReq(f *testing.F) {
	f.Add(make([]byte, 40))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseCertReq(data)
		if err != nil {
			return
		}
		if got := AppendCertReq(nil, h); string(got) != string(data) {
			t.Fatalf("re-encoded %x, was %x", got, data)
		}
	})
}

// FuzzVerifySignature feeds arbitrary AUTH data to every signature method
// with ECDSA, RSA and Ed25519 keys: no panic, and nothing verifies but the
// seeds' genuine signatures.
func FuzzVerifySignature(f *testing.F) {
	p := getPKI(f)
	octets := []byte("fuzz octets")
	keys := []testCert{p.ecLeaf, p.p384Leaf, p.rsaLeaf}
	genuine := map[string]bool{}
	for i, k := range keys {
		for _, opts := range []SignOptions{{PeerHashes: SupportedHashes()}, {}, {PeerHashes: SupportedHashes(), RSAPSS: true}} {
			m, data, err := Sign(k.key, octets, opts, rand.Reader)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint8(i), uint8(m), data)
			genuine[string(data)] = true
		}
	}
	f.Fuzz(func(t *testing.T, which, method uint8, data []byte) {
		k := keys[int(which)%len(keys)]
		err := VerifySignature(k.key.Public(), Method(method), octets, data)
		if err == nil && !genuine[string(data)] {
			t.Fatalf("forged AUTH data %x verified", data)
		}
		if err != nil && !errors.Is(err, ErrAuthFailed) {
			t.Fatalf("error %v does not wrap ErrAuthFailed", err)
		}
	})
}

// FuzzVerifyChain feeds arbitrary CERT payload data: no panic, and only the
// genuine chain validates.
func FuzzVerifyChain(f *testing.F) {
	p := getPKI(f)
	pool, _ := NewCAPool(p.ecRoot.cert)
	f.Add(p.ecLeaf.cert.Raw, []byte(nil))
	f.Add(p.interLeaf.cert.Raw, p.inter.cert.Raw)
	id := MustParseID("fqdn:cpe1.example.net")
	f.Fuzz(func(t *testing.T, leaf, inter []byte) {
		certs := [][]byte{leaf}
		if len(inter) > 0 {
			certs = append(certs, inter)
		}
		c, err := pool.VerifyChain(certs, id, testNow)
		if err == nil && string(c.Raw) != string(p.ecLeaf.cert.Raw) {
			t.Fatalf("a certificate other than the genuine one validated")
		}
	})
}
