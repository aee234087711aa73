//go:build linux

package xfrm

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/routing"
	"github.com/mpsa-vpn/mpsa/transform"
)

var (
	suiteCBC = transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA256128}
	suiteGCM = transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128}
)

func testKeys(spi uint32, suite transform.ESP, fill byte) esp.Keys {
	el, il, err := suite.KeyLens()
	if err != nil {
		panic(err)
	}
	return esp.Keys{SPI: spi, Suite: suite, EncKey: bytes.Repeat([]byte{fill}, el), IntegKey: bytes.Repeat([]byte{fill + 1}, il)}
}

var (
	ap = netip.MustParseAddrPort
	pf = netip.MustParsePrefix
	ad = netip.MustParseAddr
)

func nh(ep string, tunnel routing.Tunnel) routing.NextHop {
	return routing.NextHop{Endpoint: ap(ep), Tunnel: tunnel}
}

// cpeA is the CPE the golden tests look from: the group SA both ways on
// tunnel 1 and a CHILD_SA pair with the hub (192.0.2.100) on tunnel 2.
func cpeA() []dataplane.SA {
	hub := ap("192.0.2.100:4500")
	return []dataplane.SA{
		{Keys: testKeys(0x1001, suiteCBC, 0x10), Dir: dataplane.Both, Tunnel: 1},
		{Keys: testKeys(0xc2000001, suiteGCM, 0x20), Dir: dataplane.In, Tunnel: 2, Peer: hub, ReplayWindow: 64,
			RemoteSelectors: []netip.Prefix{pf("100.64.0.1/32")}, LocalSelectors: []netip.Prefix{pf("100.64.0.11/32")}},
		{Keys: testKeys(0xc2000002, suiteGCM, 0x30), Dir: dataplane.Out, Tunnel: 2, Peer: hub},
	}
}

func cpeARoutes() map[netip.Prefix]routing.NextHop {
	return map[netip.Prefix]routing.NextHop{
		pf("10.2.0.0/24"):       nh("192.0.2.2:4500", 1),
		pf("10.4.0.0/24"):       nh("192.0.2.2:4500", 1),
		pf("10.3.0.0/24"):       nh("192.0.2.3:0", 1),
		pf("fd00:0:0:2::/64"):   nh("[2001:db8::2]:4500", 1),
		pf("fd00:0:0:3::/64"):   nh("192.0.2.3:0", 1), // IPv6 inside IPv4
		pf("10.0.0.0/8"):        nh("192.0.2.3:0", 1), // covers our own LAN
		pf("100.64.0.1/32"):     nh("192.0.2.100:4500", 2),
		pf("10.9.0.0/24"):       nh("192.0.2.9:4500", 3), // no SA for tunnel 3
		pf("10.1.0.0/24"):       {Local: true},
		pf("0.0.0.0/0"):         {},
		pf("fd00:0:0:1::/64"):   {Local: true}, // covered by nothing: no bypass
		pf("192.0.2.0/24"):      {Local: true},
		pf("fd00:0:0:9::/64"):   nh("[2001:db8::9]:0", 1),
		pf("fd00:0:0:9:1::/80"): {}, // underlay route inside a tunnelled prefix
	}
}

func testInputs(sas []dataplane.SA, routes map[netip.Prefix]routing.NextHop) *inputs {
	return &inputs{
		sas:       sas,
		routes:    routes,
		endpoints: []netip.AddrPort{ap("192.0.2.1:4500"), ap("[2001:db8::1]:4500")},
		prioBase:  1000,
		reqids:    newReqids(0x100, 16),
	}
}

func mustRender(t *testing.T, in *inputs) string {
	t.Helper()
	d, err := compute(in)
	if err != nil {
		t.Fatalf("compute: %v", err)
	}
	text, err := renderDesired(d)
	if err != nil {
		t.Fatal(err)
	}
	return text
}

func checkGolden(t *testing.T, what, got, want string) {
	t.Helper()
	if got == want {
		return
	}
	gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(gl), len(wl)); i++ {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Errorf("%s: first difference at line %d:\n got: %s\nwant: %s", what, i+1, g, w)
			break
		}
	}
	t.Errorf("%s, got:\n%s", what, got)
}

