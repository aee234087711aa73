package ikerate

import (
	"fmt"
	"strings"

	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/transform"
)

// IKE proposal keywords in strongSwan's spelling, as the load-tester's
// proposal option takes them.
var (
	encrNames = map[string]struct {
		e    transform.Encr
		bits uint16
	}{
		"aes128":           {transform.EncrAESCBC, 128},
		"aes256":           {transform.EncrAESCBC, 256},
		"aes128gcm16":      {transform.EncrAESGCM16, 128},
		"aes256gcm16":      {transform.EncrAESGCM16, 256},
		"chacha20poly1305": {transform.EncrChaCha20Poly1305, 0},
	}
	hashNames = map[string]struct {
		prf   transform.PRF
		integ transform.Integ
	}{
		"sha1":   {transform.PRFHMACSHA1, transform.IntegHMACSHA196},
		"sha256": {transform.PRFHMACSHA2256, transform.IntegHMACSHA256128},
		"sha384": {transform.PRFHMACSHA2384, transform.IntegHMACSHA384192},
		"sha512": {transform.PRFHMACSHA2512, transform.IntegHMACSHA512256},
	}
	dhNames = map[string]transform.DH{
		"modp2048":   transform.DHMODP2048,
		"ecp256":     transform.DHECP256,
		"ecp384":     transform.DHECP384,
		"x25519":     transform.DHCurve25519,
		"curve25519": transform.DHCurve25519,
	}
)

// ParseIKE reads one IKE proposal in strongSwan's spelling with exactly one
// algorithm of each kind: "aes128-sha256-x25519" (AES-CBC-128,
// PRF and INTEG HMAC-SHA2-256, Curve25519) or
// "aes128gcm16-prfsha256-ecp256" (an AEAD takes a PRF only).
func ParseIKE(name string) (suite.Suite, error) {
	parts := strings.Split(strings.ToLower(name), "-")
	if len(parts) != 3 {
		return suite.Suite{}, fmt.Errorf("ikerate: IKE proposal %q: want ENCR-PRF-DH", name)
	}
	enc, ok := encrNames[parts[0]]
	if !ok {
		return suite.Suite{}, fmt.Errorf("ikerate: IKE proposal %q: unknown encryption %q", name, parts[0])
	}
	s := suite.Suite{Encr: enc.e, KeyBits: enc.bits}
	h, prfOnly := strings.CutPrefix(parts[1], "prf")
	hash, ok := hashNames[h]
	if !ok {
		return suite.Suite{}, fmt.Errorf("ikerate: IKE proposal %q: unknown hash %q", name, parts[1])
	}
	s.PRF = hash.prf
	switch {
	case enc.e.IsAEAD() && !prfOnly:
		return suite.Suite{}, fmt.Errorf("ikerate: IKE proposal %q: an AEAD takes prf%s", name, h)
	case !enc.e.IsAEAD() && prfOnly:
		return suite.Suite{}, fmt.Errorf("ikerate: IKE proposal %q: %s needs an integrity algorithm", name, parts[0])
	case !enc.e.IsAEAD():
		s.Integ = hash.integ
	}
	if s.DH, ok = dhNames[parts[2]]; !ok {
		return suite.Suite{}, fmt.Errorf("ikerate: IKE proposal %q: unknown DH group %q", name, parts[2])
	}
	if err := s.Validate(); err != nil {
		return suite.Suite{}, fmt.Errorf("ikerate: IKE proposal %q: %w", name, err)
	}
	return s, nil
}

// ParseIKEList reads comma-separated IKE proposals.
func ParseIKEList(list string) ([]suite.Suite, error) {
	var out []suite.Suite
	for _, n := range strings.Split(list, ",") {
		s, err := ParseIKE(strings.TrimSpace(n))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// ParseESPList reads comma-separated ESP proposals ("aes128gcm16",
// "aes256-sha256", ...; configs.ESPNames lists them).
func ParseESPList(list string) ([]transform.ESP, error) {
	var out []transform.ESP
	for _, n := range strings.Split(list, ",") {
		s, err := configs.ParseESP(strings.TrimSpace(n))
		if err != nil {
			return nil, fmt.Errorf("ikerate: ESP proposal %q: %w", n, err)
		}
		out = append(out, s)
	}
	return out, nil
}
