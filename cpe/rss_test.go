package cpe

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/bgp/speaker"
	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/firmware"
	"github.com/mpsa-vpn/mpsa/internal/ops"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/routing"
)

// rssRoutes is how many routes the CPE learns in BenchmarkCPEMemory (issue 7).
const rssRoutes = 10000

// BenchmarkCPEMemory measures the resident memory of the mpsa-cpe process
// (built as firmware/ builds it, run in a namespace) with an established
// group SA and rssRoutes routes learned through a real BGP session: a
// feeder speaker announces them to gobgpd in the hub namespace, which
// reflects them to the CPE inside its CHILD_SA. The anchor, measured in
// the same run, is the same process before the routes arrive; BIRD, as an
// iBGP client of the same reflector holding the same routes, is a second
// one. The RSS compared with issue 7's 15 MiB is read after a few seconds
// of iperf3 traffic both ways through the CPE's CHILD_SA, so that the data
// plane's buffers are resident as on a working CPE; the figure before the
// traffic is reported too.
//
//	go test -run '^$' -bench CPEMemory -benchtime 1x ./cpe
func BenchmarkCPEMemory(b *testing.B) {
	testenv.Root(b)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		testenv.Skip(b, "no /dev/net/tun")
	}
	testenv.Binary(b, "gobgpd", "apt-get install gobgpd")
	bin := buildCPE(b)
	hubNS, sites := topology(b, 1)
	s := sites[0]
	id := "fqdn:cpe1.example.net"
	hubOpts := hubOptions{ns: hubNS, outer: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.254:500")},
		overlay: netip.MustParseAddr("100.64.0.1"), psk: map[string][]byte{id: testPSK(id)}}
	newTestHub(b, hubOpts)
	startGoBGP(b, hubNS, hubOpts.overlay, configs.DefaultASN)

	dir := shortTempDir(b)
	sock := filepath.Join(dir, "cpe.sock")
	conf := filepath.Join(dir, "cpe.yaml")
	text := fmt.Sprintf(`hubs: [192.0.2.254]
hub_identity: fqdn:hub.example.net
identity: %s
credentials: {psk: %q}
lan: {interface: lan0, prefixes: [10.1.0.0/24]}
wan: {interface: eth0}
dataplane: {backend: userspace}
status: {socket: %s}
log: {level: warn}
`, id, testPSK(id), sock)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		b.Fatal(err)
	}
	var out bytes.Buffer
	// MPSA_BENCH_CPE_ENV adds environment variables (GOGC=50, ...).
	cmd := s.cpe.Command(context.Background(), "env", append(strings.Fields(os.Getenv("MPSA_BENCH_CPE_ENV")), bin, "-config", conf)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if b.Failed() {
			b.Logf("mpsa-cpe output:\n%s", out.String())
		}
	})

	// Connected: CHILD_SA, group SA, BGP session up, no routes yet.
	st := pollStatus(b, sock, 60*time.Second, func(st *Status) bool {
		return st.Tunnel.Up && len(st.Group.SAs) == 1 && st.BGP.Established
	})
	baseRSS, _ := procMiB(b, cmd.Process.Pid)

	// The feeder: a speaker in the hub namespace, another client of the
	// reflector, announcing rssRoutes IPv4 /24s.
	hubNS.MustIP("addr", "add", "100.64.0.250/32", "dev", "lo")
	prefixes := make([]netip.Prefix, rssRoutes)
	for i := range prefixes {
		prefixes[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{44, byte(i >> 8), byte(i), 0}), 24)
	}
	feeder, err := speaker.New(speaker.Config{
		ASN: configs.DefaultASN, RouterID: netip.MustParseAddr("100.64.0.250"),
		Dial: func(ctx context.Context) (net.Conn, error) {
			var c net.Conn
			err := hubNS.Do(func() error {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("100.64.0.250")}}
				var err error
				c, err = d.DialContext(ctx, "tcp", "100.64.0.1:179")
				return err
			})
			return c, err
		},
		Prefixes: prefixes, Endpoint: netip.MustParseAddrPort("192.0.2.99:0"), Sink: discardSink{},
		Logger: testLogger(b, "feeder"),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); feeder.Run(ctx) }()
	b.Cleanup(func() { cancel(); wg.Wait() })

	t0 := time.Now()
	st = pollStatus(b, sock, 3*time.Minute, func(st *Status) bool { return st.BGP.Routes >= rssRoutes })
	learn := time.Since(t0)
	idleRSS, _ := procMiB(b, cmd.Process.Pid)

	// Traffic through the data plane, both ways, so that the buffer pools
	// are resident as on a working CPE: iperf3 between the hub's overlay
	// address and the CPE's, through the CHILD_SA (ESP both ways).
	secs := envInt("MPSA_BENCH_SECONDS", 5)
	bits := iperf3(b, s.cpe, hubNS, st.Tunnel.Overlay.String(), secs, "--bidir")
	rss, hwm := procMiB(b, cmd.Process.Pid)
	b.ReportMetric(rss, "MiB-rss")
	b.ReportMetric(hwm, "MiB-hwm")
	b.ReportMetric(idleRSS, "MiB-rss-no-traffic")
	b.ReportMetric(baseRSS, "MiB-rss-before-routes")
	b.ReportMetric(learn.Seconds(), "s-to-learn")
	b.Logf("mpsa-cpe: %d routes (%d FIB prefixes), group SA %s; RSS %.1f MiB (peak %.1f) after %d s of traffic through the CHILD_SA (%.2f Gbit/s both ways), %.1f MiB before the traffic, %.1f MiB before the routes; learned in %v",
		st.BGP.Routes, st.FIB.Prefixes4, st.Group.SAs[0].SPI, rss, hwm, secs, bits/1e9, idleRSS, baseRSS, learn.Round(time.Millisecond))
	if rss > 15 {
		b.Errorf("RSS %.1f MiB with %d routes and traffic: over issue 7's 15 MiB", rss, rssRoutes)
	}

	if birdRSS, ok := birdAnchor(b, hubNS); ok {
		b.ReportMetric(birdRSS, "MiB-rss-bird")
		b.Logf("anchor: BIRD holding the same %d routes: RSS %.1f MiB", rssRoutes, birdRSS)
	}
	// A short LAN-to-LAN check would need a second CPE; the data plane is
	// exercised by TestNetns.
}

