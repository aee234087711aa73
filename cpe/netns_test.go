package cpe

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/bgp/speaker"
	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/internal/ops"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
)

// site is one CPE namespace with a LAN host namespace behind it.
type site struct {
	i     int
	cpe   *testenv.Netns
	lan   *testenv.Netns
	outer netip.Addr
	host  netip.Addr
	c     *CPE
}

// topology: a bridge in "core" joins the hub and the CPEs' WAN sides.
//
//	lan1 -- cpe1 --\
//	                br0 (core) -- hub (192.0.2.254, overlay 100.64.0.1, gobgpd)
//	lan2 -- cpe2 --/
func topology(t testing.TB, n int) (hub *testenv.Netns, sites []*site) {
	core := testenv.NewNetns(t, "core")
	core.MustIP("link", "add", "br0", "type", "bridge")
	core.MustIP("link", "set", "br0", "up")
	hub = testenv.NewNetns(t, "hub")
	testenv.Veth(t, core, "h0", hub, "eth0")
	core.MustIP("link", "set", "h0", "master", "br0")
	hub.MustIP("addr", "add", "192.0.2.254/24", "dev", "eth0")
	for i := 1; i <= n; i++ {
		s := &site{i: i, cpe: testenv.NewNetns(t, fmt.Sprintf("cpe%d", i)), lan: testenv.NewNetns(t, fmt.Sprintf("lan%d", i)),
			outer: netip.MustParseAddr(fmt.Sprintf("192.0.2.%d", i)), host: netip.MustParseAddr(fmt.Sprintf("10.%d.0.2", i))}
		br := fmt.Sprintf("c%d", i)
		testenv.Veth(t, core, br, s.cpe, "eth0")
		core.MustIP("link", "set", br, "master", "br0")
		s.cpe.MustIP("addr", "add", s.outer.String()+"/24", "dev", "eth0")
		testenv.Veth(t, s.cpe, "lan0", s.lan, "eth0")
		s.cpe.MustIP("addr", "add", fmt.Sprintf("10.%d.0.1/24", i), "dev", "lan0")
		s.lan.MustIP("addr", "add", s.host.String()+"/24", "dev", "eth0")
		s.lan.MustIP("route", "add", "default", "via", fmt.Sprintf("10.%d.0.1", i))
		sites = append(sites, s)
	}
	return hub, sites
}

// netnsCPE starts the CPE library in a site's namespace with the real
// userspace data plane; timers are short so the test sees failures fast.
// Each of mods adjusts the configuration first.
func netnsCPE(t *testing.T, s *site, mods ...func(*configs.CPE)) *CPE {
	id := fmt.Sprintf("fqdn:cpe%d.example.net", s.i)
	cfg := cpeConfig(t, id, []netip.AddrPort{netip.MustParseAddrPort("192.0.2.254:500")}, fmt.Sprintf("10.%d.0.0/24", s.i))
	cfg.LAN.Interface = "lan0"
	cfg.WAN.Interface = "eth0"
	cfg.Dataplane.Backend = configs.BackendUserspace
	cfg.Metrics.Listen = netip.MustParseAddrPort("127.0.0.1:9471")
	for _, m := range mods {
		m(cfg)
	}
	c, err := New(cfg, testLogger(t, fmt.Sprintf("cpe%d", s.i)), WithNetns(s.cpe.Name),
		WithIKEConfig(func(c *ike.Config) {
			c.DPDInterval = 2 * time.Second
			c.RetransmitTimeout = 500 * time.Millisecond
		}),
		WithBGPConfig(func(c *speaker.Config) { c.MinBackoff, c.MaxBackoff = 200*time.Millisecond, time.Second }))
	if err != nil {
		t.Fatal(err)
	}
	runCPE(t, c)
	return c
}

// diagCPEs are logged when a ping fails.
var diagCPEs []*CPE

