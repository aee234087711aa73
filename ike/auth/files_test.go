package auth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // WriteFile's mode is subject to umask
		t.Fatal(err)
	}
	return p
}

func TestLoadPSKFile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content string
		mode    os.FileMode
		want    []byte
	}{
		{"text", "interop-psk-0123456789\n", 0o600, []byte("interop-psk-0123456789")},
		{"crlf", "interop-psk-0123456789\r\n", 0o400, []byte("interop-psk-0123456789")},
		{"hex", "0x000102030405060708090a0b0c0d0e0f", 0o600, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}},
		{"group readable", "interop-psk-0123456789", 0o640, nil},
		{"world readable", "interop-psk-0123456789", 0o604, nil},
		{"short", "short", 0o600, nil},
		{"bad hex", "0xzz0102030405060708090a0b0c0d0e0f", 0o600, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LoadPSKFile(writeFile(t, "psk", []byte(tc.content), tc.mode))
			if tc.want == nil {
				if err == nil {
					t.Fatalf("loaded %q", got)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Fatalf("got %x, %v", got, err)
			}
		})
	}
	if _, err := LoadPSKFile(t.TempDir()); err == nil {
		t.Error("loaded a directory")
	}
	if _, err := LoadPSKFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("loaded a missing file")
	}
}

func TestLoadKeysAndCerts(t *testing.T) {
	p := getPKI(t)
	ecDER, _ := x509.MarshalECPrivateKey(p.ecLeaf.key.(*ecdsa.PrivateKey))
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(p.rsaLeaf.key)
	pkcs1 := x509.MarshalPKCS1PrivateKey(p.rsaLeaf.key.(*rsa.PrivateKey))
	for _, tc := range []struct {
		name string
		data []byte
		pub  any
	}{
		{"sec1 pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}), p.ecLeaf.key.Public()},
		{"pkcs8 pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), p.rsaLeaf.key.Public()},
		{"pkcs1 pem", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: pkcs1}), p.rsaLeaf.key.Public()},
		{"pkcs8 der", pkcs8, p.rsaLeaf.key.Public()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := LoadPrivateKeyFile(writeFile(t, "key", tc.data, 0o600))
			if err != nil {
				t.Fatal(err)
			}
			if !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(tc.pub) {
				t.Error("loaded a different key")
			}
			if _, err := LoadPrivateKeyFile(writeFile(t, "key", tc.data, 0o644)); err == nil || !strings.Contains(err.Error(), "chmod 600") {
				t.Errorf("world-readable key: %v", err)
			}
		})
	}
	enc := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: ecDER})
	if _, err := LoadPrivateKeyFile(writeFile(t, "key", enc, 0o600)); err == nil {
		t.Error("encrypted key loaded")
	}
	if _, err := LoadPrivateKeyFile(writeFile(t, "key", []byte("not a key"), 0o600)); err == nil {
		t.Error("garbage loaded as key")
	}

	var chain []byte
	for _, c := range []testCert{p.interLeaf, p.inter} {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw})...)
	}
	chain = append([]byte("# comment\n"), chain...)
	certs, err := LoadCertificatesFile(writeFile(t, "chain.pem", chain, 0o644))
	if err != nil || len(certs) != 2 || !certs[1].Equal(p.inter.cert) {
		t.Fatalf("LoadCertificatesFile = %d certs, %v", len(certs), err)
	}
	certs, err = LoadCertificatesFile(writeFile(t, "leaf.der", p.ecLeaf.cert.Raw, 0o644))
	if err != nil || len(certs) != 1 {
		t.Fatalf("DER certificate: %v", err)
	}
	if _, err := LoadCertificatesFile(writeFile(t, "x", []byte("nothing"), 0o644)); err == nil {
		t.Error("garbage loaded as certificate")
	}
	pool, err := LoadCAPoolFiles(writeFile(t, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.ecRoot.cert.Raw}), 0o644))
	if err != nil || !pool.Trusts(CAKeyHash(p.ecRoot.cert)) {
		t.Fatalf("LoadCAPoolFiles: %v", err)
	}
}
