package esp

import (
	"bytes"
	"crypto/hmac"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/mpsa-vpn/mpsa/transform"
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		panic(err)
	}
	return b
}

// TestRFC7634ESPExample runs the ESP example of RFC 7634 Appendix A both
// ways: the tunnel-mode packet (SPI 0x01020304, sequence number 5, IV
// 0x1011121314151617) seals to the RFC's ciphertext and opens back.
func TestRFC7634ESPExample(t *testing.T) {
	key := unhex(`808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f a0a1a2a3`)
	inner := unhex(`4500 0054 a6f2 0000 4001 e778 c633 6405 c000 0205 0800 5b7a 3a08 0000 553b ec10
		0007 3627 0809 0a0b 0c0d 0e0f 1011 1213 1415 1617 1819 1a1b 1c1d 1e1f 2021 2223
		2425 2627 2829 2a2b 2c2d 2e2f 3031 3233 3435 3637`)
	wire := unhex(`01020304 00000005 1011121314151617
		24039428b97f417e3c13753a4f05087b67c352e6a7fab1b982d466ef407ae5c6
		14ee8099d52844eb61aa95dfab4c02f72aa71e7c4c4f64c9befe2facc638e8f3
		cbec163fac469b502773f6fb94e664da9165b82829f641e076aaa8266b7fb0f7
		b11b369907e1ad43`)
	sa, err := NewSA(Config{Keys: Keys{SPI: 0x01020304, Suite: transform.ESP{Encr: transform.EncrChaCha20Poly1305}, EncKey: key}})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, Headroom+len(inner)+Tailroom)
	copy(buf[Headroom:], inner)
	got := sa.seal(buf, len(inner), 5, NextHeaderIPv4, 0x1011121314151617)
	if !bytes.Equal(got, wire) {
		t.Fatalf("seal:\n got %x\nwant %x", got, wire)
	}
	p, d := sa.Open(append([]byte(nil), wire...))
	if d != DropNone {
		t.Fatalf("open: %v", d)
	}
	if !bytes.Equal(p.Inner, inner) || p.Seq != 5 || p.Next != NextHeaderIPv4 {
		t.Fatalf("open: seq %d next %d inner %x", p.Seq, p.Next, p.Inner)
	}
}

// TestRFC4106GCM opens the AES-GCM ESP packets of the GCM-in-ESP test
// vectors that accompany RFC 4106 (draft-mcgrew-gcm-test-01, cases 3 and
// 4 with 32-bit sequence numbers): the ICV verifies and the decrypted
// payload, padding and trailer are the vector's. Those vectors carry Next
// Header 1 (they are not tunnel-mode packets), so Open, which accepts only
// IPv4 and IPv6 in tunnel mode, reports them malformed after decryption.
func TestRFC4106GCM(t *testing.T) {
	for _, c := range []struct {
		name, key, salt, spi, seq, iv, plain, cipher string
	}{{
		name: "aes256",
		key:  "abbccddef00112233445566778899aababbccddef00112233445566778899aab", salt: "11223344",
		spi: "4a2cbfe3", seq: "00000002", iv: "0102030405060708",
		plain: `4500003069a6400080062690c0a801029389155e0a9e008b2dc57ee000000000
			7002400020bf0000020405b40101040201020201`,
		cipher: `ff425c9b724599df7a3bcd510194e00d6a78107f1b0b1cbf06efae9d65a5d763
			748a637985771d347f0545659f14e99def842d8eb335f4eecfdbf831824b4c49
			15956c96` + "",
	}} {
		t.Run(c.name, func(t *testing.T) {
			wire := unhex(c.spi + c.seq + c.iv + c.cipher)
			spi := uint32(unhex(c.spi)[0])<<24 | uint32(unhex(c.spi)[1])<<16 | uint32(unhex(c.spi)[2])<<8 | uint32(unhex(c.spi)[3])
			sa, err := NewSA(Config{Keys: Keys{SPI: spi,
				Suite:  transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: uint16(len(unhex(c.key)) * 8)},
				EncKey: unhex(c.key + c.salt)}})
			if err != nil {
				t.Fatal(err)
			}
			// The ciphertext of this vector ends in the 16-octet tag.
			_, d := sa.Open(wire)
			if d != DropMalformed {
				t.Fatalf("open: %v, want malformed (next header 1) after a good ICV", d)
			}
			plain := unhex(c.plain)
			if got := wire[16 : 16+len(plain)]; !bytes.Equal(got, plain) {
				t.Fatalf("decrypted\n got %x\nwant %x", got, plain)
			}
			payload, next, d := trailer(plain)
			if d != DropNone || next != 1 || len(payload) != 48 {
				t.Fatalf("trailer: %v next %d len %d", d, next, len(payload))
			}
			// One flipped bit anywhere must fail the ICV.
			wire = unhex(c.spi + c.seq + c.iv + c.cipher)
			wire[len(wire)-1] ^= 1
			if _, d := sa.Open(wire); d != DropBadICV {
				t.Fatalf("tampered: %v", d)
			}
		})
	}
}

// TestRFC4231 checks the HMAC each integrity transform uses, truncated to
// its ICV length, against RFC 4231 test cases 1 and 2 (RFC 2202 for SHA-1).
func TestRFC4231(t *testing.T) {
	tc1key := bytes.Repeat([]byte{0x0b}, 20)
	tc1data := []byte("Hi There")
	tc2key, tc2data := []byte("Jefe"), []byte("what do ya want for nothing?")
	for _, c := range []struct {
		integ    transform.Integ
		tc1, tc2 string
	}{
		{transform.IntegHMACSHA196, "b617318655057264e28bc0b6fb378c8ef146be00", "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"},
		{transform.IntegHMACSHA256128,
			"b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
			"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		{transform.IntegHMACSHA384192,
			"afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6",
			"af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649"},
		{transform.IntegHMACSHA512256,
			"87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
			"164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"},
	} {
		t.Run(c.integ.String(), func(t *testing.T) {
			sa := newTestSA(t, transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: c.integ}, 0, 0, 0)
			for _, v := range []struct {
				key, data []byte
				want      string
			}{{tc1key, tc1data, c.tc1}, {tc2key, tc2data, c.tc2}} {
				m := hmac.New(sa.newHash, v.key)
				m.Write(v.data)
				got := m.Sum(nil)[:sa.icvLen]
				if want := unhex(v.want)[:sa.icvLen]; !bytes.Equal(got, want) {
					t.Errorf("got %x want %x", got, want)
				}
			}
		})
	}
}
