package mpsa

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/transform"
)

const vectorsFile = "testdata/keymat_vectors.txt"

type keymatVector struct {
	name                   string
	prf                    transform.PRF
	suite                  transform.ESP
	spi                    uint32
	skd, nonce, enc, integ []byte
}

func readVectors(t *testing.T) []keymatVector {
	t.Helper()
	f, err := os.Open(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vs []keymatVector
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<16)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 10 {
			t.Fatalf("bad line %q", sc.Text())
		}
		num := func(s string, base int) uint64 {
			v, err := strconv.ParseUint(s, base, 32)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		hx := func(s string) []byte {
			if s == "-" {
				return nil
			}
			b, err := hex.DecodeString(s)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		vs = append(vs, keymatVector{
			name:  fs[0],
			prf:   transform.PRF(num(fs[1], 10)),
			suite: transform.ESP{Encr: transform.Encr(num(fs[2], 10)), KeyBits: uint16(num(fs[3], 10)), Integ: transform.Integ(num(fs[4], 10))},
			spi:   uint32(num(fs[5], 16)),
			skd:   hx(fs[6]), nonce: hx(fs[7]), enc: hx(fs[8]), integ: hx(fs[9]),
		})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(vs) < 7 {
		t.Fatalf("only %d vectors", len(vs))
	}
	return vs
}

// TestKeymatVectors checks DeriveKeys against vectors computed by
// testdata/keymat_vectors.py with Python's hmac and hashlib.
func TestKeymatVectors(t *testing.T) {
	for _, v := range readVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			k, err := DeriveKeys(v.spi, v.suite, v.prf, v.skd, v.nonce)
			if err != nil {
				t.Fatal(err)
			}
			if k.SPI != v.spi || k.Suite != v.suite {
				t.Errorf("got %v", k)
			}
			if !bytes.Equal(k.EncKey, v.enc) {
				t.Errorf("EncKey %x\n want %x", k.EncKey, v.enc)
			}
			if !bytes.Equal(k.IntegKey, v.integ) {
				t.Errorf("IntegKey %x\n   want %x", k.IntegKey, v.integ)
			}
			if v.suite.Encr.IsAEAD() && k.IntegKey != nil {
				t.Errorf("AEAD with an integrity key")
			}
			// The same through an encoded and decoded MPSA_PUT.
			p := &Put{SPI: v.spi, Suite: v.suite, PRF: v.prf, Nonce: v.nonce, SKd: v.skd, Life: 3600e9, Roll1: 10e9, Roll2: 20e9}
			if v.suite.Encr.IsAEAD() {
				p.SenderIDBits, p.SenderID = 16, 1
			}
			n, err := p.Encode()
			if err != nil {
				t.Fatal(err)
			}
			q, err := DecodePut(n)
			if err != nil {
				t.Fatal(err)
			}
			k2, err := q.Keys()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(k2.EncKey, v.enc) || !bytes.Equal(k2.IntegKey, v.integ) {
				t.Errorf("keys after the wire differ")
			}
			k.Wipe()
			if !bytes.Equal(k.EncKey, make([]byte, len(k.EncKey))) || !bytes.Equal(k.IntegKey, make([]byte, len(k.IntegKey))) {
				t.Errorf("Wipe left key material")
			}
		})
	}
}

// TestKeymatVectorsFile reruns the script and checks the committed vectors
// are its output.
func TestKeymatVectorsFile(t *testing.T) {
	py := testenv.Binary(t, "python3", "apt-get install python3")
	out, err := exec.Command(py, "testdata/keymat_vectors.py").Output()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, want) {
		t.Errorf("%s is stale; regenerate it as the script's header says", vectorsFile)
	}
}

func TestDeriveKeysRefuses(t *testing.T) {
	if _, err := DeriveKeys(0x1000, suiteCBC, transform.PRFHMACSHA2256, make([]byte, 20), make([]byte, 32)); err == nil {
		t.Error("accepted a 20-octet SK_d for PRF_HMAC_SHA2_256")
	}
	if _, err := DeriveKeys(0x1000, transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 256}, transform.PRFHMACSHA2256, make([]byte, 32), make([]byte, 32)); err == nil {
		t.Error("accepted CBC without integrity")
	}
	if _, err := DeriveKeys(0x1000, suiteCBC, transform.PRF(99), make([]byte, 32), make([]byte, 32)); err == nil {
		t.Error("accepted an unknown PRF")
	}
	if _, err := DeriveKeys(7, suiteCBC, transform.PRFHMACSHA2256, make([]byte, 32), make([]byte, 32)); err == nil {
		t.Error("accepted a reserved SPI")
	}
}
