package cpe

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/bgp/speaker"
	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/dataplane/memory"
	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/internal/ops"
	"github.com/mpsa-vpn/mpsa/mpsa"
)

// loopbackCPE is a CPE on 127.0.0.1 with an in-memory data plane: IKE and
// MPSA run over real sockets, no packet moves through the tunnel (so there
// is no BGP), and nothing needs root.
type loopbackCPE struct {
	*CPE
	mem *memory.Backend
}

func newLoopbackCPE(t *testing.T, cfg *configs.CPE, hubNATT uint16, opts ...Option) *loopbackCPE {
	t.Helper()
	l := &loopbackCPE{mem: memory.New()}
	factory := func(env DataplaneEnv) (*Dataplane, error) {
		// A NAT-T socket of its own for each engine, as a backend that owns
		// port 4500 gives each engine its own conn; the engine closes it.
		natt := func() (ike.Conn, error) {
			return ike.ListenUDP("udp4", netip.MustParseAddrPort("127.0.0.1:0"))
		}
		return &Dataplane{Backend: l.mem, Name: "memory", NATT: natt}, nil
	}
	opts = append([]Option{
		WithDataplane(factory),
		WithoutSysctl(),
		WithIKEAddrs(netip.MustParseAddrPort("127.0.0.1:0")),
		WithIKEConfig(func(c *ike.Config) {
			c.NATTPort = hubNATT
			c.DPDInterval = time.Second
			c.RetransmitTimeout = 200 * time.Millisecond
		}),
		// No packet reaches the hub's BGP port: the speaker waits.
		WithBGPConfig(func(c *speaker.Config) {
			c.Dial = func(ctx context.Context) (net.Conn, error) { <-ctx.Done(); return nil, ctx.Err() }
		}),
	}, opts...)
	c, err := New(cfg, testLogger(t, cfg.Identity.String()), opts...)
	if err != nil {
		t.Fatal(err)
	}
	l.CPE = c
	return l
}

// loopbackHub is a test hub on 127.0.0.1 with an in-memory data plane.
func loopbackHub(t *testing.T, ike, natt uint16, ks *mpsa.KeyServer, ids ...string) *testHub {
	psk := map[string][]byte{}
	for _, id := range ids {
		psk[id] = testPSK(id)
	}
	return newTestHub(t, hubOptions{outer: []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ike)},
		natt: natt, overlay: netip.MustParseAddr("100.64.0.1"), psk: psk, ks: ks, memory: true})
}

