package cpe

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/internal/ops"
)

// testWriter sends log lines to t.Log until the test ends (then drops
// them, so a late line from a goroutine being stopped cannot panic).
type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

// fieldChecks are the log checkers of the current test, by name.
var logLevel = func() slog.Level {
	if os.Getenv("MPSA_TEST_LOG") == "debug" {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}()

// testLogger logs to t.Log with the name of the node as prefix, and holds
// every package's logs to docs/LOGGING.md's field names.
func testLogger(t testing.TB, name string) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	h := slog.NewTextHandler(w, &slog.HandlerOptions{Level: logLevel})
	fc := ops.NewFieldCheck(h)
	t.Cleanup(func() {
		if u := fc.UnknownIn("cpe"); len(u) > 0 {
			t.Errorf("%s: cpe logged fields not in docs/LOGGING.md: %v", name, u)
		}
	})
	return slog.New(fc).With("node", name)
}

// leakCheck fails the test when goroutines started during it are still
// running once its cleanups ran. Register it first.
func leakCheck(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(15 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("%d goroutines before, %d after the test:\n%s", before, n, buf)
				return
			}
			runtime.Gosched()
			time.Sleep(20 * time.Millisecond) // polling a count: nothing to wait on
		}
	})
}

func within(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitStatus waits until cond holds for c's status, failing the test with
// what was seen last after d.
func waitStatus(t testing.TB, c *CPE, d time.Duration, what string, cond func(*Status) bool) *Status {
	t.Helper()
	st, err := c.Wait(within(t, d), cond)
	if err != nil {
		t.Fatalf("%s: %v; last status: %+v", what, err, st)
	}
	return st
}

// waitRoute waits until c's FIB sends prefix to endpoint.
func waitRoute(t testing.TB, c *CPE, d time.Duration, prefix, endpoint string) {
	t.Helper()
	p := netip.MustParsePrefix(prefix)
	want := netip.MustParseAddrPort(endpoint)
	_, err := c.Wait(within(t, d), func(*Status) bool {
		nh, ok := c.FIB().Lookup(p.Addr())
		return ok && nh.Endpoint == want && nh.Tunnel == GroupTunnel
	})
	if err != nil {
		nh, ok := c.FIB().Lookup(p.Addr())
		t.Fatalf("route %s: want endpoint %s through the group SA, have %+v (found %v): %v", prefix, endpoint, nh, ok, err)
	}
}

const testPSKPrefix = "mpsa test psk for "

func testPSK(id string) []byte { return []byte(testPSKPrefix + id) }

// cpeConfig is a CPE configuration as a loader would produce it.
func cpeConfig(t testing.TB, id string, hubs []netip.AddrPort, lan ...string) *configs.CPE {
	t.Helper()
	c := &configs.CPE{
		Hubs:        hubs,
		HubIdentity: auth.MustParseID("fqdn:hub.example.net"),
		Identity:    auth.MustParseID(id),
		Credentials: configs.Credentials{PSK: configs.NewSecret(testPSK(id))},
		Reconnect:   configs.Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second},
		Status:      configs.StatusConfig{Socket: shortTempDir(t) + "/cpe.sock"},
	}
	for _, p := range lan {
		c.LAN.Prefixes = append(c.LAN.Prefixes, netip.MustParsePrefix(p))
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// shortTempDir is a temporary directory with a path short enough for a
// Unix socket.
func shortTempDir(t testing.TB) string {
	d, err := os.MkdirTemp("", "cpe")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// freeUDPPort returns a UDP port free on 127.0.0.1, below the kernel's
// ephemeral range (32768–60999) so that no socket bound to port 0 takes it
// while a test hub is restarting on it.
func freeUDPPort(t testing.TB) uint16 {
	for range 1000 {
		p := uint16(20000 + rand.IntN(10000))
		c, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		c.Close()
		return p
	}
	t.Fatal("no free UDP port in 20000-29999")
	return 0
}

// runCPE starts c.Run and stops it when the test ends.
func runCPE(t testing.TB, c *CPE) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	t.Cleanup(func() {
		c.Close()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}
