package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/mpsa-vpn/mpsa/bench/bgp/scenario"
	"github.com/mpsa-vpn/mpsa/bgp/speaker"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/routing"
)

// The reflector tests run alone in a network namespace of their own
// (testenv.RunInNetns): the CPEs dial from goroutines of their own, where
// Netns.Do cannot reach, and a port picked as free on the host's loopback
// could be taken by a test of another package before the daemon binds it.
// In the namespace every port is fixed. Each mode gets a reflector of its
// own (slot 0 counting, 1 speaker), both running until the test ends.
const (
	bgpPort  = 1179  // + slot: the reflector's BGP port
	grpcPort = 50051 // + slot: gobgpd's gRPC API
)

// startProc runs a reflector process until the test ends.
func startProc(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // also when the test binary is killed
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
}

// startGobgpd runs the stock gobgpd (Debian package gobgpd) as route
// reflector with dynamic neighbors over 127.1.0.0/16, as rr-gobgp is
// configured, and returns its address. The CPEs retry until it listens.
func startGobgpd(t *testing.T, slot int) string {
	t.Helper()
	bin := testenv.Binary(t, "gobgpd", "apt-get install gobgpd")
	port, api := bgpPort+slot, grpcPort+slot
	dir := t.TempDir()
	conf := filepath.Join(dir, "gobgpd.toml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`
[global.config]
  as = %d
  router-id = "10.255.255.1"
  port = %d
  local-address-list = ["127.0.0.1"]
[[peer-groups]]
  [peer-groups.config]
    peer-group-name = "cpe"
    peer-as = %[1]d
  [peer-groups.route-reflector.config]
    route-reflector-client = true
    route-reflector-cluster-id = "10.255.255.1"
  [[peer-groups.afi-safis]]
    [peer-groups.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[peer-groups.afi-safis]]
    [peer-groups.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
[[dynamic-neighbors]]
  [dynamic-neighbors.config]
    prefix = "127.1.0.0/16"
    peer-group = "cpe"
`, scenario.ASN, port)), 0o600); err != nil {
		t.Fatal(err)
	}
	startProc(t, bin, "-f", conf, "-t", "toml", "-l", "warn", "-p",
		"--api-hosts", fmt.Sprintf("127.0.0.1:%d", api), "--pprof-disable")
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// startBird runs BIRD 2 as route reflector, configured as bgpbench does.
func startBird(t *testing.T, slot int) string {
	t.Helper()
	bin := testenv.Binary(t, "bird", "apt-get install bird2")
	port := bgpPort + slot
	dir := t.TempDir()
	conf := filepath.Join(dir, "bird.conf")
	logConf := "log stderr { info, remote, warning, error, auth, fatal, bug };\n"
	if err := os.WriteFile(conf, []byte(logConf+scenario.BirdConfig(port)), 0o600); err != nil {
		t.Fatal(err)
	}
	startProc(t, bin, "-f", "-c", conf, "-s", filepath.Join(dir, "bird.ctl"), "-P", filepath.Join(dir, "bird.pid"))
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// runMesh runs n CPEs phased through full mesh and the incremental prefix.
func runMesh(t *testing.T, hub string, n, k int, count bool) *CPEs {
	t.Helper()
	// A connection that reaches gobgpd while it is still applying its
	// configuration can be left without an OPEN: give up on it soon.
	c, err := Start(Config{N: n, K: k, Hub: hub, Phased: true, Count: count, HoldTime: 30 * time.Second,
		OpenHoldTime: 3 * time.Second, MaxInFlight: 4})
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

// TestCountingAgainstReflectors runs counting CPEs against the stock
// gobgpd and BIRD 2 as route reflectors: every CPE ends up with exactly
// the other CPEs' prefixes set (its own never reflected back), the
// incremental one included, every
// announcement carried the Tunnel Encapsulation attribute, nothing was
// malformed or outside the plan; the speaker mode against the same
// reflector reaches the same route count.
// Each reflector runs in a namespace of its own, so it needs root.
func TestCountingAgainstReflectors(t *testing.T) {
	t.Run("gobgpd", func(t *testing.T) {
		testenv.Binary(t, "gobgpd", "apt-get install gobgpd")
		if testenv.RunInNetns(t) {
			return
		}
		testCounting(t, startGobgpd)
	})
	t.Run("bird", func(t *testing.T) {
		testenv.Binary(t, "bird", "apt-get install bird2")
		if testenv.RunInNetns(t) {
			return
		}
		testCounting(t, startBird)
	})
}

// testCounting runs each mode against a reflector of its own: a reflector
// tearing down the counting CPEs' sessions could drop the routes the
// speakers from the same addresses announce meanwhile.
func testCounting(t *testing.T, reflector func(t *testing.T, slot int) string) {
	const n, k = 12, 4
	c := runMesh(t, reflector(t, 0), n, k, true)
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
				got := cp.holds(o, j)
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

	s := runMesh(t, reflector(t, 1), n, k, false)
	if sp := s.Progress(); sp.Delivered != want || sp.Converged != n {
		t.Fatalf("speaker mode: %+v, want %d delivered", sp, want)
	}
}

// testCounter is CPE 0 of a counting run of n CPEs announcing k prefixes
// each, without a session: the tests hand it UPDATE bodies.
func testCounter(n, k int) *countCPE {
	c := &CPEs{cfg: Config{N: n, K: k}, stride: k + 1, target: (n - 1) * k, allDone: make(chan struct{})}
	return &countCPE{c: c, bitset: make([]uint64, (n*c.stride+63)/64)}
}

// TestCountWithdraw: withdrawals built by GoBGP's codec clear the bits
// their announcements set; repeats count once.
func TestCountWithdraw(t *testing.T) {
	cp := testCounter(4, 2)
	c := cp.c
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

// TestMsgBuffered: the session renews its read deadline only before a read
// that may wait on the socket, i.e. when the next message is not whole in
// the buffer yet.
func TestMsgBuffered(t *testing.T) {
	msgs, err := announcements(1, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	stream := append(append(append([]byte{}, keepaliveMsg...), msgs[0]...), msgs[1][:headerLen+1]...)
	r := bufio.NewReaderSize(bytes.NewReader(stream), maxMsgLen)
	buf := make([]byte, maxMsgLen)
	if msgBuffered(r) {
		t.Fatal("nothing read yet, but a message counts as buffered")
	}
	r.Peek(1) // fills the buffer with the whole stream
	for i, want := range []bool{true, true, false} {
		if got := msgBuffered(r); got != want {
			t.Fatalf("message %d: buffered %v, want %v", i, got, want)
		}
		if want {
			if _, err := readMsg(r, buf); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestCountUpdateAllocs: counting a received UPDATE allocates nothing.
func TestCountUpdateAllocs(t *testing.T) {
	cp := testCounter(8, 4)
	msgs, err := announcements(3, 0, 4)
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, m := range msgs {
			cp.update(m[headerLen:])
		}
	})
	if allocs != 0 || cp.routes.Load() != 4 || cp.updatesIn.Load() != 101*uint64(len(msgs)) {
		t.Fatalf("%v allocations per UPDATE; routes %d, updates %d", allocs, cp.routes.Load(), cp.updatesIn.Load())
	}
}

// BenchmarkCountUpdate: the counting CPE's work per received UPDATE (the
// IPv4 one of a CPE's four announcements: 2 prefixes).
func BenchmarkCountUpdate(b *testing.B) {
	cp := testCounter(8, 4)
	msgs, err := announcements(3, 0, 4)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		cp.update(msgs[0][headerLen:])
	}
}

// discard is a speaker.Sink that keeps nothing.
type discard struct{}

func (discard) Upsert(routing.Route) error              { return nil }
func (discard) Withdraw(netip.Prefix, netip.Addr) error { return nil }
func (discard) WithdrawPeer(netip.Addr)                 {}

// TestSameWireAsSpeaker: a counting CPE sends what bgp/speaker sends for
// the same CPE, octet for octet: the OPEN, the announcements with the
// End-of-RIB markers of a new session, and the incremental prefix. A
// reflector of ours, on a listener the test holds, records the speaker's
// messages.
func TestSameWireAsSpeaker(t *testing.T) {
	const i, k, hold = 7, 4, 90 * time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sp, err := speaker.New(speaker.Config{
		ASN: scenario.ASN, RouterID: scenario.CPEAddr(i),
		Dial: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", l.Addr().String())
		},
		Prefixes: scenario.Prefixes(i, k), Endpoint: scenario.Endpoint(i),
		Sink: discard{}, HoldTime: hold,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sp.Run(ctx) }()
	defer func() { cancel(); <-done }()

	conn, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReaderSize(conn, maxMsgLen)
	buf := make([]byte, maxMsgLen)
	next := func() []byte { // the speaker's next message other than a KEEPALIVE
		t.Helper()
		for {
			m, err := readMsg(r, buf)
			if err != nil {
				t.Fatal(err)
			}
			if m[18] != bgp.BGP_MSG_KEEPALIVE {
				return bytes.Clone(m)
			}
		}
	}
	if got, want := next(), mustSerialize(openMessage(scenario.CPEAddr(i), hold)); !bytes.Equal(got, want) {
		t.Fatalf("speaker's OPEN\n%x\ncounting CPE's\n%x", got, want)
	}
	hub := mustSerialize(openMessage(netip.MustParseAddr("10.255.255.1"), hold))
	if _, err := conn.Write(append(hub, keepaliveMsg...)); err != nil {
		t.Fatal(err)
	}
	expect := func(what string, want [][]byte) {
		t.Helper()
		for n, w := range want {
			if got := next(); !bytes.Equal(got, w) {
				t.Fatalf("%s, message %d: speaker sent\n%x\ncounting CPE sends\n%x", what, n, got, w)
			}
		}
	}
	ann, err := announcements(i, 0, k)
	if err != nil {
		t.Fatal(err)
	}
	expect("new session", append(ann, eorMsgs[:headerLen+4], eorMsgs[headerLen+4:]))
	sp.SetPrefixes(scenario.Prefixes(i, k+1))
	inc, err := announcements(i, k, k+1)
	if err != nil {
		t.Fatal(err)
	}
	expect("incremental prefix", inc)
}
