package auth

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxCredFile bounds the size of a key, PSK or certificate file.
const maxCredFile = 1 << 20

// readFile reads a credential file. With secret, the file must be a regular
// file not readable or writable by group or other (0600 or stricter); the
// mode is checked on the open file, not the path.
func readFile(path string, secret bool) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("auth: %s is not a regular file", path)
	}
	if secret && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("auth: %s is accessible by group or other (mode %04o): chmod 600 it", path, st.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxCredFile+1))
	if err != nil {
		return nil, fmt.Errorf("auth: %s: %w", path, err)
	}
	if len(b) > maxCredFile {
		return nil, fmt.Errorf("auth: %s is larger than %d octets", path, maxCredFile)
	}
	return b, nil
}

// LoadPSKFile reads a pre-shared key from a file that only its owner may
// read. The key is the file's content without a trailing newline; content
// starting with "0x" is hex. Keys shorter than MinPSKLen are refused.
func LoadPSKFile(path string) ([]byte, error) {
	b, err := readFile(path, true)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	return ParsePSK(b)
}

// ParsePSK reads a pre-shared key in the file syntax of LoadPSKFile (for keys
// that come from a database rather than a file). The result is a fresh slice.
func ParsePSK(b []byte) ([]byte, error) {
	b = bytes.TrimRight(b, "\r\n")
	var psk []byte
	if h, ok := bytes.CutPrefix(b, []byte("0x")); ok {
		psk = make([]byte, hex.DecodedLen(len(h)))
		if _, err := hex.Decode(psk, h); err != nil {
			clear(psk)
			return nil, errors.New("auth: pre-shared key: bad hex after 0x")
		}
	} else {
		psk = bytes.Clone(b)
	}
	if len(psk) < MinPSKLen {
		clear(psk)
		return nil, fmt.Errorf("auth: pre-shared key shorter than %d octets", MinPSKLen)
	}
	return psk, nil
}

// LoadPrivateKeyFile reads a private key (PEM "PRIVATE KEY" PKCS#8, "EC
// PRIVATE KEY" SEC 1 or "RSA PRIVATE KEY" PKCS#1, or the same as DER) from a
// file that only its owner may read. Encrypted PEM is not supported.
func LoadPrivateKeyFile(path string) (crypto.Signer, error) {
	b, err := readFile(path, true)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	k, err := ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return k, nil
}

// ParsePrivateKey reads a private key in the formats LoadPrivateKeyFile takes.
func ParsePrivateKey(b []byte) (crypto.Signer, error) {
	der := b
	if blk, _ := pem.Decode(b); blk != nil {
		if _, enc := blk.Headers["Proc-Type"]; enc || blk.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("auth: encrypted private keys are not supported")
		}
		der = blk.Bytes
		defer clear(blk.Bytes)
	}
	var key any
	var err error
	if key, err = x509.ParsePKCS8PrivateKey(der); err != nil {
		if key, err = x509.ParseECPrivateKey(der); err != nil {
			if key, err = x509.ParsePKCS1PrivateKey(der); err != nil {
				return nil, errors.New("auth: not a PKCS#8, SEC 1 or PKCS#1 private key")
			}
		}
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("auth: private key type %T cannot sign", key)
	}
	return s, nil
}

// LoadCertificatesFile reads the certificates of a PEM file (any number of
// "CERTIFICATE" blocks, in file order) or of a single DER certificate.
func LoadCertificatesFile(path string) ([]*x509.Certificate, error) {
	b, err := readFile(path, false)
	if err != nil {
		return nil, err
	}
	certs, err := ParseCertificates(b)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return certs, nil
}

// ParseCertificates reads certificates in the formats LoadCertificatesFile takes.
func ParseCertificates(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return nil, errors.New("auth: no certificate found")
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// LoadCAPoolFiles builds a CAPool from certificate files.
func LoadCAPoolFiles(paths ...string) (*CAPool, error) {
	var cas []*x509.Certificate
	for _, p := range paths {
		c, err := LoadCertificatesFile(p)
		if err != nil {
			return nil, err
		}
		cas = append(cas, c...)
	}
	return NewCAPool(cas...)
}