func TestDesiredGolden(t *testing.T) {
	got := mustRender(t, testInputs(cpeA(), cpeARoutes()))
	want := `state spi 0x00001001 src 0.0.0.0 dst 192.0.2.1 reqid 0x100 replay 0 enc cbc(aes) 128 auth hmac(sha256) 256 trunc 128 encap espinudp 4500 4500 sel any
state spi 0x00001001 src 192.0.2.1 dst 192.0.2.2 reqid 0x100 replay 0 enc cbc(aes) 128 auth hmac(sha256) 256 trunc 128 encap espinudp 4500 4500 sel any
state spi 0x00001001 src 192.0.2.1 dst 192.0.2.3 reqid 0x100 replay 0 enc cbc(aes) 128 auth hmac(sha256) 256 trunc 128 sel any
state spi 0x00001001 src 2001:db8::1 dst 2001:db8::2 reqid 0x100 replay 0 enc cbc(aes) 128 auth hmac(sha256) 256 trunc 128 encap espinudp 4500 4500 sel any
state spi 0x00001001 src 2001:db8::1 dst 2001:db8::9 reqid 0x100 replay 0 enc cbc(aes) 128 auth hmac(sha256) 256 trunc 128 sel any
state spi 0x00001001 src :: dst 2001:db8::1 reqid 0x100 replay 0 enc cbc(aes) 128 auth hmac(sha256) 256 trunc 128 encap espinudp 4500 4500 sel any
state spi 0xc2000001 src 192.0.2.100 dst 192.0.2.1 reqid 0x101 replay 32 aead rfc4106(gcm(aes)) 160 icv 128 encap espinudp 4500 4500 sel src 100.64.0.1/32 dst 100.64.0.11/32
state spi 0xc2000002 src 192.0.2.1 dst 192.0.2.100 reqid 0x101 replay 0 aead rfc4106(gcm(aes)) 160 icv 128 encap espinudp 4500 4500 sel any
policy fwd src 10.0.0.0/8 dst 0.0.0.0/0 prio 1024 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy fwd src 10.1.0.0/24 dst 0.0.0.0/0 prio 1008 allow
policy fwd src 10.2.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy fwd src 10.3.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy fwd src 10.4.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy fwd src 10.9.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x102
policy fwd src 100.64.0.1/32 dst 0.0.0.0/0 prio 1000 tmpl src 192.0.2.100 dst 192.0.2.1 reqid 0x101
policy fwd src fd00:0:0:2::/64 dst ::/0 prio 1064 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy fwd src fd00:0:0:3::/64 dst ::/0 prio 1064 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy fwd src fd00:0:0:9:1::/80 dst ::/0 prio 1048 allow
policy fwd src fd00:0:0:9::/64 dst ::/0 prio 1064 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy in src 10.0.0.0/8 dst 0.0.0.0/0 prio 1024 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy in src 10.1.0.0/24 dst 0.0.0.0/0 prio 1008 allow
policy in src 10.2.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy in src 10.3.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy in src 10.4.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy in src 10.9.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x102
policy in src 100.64.0.1/32 dst 0.0.0.0/0 prio 1000 tmpl src 192.0.2.100 dst 192.0.2.1 reqid 0x101
policy in src fd00:0:0:2::/64 dst ::/0 prio 1064 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy in src fd00:0:0:3::/64 dst ::/0 prio 1064 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy in src fd00:0:0:9:1::/80 dst ::/0 prio 1048 allow
policy in src fd00:0:0:9::/64 dst ::/0 prio 1064 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy out src 0.0.0.0/0 dst 10.0.0.0/8 prio 1024 tmpl src 192.0.2.1 dst 192.0.2.3 reqid 0x100
policy out src 0.0.0.0/0 dst 10.1.0.0/24 prio 1008 allow
policy out src 0.0.0.0/0 dst 10.2.0.0/24 prio 1008 tmpl src 192.0.2.1 dst 192.0.2.2 reqid 0x100
policy out src 0.0.0.0/0 dst 10.3.0.0/24 prio 1008 tmpl src 192.0.2.1 dst 192.0.2.3 reqid 0x100
policy out src 0.0.0.0/0 dst 10.4.0.0/24 prio 1008 tmpl src 192.0.2.1 dst 192.0.2.2 reqid 0x100
policy out src 0.0.0.0/0 dst 10.9.0.0/24 prio 1008 block
policy out src 0.0.0.0/0 dst 100.64.0.1/32 prio 1000 tmpl src 192.0.2.1 dst 192.0.2.100 reqid 0x101
policy out src ::/0 dst fd00:0:0:2::/64 prio 1064 tmpl src 2001:db8::1 dst 2001:db8::2 reqid 0x100
policy out src ::/0 dst fd00:0:0:3::/64 prio 1064 tmpl src 192.0.2.1 dst 192.0.2.3 reqid 0x100
policy out src ::/0 dst fd00:0:0:9:1::/80 prio 1048 allow
policy out src ::/0 dst fd00:0:0:9::/64 prio 1064 tmpl src 2001:db8::1 dst 2001:db8::9 reqid 0x100
`
	checkGolden(t, "desired objects", got, want)
}

