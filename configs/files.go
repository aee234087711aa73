package configs

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mpsa-vpn/mpsa/ike/auth"
)

// File limits.
const (
	MaxConfigFileSize = 16 << 20 // a hub with 100,000 CPEs fits
	MaxPEMFileSize    = 1 << 20
	MaxPSKFileSize    = 4 << 10
)

// Permission bits refused on files that hold secrets.
const (
	secretFileForbidden = 0o004 // PSK files and configs holding PSKs: not world-readable
	keyFileForbidden    = 0o044 // private keys and key exports: not group- or world-readable
	anyFileForbidden    = 0o002 // nothing we read may be world-writable
)

// CertMaterial is what CertFiles name, read and parsed: the node's chain
// and key, and the trust anchors for its peers. It holds a private key:
// String prints only the subject.
type CertMaterial struct {
	Chain []*x509.Certificate // leaf first
	Key   crypto.Signer
	CAs   []*x509.Certificate
}

// Leaf returns the node's own certificate, or nil.
func (m *CertMaterial) Leaf() *x509.Certificate {
	if m == nil || len(m.Chain) == 0 {
		return nil
	}
	return m.Chain[0]
}

// Pool returns the trust anchors as a pool for x509.Verify.
func (m *CertMaterial) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	if m != nil {
		for _, c := range m.CAs {
			p.AddCert(c)
		}
	}
	return p
}

// String never prints the key.
func (m *CertMaterial) String() string {
	if m == nil {
		return "<no certificate>"
	}
	s := "<no certificate>"
	if l := m.Leaf(); l != nil {
		s = "certificate " + l.Subject.String()
	}
	return fmt.Sprintf("%s, %d CA(s)", s, len(m.CAs))
}

// GoString never prints the key either.
func (m *CertMaterial) GoString() string { return m.String() }

// Source says where a configuration tree came from, for the checks that
// touch the file system.
type Source struct {
	// File is the configuration file, "" when there is none. Relative paths
	// in the configuration are taken relative to its directory.
	File string
	// FileMode is the file's mode as the loader found it when reading it.
	FileMode fs.FileMode
	// FileHasSecrets says the file itself holds inline PSKs (see
	// TreeHasInlineSecrets), so it must not be world-readable.
	FileHasSecrets bool
	// Now is when certificates must be valid; zero means time.Now().
	Now time.Time
}

func (s *Source) dir() string {
	if s.File == "" {
		return "."
	}
	return filepath.Dir(s.File)
}

func (s *Source) now() time.Time {
	if s.Now.IsZero() {
		return time.Now()
	}
	return s.Now
}

// TreeHasInlineSecrets reports whether a configuration tree holds a PSK
// value (any non-empty "psk" key at any depth).
func TreeHasInlineSecrets(tree any) bool {
	switch x := tree.(type) {
	case map[string]any:
		for k, v := range x {
			if strings.EqualFold(k, "psk") && v != nil && v != "" {
				return true
			}
			if TreeHasInlineSecrets(v) {
				return true
			}
		}
	case map[any]any:
		for k, v := range x {
			if ks, _ := k.(string); strings.EqualFold(ks, "psk") && v != nil && v != "" {
				return true
			}
			if TreeHasInlineSecrets(v) {
				return true
			}
		}
	case []any:
		return slices.ContainsFunc(x, TreeHasInlineSecrets)
	}
	return false
}

// checkConfigFile applies the permission rules to the configuration file.
func checkConfigFile(ck *checker, src *Source) {
	if src.File == "" {
		return
	}
	perm := src.FileMode.Perm()
	if perm&anyFileForbidden != 0 {
		ck.add(src.File, "expected a file not writable by others, got mode %04o", perm)
	}
	if src.FileHasSecrets && perm&secretFileForbidden != 0 {
		ck.add(src.File, "expected a file not readable by others since it holds PSKs, got mode %04o (chmod o-r, or move the PSKs to psk_file)", perm)
	}
}

