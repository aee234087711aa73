package configs

import (
	"fmt"
	"strings"

	"github.com/mpsa-vpn/mpsa/transform"
)

// espNames are the ESP transform names accepted in configuration files, in
// strongSwan's spelling. The first name of a suite is the one ESPName prints.
var espNames = []struct {
	name  string
	suite transform.ESP
}{
	{"aes256-sha256", transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA256128}},
	{"aes128-sha256", transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA256128}},
	{"aes256-sha384", transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA384192}},
	{"aes256-sha512", transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA512256}},
	{"aes256-sha1", transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA196}},
	{"aes128-sha1", transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA196}},
	{"aes256gcm16", transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 256}},
	{"aes128gcm16", transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128}},
	{"chacha20poly1305", transform.ESP{Encr: transform.EncrChaCha20Poly1305}},
}

// ESPNames lists the accepted ESP transform names.
func ESPNames() []string {
	names := make([]string, len(espNames))
	for i, n := range espNames {
		names[i] = n.name
	}
	return names
}

// ParseESP maps an ESP transform name ("aes256-sha256", "aes256gcm16", ...;
// see ESPNames) to its suite.
func ParseESP(name string) (transform.ESP, error) {
	for _, n := range espNames {
		if strings.EqualFold(name, n.name) {
			return n.suite, nil
		}
	}
	return transform.ESP{}, fmt.Errorf("unknown ESP transform")
}

// ESPName returns the configuration name of suite s, or s.String() when it
// has none.
func ESPName(s transform.ESP) string {
	for _, n := range espNames {
		if n.suite == s {
			return n.name
		}
	}
	return s.String()
}

// prfNames are the group PRF names accepted in configuration files
// (strongSwan's spelling).
var prfNames = []struct {
	name string
	prf  transform.PRF
}{
	{"prfsha256", transform.PRFHMACSHA2256},
	{"prfsha384", transform.PRFHMACSHA2384},
	{"prfsha512", transform.PRFHMACSHA2512},
	{"prfsha1", transform.PRFHMACSHA1},
}

// PRFNames lists the accepted PRF names.
func PRFNames() []string {
	names := make([]string, len(prfNames))
	for i, n := range prfNames {
		names[i] = n.name
	}
	return names
}

// ParsePRF maps a PRF name ("prfsha256", ...; see PRFNames) to its transform.
func ParsePRF(name string) (transform.PRF, error) {
	for _, n := range prfNames {
		if strings.EqualFold(name, n.name) {
			return n.prf, nil
		}
	}
	return 0, fmt.Errorf("unknown PRF")
}

// PRFName returns the configuration name of p, or p.String().
func PRFName(p transform.PRF) string {
	for _, n := range prfNames {
		if n.prf == p {
			return n.name
		}
	}
	return p.String()
}