// applyPlan records p in have as the backend does once the kernel accepted
// every change.
func applyPlan(have *installed, p *plan) {
	for _, s := range append(append([]*kstate(nil), p.replace...), p.addStates...) {
		c := *s
		k := s.keys.Clone()
		c.keys = &k
		if old := have.states[s.stateID]; old != nil {
			old.keys.Wipe()
		}
		have.states[s.stateID] = &c
	}
	for _, pol := range p.policies {
		have.policies[pol.policyID] = pol.pval
	}
	for _, id := range p.delPolicies {
		delete(have.policies, id)
	}
	for _, id := range p.delStates {
		have.states[id].keys.Wipe()
		delete(have.states, id)
	}
}

// step computes the objects for sas and routes, returns the plan from
// have, and records it.
func step(t *testing.T, have *installed, r *reqids, sas []dataplane.SA, routes map[netip.Prefix]routing.NextHop) string {
	t.Helper()
	in := testInputs(sas, routes)
	in.reqids = r
	d, err := compute(in)
	if err != nil {
		t.Fatalf("compute: %v", err)
	}
	p := diff(have, d)
	text, err := renderPlan(p)
	if err != nil {
		t.Fatal(err)
	}
	applyPlan(have, p)
	if again := diff(have, d); !again.empty() {
		t.Fatalf("not idempotent: a second diff is not empty")
	}
	return text
}

func TestRolloverPlans(t *testing.T) {
	routes := map[netip.Prefix]routing.NextHop{
		pf("10.2.0.0/24"): nh("192.0.2.2:4500", 1),
		pf("10.3.0.0/24"): nh("192.0.2.3:0", 1),
	}
	oldSA := testKeys(0x1001, suiteCBC, 0x10)
	newSA := testKeys(0x1002, suiteCBC, 0x50)
	have, r := newInstalled(), newReqids(0x100, 16)
	steps := []struct {
		name string
		sas  []dataplane.SA
		want string
	}{
		{"install", []dataplane.SA{{Keys: oldSA, Dir: dataplane.Both, Tunnel: 1}}, `+state spi 0x00001001 src 0.0.0.0 dst 192.0.2.1 reqid 0x100 replay 0 enc cbc(aes) 128 auth hmac(sha256) 256 trunc 128 encap espinudp 4500 4500 sel any
+state spi 0x00001001 src 192.0.2.1 dst 192.0.2.2 reqid 0x100 replay 0 enc cbc(aes) 128 auth hmac(sha256) 256 trunc 128 encap espinudp 4500 4500 sel any
+state spi 0x00001001 src 192.0.2.1 dst 192.0.2.3 reqid 0x100 replay 0 enc cbc(aes) 128 auth hmac(sha256) 256 trunc 128 sel any
+state spi 0x00001001 src :: dst 2001:db8::1 reqid 0x100 replay 0 enc cbc(aes) 128 auth hmac(sha256) 256 trunc 128 encap espinudp 4500 4500 sel any
+policy in src 10.2.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
+policy in src 10.3.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
+policy out src 0.0.0.0/0 dst 10.2.0.0/24 prio 1008 tmpl src 192.0.2.1 dst 192.0.2.2 reqid 0x100
+policy out src 0.0.0.0/0 dst 10.3.0.0/24 prio 1008 tmpl src 192.0.2.1 dst 192.0.2.3 reqid 0x100
+policy fwd src 10.2.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
+policy fwd src 10.3.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
`},
		{"new SA inbound", []dataplane.SA{{Keys: oldSA, Dir: dataplane.Both, Tunnel: 1}, {Keys: newSA, Dir: dataplane.In, Tunnel: 1}}, `+state spi 0x00001002 src 0.0.0.0 dst 192.0.2.1 reqid 0x100 replay 0 enc cbc(aes) 128 auth hmac(sha256) 256 trunc 128 encap espinudp 4500 4500 sel any
+state spi 0x00001002 src :: dst 2001:db8::1 reqid 0x100 replay 0 enc cbc(aes) 128 auth hmac(sha256) 256 trunc 128 encap espinudp 4500 4500 sel any
`},
		{"ROLL1", []dataplane.SA{{Keys: oldSA, Dir: dataplane.In, Tunnel: 1}, {Keys: newSA, Dir: dataplane.Both, Tunnel: 1}}, `+state spi 0x00001002 src 192.0.2.1 dst 192.0.2.2 reqid 0x100 replay 0 enc cbc(aes) 128 auth hmac(sha256) 256 trunc 128 encap espinudp 4500 4500 sel any
+state spi 0x00001002 src 192.0.2.1 dst 192.0.2.3 reqid 0x100 replay 0 enc cbc(aes) 128 auth hmac(sha256) 256 trunc 128 sel any
-state spi 0x00001001 dst 192.0.2.2
-state spi 0x00001001 dst 192.0.2.3
`},
		{"ROLL2", []dataplane.SA{{Keys: newSA, Dir: dataplane.Both, Tunnel: 1}}, `-state spi 0x00001001 dst 192.0.2.1
-state spi 0x00001001 dst 2001:db8::1
`},
		{"again", []dataplane.SA{{Keys: newSA, Dir: dataplane.Both, Tunnel: 1}}, ``},
		{"all gone", nil, `+policy out src 0.0.0.0/0 dst 10.2.0.0/24 prio 1008 block
+policy out src 0.0.0.0/0 dst 10.3.0.0/24 prio 1008 block
-state spi 0x00001002 dst 192.0.2.1
-state spi 0x00001002 dst 192.0.2.2
-state spi 0x00001002 dst 192.0.2.3
-state spi 0x00001002 dst 2001:db8::1
`},
	}
	for _, s := range steps {
		got := step(t, have, r, s.sas, routes)
		checkGolden(t, s.name, got, s.want)
	}
}

