package tunnelencap

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAppendValueVectors pins the octets we send, built by hand from
// RFC 9012 §2, §3.1 and §3.3.2.
func TestAppendValueVectors(t *testing.T) {
	tests := []struct {
		name string
		ep   Endpoint
		want string
	}{{
		name: "ipv4 raw ESP",
		ep:   netip.MustParseAddrPort("198.51.100.7:0"),
		//     type  len   st6 l  reserved  afi  address
		want: "0019" + "000c" + "06" + "0a" + "00000000" + "0001" + "c6336407",
	}, {
		name: "ipv4 ESP in UDP 4500",
		ep:   netip.MustParseAddrPort("198.51.100.7:4500"),
		want: "0019" + "0010" + "060a" + "00000000" + "0001" + "c6336407" + "0802" + "1194",
	}, {
		name: "ipv6 ESP in UDP 4501",
		ep:   netip.MustParseAddrPort("[2001:db8::1]:4501"),
		want: "0019" + "001c" + "0616" + "00000000" + "0002" + "20010db8000000000000000000000001" + "0802" + "1195",
	}, {
		name: "ipv4-mapped is sent as ipv4",
		ep:   netip.MustParseAddrPort("[::ffff:198.51.100.7]:0"),
		want: "0019" + "000c" + "060a" + "00000000" + "0001" + "c6336407",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AppendValue(nil, tt.ep)
			if err != nil {
				t.Fatal(err)
			}
			if want := mustHex(t, tt.want); !bytes.Equal(got, want) {
				t.Fatalf("AppendValue = %x, want %x", got, want)
			}
			attr, err := AppendAttribute([]byte{0xaa}, tt.ep)
			if err != nil {
				t.Fatal(err)
			}
			if attr[0] != 0xaa || attr[1] != AttrFlags || attr[2] != AttrType || int(attr[3]) != len(got) || !bytes.Equal(attr[4:], got) {
				t.Fatalf("AppendAttribute = %x", attr)
			}
			ep, found, err := Decode(got)
			if err != nil || !found {
				t.Fatalf("Decode: found=%v err=%v", found, err)
			}
			if want := netip.AddrPortFrom(tt.ep.Addr().Unmap(), tt.ep.Port()); ep != want {
				t.Fatalf("Decode = %v, want %v", ep, want)
			}
		})
	}
}

// TestShapeFRRAccepts checks what we emit stays within what FRR 8.4 accepts:
// one tunnel TLV, and only sub-TLV types below 128.
func TestShapeFRRAccepts(t *testing.T) {
	for _, ep := range []string{"192.0.2.1:0", "192.0.2.1:4500", "[2001:db8::9]:4500"} {
		v, err := AppendValue(nil, netip.MustParseAddrPort(ep))
		if err != nil {
			t.Fatal(err)
		}
		tlvLen := int(v[2])<<8 | int(v[3])
		if 4+tlvLen != len(v) {
			t.Fatalf("%s: more than one TLV in %x", ep, v)
		}
		for body := v[4:]; len(body) > 0; body = body[2+int(body[1]):] {
			if body[0] >= 128 {
				t.Fatalf("%s: sub-TLV type %d >= 128", ep, body[0])
			}
		}
	}
}

func TestAppendValueRejects(t *testing.T) {
	for _, ep := range []Endpoint{{}, netip.MustParseAddrPort("0.0.0.0:4500"), netip.MustParseAddrPort("[::]:0")} {
		if _, err := AppendValue(nil, ep); !errors.Is(err, ErrEndpoint) {
			t.Errorf("AppendValue(%v) err = %v, want ErrEndpoint", ep, err)
		}
	}
}

