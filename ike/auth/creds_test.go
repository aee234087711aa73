package auth

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/transform"
)

// TestAuthenticateVerify runs both halves of IKE_AUTH's authentication: the
// local side computes AUTH with its credential, the remote side looks the
// identity up and verifies.
func TestAuthenticateVerify(t *testing.T) {
	p := getPKI(t)
	prf, _ := suite.NewPRF(transform.PRFHMACSHA2256)
	psk := []byte("interop-psk-0123456789")
	pool, _ := NewCAPool(p.ecRoot.cert, p.rsaRoot.cert)
	lookup := Static(
		Rule{MustParsePattern("fqdn:psk.example.net"), &Peer{PSK: psk, Tag: "psk-group"}},
		Rule{MustParsePattern("fqdn:*.example.net"), &Peer{CAs: pool, Tag: "cert-group"}},
		Rule{MustParsePattern("dn:O=Acme,CN=*"), &Peer{CAs: pool}},
	)
	tests := []struct {
		name    string
		local   Local
		claimed string // identity the verifier sees (IDi)
		ok      bool
	}{
		{"psk", Local{ID: MustParseID("fqdn:psk.example.net"), PSK: psk}, "fqdn:psk.example.net", true},
		{"wrong psk", Local{ID: MustParseID("fqdn:psk.example.net"), PSK: []byte("not-the-right-psk-at-all")}, "fqdn:psk.example.net", false},
		{"ecdsa cert", Local{ID: MustParseID("fqdn:cpe1.example.net"), Signer: p.ecLeaf.key, Certs: []*x509.Certificate{p.ecLeaf.cert}}, "fqdn:cpe1.example.net", true},
		{"ecdsa cert by dn", Local{ID: MustParseID("dn:O=Acme,CN=cpe1.example.net"), Signer: p.ecLeaf.key, Certs: []*x509.Certificate{p.ecLeaf.cert}}, "dn:O=Acme,CN=cpe1.example.net", true},
		{"rsa cert", Local{ID: MustParseID("fqdn:cpe2.example.net"), Signer: p.rsaLeaf.key, Certs: []*x509.Certificate{p.rsaLeaf.cert}}, "fqdn:cpe2.example.net", true},
		{"rsa-pss cert", Local{ID: MustParseID("fqdn:cpe2.example.net"), Signer: p.rsaLeaf.key, Certs: []*x509.Certificate{p.rsaLeaf.cert}, RSAPSS: true}, "fqdn:cpe2.example.net", true},
		{"chain", Local{ID: MustParseID("fqdn:cpe3.example.net"), Signer: p.interLeaf.key, Certs: []*x509.Certificate{p.interLeaf.cert, p.inter.cert}}, "fqdn:cpe3.example.net", true},
		{"psk for a cert peer", Local{ID: MustParseID("fqdn:cpe1.example.net"), PSK: psk}, "fqdn:cpe1.example.net", false},
		{"cert for a psk peer", Local{ID: MustParseID("fqdn:psk.example.net"), Signer: p.ecLeaf.key, Certs: []*x509.Certificate{p.ecLeaf.cert}}, "fqdn:psk.example.net", false},
		{"cert of another identity", Local{ID: MustParseID("fqdn:cpe1.example.net"), Signer: p.rsaLeaf.key, Certs: []*x509.Certificate{p.rsaLeaf.cert}}, "fqdn:cpe1.example.net", false},
		{"expired cert", Local{ID: MustParseID("fqdn:old.example.net"), Signer: p.expired.key, Certs: []*x509.Certificate{p.expired.cert}}, "fqdn:old.example.net", false},
		{"wrong CA", Local{ID: MustParseID("fqdn:cpe1.example.net"), Signer: p.wrongCALeaf.key, Certs: []*x509.Certificate{p.wrongCALeaf.cert}}, "fqdn:cpe1.example.net", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			octets := []byte("signed octets of " + tt.name)
			method, data, err := tt.local.Authenticate(prf, octets, nil, SupportedHashes(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			id := MustParseID(tt.claimed)
			peer, err := lookup(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			err = peer.Verify(prf, id, method, data, octets, tt.local.CertPayloads(), testNow)
			if tt.ok != (err == nil) {
				t.Fatalf("Verify: %v (ok = %v)", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrAuthFailed) {
				t.Fatalf("error %v does not wrap ErrAuthFailed", err)
			}
		})
	}
	if _, err := lookup(context.Background(), MustParseID("fqdn:cpe1.example.org")); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("unknown identity: %v", err)
	}
}

// TestLocalUsesPeerPSK covers the hub: one PSK per CPE, taken from the
// lookup result for both directions.
func TestLocalUsesPeerPSK(t *testing.T) {
	prf, _ := suite.NewPRF(transform.PRFHMACSHA2384)
	hub := Local{ID: MustParseID("fqdn:hub.example.net")}
	peer := &Peer{PSK: []byte("per-cpe-psk-0123456789")}
	m, data, err := hub.Authenticate(prf, []byte("octets"), peer, nil, rand.Reader)
	if err != nil || m != MethodPSK {
		t.Fatalf("Authenticate = %v, %v", m, err)
	}
	if err := VerifyPSK(prf, peer.PSK, []byte("octets"), data); err != nil {
		t.Error(err)
	}
	if _, _, err := hub.Authenticate(prf, []byte("octets"), nil, nil, rand.Reader); err == nil {
		t.Error("authenticated without any credential")
	}
}

func TestLocalValidateAndSecrets(t *testing.T) {
	p := getPKI(t)
	good := Local{ID: MustParseID("fqdn:cpe1.example.net"), Signer: p.ecLeaf.key, Certs: []*x509.Certificate{p.ecLeaf.cert}}
	if err := good.Validate(); err != nil {
		t.Error(err)
	}
	for name, l := range map[string]Local{
		"no id":          {PSK: []byte("0123456789abcdef")},
		"short psk":      {ID: MustParseID("fqdn:x"), PSK: []byte("short")},
		"no cert":        {ID: MustParseID("fqdn:x"), Signer: p.ecLeaf.key},
		"key mismatch":   {ID: MustParseID("fqdn:cpe1.example.net"), Signer: p.rsaLeaf.key, Certs: []*x509.Certificate{p.ecLeaf.cert}},
		"id not in cert": {ID: MustParseID("fqdn:cpe9.example.net"), Signer: p.ecLeaf.key, Certs: []*x509.Certificate{p.ecLeaf.cert}},
	} {
		if err := l.Validate(); err == nil {
			t.Errorf("%s: Validate succeeded", name)
		}
	}
	secret := "s3cret-psk-value-0123"
	l := &Local{ID: MustParseID("fqdn:x"), PSK: []byte(secret)}
	pe := &Peer{PSK: []byte(secret)}
	for _, s := range []string{fmt.Sprint(l), fmt.Sprintf("%v %+v %s", l, pe, pe), l.String(), pe.String()} {
		if strings.Contains(s, secret) || strings.Contains(s, fmt.Sprintf("%x", secret)) {
			t.Errorf("formatted credentials leak the PSK: %s", s)
		}
	}
}
