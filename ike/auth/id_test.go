package auth

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
)

func TestParseID(t *testing.T) {
	tests := []struct {
		in   string
		typ  IDType
		data []byte // nil: not checked
		str  string
	}{
		{"fqdn:cpe1.example.net", IDFQDN, []byte("cpe1.example.net"), "fqdn:cpe1.example.net"},
		{"FQDN:cpe1.example.net", IDFQDN, []byte("cpe1.example.net"), "fqdn:cpe1.example.net"},
		{"cpe1.example.net", IDFQDN, []byte("cpe1.example.net"), "fqdn:cpe1.example.net"},
		{"rfc822:ops@example.net", IDRFC822, []byte("ops@example.net"), "rfc822:ops@example.net"},
		{"email:ops@example.net", IDRFC822, []byte("ops@example.net"), "rfc822:ops@example.net"},
		{"ops@example.net", IDRFC822, []byte("ops@example.net"), "rfc822:ops@example.net"},
		{"ipv4:192.0.2.1", IDIPv4, []byte{192, 0, 2, 1}, "ipv4:192.0.2.1"},
		{"192.0.2.1", IDIPv4, []byte{192, 0, 2, 1}, "ipv4:192.0.2.1"},
		{"ipv6:2001:db8::1", IDIPv6, netip.MustParseAddr("2001:db8::1").AsSlice(), "ipv6:2001:db8::1"},
		{"2001:db8::1", IDIPv6, netip.MustParseAddr("2001:db8::1").AsSlice(), "ipv6:2001:db8::1"},
		{"keyid:0a1b2c3d", IDKeyID, []byte{0x0a, 0x1b, 0x2c, 0x3d}, "keyid:0a1b2c3d"},
		{"keyid:0A:1b:2C:3d", IDKeyID, []byte{0x0a, 0x1b, 0x2c, 0x3d}, "keyid:0a1b2c3d"},
		{"dn:CN=cpe1,O=Acme", IDDN, nil, "dn:CN=cpe1, O=Acme"},
		{"CN=cpe1, O=Acme", IDDN, nil, "dn:CN=cpe1, O=Acme"},
		{"dn:C=CH, O=strongSwan, CN=moon.strongswan.org", IDDN, nil, "dn:C=CH, O=strongSwan, CN=moon.strongswan.org"},
		{`dn:CN=a\,b\+c,OU=x+OU=y;O=Acme`, IDDN, nil, `dn:CN=a\,b\+c, OU=x+OU=y, O=Acme`},
		{`dn:CN=\ lead and trail\ ,E=ops@example.net`, IDDN, nil, `dn:CN=\ lead and trail\ , E=ops@example.net`},
		{`dn:CN=caf\c3\a9`, IDDN, nil, "dn:CN=café"},
		{"dn:2.5.4.3=x,DC=example,DC=net", IDDN, nil, "dn:CN=x, DC=example, DC=net"},
		{"dn:CN=#0c0378797a", IDDN, nil, "dn:CN=xyz"},
		{"dn:1.2.3.4=#020105", IDDN, nil, "dn:1.2.3.4=#020105"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			id, err := ParseID(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if id.Type != tt.typ {
				t.Errorf("type %v, want %v", id.Type, tt.typ)
			}
			if tt.data != nil && !bytes.Equal(id.Data(), tt.data) {
				t.Errorf("data %x, want %x", id.Data(), tt.data)
			}
			if got := id.String(); got != tt.str {
				t.Errorf("String() = %q, want %q", got, tt.str)
			}
			back, err := ParseID(id.String())
			if err != nil || back != id {
				t.Errorf("ParseID(String()) = %v, %v; want the same octets", back, err)
			}
			wire, err := NewID(id.Type, id.Data())
			if err != nil || wire != id {
				t.Errorf("NewID(Data()) = %v, %v", wire, err)
			}
		})
	}
}

