package speaker

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/bgp/internal/gobgptest"
	"github.com/mpsa-vpn/mpsa/routing"
)

// grPair starts a GoBGP reflector with graceful restart behind a cuttable
// TCP proxy, and two speakers, a advertising 10.1.0.0/24 and fd00:1::/48
// to b. crash cuts every connection (TCP reset, no NOTIFICATION reaches the
// speakers, as when the hub dies or the tunnel breaks) and stops the
// reflector; port is the reflector's port, for its successor.
func grPair(t *testing.T, o gobgptest.Options) (crash func(), a, b *runningSpeaker, port int) {
	crash, a, b, port, _ = grPairProxy(t, o)
	return crash, a, b, port
}

func grPairProxy(t *testing.T, o gobgptest.Options) (crash func(), a, b *runningSpeaker, port int, px *proxy) {
	rr, o := gobgptest.StartT(t, o)
	px = newProxy(t, fmt.Sprintf("127.0.0.1:%d", o.Port))
	a = start(t, Config{ASN: 65000, RouterID: netip.MustParseAddr("127.0.0.2"), Dial: dialFrom("127.0.0.2", px.addr()),
		Prefixes: pfx("10.1.0.0/24", "fd00:1::/48"), Endpoint: netip.MustParseAddrPort("192.0.2.1:4500")})
	b = start(t, Config{ASN: 65000, RouterID: netip.MustParseAddr("127.0.0.3"), Dial: dialFrom("127.0.0.3", px.addr()),
		Prefixes: pfx("10.2.0.0/24")})
	waitRoutes(t, b.sink, 10*time.Second, map[string]string{"10.1.0.0/24": "192.0.2.1:4500", "fd00:1::/48": "192.0.2.1:4500"})
	return func() { px.cut(); rr.Stop() }, a, b, o.Port, px
}

// proxy forwards TCP connections to a target; cut resets all of them.
type proxy struct {
	t       *testing.T
	ln      net.Listener
	target  string
	mu      sync.Mutex
	conns   []*net.TCPConn
	blocked map[string]bool // source addresses refused
	wg      sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &proxy{t: t, ln: ln, target: target}
	px.wg.Add(1)
	go px.serve()
	t.Cleanup(func() {
		ln.Close()
		px.cut()
		px.wg.Wait()
	})
	return px
}

func (px *proxy) addr() string { return px.ln.Addr().String() }

func (px *proxy) serve() {
	defer px.wg.Done()
	for {
		c, err := px.ln.Accept()
		if err != nil {
			return
		}
		// Keep the client's source address: the reflector keys neighbors
		// on it. The proxy dials from the same loopback address.
		src := c.RemoteAddr().(*net.TCPAddr).IP
		px.mu.Lock()
		blocked := px.blocked[src.String()]
		px.mu.Unlock()
		if blocked {
			c.Close()
			continue
		}
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 2 * time.Second}
		u, err := d.Dial("tcp", px.target)
		if err != nil {
			c.Close()
			continue
		}
		px.mu.Lock()
		px.conns = append(px.conns, c.(*net.TCPConn), u.(*net.TCPConn))
		px.mu.Unlock()
		px.wg.Add(2)
		go func() { defer px.wg.Done(); io.Copy(u, c); u.Close() }()
		go func() { defer px.wg.Done(); io.Copy(c, u); c.Close() }()
	}
}

// block refuses connections from src (true) or accepts them again.
func (px *proxy) block(src string, on bool) {
	px.mu.Lock()
	defer px.mu.Unlock()
	if px.blocked == nil {
		px.blocked = map[string]bool{}
	}
	px.blocked[src] = on
}

func (px *proxy) cut() {
	px.mu.Lock()
	defer px.mu.Unlock()
	for _, c := range px.conns {
		c.SetLinger(0)
		c.Close()
	}
	px.conns = nil
}

// waitFor waits until cond holds, re-checking it whenever the speaker's
// state or its sink changes.
func waitFor(t *testing.T, s *runningSpeaker, d time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx := within(t, d)
	for !cond() {
		sinkCtx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-s.states:
			case <-sinkCtx.Done():
			}
			cancel()
		}()
		s.sink.Wait(sinkCtx, func(map[netip.Prefix]routing.Route) bool { return cond() })
		cancel()
		if ctx.Err() != nil && !cond() {
			t.Fatalf("%s: state %v, stats %+v, routes:\n%s", what, s.State(), s.Stats(), s.sink)
		}
	}
}

func waitStale(t *testing.T, s *runningSpeaker, n uint64) {
	t.Helper()
	waitFor(t, s, 10*time.Second, "stale routes", func() bool {
		return s.Stats().StaleRoutes == n && s.State() != StateEstablished
	})
}