// pingUntil pings dst from ns until one reply comes back or d passes, then
// sends count more pings and returns how many were lost.
func pingUntil(t *testing.T, ns *testenv.Netns, dst netip.Addr, d time.Duration, count int) int {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		out, err := ns.Run("ping", "-c", "1", "-W", "1", dst.String())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			for _, c := range diagCPEs {
				st := c.Status()
				t.Logf("%s: dataplane %+v tunnel %+v bgp %+v group %+v", st.Identity, st.Dataplane, st.Tunnel, st.BGP, st.Group)
				for _, r := range c.Routes() {
					t.Logf("%s: route %+v", st.Identity, r)
				}
				for _, args := range [][]string{{"route"}, {"addr"}, {"-6", "route"}} {
					out, _ := exec.Command("ip", append([]string{"-n", c.o.netns}, args...)...).CombinedOutput()
					t.Logf("%s: ip %v:\n%s", st.Identity, args, out)
				}
			}
			t.Fatalf("ping %v from %s: no reply within %v: %s", dst, ns.Name, d, out)
		}
	}
	out, _ := ns.Run("ping", "-c", fmt.Sprint(count), "-i", "0.2", "-W", "1", dst.String())
	var sent, recv int
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "packets transmitted") {
			fmt.Sscanf(l, "%d packets transmitted, %d received", &sent, &recv)
		}
	}
	if sent != count {
		t.Fatalf("ping output: %s", out)
	}
	return sent - recv
}

// scrape reads the metrics endpoint inside a namespace.
func scrape(t *testing.T, ns *testenv.Netns, addr string) string {
	t.Helper()
	var body string
	err := ns.Do(func() error {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "GET /metrics HTTP/1.1\r\nHost: cpe\r\n\r\n")
		b, err := io.ReadAll(bufio.NewReader(conn))
		body = string(b)
		return err
	})
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	if !strings.HasPrefix(body, "HTTP/1.1 200 OK\r\n") || !strings.Contains(body, "text/plain; version=0.0.4") {
		t.Fatalf("scrape answer:\n%s", body)
	}
	return body
}