func TestRouteChangePlans(t *testing.T) {
	sas := []dataplane.SA{{Keys: testKeys(0x1001, suiteCBC, 0x10), Dir: dataplane.Both, Tunnel: 1}}
	have, r := newInstalled(), newReqids(0x100, 16)
	routes := map[netip.Prefix]routing.NextHop{pf("10.2.0.0/24"): nh("192.0.2.2:4500", 1)}
	step(t, have, r, sas, routes)

	steps := []struct {
		name   string
		change func(map[netip.Prefix]routing.NextHop)
		want   string
	}{
		{"second prefix, same endpoint", func(m map[netip.Prefix]routing.NextHop) { m[pf("10.4.0.0/24")] = nh("192.0.2.2:4500", 1) }, `+policy in src 10.4.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
+policy out src 0.0.0.0/0 dst 10.4.0.0/24 prio 1008 tmpl src 192.0.2.1 dst 192.0.2.2 reqid 0x100
+policy fwd src 10.4.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
`},
		{"new endpoint", func(m map[netip.Prefix]routing.NextHop) { m[pf("10.3.0.0/24")] = nh("192.0.2.3:0", 1) }, `+state spi 0x00001001 src 192.0.2.1 dst 192.0.2.3 reqid 0x100 replay 0 enc cbc(aes) 128 auth hmac(sha256) 256 trunc 128 sel any
+policy in src 10.3.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
+policy out src 0.0.0.0/0 dst 10.3.0.0/24 prio 1008 tmpl src 192.0.2.1 dst 192.0.2.3 reqid 0x100
+policy fwd src 10.3.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
`},
		{"endpoint moves to UDP", func(m map[netip.Prefix]routing.NextHop) { m[pf("10.3.0.0/24")] = nh("192.0.2.3:4500", 1) }, `~state spi 0x00001001 src 192.0.2.1 dst 192.0.2.3 reqid 0x100 replay 0 enc cbc(aes) 128 auth hmac(sha256) 256 trunc 128 encap espinudp 4500 4500 sel any
`},
		{"prefix moves to another endpoint", func(m map[netip.Prefix]routing.NextHop) { m[pf("10.4.0.0/24")] = nh("192.0.2.3:4500", 1) }, `+policy out src 0.0.0.0/0 dst 10.4.0.0/24 prio 1008 tmpl src 192.0.2.1 dst 192.0.2.3 reqid 0x100
`},
		{"last prefix of an endpoint withdrawn", func(m map[netip.Prefix]routing.NextHop) { delete(m, pf("10.2.0.0/24")) }, `-policy in src 10.2.0.0/24 dst 0.0.0.0/0
-policy out src 0.0.0.0/0 dst 10.2.0.0/24
-policy fwd src 10.2.0.0/24 dst 0.0.0.0/0
-state spi 0x00001001 dst 192.0.2.2
`},
		{"all withdrawn", func(m map[netip.Prefix]routing.NextHop) { clear(m) }, `-policy in src 10.3.0.0/24 dst 0.0.0.0/0
-policy in src 10.4.0.0/24 dst 0.0.0.0/0
-policy out src 0.0.0.0/0 dst 10.3.0.0/24
-policy out src 0.0.0.0/0 dst 10.4.0.0/24
-policy fwd src 10.3.0.0/24 dst 0.0.0.0/0
-policy fwd src 10.4.0.0/24 dst 0.0.0.0/0
-state spi 0x00001001 dst 192.0.2.3
`},
	}
	for _, s := range steps {
		s.change(routes)
		got := step(t, have, r, sas, routes)
		checkGolden(t, s.name, got, s.want)
	}
}

