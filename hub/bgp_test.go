package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/bgp/speaker"
	"github.com/mpsa-vpn/mpsa/bgp/speaker/speakertest"
	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/internal/ops"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/routing"
)

// The route reflector's listeners in the tests that run it: every such test
// starts with testenv.RunInNetns and runs alone in a network namespace of
// its own, so these fixed ports cannot be held or taken by another test or
// package between the test choosing them and the hub's GoBGP binding them
// (GoBGP opens its listeners on its own Serve goroutine, out of reach of
// Netns.Do).
const (
	bgpPort  uint16 = 179   // the groups' BGP listeners (the daemon's default)
	grpcPort uint16 = 50051 // the first group's GoBGP API (GoBGP's default)
)

// The groups' BGP listeners under loopbackPools, and a CPE's ESP endpoint
// as the hub sees it in these tests: raw ESP from 127.0.0.1.
var (
	hubAcme   = netip.AddrPortFrom(netip.MustParseAddr("127.100.0.1"), bgpPort)
	hubGlobex = netip.AddrPortFrom(netip.MustParseAddr("127.101.0.1"), bgpPort)
	outer     = netip.AddrPortFrom(loop4, 0)
)

// startSpeaker runs a CPE's iBGP speaker (bgp/speaker, as mpsa-cpe does)
// from its overlay address to the hub's, and returns the sink of the
// routes it learns.
func startSpeaker(t testing.TB, ctx context.Context, asn uint32, from, to netip.AddrPort, endpoint netip.AddrPort, prefixes ...string) *speakertest.Sink {
	t.Helper()
	sink, _ := startSpeakerStats(t, ctx, asn, from, to, endpoint, prefixes...)
	return sink
}

// testSpeaker is a CPE's speaker whose session state changes can be
// waited for.
type testSpeaker struct {
	*speaker.Speaker
	mu      sync.Mutex
	changed chan struct{} // closed and replaced at every FSM state change
}

// onState is the speaker's OnState: it wakes waitStats.
func (s *testSpeaker) onState(speaker.State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.changed)
	s.changed = make(chan struct{})
}

// waitStats waits until cond holds for the speaker's counters, checking
// them at every state change of its session. Only for counters that move
// with the FSM (Established is counted before the state changes).
func (s *testSpeaker) waitStats(t testing.TB, what string, cond func(speaker.Stats) bool) {
	t.Helper()
	deadline := time.NewTimer(waitOK)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond(s.Stats()) {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; speaker stats %+v", what, s.Stats())
		}
	}
}

// startSpeakerStats is startSpeaker that also returns the speaker, for its
// counters and state changes.
func startSpeakerStats(t testing.TB, ctx context.Context, asn uint32, from, to netip.AddrPort, endpoint netip.AddrPort, prefixes ...string) (*speakertest.Sink, *testSpeaker) {
	t.Helper()
	sink := speakertest.NewSink()
	ts := &testSpeaker{changed: make(chan struct{})}
	var ps []netip.Prefix
	for _, p := range prefixes {
		ps = append(ps, mustPrefix(p))
	}
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(from), Timeout: 5 * time.Second}
	sp, err := speaker.New(speaker.Config{ASN: asn, RouterID: from.Addr(), Prefixes: ps, Endpoint: endpoint, Sink: sink,
		Dial:       func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", to.String()) },
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
		OnState: ts.onState,
	})
	if err != nil {
		t.Fatal(err)
	}
	ts.Speaker = sp
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		defer close(done)
		sp.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return sink, ts
}

func waitRoutes(t testing.TB, sink *speakertest.Sink, what string, cond func(map[netip.Prefix]routing.Route) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitOK)
	defer cancel()
	if err := sink.Wait(ctx, cond); err != nil {
		t.Fatalf("%s: %v; routes:\n%s", what, err, sink)
	}
}