// TestParseDNEncoding checks the DER a DN string produces: DER order as
// written, PrintableString for C, IA5String for E, UTF8String otherwise.
func TestParseDNEncoding(t *testing.T) {
	id := MustParseID("dn:C=CH, O=Acme, CN=cpe1, E=ops@example.net")
	var seq pkix.RDNSequence
	if rest, err := asn1.Unmarshal(id.Data(), &seq); err != nil || len(rest) != 0 {
		t.Fatal(err)
	}
	var name pkix.Name
	name.FillFromRDNSequence(&seq)
	if name.Country[0] != "CH" || name.Organization[0] != "Acme" || name.CommonName != "cpe1" {
		t.Errorf("decoded %+v", name)
	}
	var raw []rdnSET
	if _, err := asn1.Unmarshal(id.Data(), &raw); err != nil {
		t.Fatal(err)
	}
	wantTags := []int{asn1.TagPrintableString, asn1.TagUTF8String, asn1.TagUTF8String, asn1.TagIA5String}
	for i, rdn := range raw {
		if rdn[0].Value.Tag != wantTags[i] {
			t.Errorf("RDN %d (%v): tag %d, want %d", i, rdn[0].Type, rdn[0].Value.Tag, wantTags[i])
		}
	}
	if !raw[0][0].Type.Equal(asn1.ObjectIdentifier{2, 5, 4, 6}) || !raw[2][0].Type.Equal(asn1.ObjectIdentifier{2, 5, 4, 3}) {
		t.Error("RDNs not in the order written")
	}
}

func TestParseIDErrors(t *testing.T) {
	for _, in := range []string{
		"", "fqdn:", "ipv4:", "ipv4:2001:db8::1", "ipv6:192.0.2.1", "ipv4:192.0.2.256", "ipv6:fe80::1%eth0",
		"keyid:xyz", "keyid:", "dn:", "dn:CN", "dn:XX=1", "dn:CN=", "dn:CN=a,", "dn:CN=a\\", "dn:CN=#zz", "dn:CN=#0203",
		"dn:1.50.3=x", "fqdn:bad\x01name", "rfc822:a\nb@c",
	} {
		if id, err := ParseID(in); err == nil {
			t.Errorf("ParseID(%q) = %v, want error", in, id)
		} else if !errors.Is(err, ErrBadID) {
			t.Errorf("ParseID(%q): %v does not wrap ErrBadID", in, err)
		}
	}
}

func TestNewIDValidates(t *testing.T) {
	good := MustParseID("dn:CN=x").Data()
	for _, tc := range []struct {
		name string
		t    IDType
		data []byte
		ok   bool
	}{
		{"ipv4", IDIPv4, []byte{1, 2, 3, 4}, true},
		{"ipv4 short", IDIPv4, []byte{1, 2, 3}, false},
		{"ipv6 long", IDIPv6, make([]byte, 17), false},
		{"fqdn empty", IDFQDN, nil, false},
		{"fqdn nul", IDFQDN, []byte("a\x00b"), false},
		{"fqdn not utf8", IDFQDN, []byte{0xff, 0xfe}, false},
		{"dn", IDDN, good, true},
		{"dn trailing", IDDN, append(bytes.Clone(good), 0), false},
		{"dn garbage", IDDN, []byte{0x30, 0x80}, false},
		{"keyid", IDKeyID, []byte{0}, true},
		{"too long", IDKeyID, make([]byte, MaxIDLen+1), false},
		{"der asn1 gn", 10, []byte{1}, false},
	} {
		_, err := NewID(tc.t, tc.data)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v", tc.name, err)
		}
	}
}

func TestIDEqual(t *testing.T) {
	// The same DN with PrintableString values (as Go's x509 writes them)
	// and with UTF8String values (as ParseID writes them).
	printable, _ := asn1.Marshal(pkix.Name{Organization: []string{"Acme"}, CommonName: "cpe1"}.ToRDNSequence())
	a, err := NewID(IDDN, printable)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		a, b ID
		eq   bool
	}{
		{MustParseID("fqdn:CPE1.Example.NET"), MustParseID("fqdn:cpe1.example.net"), true},
		{MustParseID("rfc822:Ops@example.net"), MustParseID("rfc822:ops@example.net"), false},
		{a, MustParseID("dn:O=Acme,CN=cpe1"), true},
		{a, MustParseID("dn:O=ACME,CN=CPE1"), true},
		{a, MustParseID("dn:CN=cpe1,O=Acme"), false}, // order matters
		{a, MustParseID("dn:O=Acme,CN=cpe2"), false},
		{a, MustParseID("dn:O=Acme,OU=x,CN=cpe1"), false},
		{MustParseID("ipv4:192.0.2.1"), MustParseID("fqdn:192.0.2.1"), false},
		{MustParseID("keyid:01"), MustParseID("keyid:01"), true},
	}
	for _, tt := range tests {
		if got := tt.a.Equal(tt.b); got != tt.eq {
			t.Errorf("%v.Equal(%v) = %v", tt.a, tt.b, got)
		}
	}
}

