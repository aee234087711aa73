package auth

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/transform"
)

// TestOpenSSLCrossCheck builds a PKI with the openssl CLI (an ECDSA P-384 CA
// and an RSA end entity), loads it with this package's file loaders,
// validates the chain, and checks signatures both ways: openssl verifies the
// signatures Sign makes (PKCS#1 v1.5, PSS, ECDSA), and VerifySignature
// accepts signatures openssl makes. It also compares the CERTREQ key hash
// with openssl's SHA-1 of the DER public key.
func TestOpenSSLCrossCheck(t *testing.T) {
	openssl := testenv.Binary(t, "openssl", "apt-get install openssl")
	dir := t.TempDir()
	path := func(n string) string { return filepath.Join(dir, n) }
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(openssl, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	os.WriteFile(path("leaf.ext"), []byte("subjectAltName=DNS:cpe5.example.net,IP:192.0.2.5\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n"), 0o600)
	run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", "ca.key")
	run("req", "-x509", "-new", "-key", "ca.key", "-sha384", "-days", "30", "-subj", "/O=Acme/CN=Acme OpenSSL CA",
		"-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", "ca.pem")
	run("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "leaf.key")
	run("req", "-new", "-key", "leaf.key", "-subj", "/C=CH/O=Acme/CN=cpe5", "-out", "leaf.csr")
	run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-sha384", "-days", "10",
		"-extfile", "leaf.ext", "-out", "leaf.pem")
	run("pkey", "-in", "leaf.key", "-pubout", "-out", "leaf.pub")
	run("rsa", "-in", "leaf.key", "-traditional", "-out", "leaf.pkcs1.key")
	run("ec", "-in", "ca.key", "-out", "ca.sec1.key")
	for _, k := range []string{"leaf.key", "leaf.pkcs1.key", "ca.key", "ca.sec1.key"} {
		os.Chmod(path(k), 0o600)
	}

	pool, err := LoadCAPoolFiles(path("ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	leafCerts, err := LoadCertificatesFile(path("leaf.pem"))
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := LoadPrivateKeyFile(path("leaf.key"))
	if err != nil {
		t.Fatal(err)
	}
	if k1, err := LoadPrivateKeyFile(path("leaf.pkcs1.key")); err != nil || !k1.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(leafKey.Public()) {
		t.Errorf("PKCS#1 key: %v", err)
	}
	caKey, err := LoadPrivateKeyFile(path("ca.sec1.key"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, id := range []string{"fqdn:cpe5.example.net", "ipv4:192.0.2.5", "dn:C=CH,O=Acme,CN=cpe5"} {
		if _, err := pool.VerifyChain([][]byte{leafCerts[0].Raw}, MustParseID(id), now); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
	if _, err := pool.VerifyChain([][]byte{leafCerts[0].Raw}, MustParseID("dn:CN=cpe5,O=Acme,C=CH"), now); err == nil {
		t.Error("DN in RFC 4514 (reversed) order matched")
	}

	// CERTREQ hash against openssl's SHA-1 of the DER SubjectPublicKeyInfo.
	run("pkey", "-in", "ca.key", "-pubout", "-outform", "DER", "-out", "ca.spki.der")
	out := run("dgst", "-sha1", "-r", "ca.spki.der")
	h := CAKeyHash(mustCert(t, path("ca.pem")))
	if !strings.HasPrefix(out, hex.EncodeToString(h[:])) {
		t.Errorf("CAKeyHash %x, openssl %s", h, out)
	}

	// Our signatures, verified by openssl.
	octets := []byte("InitiatorSignedOctets for the openssl cross-check")
	os.WriteFile(path("octets"), octets, 0o600)
	for _, tc := range []struct {
		name   string
		signer crypto.Signer
		opts   SignOptions
		args   []string
	}{
		{"rsa-pkcs1-sha256", leafKey, SignOptions{PeerHashes: []HashAlg{HashSHA256}}, []string{"-sha256", "-verify", "leaf.pub"}},
		{"rsa-pkcs1-sha512", leafKey, SignOptions{PeerHashes: []HashAlg{HashSHA512}}, []string{"-sha512", "-verify", "leaf.pub"}},
		{"rsa-pss-sha256", leafKey, SignOptions{PeerHashes: []HashAlg{HashSHA256}, RSAPSS: true},
			[]string{"-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32", "-verify", "leaf.pub"}},
		{"ecdsa-p384-sha384", caKey, SignOptions{PeerHashes: SupportedHashes()}, []string{"-sha384", "-verify", "ca.spki.der", "-keyform", "DER"}},
	} {
		t.Run("openssl-verifies-"+tc.name, func(t *testing.T) {
			_, data, err := Sign(tc.signer, octets, tc.opts, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			n := int(data[0])
			os.WriteFile(path("sig"), data[1+n:], 0o600)
			os.WriteFile(path("alg.der"), data[1:1+n], 0o600)
			args := append([]string{"dgst"}, tc.args...)
			if out := run(append(args, "-signature", "sig", "octets")...); !strings.Contains(out, "Verified OK") {
				t.Errorf("openssl: %s", out)
			}
			if tc.opts.RSAPSS {
				parsed := run("asn1parse", "-inform", "DER", "-in", "alg.der")
				for _, want := range []string{"rsassaPss", "sha256", "mgf1"} {
					if !strings.Contains(parsed, want) {
						t.Errorf("openssl asn1parse of our RSASSA-PSS AlgorithmIdentifier lacks %s:\n%s", want, parsed)
					}
				}
			}
		})
	}

	// openssl's signatures, verified here.
	for _, tc := range []struct {
		name string
		alg  []byte
		args []string
		pub  crypto.PublicKey
	}{
		{"rsa-pkcs1-sha384", algRSA(HashSHA384), []string{"-sha384", "-sign", "leaf.key"}, leafCerts[0].PublicKey},
		{"rsa-pss-sha512", algRSAPSS(HashSHA512), []string{"-sha512", "-sign", "leaf.key", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:64"}, leafCerts[0].PublicKey},
		{"ecdsa-sha384", algECDSA(HashSHA384), []string{"-sha384", "-sign", "ca.key"}, caKey.Public()},
	} {
		t.Run("verifies-openssl-"+tc.name, func(t *testing.T) {
			run(append(append([]string{"dgst"}, tc.args...), "-out", "osig", "octets")...)
			sig, _ := os.ReadFile(path("osig"))
			data := append(append([]byte{byte(len(tc.alg))}, tc.alg...), sig...)
			if err := VerifySignature(tc.pub, MethodDigitalSignature, octets, data); err != nil {
				t.Error(err)
			}
			if err := VerifySignature(tc.pub, MethodDigitalSignature, append(bytes.Clone(octets), 0), data); err == nil {
				t.Error("verified over different octets")
			}
		})
	}

	// End to end: the CPE signs with the openssl-made key and chain, the hub
	// verifies against the openssl-made CA.
	prf, _ := suite.NewPRF(transform.PRFHMACSHA2256)
	local := Local{ID: MustParseID("fqdn:cpe5.example.net"), Signer: leafKey, Certs: leafCerts}
	if err := local.Validate(); err != nil {
		t.Fatal(err)
	}
	m, data, err := local.Authenticate(prf, octets, nil, SupportedHashes(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := (&Peer{CAs: pool}).Verify(prf, local.ID, m, data, octets, local.CertPayloads(), now); err != nil {
		t.Error(err)
	}
}

func mustCert(t *testing.T, p string) *x509.Certificate {
	t.Helper()
	c, err := LoadCertificatesFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return c[0]
}