// TestLoopback: the CPE connects to the hub, gets its overlay address,
// installs the CHILD_SA and the group SA from MPSA_PUT with the CHILD_SA in
// one State, routes the hub's overlay address through the CHILD_SA, serves
// its status; then follows the hub going away and coming back.
func TestLoopback(t *testing.T) {
	leakCheck(t)
	const id = "fqdn:cpe1.example.net"
	ikePort, nattPort := freeUDPPort(t), freeUDPPort(t)
	hub := loopbackHub(t, ikePort, nattPort, nil, id)
	cfg := cpeConfig(t, id, []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ikePort)}, "10.1.0.0/24")
	cfg.Metrics.Listen = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freeTCPPort(t))
	keyDir := t.TempDir()
	cfg.KeyExport = configs.KeyExportConfig{IKE: filepath.Join(keyDir, "ikev2_decryption_table"), ESP: filepath.Join(keyDir, "esp_sa")}
	c := newLoopbackCPE(t, cfg, nattPort)
	runCPE(t, c.CPE)

	st := waitStatus(t, c.CPE, 20*time.Second, "tunnel and group SA", func(s *Status) bool {
		return s.Tunnel.Up && len(s.Group.SAs) == 1
	})
	if st.Tunnel.Overlay != netip.MustParseAddr("100.64.0.2") || st.Tunnel.HubOverlay != netip.MustParseAddr("100.64.0.1") {
		t.Errorf("overlay %v, hub overlay %v; want 100.64.0.2 and 100.64.0.1 (from the narrowed TSr)", st.Tunnel.Overlay, st.Tunnel.HubOverlay)
	}
	if len(st.IKE) != 1 || st.IKE[0].State != "ESTABLISHED" || len(st.IKE[0].Children) != 1 || !st.IKE[0].MOBIKE {
		t.Fatalf("IKE status %+v", st.IKE)
	}

	// One State: the group SA both ways on the group tunnel, the CHILD_SA
	// in and out on the hub tunnel.
	snap, err := c.mem.Wait(within(t, 10*time.Second), func(s memory.Snapshot) bool {
		_, g := c.mem.Outbound(GroupTunnel)
		_, h := c.mem.Outbound(HubTunnel)
		return g && h
	})
	if err != nil {
		t.Fatalf("data plane: %v\n%s", err, c.mem.Text())
	}
	_ = snap
	group, _ := c.mem.Outbound(GroupTunnel)
	gs := hub.ks.Status()
	if len(gs) != 1 || len(gs[0].Epochs) != 1 || group.Keys.SPI != gs[0].Epochs[0].SPI || group.Dir != dataplane.Both {
		t.Errorf("group SA %v dir %v; the hub's epochs %+v", group.Keys, group.Dir, gs)
	}
	childOut, _ := c.mem.Outbound(HubTunnel)
	ch := st.IKE[0].Children[0]
	if ops.SPI32(childOut.Keys.SPI) != ch.OutSPI || !childOut.Peer.IsValid() {
		t.Errorf("CHILD_SA out %v peer %v; IKE says out SPI %s", childOut.Keys, childOut.Peer, ch.OutSPI)
	}
	last := c.mem.Calls()[len(c.mem.Calls())-1]
	if last.Gen != c.mem.Gen() {
		t.Errorf("last Set call gen %d, installed gen %d", last.Gen, c.mem.Gen())
	}

	// key_export: the IKE SA, both halves of the CHILD_SA and the group SA
	// (any pair of CPEs) in Wireshark's tables, mode 0600.
	for file, want := range map[string][]string{
		cfg.KeyExport.IKE: {st.IKE[0].SPIi + "," + st.IKE[0].SPIr + ","},
		cfg.KeyExport.ESP: {fmt.Sprintf(`"*","*","0x%08x"`, group.Keys.SPI), `"0x` + ch.InSPI + `"`, `"0x` + ch.OutSPI + `"`},
	} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s lacks %s:\n%s", filepath.Base(file), w, b)
			}
		}
		if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", file, fi.Mode().Perm())
		}
	}

	// The route to the hub's overlay address goes through the CHILD_SA to
	// the hub's NAT-T port.
	nh, ok := c.FIB().Lookup(netip.MustParseAddr("100.64.0.1"))
	if !ok || nh.Tunnel != HubTunnel || nh.Endpoint != netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), nattPort) {
		t.Errorf("hub route: %+v %v", nh, ok)
	}

	// The metrics endpoint answers a scrape, and only a scrape.
	scrapeLoopback(t, c.CPE, "GET /metrics HTTP/1.1\r\nHost: cpe\r\n\r\n", "HTTP/1.1 200 OK",
		"mpsa_cpe_ike_sas 1", "mpsa_cpe_tunnel_up 1", "mpsa_cpe_group_sa_spi "+strconv.FormatUint(uint64(group.Keys.SPI), 10))
	scrapeLoopback(t, c.CPE, "GET /debug HTTP/1.1\r\n\r\n", "HTTP/1.1 404")
	scrapeLoopback(t, c.CPE, "POST /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 405")
	scrapeLoopback(t, c.CPE, "\x16\x03\x01 hello\r\n\r\n", "HTTP/1.1 400")

	// The status socket answers every view.
	for _, view := range []string{"overview", "sas", "mpsa", "bgp", "routes"} {
		resp, err := ops.Query(within(t, 5*time.Second), cfg.Status.Socket, ops.Request{Command: view})
		if err != nil {
			t.Fatalf("status %s: %v", view, err)
		}
		t.Logf("status %s:\n%s", view, resp.Text)
	}
	resp, _ := ops.Query(within(t, 5*time.Second), cfg.Status.Socket, ops.Request{Command: "sas"})
	if want := "hub: ESTABLISHED, IKEv2, " + st.IKE[0].SPIi; !contains(resp.Text, want) {
		t.Errorf("status sas lacks %q:\n%s", want, resp.Text)
	}
	resp, _ = ops.Query(within(t, 5*time.Second), cfg.Status.Socket, ops.Request{Command: "mpsa"})
	if want := ops.SPI32(group.Keys.SPI) + " in+out"; !contains(resp.Text, want) {
		t.Errorf("status mpsa lacks %q:\n%s", want, resp.Text)
	}
	resp, _ = ops.Query(within(t, 5*time.Second), cfg.Status.Socket, ops.Request{Command: "routes"})
	if want := "100.64.0.1/32"; !contains(resp.Text, want) {
		t.Errorf("status routes lacks %q:\n%s", want, resp.Text)
	}

	// The hub goes away without a word: DPD notices, the CHILD_SA and its
	// route go, the group SA stays (CPE-to-CPE traffic does not need the
	// hub).
	groupSPI := group.Keys.SPI
	hub.stop()
	waitStatus(t, c.CPE, 30*time.Second, "hub loss noticed", func(s *Status) bool { return !s.Tunnel.Up && s.Phase != "established" })
	if _, err := c.mem.Wait(within(t, 10*time.Second), func(memory.Snapshot) bool {
		_, h := c.mem.Outbound(HubTunnel)
		g, ok := c.mem.Outbound(GroupTunnel)
		return !h && ok && g.Keys.SPI == groupSPI
	}); err != nil {
		t.Fatalf("after the hub left: %v\n%s", err, c.mem.Text())
	}
	if _, ok := c.FIB().Lookup(netip.MustParseAddr("100.64.0.1")); ok {
		t.Error("the hub route outlived the CHILD_SA")
	}

	// The hub comes back (same group state): the CPE reconnects and gets
	// the same group SA again, which leaves its data plane's group SA be.
	hub2 := loopbackHub(t, ikePort, nattPort, hub.ks, id)
	st = waitStatus(t, c.CPE, 30*time.Second, "reconnected", func(s *Status) bool {
		return s.Tunnel.Up && s.Group.Refreshed >= 1
	})
	if len(st.Group.SAs) != 1 || st.Group.SAs[0].SPI != ops.SPI32(groupSPI) {
		t.Errorf("group SAs after reconnect: %+v", st.Group.SAs)
	}
	hub2.mu.Lock()
	ups := hub2.ups
	hub2.mu.Unlock()
	if ups != 1 {
		t.Errorf("new hub saw %d IKE SAs, want 1", ups)
	}
}