// absPath makes p absolute relative to dir.
func absPath(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// readFile reads a file after checking its mode against forbid, bounded to
// limit octets. what names the content for messages ("PSK file").
func readFile(ck *checker, path, name string, forbid fs.FileMode, limit int64, what string) ([]byte, bool) {
	f, err := os.Open(name)
	if err != nil {
		ck.add(path, "expected a readable %s: %v", what, unwrapPathError(err))
		return nil, false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		ck.add(path, "expected a readable %s: %v", what, unwrapPathError(err))
		return nil, false
	}
	if !st.Mode().IsRegular() {
		ck.add(path, "expected a regular file, got %v (%s)", st.Mode().Type(), name)
		return nil, false
	}
	if perm := st.Mode().Perm(); perm&(forbid|anyFileForbidden) != 0 {
		who := "others"
		if forbid&0o040 != 0 {
			who = "group or others"
		}
		switch {
		case perm&anyFileForbidden != 0:
			ck.add(path, "expected a %s not writable by others, got mode %04o on %s", what, perm, name)
		default:
			ck.add(path, "expected a %s not readable by %s, got mode %04o on %s (chmod %04o)", what, who, perm, name, perm&^forbid)
		}
		return nil, false
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		ck.add(path, "expected a readable %s: %v", what, err)
		return nil, false
	}
	if int64(len(b)) > limit {
		ck.add(path, "expected a %s of at most %d octets (%s)", what, limit, name)
		return nil, false
	}
	return b, true
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

// loadPSKFile reads a PSK file into s.
func loadPSKFile(ck *checker, path, name string, s *Secret) {
	b, ok := readFile(ck, path, name, secretFileForbidden, MaxPSKFileSize, "PSK file")
	if !ok {
		return
	}
	defer clear(b)
	v, err := ParseSecret(string(bytes.TrimRight(b, "\r\n")))
	if err != nil {
		ck.add(path, "expected a PSK in %s: %v", name, err)
		return
	}
	if v.Len() < MinPSKLen || v.Len() > MaxPSKLen {
		ck.add(path, "expected a PSK of %d..%d octets in %s, got %d octets", MinPSKLen, MaxPSKLen, name, v.Len())
		v.Wipe()
		return
	}
	*s = v
}

// parseCerts reads the certificates of a PEM (or single DER) file.
func parseCerts(ck *checker, path, name string, b []byte) ([]*x509.Certificate, bool) {
	certs, err := auth.ParseCertificates(b)
	if err != nil {
		ck.add(path, "expected PEM X.509 certificates in %s: %v", name, strings.TrimPrefix(err.Error(), "auth: "))
		return nil, false
	}
	return certs, true
}

// parseKey reads a private key as IKE will (auth.ParsePrivateKey).
func parseKey(ck *checker, path, name string, b []byte) (crypto.Signer, bool) {
	k, err := auth.ParsePrivateKey(b)
	if err != nil {
		ck.add(path, "expected an unencrypted PKCS#8, PKCS#1 or SEC 1 private key in %s: %v", name, strings.TrimPrefix(err.Error(), "auth: "))
		return nil, false
	}
	if r, ok := k.(*rsa.PrivateKey); ok && r.N.BitLen() < 2048 {
		ck.add(path, "expected an RSA key of at least 2048 bits in %s, got %d", name, r.N.BitLen())
		return nil, false
	}
	return k, true
}

// loadCertFiles reads and checks c's files (paths made absolute first) and
// that the certificate carries id.
func loadCertFiles(ck *checker, warns *[]Warning, path string, c *CertFiles, id Identity, idPath string, src *Source) {
	dir := src.dir()
	c.Certificate, c.PrivateKey, c.CA = absPath(dir, c.Certificate), absPath(dir, c.PrivateKey), absPath(dir, c.CA)
	m := &CertMaterial{}
	ok := true
	if c.CA != "" {
		if b, rok := readFile(ck, join(path, "ca"), c.CA, 0, MaxPEMFileSize, "CA file"); rok {
			m.CAs, rok = parseCerts(ck, join(path, "ca"), c.CA, b)
			ok = ok && rok
		} else {
			ok = false
		}
	}
	if c.Certificate != "" {
		if b, rok := readFile(ck, join(path, "certificate"), c.Certificate, 0, MaxPEMFileSize, "certificate file"); rok {
			m.Chain, rok = parseCerts(ck, join(path, "certificate"), c.Certificate, b)
			ok = ok && rok
		} else {
			ok = false
		}
		if b, rok := readFile(ck, join(path, "private_key"), c.PrivateKey, keyFileForbidden, MaxPEMFileSize, "private key file"); rok {
			m.Key, rok = parseKey(ck, join(path, "private_key"), c.PrivateKey, b)
			clear(b)
			ok = ok && rok
		} else {
			ok = false
		}
	}
	if !ok {
		return
	}
	if leaf := m.Leaf(); leaf != nil {
		checkLeaf(ck, warns, path, m, id, idPath, src.now())
	}
	c.material = m
}

func checkLeaf(ck *checker, warns *[]Warning, path string, m *CertMaterial, id Identity, idPath string, now time.Time) {
	leaf := m.Leaf()
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if pub, ok := m.Key.Public().(equaler); !ok || !pub.Equal(leaf.PublicKey) {
		ck.add(join(path, "private_key"), "expected the key of the certificate (%s), got a different key", leaf.Subject)
		return
	}
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		ck.add(join(path, "certificate"), "expected a certificate valid now (%s), got one valid from %s to %s",
			now.UTC().Format(time.RFC3339), leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
		return
	}
	if err := auth.BindsIdentity(leaf, id); err != nil {
		ck.add(idPath, "expected an identity the certificate carries (subject %q, DNS %v, email %v, IP %v), got %q",
			leaf.Subject.String(), leaf.DNSNames, leaf.EmailAddresses, leaf.IPAddresses, id)
	}
	if len(m.CAs) > 0 {
		inter := x509.NewCertPool()
		for _, c := range m.Chain[1:] {
			inter.AddCert(c)
		}
		_, err := leaf.Verify(x509.VerifyOptions{Roots: m.Pool(), Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err != nil {
			*warns = append(*warns, Warning{Path: join(path, "certificate"),
				Msg: fmt.Sprintf("does not verify against %s (%v); peers must trust its issuer some other way", join(path, "ca"), err)})
		}
	}
}

// checkKeyExport checks the key export files: their directory exists and an
// existing file is private.
func checkKeyExport(ck *checker, c *KeyExportConfig, src *Source) {
	for _, f := range []struct {
		key string
		p   *string
	}{{"key_export.ike", &c.IKE}, {"key_export.esp", &c.ESP}} {
		if *f.p == "" {
			continue
		}
		*f.p = absPath(src.dir(), *f.p)
		if st, err := os.Stat(filepath.Dir(*f.p)); err != nil || !st.IsDir() {
			ck.add(f.key, "expected a file in an existing directory, got %q", *f.p)
			continue
		}
		st, err := os.Stat(*f.p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			ck.add(f.key, "expected a writable file: %v", unwrapPathError(err))
		case !st.Mode().IsRegular():
			ck.add(f.key, "expected a regular file, got %v (%s)", st.Mode().Type(), *f.p)
		case st.Mode().Perm()&keyFileForbidden != 0:
			ck.add(f.key, "expected a file not readable by group or others (it receives keys), got mode %04o on %s", st.Mode().Perm(), *f.p)
		}
	}
}

// loadFiles resolves the hub's paths and reads and checks every file it names.
func (h *Hub) loadFiles(ck *checker, src *Source) []Warning {
	var warns []Warning
	if !h.Credentials.IsZero() {
		loadCertFiles(ck, &warns, "credentials", &h.Credentials, h.Identity, "identity", src)
	}
	for i := range h.CPEs {
		c := &h.CPEs[i]
		if c.PSKFile != "" {
			c.PSKFile = absPath(src.dir(), c.PSKFile)
			loadPSKFile(ck, index("cpes", i)+".psk_file", c.PSKFile, &c.PSK)
		}
	}
	if st, err := os.Stat(h.StateDir); err == nil && !st.IsDir() {
		ck.add("state_dir", "expected a directory, got %v (%s)", st.Mode().Type(), h.StateDir)
	}
	checkKeyExport(ck, &h.KeyExport, src)
	return warns
}

// loadFiles resolves the CPE's paths and reads and checks every file it names.
func (c *CPE) loadFiles(ck *checker, src *Source) []Warning {
	var warns []Warning
	cr := &c.Credentials
	if cr.PSKFile != "" {
		cr.PSKFile = absPath(src.dir(), cr.PSKFile)
		loadPSKFile(ck, "credentials.psk_file", cr.PSKFile, &cr.PSK)
	}
	if !cr.CertFiles.IsZero() {
		loadCertFiles(ck, &warns, "credentials", &cr.CertFiles, c.Identity, "identity", src)
	}
	checkKeyExport(ck, &c.KeyExport, src)
	return warns
}

// ReadConfigFile reads a configuration file for a loader, bounded to
// MaxConfigFileSize, and returns its mode as found on the open file (for
// Source.FileMode).
func ReadConfigFile(name string) ([]byte, fs.FileMode, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, fmt.Errorf("configs: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("configs: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("configs: %s: expected a regular file, got %v", name, st.Mode().Type())
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxConfigFileSize+1))
	if err != nil {
		return nil, 0, fmt.Errorf("configs: %s: %w", name, err)
	}
	if len(b) > MaxConfigFileSize {
		return nil, 0, fmt.Errorf("configs: %s: expected at most %d octets", name, MaxConfigFileSize)
	}
	return b, st.Mode(), nil
}