func TestDecode(t *testing.T) {
	ours := "0019" + "0010" + "060a" + "00000000" + "0001" + "c6336407" + "0802" + "1194"
	tests := []struct {
		name      string
		value     string
		wantEP    string // "" = no address
		wantPort  uint16
		wantFound bool
		wantErr   bool
	}{
		{name: "empty attribute", value: "", wantFound: false},
		{name: "ours", value: ours, wantEP: "198.51.100.7", wantPort: 4500, wantFound: true},
		{name: "reserved octets ignored", value: "0019000c060a" + "deadbeef" + "0001c6336407", wantEP: "198.51.100.7", wantFound: true},
		{name: "other tunnel type only", value: "0002000c060a000000000001c6336407", wantFound: false},
		{name: "deprecated IPsec type 4 ignored", value: "0004000c060a000000000001c6336407", wantFound: false},
		{name: "other type then ours", value: "0008" + "0003" + "0c0100" + ours, wantEP: "198.51.100.7", wantPort: 4500, wantFound: true},
		{name: "first TLV of ours wins", value: ours + "0019000c060a000000000001c0000201", wantEP: "198.51.100.7", wantPort: 4500, wantFound: true},
		{name: "unknown sub-TLVs ignored", value: "0019" + "0014" + "0301ff" + "060a000000000001c6336407" + "7e0100" + "0700", wantEP: "198.51.100.7", wantFound: true},
		{name: "extended-length sub-TLV skipped", value: "0019" + "0012" + "900003abcdef" + "060a000000000001c6336407", wantEP: "198.51.100.7", wantFound: true},
		{name: "no egress sub-TLV means next hop", value: "0019" + "0004" + "08021194", wantPort: 4500, wantFound: true},
		{name: "afi 0 means next hop", value: "0019" + "0008" + "0606000000000000", wantFound: true},
		{name: "ipv6", value: "0019001806160000000000022001" + "0db8000000000000000000000001", wantEP: "2001:db8::1", wantFound: true},
		{name: "truncated TLV header", value: "0019", wantErr: true},
		{name: "TLV length too long", value: "001900ff0600", wantErr: true},
		{name: "sub-TLV length too long", value: "00190002060a", wantErr: true},
		{name: "egress afi 3", value: "0019000c060a000000000003c6336407", wantErr: true},
		{name: "egress length mismatch", value: "0019000b0609000000000001c63364", wantErr: true},
		{name: "egress short", value: "00190004060200", wantErr: true},
		{name: "egress afi 0 with address", value: "0019000c060a000000000000c6336407", wantErr: true},
		{name: "egress unspecified", value: "0019000c060a00000000000100000000", wantErr: true},
		{name: "egress multicast", value: "0019000c060a000000000001e0000001", wantErr: true},
		{name: "egress v4-mapped v6", value: "00190018061600000000000200000000000000000000ffffc6336407", wantErr: true},
		{name: "udp port 3 octets", value: "0019" + "0011" + "060a000000000001c6336407" + "0803119400", wantErr: true},
		{name: "udp port 1 octet", value: "0019" + "000f" + "060a000000000001c6336407" + "080111", wantErr: true},
		{name: "malformed other-type TLV still malformed", value: "000200030605", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep, found, err := Decode(mustHex(t, tt.value))
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if found != tt.wantFound {
				t.Fatalf("found = %v, want %v", found, tt.wantFound)
			}
			var want netip.Addr
			if tt.wantEP != "" {
				want = netip.MustParseAddr(tt.wantEP)
			}
			if ep.Addr() != want || ep.Port() != tt.wantPort {
				t.Fatalf("ep = %v, want %v port %d", ep, want, tt.wantPort)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	nh := netip.MustParseAddr("::ffff:192.0.2.9")
	tests := []struct {
		ep   Endpoint
		nh   netip.Addr
		want string
	}{
		{netip.MustParseAddrPort("198.51.100.7:4500"), nh, "198.51.100.7:4500"},
		{netip.AddrPortFrom(netip.Addr{}, 4500), nh, "192.0.2.9:4500"},
		{Endpoint{}, netip.MustParseAddr("2001:db8::5"), "[2001:db8::5]:0"},
		{Endpoint{}, netip.MustParseAddr("0.0.0.0"), "invalid AddrPort"},
		{Endpoint{}, netip.Addr{}, "invalid AddrPort"},
	}
	for _, tt := range tests {
		if got := Resolve(tt.ep, tt.nh).String(); got != tt.want {
			t.Errorf("Resolve(%v, %v) = %s, want %s", tt.ep, tt.nh, got, tt.want)
		}
	}
}

func TestFindAttribute(t *testing.T) {
	v, _ := AppendValue(nil, netip.MustParseAddrPort("192.0.2.1:4500"))
	origin := mustHex(t, "400101"+"00")
	ext := append([]byte{0xd0, 23, 0, byte(len(v))}, v...) // extended-length form of attribute 23
	tests := []struct {
		name        string
		attrs       []byte
		present, ok bool
	}{
		{"none", origin, false, true},
		{"normal", append(append([]byte{}, origin...), append([]byte{0xc0, 23, byte(len(v))}, v...)...), true, true},
		{"extended length", append(append([]byte{}, origin...), ext...), true, true},
		{"truncated header", []byte{0x40, 1}, false, false},
		{"truncated value", mustHex(t, "c017100102"), false, false},
		{"truncated extended", mustHex(t, "d017"), false, false},
	}
	for _, tt := range tests {
		got, present, ok := FindAttribute(tt.attrs)
		if present != tt.present || ok != tt.ok {
			t.Errorf("%s: present=%v ok=%v, want %v %v", tt.name, present, ok, tt.present, tt.ok)
		}
		if present && !bytes.Equal(got, v) {
			t.Errorf("%s: value %x, want %x", tt.name, got, v)
		}
	}
}

// FuzzDecode checks that Decode never panics and that whatever decodes to an
// endpoint with an address encodes back to a value that decodes the same.
func FuzzDecode(f *testing.F) {
	for _, ep := range []string{"198.51.100.7:0", "198.51.100.7:4500", "[2001:db8::1]:4500"} {
		v, _ := AppendValue(nil, netip.MustParseAddrPort(ep))
		f.Add(v)
	}
	f.Add(mustHex(f, "0019000408021194"))
	f.Add(mustHex(f, "0008000c060a000000000001c6336407"))
	f.Fuzz(func(t *testing.T, value []byte) {
		ep, found, err := Decode(value)
		if err != nil {
			if found || ep.IsValid() {
				t.Fatalf("error %v with a result", err)
			}
			return
		}
		if !found || !ep.Addr().IsValid() {
			return
		}
		again, err := AppendValue(nil, ep)
		if err != nil {
			t.Fatalf("re-encode %v: %v", ep, err)
		}
		ep2, found2, err := Decode(again)
		if err != nil || !found2 || ep2 != ep {
			t.Fatalf("round trip %v -> %x -> %v %v %v", ep, again, ep2, found2, err)
		}
		FindAttribute(value)
	})
}
