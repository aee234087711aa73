package configs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestParseSecret(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []byte
		ok   bool
	}{
		{"plain text secret", []byte("plain text secret"), true},
		{"0x00010203", []byte{0, 1, 2, 3}, true},
		{"0x0g", nil, false},
		{"0x123", nil, false},
		{"0X41", []byte("0X41"), true}, // only lower-case 0x is hex, as in ike/auth
	} {
		s, err := ParseSecret(tc.in)
		if (err == nil) != tc.ok || tc.ok && !bytes.Equal(s.Bytes(), tc.want) {
			t.Errorf("ParseSecret(%q) = %x, %v", tc.in, s.Bytes(), err)
		}
		if err != nil && strings.Contains(err.Error(), tc.in) {
			t.Errorf("error echoes the secret: %v", err)
		}
	}
}

func TestSecretWipe(t *testing.T) {
	s := NewSecret([]byte("0123456789abcdef"))
	b := s.Bytes()
	s.Wipe()
	if !s.IsZero() || !bytes.Equal(b, make([]byte, 16)) {
		t.Fatalf("after Wipe: %q, backing %q", s.Bytes(), b)
	}
	h, _, err := BuildHub(hubTree(), Source{})
	if err != nil {
		t.Fatal(err)
	}
	keep := h.CPEs[0].PSK.Bytes()
	h.Wipe()
	if !bytes.Equal(keep, make([]byte, len(keep))) || !h.CPEs[0].PSK.IsZero() {
		t.Fatalf("Hub.Wipe left %q", keep)
	}
}

// No way of printing a configuration shows a PSK.
func TestSecretsNeverPrinted(t *testing.T) {
	h, _, err := BuildHub(hubTree(), Source{})
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := BuildCPE(cpeTree(), Source{})
	if err != nil {
		t.Fatal(err)
	}
	var outs []string
	for _, v := range []any{h, *h, c, *c, h.CPEs, h.CPEs[0], h.CPEs[0].PSK, c.Credentials} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d", "%x", "%q", "%X", "%o"} {
			outs = append(outs, fmt.Sprintf(verb, v))
		}
		j, _ := json.Marshal(v)
		outs = append(outs, string(j))
		var buf bytes.Buffer
		slog.New(slog.NewTextHandler(&buf, nil)).Info("cfg", "v", v)
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("cfg", "v", v)
		outs = append(outs, buf.String())
	}
	outs = append(outs, h.Redacted(), c.Redacted(), h.String(), c.String())
	d := DiffHub(&Hub{}, h)
	outs = append(outs, d.String(), fmt.Sprintf("%+v", d))
	for _, o := range outs {
		for _, s := range []string{psk1, psk2, psk3, fmt.Sprintf("%x", psk1), fmt.Sprintf("%X", psk1), fmt.Sprint([]byte(psk1)), "0123456789"} {
			if strings.Contains(o, s) {
				t.Fatalf("output leaks a PSK (%q):\n%s", s, o)
			}
		}
	}
	if !strings.Contains(h.Redacted(), `psk: "[redacted]"`) {
		t.Errorf("Redacted does not mark the PSK:\n%s", h.Redacted())
	}
}

func TestRedactedIsYAMLOfTheEffectiveConfig(t *testing.T) {
	c, _, err := BuildCPE(cpeTree(), Source{})
	if err != nil {
		t.Fatal(err)
	}
	want := `hubs: ["192.0.2.1:500", "[2001:db8::1]:500"]
identity: "fqdn:cpe1.acme.example"
credentials:
  psk: "[redacted]"
lan:
  interface: "br-lan"
  prefixes: ["10.1.0.0/24", "fd01:1::/64"]
wan:
  encapsulation: "auto"
dataplane:
  backend: "auto"
  tun:
    name: "mpsa0"
    mtu: 1380
bgp:
  asn: 64512
reconnect:
  min: 1s
  max: 1m0s
status:
  socket: "/run/mpsa/cpe.sock"
log:
  level: "info"
  format: "text"
`
	if got := c.Redacted(); got != want {
		t.Errorf("Redacted:\n%s\nwant:\n%s", got, want)
	}
}
