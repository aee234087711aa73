package ike

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/mpsa-vpn/mpsa/ike/wire"
)

func sel(start, end string, proto uint8, sp, ep uint16) wire.Selector {
	return wire.Selector{Start: netip.MustParseAddr(start), End: netip.MustParseAddr(end), IPProto: proto, StartPort: sp, EndPort: ep}
}

func TestSelectorPrefixes(t *testing.T) {
	for _, tc := range []struct {
		s    wire.Selector
		want string
	}{
		{sel("10.0.0.1", "10.0.0.6", 0, 0, 65535), "10.0.0.1/32 10.0.0.2/31 10.0.0.4/31 10.0.0.6/32"},
		{sel("0.0.0.0", "255.255.255.255", 0, 0, 65535), "0.0.0.0/0"},
		{sel("10.99.1.0", "10.99.1.255", 0, 0, 65535), "10.99.1.0/24"},
		{sel("2001:db8::", "2001:db8::1:0", 0, 0, 65535), "2001:db8::/112 2001:db8::1:0/128"},
		{sel("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 0, 0, 65535), "::/0"},
	} {
		var got []string
		for _, p := range SelectorPrefixes(tc.s) {
			got = append(got, p.String())
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("%v: got %v, want %s", tc.s, got, tc.want)
		}
	}
}

func TestNarrow(t *testing.T) {
	any4 := sel("0.0.0.0", "255.255.255.255", 0, 0, 65535)
	for _, tc := range []struct {
		name              string
		proposed, allowed []wire.Selector
		want              string
	}{
		{"to the policy", []wire.Selector{any4}, []wire.Selector{sel("10.99.1.0", "10.99.1.255", 0, 0, 65535)}, "10.99.1.0-10.99.1.255"},
		{"protocol and ports", []wire.Selector{sel("10.0.0.0", "10.0.0.255", 6, 0, 65535)}, []wire.Selector{sel("10.0.0.7", "10.0.0.9", 0, 179, 179)}, "10.0.0.7-10.0.0.9[6/179-179]"},
		{"other protocol", []wire.Selector{sel("10.0.0.0", "10.0.0.255", 6, 0, 65535)}, []wire.Selector{sel("10.0.0.0", "10.0.0.255", 17, 0, 65535)}, ""},
		{"disjoint", []wire.Selector{sel("10.0.0.0", "10.0.0.255", 0, 0, 65535)}, []wire.Selector{sel("10.0.1.0", "10.0.1.255", 0, 0, 65535)}, ""},
		{"other family", []wire.Selector{any4}, []wire.Selector{sel("::", "::1", 0, 0, 65535)}, ""},
		{"several", []wire.Selector{any4}, []wire.Selector{sel("10.1.0.0", "10.1.0.255", 0, 0, 65535), sel("10.2.0.0", "10.2.0.255", 0, 0, 65535)},
			"10.1.0.0-10.1.0.255 10.2.0.0-10.2.0.255"},
	} {
		var got []string
		for _, s := range narrow(tc.proposed, tc.allowed) {
			got = append(got, s.String())
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("%s: got %v, want %q", tc.name, got, tc.want)
		}
		if n := narrow(tc.proposed, tc.allowed); !covers(tc.proposed, n) {
			t.Errorf("%s: narrowed selectors not inside the proposal", tc.name)
		}
	}
}