// TestBGP runs the route reflector on loopback (the groups' pools are in
// 127/8, so the CPEs' overlay addresses are local): CPEs learn each other's
// prefixes with the ESP endpoint the hub sees on their IKE SA, never another
// group's; a foreign prefix is dropped, a foreign endpoint rewritten, a
// session from an address that is no live CPE refused; a CPE's routes go
// when its IKE SA does. The stock gobgp CLI reads a group's RIB over gRPC.
func TestBGP(t *testing.T) {
	if testenv.RunInNetns(t) {
		return
	}
	checkGoroutines(t)
	cfg := baseConfig(t)
	loopbackPools(cfg)
	grpc := netip.AddrPortFrom(loop4, grpcPort)
	th := startHubBGP(t, cfg, WithBGPPort(bgpPort), WithGRPC(grpc))
	asn := th.cfg.BGP.ASN
	ctx := context.Background()

	ids := []string{"fqdn:cpe1.acme.example", "fqdn:cpe2.acme.example", "rfc822:cpe3@globex.example"}
	cpes := map[string]*testCPE{}
	for i, c := range joinCPEs(t, th, ids...) {
		cpes[ids[i]] = c
	}
	vip := func(id string) netip.AddrPort { return cpes[id].vip() }
	s1 := startSpeaker(t, ctx, asn, vip("fqdn:cpe1.acme.example"), hubAcme, outer, "10.1.0.0/24")
	// cpe2 claims a foreign endpoint and a prefix it is not authorised for.
	s2 := startSpeaker(t, ctx, asn, vip("fqdn:cpe2.acme.example"), hubAcme, netip.MustParseAddrPort("192.0.2.99:4500"),
		"10.2.0.0/24", "10.77.0.0/24")
	s3 := startSpeaker(t, ctx, asn, vip("rfc822:cpe3@globex.example"), hubGlobex, outer, "10.1.0.0/24")

	waitRoutes(t, s2, "cpe2 learns cpe1's prefix", func(r map[netip.Prefix]routing.Route) bool {
		x, ok := r[mustPrefix("10.1.0.0/24")]
		return ok && x.Endpoint == outer
	})
	waitRoutes(t, s1, "cpe1 learns cpe2's prefix with the endpoint the hub saw", func(r map[netip.Prefix]routing.Route) bool {
		x, ok := r[mustPrefix("10.2.0.0/24")]
		return ok && x.Endpoint == outer
	})
	pollFor(t, "the foreign prefix and endpoint to be counted", func() bool {
		v, _ := th.h.BGP(ctx)
		for _, g := range v.Groups {
			if g.Name == "acme" {
				return g.ForeignPrefix >= 1 && g.EndpointRewrite >= 1 && g.Sessions == 2
			}
		}
		return false
	})
	if _, ok := s1.Get(mustPrefix("10.77.0.0/24")); ok {
		t.Error("cpe1 learned cpe2's unauthorised prefix")
	}
	// globex is isolated: cpe3 never learns acme's routes.
	if s3.Len() != 0 {
		t.Errorf("globex's cpe3 learned routes of acme:\n%s", s3)
	}

	// A session from an address that is no live CPE is refused.
	stranger := startSpeaker(t, ctx, asn, netip.MustParseAddrPort("127.100.0.99:0"), hubAcme, outer, "10.99.0.0/24")
	pollFor(t, "the stranger's session to be refused", func() bool {
		v, _ := th.h.BGP(ctx)
		return v.Groups[0].RefusedSessions >= 1
	})
	if stranger.Len() != 0 {
		t.Errorf("a stranger learned routes:\n%s", stranger)
	}

	// The metrics say the same.
	metrics := scrapeMetrics(t, th)
	for _, want := range []string{`mpsa_hub_bgp_sessions{group="acme"} 2`,
		`mpsa_hub_bgp_routes{group="acme"} 2`, `mpsa_hub_bgp_refused_sessions_total{group="acme"} `,
		`mpsa_hub_bgp_filtered_total{group="acme",reason="foreign_prefix"} `, `mpsa_hub_bgp_filtered_total{group="acme",reason="endpoint_rewritten"} `} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	for _, zero := range []string{`mpsa_hub_bgp_refused_sessions_total{group="acme"} 0`, `mpsa_hub_bgp_filtered_total{group="acme",reason="foreign_prefix"} 0`} {
		if strings.Contains(metrics, zero) {
			t.Errorf("metrics: %s", zero)
		}
	}

	text := render(must(th.h.BGP(ctx)))
	for _, want := range []string{"acme: listening 127.100.0.1:", "cpes 2 registered, 2 sessions established", "gobgp -u 127.0.0.1 -p "} {
		if !strings.Contains(text, want) {
			t.Errorf("status bgp lacks %q:\n%s", want, text)
		}
	}

	checkBGPStatus(t, th)

	// The stock gobgp CLI reads acme's RIB.
	if gobgp, err := exec.LookPath("gobgp"); err == nil || testenv.RequireAll() {
		if err != nil {
			t.Fatal("gobgp CLI not installed (Debian package gobgpd)")
		}
		out, err := exec.Command(gobgp, "-u", "127.0.0.1", "-p", itoa(int(grpc.Port())), "global", "rib", "-a", "ipv4").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "10.1.0.0/24") || !strings.Contains(string(out), "10.2.0.0/24") {
			t.Errorf("gobgp global rib: %v\n%s", err, out)
		}
	}

	// cpe1's IKE SA goes: its route is withdrawn from cpe2.
	cctx, cancel := context.WithTimeout(ctx, waitOK)
	defer cancel()
	if err := cpes["fqdn:cpe1.acme.example"].sa.Close(cctx); err != nil {
		t.Fatal(err)
	}
	waitRoutes(t, s2, "cpe1's route withdrawn", func(r map[netip.Prefix]routing.Route) bool {
		_, ok := r[mustPrefix("10.1.0.0/24")]
		return !ok
	})
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestBGPRestart: the hub stops and comes back on the same state directory.
// The CPEs keep the routes they learned (graceful restart, the hub's
// Cease / Administrative Reset is graceful for them), the new hub starts as
// a restarting speaker waiting for the CPEs connected in the last run, and
// no CPE ever loses another's route.
func TestBGPRestart(t *testing.T) {
	if testenv.RunInNetns(t) {
		return
	}
	checkGoroutines(t)
	cfg := baseConfig(t)
	loopbackPools(cfg)
	th := startHubBGP(t, cfg, WithBGPPort(bgpPort), WithGRPC(netip.AddrPort{}))
	asn := th.cfg.BGP.ASN
	ctx := context.Background()
	var sinks []*speakertest.Sink
	var speakers []*testSpeaker
	var vips []netip.AddrPort
	for i, c := range joinCPEs(t, th, "fqdn:cpe1.acme.example", "fqdn:cpe2.acme.example") {
		vip := c.vip()
		vips = append(vips, vip)
		sink, sp := startSpeakerStats(t, ctx, asn, vip, hubAcme, outer, []string{"10.1.0.0/24", "10.2.0.0/24"}[i])
		sinks, speakers = append(sinks, sink), append(speakers, sp)
	}
	has := func(p string) func(map[netip.Prefix]routing.Route) bool {
		return func(r map[netip.Prefix]routing.Route) bool { _, ok := r[mustPrefix(p)]; return ok }
	}
	waitRoutes(t, sinks[0], "cpe1 learns cpe2's route", has("10.2.0.0/24"))
	waitRoutes(t, sinks[1], "cpe2 learns cpe1's route", has("10.1.0.0/24"))
	w0, w1 := sinks[0].Withdrawals(), sinks[1].Withdrawals()

	th.stop()
	th2 := startHubBGP(t, cfg, WithBGPPort(bgpPort), WithGRPC(netip.AddrPort{}))
	if v, _ := th2.h.BGP(ctx); len(v.Groups) == 0 || v.Groups[0].Synced || v.Groups[0].CPEs != 2 {
		t.Fatalf("restarted hub's acme group: %+v, want restarting with the 2 CPEs of the last run", v.Groups)
	}
	joinCPEs(t, th2, "fqdn:cpe1.acme.example", "fqdn:cpe2.acme.example")
	pollFor(t, "the restarted acme group to sync", func() bool {
		v, _ := th2.h.BGP(ctx)
		return v.Groups[0].Synced && v.Groups[0].Sessions == 2 && v.Groups[0].Routes == 2
	})
	waitRoutes(t, sinks[0], "cpe1 still has cpe2's route", has("10.2.0.0/24"))
	waitRoutes(t, sinks[1], "cpe2 still has cpe1's route", has("10.1.0.0/24"))
	if sinks[0].Withdrawals() != w0 || sinks[1].Withdrawals() != w1 {
		t.Errorf("routes withdrawn across the hub restart: %d, %d", sinks[0].Withdrawals()-w0, sinks[1].Withdrawals()-w1)
	}
	// Each CPE got the restarted hub's table and End-of-RIB: nothing it
	// kept across the restart is still stale. A stale mark goes when the
	// route comes again or is withdrawn, and the speaker updates these
	// counters before it hands either to its sink: each change wakes the
	// sink's waiters.
	for i, sp := range speakers {
		waitRoutes(t, sinks[i], fmt.Sprintf("cpe%d's End-of-RIB from the restarted hub", i+1), func(map[netip.Prefix]routing.Route) bool {
			st := sp.Stats()
			return st.StaleRoutes == 0 && st.RoutesLearned == 1
		})
	}
}

