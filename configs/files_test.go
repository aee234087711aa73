package configs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// pki is a throwaway CA with certificates for the tests.
type pki struct {
	dir    string
	caKey  crypto.Signer
	caCert *x509.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mpsa test CA"},
		NotBefore: testNow.Add(-24 * time.Hour), NotAfter: testNow.Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	p := &pki{dir: t.TempDir(), caKey: k, caCert: c}
	p.write(t, "ca.crt", 0o644, pemBlock("CERTIFICATE", der))
	return p
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func (p *pki) write(t *testing.T, name string, mode os.FileMode, b []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // not subject to the umask
		t.Fatal(err)
	}
	return path
}

// issue writes name.crt and name.key (0600) for a leaf certificate.
func (p *pki) issue(t *testing.T, name string, subj pkix.Name, dns []string, notBefore, notAfter time.Time, signer crypto.Signer) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	issuerKey, issuer := p.caKey, p.caCert
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: subj, DNSNames: dns,
		IPAddresses: []net.IP{net.ParseIP("192.0.2.1")}, NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature}
	if signer != nil { // self-signed by another key: does not chain to the CA
		issuerKey, issuer = signer, tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, k.Public(), issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	p.write(t, name+".crt", 0o644, pemBlock("CERTIFICATE", der))
	kd, _ := x509.MarshalPKCS8PrivateKey(k)
	p.write(t, name+".key", 0o600, pemBlock("PRIVATE KEY", kd))
}

func errAt(t *testing.T, err error, path, phrase string) {
	t.Helper()
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("got %v, want an error at %s", err, path)
	}
	for _, e := range es {
		if e.Path == path && strings.Contains(e.Msg, phrase) {
			return
		}
	}
	t.Fatalf("got %v\nwant %s: ...%s...", err, path, phrase)
}

func TestConfigFilePermissions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mode    os.FileMode
		secrets bool
		phrase  string // "" means accepted
	}{
		{"private with PSKs", 0o600, true, ""},
		{"group-readable with PSKs", 0o640, true, ""},
		{"world-readable with PSKs", 0o644, true, "not readable by others since it holds PSKs, got mode 0644"},
		{"world-readable without PSKs", 0o644, false, ""},
		{"world-writable", 0o666, false, "not writable by others"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := Source{File: "/etc/mpsa/hub.yaml", FileMode: tc.mode, FileHasSecrets: tc.secrets}
			_, _, err := BuildHub(hubTree(), src)
			if tc.phrase == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			errAt(t, err, "/etc/mpsa/hub.yaml", tc.phrase)
		})
	}
}

func TestTreeHasInlineSecrets(t *testing.T) {
	if !TreeHasInlineSecrets(hubTree()) || !TreeHasInlineSecrets(cpeTree()) {
		t.Error("PSKs not found")
	}
	tree := cpeTree()
	setPath(t, tree, "credentials.psk", del)
	setPath(t, tree, "credentials.psk_file", "cpe.psk")
	if TreeHasInlineSecrets(tree) {
		t.Error("psk_file counted as an inline secret")
	}
	if !TreeHasInlineSecrets(map[string]any{"cpes": []any{map[any]any{"PSK": "x"}}}) {
		t.Error("PSK in a map[any]any list entry missed")
	}
}

func TestPSKFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode, content string) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
	}
	write("good.psk", 0o640, "0x000102030405060708090a0b0c0d0e0f\n")
	write("open.psk", 0o644, psk1)
	write("short.psk", 0o600, "tiny\n")
	write("huge.psk", 0o600, strings.Repeat("x", MaxPSKFileSize+1))
	write("shared.psk", 0o602, psk1)
	os.Mkdir(filepath.Join(dir, "dir.psk"), 0o700)
	src := Source{File: filepath.Join(dir, "hub.yaml"), FileMode: 0o644}

	tree := hubTree()
	setPath(t, tree, "cpes[0].psk", del)
	setPath(t, tree, "cpes[0].psk_file", "good.psk") // relative to the config file
	h, _, err := BuildHub(tree, src)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.CPEs[0].PSK.Bytes(); len(got) != 16 || got[15] != 15 {
		t.Errorf("psk from file: %x", got)
	}
	if h.CPEs[0].PSKFile != filepath.Join(dir, "good.psk") {
		t.Errorf("psk_file not made absolute: %q", h.CPEs[0].PSKFile)
	}

	for _, tc := range []struct{ file, phrase string }{
		{"open.psk", "not readable by others, got mode 0644"},
		{"short.psk", "got 4 octets"},
		{"huge.psk", "at most 4096 octets"},
		{"shared.psk", "not writable by others"},
		{"missing.psk", "no such file"},
		{"dir.psk", "regular file"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			tree := hubTree()
			setPath(t, tree, "cpes[0].psk", del)
			setPath(t, tree, "cpes[0].psk_file", tc.file)
			_, _, err := BuildHub(tree, src)
			errAt(t, err, "cpes[0].psk_file", tc.phrase)
			if strings.Contains(err.Error(), psk1) {
				t.Errorf("error leaks the PSK: %v", err)
			}
		})
	}

	ctree := cpeTree()
	setPath(t, ctree, "credentials", map[string]any{"psk_file": filepath.Join(dir, "open.psk")})
	_, _, err = BuildCPE(ctree, Source{})
	errAt(t, err, "credentials.psk_file", "not readable by others")
}

func certHub(t *testing.T, p *pki) map[string]any {
	tree := hubTree()
	setPath(t, tree, "credentials", map[string]any{
		"certificate": filepath.Join(p.dir, "hub.crt"), "private_key": filepath.Join(p.dir, "hub.key"), "ca": filepath.Join(p.dir, "ca.crt")})
	setPath(t, tree, "cpes[0].psk", del) // cpe1 uses its certificate
	return tree
}

