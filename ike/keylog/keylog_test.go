package keylog

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/transform"
)

func seq(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func TestIKELine(t *testing.T) {
	cbc := &suite.IKEKeys{
		Suite: suite.Suite{Encr: transform.EncrAESCBC, KeyBits: 128, PRF: transform.PRFHMACSHA2256, Integ: transform.IntegHMACSHA196, DH: transform.DHECP256},
		SKei:  seq(0x10, 16), SKer: seq(0x20, 16), SKai: seq(0x30, 20), SKar: seq(0x40, 20),
	}
	gcm := &suite.IKEKeys{
		Suite: suite.Suite{Encr: transform.EncrAESGCM16, KeyBits: 256, PRF: transform.PRFHMACSHA2384, DH: transform.DHCurve25519},
		SKei:  seq(0x10, 36), SKer: seq(0x50, 36), SKai: []byte{}, SKar: []byte{},
	}
	got, err := AppendIKELine(nil, 0x3cfdee58e0750b5e, 0x00000000000000ff, cbc)
	if err != nil {
		t.Fatal(err)
	}
	want := "3cfdee58e0750b5e,00000000000000ff,101112131415161718191a1b1c1d1e1f,202122232425262728292a2b2c2d2e2f," +
		`"AES-CBC-128 [RFC3602]",` + "303132333435363738393a3b3c3d3e3f40414243,404142434445464748494a4b4c4d4e4f50515253," +
		`"HMAC_SHA1_96 [RFC2404]"` + "\n"
	if string(got) != want {
		t.Errorf("CBC line\n got %s\nwant %s", got, want)
	}
	got, err = AppendIKELine(nil, 1, 2, gcm)
	if err != nil {
		t.Fatal(err)
	}
	want = "0000000000000001,0000000000000002," + hexs(seq(0x10, 36)) + "," + hexs(seq(0x50, 36)) +
		`,"AES-GCM-256 with 16 octet ICV [RFC5282]",,,"NONE [RFC4306]"` + "\n"
	if string(got) != want {
		t.Errorf("GCM line\n got %s\nwant %s", got, want)
	}
	chacha := &suite.IKEKeys{Suite: suite.Suite{Encr: transform.EncrChaCha20Poly1305, PRF: transform.PRFHMACSHA2256, DH: transform.DHCurve25519}}
	if _, err := AppendIKELine(nil, 1, 2, chacha); !errors.Is(err, ErrNotExportable) {
		t.Errorf("ChaCha20-Poly1305: %v", err)
	}
}

func hexs(b []byte) string {
	const d = "0123456789abcdef"
	var sb strings.Builder
	for _, c := range b {
		sb.WriteByte(d[c>>4])
		sb.WriteByte(d[c&15])
	}
	return sb.String()
}

func TestESPLine(t *testing.T) {
	gcm := &esp.Keys{SPI: 0xa0e236d6, Suite: transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128}, EncKey: seq(1, 20)}
	cbc := &esp.Keys{SPI: 0x4053c4fb, Suite: transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA256128}, EncKey: seq(2, 32), IntegKey: seq(3, 32)}
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	tests := []struct {
		name     string
		src, dst netip.Addr
		k        *esp.Keys
		want     string
	}{
		{"gcm", a, b, gcm, `"IPv4","192.0.2.1","192.0.2.2","0xa0e236d6","AES-GCM with 16 octet ICV [RFC4106]","0x` + hexs(seq(1, 20)) + `","NULL","0x"`},
		{"cbc", b, a, cbc, `"IPv4","192.0.2.2","192.0.2.1","0x4053c4fb","AES-CBC [RFC3602]","0x` + hexs(seq(2, 32)) + `","HMAC-SHA-256-128 [RFC4868]","0x` + hexs(seq(3, 32)) + `"`},
		{"wildcard", netip.Addr{}, b, gcm, `"IPv4","*","192.0.2.2","0xa0e236d6","AES-GCM with 16 octet ICV [RFC4106]","0x` + hexs(seq(1, 20)) + `","NULL","0x"`},
		{"ipv6", netip.MustParseAddr("2001:db8::1"), netip.Addr{}, gcm, `"IPv6","2001:db8::1","*","0xa0e236d6","AES-GCM with 16 octet ICV [RFC4106]","0x` + hexs(seq(1, 20)) + `","NULL","0x"`},
		{"mapped", netip.MustParseAddr("::ffff:192.0.2.1"), b, gcm, `"IPv4","192.0.2.1","192.0.2.2","0xa0e236d6","AES-GCM with 16 octet ICV [RFC4106]","0x` + hexs(seq(1, 20)) + `","NULL","0x"`},
	}
	for _, tt := range tests {
		got, err := AppendESPLine(nil, tt.src, tt.dst, tt.k)
		if err != nil || string(got) != tt.want+"\n" {
			t.Errorf("%s:\n got %s (%v)\nwant %s", tt.name, got, err, tt.want)
		}
	}
	chacha := &esp.Keys{SPI: 0x1000, Suite: transform.ESP{Encr: transform.EncrChaCha20Poly1305}, EncKey: seq(0, 36)}
	if _, err := AppendESPLine(nil, a, b, chacha); !errors.Is(err, ErrNotExportable) {
		t.Errorf("ChaCha20-Poly1305: %v", err)
	}
}

func TestWriterFiles(t *testing.T) {
	dir := t.TempDir()
	ikePath, espPath := filepath.Join(dir, "ike"), filepath.Join(dir, "esp")
	w, err := Create(ikePath, espPath)
	if err != nil {
		t.Fatal(err)
	}
	k, err := suite.DeriveIKEKeys(suite.Suite{Encr: transform.EncrAESGCM16, KeyBits: 128, PRF: transform.PRFHMACSHA2256, DH: transform.DHECP256},
		[]byte("shared"), []byte("ni"), []byte("nr"), 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := k.DeriveChildKeys(transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 256}, nil, []byte("ni"), []byte("nr"), 0x1001, 0x2002)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := w.IKESA(1, 2, k); err != nil {
				t.Error(err)
			}
			if err := w.ChildSA(netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.1"), &ck); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for path, lines := range map[string]int{ikePath: 8, espPath: 16} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", path, st.Mode())
		}
		b, _ := os.ReadFile(path)
		if n := bytes.Count(b, []byte("\n")); n != lines {
			t.Errorf("%s: %d lines, want %d", path, n, lines)
		}
	}
	b, _ := os.ReadFile(espPath)
	if !bytes.Contains(b, []byte(`"192.0.2.2","192.0.2.1","0x00002002"`)) || !bytes.Contains(b, []byte(`"192.0.2.1","192.0.2.2","0x00001001"`)) {
		t.Errorf("CHILD_SA directions wrong:\n%s", b)
	}

	// Appending to our own file works; a file others can read is refused.
	if w, err := Create(ikePath, ""); err != nil {
		t.Errorf("reopen: %v", err)
	} else {
		w.Close()
	}
	open := filepath.Join(dir, "open")
	os.WriteFile(open, nil, 0o644)
	os.Chmod(open, 0o644)
	if _, err := Create("", open); err == nil {
		t.Error("world-readable key file accepted")
	}
	if _, err := Create(dir, ""); err == nil {
		t.Error("directory accepted")
	}

	var nilW *Writer // export off
	if err := nilW.IKESA(1, 2, k); err != nil {
		t.Error(err)
	}
	if err := nilW.ChildSA(netip.Addr{}, netip.Addr{}, &ck); err != nil {
		t.Error(err)
	}
	if err := nilW.Close(); err != nil {
		t.Error(err)
	}
}
