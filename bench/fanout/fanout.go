package fanout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/hub"
	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/ike/iketest"
	"github.com/mpsa-vpn/mpsa/ike/wire"
	"github.com/mpsa-vpn/mpsa/internal/ops"
	"github.com/mpsa-vpn/mpsa/mpsa"
	"github.com/mpsa-vpn/mpsa/routing"
)

// MaxCPEsPerChild bounds the CPEs of one child process: each has two UDP
// sockets, and the file descriptor limit here is 20,000.
const MaxCPEsPerChild = 4000

// childEnv carries a child's job: "IKE NATT FIRST COUNT WINDOW".
const childEnv = "MPSA_FANOUT_CPES"

var hubID = auth.MustParseID("fqdn:hub.bench.example")

func cpeID(i int) auth.ID { return auth.MustParseID(fmt.Sprintf("fqdn:cpe%d.bench.example", i)) }
func cpePSK(i int) []byte { return []byte(fmt.Sprintf("bench psk of cpe %d 0123456789", i)) }

// Config returns the hub's configuration for n CPEs in one group.
func Config(n int, stateDir string) (*configs.Hub, error) {
	cfg := &configs.Hub{
		Identity: hubID,
		IKE:      configs.HubIKE{Listen: []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
		Groups: []configs.Group{{Name: "bench", Lifetime: 8 * time.Hour, RekeyMargin: 15 * time.Minute,
			Pool: configs.Pool{IPv4: netip.MustParsePrefix("100.64.0.0/16")}}},
		BGP:      configs.HubBGP{RouterID: netip.MustParseAddr("192.0.2.1")},
		StateDir: stateDir,
	}
	for i := range n {
		cfg.CPEs = append(cfg.CPEs, configs.HubCPE{Identity: cpeID(i), Group: "bench", PSK: configs.NewSecret(cpePSK(i)),
			Prefixes: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)}})
	}
	cfg.SetDefaults()
	return cfg, cfg.Validate()
}

// CPU is processor time (user + system) spent during one measurement: by
// this process (the hub, and the benchmark's waiting) and by the CPE
// processes.
type CPU struct {
	Hub, CPEs time.Duration
}

// Setup is a hub with its CPEs connected, ready for rekeys.
type Setup struct {
	Hub   *hub.Hub
	Clock *iketest.Clock
	N     int
	Heap  float64
	Took  time.Duration

	// Last is the processor time of the last Rekey or Anchor.
	Last CPU

	cancel   context.CancelFunc
	children []*exec.Cmd
	stdins   []io.Closer
	done     chan error
	dir      string
}

func settle() runtime.MemStats {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms
}

// Start builds the hub, starts the CPE processes and waits until every CPE
// acknowledged the first group SA.
func Start(ctx context.Context, n int) (*Setup, error) {
	dir, err := os.MkdirTemp("", "fanout")
	if err != nil {
		return nil, err
	}
	s := &Setup{N: n, dir: dir, done: make(chan error, 1)}
	cfg, err := Config(n, dir)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.Clock = iketest.NewClock(time.Now())
	h, err := hub.New(cfg, slog.New(slog.DiscardHandler),
		hub.WithDataplane(func(*routing.FIB, []netip.Prefix) (dataplane.Backend, error) { return &discard{}, nil }),
		hub.WithIKEPorts(0, 0), hub.WithClock(s.Clock), hub.WithoutStatusSocket(), hub.WithoutMetrics(),
		hub.WithShutdownTimeout(time.Millisecond), hub.WithoutBGP(),
		// Liveness checks and IKE rekeys are not part of the measurement.
		hub.WithIKEConfig(func(c *ike.Config) { c.DPDInterval, c.IKERekeyTime, c.ChildRekeyTime = 0, -1, -1 }))
	if err != nil {
		s.Close()
		return nil, err
	}
	s.Hub = h
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.done <- h.Run(runCtx) }()
	ikeAddrs, natt := h.IKEAddrs()

	before := settle()
	start := time.Now()
	for first := 0; first < n; first += MaxCPEsPerChild {
		count := min(MaxCPEsPerChild, n-first)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%v %v %d %d %d", childEnv, ikeAddrs[0], natt[0], first, count, 32))
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			s.Close()
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			s.Close()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			s.Close()
			return nil, err
		}
		s.children = append(s.children, cmd)
		s.stdins = append(s.stdins, stdin)
		go io.Copy(io.Discard, stdout)
	}
	spi, err := s.currentSPI()
	if err != nil {
		s.Close()
		return nil, err
	}
	if err := s.waitAcks(ctx, spi); err != nil {
		s.Close()
		return nil, err
	}
	s.Took = time.Since(start)
	after := settle()
	s.Heap = (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(n)
	return s, nil
}

