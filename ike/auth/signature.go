package auth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Object identifiers of RFC 7427 Appendix A and RFC 4055.
var (
	oidSHA1WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}
	oidSHA256WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA384WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSHA512WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	oidRSAPSS        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	oidMGF1          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidECDSASHA1     = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}
	oidECDSASHA256   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSASHA384   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSASHA512   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidEd25519       = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidSHA1          = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
)

// scheme is one signature algorithm of RFC 7427.
type scheme int

const (
	schemeRSAPKCS1 scheme = iota + 1
	schemeRSAPSS
	schemeECDSA
	schemeEd25519
)

// SignOptions choose how Sign signs.
type SignOptions struct {
	// PeerHashes is what the peer announced in SIGNATURE_HASH_ALGORITHMS;
	// nil if it sent no such notify. Then ECDSA keys use the legacy
	// methods 9/10/11 (RFC 4754), which need no negotiation, and RSA keys
	// still use method 14 with SHA-256 rather than SHA-1 method 1.
	PeerHashes []HashAlg
	// RSAPSS signs with RSASSA-PSS (salt length = hash length) instead of
	// RSASSA-PKCS1-v1_5, for RSA keys.
	RSAPSS bool
}

// Sign signs octets (SignedOctets) with signer and returns the AUTH method and
// Authentication Data. ECDSA keys sign with SHA-256 on P-256, SHA-384 on P-384
// and SHA-512 on P-521 when the peer allows it; RSA keys with SHA-256; Ed25519
// with the identity hash (RFC 8420). Method 14 data is the 1-octet length of
// the AlgorithmIdentifier, the AlgorithmIdentifier and the signature (a DER
// ECDSA-Sig-Value for ECDSA), RFC 7427 §3.
func Sign(signer crypto.Signer, octets []byte, opts SignOptions, rand io.Reader) (Method, []byte, error) {
	switch pub := signer.Public().(type) {
	case *ecdsa.PublicKey:
		pref, legacy := HashSHA256, MethodECDSA256
		switch pub.Curve {
		case elliptic.P256():
		case elliptic.P384():
			pref, legacy = HashSHA384, MethodECDSA384
		case elliptic.P521():
			pref, legacy = HashSHA512, MethodECDSA521
		default:
			return 0, nil, fmt.Errorf("auth: unsupported ECDSA curve %s", pub.Curve.Params().Name)
		}
		if opts.PeerHashes == nil {
			der, err := signDigest(signer, rand, pref.crypto(), octets, nil)
			if err != nil {
				return 0, nil, err
			}
			raw, err := ecdsaDERToRaw(der, (pub.Curve.Params().BitSize+7)/8)
			if err != nil {
				return 0, nil, err
			}
			return legacy, raw, nil
		}
		h, ok := pickHash(pref, opts.PeerHashes)
		if !ok {
			return 0, nil, fmt.Errorf("auth: peer supports none of SHA-256/384/512 for signatures")
		}
		sig, err := signDigest(signer, rand, h.crypto(), octets, nil)
		if err != nil {
			return 0, nil, err
		}
		return digitalSignature(algECDSA(h), sig)
	case *rsa.PublicKey:
		h := HashSHA256
		if opts.PeerHashes != nil {
			var ok bool
			if h, ok = pickHash(HashSHA256, opts.PeerHashes); !ok {
				return 0, nil, fmt.Errorf("auth: peer supports none of SHA-256/384/512 for signatures")
			}
		}
		if opts.RSAPSS {
			pss := &rsa.PSSOptions{SaltLength: h.crypto().Size(), Hash: h.crypto()}
			sig, err := signDigest(signer, rand, h.crypto(), octets, pss)
			if err != nil {
				return 0, nil, err
			}
			return digitalSignature(algRSAPSS(h), sig)
		}
		sig, err := signDigest(signer, rand, h.crypto(), octets, nil)
		if err != nil {
			return 0, nil, err
		}
		return digitalSignature(algRSA(h), sig)
	case ed25519.PublicKey:
		if opts.PeerHashes != nil && !slices.Contains(opts.PeerHashes, HashIdentity) {
			return 0, nil, fmt.Errorf("auth: peer does not support the identity hash Ed25519 needs")
		}
		sig, err := signer.Sign(rand, octets, crypto.Hash(0))
		if err != nil {
			return 0, nil, fmt.Errorf("auth: sign: %w", err)
		}
		return digitalSignature(algEd25519(), sig)
	default:
		return 0, nil, fmt.Errorf("auth: unsupported key type %T", pub)
	}
}