func TestComputeRefuses(t *testing.T) {
	withSender := cpeA()
	withSender[0].SenderIDBits, withSender[0].SenderID = 8, 1
	if _, err := compute(testInputs(withSender, nil)); !errors.Is(err, ErrSenderID) {
		t.Errorf("Sender-ID SA: %v, want ErrSenderID", err)
	}

	noEndpoint := testInputs(cpeA(), nil)
	noEndpoint.endpoints = nil
	if _, err := compute(noEndpoint); err == nil || !strings.Contains(err.Error(), "no local endpoint") {
		t.Errorf("group SA without endpoints: %v", err)
	}

	// A CHILD_SA whose peer's family has no endpoint asks the routing
	// table; without an answer it cannot be installed.
	v6hub := []dataplane.SA{{Keys: testKeys(0xc2000002, suiteGCM, 0x30), Dir: dataplane.Out, Tunnel: 2, Peer: ap("[2001:db8::100]:0")}}
	in := testInputs(v6hub, nil)
	in.endpoints = []netip.AddrPort{ap("192.0.2.1:4500")}
	if _, err := compute(in); err == nil || !strings.Contains(err.Error(), "no local address") {
		t.Errorf("CHILD_SA without a local address: %v", err)
	}
	in.reqids = newReqids(0x100, 16)
	in.source = func(dst netip.Addr) (netip.Addr, bool) {
		if dst == ad("2001:db8::100") {
			return ad("2001:db8::77"), true
		}
		return netip.Addr{}, false
	}
	checkGolden(t, "source from the routing table", mustRender(t, in), `state spi 0xc2000002 src 2001:db8::77 dst 2001:db8::100 reqid 0x100 replay 0 aead rfc4106(gcm(aes)) 160 icv 128 sel any
`)

	// Two SAs that would need the same kernel state.
	clash := []dataplane.SA{
		{Keys: testKeys(0x2000, suiteCBC, 1), Dir: dataplane.Out, Tunnel: 2, Peer: ap("192.0.2.2:4500")},
		{Keys: testKeys(0x2000, suiteCBC, 1), Dir: dataplane.Out, Tunnel: 1},
	}
	_, err := compute(testInputs(clash, map[netip.Prefix]routing.NextHop{pf("10.2.0.0/24"): nh("192.0.2.2:4500", 1)}))
	if err == nil || !strings.Contains(err.Error(), "two states") {
		t.Errorf("clashing states: %v", err)
	}

	full := testInputs(cpeA(), cpeARoutes())
	full.reqids = newReqids(0x100, 2)
	if _, err := compute(full); err == nil || !strings.Contains(err.Error(), "tunnels") {
		t.Errorf("reqid band overflow: %v", err)
	}
}