func TestCertificates(t *testing.T) {
	p := newPKI(t)
	p.issue(t, "hub", pkix.Name{CommonName: "hub"}, []string{"hub.example.net"}, testNow.Add(-time.Hour), testNow.Add(time.Hour), nil)
	p.issue(t, "cpe", pkix.Name{Country: []string{"JP"}, Organization: []string{"Acme"}, CommonName: "cpe1"}, nil, testNow.Add(-time.Hour), testNow.Add(time.Hour), nil)
	p.issue(t, "old", pkix.Name{CommonName: "hub"}, []string{"hub.example.net"}, testNow.Add(-48*time.Hour), testNow.Add(-24*time.Hour), nil)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.issue(t, "rogue", pkix.Name{CommonName: "hub"}, []string{"hub.example.net"}, testNow.Add(-time.Hour), testNow.Add(time.Hour), other)
	src := Source{Now: testNow}

	h, warns, err := BuildHub(certHub(t, p), src)
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings %v", warns)
	}
	m := h.Credentials.Material()
	if m == nil || m.Leaf().Subject.CommonName != "hub" || len(m.CAs) != 1 || m.Key == nil {
		t.Fatalf("material %v", m)
	}
	if h.CPEs[0].Auth != AuthCert {
		t.Errorf("cpe auth %q", h.CPEs[0].Auth)
	}

	t.Run("cpe with DN identity", func(t *testing.T) {
		tree := cpeTree()
		setPath(t, tree, "identity", "dn:C=JP,O=Acme,CN=cpe1")
		setPath(t, tree, "credentials", map[string]any{"certificate": "cpe.crt", "private_key": "cpe.key", "ca": "ca.crt"})
		c, _, err := BuildCPE(tree, Source{File: filepath.Join(p.dir, "cpe.yaml"), FileMode: 0o600, Now: testNow})
		if err != nil {
			t.Fatal(err)
		}
		if c.Credentials.Certificate != filepath.Join(p.dir, "cpe.crt") || c.Credentials.Material() == nil {
			t.Errorf("credentials %+v", c.Credentials)
		}
	})

	bad := []struct {
		name   string
		mutate func(t *testing.T, tree map[string]any)
		path   string
		phrase string
	}{
		{"identity not in certificate", func(t *testing.T, tr map[string]any) { setPath(t, tr, "identity", "fqdn:other.example.net") }, "identity", "identity the certificate carries"},
		{"expired", func(t *testing.T, tr map[string]any) {
			setPath(t, tr, "credentials.certificate", filepath.Join(p.dir, "old.crt"))
			setPath(t, tr, "credentials.private_key", filepath.Join(p.dir, "old.key"))
		}, "credentials.certificate", "valid now (2026-06-01T12:00:00Z), got one valid from"},
		{"key of another certificate", func(t *testing.T, tr map[string]any) {
			setPath(t, tr, "credentials.private_key", filepath.Join(p.dir, "cpe.key"))
		}, "credentials.private_key", "expected the key of the certificate"},
		{"key readable by group", func(t *testing.T, tr map[string]any) {
			os.Chmod(filepath.Join(p.dir, "hub.key"), 0o640)
			t.Cleanup(func() { os.Chmod(filepath.Join(p.dir, "hub.key"), 0o600) })
		}, "credentials.private_key", "not readable by group or others, got mode 0640"},
		{"CA world-writable", func(t *testing.T, tr map[string]any) {
			os.Chmod(filepath.Join(p.dir, "ca.crt"), 0o646)
			t.Cleanup(func() { os.Chmod(filepath.Join(p.dir, "ca.crt"), 0o644) })
		}, "credentials.ca", "not writable by others"},
		{"certificate is a key", func(t *testing.T, tr map[string]any) {
			setPath(t, tr, "credentials.certificate", p.write(t, "key-as-cert.pem", 0o644, mustRead(t, filepath.Join(p.dir, "hub.key"))))
		}, "credentials.certificate", "expected PEM X.509 certificates"},
		{"key is a certificate", func(t *testing.T, tr map[string]any) {
			setPath(t, tr, "credentials.private_key", p.write(t, "cert-as-key", 0o600, mustRead(t, filepath.Join(p.dir, "hub.crt"))))
		}, "credentials.private_key", "expected an unencrypted PKCS#8"},
		{"encrypted key", func(t *testing.T, tr map[string]any) {
			setPath(t, tr, "credentials.private_key", p.write(t, "enc.key", 0o600, pemBlock("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3})))
		}, "credentials.private_key", "encrypted"},
		{"weak RSA key", func(t *testing.T, tr map[string]any) {
			k, _ := rsa.GenerateKey(rand.Reader, 1024)
			setPath(t, tr, "credentials.private_key", p.write(t, "rsa.key", 0o600, pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k))))
		}, "credentials.private_key", "expected an RSA key of at least 2048 bits"},
		{"missing CA", func(t *testing.T, tr map[string]any) {
			setPath(t, tr, "credentials.ca", filepath.Join(p.dir, "nope.crt"))
		}, "credentials.ca", "no such file"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			tree := certHub(t, p)
			tc.mutate(t, tree)
			_, _, err := BuildHub(tree, src)
			errAt(t, err, tc.path, tc.phrase)
		})
	}

	t.Run("not issued by the CA", func(t *testing.T) {
		tree := certHub(t, p)
		setPath(t, tree, "credentials.certificate", filepath.Join(p.dir, "rogue.crt"))
		setPath(t, tree, "credentials.private_key", filepath.Join(p.dir, "rogue.key"))
		_, warns, err := BuildHub(tree, src)
		if err != nil {
			t.Fatal(err)
		}
		if len(warns) != 1 || warns[0].Path != "credentials.certificate" || !strings.Contains(warns[0].Msg, "does not verify against credentials.ca") {
			t.Errorf("warnings %v", warns)
		}
	})
}

func mustRead(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKeyExportFiles(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.csv")
	os.WriteFile(open, nil, 0o600)
	os.Chmod(open, 0o644)
	for _, tc := range []struct {
		ike, phrase string
	}{
		{filepath.Join(dir, "new.csv"), ""},
		{open, "not readable by group or others (it receives keys), got mode 0644"},
		{filepath.Join(dir, "missing", "x.csv"), "existing directory"},
		{dir, "regular file"},
	} {
		tree := cpeTree()
		setPath(t, tree, "key_export.ike", tc.ike)
		_, _, err := BuildCPE(tree, Source{})
		if tc.phrase == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.ike, err)
			}
			continue
		}
		errAt(t, err, "key_export.ike", tc.phrase)
	}
}

func TestStateDirMustBeADirectory(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o600)
	tree := hubTree()
	setPath(t, tree, "state_dir", f)
	_, _, err := BuildHub(tree, Source{})
	errAt(t, err, "state_dir", "expected a directory")
}
