package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/mpsa-vpn/mpsa/bench/bgp/scenario"
)

// collect records what WalkUpdate hands over.
type collect struct {
	announced, withdrawn []netip.Prefix
}

func (c *collect) Prefix(ipv6 bool, bits int, addr []byte, withdraw bool) {
	var a [16]byte
	copy(a[:], addr)
	var p netip.Prefix
	if ipv6 {
		p = netip.PrefixFrom(netip.AddrFrom16(a), bits)
	} else {
		p = netip.PrefixFrom(netip.AddrFrom4([4]byte(a[:4])), bits)
	}
	if withdraw {
		c.withdrawn = append(c.withdrawn, p)
	} else {
		c.announced = append(c.announced, p)
	}
}

func serialize(t testing.TB, m *bgp.BGPMessage) []byte {
	t.Helper()
	b, err := m.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func v4(p string) *bgp.IPAddrPrefix {
	q := netip.MustParsePrefix(p)
	return bgp.NewIPAddrPrefix(uint8(q.Bits()), q.Addr().String())
}

func v6(p string) bgp.AddrPrefixInterface {
	q := netip.MustParsePrefix(p)
	return bgp.NewIPv6AddrPrefix(uint8(q.Bits()), q.Addr().String())
}

func pfx(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// TestWalkGoBGP walks UPDATEs built by GoBGP's codec and checks the
// prefixes and flags against what went in.
func TestWalkGoBGP(t *testing.T) {
	base := []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(0),
		bgp.NewPathAttributeAsPath(nil),
		bgp.NewPathAttributeLocalPref(100),
	}
	encap := bgp.NewPathAttributeUnknown(0xC0, 23, []byte{0, 25, 0, 0})
	big := make([]bgp.AddrPrefixInterface, 0, 200)
	var bigWant []netip.Prefix
	for i := range 200 {
		p := scenario.Prefix(i, 1)
		big = append(big, bgp.NewIPv6AddrPrefix(64, p.Addr().String()))
		bigWant = append(bigWant, p)
	}
	cases := []struct {
		name               string
		msg                *bgp.BGPMessage
		announced, withdrn []netip.Prefix
		eor, encap         bool
		other              bool
	}{
		{
			name:      "ipv4 announce",
			msg:       bgp.NewBGPUpdateMessage(nil, append(slices.Clone(base), bgp.NewPathAttributeNextHop("198.18.0.1"), encap), []*bgp.IPAddrPrefix{v4("10.0.0.0/28"), v4("10.0.1.32/28"), v4("0.0.0.0/0"), v4("192.0.2.1/32")}),
			announced: pfx("10.0.0.0/28", "10.0.1.32/28", "0.0.0.0/0", "192.0.2.1/32"),
			encap:     true,
		},
		{
			name:    "ipv4 withdraw",
			msg:     bgp.NewBGPUpdateMessage([]*bgp.IPAddrPrefix{v4("10.0.0.0/28"), v4("10.128.0.0/9")}, nil, nil),
			withdrn: pfx("10.0.0.0/28", "10.128.0.0/9"),
		},
		{
			name:      "ipv6 announce",
			msg:       bgp.NewBGPUpdateMessage(nil, append(slices.Clone(base), bgp.NewPathAttributeMpReachNLRI("::ffff:198.18.0.1", []bgp.AddrPrefixInterface{v6("fd00:0:1::/64"), v6("2001:db8::/33")}), encap), nil),
			announced: pfx("fd00:0:1::/64", "2001:db8::/33"),
			encap:     true,
		},
		{
			name:      "ipv6 announce, link-local next hop",
			msg:       bgp.NewBGPUpdateMessage(nil, append(slices.Clone(base), bgp.NewPathAttributeMpReachNLRI("2001:db8::1", []bgp.AddrPrefixInterface{v6("fd00::/128")})), nil),
			announced: pfx("fd00::/128"),
		},
		{
			name:    "ipv6 withdraw",
			msg:     bgp.NewBGPUpdateMessage(nil, []bgp.PathAttributeInterface{bgp.NewPathAttributeMpUnreachNLRI([]bgp.AddrPrefixInterface{v6("fd00:0:1::/64"), v6("::/0")})}, nil),
			withdrn: pfx("fd00:0:1::/64", "::/0"),
		},
		{
			name:      "extended length MP_REACH_NLRI",
			msg:       bgp.NewBGPUpdateMessage(nil, append(slices.Clone(base), bgp.NewPathAttributeMpReachNLRI("::ffff:198.18.0.1", big), encap), nil),
			announced: bigWant,
			encap:     true,
		},
		{
			name:      "ipv4 announce and withdraw in one",
			msg:       bgp.NewBGPUpdateMessage([]*bgp.IPAddrPrefix{v4("10.0.0.16/28")}, append(slices.Clone(base), bgp.NewPathAttributeNextHop("198.18.0.1")), []*bgp.IPAddrPrefix{v4("10.0.0.32/28")}),
			announced: pfx("10.0.0.32/28"),
			withdrn:   pfx("10.0.0.16/28"),
		},
		{name: "end-of-rib ipv4", msg: bgp.NewEndOfRib(bgp.RF_IPv4_UC), eor: true},
		{name: "end-of-rib ipv6", msg: bgp.NewEndOfRib(bgp.RF_IPv6_UC), eor: true},
		{name: "end-of-rib vpnv4", msg: bgp.NewEndOfRib(bgp.RF_IPv4_VPN), eor: true, other: true},
		{
			name:  "vpnv4 announce is skipped",
			msg:   bgp.NewBGPUpdateMessage(nil, append(slices.Clone(base), bgp.NewPathAttributeMpReachNLRI("192.0.2.1", []bgp.AddrPrefixInterface{bgp.NewLabeledVPNIPAddrPrefix(24, "10.0.0.0", *bgp.NewMPLSLabelStack(100), bgp.NewRouteDistinguisherTwoOctetAS(65000, 1))})), nil),
			other: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := serialize(t, tc.msg)
			var c collect
			info, err := WalkUpdate(raw[headerLen:], &c)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.announced, tc.announced) || !slices.Equal(c.withdrawn, tc.withdrn) {
				t.Fatalf("announced %v withdrawn %v, want %v %v", c.announced, c.withdrawn, tc.announced, tc.withdrn)
			}
			if info.Announced != len(tc.announced) || info.Withdrawn != len(tc.withdrn) {
				t.Fatalf("info %+v", info)
			}
			if info.EndOfRIB != tc.eor || info.TunnelEncap != tc.encap || info.OtherFamily != tc.other {
				t.Fatalf("info %+v, want eor %v encap %v other %v", info, tc.eor, tc.encap, tc.other)
			}
		})
	}
}

