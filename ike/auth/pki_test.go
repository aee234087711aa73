package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"
)

// A test PKI generated once per test binary: two unrelated root CAs (ECDSA
// and RSA), an intermediate under the ECDSA root, and end entities with
// every identity binding, plus an expired certificate and one without the
// digitalSignature key usage.

var testNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

type testCert struct {
	cert *x509.Certificate
	key  crypto.Signer
}

type testPKI struct {
	ecRoot, rsaRoot, inter      testCert
	ecLeaf, p384Leaf, rsaLeaf   testCert
	interLeaf, expired, noSigKU testCert
	wrongCALeaf                 testCert // same subject as ecLeaf, issued by an unrelated CA
	wrongRoot                   testCert
}

var (
	pkiOnce sync.Once
	pki     *testPKI
	pkiErr  error
)

func getPKI(tb testing.TB) *testPKI {
	tb.Helper()
	pkiOnce.Do(func() { pki, pkiErr = makePKI() })
	if pkiErr != nil {
		tb.Fatal(pkiErr)
	}
	return pki
}

var serial int64 = 1000

type certOpts struct {
	subject   pkix.Name
	ca        bool
	dns       []string
	emails    []string
	ips       []net.IP
	notBefore time.Time
	notAfter  time.Time
	ku        x509.KeyUsage
	skid      []byte
}

func issue(o certOpts, key crypto.Signer, parent *testCert) (testCert, error) {
	serial++
	if o.notBefore.IsZero() {
		o.notBefore = testNow.Add(-24 * time.Hour)
		if o.ca {
			o.notBefore = testNow.Add(-1000 * 24 * time.Hour)
		}
	}
	if o.notAfter.IsZero() {
		o.notAfter = testNow.Add(365 * 24 * time.Hour)
	}
	if o.ku == 0 {
		o.ku = x509.KeyUsageDigitalSignature
		if o.ca {
			o.ku = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               o.subject,
		NotBefore:             o.notBefore,
		NotAfter:              o.notAfter,
		KeyUsage:              o.ku,
		BasicConstraintsValid: true,
		IsCA:                  o.ca,
		DNSNames:              o.dns,
		EmailAddresses:        o.emails,
		IPAddresses:           o.ips,
		SubjectKeyId:          o.skid,
	}
	parentCert, parentKey := tmpl, key
	if parent != nil {
		parentCert, parentKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), parentKey)
	if err != nil {
		return testCert{}, err
	}
	c, err := x509.ParseCertificate(der)
	return testCert{cert: c, key: key}, err
}

func makePKI() (*testPKI, error) {
	p := &testPKI{}
	ec := func(c elliptic.Curve) crypto.Signer { k, _ := ecdsa.GenerateKey(c, rand.Reader); return k }
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	rsaCAKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	steps := []struct {
		dst    *testCert
		o      certOpts
		key    crypto.Signer
		parent *testCert
	}{
		{&p.ecRoot, certOpts{subject: pkix.Name{Organization: []string{"Acme"}, CommonName: "Acme Root CA"}, ca: true}, ec(elliptic.P256()), nil},
		{&p.rsaRoot, certOpts{subject: pkix.Name{Organization: []string{"Acme"}, CommonName: "Acme RSA CA"}, ca: true}, rsaCAKey, nil},
		{&p.wrongRoot, certOpts{subject: pkix.Name{Organization: []string{"Evil"}, CommonName: "Acme Root CA"}, ca: true}, ec(elliptic.P256()), nil},
		{&p.inter, certOpts{subject: pkix.Name{Organization: []string{"Acme"}, CommonName: "Acme CPE CA"}, ca: true}, ec(elliptic.P384()), &p.ecRoot},
		{&p.ecLeaf, certOpts{
			subject: pkix.Name{Organization: []string{"Acme"}, CommonName: "cpe1.example.net"},
			dns:     []string{"cpe1.example.net"}, emails: []string{"cpe1@example.net"},
			ips: []net.IP{net.ParseIP("192.0.2.7"), net.ParseIP("2001:db8::7")}, skid: []byte{1, 2, 3, 4},
		}, ec(elliptic.P256()), &p.ecRoot},
		{&p.p384Leaf, certOpts{subject: pkix.Name{CommonName: "hub.example.net"}, dns: []string{"hub.example.net"}}, ec(elliptic.P384()), &p.ecRoot},
		{&p.rsaLeaf, certOpts{subject: pkix.Name{Organization: []string{"Acme"}, CommonName: "cpe2.example.net"}, dns: []string{"cpe2.example.net"}}, rsaKey, &p.rsaRoot},
		{&p.interLeaf, certOpts{subject: pkix.Name{CommonName: "cpe3.example.net"}, dns: []string{"cpe3.example.net"}}, ec(elliptic.P256()), &p.inter},
		{&p.expired, certOpts{
			subject: pkix.Name{CommonName: "old.example.net"}, dns: []string{"old.example.net"},
			notBefore: testNow.Add(-400 * 24 * time.Hour), notAfter: testNow.Add(-24 * time.Hour),
		}, ec(elliptic.P256()), &p.ecRoot},
		{&p.noSigKU, certOpts{subject: pkix.Name{CommonName: "enc.example.net"}, dns: []string{"enc.example.net"}, ku: x509.KeyUsageKeyEncipherment}, ec(elliptic.P256()), &p.ecRoot},
		{&p.wrongCALeaf, certOpts{subject: pkix.Name{Organization: []string{"Acme"}, CommonName: "cpe1.example.net"}, dns: []string{"cpe1.example.net"}}, ec(elliptic.P256()), &p.wrongRoot},
	}
	for _, s := range steps {
		c, err := issue(s.o, s.key, s.parent)
		if err != nil {
			return nil, err
		}
		*s.dst = c
	}
	return p, nil
}

func ders(cs ...testCert) [][]byte {
	out := make([][]byte, len(cs))
	for i, c := range cs {
		out[i] = c.cert.Raw
	}
	return out
}
