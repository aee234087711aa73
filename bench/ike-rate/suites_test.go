package ikerate

import (
	"testing"

	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/transform"
)

func TestParseIKE(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want suite.Suite
	}{
		{"aes128-sha256-x25519", suite.Suite{Encr: transform.EncrAESCBC, KeyBits: 128, PRF: transform.PRFHMACSHA2256, Integ: transform.IntegHMACSHA256128, DH: transform.DHCurve25519}},
		{"aes256-sha384-modp2048", suite.Suite{Encr: transform.EncrAESCBC, KeyBits: 256, PRF: transform.PRFHMACSHA2384, Integ: transform.IntegHMACSHA384192, DH: transform.DHMODP2048}},
		{"AES128GCM16-PRFSHA256-ECP256", suite.Suite{Encr: transform.EncrAESGCM16, KeyBits: 128, PRF: transform.PRFHMACSHA2256, DH: transform.DHECP256}},
		{"chacha20poly1305-prfsha512-ecp384", suite.Suite{Encr: transform.EncrChaCha20Poly1305, PRF: transform.PRFHMACSHA2512, DH: transform.DHECP384}},
	} {
		got, err := ParseIKE(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseIKE(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "aes128-sha256", "aes128-sha256-x25519-x25519", "aes128-prfsha256-x25519",
		"aes128gcm16-sha256-x25519", "des-sha256-x25519", "aes128-md5-x25519", "aes128-sha256-modp1024"} {
		if s, err := ParseIKE(bad); err == nil {
			t.Errorf("ParseIKE(%q) accepted: %v", bad, s)
		}
	}
}

func TestParseLists(t *testing.T) {
	ikes, err := ParseIKEList("aes128-sha256-x25519, aes128gcm16-prfsha256-ecp256")
	if err != nil || len(ikes) != 2 || ikes[1].DH != transform.DHECP256 {
		t.Fatalf("ParseIKEList: %v %v", ikes, err)
	}
	esps, err := ParseESPList("aes128gcm16,aes256-sha256")
	if err != nil || len(esps) != 2 || esps[0] != (transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128}) ||
		esps[1].Integ != transform.IntegHMACSHA256128 {
		t.Fatalf("ParseESPList: %v %v", esps, err)
	}
	if _, err := ParseESPList("aes128gcm16,rot13"); err == nil {
		t.Fatal("unknown ESP name accepted")
	}
}

func FuzzParseIKE(f *testing.F) {
	for _, s := range []string{"aes128-sha256-x25519", "aes128gcm16-prfsha256-ecp256", "a-b-c", "--", "chacha20poly1305-prf-x25519"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseIKE(s)
		if err != nil {
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("%q parsed to an invalid suite %v: %v", s, got, err)
		}
	})
}