// TestHubRestartKeepsRoutes: the hub's reflector dies and a new one
// (restarting, F bit set) comes up; b keeps a's routes as stale meanwhile,
// and after the new reflector has re-advertised them and sent End-of-RIB
// they are fresh again. b never withdraws them from its FIB.
//
// GoBGP ends its selection deferral (and stops setting the F bit in new
// OPENs) as soon as every neighbor that is connected has sent End-of-RIB.
// A holder speaker that defers its End-of-RIB keeps the deferral open until
// a and b are both back, the way the hub keeps it open until every live CPE
// is back.
func TestHubRestartKeepsRoutes(t *testing.T) {
	leakCheck(t)
	crash, a, b, port, px := grPairProxy(t, gobgptest.Options{GR: true, RestartTime: 30, DeferralTime: 30})
	withdrawsBefore := b.sink.Withdrawals()
	px.block("127.0.0.2", true)
	px.block("127.0.0.3", true)
	crash()
	waitStale(t, b, 2)
	if b.sink.Len() != 2 {
		t.Fatalf("routes during restart:\n%s", b.sink)
	}

	rr2, _ := gobgptest.StartT(t, gobgptest.Options{Port: port, GR: true, RestartTime: 30, Restarting: true, DeferralTime: 30,
		Neighbors: []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}})
	holder := start(t, Config{ASN: 65000, RouterID: netip.MustParseAddr("127.0.0.4"),
		Dial: dialFrom("127.0.0.4", fmt.Sprintf("127.0.0.1:%d", port)), DeferEndOfRIB: true})
	holder.waitState(t, StateEstablished, 10*time.Second)
	px.block("127.0.0.2", false)
	if err := gobgptest.WaitPaths(within(t, 20*time.Second), rr2, 2); err != nil {
		t.Fatalf("a state %v: %v", a.State(), err)
	}
	px.block("127.0.0.3", false)
	waitFor(t, b, 20*time.Second, "b back", func() bool { return b.State() == StateEstablished })
	if st := b.Stats(); st.StaleRoutes != 2 || b.sink.Len() != 2 {
		t.Fatalf("b lost routes while the hub was away: %+v\n%s", st, b.sink)
	}
	holder.SendEndOfRIB()
	waitFor(t, b, 20*time.Second, "after hub restart", func() bool {
		return b.State() == StateEstablished && b.Stats().StaleRoutes == 0 && b.sink.Len() == 2
	})
	waitRoutes(t, b.sink, time.Second, map[string]string{"10.1.0.0/24": "192.0.2.1:4500", "fd00:1::/48": "192.0.2.1:4500"})
	if n := b.sink.Withdrawals(); n != withdrawsBefore {
		t.Errorf("%d routes withdrawn across the hub restart", n-withdrawsBefore)
	}
}

// TestHubRestartTimeout: a hub that does not come back within its restart
// time loses its routes.
func TestHubRestartTimeout(t *testing.T) {
	leakCheck(t)
	crash, _, b, _ := grPair(t, gobgptest.Options{GR: true, RestartTime: 1})
	t0 := time.Now()
	crash()
	waitRoutes(t, b.sink, 10*time.Second, map[string]string{})
	if d := time.Since(t0); d < 900*time.Millisecond {
		t.Errorf("stale routes withdrawn after %v, before the 1s restart time", d)
	}
}

// TestHubRestartWithoutForwarding: a hub that comes back without the F bit
// lost its forwarding state; the stale routes go at once, then come back
// fresh.
func TestHubRestartWithoutForwarding(t *testing.T) {
	leakCheck(t)
	crash, _, b, port := grPair(t, gobgptest.Options{GR: true, RestartTime: 30})
	before := b.sink.Withdrawals()
	crash()
	waitStale(t, b, 2)
	gobgptest.StartT(t, gobgptest.Options{Port: port, GR: true, RestartTime: 30})
	waitFor(t, b, 20*time.Second, "after hub restart", func() bool {
		return b.State() == StateEstablished && b.Stats().StaleRoutes == 0
	})
	waitRoutes(t, b.sink, 20*time.Second, map[string]string{"10.1.0.0/24": "192.0.2.1:4500", "fd00:1::/48": "192.0.2.1:4500"})
	if b.sink.Withdrawals() == before {
		t.Error("stale routes were not withdrawn when the hub came back without the F bit")
	}
}

// TestNoGRFlushes: without graceful restart a lost session withdraws the
// hub's routes at once.
func TestNoGRFlushes(t *testing.T) {
	leakCheck(t)
	crash, _, b, _ := grPair(t, gobgptest.Options{})
	crash()
	waitRoutes(t, b.sink, 10*time.Second, map[string]string{})
	if b.Stats().StaleRoutes != 0 {
		t.Errorf("stats %+v", b.Stats())
	}
}