// TestLoopbackRollover: the group SA rolls over as the hub's ROLL1 and
// ROLL2 say, each step driven by the member's deadline.
func TestLoopbackRollover(t *testing.T) {
	leakCheck(t)
	const id = "fqdn:cpe1.example.net"
	ks, err := mpsa.NewKeyServer(mpsa.KeyServerConfig{Logger: testLogger(t, "keyserver")})
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.AddGroup(mpsa.GroupConfig{Name: "acme", Lifetime: 20 * time.Second, RekeyMargin: 10 * time.Second,
		Roll1: 2 * time.Second, Roll2: 4 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := ks.Provision(id, "acme"); err != nil {
		t.Fatal(err)
	}
	ikePort, nattPort := freeUDPPort(t), freeUDPPort(t)
	loopbackHub(t, ikePort, nattPort, ks, id)
	cfg := cpeConfig(t, id, []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ikePort)}, "10.1.0.0/24")
	c := newLoopbackCPE(t, cfg, nattPort)
	runCPE(t, c.CPE)

	// A new epoch every 10 s: steady → roll1 (new SA inbound) after the
	// rekey, roll2 (new SA outbound, old inbound) after ROLL1, steady
	// again after ROLL2.
	var phases []string
	want := []string{"steady", "roll1", "roll2", "steady"}
	st, err := c.Wait(within(t, 40*time.Second), func(s *Status) bool {
		if n := len(phases); n == 0 || phases[n-1] != s.Group.Phase {
			phases = append(phases, s.Group.Phase)
		}
		return containsSeq(phases, want)
	})
	if err != nil {
		t.Fatalf("rollover: %v; phases seen %v", err, phases)
	}
	if st.Group.Accepted != 2 || len(st.Group.SAs) != 1 || st.Group.SAs[0].SPI != ops.SPI32(ks.Status()[0].Epochs[len(ks.Status()[0].Epochs)-1].SPI) {
		t.Errorf("after the rollover: %+v; hub %+v", st.Group, ks.Status())
	}
	// Every Set the data plane saw was a valid State (memory validates).
	for _, call := range c.mem.Calls() {
		if call.Err != nil {
			t.Errorf("Set refused: %v\n%s", call.Err, call.Text)
		}
	}
}