func TestProblems(t *testing.T) {
	routes := map[netip.Prefix]routing.NextHop{
		pf("10.2.0.0/24"): nh("192.0.2.2:0", 1),
		pf("10.5.0.0/24"): nh("192.0.2.2:4500", 1), // same endpoint, other port
		pf("10.6.0.0/24"): {Tunnel: 1},             // no endpoint
		pf("10.7.0.0/24"): nh("192.0.2.1:4500", 1), // ourselves
		pf("10.9.0.0/24"): nh("192.0.2.9:4500", 3), // no SA
	}
	sas := []dataplane.SA{{Keys: testKeys(0x1001, suiteCBC, 0x10), Dir: dataplane.Both, Tunnel: 1}}
	d, err := compute(testInputs(sas, routes))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"prefix 10.6.0.0/24: tunnel 1 route has no ESP endpoint; blocked",
		"prefix 10.7.0.0/24: endpoint 192.0.2.1:4500 is this node; not tunnelled",
		"prefix 10.9.0.0/24: tunnel 3 has no outbound SA; blocked",
		"endpoint 192.0.2.2: routes ask for ports 0 and 4500; using 4500",
	}
	if strings.Join(d.problems, "\n") != strings.Join(want, "\n") || d.nproblems != len(want) {
		t.Errorf("problems (%d):\n%s\nwant:\n%s", d.nproblems, strings.Join(d.problems, "\n"), strings.Join(want, "\n"))
	}
	text, _ := renderDesired(d)
	checkGolden(t, "objects with problems", text, `state spi 0x00001001 src 0.0.0.0 dst 192.0.2.1 reqid 0x100 replay 0 enc cbc(aes) 128 auth hmac(sha256) 256 trunc 128 encap espinudp 4500 4500 sel any
state spi 0x00001001 src 192.0.2.1 dst 192.0.2.2 reqid 0x100 replay 0 enc cbc(aes) 128 auth hmac(sha256) 256 trunc 128 encap espinudp 4500 4500 sel any
state spi 0x00001001 src :: dst 2001:db8::1 reqid 0x100 replay 0 enc cbc(aes) 128 auth hmac(sha256) 256 trunc 128 encap espinudp 4500 4500 sel any
policy fwd src 10.2.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy fwd src 10.5.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy fwd src 10.6.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy fwd src 10.9.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x101
policy in src 10.2.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy in src 10.5.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy in src 10.6.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy in src 10.9.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x101
policy out src 0.0.0.0/0 dst 10.2.0.0/24 prio 1008 tmpl src 192.0.2.1 dst 192.0.2.2 reqid 0x100
policy out src 0.0.0.0/0 dst 10.5.0.0/24 prio 1008 tmpl src 192.0.2.1 dst 192.0.2.2 reqid 0x100
policy out src 0.0.0.0/0 dst 10.6.0.0/24 prio 1008 block
policy out src 0.0.0.0/0 dst 10.9.0.0/24 prio 1008 block
`)
}

func TestReqids(t *testing.T) {
	r := newReqids(0x100, 4)
	keys := func(ks ...reqKey) map[reqKey]bool {
		m := make(map[reqKey]bool)
		for _, k := range ks {
			m[k] = true
		}
		return m
	}
	t1, t2, t3, s9 := reqKey{tunnel: 1}, reqKey{tunnel: 2}, reqKey{tunnel: 3}, reqKey{spi: 9}
	if !r.sync(keys(t2, t1)) || r.get(t1) != 0x100 || r.get(t2) != 0x101 {
		t.Fatalf("first allocation: %v", r.ids)
	}
	// t1 goes; t3 and s9 come: they take fresh IDs, not t1's.
	if !r.sync(keys(t2, t3, s9)) || r.get(t2) != 0x101 || r.get(s9) != 0x102 || r.get(t3) != 0x103 {
		t.Fatalf("second allocation: %v", r.ids)
	}
	// The band wraps around to the IDs freed first.
	if !r.sync(keys(t2, t3, s9, t1)) || r.get(t1) != 0x100 {
		t.Fatalf("wrap: %v", r.ids)
	}
	if r.sync(keys(t2, t3, s9, t1, reqKey{tunnel: 4})) {
		t.Fatal("a fifth key fit a band of four")
	}
	if !r.owns(0x100) || !r.owns(0x103) || r.owns(0x104) || r.owns(0xff) {
		t.Error("owns is wrong at the band's edges")
	}
}
