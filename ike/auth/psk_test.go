package auth

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/transform"
)

// TestPSKVectors checks SignedOctets and PSK AUTH against
// testdata/psk_vectors.json, made by testdata/gen_psk_vectors.py with its own
// HMAC.
func TestPSKVectors(t *testing.T) {
	b, err := os.ReadFile("testdata/psk_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		PRF    transform.PRF `json:"prf"`
		Real   string        `json:"real"`
		Nonce  string        `json:"nonce"`
		SKp    string        `json:"sk_p"`
		ID     string        `json:"id"`
		PSK    string        `json:"psk"`
		Octets string        `json:"octets"`
		Auth   string        `json:"auth"`
	}
	if err := json.Unmarshal(b, &cases); err != nil || len(cases) == 0 {
		t.Fatalf("vectors: %v", err)
	}
	h := func(s string) []byte {
		v, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range cases {
		t.Run(c.PRF.String(), func(t *testing.T) {
			prf, err := suite.NewPRF(c.PRF)
			if err != nil {
				t.Fatal(err)
			}
			octets := SignedOctets(prf, h(c.SKp), h(c.Real), h(c.Nonce), MustParseID(c.ID))
			if hex.EncodeToString(octets) != c.Octets {
				t.Fatalf("signed octets differ:\n got %x\nwant %s", octets, c.Octets)
			}
			auth := PSKAuth(prf, []byte(c.PSK), octets)
			if hex.EncodeToString(auth) != c.Auth {
				t.Errorf("AUTH = %x, want %s", auth, c.Auth)
			}
			if err := VerifyPSK(prf, []byte(c.PSK), octets, h(c.Auth)); err != nil {
				t.Error(err)
			}
			if err := VerifyPSK(prf, []byte(c.PSK+"x"), octets, h(c.Auth)); !errors.Is(err, ErrAuthFailed) {
				t.Errorf("wrong PSK: %v", err)
			}
			octets[0] ^= 1
			if err := VerifyPSK(prf, []byte(c.PSK), octets, h(c.Auth)); !errors.Is(err, ErrAuthFailed) {
				t.Errorf("wrong octets: %v", err)
			}
			if err := VerifyPSK(prf, nil, octets, h(c.Auth)); !errors.Is(err, ErrAuthFailed) {
				t.Errorf("no PSK: %v", err)
			}
			if err := VerifyPSK(prf, []byte(c.PSK), octets, nil); !errors.Is(err, ErrAuthFailed) {
				t.Errorf("empty AUTH: %v", err)
			}
		})
	}
}
