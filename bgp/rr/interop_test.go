package rr

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/bgp/internal/peertest"
	"github.com/mpsa-vpn/mpsa/bgp/tunnelencap"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/routing"
)

// The tests here run alone in a namespace of their own (testenv.RunInNetns):
// the group's GoBGP listens from its own goroutines, where Netns.Do cannot
// reach, and a daemon's port picked as free on the host's loopback could be
// taken by a test of another package before the daemon binds it. In the
// namespace every port is fixed.
const (
	bgpPort  = 179   // the group's listener
	birdPort = 1179  // BIRD's (it listens on every address, 0.0.0.0)
	grpcPort = 50051 // the group's gRPC API
)

// acmeIsolated is the group acme listening on 127.0.0.1:179.
func acmeIsolated() GroupConfig {
	g := acme("127.0.0.1")
	g.Listen[0] = netip.AddrPortFrom(g.Listen[0].Addr(), bgpPort)
	return g
}

// TestGobgpCLI: the stock gobgp CLI talks to a group's gRPC API and lists
// the CPE neighbors and the reflected routes with their endpoint.
func TestGobgpCLI(t *testing.T) {
	cli := testenv.Binary(t, "gobgp", "apt-get install gobgpd")
	if testenv.RunInNetns(t) {
		return
	}
	leakCheck(t)
	g := acmeIsolated()
	g.GRPC = fmt.Sprintf("127.0.0.1:%d", grpcPort)
	h := startHub(t, Config{}, g)
	hub := listenOf(h, "acme")
	mustUp(t, h, cpe("a", "acme", addr(2), "198.51.100.2:4500", "10.1.0.0/16"))
	mustUp(t, h, cpe("b", "acme", addr(3), "198.51.100.3:0", "fd00:3::/48"))
	a := runCPE(t, addr(2), hub, "198.51.100.2:4500", "10.1.0.0/24")
	runCPE(t, addr(3), hub, "198.51.100.3:0", "fd00:3::/48")
	a.waitRoutes(t, map[string]string{"fd00:3::/48": "198.51.100.3:0"})

	run := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, cli, append([]string{"-u", "127.0.0.1", "-p", fmt.Sprint(grpcPort)}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("gobgp %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := run("neighbor")
	for _, want := range []string{"127.0.0.2", "127.0.0.3", "Establ"} {
		if !strings.Contains(out, want) {
			t.Errorf("gobgp neighbor lacks %q:\n%s", want, out)
		}
	}
	out = run("global", "rib", "-a", "ipv4")
	if !strings.Contains(out, "10.1.0.0/24") || !strings.Contains(out, "198.51.100.2") {
		t.Errorf("gobgp global rib -a ipv4:\n%s", out)
	}
	out = run("global", "rib", "-a", "ipv6")
	if !strings.Contains(out, "fd00:3::/48") {
		t.Errorf("gobgp global rib -a ipv6:\n%s", out)
	}
	out = run("neighbor", "127.0.0.2", "adj-in")
	if !strings.Contains(out, "10.1.0.0/24") {
		t.Errorf("gobgp neighbor 127.0.0.2 adj-in:\n%s", out)
	}
}

// TestBIRDClient: BIRD 2 as an RR client of the hub (registered like a
// CPE) receives the reflected CPE routes with the Tunnel Encapsulation
// attribute intact, and its own plain RFC 5565 route reaches the CPE with
// the endpoint the hub knows for it. BIRD reflects what it learned on to a
// monitor speaker of ours, which is how the test knows BIRD has the routes
// and checks the attribute with our own decoder; birdc shows the octets.
func TestBIRDClient(t *testing.T) {
	if testenv.RunInNetns(t) {
		return
	}
	leakCheck(t)
	h := startHub(t, Config{}, acmeIsolated())
	hub := netip.MustParseAddrPort(listenOf(h, "acme"))
	mustUp(t, h, cpe("a", "acme", addr(2), "198.51.100.2:4500", "10.1.0.0/16", "fd00:1::/48"))
	mustUp(t, h, cpe("bird", "acme", addr(20), "127.0.0.20:0", "10.20.0.0/16"))
	bird := peertest.Bird(t, nil, fmt.Sprintf(`
router id 127.0.0.20;
protocol static s4 { ipv4; route 10.20.1.0/24 unreachable; }
protocol bgp hub {
  local 127.0.0.20 port %[2]d as 65000;
  neighbor 127.0.0.1 port %[1]d as 65000;
  connect delay time 1;
  connect retry time 1;
  ipv4 { import all; export where source = RTS_STATIC; next hop self; };
  ipv6 { import all; export none; extended next hop on; };
}
protocol bgp mon {
  local 127.0.0.20 port %[2]d as 65000;
  neighbor 127.0.0.21 as 65000;
  passive on;
  rr client;
  ipv4 { import none; export where source = RTS_BGP; };
  ipv6 { import none; export where source = RTS_BGP; extended next hop on; };
}
`, hub.Port(), birdPort))
	a := runCPE(t, addr(2), hub.String(), "192.168.7.2:4500", "10.1.0.0/24", "fd00:1::/48")
	a.waitRoutes(t, map[string]string{"10.20.1.0/24": "127.0.0.20:0"})
	mon := runCPE(t, addr(21), fmt.Sprintf("127.0.0.20:%d", birdPort), "")
	mon.waitRoutes(t, map[string]string{"10.1.0.0/24": "198.51.100.2:4500", "fd00:1::/48": "198.51.100.2:4500"})

	want, err := tunnelencap.AppendValue(nil, netip.MustParseAddrPort("198.51.100.2:4500"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"10.1.0.0/24", "fd00:1::/48"} {
		out := bird.Birdc(t, "show", "route", "all", p)
		if !strings.Contains(out, p) || !strings.Contains(out, "BGP.originator_id: 127.0.0.2") {
			t.Errorf("BIRD route %s:\n%s", p, out)
		}
		if !strings.Contains(strings.NewReplacer(":", "", " ", "").Replace(out), hex.EncodeToString(want)) {
			t.Errorf("BIRD route %s lacks attribute 23 value %x:\n%s", p, want, out)
		}
	}
}

// TestFRRClient: FRR's bgpd as an RR client keeps its session up with our
// attribute shape (one TLV, sub-TLVs below 128) and installs the reflected
// routes as valid and best.
func TestFRRClient(t *testing.T) {
	if testenv.RunInNetns(t) {
		return
	}
	leakCheck(t)
	h := startHub(t, Config{}, acmeIsolated())
	hub := netip.MustParseAddrPort(listenOf(h, "acme"))
	mustUp(t, h, cpe("a", "acme", addr(2), "198.51.100.2:4500", "10.1.0.0/16", "fd00:1::/48"))
	mustUp(t, h, cpe("frr", "acme", addr(30), "127.0.0.30:0", "10.30.0.0/16"))
	frr := peertest.FRR(t, nil, fmt.Sprintf(`
hostname frrcpe
router bgp 65000
 bgp router-id 127.0.0.30
 no bgp default ipv4-unicast
 no bgp network import-check
 neighbor 127.0.0.1 remote-as 65000
 neighbor 127.0.0.1 port %d
 neighbor 127.0.0.1 update-source 127.0.0.30
 address-family ipv4 unicast
  network 10.30.1.0/24
  neighbor 127.0.0.1 activate
  neighbor 127.0.0.1 next-hop-self
 exit-address-family
 address-family ipv6 unicast
  neighbor 127.0.0.1 activate
 exit-address-family
`, hub.Port()), 0)
	a := runCPE(t, addr(2), hub.String(), "198.51.100.2:4500", "10.1.0.0/24", "fd00:1::/48")
	a.waitRoutes(t, map[string]string{"10.30.1.0/24": "127.0.0.30:0"})

	// Without zebra FRR cannot resolve next hops, so the routes are not
	// valid there; what matters is that FRR took them, attribute 23 and
	// all, without resetting the session.
	for _, q := range []string{"show bgp ipv4 unicast 10.1.0.0/24 json", "show bgp ipv6 unicast fd00:1::/48 json"} {
		out := frr.Vtysh(t, q)
		var r struct {
			Prefix string `json:"prefix"`
			Paths  []struct {
				Originator string `json:"originatorId"`
			} `json:"paths"`
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.Paths) != 1 || r.Paths[0].Originator != "127.0.0.2" {
			t.Errorf("%s: %v\n%s", q, err, out)
		}
	}
	out := frr.Vtysh(t, "show bgp neighbors 127.0.0.1 json")
	if strings.Contains(out, `"connectionsDropped":1`) || !strings.Contains(out, `"bgpState":"Established"`) {
		t.Errorf("FRR session:\n%s", out)
	}
}

// TestConfiguredPeer: a data-center router (BIRD, a configured non-client
// iBGP peer of the group) announces a prefix behind the hub in the plain
// RFC 5565 form; CPEs get it with its NEXT_HOP and no endpoint (the FIB
// resolves it recursively), and the router gets the CPEs' routes.
func TestConfiguredPeer(t *testing.T) {
	if testenv.RunInNetns(t) {
		return
	}
	leakCheck(t)
	g := acmeIsolated()
	g.Peers = []PeerConfig{{Address: netip.MustParseAddr("127.0.0.40"), ASN: 65000, Passive: true}}
	h := startHub(t, Config{}, g)
	hub := netip.MustParseAddrPort(listenOf(h, "acme"))
	mustUp(t, h, cpe("a", "acme", addr(2), "198.51.100.2:4500", "10.1.0.0/16"))
	peertest.Bird(t, nil, fmt.Sprintf(`
router id 127.0.0.40;
protocol static dc { ipv4; route 192.168.100.0/24 unreachable; }
protocol bgp hub {
  local 127.0.0.40 port %[2]d as 65000;
  neighbor 127.0.0.1 port %[1]d as 65000;
  connect delay time 1;
  connect retry time 1;
  ipv4 { import all; export where source = RTS_STATIC; next hop self; };
  ipv6 { import all; export none; };
}
protocol bgp mon {
  local 127.0.0.40 port %[2]d as 65000;
  neighbor 127.0.0.41 as 65000;
  passive on;
  rr client;
  ipv4 { import none; export where source = RTS_BGP; };
}
`, hub.Port(), birdPort))
	a := runCPE(t, addr(2), hub.String(), "198.51.100.2:4500", "10.1.0.0/24")
	if err := a.sink.Wait(within(t, 20*time.Second), func(rs map[netip.Prefix]routing.Route) bool {
		r, ok := rs[netip.MustParsePrefix("192.168.100.0/24")]
		return ok && r.NextHop == netip.MustParseAddr("127.0.0.40") && !r.Endpoint.IsValid()
	}); err != nil {
		t.Fatalf("a:\n%s", a.sink)
	}
	mon := runCPE(t, "127.0.0.41", fmt.Sprintf("127.0.0.40:%d", birdPort), "")
	mon.waitRoutes(t, map[string]string{"10.1.0.0/24": "198.51.100.2:4500"})
}