// discardSink takes the feeder's learned routes (none: it is the only
// other client) and keeps nothing.
type discardSink struct{}

func (discardSink) Upsert(routing.Route) error              { return nil }
func (discardSink) Withdraw(netip.Prefix, netip.Addr) error { return nil }
func (discardSink) WithdrawPeer(netip.Addr)                 {}

// buildCPE builds cmd/mpsa-cpe as firmware/ does (stripped, trimmed, cold
// packages without inlining: firmware.ColdGCFlags).
// MPSA_BENCH_BUILD_FLAGS adds go build flags (variants: -tags, -overlay).
func buildCPE(tb testing.TB) string {
	out := filepath.Join(tb.TempDir(), "mpsa-cpe")
	args := append([]string{"build", "-trimpath", "-ldflags", "-s -w", "-o", out}, firmware.ColdGCFlags()...)
	args = append(args, strings.Fields(os.Getenv("MPSA_BENCH_BUILD_FLAGS"))...)
	cmd := exec.Command("go", append(args, "../cmd/mpsa-cpe")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

// pollStatus reads the status of a CPE process through its socket until
// cond holds (another process: polled).
func pollStatus(tb testing.TB, sock string, d time.Duration, cond func(*Status) bool) *Status {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		var st Status
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := ops.Query(ctx, sock, ops.Request{Command: "overview", Format: ops.FormatJSON})
		cancel()
		if err == nil {
			err = json.Unmarshal(resp.Data, &st)
		}
		if err == nil && cond(&st) {
			return &st
		}
		if time.Now().After(deadline) {
			tb.Fatalf("CPE status: %v %+v", err, st)
		}
		time.Sleep(200 * time.Millisecond) // another process: polled
	}
}

// procMiB returns VmRSS and VmHWM of a process in MiB, and logs how the
// RSS splits into anonymous memory and file pages (the binary's text).
func procMiB(tb testing.TB, pid int) (rss, hwm float64) {
	var anon, file float64
	defer func() { tb.Logf("pid %d: RSS %.1f MiB = %.1f anonymous + %.1f file-backed", pid, rss, anon, file) }()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = v / 1024
		case "VmHWM:":
			hwm = v / 1024
		case "RssAnon:":
			anon = v / 1024
		case "RssFile:":
			file = v / 1024
		}
	}
	return rss, hwm
}

// birdAnchor runs BIRD 2 in the hub namespace as another client of the
// reflector, waits until it holds the feeder's routes and returns its RSS.
func birdAnchor(tb testing.TB, ns *testenv.Netns) (float64, bool) {
	if _, err := exec.LookPath("bird"); err != nil {
		tb.Logf("no BIRD anchor: %v", err)
		return 0, false
	}
	ns.MustIP("addr", "add", "100.64.0.251/32", "dev", "lo")
	dir := shortTempDir(tb)
	conf := filepath.Join(dir, "bird.conf")
	ctl := filepath.Join(dir, "bird.ctl")
	text := fmt.Sprintf(`router id 100.64.0.251;
protocol device {}
ipv4 table t4;
protocol bgp hub {
  local 100.64.0.251 port 1179 as %[1]d;
  neighbor 100.64.0.1 as %[1]d;
  ipv4 { table t4; import all; export none; };
}
`, configs.DefaultASN)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := ns.Command(context.Background(), "bird", "-f", "-c", conf, "-s", ctl)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(2 * time.Minute)
	for {
		o, _ := ns.Run("birdc", "-s", ctl, "show", "route", "table", "t4", "count")
		var n int
		for _, l := range strings.Split(o, "\n") {
			if strings.Contains(l, "of") && strings.Contains(l, "routes") {
				fmt.Sscanf(strings.TrimSpace(l), "%d", &n)
			}
		}
		if n >= rssRoutes {
			break
		}
		if time.Now().After(deadline) {
			p, _ := ns.Run("birdc", "-s", ctl, "show", "protocols", "all", "hub")
			tb.Logf("BIRD holds %d routes: %s\n%s\n%s", n, o, p, out.String())
			return 0, false
		}
		time.Sleep(200 * time.Millisecond) // another process: polled
	}
	rss, _ := procMiB(tb, cmd.Process.Pid)
	return rss, true
}