// TestLoopbackReload: a reload re-advertises LAN prefixes, reconnects when
// the hubs change, keeps running on settings that need a restart.
func TestLoopbackReload(t *testing.T) {
	leakCheck(t)
	const id = "fqdn:cpe1.example.net"
	ikePort, nattPort := freeUDPPort(t), freeUDPPort(t)
	hub := loopbackHub(t, ikePort, nattPort, nil, id)
	cfg := cpeConfig(t, id, []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ikePort)}, "10.1.0.0/24")
	c := newLoopbackCPE(t, cfg, nattPort)
	runCPE(t, c.CPE)
	waitStatus(t, c.CPE, 20*time.Second, "connected", func(s *Status) bool { return s.Tunnel.Up && s.BGP.Running })

	// New LAN prefixes: the speaker advertises them.
	cfg2 := *cfg
	cfg2.LAN.Prefixes = []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("10.9.0.0/16")}
	if err := c.Reload(&cfg2, configs.DiffCPE(cfg, &cfg2)); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, c.CPE, 10*time.Second, "new prefixes", func(s *Status) bool { return slices.Equal(s.BGP.Prefixes, cfg2.LAN.Prefixes) })

	// A changed hub list reconnects (the same hub, listed twice over).
	cfg3 := cfg2
	cfg3.Hubs = append([]netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ikePort)},
		netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), ikePort))
	if err := c.Reload(&cfg3, configs.DiffCPE(&cfg2, &cfg3)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Wait(within(t, 20*time.Second), func(s *Status) bool {
		hub.mu.Lock()
		defer hub.mu.Unlock()
		return hub.ups >= 2 && s.Tunnel.Up
	})
	if err != nil {
		t.Fatalf("no reconnect after the hubs changed: %v", err)
	}

	// New credentials rebuild the IKE engine and reconnect with them.
	newPSK := []byte("the hub rotated this CPE's PSK")
	hub.mu.Lock()
	hub.psk[id] = newPSK
	ups := hub.ups
	hub.mu.Unlock()
	cfgPSK := cfg3
	cfgPSK.Credentials.PSK = configs.NewSecret(newPSK)
	if err := c.Reload(&cfgPSK, configs.DiffCPE(&cfg3, &cfgPSK)); err != nil {
		t.Fatal(err)
	}
	_, err = c.Wait(within(t, 20*time.Second), func(s *Status) bool {
		hub.mu.Lock()
		defer hub.mu.Unlock()
		return hub.ups > ups && s.Tunnel.Up
	})
	if err != nil {
		t.Fatalf("no reconnect with the new PSK: %v", err)
	}
	cfg3 = cfgPSK

	// A new data plane backend needs a restart: reported, the rest applied.
	cfg4 := cfg3
	cfg4.Dataplane.Backend = configs.BackendXFRM
	if err := c.Reload(&cfg4, configs.DiffCPE(&cfg3, &cfg4)); err == nil {
		t.Error("Reload accepted a backend change without a restart")
	}
	if c.Config() != &cfg4 {
		t.Error("the reloaded configuration is not the running one")
	}
	// A configuration that does not validate is refused and changes nothing.
	bad := cfg4
	bad.Hubs = nil
	if err := c.Reload(&bad, configs.DiffCPE(&cfg4, &bad)); err == nil {
		t.Error("Reload accepted a configuration without hubs")
	}
	if c.Config() != &cfg4 {
		t.Error("a bad configuration replaced the running one")
	}
}

