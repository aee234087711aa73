package suite

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"strconv"
	"testing"

	"github.com/mpsa-vpn/mpsa/transform"
)

// Vectors in testdata/vectors.json come from testdata/gen_vectors.py, which
// computes RFC 7296 §2.13-2.18 with its own HMAC; see the script's header.

type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

type vecSuite struct {
	Encr    transform.Encr  `json:"encr"`
	KeyBits uint16          `json:"key_bits"`
	PRF     transform.PRF   `json:"prf"`
	Integ   transform.Integ `json:"integ"`
}

func (v vecSuite) suite() Suite {
	return Suite{Encr: v.Encr, KeyBits: v.KeyBits, PRF: v.PRF, Integ: v.Integ, DH: transform.DHCurve25519}
}

type vecKeys struct {
	SKd  hexBytes `json:"sk_d"`
	SKai hexBytes `json:"sk_ai"`
	SKar hexBytes `json:"sk_ar"`
	SKei hexBytes `json:"sk_ei"`
	SKer hexBytes `json:"sk_er"`
	SKpi hexBytes `json:"sk_pi"`
	SKpr hexBytes `json:"sk_pr"`
}

type vecIKE struct {
	Suite    vecSuite `json:"suite"`
	Shared   hexBytes `json:"shared"`
	Ni       hexBytes `json:"ni"`
	Nr       hexBytes `json:"nr"`
	SPIi     string   `json:"spi_i"`
	SPIr     string   `json:"spi_r"`
	SKEYSEED hexBytes `json:"skeyseed"`
	Keys     vecKeys  `json:"keys"`
}

type vectors struct {
	IKE []struct {
		Name string `json:"name"`
		vecIKE
		Rekey vecIKE `json:"rekey"`
		Child []struct {
			Name string `json:"name"`
			ESP  struct {
				Encr    transform.Encr  `json:"encr"`
				KeyBits uint16          `json:"key_bits"`
				Integ   transform.Integ `json:"integ"`
			} `json:"esp"`
			Shared hexBytes `json:"shared"`
			Ni     hexBytes `json:"ni"`
			Nr     hexBytes `json:"nr"`
			SPIi   uint32   `json:"spi_i"`
			SPIr   uint32   `json:"spi_r"`
			EncrI  hexBytes `json:"encr_i"`
			IntegI hexBytes `json:"integ_i"`
			EncrR  hexBytes `json:"encr_r"`
			IntegR hexBytes `json:"integ_r"`
		} `json:"child"`
	} `json:"ike"`
	MODP []struct {
		XA     hexBytes `json:"x_a"`
		XB     hexBytes `json:"x_b"`
		YA     hexBytes `json:"y_a"`
		YB     hexBytes `json:"y_b"`
		Shared hexBytes `json:"shared"`
	} `json:"modp2048"`
}

func loadVectors(t *testing.T) *vectors {
	t.Helper()
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.IKE) == 0 || len(v.MODP) == 0 {
		t.Fatal("no vectors")
	}
	return &v
}

