package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"testing"
)

func sha1Sum(b []byte) []byte { s := sha1.Sum(b); return s[:] }

// AlgorithmIdentifiers as printed in RFC 7427 Appendix A.
var rfc7427AlgIDs = map[string]string{
	"sha256WithRSAEncryption": "300d06092a864886f70d01010b0500",
	"sha384WithRSAEncryption": "300d06092a864886f70d01010c0500",
	"sha512WithRSAEncryption": "300d06092a864886f70d01010d0500",
	"ecdsa-with-sha256":       "300a06082a8648ce3d040302",
	"ecdsa-with-sha384":       "300a06082a8648ce3d040303",
	"ecdsa-with-sha512":       "300a06082a8648ce3d040304",
}

func TestAlgorithmIdentifiers(t *testing.T) {
	for name, got := range map[string][]byte{
		"sha256WithRSAEncryption": algRSA(HashSHA256), "sha384WithRSAEncryption": algRSA(HashSHA384),
		"sha512WithRSAEncryption": algRSA(HashSHA512), "ecdsa-with-sha256": algECDSA(HashSHA256),
		"ecdsa-with-sha384": algECDSA(HashSHA384), "ecdsa-with-sha512": algECDSA(HashSHA512),
	} {
		if hex.EncodeToString(got) != rfc7427AlgIDs[name] {
			t.Errorf("%s = %x, want %s", name, got, rfc7427AlgIDs[name])
		}
	}
	for _, h := range []HashAlg{HashSHA256, HashSHA384, HashSHA512} {
		a, err := parseSigAlg(algRSAPSS(h))
		if err != nil || a.scheme != schemeRSAPSS || a.hash != h.crypto() || a.salt != h.crypto().Size() {
			t.Errorf("PSS %v round trip: %+v, %v", h, a, err)
		}
	}
}

type signCase struct {
	name   string
	key    crypto.Signer
	opts   SignOptions
	method Method
	algID  string // expected AlgorithmIdentifier hex for method 14 ("" = don't check)
}

func signCases(t *testing.T) []signCase {
	p := getPKI(t)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	all := SupportedHashes()
	return []signCase{
		{"ecdsa-p256", p.ecLeaf.key, SignOptions{PeerHashes: all}, MethodDigitalSignature, rfc7427AlgIDs["ecdsa-with-sha256"]},
		{"ecdsa-p384", p.p384Leaf.key, SignOptions{PeerHashes: all}, MethodDigitalSignature, rfc7427AlgIDs["ecdsa-with-sha384"]},
		{"ecdsa-p384-peer-sha256-only", p.p384Leaf.key, SignOptions{PeerHashes: []HashAlg{HashSHA256}}, MethodDigitalSignature, rfc7427AlgIDs["ecdsa-with-sha256"]},
		{"ecdsa-p521", p521, SignOptions{PeerHashes: all}, MethodDigitalSignature, rfc7427AlgIDs["ecdsa-with-sha512"]},
		{"ecdsa-p256-legacy", p.ecLeaf.key, SignOptions{}, MethodECDSA256, ""},
		{"ecdsa-p384-legacy", p.p384Leaf.key, SignOptions{}, MethodECDSA384, ""},
		{"ecdsa-p521-legacy", p521, SignOptions{}, MethodECDSA521, ""},
		{"rsa-pkcs1", p.rsaLeaf.key, SignOptions{PeerHashes: all}, MethodDigitalSignature, rfc7427AlgIDs["sha256WithRSAEncryption"]},
		{"rsa-pkcs1-sha384", p.rsaLeaf.key, SignOptions{PeerHashes: []HashAlg{HashSHA384, 77}}, MethodDigitalSignature, rfc7427AlgIDs["sha384WithRSAEncryption"]},
		{"rsa-pkcs1-no-notify", p.rsaLeaf.key, SignOptions{}, MethodDigitalSignature, rfc7427AlgIDs["sha256WithRSAEncryption"]},
		{"rsa-pss", p.rsaLeaf.key, SignOptions{PeerHashes: all, RSAPSS: true}, MethodDigitalSignature, ""},
		{"ed25519", edKey, SignOptions{PeerHashes: all}, MethodDigitalSignature, "300506032b6570"},
	}
}

