package speaker

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/bgp/speaker/speakertest"
	"github.com/mpsa-vpn/mpsa/routing"
)

// dialFrom returns a Dial function that connects from local to remote.
func dialFrom(local, remote string) func(context.Context) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	return func(ctx context.Context) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", remote)
	}
}

type runningSpeaker struct {
	*Speaker
	sink   *speakertest.Sink
	cancel context.CancelFunc
	done   chan error
	states chan State
	once   sync.Once
}

// start runs a speaker until the test ends and checks it leaves no
// goroutine behind.
var dbgLogger *slog.Logger

func start(t *testing.T, cfg Config) *runningSpeaker {
	t.Helper()
	if cfg.Logger == nil && dbgLogger != nil {
		cfg.Logger = dbgLogger.With("rid", cfg.RouterID.String())
	}
	sink := speakertest.NewSink()
	if cfg.Sink == nil {
		cfg.Sink = sink
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 20 * time.Millisecond
		cfg.MaxBackoff = 200 * time.Millisecond
	}
	states := make(chan State, 64)
	cfg.OnState = func(s State) {
		select {
		case states <- s:
		default:
		}
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rs := &runningSpeaker{Speaker: s, sink: sink, cancel: cancel, done: make(chan error, 1), states: states}
	go func() { rs.done <- s.Run(ctx) }()
	t.Cleanup(func() { rs.stop(t) })
	return rs
}

func (rs *runningSpeaker) stop(t *testing.T) {
	rs.once.Do(func() {
		rs.cancel()
		select {
		case <-rs.done:
		case <-time.After(10 * time.Second):
			t.Fatal("speaker did not stop")
		}
	})
}

// leakCheck, called first in a test, fails the test if a goroutine of this
// package is still running once every speaker of the test has stopped (Run
// promises none is left when it returns). Tests here do not run in parallel.
func leakCheck(t *testing.T) {
	t.Cleanup(func() {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "bgp/speaker.(*session)") || strings.Contains(g, "bgp/speaker.(*Speaker)") {
				t.Errorf("leaked goroutine:\n%s", g)
			}
		}
	})
}

func (rs *runningSpeaker) waitState(t *testing.T, want State, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for rs.State() != want {
		select {
		case <-rs.states:
		case <-deadline:
			t.Fatalf("state %v, want %v", rs.State(), want)
		}
	}
}

func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitRoutes waits until the sink holds exactly the prefixes given, with the
// endpoints given ("" = no endpoint).
func waitRoutes(t *testing.T, sink *speakertest.Sink, d time.Duration, want map[string]string) {
	t.Helper()
	err := sink.Wait(within(t, d), func(rs map[netip.Prefix]routing.Route) bool {
		if len(rs) != len(want) {
			return false
		}
		for p, ep := range want {
			r, ok := rs[netip.MustParsePrefix(p)]
			if !ok {
				return false
			}
			if ep == "" && r.Endpoint.IsValid() || ep != "" && r.Endpoint.String() != ep {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("routes: want %v, have:\n%s", want, sink)
	}
}

func pfx(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}