// TestWalkAnnouncements walks what the counting CPEs send (the speaker's
// announcements) and maps every prefix back to its CPE and index.
func TestWalkAnnouncements(t *testing.T) {
	for _, i := range []int{0, 1, 4999, scenario.MaxCPEs - 1} {
		msgs, err := announcements(i, 0, 5)
		if err != nil {
			t.Fatal(err)
		}
		var got []netip.Prefix
		for _, m := range msgs {
			// GoBGP's decoder accepts it...
			if _, err := bgp.ParseBGPMessage(m); err != nil {
				t.Fatalf("GoBGP does not parse our UPDATE: %v", err)
			}
			var c collect
			info, err := WalkUpdate(m[headerLen:], &c)
			if err != nil {
				t.Fatal(err)
			}
			if !info.TunnelEncap || info.EndOfRIB {
				t.Fatalf("info %+v", info)
			}
			got = append(got, c.announced...)
		}
		want := scenario.Prefixes(i, 5)
		slices.SortFunc(got, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		slices.SortFunc(want, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		if !slices.Equal(got, want) {
			t.Fatalf("cpe %d: %v, want %v", i, got, want)
		}
		for j := range 16 {
			p := scenario.Prefix(i, j)
			o, k, ok := locate(p.Addr().Is6(), p.Bits(), p.Addr().AsSlice()[:(p.Bits()+7)/8])
			if !ok || o != i || k != j {
				t.Fatalf("locate(%v) = %d %d %v, want %d %d", p, o, k, ok, i, j)
			}
		}
	}
	for _, p := range pfx("10.0.0.0/24", "10.0.0.1/28", "11.0.0.0/28", "fd00::/48", "fd01::/64", "fd00:0:0:1::/64", "fd00:0:0:0:1::/64") {
		if _, _, ok := locate(p.Addr().Is6(), p.Bits(), p.Addr().AsSlice()[:(p.Bits()+7)/8]); ok {
			t.Errorf("locate(%v) ok, want foreign", p)
		}
	}
	// Family mismatch: an IPv4 index (even) in IPv6 space.
	p := netip.MustParsePrefix("fd00:0:0:10::/64") // n = 0x10: j = 0, which is IPv4
	if _, _, ok := locate(true, 64, p.Addr().AsSlice()[:8]); ok {
		t.Error("even index accepted as IPv6")
	}
}

// TestWalkMalformed: every structural error is reported and nothing is
// handed to the visitor.
func TestWalkMalformed(t *testing.T) {
	good := serialize(t, bgp.NewBGPUpdateMessage([]*bgp.IPAddrPrefix{v4("10.0.0.16/28")},
		[]bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(0), bgp.NewPathAttributeNextHop("198.18.0.1"),
			bgp.NewPathAttributeMpReachNLRI("::ffff:198.18.0.1", []bgp.AddrPrefixInterface{v6("fd00:0:1::/64")})},
		[]*bgp.IPAddrPrefix{v4("10.0.0.32/28")}))[headerLen:]
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := map[string]struct {
		body []byte
		want error
	}{
		"empty":                  {nil, ErrUpdateShort},
		"longer than a message":  {mod(func(b []byte) []byte { return append(b, make([]byte, maxMsgLen-headerLen-len(b)+1)...) }), ErrUpdateLong},
		"three octets":           {[]byte{0, 0, 0}, ErrUpdateShort},
		"withdrawn too long":     {mod(func(b []byte) []byte { b[1] = 200; return b }), ErrUpdateShort},
		"attributes too long":    {mod(func(b []byte) []byte { b[2+5+1] = 250; return b }), ErrUpdateShort},
		"withdrawn prefix /33":   {mod(func(b []byte) []byte { b[2] = 33; return b }), ErrUpdatePrefix},
		"withdrawn prefix cut":   {mod(func(b []byte) []byte { b[2] = 32; b[1] = 4; return b[:2+4] }), ErrUpdateShort},
		"nlri cut":               {good[:len(good)-1], ErrUpdatePrefix},
		"nlri prefix /40":        {mod(func(b []byte) []byte { b[len(b)-5] = 40; return b }), ErrUpdatePrefix},
		"nlri without attrs":     {[]byte{0, 0, 0, 0, 8, 10}, ErrUpdateNLRIAlone},
		"attribute header cut":   {[]byte{0, 0, 0, 2, 0x40, 1}, ErrUpdateAttr},
		"extended header cut":    {[]byte{0, 0, 0, 3, 0x50, 14, 0}, ErrUpdateAttr},
		"attribute value cut":    {[]byte{0, 0, 0, 4, 0x40, 1, 2, 0}, ErrUpdateAttr},
		"mp_reach short":         {[]byte{0, 0, 0, 7, 0x80, 14, 4, 0, 2, 1, 0}, ErrUpdateAttr},
		"mp_reach next hop long": {[]byte{0, 0, 0, 8, 0x80, 14, 5, 0, 2, 1, 16, 0}, ErrUpdateAttr},
		"mp_unreach short":       {[]byte{0, 0, 0, 5, 0x80, 15, 2, 0, 2}, ErrUpdateAttr},
		"mp_unreach /129":        {[]byte{0, 0, 0, 7, 0x80, 15, 4, 0, 2, 1, 129}, ErrUpdatePrefix},
		"two mp_unreach":         {[]byte{0, 0, 0, 12, 0x80, 15, 3, 0, 2, 1, 0x80, 15, 3, 0, 1, 1}, ErrUpdateRepeated},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var c collect
			_, err := WalkUpdate(tc.body, &c)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if len(c.announced)+len(c.withdrawn) != 0 {
				t.Fatalf("malformed UPDATE handed over %v %v", c.announced, c.withdrawn)
			}
		})
	}
	if _, err := WalkUpdate(good, nil); err != nil {
		t.Fatalf("the unmodified UPDATE: %v", err)
	}
}