func TestIDBodyAndString(t *testing.T) {
	id := MustParseID("fqdn:cpe1")
	if got := id.AppendBody([]byte{9}); !bytes.Equal(got, []byte{9, 2, 0, 0, 0, 'c', 'p', 'e', '1'}) {
		t.Errorf("AppendBody = %x", got)
	}
	weird, _ := NewID(IDFQDN, []byte("a b\"c"))
	if s := weird.String(); s != `fqdn:"a b\"c"` {
		t.Errorf("String() = %s, want quoted", s)
	}
	if (ID{}).String() != "none" || !(ID{}).IsZero() {
		t.Error("zero ID")
	}
	if a, ok := MustParseID("ipv6:2001:db8::5").Addr(); !ok || a != netip.MustParseAddr("2001:db8::5") {
		t.Errorf("Addr() = %v", a)
	}
	if AddrID(netip.MustParseAddr("::ffff:192.0.2.1")) != MustParseID("ipv4:192.0.2.1") {
		t.Error("AddrID does not unmap IPv4-mapped addresses")
	}
}

func TestPattern(t *testing.T) {
	dnID := MustParseID("dn:O=Acme,CN=cpe1")
	tests := []struct {
		pat   string
		match []ID
		miss  []ID
	}{
		{"any", []ID{MustParseID("fqdn:x"), dnID}, []ID{{}}},
		{"fqdn:*.example.net", []ID{MustParseID("fqdn:cpe1.example.net"), MustParseID("fqdn:a.b.EXAMPLE.net")},
			[]ID{MustParseID("fqdn:example.net"), MustParseID("fqdn:cpe1.example.org"), MustParseID("fqdn:xexample.net"), MustParseID("rfc822:a@x.example.net")}},
		{"fqdn:*", []ID{MustParseID("fqdn:anything")}, []ID{MustParseID("ipv4:192.0.2.1")}},
		{"rfc822:*@example.net", []ID{MustParseID("rfc822:ops@example.net")}, []ID{MustParseID("rfc822:ops@sub.example.net"), MustParseID("rfc822:@example.net")}},
		{"ipv4:192.0.2.0/24", []ID{MustParseID("ipv4:192.0.2.200")}, []ID{MustParseID("ipv4:192.0.3.1"), MustParseID("ipv6:2001:db8::1")}},
		{"2001:db8::/32", []ID{MustParseID("ipv6:2001:db8:1::1")}, []ID{MustParseID("ipv6:2001:db9::1")}},
		{"dn:O=Acme,CN=*", []ID{dnID, MustParseID("dn:O=acme,CN=cpe2")}, []ID{MustParseID("dn:O=Evil,CN=cpe1"), MustParseID("dn:O=Acme,OU=x,CN=cpe1"), MustParseID("fqdn:cpe1")}},
		{"fqdn:cpe1.example.net", []ID{MustParseID("fqdn:CPE1.example.net")}, []ID{MustParseID("fqdn:cpe2.example.net")}},
		{"dn:O=Acme,CN=cpe1", []ID{dnID}, []ID{MustParseID("dn:O=Acme,CN=cpe2")}},
	}
	for _, tt := range tests {
		p, err := ParsePattern(tt.pat)
		if err != nil {
			t.Fatalf("%s: %v", tt.pat, err)
		}
		for _, id := range tt.match {
			if !p.Match(id) {
				t.Errorf("%s does not match %v", tt.pat, id)
			}
		}
		for _, id := range tt.miss {
			if p.Match(id) {
				t.Errorf("%s matches %v", tt.pat, id)
			}
		}
		if p.String() != tt.pat {
			t.Errorf("String() = %q", p.String())
		}
	}
	if _, ok := MustParsePattern("fqdn:x").Exact(); !ok {
		t.Error("exact pattern not reported as exact")
	}
	for _, bad := range []string{"fqdn:*.", "fqdn:*.a*", "ipv4:192.0.2.0/33", "ipv4:2001:db8::/32", "dn:CN=*,XX=1", ""} {
		if _, err := ParsePattern(bad); err == nil {
			t.Errorf("ParsePattern(%q) succeeded", bad)
		}
	}
	if (Pattern{}).Match(MustParseID("fqdn:x")) {
		t.Error("zero Pattern matches")
	}
}

func TestIDLogValueInJSON(t *testing.T) {
	id, err := ParseID("fqdn:cpe3.lab")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("refused", "id", id)
	if !strings.Contains(buf.String(), `"id":"fqdn:cpe3.lab"`) {
		t.Errorf("JSON log line does not name the identity: %s", buf.String())
	}
}
