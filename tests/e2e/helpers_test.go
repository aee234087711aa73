package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/lab"
)

// Deadlines. The machine may be busy: these are generous, the checks that
// matter (5 s, 10 s) are measured, not waited for.
const (
	convergeTimeout = 90 * time.Second
	testTimeout     = 5 * time.Minute
)

// bins holds the daemons built once for the whole run.
var bins struct {
	once     sync.Once
	dir      string
	hub, cpe string
	err      error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// binaries builds mpsa-hub and mpsa-cpe from this source tree (once).
func binaries(t *testing.T) (hub, cpe string) {
	t.Helper()
	bins.once.Do(func() {
		root, err := lab.ModuleRoot(".")
		if err != nil {
			bins.err = err
			return
		}
		if bins.dir, err = os.MkdirTemp("", "mpsa-e2e-bin"); err != nil {
			bins.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		bins.hub, bins.cpe, bins.err = lab.Build(ctx, root, bins.dir)
	})
	if bins.err != nil {
		t.Fatalf("building the daemons: %v", bins.err)
	}
	return bins.hub, bins.cpe
}

var labCount atomic.Uint32

// testLog writes the lab's progress lines to the test log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newLab builds a lab for the test (root only), torn down when the test
// ends whatever happens; on failure the daemons' last log lines are
// printed first.
func newLab(t *testing.T, cfg lab.Config) *lab.Lab {
	t.Helper()
	testenv.Root(t)
	if err := lab.Check(); err != nil {
		testenv.Skip(t, err.Error())
	}
	cfg.HubBin, cfg.CPEBin = binaries(t)
	cfg.Name = fmt.Sprintf("e%dx%d", os.Getpid()%100000, labCount.Add(1))
	dir, err := os.MkdirTemp("", "mlab") // short: Unix socket paths
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dir = dir
	cfg.Progress = testLog{t}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "debug"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := lab.New(ctx, cfg)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range l.Daemons() {
				if l.LogOffset(n) == 0 {
					continue // never started
				}
				t.Logf("--- %s log: the last lines above debug level ---\n%s", n, logTail(l, n, 30))
			}
		}
		dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
		defer dcancel()
		if err := l.Down(dctx); err != nil {
			t.Errorf("lab down: %v", err)
		}
		if left := l.Namespaces(); len(left) > 0 {
			t.Errorf("namespaces left behind: %v", left)
		}
	})
	return l
}

// testContext is the test's context with the per-test deadline.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// converge waits for the lab to converge or fails the test.
func converge(t *testing.T, ctx context.Context, l *lab.Lab) *lab.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, convergeTimeout)
	defer cancel()
	start := time.Now()
	s, err := l.WaitConverged(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("converged after %v: epoch %d, SPI %s", time.Since(start).Round(time.Millisecond), s.Group().Epoch, s.Group().SPI)
	return s
}

// pingAll runs the ping matrix and fails the test for every pair that lost
// a ping.
func pingAll(t *testing.T, ctx context.Context, l *lab.Lab, count int) []lab.PingResult {
	t.Helper()
	res := l.PingMatrix(ctx, count)
	if len(res) == 0 {
		t.Fatal("ping matrix is empty")
	}
	for _, r := range res {
		if !r.OK() {
			t.Errorf("%s -> %s (%v): %v %v", r.From, r.To, r.Dst, r.Stats, r.Err)
		}
	}
	return res
}

// fingerprint is what must not change on a CPE that a change elsewhere does
// not concern: its IKE SA, CHILD_SA and group SA SPIs, and its BGP session
// (a reset would count another establishment).
type fingerprint struct {
	IKE, Child, Group string
	BGPSessions       uint64
	BGPState          string
}

func fingerprintOf(t *testing.T, s *lab.Snapshot, name string) fingerprint {
	t.Helper()
	st := s.CPEs[name]
	if st == nil || len(st.Status.IKE) == 0 || len(st.Status.IKE[0].Children) == 0 {
		t.Fatalf("%s has no IKE SA with a CHILD_SA", name)
	}
	ike := st.Status.IKE[0]
	var groups []string
	for _, g := range st.Status.Group.SAs {
		groups = append(groups, g.SPI)
	}
	return fingerprint{
		IKE:         ike.SPIi + "_" + ike.SPIr,
		Child:       ike.Children[0].InSPI + "/" + ike.Children[0].OutSPI,
		Group:       strings.Join(groups, ","),
		BGPSessions: st.Status.BGP.Stats.Established,
		BGPState:    st.Status.BGP.State,
	}
}

// waitFor polls cond (through the lab's snapshots) until it holds.
func waitFor(t *testing.T, ctx context.Context, l *lab.Lab, d time.Duration, what string, cond func(*lab.Snapshot) bool) *lab.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	s, err := l.Wait(ctx, what, cond)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// iperf runs an iperf3 client against a server on another LAN host; stop
// ends the client (SIGINT, so that it prints its report) and returns its
// output.
type iperf struct {
	stop func() (string, error)
}

