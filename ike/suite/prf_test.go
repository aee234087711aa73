package suite

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/mpsa-vpn/mpsa/transform"
)

func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		tb.Fatalf("bad hex in test: %v", err)
	}
	return b
}

// TestPRFKnownAnswers checks each PRF against RFC 2202 (HMAC-SHA-1) and
// RFC 4231 (HMAC-SHA-256/384/512) test cases 1, 2 and 6.
func TestPRFKnownAnswers(t *testing.T) {
	tc1 := [2][]byte{bytes.Repeat([]byte{0x0b}, 20), []byte("Hi There")}
	tc2 := [2][]byte{[]byte("Jefe"), []byte("what do ya want for nothing?")}
	large := []byte("Test Using Larger Than Block-Size Key - Hash Key First")
	tests := []struct {
		name string
		prf  transform.PRF
		in   [2][]byte
		want string
	}{
		{"rfc2202-1", transform.PRFHMACSHA1, tc1, "b617318655057264e28bc0b6fb378c8ef146be00"},
		{"rfc2202-2", transform.PRFHMACSHA1, tc2, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"},
		{"rfc2202-6", transform.PRFHMACSHA1, [2][]byte{bytes.Repeat([]byte{0xaa}, 80), large}, "aa4ae5e15272d00e95705637ce8a3b55ed402112"},
		{"rfc4231-1-sha256", transform.PRFHMACSHA2256, tc1, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
		{"rfc4231-1-sha384", transform.PRFHMACSHA2384, tc1, "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6"},
		{"rfc4231-1-sha512", transform.PRFHMACSHA2512, tc1, "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"},
		{"rfc4231-2-sha256", transform.PRFHMACSHA2256, tc2, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		{"rfc4231-2-sha384", transform.PRFHMACSHA2384, tc2, "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649"},
		{"rfc4231-2-sha512", transform.PRFHMACSHA2512, tc2, "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"},
		{"rfc4231-6-sha256", transform.PRFHMACSHA2256, [2][]byte{bytes.Repeat([]byte{0xaa}, 131), large}, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
		{"rfc4231-6-sha384", transform.PRFHMACSHA2384, [2][]byte{bytes.Repeat([]byte{0xaa}, 131), large}, "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe8296248df163f44952"},
		{"rfc4231-6-sha512", transform.PRFHMACSHA2512, [2][]byte{bytes.Repeat([]byte{0xaa}, 131), large}, "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPRF(tt.prf)
			if err != nil {
				t.Fatal(err)
			}
			// Sum over split data must equal Sum over the whole.
			d := tt.in[1]
			got := p.Sum(tt.in[0], d[:3], d[3:])
			if hex.EncodeToString(got) != tt.want {
				t.Errorf("prf = %x, want %s", got, tt.want)
			}
			if p.Size() != len(got) {
				t.Errorf("Size() = %d, output %d", p.Size(), len(got))
			}
		})
	}
}

// TestPRFPlus checks prf+ against a literal expansion of RFC 7296 §2.13 and
// its iteration limit.
func TestPRFPlus(t *testing.T) {
	for _, id := range []transform.PRF{transform.PRFHMACSHA1, transform.PRFHMACSHA2256, transform.PRFHMACSHA2384, transform.PRFHMACSHA2512} {
		p, _ := NewPRF(id)
		key, seed := []byte("prf+ key"), []byte("prf+ seed")
		var want, t1 []byte
		for i := byte(1); len(want) < 3*p.Size()+5; i++ {
			t1 = p.Sum(key, t1, seed, []byte{i})
			want = append(want, t1...)
		}
		want = want[:3*p.Size()+5]
		got, err := p.Plus(key, seed, len(want))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%v: prf+ = %x, %v; want %x", id, got, err, want)
		}
		if _, err := p.Plus(key, seed, 255*p.Size()); err != nil {
			t.Errorf("%v: 255 iterations refused: %v", id, err)
		}
		if _, err := p.Plus(key, seed, 255*p.Size()+1); err == nil {
			t.Errorf("%v: 256 iterations accepted", id)
		}
	}
	if _, err := NewPRF(4); err == nil { // AES128_XCBC: not implemented
		t.Error("NewPRF(AES128_XCBC) succeeded")
	}
}
