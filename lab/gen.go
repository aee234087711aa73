package lab

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// newPSK returns a fresh random PSK in configuration syntax ("0x" + hex).
func newPSK() (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("lab: random PSK: %w", err)
	}
	return "0x" + hex.EncodeToString(b[:]), nil
}

// writePrivate writes a file readable by its owner only, replacing what
// was there.
func writePrivate(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil { // an old tmp file keeps its mode
		return fmt.Errorf("lab: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

// writeYAML writes a configuration tree as YAML, mode 0600.
func writeYAML(path, comment string, tree map[string]any) error {
	b, err := yaml.Marshal(tree)
	if err != nil {
		return fmt.Errorf("lab: %s: %w", path, err)
	}
	head := "# " + strings.ReplaceAll(strings.TrimSpace(comment), "\n", "\n# ") + "\n"
	return writePrivate(path, append([]byte(head), b...))
}

// labCA is the lab's certificate authority, made when a lab uses
// certificates.
type labCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

func newCA() (*labCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("lab: CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"mpsa lab"}, CommonName: "mpsa lab CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("lab: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("lab: CA certificate: %w", err)
	}
	return &labCA{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// loadCA reads a CA written by save.
func loadCA(certPath, keyPath string) (*labCA, error) {
	cb, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	defer clear(kb)
	cblk, _ := pem.Decode(cb)
	kblk, _ := pem.Decode(kb)
	if cblk == nil || kblk == nil {
		return nil, fmt.Errorf("lab: %s or %s is not PEM", certPath, keyPath)
	}
	cert, err := x509.ParseCertificate(cblk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("lab: %s: %w", certPath, err)
	}
	key, err := x509.ParseECPrivateKey(kblk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("lab: %s: %w", keyPath, err)
	}
	return &labCA{cert: cert, key: key, certPEM: cb}, nil
}

func (ca *labCA) save(certPath, keyPath string) error {
	der, err := x509.MarshalECPrivateKey(ca.key)
	if err != nil {
		return fmt.Errorf("lab: CA key: %w", err)
	}
	defer clear(der)
	if err := writePrivate(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})); err != nil {
		return err
	}
	return os.WriteFile(certPath, ca.certPEM, 0o644)
}

// issue writes a certificate for the DNS name (identity fqdn:NAME) valid
// from notBefore to notAfter, and its key (0600).
func (ca *labCA) issue(dnsName string, notBefore, notAfter time.Time, certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("lab: key for %s: %w", dnsName, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return fmt.Errorf("lab: serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(2)),
		Subject:      pkix.Name{Organization: []string{"mpsa lab"}, CommonName: dnsName},
		DNSNames:     []string{dnsName},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return fmt.Errorf("lab: certificate for %s: %w", dnsName, err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("lab: key for %s: %w", dnsName, err)
	}
	defer clear(kder)
	if err := writePrivate(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})); err != nil {
		return err
	}
	return os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// hubConfig is the hub's configuration tree for the lab's current
// provisioning.
func (l *Lab) hubConfig() map[string]any {
	c := &l.st.Config
	group := map[string]any{
		"name":         GroupName,
		"lifetime":     c.Lifetime.String(),
		"rekey_margin": c.RekeyMargin.String(),
		"roll1":        c.Roll1.String(),
		"roll2":        c.Roll2.String(),
		"pool":         map[string]any{"ipv4": pool4.String(), "ipv6": pool6.String()},
	}
	if c.ESP != "" {
		group["esp"] = c.ESP
	}
	var cpes []any
	for _, p := range l.st.CPEs {
		if !p.Provisioned {
			continue
		}
		e := map[string]any{"identity": p.Identity, "group": GroupName, "prefixes": prefixStrings(p.Prefixes)}
		if p.Cert {
			e["auth"] = "cert"
		} else {
			e["psk"] = p.HubPSK
		}
		cpes = append(cpes, e)
	}
	h := &l.st.Hub
	tree := map[string]any{
		"ike":       map[string]any{"listen": []string{h.WAN.String()}},
		"identity":  HubIdentity,
		"groups":    []any{group},
		"cpes":      cpes,
		"bgp":       map[string]any{"router_id": HubRouterID, "grpc_listen": "127.0.0.1:50051"},
		"dataplane": map[string]any{"backend": c.Backend},
		"state_dir": h.StateDir,
		"metrics":   map[string]any{"listen": "127.0.0.1:9470"},
		"status":    map[string]any{"socket": h.Socket},
		"log":       map[string]any{"level": c.LogLevel, "format": "json"},
		"key_export": map[string]any{
			"esp": h.KeyFile,
		},
	}
	if l.st.CA {
		tree["credentials"] = map[string]any{"certificate": h.CertFile, "private_key": h.KeyPath, "ca": l.caCertPath()}
	}
	return tree
}

// cpeConfig is CPE p's configuration tree.
func (l *Lab) cpeConfig(p *CPE) map[string]any {
	c := &l.st.Config
	creds := map[string]any{"psk": p.PSK}
	if p.Cert {
		creds = map[string]any{"certificate": p.CertFile, "private_key": p.KeyPath, "ca": l.caCertPath()}
	}
	return map[string]any{
		"hubs":         []string{netip.AddrPortFrom(l.st.Hub.WAN, 500).String()},
		"hub_identity": HubIdentity,
		"identity":     p.Identity,
		"credentials":  creds,
		"lan":          map[string]any{"interface": "lan0", "prefixes": prefixStrings(p.Prefixes)},
		"wan":          map[string]any{"interface": "eth0"},
		"dataplane":    map[string]any{"backend": c.Backend},
		"reconnect":    map[string]any{"min": "200ms", "max": "2s"},
		"metrics":      map[string]any{"listen": "127.0.0.1:9471"},
		"status":       map[string]any{"socket": p.Socket},
		"log":          map[string]any{"level": c.LogLevel, "format": "json"},
		"key_export":   map[string]any{"esp": p.KeyFile},
	}
}

func (l *Lab) caCertPath() string { return filepath.Join(l.st.Config.Dir, "ca.crt") }
func (l *Lab) caKeyPath() string  { return filepath.Join(l.st.Config.Dir, "ca.key") }

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}
