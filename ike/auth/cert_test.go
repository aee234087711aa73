package auth

import (
	"crypto/sha1"
	"errors"
	"testing"
	"time"
)

func TestVerifyChain(t *testing.T) {
	p := getPKI(t)
	pool, err := NewCAPool(p.ecRoot.cert, p.rsaRoot.cert)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		certs [][]byte
		id    string
		now   time.Time
		ok    bool
	}{
		{"ecdsa leaf by fqdn", ders(p.ecLeaf), "fqdn:cpe1.example.net", testNow, true},
		{"ecdsa leaf by fqdn, other case", ders(p.ecLeaf), "fqdn:CPE1.example.net", testNow, true},
		{"ecdsa leaf by email", ders(p.ecLeaf), "rfc822:cpe1@example.net", testNow, true},
		{"ecdsa leaf by ipv4", ders(p.ecLeaf), "ipv4:192.0.2.7", testNow, true},
		{"ecdsa leaf by ipv6", ders(p.ecLeaf), "ipv6:2001:db8::7", testNow, true},
		{"ecdsa leaf by subject dn", ders(p.ecLeaf), "dn:O=Acme,CN=cpe1.example.net", testNow, true},
		{"ecdsa leaf by key id", ders(p.ecLeaf), "keyid:01020304", testNow, true},
		{"rsa leaf", ders(p.rsaLeaf), "fqdn:cpe2.example.net", testNow, true},
		{"leaf via intermediate", ders(p.interLeaf, p.inter), "fqdn:cpe3.example.net", testNow, true},
		{"intermediate missing", ders(p.interLeaf), "fqdn:cpe3.example.net", testNow, false},
		{"fqdn not in SAN", ders(p.ecLeaf), "fqdn:cpe9.example.net", testNow, false},
		{"ip not in SAN", ders(p.ecLeaf), "ipv4:192.0.2.8", testNow, false},
		{"dn differs", ders(p.ecLeaf), "dn:O=Acme,CN=cpe2.example.net", testNow, false},
		{"dn reversed", ders(p.ecLeaf), "dn:CN=cpe1.example.net,O=Acme", testNow, false},
		{"key id differs", ders(p.ecLeaf), "keyid:01020305", testNow, false},
		{"another cert's identity", ders(p.rsaLeaf), "fqdn:cpe1.example.net", testNow, false},
		{"expired", ders(p.expired), "fqdn:old.example.net", testNow, false},
		{"expired, checked in its lifetime", ders(p.expired), "fqdn:old.example.net", testNow.Add(-48 * time.Hour), true},
		{"not yet valid", ders(p.ecLeaf), "fqdn:cpe1.example.net", testNow.Add(-72 * time.Hour), false},
		{"wrong CA", ders(p.wrongCALeaf), "fqdn:cpe1.example.net", testNow, false},
		{"wrong CA with its root as intermediate", ders(p.wrongCALeaf, p.wrongRoot), "fqdn:cpe1.example.net", testNow, false},
		{"no signature key usage", ders(p.noSigKU), "fqdn:enc.example.net", testNow, false},
		{"no certificate", nil, "fqdn:cpe1.example.net", testNow, false},
		{"garbage", [][]byte{{0x30, 0x03, 1, 2, 3}}, "fqdn:cpe1.example.net", testNow, false},
		{"too many", ders(p.ecLeaf, p.inter, p.inter, p.inter, p.inter, p.inter, p.inter, p.inter, p.inter), "fqdn:cpe1.example.net", testNow, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf, err := pool.VerifyChain(tt.certs, MustParseID(tt.id), tt.now)
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				if leaf.Raw == nil || string(leaf.Raw) != string(tt.certs[0]) {
					t.Error("returned certificate is not the end entity")
				}
				return
			}
			if !errors.Is(err, ErrAuthFailed) {
				t.Fatalf("err = %v, want ErrAuthFailed", err)
			}
		})
	}
	// A pool with only the intermediate trusts its leaves without the root.
	ip, err := NewCAPool(p.inter.cert)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ip.VerifyChain(ders(p.interLeaf), MustParseID("fqdn:cpe3.example.net"), testNow); err != nil {
		t.Errorf("intermediate as trust anchor: %v", err)
	}
	if _, err := NewCAPool(p.ecLeaf.cert); err == nil {
		t.Error("end-entity certificate accepted as CA")
	}
	if _, err := NewCAPool(); err == nil {
		t.Error("empty pool accepted")
	}
}

func TestCertReq(t *testing.T) {
	p := getPKI(t)
	pool, _ := NewCAPool(p.ecRoot.cert, p.rsaRoot.cert, p.ecRoot.cert)
	hashes := pool.KeyHashes()
	if len(hashes) != 2 {
		t.Fatalf("%d hashes, want 2 (duplicates dropped)", len(hashes))
	}
	if hashes[0] != KeyHash(sha1.Sum(p.ecRoot.cert.RawSubjectPublicKeyInfo)) {
		t.Error("hash is not SHA-1 of the SubjectPublicKeyInfo")
	}
	data := AppendCertReq(nil, hashes)
	if len(data) != 40 {
		t.Fatalf("CERTREQ data of %d octets", len(data))
	}
	got, err := ParseCertReq(data)
	if err != nil || len(got) != 2 || got[1] != hashes[1] {
		t.Fatalf("ParseCertReq = %x, %v", got, err)
	}
	if !pool.Trusts(got[0]) || pool.Trusts(CAKeyHash(p.wrongRoot.cert)) {
		t.Error("Trusts")
	}
	if got, err := ParseCertReq(nil); err != nil || len(got) != 0 {
		t.Errorf("empty CERTREQ: %v, %v", got, err)
	}
	for _, bad := range [][]byte{make([]byte, 19), make([]byte, 41), make([]byte, 20*(maxCAHashes+1))} {
		if _, err := ParseCertReq(bad); err == nil {
			t.Errorf("ParseCertReq of %d octets succeeded", len(bad))
		}
	}
	id, err := CertID(p.ecLeaf.cert)
	if err != nil || id.String() != "dn:O=Acme, CN=cpe1.example.net" {
		t.Errorf("CertID = %v, %v", id, err)
	}
}