func TestSignVerify(t *testing.T) {
	octets := []byte("RealMessage | Nonce | prf(SK_p, IDx')")
	other := getPKI(t).interLeaf.key.Public()
	for _, c := range signCases(t) {
		t.Run(c.name, func(t *testing.T) {
			m, data, err := Sign(c.key, octets, c.opts, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if m != c.method {
				t.Fatalf("method %v, want %v", m, c.method)
			}
			if c.algID != "" {
				n := int(data[0])
				if hex.EncodeToString(data[1:1+n]) != c.algID {
					t.Errorf("AlgorithmIdentifier %x, want %s", data[1:1+n], c.algID)
				}
			}
			if err := VerifySignature(c.key.Public(), m, octets, data); err != nil {
				t.Fatal(err)
			}
			bad := append([]byte(nil), octets...)
			bad[3] ^= 0x80
			if err := VerifySignature(c.key.Public(), m, bad, data); !errors.Is(err, ErrAuthFailed) {
				t.Errorf("modified octets verified: %v", err)
			}
			if err := VerifySignature(other, m, octets, data); !errors.Is(err, ErrAuthFailed) {
				t.Errorf("other key verified: %v", err)
			}
			sig := append([]byte(nil), data...)
			sig[len(sig)-1] ^= 1
			if err := VerifySignature(c.key.Public(), m, octets, sig); !errors.Is(err, ErrAuthFailed) {
				t.Errorf("modified signature verified: %v", err)
			}
			for _, cut := range []int{0, 1, len(data) / 2, len(data) - 1} {
				if err := VerifySignature(c.key.Public(), m, octets, data[:cut]); !errors.Is(err, ErrAuthFailed) {
					t.Errorf("signature cut to %d verified: %v", cut, err)
				}
			}
			if err := VerifySignature(c.key.Public(), MethodPSK, octets, data); !errors.Is(err, ErrAuthFailed) {
				t.Errorf("verified as PSK: %v", err)
			}
		})
	}
}

func TestVerifyLegacyAndRefusals(t *testing.T) {
	p := getPKI(t)
	octets := []byte("legacy octets")
	rk := p.rsaLeaf.key.(*rsa.PrivateKey)

	// Method 1: RSASSA-PKCS1-v1_5 with SHA-1, as strongSwan's AUTH_RSA.
	sig, err := rsa.SignPKCS1v15(rand.Reader, rk, crypto.SHA1, sha1Sum(octets))
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifySignature(&rk.PublicKey, MethodRSA, octets, sig); err != nil {
		t.Errorf("method 1: %v", err)
	}
	// The same SHA-1 signature inside method 14 is refused.
	data := append([]byte{15}, mustHex(t, "300d06092a864886f70d0101050500")...)
	if err := VerifySignature(&rk.PublicKey, MethodDigitalSignature, octets, append(data, sig...)); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("sha1WithRSAEncryption accepted: %v", err)
	}
	// A P-256 key under the P-384 legacy method.
	_, raw, err := Sign(p.ecLeaf.key, octets, SignOptions{}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifySignature(p.ecLeaf.key.Public(), MethodECDSA384, octets, raw); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("curve mismatch accepted: %v", err)
	}
	// An RSA AlgorithmIdentifier with an ECDSA key.
	_, ecData, _ := Sign(p.ecLeaf.key, octets, SignOptions{PeerHashes: SupportedHashes()}, rand.Reader)
	n := int(ecData[0])
	forged := append([]byte{byte(len(algRSA(HashSHA256)))}, algRSA(HashSHA256)...)
	forged = append(forged, ecData[1+n:]...)
	if err := VerifySignature(p.ecLeaf.key.Public(), MethodDigitalSignature, octets, forged); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("RSA algorithm with ECDSA key accepted: %v", err)
	}
	// Peer without any hash we can use.
	if _, _, err := Sign(p.ecLeaf.key, octets, SignOptions{PeerHashes: []HashAlg{HashSHA1}}, rand.Reader); err == nil {
		t.Error("signed for a SHA-1-only peer")
	}
	if _, _, err := Sign(p.rsaLeaf.key, octets, SignOptions{PeerHashes: []HashAlg{HashIdentity}}, rand.Reader); err == nil {
		t.Error("RSA signed for an identity-hash-only peer")
	}
	// RSA-PSS without parameters (SHA-1 defaults), with an MGF1 hash
	// different from the message hash, and with SHA-1.
	pss := func(h, mgfHash asn1.ObjectIdentifier) []byte {
		ha := pkix.AlgorithmIdentifier{Algorithm: h, Parameters: asn1.NullRawValue}
		ma := pkix.AlgorithmIdentifier{Algorithm: mgfHash, Parameters: asn1.NullRawValue}
		params := pssParams{Hash: ha, MGF: pkix.AlgorithmIdentifier{Algorithm: oidMGF1, Parameters: asn1.RawValue{FullBytes: mustMarshal(ma)}}, SaltLength: 32, TrailerField: 1}
		return mustMarshal(pkix.AlgorithmIdentifier{Algorithm: oidRSAPSS, Parameters: asn1.RawValue{FullBytes: mustMarshal(params)}})
	}
	if _, err := parseSigAlg(pss(oidSHA256, oidSHA256)); err != nil {
		t.Errorf("PSS SHA-256/MGF1-SHA-256 refused: %v", err)
	}
	for name, a := range map[string][]byte{
		"default params": mustHex(t, "300b06092a864886f70d01010a"),
		"mgf1 sha384":    pss(oidSHA256, oidSHA384),
		"sha1":           pss(oidSHA1, oidSHA1),
		"trailing data":  append(algRSA(HashSHA256), 0),
		"garbage":        {0x30, 0x03, 0x06, 0x01},
	} {
		if _, err := parseSigAlg(a); err == nil {
			t.Errorf("AlgorithmIdentifier with %s accepted", name)
		}
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHashAlgorithms(t *testing.T) {
	data := AppendHashAlgorithms(nil, SupportedHashes())
	if hex.EncodeToString(data) != "0002000300040005" {
		t.Errorf("notify data %x", data)
	}
	got, err := ParseHashAlgorithms(data)
	if err != nil || len(got) != 4 || got[0] != HashSHA256 || got[3] != HashIdentity {
		t.Errorf("ParseHashAlgorithms = %v, %v", got, err)
	}
	for _, bad := range [][]byte{nil, {0}, {0, 2, 0}, make([]byte, 2*maxHashAlgs+2)} {
		if _, err := ParseHashAlgorithms(bad); err == nil {
			t.Errorf("ParseHashAlgorithms(%x) succeeded", bad)
		}
	}
	if HashSHA384.String() != "SHA2_384" || HashAlg(9).String() != "HASH(9)" {
		t.Error("HashAlg.String")
	}
}