// TestLoopbackWrongPSK: a hub that refuses the CPE makes it back off and
// retry, with the reason in its status; nothing is installed.
func TestLoopbackWrongPSK(t *testing.T) {
	leakCheck(t)
	const id = "fqdn:cpe1.example.net"
	ikePort, nattPort := freeUDPPort(t), freeUDPPort(t)
	loopbackHub(t, ikePort, nattPort, nil, id)
	cfg := cpeConfig(t, id, []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ikePort)}, "10.1.0.0/24")
	cfg.Credentials.PSK = configs.NewSecret([]byte("not the psk the hub has for us"))
	c := newLoopbackCPE(t, cfg, nattPort)
	runCPE(t, c.CPE)
	st := waitStatus(t, c.CPE, 20*time.Second, "refused", func(s *Status) bool {
		return s.Phase == "waiting" && s.LastError != "" && c.counters.connectFailures.Load() >= 2
	})
	if st.Tunnel.Up || len(st.Group.SAs) != 0 || c.mem.Text() != "" {
		t.Errorf("refused CPE has state: %+v\n%s", st, c.mem.Text())
	}
	t.Logf("last error: %s", st.LastError)
}

// scrapeLoopback sends a raw request to the metrics endpoint and checks
// the answer's first line and content.
func scrapeLoopback(t *testing.T, c *CPE, req, status string, want ...string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", c.MetricsAddr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, req)
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), status) {
		t.Errorf("%q: answer %q, want %q", req, firstLine(b), status)
	}
	for _, w := range want {
		if !strings.Contains(string(b), w+"\n") {
			t.Errorf("%q: answer lacks %q:\n%s", req, w, b)
		}
	}
	if strings.HasPrefix(string(b), "HTTP/1.1 200") {
		checkFamilies(t, string(b))
	}
}

// checkFamilies holds an exposition to what Prometheus parses: each
// family's TYPE once, and all its samples together after it.
func checkFamilies(t *testing.T, text string) {
	t.Helper()
	_, body, _ := strings.Cut(text, "\r\n\r\n")
	seen := map[string]bool{}
	family := ""
	for line := range strings.Lines(body) {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			family, _, _ = strings.Cut(name, " ")
			if seen[family] {
				t.Errorf("metrics family %s written twice", family)
			}
			seen[family] = true
			continue
		}
		if line == "\n" || strings.HasPrefix(line, "#") {
			continue
		}
		name := strings.TrimRight(strings.SplitN(line, " ", 2)[0], "\n")
		name, _, _ = strings.Cut(name, "{")
		if name != family && strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count") != family {
			t.Errorf("sample %s outside its family (after %s's TYPE)", name, family)
		}
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}

func freeTCPPort(t testing.TB) uint16 {
	for range 1000 {
		p := uint16(20000 + rand.IntN(10000))
		l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	t.Fatal("no free TCP port in 20000-29999")
	return 0
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// containsSeq reports whether want appears in order (not necessarily
// adjacent) in got.
func containsSeq(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// TestLoopbackSecondHub: the hub addresses are tried in order; when the
// first does not answer, the CPE connects to the next.
func TestLoopbackSecondHub(t *testing.T) {
	leakCheck(t)
	const id = "fqdn:cpe1.example.net"
	ikePort, nattPort := freeUDPPort(t), freeUDPPort(t)
	hub := loopbackHub(t, ikePort, nattPort, nil, id)
	dead := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freeUDPPort(t)) // nothing listens
	cfg := cpeConfig(t, id, []netip.AddrPort{dead, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ikePort)}, "10.1.0.0/24")
	c := newLoopbackCPE(t, cfg, nattPort)
	runCPE(t, c.CPE)
	// The hub's event handler learns of its IKE SA from the engine's event
	// queue, possibly after the CPE has the tunnel up: wait for both.
	st := waitStatus(t, c.CPE, 30*time.Second, "connected to the second hub address", func(s *Status) bool {
		hub.mu.Lock()
		defer hub.mu.Unlock()
		return hub.ups >= 1 && s.Tunnel.Up
	})
	if st.IKE[0].Remote.Addr() != netip.MustParseAddr("127.0.0.1") || st.IKE[0].Remote.Port() != nattPort {
		t.Errorf("IKE SA with %v, want the second address (floated to %d)", st.IKE[0].Remote, nattPort)
	}
	hub.mu.Lock()
	defer hub.mu.Unlock()
	if hub.ups != 1 {
		t.Errorf("hub saw %d IKE SAs", hub.ups)
	}
}
