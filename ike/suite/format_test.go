package suite

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/mpsa-vpn/mpsa/transform"
)

// TestNoKeysInFormatting formats every type that holds secrets with every
// verb, as values and as pointers, and looks for the secrets' hex.
func TestNoKeysInFormatting(t *testing.T) {
	s := skSuites[1]
	k, err := DeriveIKEKeys(s, []byte("shared"), []byte("ni"), []byte("nr"), 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := k.DeriveChildKeys(transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA196}, nil, []byte("ni"), []byte("nr"), 0x1000, 0x2000)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := k.SKCiphers(true, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dh, err := GenerateDH(transform.DHMODP2048, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	secrets := [][]byte{k.SKd, k.SKai, k.SKar, k.SKei, k.SKer, k.SKpi, k.SKpr, ck.IToR.EncKey, ck.RToI.IntegKey, dh.x.Bytes()}
	for _, v := range []any{k, *k, ck, &ck, out, *out, dh, *dh} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			got := fmt.Sprintf(verb, v)
			for _, sec := range secrets {
				h := hex.EncodeToString(sec[:8])
				if strings.Contains(strings.ToLower(got), h) || strings.Contains(got, fmt.Sprint(sec[:4])[1:8]) {
					t.Errorf("%s of %T leaks key material: %s", verb, v, got)
				}
			}
		}
	}
}