func (s *Setup) currentSPI() (uint32, error) {
	g := s.Hub.Groups().Groups
	if len(g) != 1 || g[0].SPI == "" {
		return 0, errors.New("fanout: no group SA")
	}
	v, err := strconv.ParseUint(g[0].SPI, 16, 32)
	return uint32(v), err
}

// waitAcks waits until every CPE acknowledged the group SA spi.
func (s *Setup) waitAcks(ctx context.Context, spi uint32) error {
	for {
		ch := s.Hub.Changed()
		if s.Hub.PutAcks(spi) >= s.N {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("fanout: %d of %d CPEs acknowledged %08x: %w", s.Hub.PutAcks(spi), s.N, spi, ctx.Err())
		}
	}
}

// Rekey moves the key server's clock to the group's rekey time and returns
// how long it took until every CPE acknowledged the new group SA.
func (s *Setup) Rekey(ctx context.Context) (time.Duration, error) {
	g := s.Hub.Groups().Groups[0]
	cur := g.Epochs[len(g.Epochs)-1]
	known := s.Hub.PutAckCounts()
	due := cur.Expires.Add(-s.Hub.Config().Groups[0].RekeyMargin)
	cpu0 := s.cpu()
	start := time.Now()
	s.Clock.Advance(due.Sub(s.Clock.Now()))
	for {
		ch := s.Hub.Changed()
		for spi, n := range s.Hub.PutAckCounts() {
			if _, old := known[spi]; !old && n >= s.N {
				took := time.Since(start)
				s.Last = s.cpu().sub(cpu0)
				return took, nil
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, fmt.Errorf("fanout: rekey not acknowledged by all: %w", ctx.Err())
		}
	}
}

// Anchor runs one empty INFORMATIONAL exchange (a liveness check, RFC 7296
// §1.4) with every CPE at once, through the engine's asynchronous request as
// the hub sends MPSA_PUT, and returns how long until all answered.
func (s *Setup) Anchor(ctx context.Context) (time.Duration, error) {
	sas := s.Hub.IKE().Handles()
	if len(sas) != s.N {
		return 0, fmt.Errorf("fanout: %d IKE SAs, want %d", len(sas), s.N)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(sas))
	cpu0 := s.cpu()
	start := time.Now()
	for _, sa := range sas {
		wg.Add(1)
		sa.SendInformationalAsync(nil, func(err error) {
			if err != nil {
				errs <- err
			}
			wg.Done()
		})
	}
	all := make(chan struct{})
	go func() {
		wg.Wait()
		close(all)
	}()
	select {
	case <-all:
	case <-ctx.Done():
		return 0, fmt.Errorf("fanout: liveness check: %w", ctx.Err())
	}
	took := time.Since(start)
	s.Last = s.cpu().sub(cpu0)
	close(errs)
	if err := <-errs; err != nil {
		return 0, fmt.Errorf("fanout: liveness check: %w", err)
	}
	return took, nil
}

// cpu reads the processor time used so far by this process and by the CPE
// processes (/proc/PID/stat, in clock ticks of 10 ms).
func (s *Setup) cpu() CPU {
	var c CPU
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		c.Hub = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	for _, cmd := range s.children {
		if cmd.Process == nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
		if err != nil {
			continue
		}
		// Fields after the command name (which is in parentheses):
		// state is field 3, utime 14, stime 15.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		c.CPEs += time.Duration(ut+st) * 10 * time.Millisecond
	}
	return c
}

func (c CPU) sub(o CPU) CPU { return CPU{Hub: c.Hub - o.Hub, CPEs: c.CPEs - o.CPEs} }

// Close stops the CPEs and the hub.
func (s *Setup) Close() {
	for _, in := range s.stdins {
		in.Close()
	}
	for _, c := range s.children {
		c.Wait()
	}
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
	os.RemoveAll(s.dir)
}

// RunChildIfAsked runs the CPEs when this process is a child of Start, and
// exits; otherwise it returns. TestMain calls it first.
func RunChildIfAsked() {
	spec := os.Getenv(childEnv)
	if spec == "" {
		return
	}
	if err := runChild(spec); err != nil {
		fmt.Fprintln(os.Stderr, "fanout CPEs:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runChild(spec string) error {
	f := strings.Fields(spec)
	if len(f) != 5 {
		return fmt.Errorf("bad job %q", spec)
	}
	target, err1 := netip.ParseAddrPort(f[0])
	natt, err2 := netip.ParseAddrPort(f[1])
	first, err3 := strconv.Atoi(f[2])
	count, err4 := strconv.Atoi(f[3])
	window, err5 := strconv.Atoi(f[4])
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return err
	}
	var (
		mu       sync.Mutex
		managers []*ike.Manager
		wg       sync.WaitGroup
		sem      = make(chan struct{}, window)
		failed   error
	)
	defer func() {
		for _, m := range managers {
			m.Close()
		}
	}()
	for i := first; i < first+count; i++ {
		m, err := newCPE(i, natt.Port())
		if err != nil {
			return err
		}
		managers = append(managers, m)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			_, err := m.Initiate(ctx, ike.Connection{Remote: []netip.AddrPort{target}, RemoteID: hubID,
				VirtualIPs: []netip.Addr{netip.IPv4Unspecified()}})
			if err != nil {
				mu.Lock()
				failed = errors.Join(failed, fmt.Errorf("cpe %d: %w", i, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if failed != nil {
		return failed
	}
	fmt.Printf("up %d\n", count)
	// Hold the SAs until the parent closes our stdin.
	_, err := io.Copy(io.Discard, os.Stdin)
	return err
}

// newCPE is CPE i: an initiator with the MPSA Vendor ID and Sender-ID
// support whose Member checks and derives each MPSA_PUT.
func newCPE(i int, nattPort uint16) (*ike.Manager, error) {
	member, err := mpsa.NewMember(mpsa.MemberConfig{Tunnel: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	m, err := ike.New(ike.Config{
		Local: auth.Local{ID: cpeID(i), PSK: cpePSK(i)},
		Peers: auth.Static(auth.Rule{Pattern: auth.MustParsePattern(hubID.String()), Peer: &auth.Peer{PSK: cpePSK(i)}}),
		Policy: ike.Policy{
			VendorIDs:    mpsa.VendorIDs(),
			AuthNotifies: func(ike.PeerInfo, []*wire.Notify) []*wire.Notify { return ops.WireNotifies(mpsa.CPEAuthNotifies()) },
			Informational: func(sa *ike.SA, ns []*wire.Notify) {
				mu.Lock()
				defer mu.Unlock()
				for _, n := range ops.MPSANotifies(ns) {
					if changed, _ := member.Handle(n, time.Now()); changed {
						mpsa.WipeSAs(member.SAs())
					}
				}
			},
		},
		MOBIKE:       true,
		NATTPort:     nattPort,
		IKERekeyTime: -1, ChildRekeyTime: -1,
		Events: func(ev ike.Event) {
			if ev.Child != nil {
				ev.Child.In.Wipe()
				ev.Child.Out.Wipe()
			}
		},
	})
	if err != nil {
		return nil, err
	}
	for _, n := range []bool{false, true} {
		c, err := ike.ListenUDP("udp4", netip.MustParseAddrPort("127.0.0.1:0"))
		if err != nil {
			m.Close()
			return nil, err
		}
		m.AddConn(c, n)
	}
	return m, nil
}

// discard is a data plane that checks each State as every backend does and
// keeps nothing: the heap measured is the hub's (IKE SAs, MPSA state, its
// own record of the CHILD_SAs), not a backend's per-SA cipher state.
type discard struct{}

func (d *discard) Set(st *dataplane.State) error { return st.Validate() }

func (d *discard) Stats() dataplane.Stats { return dataplane.Stats{} }
func (d *discard) Close() error           { return nil }