func signDigest(signer crypto.Signer, rand io.Reader, h crypto.Hash, octets []byte, opts crypto.SignerOpts) ([]byte, error) {
	d := h.New()
	d.Write(octets)
	if opts == nil {
		opts = h
	}
	sig, err := signer.Sign(rand, d.Sum(nil), opts)
	if err != nil {
		return nil, fmt.Errorf("auth: sign: %w", err)
	}
	return sig, nil
}

func digitalSignature(algID []byte, sig []byte) (Method, []byte, error) {
	if len(algID) > 255 {
		return 0, nil, errors.New("auth: AlgorithmIdentifier too long")
	}
	out := make([]byte, 0, 1+len(algID)+len(sig))
	out = append(out, byte(len(algID)))
	out = append(out, algID...)
	return MethodDigitalSignature, append(out, sig...), nil
}

// AlgorithmIdentifier encodings. The RSA PKCS#1 v1.5 ones carry NULL
// parameters, the ECDSA and Ed25519 ones none (RFC 7427 Appendix A).

func mustMarshal(v any) []byte {
	b, err := asn1.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func algRSA(h HashAlg) []byte {
	oid := map[HashAlg]asn1.ObjectIdentifier{HashSHA256: oidSHA256WithRSA, HashSHA384: oidSHA384WithRSA, HashSHA512: oidSHA512WithRSA}[h]
	return mustMarshal(pkix.AlgorithmIdentifier{Algorithm: oid, Parameters: asn1.NullRawValue})
}

func algECDSA(h HashAlg) []byte {
	oid := map[HashAlg]asn1.ObjectIdentifier{HashSHA256: oidECDSASHA256, HashSHA384: oidECDSASHA384, HashSHA512: oidECDSASHA512}[h]
	return mustMarshal(pkix.AlgorithmIdentifier{Algorithm: oid})
}

func algEd25519() []byte { return mustMarshal(pkix.AlgorithmIdentifier{Algorithm: oidEd25519}) }

func hashOID(h HashAlg) asn1.ObjectIdentifier {
	return map[HashAlg]asn1.ObjectIdentifier{HashSHA256: oidSHA256, HashSHA384: oidSHA384, HashSHA512: oidSHA512}[h]
}

// pssParams is RSASSA-PSS-params (RFC 4055 §3.1).
type pssParams struct {
	Hash         pkix.AlgorithmIdentifier `asn1:"explicit,tag:0,optional"`
	MGF          pkix.AlgorithmIdentifier `asn1:"explicit,tag:1,optional"`
	SaltLength   int                      `asn1:"explicit,tag:2,optional,default:20"`
	TrailerField int                      `asn1:"explicit,tag:3,optional,default:1"`
}

// algRSAPSS encodes RSASSA-PSS with hash h, MGF1 with h and a salt as long as
// the hash (RFC 7427 Appendix A.4 style; the hash identifiers carry NULL as
// most implementations write them).
func algRSAPSS(h HashAlg) []byte {
	hashAlg := pkix.AlgorithmIdentifier{Algorithm: hashOID(h), Parameters: asn1.NullRawValue}
	params := pssParams{
		Hash:         hashAlg,
		MGF:          pkix.AlgorithmIdentifier{Algorithm: oidMGF1, Parameters: asn1.RawValue{FullBytes: mustMarshal(hashAlg)}},
		SaltLength:   h.crypto().Size(),
		TrailerField: 1,
	}
	return mustMarshal(pkix.AlgorithmIdentifier{Algorithm: oidRSAPSS, Parameters: asn1.RawValue{FullBytes: mustMarshal(params)}})
}

// sigAlg is a parsed RFC 7427 AlgorithmIdentifier.
type sigAlg struct {
	scheme scheme
	hash   crypto.Hash
	salt   int // RSASSA-PSS salt length
}

// parseSigAlg reads the AlgorithmIdentifier of an RFC 7427 AUTH payload.
// SHA-1 is refused.
func parseSigAlg(der []byte) (sigAlg, error) {
	var ai pkix.AlgorithmIdentifier
	rest, err := asn1.Unmarshal(der, &ai)
	if err != nil || len(rest) != 0 {
		return sigAlg{}, errors.New("malformed AlgorithmIdentifier")
	}
	noParams := len(ai.Parameters.FullBytes) == 0 || bytes.Equal(ai.Parameters.FullBytes, asn1.NullBytes)
	switch {
	case ai.Algorithm.Equal(oidSHA256WithRSA) && noParams:
		return sigAlg{scheme: schemeRSAPKCS1, hash: crypto.SHA256}, nil
	case ai.Algorithm.Equal(oidSHA384WithRSA) && noParams:
		return sigAlg{scheme: schemeRSAPKCS1, hash: crypto.SHA384}, nil
	case ai.Algorithm.Equal(oidSHA512WithRSA) && noParams:
		return sigAlg{scheme: schemeRSAPKCS1, hash: crypto.SHA512}, nil
	case ai.Algorithm.Equal(oidECDSASHA256) && noParams:
		return sigAlg{scheme: schemeECDSA, hash: crypto.SHA256}, nil
	case ai.Algorithm.Equal(oidECDSASHA384) && noParams:
		return sigAlg{scheme: schemeECDSA, hash: crypto.SHA384}, nil
	case ai.Algorithm.Equal(oidECDSASHA512) && noParams:
		return sigAlg{scheme: schemeECDSA, hash: crypto.SHA512}, nil
	case ai.Algorithm.Equal(oidEd25519) && len(ai.Parameters.FullBytes) == 0:
		return sigAlg{scheme: schemeEd25519}, nil
	case ai.Algorithm.Equal(oidRSAPSS):
		return parsePSS(ai.Parameters.FullBytes)
	case ai.Algorithm.Equal(oidSHA1WithRSA), ai.Algorithm.Equal(oidECDSASHA1):
		return sigAlg{}, errors.New("SHA-1 signatures are not accepted")
	}
	return sigAlg{}, fmt.Errorf("unsupported signature algorithm %v", ai.Algorithm)
}

func parsePSS(der []byte) (sigAlg, error) {
	if len(der) == 0 {
		return sigAlg{}, errors.New("RSASSA-PSS without parameters (SHA-1 default) is not accepted")
	}
	var p pssParams
	rest, err := asn1.Unmarshal(der, &p)
	if err != nil || len(rest) != 0 {
		return sigAlg{}, errors.New("malformed RSASSA-PSS parameters")
	}
	h, err := hashFromOID(p.Hash)
	if err != nil {
		return sigAlg{}, err
	}
	if !p.MGF.Algorithm.Equal(oidMGF1) {
		return sigAlg{}, errors.New("RSASSA-PSS: mask generation is not MGF1")
	}
	var mgfHash pkix.AlgorithmIdentifier
	if rest, err := asn1.Unmarshal(p.MGF.Parameters.FullBytes, &mgfHash); err != nil || len(rest) != 0 {
		return sigAlg{}, errors.New("RSASSA-PSS: malformed MGF1 hash")
	}
	mh, err := hashFromOID(mgfHash)
	if err != nil || mh != h {
		return sigAlg{}, errors.New("RSASSA-PSS: MGF1 hash differs from the message hash")
	}
	if p.TrailerField != 1 || p.SaltLength < 0 || p.SaltLength > 1024 {
		return sigAlg{}, errors.New("RSASSA-PSS: bad salt length or trailer field")
	}
	return sigAlg{scheme: schemeRSAPSS, hash: h, salt: p.SaltLength}, nil
}

func hashFromOID(ai pkix.AlgorithmIdentifier) (crypto.Hash, error) {
	if len(ai.Parameters.FullBytes) != 0 && !bytes.Equal(ai.Parameters.FullBytes, asn1.NullBytes) {
		return 0, errors.New("hash AlgorithmIdentifier with parameters")
	}
	switch {
	case ai.Algorithm.Equal(oidSHA256):
		return crypto.SHA256, nil
	case ai.Algorithm.Equal(oidSHA384):
		return crypto.SHA384, nil
	case ai.Algorithm.Equal(oidSHA512):
		return crypto.SHA512, nil
	case ai.Algorithm.Equal(oidSHA1), len(ai.Algorithm) == 0:
		return 0, errors.New("SHA-1 is not accepted")
	}
	return 0, fmt.Errorf("unsupported hash %v", ai.Algorithm)
}

// VerifySignature checks a signature AUTH payload (methods 1, 9, 10, 11 and
// 14) over octets with the peer's public key. Every failure wraps
// ErrAuthFailed.
func VerifySignature(pub crypto.PublicKey, method Method, octets, authData []byte) error {
	if err := verifySignature(pub, method, octets, authData); err != nil {
		return fmt.Errorf("%w: %v: %v", ErrAuthFailed, method, err)
	}
	return nil
}

func verifySignature(pub crypto.PublicKey, method Method, octets, authData []byte) error {
	switch method {
	case MethodRSA:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("RSA method with a %T key", pub)
		}
		return rsa.VerifyPKCS1v15(k, crypto.SHA1, digest(crypto.SHA1, octets), authData)
	case MethodECDSA256, MethodECDSA384, MethodECDSA521:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("ECDSA method with a %T key", pub)
		}
		curve, h := map[Method]elliptic.Curve{MethodECDSA256: elliptic.P256(), MethodECDSA384: elliptic.P384(), MethodECDSA521: elliptic.P521()}[method],
			map[Method]crypto.Hash{MethodECDSA256: crypto.SHA256, MethodECDSA384: crypto.SHA384, MethodECDSA521: crypto.SHA512}[method]
		if k.Curve != curve {
			return fmt.Errorf("key on %s, method needs %s", k.Curve.Params().Name, curve.Params().Name)
		}
		n := (curve.Params().BitSize + 7) / 8
		if len(authData) != 2*n {
			return fmt.Errorf("signature of %d octets, want %d", len(authData), 2*n)
		}
		r, s := new(big.Int).SetBytes(authData[:n]), new(big.Int).SetBytes(authData[n:])
		if !ecdsa.Verify(k, digest(h, octets), r, s) {
			return errors.New("bad signature")
		}
		return nil
	case MethodDigitalSignature:
		if len(authData) < 1 || len(authData) < 1+int(authData[0]) {
			return errors.New("truncated AlgorithmIdentifier")
		}
		alg, err := parseSigAlg(authData[1 : 1+int(authData[0])])
		if err != nil {
			return err
		}
		sig := authData[1+int(authData[0]):]
		switch alg.scheme {
		case schemeRSAPKCS1, schemeRSAPSS:
			k, ok := pub.(*rsa.PublicKey)
			if !ok {
				return fmt.Errorf("RSA signature with a %T key", pub)
			}
			if alg.scheme == schemeRSAPKCS1 {
				return rsa.VerifyPKCS1v15(k, alg.hash, digest(alg.hash, octets), sig)
			}
			return rsa.VerifyPSS(k, alg.hash, digest(alg.hash, octets), sig, &rsa.PSSOptions{SaltLength: alg.salt, Hash: alg.hash})
		case schemeECDSA:
			k, ok := pub.(*ecdsa.PublicKey)
			if !ok {
				return fmt.Errorf("ECDSA signature with a %T key", pub)
			}
			if !ecdsa.VerifyASN1(k, digest(alg.hash, octets), sig) {
				return errors.New("bad signature")
			}
			return nil
		case schemeEd25519:
			k, ok := pub.(ed25519.PublicKey)
			if !ok {
				return fmt.Errorf("Ed25519 signature with a %T key", pub)
			}
			if !ed25519.Verify(k, octets, sig) {
				return errors.New("bad signature")
			}
			return nil
		}
	}
	return fmt.Errorf("unsupported method")
}

func digest(h crypto.Hash, b []byte) []byte {
	d := h.New()
	d.Write(b)
	return d.Sum(nil)
}

// ecdsaDERToRaw converts an ECDSA-Sig-Value to the fixed-width r | s of
// RFC 4754.
func ecdsaDERToRaw(der []byte, n int) ([]byte, error) {
	var r, s cryptobyte.String
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1(&r, cbasn1.INTEGER) || !seq.ReadASN1(&s, cbasn1.INTEGER) || !seq.Empty() {
		return nil, errors.New("auth: malformed ECDSA signature")
	}
	out := make([]byte, 2*n)
	for i, v := range []cryptobyte.String{r, s} {
		b := bytes.TrimLeft(v, "\x00")
		if len(b) > n {
			return nil, errors.New("auth: ECDSA signature value too long")
		}
		copy(out[(i+1)*n-len(b):(i+1)*n], b)
	}
	return out, nil
}
