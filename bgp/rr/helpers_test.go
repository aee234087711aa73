package rr

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/bgp/internal/gobgptest"
	"github.com/mpsa-vpn/mpsa/bgp/speaker"
	"github.com/mpsa-vpn/mpsa/bgp/speaker/speakertest"
	"github.com/mpsa-vpn/mpsa/routing"
)

func testLogger() *slog.Logger {
	if os.Getenv("MPSA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func freePort(t *testing.T) uint16 {
	p, err := gobgptest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return uint16(p)
}

// startHub starts a hub (ASN 65000) with one group listening on listen
// (port chosen if 0) and closes it when the test ends.
func startHub(t *testing.T, cfg Config, groups ...GroupConfig) *Hub {
	t.Helper()
	if cfg.ASN == 0 {
		cfg.ASN = 65000
	}
	if !cfg.RouterID.IsValid() {
		cfg.RouterID = netip.MustParseAddr("10.255.0.1")
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	for _, g := range groups {
		for i, l := range g.Listen {
			if l.Port() == 0 {
				g.Listen[i] = netip.AddrPortFrom(l.Addr(), freePort(t))
			}
		}
		if err := h.AddGroup(context.Background(), g); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func listenOf(h *Hub, group string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.groups[group].cfg.Listen[0].String()
}

type cpeSpeaker struct {
	*speaker.Speaker
	sink   *speakertest.Sink
	states chan speaker.State
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// runCPE runs a CPE speaker from addr to hub until the test ends.
func runCPE(t *testing.T, addr, hub string, ep string, prefixes ...string) *cpeSpeaker {
	t.Helper()
	var ps []netip.Prefix
	for _, p := range prefixes {
		ps = append(ps, netip.MustParsePrefix(p))
	}
	c := &cpeSpeaker{sink: speakertest.NewSink(), states: make(chan speaker.State, 256), done: make(chan struct{})}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(addr)}, Timeout: 5 * time.Second}
	var epp netip.AddrPort
	if ep != "" {
		epp = netip.MustParseAddrPort(ep)
	}
	sp, err := speaker.New(speaker.Config{
		ASN: 65000, RouterID: netip.MustParseAddr(addr),
		Dial:     func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", hub) },
		Prefixes: ps, Endpoint: epp, Sink: c.sink,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		OnState: func(s speaker.State) {
			select {
			case c.states <- s:
			default:
			}
		},
		Logger: testLogger().With("cpe", addr),
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Speaker = sp
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() {
		defer close(c.done)
		sp.Run(ctx)
	}()
	t.Cleanup(c.stop)
	return c
}

func (c *cpeSpeaker) stop() {
	c.once.Do(func() {
		c.cancel()
		<-c.done
	})
}

func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitRoutes waits until the CPE holds exactly the routes given, prefix to
// endpoint.
func (c *cpeSpeaker) waitRoutes(t *testing.T, want map[string]string) {
	t.Helper()
	err := c.sink.Wait(within(t, 20*time.Second), func(rs map[netip.Prefix]routing.Route) bool {
		if len(rs) != len(want) {
			return false
		}
		for p, ep := range want {
			r, ok := rs[netip.MustParsePrefix(p)]
			if !ok || r.Endpoint.String() != ep {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("routes: want %v, have:\n%s", want, c.sink)
	}
}

// waitFor waits until cond holds, re-checking on every state change of the
// speaker and every change of its routes.
func (c *cpeSpeaker) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx := within(t, 20*time.Second)
	for !cond() {
		sctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-c.states:
			case <-sctx.Done():
			}
			cancel()
		}()
		c.sink.Wait(sctx, func(map[netip.Prefix]routing.Route) bool { return cond() })
		cancel()
		if ctx.Err() != nil && !cond() {
			t.Fatalf("%s: state %v stats %+v routes:\n%s", what, c.State(), c.Stats(), c.sink)
		}
	}
}

func cpe(id, group, overlay, ep string, prefixes ...string) CPE {
	c := CPE{ID: id, Group: group, Overlay: netip.MustParseAddr(overlay), Endpoint: netip.MustParseAddrPort(ep)}
	for _, p := range prefixes {
		c.Prefixes = append(c.Prefixes, netip.MustParsePrefix(p))
	}
	return c
}

func mustUp(t *testing.T, h *Hub, c CPE) {
	t.Helper()
	if err := h.CPEUp(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}

func stats(t *testing.T, h *Hub, group string) Stats {
	t.Helper()
	s, err := h.Stats(group)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// leakCheck fails the test if a goroutine of the hub or the speaker is
// still running when the test ends. Goroutines that were told to stop may
// still be on their way out (GoBGP's watcher calls the group's handler once
// more after the watch is cancelled; a speaker's runner closes its done
// channel as its last step), so the check looks again, with a growing
// pause, for up to 5 s: no event marks a goroutine's exit.
func leakCheck(t *testing.T) {
	t.Cleanup(func() {
		var leaked []string
		for pause, deadline := time.Millisecond, time.Now().Add(5*time.Second); ; pause *= 2 {
			leaked = leakedGoroutines()
			if len(leaked) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(pause)
		}
		for _, g := range leaked {
			t.Errorf("leaked goroutine:\n%s", g)
		}
	})
}

func leakedGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "pkg/server.(*BgpServer).Serve(") {
			continue // GoBGP v3's event loop never returns (see group.close)
		}
		if strings.Contains(g, "mpsa/bgp/rr.") && !strings.Contains(g, "leakCheck") && !strings.Contains(g, "leakedGoroutines") ||
			strings.Contains(g, "bgp/speaker.(*session)") {
			out = append(out, g)
		}
	}
	return out
}

func addr(i int) string { return fmt.Sprintf("127.0.0.%d", i) }

// waitStats waits until cond holds for a group's stats.
func waitStats(t *testing.T, h *Hub, group string, cond func(Stats) bool) {
	t.Helper()
	h.mu.Lock()
	g := h.groups[group]
	h.mu.Unlock()
	if err := g.wait(within(t, 20*time.Second), cond); err != nil {
		t.Fatalf("group %s stats %+v", group, g.snapshot())
	}
}
