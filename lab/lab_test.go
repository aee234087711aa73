package lab

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/configs/liteconf"
	"github.com/mpsa-vpn/mpsa/configs/viperconf"
	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/internal/ops"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/transform"
)

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		got  netip.Addr
		want string
	}{
		{hubWAN(IPv4), "192.0.2.254"},
		{hubWAN(IPv6), "2001:db8::254"},
		{cpeWAN(IPv4, 3, false), "192.0.2.3"},
		{cpeWAN(IPv4, 3, true), "192.0.2.103"},
		{cpeWAN(IPv6, 12, false), "2001:db8::c"},
		{cpeWAN(IPv6, 12, true), "2001:db8::1:c"},
		{nthAddr(lanPrefix(IPv4, 7), 2), "10.7.0.2"},
		{nthAddr(lanPrefix(IPv6, 7), 1), "fd01:7::1"},
	} {
		if tc.got.String() != tc.want {
			t.Errorf("got %v, want %s", tc.got, tc.want)
		}
	}
	// Every CPE's addresses are distinct from each other's and the hub's.
	seen := map[netip.Addr]bool{}
	for _, f := range []Family{IPv4, IPv6} {
		for _, a := range []netip.Addr{hubWAN(f)} {
			seen[a] = true
		}
		for i := 1; i <= MaxCPEs; i++ {
			for _, a := range []netip.Addr{cpeWAN(f, i, false), cpeWAN(f, i, true), nthAddr(lanPrefix(f, i), 1)} {
				if seen[a] || !a.IsValid() {
					t.Fatalf("address %v of CPE %d used twice", a, i)
				}
				seen[a] = true
			}
			if !underlayPrefix(f).Contains(cpeWAN(f, i, true)) {
				t.Errorf("%v outside the underlay", cpeWAN(f, i, true))
			}
		}
	}
	for _, name := range []string{"default", "e1x2", "a"} {
		if !validName(name) {
			t.Errorf("%q refused", name)
		}
	}
	for _, name := range []string{"", "a-b", "Lab", "a_b", strings.Repeat("x", MaxNameLen+1), "-a"} {
		if validName(name) {
			t.Errorf("%q accepted", name)
		}
	}
	for s, want := range map[string]Family{"v4": IPv4, "6": IPv6, "IPv6": IPv6} {
		if f, err := ParseFamily(s); err != nil || f != want {
			t.Errorf("ParseFamily(%q) = %v, %v", s, f, err)
		}
	}
	if _, err := ParseFamily("v5"); err == nil {
		t.Error("ParseFamily accepted v5")
	}
}

func TestNaturalOrder(t *testing.T) {
	got := sortedNames(map[string]int{"cpe10": 0, "cpe2": 0, "cpe1": 0, "hub": 0})
	if want := "cpe1 cpe2 cpe10 hub"; strings.Join(got, " ") != want {
		t.Errorf("got %v, want %s", got, want)
	}
}

