package lab

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

// The lab decodes what it captures on links, what it receives on ICMP
// sockets, the daemons' logs and metrics and key tables: none of it may
// panic, whatever the input.

func FuzzDecodeFrame(f *testing.F) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::2")
	esp := []byte{0xc0, 0xff, 0xee, 0x01, 0, 0, 0, 7, 1, 2, 3, 4}
	f.Add(frame(a, a, 50, esp))
	f.Add(frame(a, a, 17, udp(4500, 4500, esp)))
	f.Add(frame(b, b, 17, udp(4500, 500, []byte{0, 0, 0, 0, 1})))
	f.Add(frame(a, a, 17, udp(4500, 4500, []byte{0xff})))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, fr []byte) {
		pi, ok := DecodeFrame(fr)
		if !ok {
			return
		}
		if pi.Kind == KindESP && (len(pi.ESP) < 8 || !bytes.Contains(fr, pi.ESP)) {
			t.Fatalf("ESP %x not inside the frame", pi.ESP)
		}
		if pi.Family == IPv4 && !pi.Src.Is4() || pi.Family == IPv6 && !pi.Src.Is6() {
			t.Fatalf("family %v with %v", pi.Family, pi.Src)
		}
	})
}

func FuzzParseEchoReply(f *testing.F) {
	token := []byte("12345678")
	f.Add(false, appendEcho(nil, false, 1, 2, token))
	f.Add(true, appendEcho(nil, true, 1, 2, token))
	f.Fuzz(func(t *testing.T, v6 bool, b []byte) {
		if _, _, ok := parseEchoReply(v6, b, token); ok && !bytes.Equal(b[8:16], token) {
			t.Fatal("reply without the token accepted")
		}
	})
}

func FuzzParseLogLine(f *testing.F) {
	f.Add([]byte(`{"time":"2026-01-02T03:04:05Z","level":"INFO","msg":"x","id":"fqdn:a","n":3}`))
	f.Add([]byte(`{"level":7}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := ParseLogLine(line)
		if err == nil {
			_ = r.Str("id")
		}
	})
}

func FuzzParseESPSA(f *testing.F) {
	f.Add(`"IPv4","*","*","0xc0ffee01","AES-CBC [RFC3602]","0x` + strings.Repeat("11", 32) + `","HMAC-SHA-256-128 [RFC4868]","0x` + strings.Repeat("22", 32) + `"` + "\n")
	f.Add(`"IPv6","2001:db8::1","*","0xc0ffee02","AES-GCM with 16 octet ICV [RFC4106]","0x` + strings.Repeat("11", 36) + `","NULL","0x"` + "\n")
	f.Add(`"IPv4",`)
	f.Fuzz(func(t *testing.T, s string) {
		entries, err := ParseESPSA(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.Keys.Validate() != nil {
				t.Fatalf("invalid keys accepted: %v", e.Keys)
			}
		}
		WipeESPSA(entries)
	})
}

func FuzzParseMetrics(f *testing.F) {
	f.Add("# HELP x y\nx{a=\"b\"} 1\ny 2 1700000000\n")
	f.Add("x{a=\"}\"} 1\n")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = ParseMetrics(strings.NewReader(s))
	})
}