func spi(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func checkKeys(t *testing.T, got *IKEKeys, want vecKeys) {
	t.Helper()
	for _, c := range []struct {
		name      string
		got, want []byte
	}{
		{"SK_d", got.SKd, want.SKd}, {"SK_ai", got.SKai, want.SKai}, {"SK_ar", got.SKar, want.SKar},
		{"SK_ei", got.SKei, want.SKei}, {"SK_er", got.SKer, want.SKer},
		{"SK_pi", got.SKpi, want.SKpi}, {"SK_pr", got.SKpr, want.SKpr},
	} {
		if hex.EncodeToString(c.got) != hex.EncodeToString(c.want) {
			t.Errorf("%s = %x, want %x", c.name, c.got, c.want)
		}
	}
}

func TestIKEKeyVectors(t *testing.T) {
	v := loadVectors(t)
	for _, tc := range v.IKE {
		t.Run(tc.Name, func(t *testing.T) {
			s := tc.Suite.suite()
			prf, _ := NewPRF(s.PRF)
			if got := skeyseedInit(prf, tc.Shared, tc.Ni, tc.Nr); hex.EncodeToString(got) != hex.EncodeToString(tc.SKEYSEED) {
				t.Errorf("SKEYSEED = %x, want %x", got, tc.SKEYSEED)
			}
			k, err := DeriveIKEKeys(s, tc.Shared, tc.Ni, tc.Nr, spi(t, tc.SPIi), spi(t, tc.SPIr))
			if err != nil {
				t.Fatal(err)
			}
			checkKeys(t, k, tc.Keys)

			// Rekey (§2.18): the old PRF for SKEYSEED, the new suite's for prf+.
			rs := tc.Rekey.Suite.suite()
			if got := skeyseedRekey(k.PRF, k.SKd, tc.Rekey.Shared, tc.Rekey.Ni, tc.Rekey.Nr); hex.EncodeToString(got) != hex.EncodeToString(tc.Rekey.SKEYSEED) {
				t.Errorf("rekey SKEYSEED = %x, want %x", got, tc.Rekey.SKEYSEED)
			}
			rk, err := DeriveRekeyedIKEKeys(k, rs, tc.Rekey.Shared, tc.Rekey.Ni, tc.Rekey.Nr, spi(t, tc.Rekey.SPIi), spi(t, tc.Rekey.SPIr))
			if err != nil {
				t.Fatal(err)
			}
			checkKeys(t, rk, tc.Rekey.Keys)
			if rk.Suite != rs {
				t.Errorf("rekeyed suite %v, want %v", rk.Suite, rs)
			}

			for _, c := range tc.Child {
				es := transform.ESP{Encr: c.ESP.Encr, KeyBits: c.ESP.KeyBits, Integ: c.ESP.Integ}
				var shared []byte
				if len(c.Shared) > 0 {
					shared = c.Shared
				}
				ck, err := k.DeriveChildKeys(es, shared, c.Ni, c.Nr, c.SPIi, c.SPIr)
				if err != nil {
					t.Fatal(err)
				}
				name := c.Name + map[bool]string{false: "", true: "+pfs"}[shared != nil]
				if ck.IToR.SPI != c.SPIr || ck.RToI.SPI != c.SPIi {
					t.Errorf("%s: SPIs i->r %08x r->i %08x", name, ck.IToR.SPI, ck.RToI.SPI)
				}
				for _, kk := range []struct {
					what      string
					got, want []byte
				}{
					{"encr_i", ck.IToR.EncKey, c.EncrI}, {"integ_i", ck.IToR.IntegKey, c.IntegI},
					{"encr_r", ck.RToI.EncKey, c.EncrR}, {"integ_r", ck.RToI.IntegKey, c.IntegR},
				} {
					if hex.EncodeToString(kk.got) != hex.EncodeToString(kk.want) {
						t.Errorf("%s: %s = %x, want %x", name, kk.what, kk.got, kk.want)
					}
				}
				if err := ck.IToR.Validate(); err != nil {
					t.Errorf("%s: %v", name, err)
				}
				in, out := ck.InOut(true)
				if in.SPI != c.SPIi || out.SPI != c.SPIr {
					t.Errorf("%s: initiator in/out SPIs %08x/%08x", name, in.SPI, out.SPI)
				}
				ck.Wipe()
				if !allZero(ck.IToR.EncKey) || !allZero(ck.RToI.IntegKey) {
					t.Errorf("%s: Wipe left key material", name)
				}
			}
			k.Wipe()
			if !allZero(k.SKd) || !allZero(k.SKer) || !allZero(k.SKpr) {
				t.Error("Wipe left key material")
			}
		})
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func TestDeriveErrors(t *testing.T) {
	good := Suite{Encr: transform.EncrAESGCM16, KeyBits: 128, PRF: transform.PRFHMACSHA2256, DH: transform.DHECP256}
	n := []byte("nonce-nonce-nonce")
	for _, tc := range []struct {
		name string
		s    Suite
		z    []byte
	}{
		{"gcm with integ", Suite{Encr: transform.EncrAESGCM16, KeyBits: 128, PRF: transform.PRFHMACSHA2256, Integ: transform.IntegHMACSHA256128, DH: transform.DHECP256}, n},
		{"cbc without integ", Suite{Encr: transform.EncrAESCBC, KeyBits: 128, PRF: transform.PRFHMACSHA2256, DH: transform.DHECP256}, n},
		{"cbc 192", Suite{Encr: transform.EncrAESCBC, KeyBits: 192, PRF: transform.PRFHMACSHA2256, Integ: transform.IntegHMACSHA196, DH: transform.DHECP256}, n},
		{"unknown dh", Suite{Encr: transform.EncrAESGCM16, KeyBits: 128, PRF: transform.PRFHMACSHA2256, DH: 21}, n},
		{"unknown prf", Suite{Encr: transform.EncrAESGCM16, KeyBits: 128, PRF: 8, DH: transform.DHECP256}, n},
		{"no shared secret", good, nil},
	} {
		if _, err := DeriveIKEKeys(tc.s, tc.z, n, n, 1, 2); err == nil {
			t.Errorf("%s: DeriveIKEKeys succeeded", tc.name)
		}
	}
	k, err := DeriveIKEKeys(good, n, n, n, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.DeriveChildKeys(transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 128}, nil, n, n, 256, 257); err == nil {
		t.Error("CBC ESP without integrity accepted")
	}
	if _, err := DeriveRekeyedIKEKeys(nil, good, n, n, n, 1, 2); err == nil {
		t.Error("rekey without an old SA accepted")
	}
	if s := k.String(); s != "IKE keys "+good.String() {
		t.Errorf("String() = %q", s)
	}
}

// TestIKEKeysTrim: Trim keeps the suite, the PRF and SK_d (in its own
// memory, so CHILD_SA keys still derive) and wipes everything else.
func TestIKEKeysTrim(t *testing.T) {
	s := Suite{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA256128, PRF: transform.PRFHMACSHA2256, DH: transform.DHCurve25519}
	k, err := DeriveIKEKeys(s, []byte("shared"), []byte("ni"), []byte("nr"), 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	skd, skpi := bytes.Clone(k.SKd), k.SKpi
	esp := transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128}
	want, err := k.DeriveChildKeys(esp, nil, []byte("ni"), []byte("nr"), 3, 4)
	if err != nil {
		t.Fatal(err)
	}
	tk := k.Trim()
	if tk.Suite != s || tk.PRF.ID != s.PRF || !bytes.Equal(tk.SKd, skd) {
		t.Fatalf("trimmed keys %v lost the suite, PRF or SK_d", tk)
	}
	if tk.SKai != nil || tk.SKar != nil || tk.SKei != nil || tk.SKer != nil || tk.SKpi != nil || tk.SKpr != nil {
		t.Fatal("trimmed keys kept more than SK_d")
	}
	if !bytes.Equal(skpi, make([]byte, len(skpi))) || !bytes.Equal(k.SKd, make([]byte, len(k.SKd))) {
		t.Fatal("the original keys were not wiped")
	}
	got, err := tk.DeriveChildKeys(esp, nil, []byte("ni"), []byte("nr"), 3, 4)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.IToR.EncKey, want.IToR.EncKey) || !bytes.Equal(got.RToI.EncKey, want.RToI.EncKey) {
		t.Fatal("CHILD_SA keys differ after Trim")
	}
}