// TestGRPCPorts: at start the n-th group's GoBGP API is on bgp.grpc_listen's
// port + n-1; a group a reload adds (here between the others) takes the
// lowest free port and no running group's API moves; a removed group's port
// is taken by the next group added.
func TestGRPCPorts(t *testing.T) {
	if testenv.RunInNetns(t) {
		return
	}
	checkGoroutines(t)
	cfg := baseConfig(t)
	loopbackPools(cfg)
	base := netip.AddrPortFrom(loop4, grpcPort)
	th := startHubBGP(t, cfg, WithBGPPort(bgpPort), WithGRPC(base))
	ctx := context.Background()
	at := func(n int) string { return netip.AddrPortFrom(base.Addr(), base.Port()+uint16(n)).String() }
	ports := func() map[string]string {
		v, err := th.h.BGP(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, g := range v.Groups {
			m[g.Name] = g.GRPC
		}
		return m
	}
	check := func(want map[string]string) {
		t.Helper()
		got := ports()
		if len(got) != len(want) {
			t.Fatalf("gRPC addresses %v, want %v", got, want)
		}
		for g, a := range want {
			if got[g] != a {
				t.Errorf("group %s: gRPC %q, want %q (all: %v)", g, got[g], a, got)
			}
		}
	}
	check(map[string]string{"acme": at(0), "globex": at(1)})

	next := copyConfig(cfg)
	next.Groups = []configs.Group{cfg.Groups[0], {Name: "initech", Pool: configs.Pool{IPv4: mustPrefix("127.102.0.0/24")},
		BGP: configs.GroupBGP{MaxPrefixes: 500}}, cfg.Groups[1]}
	checkConfig(t, next)
	if _, err := th.h.Reload(next); err != nil {
		t.Fatal(err)
	}
	check(map[string]string{"acme": at(0), "initech": at(2), "globex": at(1)})

	last := copyConfig(next)
	last.CPEs = nil
	for _, c := range next.CPEs {
		if c.Group != "acme" {
			last.CPEs = append(last.CPEs, c)
		}
	}
	last.Groups = []configs.Group{next.Groups[1], next.Groups[2], {Name: "hooli", Pool: configs.Pool{IPv4: mustPrefix("127.103.0.0/24")}}}
	checkConfig(t, last)
	if _, err := th.h.Reload(last); err != nil {
		t.Fatal(err)
	}
	check(map[string]string{"initech": at(2), "globex": at(1), "hooli": at(0)})

	// Each API answers for its own group.
	if gobgp, err := exec.LookPath("gobgp"); err == nil || testenv.RequireAll() {
		if err != nil {
			t.Fatal("gobgp CLI not installed (Debian package gobgpd)")
		}
		for n, listen := range map[int]string{0: "127.103.0.1", 2: "127.102.0.1"} {
			out, err := exec.Command(gobgp, "-u", "127.0.0.1", "-p", itoa(int(base.Port())+n), "global").CombinedOutput()
			if err != nil || !strings.Contains(string(out), listen) {
				t.Errorf("gobgp -p %d global (want listening on %s): %v\n%s", int(base.Port())+n, listen, err, out)
			}
		}
	}
}

// scrapeMetrics reads the hub's /metrics as Prometheus would.
func scrapeMetrics(t testing.TB, th *testHub) string {
	t.Helper()
	srv := httptest.NewServer(th.h.metrics.handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBGPRouteLimit: the groups' bgp.max_prefixes bounds the routes the
// reflector takes from one CPE: announcements beyond it are dropped and
// counted (status bgp, metrics), the other CPE learns only those within.
func TestBGPRouteLimit(t *testing.T) {
	if testenv.RunInNetns(t) {
		return
	}
	checkGoroutines(t)
	cfg := baseConfig(t)
	loopbackPools(cfg)
	cfg.Groups[0].BGP.MaxPrefixes, cfg.Groups[1].BGP.MaxPrefixes = 2, 2
	cfg.Groups[0].BGP.AcceptMoreSpecifics = true
	th := startHubBGP(t, cfg, WithBGPPort(bgpPort), WithGRPC(netip.AddrPort{}))
	ctx := context.Background()
	var vips []netip.AddrPort
	for _, c := range joinCPEs(t, th, "fqdn:cpe1.acme.example", "fqdn:cpe2.acme.example") {
		vips = append(vips, c.vip())
	}
	// cpe1 announces three routes inside its authorised 10.1.0.0/24
	// (the group accepts more specifics).
	startSpeaker(t, ctx, th.cfg.BGP.ASN, vips[0], hubAcme, outer, "10.1.0.0/24", "10.1.0.0/25", "10.1.0.128/25")
	s2 := startSpeaker(t, ctx, th.cfg.BGP.ASN, vips[1], hubAcme, outer, "10.2.0.0/24")
	pollFor(t, "the third route to be dropped", func() bool {
		v, _ := th.h.BGP(ctx)
		return v.Groups[0].TooManyRoutes >= 1 && v.Groups[0].Routes == 3
	})
	waitRoutes(t, s2, "cpe2 learns two of cpe1's routes", func(r map[netip.Prefix]routing.Route) bool { return len(r) == 2 })
	if v, _ := th.h.BGP(ctx); v.Groups[0].Routes != 3 {
		t.Errorf("acme reflects %d routes, want 2 of cpe1 and 1 of cpe2", v.Groups[0].Routes)
	}
	if text := render(must(th.h.BGP(ctx))); !strings.Contains(text, "1 over the route limit") {
		t.Errorf("status bgp:\n%s", text)
	}
	if m := scrapeMetrics(t, th); !strings.Contains(m, `mpsa_hub_bgp_filtered_total{group="acme",reason="too_many_routes"} 1`) {
		t.Errorf("metrics lack the dropped route:\n%s", m)
	}
}

// TestBGPRoutePolicy: a group's bgp settings are its route policy. By
// default a CPE may announce only its authorised prefixes themselves: a
// more specific is dropped and counted, and the other CPE sees the
// group's local_pref. A reload that accepts more specifics and changes
// local_pref applies to the running group: the more specific the CPE sent
// is accepted, LOCAL_PREF re-advertised, no session reset. A max_prefixes
// beyond what the running group can take restarts the group, which
// takes the CPEs' routes again.
func TestBGPRoutePolicy(t *testing.T) {
	if testenv.RunInNetns(t) {
		return
	}
	checkGoroutines(t)
	cfg := baseConfig(t)
	loopbackPools(cfg)
	cfg.Groups[0].BGP.LocalPref = 200
	th := startHubBGP(t, cfg, WithBGPPort(bgpPort), WithGRPC(netip.AddrPort{}))
	ctx := context.Background()
	var vips []netip.AddrPort
	for _, c := range joinCPEs(t, th, "fqdn:cpe1.acme.example", "fqdn:cpe2.acme.example") {
		vips = append(vips, c.vip())
	}
	// cpe1 is authorised for 10.1.0.0/24; 10.1.0.128/25 lies within it.
	_, sp1 := startSpeakerStats(t, ctx, th.cfg.BGP.ASN, vips[0], hubAcme, outer, "10.1.0.0/24", "10.1.0.128/25")
	s2 := startSpeaker(t, ctx, th.cfg.BGP.ASN, vips[1], hubAcme, outer, "10.2.0.0/24")
	wantPrefs := func(what string, want map[string]uint32) {
		t.Helper()
		waitRoutes(t, s2, what, func(r map[netip.Prefix]routing.Route) bool {
			if len(r) != len(want) {
				return false
			}
			for p, lp := range want {
				if x, ok := r[mustPrefix(p)]; !ok || x.LocalPref != lp {
					return false
				}
			}
			return true
		})
	}
	wantPrefs("cpe2 learns cpe1's authorised prefix only, LOCAL_PREF 200", map[string]uint32{"10.1.0.0/24": 200})
	pollFor(t, "the more specific to be counted", func() bool {
		v, _ := th.h.BGP(ctx)
		return v.Groups[0].ForeignPrefix == 1 && v.Groups[0].Routes == 2
	})
	if lines := th.logs.lines("CPE route dropped: prefix not authorised", "prefix=10.1.0.128/25", `reason="more specific of an authorised prefix"`); len(lines) != 1 {
		t.Errorf("no log line for the dropped more specific:\n%s", th.logs)
	}

	next := copyConfig(cfg)
	next.Groups[0].BGP.AcceptMoreSpecifics = true
	next.Groups[0].BGP.LocalPref = 300
	checkConfig(t, next)
	if _, err := th.h.Reload(next); err != nil {
		t.Fatal(err)
	}
	wantPrefs("cpe2 learns the more specific after the reload, LOCAL_PREF 300", map[string]uint32{"10.1.0.0/24": 300, "10.1.0.128/25": 300})
	if n := sp1.Stats().Established; n != 1 {
		t.Errorf("cpe1's session established %d times: the policy change reset it", n)
	}

	// Beyond the route reflector's bound (rr.DefaultMaxRoutes here): the
	// group restarts with it, and its CPEs' routes come back.
	last := copyConfig(next)
	last.Groups[0].BGP.MaxPrefixes = 2000
	last.Groups[0].BGP.LocalPref = 0
	checkConfig(t, last)
	if _, err := th.h.Reload(last); err != nil {
		t.Fatal(err)
	}
	sp1.waitStats(t, "cpe1's session back after the group's restart", func(st speaker.Stats) bool { return st.Established == 2 })
	wantPrefs("cpe2 learns cpe1's routes from the restarted group", map[string]uint32{"10.1.0.0/24": 100, "10.1.0.128/25": 100})
	if lines := th.logs.lines("route reflector group restarts for its new route limit", "group=acme"); len(lines) != 1 {
		t.Errorf("no log line for the group's restart:\n%s", th.logs)
	}
}

// checkBGPStatus reads `mpsa-hub status bgp` and `status routes` (text and
// -json) from TestBGP's running hub, through the status socket as the
// command does: cpe1 and cpe2 of acme are established, each with its route
// (cpe2's second one, not authorised, received but not accepted), cpe3 is
// globex's.
func checkBGPStatus(t *testing.T, th *testHub) {
	t.Helper()
	pollFor(t, "every session established", func() bool {
		v, _ := th.h.BGP(context.Background())
		return len(v.Groups) == 2 && v.Groups[0].Sessions == 2 && v.Groups[1].Sessions == 1 && v.Groups[1].Routes == 1
	})
	sock := th.cfg.Status.Socket
	status := func(args ...string) string {
		t.Helper()
		var out, errOut strings.Builder
		if rc := ops.StatusMain("mpsa-hub", append([]string{"-socket", sock}, args...), "", "sas", &out, &errOut); rc != 0 {
			t.Fatalf("status %v: exit %d: %s", args, rc, errOut.String())
		}
		return out.String()
	}
	text := status("bgp")
	for _, want := range []string{
		"policy: max 100 prefixes per CPE, only the authorised prefixes, local_pref 100",
		"CPE", "OVERLAY", "ENDPOINT", "STATE", "UPTIME", "RECEIVED", "ACCEPTED",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("status bgp lacks %q:\n%s", want, text)
		}
	}
	for _, row := range [][]string{
		{"fqdn:cpe1.acme.example", "127.100.0.", "127.0.0.1:0", "ESTABLISHED", "*", "1", "1", "0"},
		{"fqdn:cpe2.acme.example", "127.100.0.", "127.0.0.1:0", "ESTABLISHED", "*", "2", "1", "0"},
		{"rfc822:cpe3@globex.example", "127.101.0.", "127.0.0.1:0", "ESTABLISHED", "*", "1", "1", "0"},
	} {
		if !hasRow(text, row...) {
			t.Errorf("status bgp has no row %v:\n%s", row, text)
		}
	}
	if one := status("bgp", "globex"); strings.Contains(one, "acme") || !strings.Contains(one, "rfc822:cpe3@globex.example") {
		t.Errorf("status bgp globex:\n%s", one)
	}

	var bgp BGPView
	if err := json.Unmarshal([]byte(status("-json", "bgp", "acme")), &bgp); err != nil {
		t.Fatal(err)
	}
	if len(bgp.Groups) != 1 || len(bgp.Groups[0].Peers) != 2 {
		t.Fatalf("status -json bgp acme: %+v", bgp)
	}
	for _, p := range bgp.Groups[0].Peers {
		if p.State != "ESTABLISHED" || p.Since.IsZero() || p.Uptime == "" || p.Accepted != 1 || p.Stale != 0 {
			t.Errorf("status -json bgp: session %+v", p)
		}
	}
	if p := bgp.Groups[0].Policy; p.MaxPrefixes != 100 || p.AcceptMoreSpecifics || p.LocalPref != 100 {
		t.Errorf("status -json bgp: policy %+v", p)
	}

	text = status("routes")
	for _, row := range [][]string{
		{"10.1.0.0/24", "127.0.0.1 (raw ESP)", "127.0.0.1", "fqdn:cpe1.acme.example", "100", "fresh"},
		{"10.2.0.0/24", "127.0.0.1 (raw ESP)", "127.0.0.1", "fqdn:cpe2.acme.example", "100", "fresh"},
		{"10.1.0.0/24", "127.0.0.1 (raw ESP)", "127.0.0.1", "rfc822:cpe3@globex.example", "100", "fresh"},
	} {
		if !hasRow(text, row...) {
			t.Errorf("status routes has no row %v:\n%s", row, text)
		}
	}
	var routes RouteView
	if err := json.Unmarshal([]byte(status("-json", "routes")), &routes); err != nil {
		t.Fatal(err)
	}
	want := []ReflectedRoute{
		{Group: "acme", Prefix: "10.1.0.0/24", Endpoint: "127.0.0.1 (raw ESP)", NextHop: "127.0.0.1", CPE: "fqdn:cpe1.acme.example", LocalPref: 100},
		{Group: "acme", Prefix: "10.2.0.0/24", Endpoint: "127.0.0.1 (raw ESP)", NextHop: "127.0.0.1", CPE: "fqdn:cpe2.acme.example", LocalPref: 100},
		{Group: "globex", Prefix: "10.1.0.0/24", Endpoint: "127.0.0.1 (raw ESP)", NextHop: "127.0.0.1", CPE: "rfc822:cpe3@globex.example", LocalPref: 100},
	}
	if len(routes.Reflected) != len(want) {
		t.Fatalf("status -json routes: reflected %+v, want %+v", routes.Reflected, want)
	}
	for i := range want {
		if routes.Reflected[i] != want[i] {
			t.Errorf("status -json routes: reflected[%d] %+v, want %+v", i, routes.Reflected[i], want[i])
		}
	}
}

// columnGap separates the columns of a status table.
var columnGap = regexp.MustCompile(`\s{2,}`)

// hasRow reports whether text has a table row whose columns (separated
// by two spaces or more) are fields: "*" matches any column, a field ending
// in "." any column it begins.
func hasRow(text string, fields ...string) bool {
	for _, line := range strings.Split(text, "\n") {
		cols := columnGap.Split(strings.TrimSpace(line), -1)
		if len(cols) != len(fields) {
			continue
		}
		ok := true
		for i, f := range fields {
			ok = ok && (f == "*" || cols[i] == f || strings.HasSuffix(f, ".") && strings.HasPrefix(cols[i], f))
		}
		if ok {
			return true
		}
	}
	return false
}