// startIperf starts the server in serverNS and, once it listens, a client
// in clientNS sending to dst at rate until stop.
func startIperf(t *testing.T, ctx context.Context, serverNS, clientNS, dst, rate string) *iperf {
	t.Helper()
	testenv.Binary(t, "iperf3", "apt-get install iperf3")
	srv := lab.Command(ctx, serverNS, "iperf3", "-s", "-1", "--forceflush")
	var srvOut syncBuffer
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := srvOut.WaitFor(wctx, "Server listening"); err != nil {
		t.Fatalf("iperf3 server did not start: %v: %s", err, srvOut.String())
	}
	cctx, cancel := context.WithCancel(ctx)
	cl := lab.Command(cctx, clientNS, "iperf3", "-c", dst, "-t", "600", "-b", rate, "-i", "0", "-f", "m", "--forceflush")
	var clOut syncBuffer
	cl.Stdout, cl.Stderr = &clOut, &clOut
	cl.Cancel = func() error { return cl.Process.Signal(os.Interrupt) } // iperf3 prints its report on SIGINT
	cl.WaitDelay = 10 * time.Second
	if err := cl.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	var once sync.Once
	var out string
	var werr error
	stop := func() (string, error) {
		once.Do(func() {
			cancel()
			werr = cl.Wait()
			out = clOut.String()
		})
		return out, werr
	}
	t.Cleanup(func() { stop() })
	return &iperf{stop: stop}
}

// syncBuffer is a bytes.Buffer that one goroutine writes while another
// reads or waits for some text.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{} // closed at the next Write
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// WaitFor waits until the text written so far contains sub.
func (s *syncBuffer) WaitFor(ctx context.Context, sub string) error {
	for {
		s.mu.Lock()
		if strings.Contains(s.b.String(), sub) {
			s.mu.Unlock()
			return nil
		}
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// pinger is a continuous ping from one CPE's LAN host to another's.
type pinger struct {
	name string
	stop func() lab.PingStats
}

// startPingers starts a continuous IPv4 ping for each (from, to) pair, one
// request per interval, once a first reply came back; stop ends it and
// returns its stats after the last replies are in (or timed out).
func startPingers(t *testing.T, ctx context.Context, interval time.Duration, pairs ...[2]lab.CPE) []*pinger {
	t.Helper()
	var out []*pinger
	for _, pr := range pairs {
		from, to := pr[0], pr[1]
		dst := to.Host(lab.IPv4)
		if err := lab.PingUntil(ctx, from.HostNS, dst, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		p, err := lab.NewPinger(from.HostNS, dst)
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- p.Run(rctx, interval) }()
		var once sync.Once
		var st lab.PingStats
		stop := func() lab.PingStats {
			once.Do(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("ping %s -> %s: %v", from.Name, to.Name, err)
				}
				st = p.Settle(context.WithoutCancel(ctx), lab.PingTimeout)
				p.Close()
			})
			return st
		}
		t.Cleanup(func() { stop() })
		out = append(out, &pinger{name: fmt.Sprintf("ping %s -> %s every %v", from.Name, to.Name, interval), stop: stop})
	}
	return out
}

// waitUntil waits for a moment on the wall clock (a certificate's expiry),
// or until ctx ends.
func waitUntil(ctx context.Context, at time.Time) {
	t := time.NewTimer(time.Until(at))
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// iperfSummary keeps iperf3's final sender line (and errors).
func iperfSummary(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "sender") || strings.Contains(l, "error") { // the receiver line is empty after SIGINT
			keep = append(keep, strings.TrimSpace(l))
		}
	}
	return strings.Join(keep, "\n")
}

// logTail returns the last n log lines of a daemon above debug level (and
// whatever is not JSON: a panic).
func logTail(l *lab.Lab, name string, n int) string {
	var keep []string
	for _, line := range strings.Split(l.LogTail(name, 2000), "\n") {
		if r, err := lab.ParseLogLine([]byte(line)); err == nil && r.Level == "DEBUG" {
			continue
		}
		keep = append(keep, line)
	}
	if len(keep) > n {
		keep = keep[len(keep)-n:]
	}
	return strings.Join(keep, "\n")
}

// iperfSent returns the megabytes iperf3's final sender line reports.
func iperfSent(out string) float64 {
	scale := map[string]float64{"Bytes": 1e-6, "KBytes": 1e-3, "MBytes": 1, "GBytes": 1e3}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) > 6 && f[len(f)-1] == "sender" && scale[f[5]] != 0 {
			var v float64
			fmt.Sscanf(f[4], "%g", &v)
			return v * scale[f[5]]
		}
	}
	return 0
}