// TestNetns runs two CPEs and the test hub in namespaces, with gobgpd as
// the route reflector and the userspace data plane moving real packets:
// connect, overlay address, CHILD_SA and group SA, BGP through the
// CHILD_SA, routes of the other CPE resolving to its endpoint, LAN-to-LAN
// traffic; then a gobgpd crash (graceful restart keeps routes and traffic),
// a WAN address change (MOBIKE, the other CPE switches endpoint), and the
// hub going away and coming back.
func TestNetns(t *testing.T) {
	testenv.Root(t)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		testenv.Skip(t, "no /dev/net/tun")
	}
	testenv.Binary(t, "ping", "apt-get install iputils-ping")
	testenv.Binary(t, "gobgpd", "apt-get install gobgpd")
	leakCheck(t)
	hubNS, sites := topology(t, 2)
	psk := map[string][]byte{}
	for _, s := range sites {
		id := fmt.Sprintf("fqdn:cpe%d.example.net", s.i)
		psk[id] = testPSK(id)
	}
	hubOpts := hubOptions{ns: hubNS, outer: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.254:500")},
		overlay: netip.MustParseAddr("100.64.0.1"), psk: psk}
	hub := newTestHub(t, hubOpts)
	bgp := startGoBGP(t, hubNS, hubOpts.overlay, configs.DefaultASN)
	for _, s := range sites {
		s.c = netnsCPE(t, s)
	}
	c1, c2 := sites[0].c, sites[1].c
	diagCPEs = []*CPE{c1, c2}
	defer func() { diagCPEs = nil }()

	for _, s := range sites {
		st := waitStatus(t, s.c, 30*time.Second, fmt.Sprintf("cpe%d up", s.i), func(st *Status) bool {
			return st.Tunnel.Up && len(st.Group.SAs) == 1 && st.BGP.Established
		})
		if !st.Tunnel.Overlay.IsValid() || st.Tunnel.HubOverlay != hubOpts.overlay || st.Dataplane.Backend != "userspace" {
			t.Errorf("cpe%d: tunnel %+v backend %s", s.i, st.Tunnel, st.Dataplane.Backend)
		}
		if st.Tunnel.Endpoint != netip.AddrPortFrom(s.outer, 0) {
			t.Errorf("cpe%d advertises endpoint %v, want %v:0 (raw ESP, no NAT)", s.i, st.Tunnel.Endpoint, s.outer)
		}
	}
	// Each learns the other's LAN with its ESP endpoint, over the group SA.
	waitRoute(t, c1, 20*time.Second, "10.2.0.0/24", "192.0.2.2:0")
	waitRoute(t, c2, 20*time.Second, "10.1.0.0/24", "192.0.2.1:0")
	if lost := pingUntil(t, sites[0].lan, sites[1].host, 20*time.Second, 5); lost != 0 {
		t.Errorf("lan1 -> lan2: %d of 5 pings lost", lost)
	}

	// Operations: status through the socket, metrics over HTTP.
	resp, err := ops.Query(within(t, 5*time.Second), c1.Config().Status.Socket, ops.Request{Command: "routes"})
	if err != nil || !strings.Contains(resp.Text, "10.2.0.0/24") || !strings.Contains(resp.Text, "192.0.2.2:0") {
		t.Errorf("status routes: %v\n%v", err, resp)
	}
	m := scrape(t, sites[0].cpe, "127.0.0.1:9471")
	for _, want := range []string{"mpsa_cpe_ike_sas 1", "mpsa_cpe_bgp_session_up 1", "mpsa_cpe_group_sas 1",
		`mpsa_cpe_dataplane_packets_total{dir="tx"}`, `mpsa_cpe_bgp_routes{state="all"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}

	t.Run("gobgpd crash", func(t *testing.T) {
		// kill -9 of the route reflector: the sessions end without a
		// NOTIFICATION, the CPEs keep the routes (stale) and traffic
		// keeps flowing over the group SA.
		bgp.kill()
		waitStatus(t, c1, 20*time.Second, "session lost, routes stale", func(s *Status) bool {
			return !s.BGP.Established && s.BGP.Stale == 1
		})
		waitRoute(t, c1, time.Second, "10.2.0.0/24", "192.0.2.2:0")
		if lost := pingUntil(t, sites[0].lan, sites[1].host, 5*time.Second, 5); lost != 0 {
			t.Errorf("while the reflector is down: %d of 5 pings lost", lost)
		}
		// It comes back as a restarting speaker: sessions return, the
		// routes are refreshed (End-of-RIB clears the stale marks).
		bgp.startRestarting()
		for _, s := range sites {
			waitStatus(t, s.c, 60*time.Second, fmt.Sprintf("cpe%d session back", s.i), func(st *Status) bool {
				return st.BGP.Established && st.BGP.Stale == 0 && st.BGP.Routes == 1
			})
		}
		waitRoute(t, c1, 10*time.Second, "10.2.0.0/24", "192.0.2.2:0")
	})

	t.Run("WAN address change", func(t *testing.T) {
		// cpe1's DHCP lease changes its address: MOBIKE moves the IKE SA,
		// the new endpoint reaches cpe2 through BGP.
		s := sites[0]
		start := time.Now()
		s.cpe.MustIP("addr", "del", "192.0.2.1/24", "dev", "eth0")
		s.cpe.MustIP("addr", "add", "192.0.2.11/24", "dev", "eth0")
		waitRoute(t, c2, 10*time.Second, "10.1.0.0/24", "192.0.2.11:0")
		t.Logf("cpe2 switched to cpe1's new endpoint after %v", time.Since(start).Round(time.Millisecond))
		st := c1.Status()
		if len(st.IKE) != 1 || st.IKE[0].Local.Addr() != netip.MustParseAddr("192.0.2.11") || c1.counters.mobike.Load() != 1 {
			t.Errorf("after the move: IKE %+v, %d MOBIKE updates", st.IKE, c1.counters.mobike.Load())
		}
		if lost := pingUntil(t, sites[1].lan, sites[0].host, 10*time.Second, 5); lost != 0 {
			t.Errorf("lan2 -> lan1 after the move: %d of 5 pings lost", lost)
		}
		// UPDATE_SA_ADDRESSES carried NAT-D from the real addresses on
		// both NAT-T conns: the hub sees no NAT, ESP stays raw.
		found := false
		for _, info := range hub.mgr.SAs() {
			if info.RemoteID.String() != "fqdn:cpe1.example.net" {
				continue
			}
			found = true
			if info.NATLocal || info.NATRemote || info.Remote != netip.MustParseAddrPort("192.0.2.11:4500") {
				t.Errorf("hub's IKE SA of cpe1 after the move: remote %v, NAT local %v remote %v", info.Remote, info.NATLocal, info.NATRemote)
			}
			for _, ch := range info.Children {
				if ch.Encap || ch.Remote.Addr() != netip.MustParseAddr("192.0.2.11") {
					t.Errorf("hub's CHILD_SA %08x of cpe1 after the move: remote %v, encapsulated %v", ch.InSPI, ch.Remote, ch.Encap)
				}
			}
		}
		if !found {
			t.Error("the hub has no IKE SA of cpe1 after the move")
		}
	})

	t.Run("new credentials", func(t *testing.T) {
		// A new PSK rebuilds cpe1's IKE engine: the old engine's NAT-T
		// conn on the data plane's sockets closes, the new engine gets its
		// own and reconnects through it.
		id := "fqdn:cpe1.example.net"
		newPSK := []byte("the hub rotated cpe1's PSK")
		hub.mu.Lock()
		hub.psk[id] = newPSK
		ups := hub.ups
		hub.mu.Unlock()
		cfg := *c1.Config()
		cfg.Credentials.PSK = configs.NewSecret(newPSK)
		if err := c1.Reload(&cfg, configs.DiffCPE(c1.Config(), &cfg)); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, c1, 30*time.Second, "reconnected with the new PSK", func(s *Status) bool {
			hub.mu.Lock()
			defer hub.mu.Unlock()
			return hub.ups > ups && s.Tunnel.Up && s.BGP.Established && len(s.IKE) == 1 && s.IKE[0].State == "ESTABLISHED"
		})
		if lost := pingUntil(t, sites[0].lan, sites[1].host, 10*time.Second, 5); lost != 0 {
			t.Errorf("lan1 -> lan2 after the rebuild: %d of 5 pings lost", lost)
		}
	})

	t.Run("hub goes away", func(t *testing.T) {
		// The hub's IKE side vanishes: DPD notices, the CPEs reconnect to
		// its successor and get the same group SA; the routes stay.
		groupSPI := c1.Status().Group.SAs[0].SPI
		hub.stop()
		waitStatus(t, c1, 30*time.Second, "hub loss noticed", func(s *Status) bool { return !s.Tunnel.Up })
		waitRoute(t, c1, time.Second, "10.2.0.0/24", "192.0.2.2:0")
		hubOpts.ks = hub.ks
		newTestHub(t, hubOpts)
		for _, s := range sites {
			st := waitStatus(t, s.c, 60*time.Second, fmt.Sprintf("cpe%d back", s.i), func(st *Status) bool {
				return st.Tunnel.Up && st.BGP.Established
			})
			if len(st.Group.SAs) != 1 || st.Group.SAs[0].SPI != groupSPI {
				t.Errorf("cpe%d group SAs %+v, want still %s", s.i, st.Group.SAs, groupSPI)
			}
		}
		if lost := pingUntil(t, sites[0].lan, sites[1].host, 10*time.Second, 5); lost != 0 {
			t.Errorf("after the hub came back: %d of 5 pings lost", lost)
		}
	})
}
