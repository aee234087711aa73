package loadgen

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	gblog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/mpsa-vpn/mpsa/bench/bgp/scenario"
)

// startReflector runs an embedded GoBGP route reflector (as rr-gobgp does)
// on a free port of 127.0.0.1 and returns its address.
func startReflector(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	lg := gblog.NewDefaultLogger()
	lg.SetLevel(gblog.WarnLevel)
	s := server.NewBgpServer(server.LoggerOption(lg))
	go s.Serve()
	t.Cleanup(s.Stop)
	ctx := context.Background()
	if err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: scenario.ASN, RouterId: "10.255.255.1", ListenPort: int32(port), ListenAddresses: []string{"127.0.0.1"}}}); err != nil {
		t.Fatal(err)
	}
	var afis []*api.AfiSafi
	for _, afi := range []api.Family_Afi{api.Family_AFI_IP, api.Family_AFI_IP6} {
		afis = append(afis, &api.AfiSafi{Config: &api.AfiSafiConfig{
			Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}, Enabled: true}})
	}
	if err := s.AddPeerGroup(ctx, &api.AddPeerGroupRequest{PeerGroup: &api.PeerGroup{
		Conf:           &api.PeerGroupConf{PeerGroupName: "cpe", PeerAsn: scenario.ASN},
		RouteReflector: &api.RouteReflector{RouteReflectorClient: true, RouteReflectorClusterId: "10.255.255.1"},
		AfiSafis:       afis,
	}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddDynamicNeighbor(ctx, &api.AddDynamicNeighborRequest{DynamicNeighbor: &api.DynamicNeighbor{
		Prefix: "127.1.0.0/16", PeerGroup: "cpe"}}); err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// runMesh runs n CPEs phased through full mesh and the incremental prefix.
func runMesh(t *testing.T, hub string, n, k int, count bool) *CPEs {
	t.Helper()
	c, err := Start(Config{N: n, K: k, Hub: hub, Phased: true, Count: count, HoldTime: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.WaitEstablished(ctx); err != nil {
		t.Fatal(err)
	}
	c.Advertise()
	if _, _, err := c.WaitFullMesh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Incremental(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCountingAgainstGoBGP runs counting CPEs against a GoBGP route
// reflector: every CPE ends up with exactly the other CPEs' prefixes set
// (its own never reflected back), the incremental one included, every
// announcement carried the Tunnel Encapsulation attribute, nothing was
// malformed or outside the plan; the speaker mode against the same
// reflector reaches the same route count.
func TestCountingAgainstGoBGP(t *testing.T) {
	const n, k = 12, 4
	hub := startReflector(t)
	c := runMesh(t, hub, n, k, true)
	p := c.Progress()
	if p.Established != n || p.Converged != n || p.Malformed != 0 || p.Foreign != 0 || p.NoEncap != 0 || p.Lost != 0 {
		t.Fatalf("progress %+v", p)
	}
	want := int64(n*(n-1)*k + n - 1) // full mesh + the incremental prefix at n-1 CPEs
	if p.Delivered != want {
		t.Fatalf("delivered %d, want %d", p.Delivered, want)
	}
	for i, cp := range c.counters {
		for o := range n {
			for j := range k + 1 {
				idx := o*c.stride + j
				got := cp.bitset[idx/64]&(1<<(idx%64)) != 0
				should := o != i && (j < k || o == 0)
				if got != should {
					t.Fatalf("cpe %d holds (%d,%d): %v, want %v", i, o, j, got, should)
				}
			}
		}
		if int64(cp.countedRoutes()) != cp.routes.Load() {
			t.Fatalf("cpe %d: %d bits, routes %d", i, cp.countedRoutes(), cp.routes.Load())
		}
	}
	c.Stop()

	s := runMesh(t, hub, n, k, false)
	if sp := s.Progress(); sp.Delivered != want || sp.Converged != n {
		t.Fatalf("speaker mode: %+v, want %d delivered", sp, want)
	}
}

// TestCountWithdraw: withdrawals built by GoBGP's codec clear the bits
// their announcements set; repeats count once.
func TestCountWithdraw(t *testing.T) {
	c := &CPEs{cfg: Config{N: 4, K: 2}, stride: 3, target: 6, allDone: make(chan struct{})}
	cp := &countCPE{c: c, bitset: make([]uint64, 1)}
	for _, o := range []int{1, 2, 3} {
		msgs, err := announcements(o, 0, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			cp.update(m[headerLen:])
			cp.update(m[headerLen:]) // an implicit withdraw-and-replace: still one route
		}
	}
	if cp.routes.Load() != 6 || !cp.done.Load() || c.converged.Load() != 1 {
		t.Fatalf("routes %d done %v converged %d", cp.routes.Load(), cp.done.Load(), c.converged.Load())
	}
	w4 := mustSerialize(bgp.NewBGPUpdateMessage([]*bgp.IPAddrPrefix{v4(scenario.Prefix(2, 0).String())}, nil, nil))
	w6 := mustSerialize(bgp.NewBGPUpdateMessage(nil, []bgp.PathAttributeInterface{bgp.NewPathAttributeMpUnreachNLRI(
		[]bgp.AddrPrefixInterface{v6(scenario.Prefix(2, 1).String()), v6(scenario.Prefix(3, 1).String())})}, nil))
	for _, m := range [][]byte{w4, w6, w6} {
		cp.update(m[headerLen:])
	}
	if cp.routes.Load() != 3 || cp.countedRoutes() != 3 {
		t.Fatalf("after withdrawals: routes %d bits %d, want 3", cp.routes.Load(), cp.countedRoutes())
	}
	cp.update([]byte{0, 0, 0, 3, 0x40, 1, 2}) // malformed
	cp.update(mustSerialize(bgp.NewEndOfRib(bgp.RF_IPv6_UC))[headerLen:])
	if cp.malformed.Load() != 1 || cp.eor.Load() != 1 || cp.updatesIn.Load() != 17 {
		t.Fatalf("malformed %d eor %d updates %d", cp.malformed.Load(), cp.eor.Load(), cp.updatesIn.Load())
	}
}