type nop struct{ n int }

func (v *nop) Prefix(bool, int, []byte, bool) { v.n++ }

func TestWalkAllocs(t *testing.T) {
	msgs, err := announcements(7, 0, 4)
	if err != nil {
		t.Fatal(err)
	}
	v := &nop{}
	allocs := testing.AllocsPerRun(100, func() {
		for _, m := range msgs {
			if _, err := WalkUpdate(m[headerLen:], v); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per walk", allocs)
	}
	if v.n != 101*4 {
		t.Fatalf("%d prefixes visited", v.n)
	}
}

// FuzzWalkUpdate: the walker never panics, agrees with itself between the
// checking and the visiting pass, and never hands over a prefix longer
// than its family or octets beyond the message. Seeds are UPDATEs built by
// GoBGP's codec.
func FuzzWalkUpdate(f *testing.F) {
	msgs, _ := announcements(3, 0, 4)
	for _, m := range msgs {
		f.Add(m[headerLen:])
	}
	for _, m := range []*bgp.BGPMessage{
		bgp.NewEndOfRib(bgp.RF_IPv4_UC), bgp.NewEndOfRib(bgp.RF_IPv6_UC),
		bgp.NewBGPUpdateMessage([]*bgp.IPAddrPrefix{v4("10.0.0.0/28")}, nil, nil),
		bgp.NewBGPUpdateMessage(nil, []bgp.PathAttributeInterface{bgp.NewPathAttributeMpUnreachNLRI([]bgp.AddrPrefixInterface{v6("fd00::/64")})}, nil),
	} {
		b, err := m.Serialize()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[headerLen:])
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var c checkVisitor
		info, err := WalkUpdate(body, &c)
		if err != nil {
			if c.n != 0 {
				t.Fatalf("malformed UPDATE visited %d prefixes", c.n)
			}
			return
		}
		if c.n != info.Announced+info.Withdrawn {
			t.Fatalf("visited %d, info %+v", c.n, info)
		}
		if c.err != nil {
			t.Fatal(c.err)
		}
		// Whatever walks must also map safely into the address plan.
		cp := testCounter(8, 4)
		WalkUpdate(body, cp)
		if cp.routes.Load() != int64(cp.countedRoutes()) {
			t.Fatalf("routes %d, bits %d", cp.routes.Load(), cp.countedRoutes())
		}
	})
}

type checkVisitor struct {
	n   int
	err error
}

func (v *checkVisitor) Prefix(ipv6 bool, bits int, addr []byte, _ bool) {
	v.n++
	max := 32
	if ipv6 {
		max = 128
	}
	if bits > max || len(addr) != (bits+7)/8 {
		v.err = fmt.Errorf("prefix of %d bits with %d octets (ipv6 %v)", bits, len(addr), ipv6)
	}
}