// testLab is a Lab with state but no namespaces, for the configuration
// generators.
func testLab(t *testing.T, certs bool) *Lab {
	t.Helper()
	dir := t.TempDir()
	cfg := Config{Dir: dir, HubBin: "/bin/true", CPEBin: "/bin/true", Certificates: certs}
	cfg.setDefaults()
	l := &Lab{procs: map[string]*proc{}}
	l.st = state{Config: cfg, PIDs: map[string]int{}, Hub: Hub{
		NS: "x", WAN: hubWAN(IPv4), Config: filepath.Join(dir, "hub.yaml"), Socket: filepath.Join(dir, "hub.sock"),
		Log: filepath.Join(dir, "hub.log"), StateDir: filepath.Join(dir, "hub-state"), KeyFile: filepath.Join(dir, "hub.esp_sa"),
	}}
	if certs {
		ca, err := newCA()
		if err != nil {
			t.Fatal(err)
		}
		if err := ca.save(l.caCertPath(), l.caKeyPath()); err != nil {
			t.Fatal(err)
		}
		l.ca, l.st.CA = ca, true
		l.st.Hub.CertFile, l.st.Hub.KeyPath = filepath.Join(dir, "hub.crt"), filepath.Join(dir, "hub.key")
		if err := ca.issue("hub.lab", time.Now().Add(-time.Hour), time.Now().Add(time.Hour), l.st.Hub.CertFile, l.st.Hub.KeyPath); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// TestGeneratedConfigs loads what the lab writes with the daemons' own
// loaders: no error, no warning (an unknown key would be one), files 0600,
// and the values the lab meant.
func TestGeneratedConfigs(t *testing.T) {
	l := testLab(t, true)
	dir := l.st.Config.Dir
	for i := 1; i <= 3; i++ {
		c := &CPE{Index: i, Name: "cpe" + string(rune('0'+i)), Identity: "fqdn:cpe" + string(rune('0'+i)) + ".lab",
			WAN: cpeWAN(IPv4, i, false), Provisioned: i != 2,
			Prefixes: []netip.Prefix{lanPrefix(IPv4, i), lanPrefix(IPv6, i)}}
		c.Config, c.Socket, c.KeyFile = filepath.Join(dir, c.Name+".yaml"), filepath.Join(dir, c.Name+".sock"), filepath.Join(dir, c.Name+".esp_sa")
		if i == 3 {
			c.Cert, c.CertFile, c.KeyPath, c.NotAfter = true, filepath.Join(dir, "cpe3.crt"), filepath.Join(dir, "cpe3.key"), time.Now().Add(time.Hour)
			if err := l.ca.issue("cpe3.lab", time.Now().Add(-time.Hour), c.NotAfter, c.CertFile, c.KeyPath); err != nil {
				t.Fatal(err)
			}
		} else {
			var err error
			if c.PSK, err = newPSK(); err != nil {
				t.Fatal(err)
			}
			c.HubPSK = c.PSK
		}
		l.st.CPEs = append(l.st.CPEs, c)
		if err := writeYAML(c.Config, "test", l.cpeConfig(c)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.writeHubConfig(); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(l.st.Hub.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}

	h, warns, err := viperconf.LoadHub(viperconf.Options{File: l.st.Hub.Config})
	if err != nil || len(warns) > 0 {
		t.Fatalf("hub.yaml: %v, warnings %v", err, warns)
	}
	if len(h.CPEs) != 2 || h.CPEs[0].Identity.String() != "fqdn:cpe1.lab" || h.CPEs[1].Auth != configs.AuthCert {
		t.Errorf("hub provisioning: %+v", h.CPEs)
	}
	if g := h.Group(GroupName); g == nil || g.Roll1 != DefaultRoll1 || g.Pool.IPv4 != pool4 || g.Pool.IPv6 != pool6 {
		t.Errorf("hub group: %+v", g)
	}
	if len(h.IKE.Listen) != 1 || h.IKE.Listen[0] != hubWAN(IPv4) || h.Status.Socket != l.st.Hub.Socket {
		t.Errorf("hub listen %v status %q", h.IKE.Listen, h.Status.Socket)
	}
	for _, c := range l.st.CPEs {
		cfg, warns, err := liteconf.LoadCPE(liteconf.Options{File: c.Config})
		if err != nil || len(warns) > 0 {
			t.Fatalf("%s: %v, warnings %v", c.Config, err, warns)
		}
		if cfg.Identity.String() != c.Identity || len(cfg.LAN.Prefixes) != 2 || cfg.Hubs[0] != netip.AddrPortFrom(hubWAN(IPv4), 500) {
			t.Errorf("%s: %+v", c.Name, cfg)
		}
		if c.Cert != !cfg.Credentials.UsesPSK() {
			t.Errorf("%s: credentials %+v", c.Name, cfg.Credentials)
		}
	}
	for _, f := range []string{"hub.yaml", "cpe1.yaml", "cpe3.key", "hub.key", "ca.key"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f, st.Mode(), err)
		}
	}
}

// TestProblems checks the convergence conditions on hand-made views.
func TestProblems(t *testing.T) {
	c1 := CPE{Name: "cpe1", Identity: "fqdn:cpe1.lab", WAN: cpeWAN(IPv4, 1, false), Prefixes: []netip.Prefix{lanPrefix(IPv4, 1)}}
	c2 := CPE{Name: "cpe2", Identity: "fqdn:cpe2.lab", WAN: cpeWAN(IPv4, 2, false), Prefixes: []netip.Prefix{lanPrefix(IPv4, 2)}}
	cpeState := func(spi string, peer CPE, endpoint netip.AddrPort) *CPEState {
		st := &CPEStatus{Phase: "established", IKE: []CPEIKE{{State: "ESTABLISHED"}}}
		st.Tunnel.Up = true
		st.BGP.State = "ESTABLISHED"
		st.Group.SAs = []CPEGroupSA{{SPI: spi, Outbound: true}}
		return &CPEState{Status: st, Routes: []Route{
			{Prefix: peer.Prefixes[0], Source: "bgp", State: "selected", Endpoint: endpoint},
			{Prefix: netip.MustParsePrefix("100.64.0.1/32"), Source: "static", State: "selected"},
		}}
	}
	good := func() *Snapshot {
		return &Snapshot{
			Groups: &HubGroups{Groups: []HubGroup{{Name: GroupName, Epoch: 1, SPI: "c0ffee01", Connected: 2, OnCurrent: 2}}},
			SAs:    &HubSAs{SAs: []HubSA{{CPE: c1.Identity, State: "ESTABLISHED"}, {CPE: c2.Identity, State: "ESTABLISHED"}}},
			CPEs: map[string]*CPEState{
				"cpe1": cpeState("c0ffee01", c2, netip.AddrPortFrom(c2.WAN, 4500)),
				"cpe2": cpeState("c0ffee01", c1, netip.AddrPortFrom(c1.WAN, 0)),
			},
		}
	}
	members := []CPE{c1, c2}
	if p := good().Problems(members); len(p) != 0 {
		t.Fatalf("converged lab reported: %v", p)
	}
	for _, tc := range []struct {
		name   string
		mutate func(s *Snapshot)
		want   string
	}{
		{"hub silent", func(s *Snapshot) { s.Groups = nil; s.Errors = []string{"hub: dial"} }, "hub: dial"},
		{"not all on epoch", func(s *Snapshot) { s.Groups.Groups[0].OnCurrent = 1 }, "1 on epoch 1, want 2"},
		{"no hub SA", func(s *Snapshot) { s.SAs.SAs = s.SAs.SAs[:1] }, "no established IKE SA of fqdn:cpe2.lab"},
		{"old SA outbound", func(s *Snapshot) { s.CPEs["cpe2"].Status.Group.SAs[0].SPI = "0badf00d" }, `sends with group SA "0badf00d"`},
		{"bgp down", func(s *Snapshot) { s.CPEs["cpe1"].Status.BGP.State = "ACTIVE" }, "cpe1: BGP session ACTIVE"},
		{"wrong endpoint", func(s *Snapshot) { s.CPEs["cpe1"].Routes[0].Endpoint = netip.MustParseAddrPort("192.0.2.99:0") }, "goes to 192.0.2.99:0"},
		{"missing route", func(s *Snapshot) { s.CPEs["cpe2"].Routes = s.CPEs["cpe2"].Routes[1:] }, "cpe2: no route to 10.1.0.0/24"},
		{"stale extra route", func(s *Snapshot) {
			s.CPEs["cpe2"].Routes = append(s.CPEs["cpe2"].Routes, Route{Prefix: lanPrefix(IPv4, 3), Source: "bgp", State: "selected"})
		}, "prefixes of no member: 10.3.0.0/24"},
		{"tunnel down", func(s *Snapshot) { s.CPEs["cpe1"].Status.Tunnel.Up = false }, "cpe1: tunnel to the hub is not up"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good()
			tc.mutate(s)
			p := strings.Join(s.Problems(members), "; ")
			if !strings.Contains(p, tc.want) {
				t.Errorf("problems %q lack %q", p, tc.want)
			}
		})
	}
}

func TestParseRoutes(t *testing.T) {
	tab := &ops.Table{Header: []string{"PREFIX", "SOURCE", "PEER", "NEXT HOP", "ENDPOINT", "TUNNEL", "STATE"},
		Rows: [][]string{
			{"10.2.0.0/24", "bgp", "192.0.2.254", "192.0.2.2", "192.0.2.2:4500", "group", "selected"},
			{"fd01:2::/64", "bgp", "192.0.2.254", "192.0.2.2", "[2001:db8::2]:0", "group", "unresolved: family"},
			{"100.64.0.1/32", "static", "-", "-", "local", "hub", "selected"},
			{"garbage"},
		}}
	rs := parseRoutes(tab)
	if len(rs) != 3 || rs[0].Endpoint != netip.MustParseAddrPort("192.0.2.2:4500") || rs[1].State != "unresolved: family" ||
		rs[1].Endpoint.Addr() != netip.MustParseAddr("2001:db8::2") || rs[2].Endpoint.IsValid() || rs[2].Tunnel != "hub" {
		t.Errorf("%+v", rs)
	}
}

func TestDecodeFrame(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	a6, b6 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	esp := []byte{0xc0, 0xff, 0xee, 0x01, 0, 0, 0, 7, 1, 2, 3, 4}
	for _, tc := range []struct {
		name  string
		frame []byte
		ok    bool
		kind  Kind
		encap bool
		spi   uint32
	}{
		{"raw ESP", frame(a, b, 50, esp), true, KindESP, false, 0xc0ffee01},
		{"ESP in UDP", frame(a, b, 17, udp(4500, 4500, esp)), true, KindESP, true, 0xc0ffee01},
		{"raw ESP over IPv6", frame(a6, b6, 50, esp), true, KindESP, false, 0xc0ffee01},
		{"IKE on 500", frame(a, b, 17, udp(500, 500, []byte{1, 2, 3, 4, 5, 6, 7, 8})), true, KindIKE, false, 0},
		{"IKE on 4500 (marker)", frame(a6, b6, 17, udp(4500, 4500, []byte{0, 0, 0, 0, 9, 9, 9, 9})), true, KindIKE, false, 0},
		{"keepalive", frame(a, b, 17, udp(4500, 4500, []byte{0xff})), true, KindKeepalive, false, 0},
		{"ICMP", frame(a, b, 1, []byte{8, 0, 0, 0, 0, 1, 0, 1}), true, KindOther, false, 0},
		{"short ESP", frame(a, b, 50, esp[:7]), true, KindOther, false, 0},
		{"truncated IPv4", frame(a, b, 50, esp)[:30], false, KindOther, false, 0},
		{"bad UDP length", func() []byte { f := frame(a, b, 17, udp(4500, 4500, esp)); f[14+20+5] = 200; return f }(), false, KindOther, false, 0},
		{"ARP", append(make([]byte, 12), 0x08, 0x06, 0, 1), false, KindOther, false, 0},
	} {
		pi, ok := DecodeFrame(tc.frame)
		if ok != tc.ok || pi.Kind != tc.kind || pi.UDPEncap != tc.encap || pi.SPI != tc.spi {
			t.Errorf("%s: ok %v kind %v encap %v spi %08x", tc.name, ok, pi.Kind, pi.UDPEncap, pi.SPI)
		}
		if tc.kind == KindESP && (len(pi.ESP) != len(esp) || pi.Seq != 7) {
			t.Errorf("%s: ESP %x seq %d", tc.name, pi.ESP, pi.Seq)
		}
	}
	// A non-first fragment is recognised as IP but not looked into.
	f := frame(a, b, 50, esp)
	f[14+6] = 0x00
	f[14+7] = 0x10
	if pi, ok := DecodeFrame(f); !ok || pi.Kind != KindOther || pi.Src != a {
		t.Errorf("fragment: %v %+v", ok, pi)
	}
}

func TestEcho(t *testing.T) {
	token := []byte("12345678")
	for _, v6 := range []bool{false, true} {
		req := appendEcho(nil, v6, 0xbeef, 42, token)
		rep := append([]byte(nil), req...)
		if v6 {
			rep[0] = icmpEchoReply6
		} else {
			rep[0] = icmpEchoReply4
			rep[2], rep[3] = 0, 0
			c := checksum(rep)
			rep[2], rep[3] = byte(c>>8), byte(c)
		}
		id, seq, ok := parseEchoReply(v6, rep, token)
		if !ok || id != 0xbeef || seq != 42 {
			t.Errorf("v6=%v: %v %x %d", v6, ok, id, seq)
		}
		if _, _, ok := parseEchoReply(v6, req, token); ok {
			t.Errorf("v6=%v: a request taken for a reply", v6)
		}
		if _, _, ok := parseEchoReply(v6, rep, []byte("other---")); ok {
			t.Errorf("v6=%v: another pinger's reply accepted", v6)
		}
		if !v6 {
			rep[9] ^= 1
			if _, _, ok := parseEchoReply(v6, rep, token); ok {
				t.Error("bad checksum accepted")
			}
		}
	}
}

func TestLogs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	lines := `{"time":"2026-01-02T03:04:05.5Z","level":"WARN","msg":"refused","component":"hub","id":"fqdn:a","epoch":3}
not json: a panic's first line
{"time":"2026-01-02T03:04:06Z","level":"INFO","msg":"configuration reloaded","reason":"CPEs added"}
{"level":"INFO","msg":"incomplete`
	if err := os.WriteFile(path, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	recs, next, err := ReadLog(path, 0)
	if err != nil || len(recs) != 2 || recs[0].Str("id") != "fqdn:a" || recs[0].Str("epoch") != "3" || recs[1].Msg != "configuration reloaded" {
		t.Fatalf("%v %+v", err, recs)
	}
	if want := int64(strings.LastIndexByte(lines, '\n') + 1); next != want {
		t.Errorf("next offset %d, want %d (the incomplete line is read later)", next, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() {
		f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString(`","reason":"later"}` + "\n")
		f.Close()
	}()
	r, err := WaitLog(ctx, path, next, func(r LogRecord) bool { return r.Str("reason") == "later" })
	if err != nil || r.Msg != "incomplete" || r.Offset != next {
		t.Errorf("WaitLog: %v %+v", err, r)
	}
}

func TestParseMetrics(t *testing.T) {
	m, err := ParseMetrics(strings.NewReader(`# HELP mpsa_hub_ike_sas IKE SAs by state.
# TYPE mpsa_hub_ike_sas gauge
mpsa_hub_ike_sas{state="established"} 3
mpsa_hub_ike_sas{state="half_open"} 0
mpsa_hub_ike_auth_failures_total 7 1700000000000
up{job="a b"} 1e3
`))
	if err != nil || m[`mpsa_hub_ike_sas{state="established"}`] != 3 || m["mpsa_hub_ike_auth_failures_total"] != 7 || m[`up{job="a b"}`] != 1000 {
		t.Errorf("%v %v", err, m)
	}
	for _, bad := range []string{"novalue", "x{a=\"b\"}", "x 1 2 3", "x abc"} {
		if _, err := ParseMetrics(strings.NewReader(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// sealed returns an ESP packet (from its SPI) of an ICMP echo between two
// LAN hosts, sealed with keys.
func sealed(t *testing.T, keys esp.Keys, seq uint32) []byte {
	t.Helper()
	sa, err := esp.NewSA(esp.Config{Keys: keys.Clone()})
	if err != nil {
		t.Fatal(err)
	}
	defer sa.Wipe()
	inner := ipv4(netip.MustParseAddr("10.1.0.2"), netip.MustParseAddr("10.2.0.2"), 1,
		appendEcho(nil, false, 7, uint16(seq), []byte("labtest!")))
	buf := make([]byte, esp.Headroom+len(inner)+esp.Tailroom)
	copy(buf[esp.Headroom:], inner)
	out, err := sa.Seal(buf, len(inner), seq)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func testKeys(spi uint32, fill byte) esp.Keys {
	k := esp.Keys{SPI: spi, Suite: transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA256128}}
	k.EncKey = bytes.Repeat([]byte{fill}, 32)
	k.IntegKey = bytes.Repeat([]byte{fill + 1}, 32)
	return k
}

// TestDecrypt: packets sealed with one group SA open with its keys (as
// parsed back from an esp_sa table), not with another SA's keys; tshark
// agrees when installed.
func TestDecrypt(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	good, other := testKeys(0xc0ffee01, 1), testKeys(0x0badf00d, 9)
	var pkts []Packet
	for seq := uint32(1); seq <= 4; seq++ {
		f := frame(a, b, 17, udp(4500, 4500, sealed(t, good, seq)))
		if seq%2 == 0 {
			f = frame(b, a, 50, sealed(t, good, seq))
		}
		pi, ok := DecodeFrame(f)
		if !ok {
			t.Fatal("frame not decoded")
		}
		pkts = append(pkts, Packet{Time: time.Unix(1700000000, int64(seq)*1000), Frame: f, Info: pi})
	}

	// Round trip through the esp_sa format.
	var table bytes.Buffer
	dir := t.TempDir()
	if _, err := TsharkCount(context.Background(), "/nonexistent/tshark", "x", dir, "icmp", good, other); err == nil {
		t.Fatal("TsharkCount ran a missing binary")
	}
	raw, err := os.ReadFile(filepath.Join(dir, "wireshark", "esp_sa"))
	if err != nil {
		t.Fatal(err)
	}
	table.Write(raw)
	entries, err := ParseESPSA(&table)
	if err != nil || len(entries) != 2 || entries[0].Keys.SPI != good.SPI || entries[0].Src != "*" || !bytes.Equal(entries[0].Keys.EncKey, good.EncKey) ||
		entries[1].Keys.Suite != other.Suite {
		t.Fatalf("esp_sa round trip: %v %+v", err, entries)
	}

	d, err := Decrypt(pkts, good.SPI, entries[0].Keys, 0)
	if err != nil || d.Opened != 4 || len(d.Inner) != 4 || d.Inner[0][9] != 1 {
		t.Errorf("right keys: %v %+v", err, d)
	}
	d, err = Decrypt(pkts, good.SPI, entries[1].Keys, 0)
	if err != nil || d.Opened != 0 || d.Drops["bad_icv"] != 4 {
		t.Errorf("other keys: %v %+v", err, d)
	}
	WipeESPSA(entries)
	if entries[0].Keys.EncKey[0] != 0 {
		t.Error("WipeESPSA left key material")
	}

	pcap := filepath.Join(dir, "x.pcap")
	f, err := os.Create(pcap)
	if err != nil {
		t.Fatal(err)
	}
	if err := WritePcap(f, pkts); err != nil {
		t.Fatal(err)
	}
	f.Close()
	tshark := testenv.Binary(t, "tshark", "apt-get install tshark")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if n, err := TsharkCount(ctx, tshark, pcap, filepath.Join(dir, "good"), "icmp", good); err != nil || n != 4 {
		t.Errorf("tshark with the keys: %d ICMP packets, %v", n, err)
	}
	wrong := other.Clone()
	wrong.SPI = good.SPI
	if n, err := TsharkCount(ctx, tshark, pcap, filepath.Join(dir, "wrong"), "icmp", wrong); err != nil || n != 0 {
		t.Errorf("tshark with other keys: %d ICMP packets, %v", n, err)
	}
}

func TestParseESPSABad(t *testing.T) {
	ok := `"IPv4","*","*","0xc0ffee01","AES-CBC [RFC3602]","0x` + strings.Repeat("11", 32) + `","HMAC-SHA-256-128 [RFC4868]","0x` + strings.Repeat("22", 32) + `"` + "\n"
	if e, err := ParseESPSA(strings.NewReader(ok)); err != nil || len(e) != 1 {
		t.Fatalf("%v %v", err, e)
	}
	for name, bad := range map[string]string{
		"short key":     strings.Replace(ok, strings.Repeat("11", 32), "1111", 1),
		"bad hex":       strings.Replace(ok, "0x"+strings.Repeat("22", 32), "0xzz", 1),
		"no 0x":         strings.Replace(ok, `"0xc0ffee01"`, `"c0ffee01"`, 1),
		"unknown encr":  strings.Replace(ok, "AES-CBC [RFC3602]", "DES", 1),
		"unknown integ": strings.Replace(ok, "HMAC-SHA-256-128 [RFC4868]", "MD5", 1),
		"few fields":    `"IPv4","*"` + "\n",
		"protocol":      strings.Replace(ok, "IPv4", "IPX", 1),
		"reserved SPI":  strings.Replace(ok, "0xc0ffee01", "0x00000001", 1),
	} {
		if _, err := ParseESPSA(strings.NewReader(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
