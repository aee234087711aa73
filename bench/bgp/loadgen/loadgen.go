// Package loadgen simulates many CPEs against a route reflector, in one
// process: CPE i is a bgp/speaker (GoBGP's wire codec only) connecting from
// its own loopback address (scenario.CPEAddr), advertising K prefixes with
// its endpoint. It measures the time until every CPE holds every other
// CPE's prefixes (full mesh), and the time one new prefix takes to reach
// every other CPE (incremental).
//
// With Config.Count each CPE is instead a lean BGP session that announces
// what the speaker would and only counts what it receives (count.go), so
// that N=5,000 fits in memory.
package loadgen

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mpsa-vpn/mpsa/bench/bgp/scenario"
	"github.com/mpsa-vpn/mpsa/bgp/speaker"
	"github.com/mpsa-vpn/mpsa/routing"
)

// Config of a run.
type Config struct {
	N, K        int
	Hub         string   // route reflector address host:port
	Hubs        []string // several meshed reflectors: CPE i uses Hubs[i%len(Hubs)]
	MaxInFlight int      // concurrent connection attempts (128 if zero)
	HoldTime    time.Duration
	// OpenHoldTime bounds the wait for the reflector's OPEN (240 s if
	// zero, bgp/speaker's default).
	OpenHoldTime time.Duration
	// Phased connects every CPE without prefixes first; Advertise then
	// makes all of them announce at once. Without it every CPE announces as
	// soon as its session is up (a connect-and-advertise storm, as after a
	// hub restart).
	Phased bool
	// Count runs counting CPEs (count.go) instead of bgp/speakers: same
	// OPEN and announcements on the wire, received prefixes only counted
	// in a bitset, not stored.
	Count  bool
	Logger *slog.Logger
}

// CPEs is a running set of simulated CPEs.
type CPEs struct {
	cfg      Config
	start    time.Time // measurements are relative to it (moved by Advertise)
	speakers []*speaker.Speaker
	counters []*countCPE // Count mode
	stride   int         // bits per originating CPE in a counter's bitset (K+1)
	sem      chan struct{}
	up       atomic.Int64 // sessions up now (Count mode)
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	established atomic.Int64
	allUp       chan struct{}
	upAt        atomic.Int64 // ns since start when the last session came up

	target    int // routes each CPE must hold for the full mesh
	converged atomic.Int64
	allDone   chan struct{}
	doneAt    atomic.Int64

	incPrefix  atomic.Pointer[netip.Prefix]
	incArmed   atomic.Bool
	incLeft    atomic.Int64
	incDone    chan struct{}
	incStartNs atomic.Int64
	incDoneAt  atomic.Int64
}

// sink counts, per CPE, when it reached the full mesh, and watches for the
// incremental prefix. It stores nothing: the speaker's own RIB counts routes.
type sink struct {
	c       *CPEs
	sp      *speaker.Speaker
	done    atomic.Bool
	seenInc atomic.Bool
}

func (s *sink) Upsert(r routing.Route) error {
	c := s.c
	if !s.done.Load() && s.sp.Routes() >= c.target && s.done.CompareAndSwap(false, true) {
		c.cpeConverged()
	}
	if p := c.incPrefix.Load(); p != nil && r.Prefix == *p && s.seenInc.CompareAndSwap(false, true) {
		c.cpeGotIncremental()
	}
	return nil
}

// cpeUp counts a CPE whose session came up for the first time; the last
// one stamps upAt and closes allUp.
func (c *CPEs) cpeUp() {
	if c.established.Add(1) == int64(c.cfg.N) {
		c.upAt.Store(int64(time.Since(c.start)))
		close(c.allUp)
	}
}

// cpeConverged counts a CPE that holds every other CPE's prefixes; the
// last one stamps doneAt and closes allDone.
func (c *CPEs) cpeConverged() {
	if c.converged.Add(1) == int64(c.cfg.N) {
		c.doneAt.Store(int64(time.Since(c.start)))
		close(c.allDone)
	}
}

// cpeGotIncremental counts a CPE that received the incremental prefix; the
// last one stamps incDoneAt and closes incDone.
func (c *CPEs) cpeGotIncremental() {
	if c.incLeft.Add(-1) == 0 {
		c.incDoneAt.Store(int64(time.Since(c.start)))
		close(c.incDone)
	}
}

func (s *sink) Withdraw(netip.Prefix, netip.Addr) error { return nil }
func (s *sink) WithdrawPeer(netip.Addr)                 {}

// Start starts n CPE speakers; they connect at once (at most MaxInFlight
// connection attempts at a time).
func Start(cfg Config) (*CPEs, error) {
	if cfg.N < 2 || cfg.N > scenario.MaxCPEs || cfg.K < 1 || cfg.K > 15 {
		return nil, fmt.Errorf("loadgen: N=%d K=%d out of range", cfg.N, cfg.K)
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = 128
	}
	if cfg.HoldTime == 0 {
		cfg.HoldTime = 240 * time.Second
	}
	if cfg.OpenHoldTime == 0 {
		cfg.OpenHoldTime = speaker.DefaultOpenHoldTime
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &CPEs{
		cfg: cfg, allUp: make(chan struct{}), allDone: make(chan struct{}), incDone: make(chan struct{}),
		target: (cfg.N - 1) * cfg.K,
	}
	c.sem = make(chan struct{}, cfg.MaxInFlight)
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	if cfg.Count {
		return c.startCounting(ctx)
	}
	for i := range cfg.N {
		sk := &sink{c: c}
		var once sync.Once
		sp, err := speaker.New(speaker.Config{
			ASN: scenario.ASN, RouterID: scenario.CPEAddr(i),
			Dial:     func(ctx context.Context) (net.Conn, error) { return c.dial(ctx, i) },
			Prefixes: advertised(cfg, i), Endpoint: scenario.Endpoint(i),
			Sink: sk, HoldTime: cfg.HoldTime, OpenHoldTime: cfg.OpenHoldTime, MinBackoff: 500 * time.Millisecond, MaxBackoff: 5 * time.Second,
			OnState: func(st speaker.State) {
				if st == speaker.StateEstablished {
					once.Do(c.cpeUp)
				}
			},
			Logger: cfg.Logger,
		})
		if err != nil {
			cancel()
			return nil, err
		}
		sk.sp = sp
		c.speakers = append(c.speakers, sp)
	}
	c.start = time.Now()
	for _, sp := range c.speakers {
		c.wg.Go(func() { sp.Run(ctx) })
	}
	return c, nil
}

// dial connects CPE i from its own address to its reflector, with at most
// MaxInFlight connection attempts of all CPEs at a time.
func (c *CPEs) dial(ctx context.Context, i int) (net.Conn, error) {
	hub := c.cfg.Hub
	if len(c.cfg.Hubs) > 0 {
		hub = c.cfg.Hubs[i%len(c.cfg.Hubs)]
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: scenario.CPEAddr(i).AsSlice()}, Timeout: 30 * time.Second}
	c.sem <- struct{}{}
	defer func() { <-c.sem }()
	return d.DialContext(ctx, "tcp", hub)
}

func (c *CPEs) startCounting(ctx context.Context) (*CPEs, error) {
	c.stride = c.cfg.K + 1
	for i := range c.cfg.N {
		cp, err := newCountCPE(c, i)
		if err != nil {
			c.cancel()
			return nil, err
		}
		c.counters = append(c.counters, cp)
	}
	c.start = time.Now()
	for _, cp := range c.counters {
		c.wg.Go(func() { cp.run(ctx) })
	}
	return c, nil
}

func advertised(cfg Config, i int) []netip.Prefix {
	if cfg.Phased {
		return nil
	}
	return scenario.Prefixes(i, cfg.K)
}

// WaitEstablished waits until every session is up and returns how long
// that took.
func (c *CPEs) WaitEstablished(ctx context.Context) (time.Duration, error) {
	select {
	case <-c.allUp:
		return time.Duration(c.upAt.Load()), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("loadgen: %d/%d established: %w", c.established.Load(), c.cfg.N, ctx.Err())
	}
}

// Advertise makes every CPE announce its prefixes now (Phased mode); the
// full-mesh time is measured from here.
func (c *CPEs) Advertise() {
	c.start = time.Now()
	for _, cp := range c.counters {
		cp.setAdvertised(c.cfg.K)
	}
	for i, sp := range c.speakers {
		sp.SetPrefixes(scenario.Prefixes(i, c.cfg.K))
	}
}

// Result of a run.
type Result struct {
	AllEstablished time.Duration // until every session was up
	FullMesh       time.Duration // until every CPE held (N-1)*K routes
	Incremental    time.Duration // one new prefix to all N-1 others
}

// WaitFullMesh waits for every CPE to hold every other CPE's routes.
func (c *CPEs) WaitFullMesh(ctx context.Context) (up, mesh time.Duration, err error) {
	select {
	case <-c.allDone:
	case <-ctx.Done():
		return 0, 0, fmt.Errorf("loadgen: full mesh not reached: %d/%d established, %d/%d converged: %w",
			c.established.Load(), c.cfg.N, c.converged.Load(), c.cfg.N, ctx.Err())
	}
	select {
	case <-c.allUp:
	default:
	}
	return time.Duration(c.upAt.Load()), time.Duration(c.doneAt.Load()), nil
}

// Incremental makes CPE 0 announce one more prefix and waits until every
// other CPE has it.
func (c *CPEs) Incremental(ctx context.Context) (time.Duration, error) {
	p := scenario.Prefix(0, c.cfg.K)
	c.incLeft.Store(int64(c.cfg.N - 1))
	c.incPrefix.Store(&p)
	c.incArmed.Store(true)
	t0 := time.Since(c.start)
	if c.cfg.Count {
		c.counters[0].setAdvertised(c.cfg.K + 1)
	} else {
		c.speakers[0].SetPrefixes(scenario.Prefixes(0, c.cfg.K+1))
	}
	select {
	case <-c.incDone:
		return time.Duration(c.incDoneAt.Load()) - t0, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("loadgen: incremental prefix reached only %d of %d: %w",
			int64(c.cfg.N-1)-c.incLeft.Load(), c.cfg.N-1, ctx.Err())
	}
}

// UpdatesIn is the number of UPDATE messages the CPEs received so far.
func (c *CPEs) UpdatesIn() uint64 { return c.Progress().UpdatesIn }

// Progress is a snapshot of a run, for progress reports.
type Progress struct {
	Established int64  // CPEs whose session came up (at least once)
	Converged   int64  // CPEs that held every other CPE's prefixes
	Delivered   int64  // routes the CPEs hold now, summed
	UpdatesIn   uint64 // UPDATEs received
	// Count mode only:
	Up          int64  // sessions up now
	Lost        uint64 // sessions that ended during the run
	EndOfRIB    uint64 // End-of-RIB markers received
	Malformed   uint64 // UPDATEs that did not walk (dropped)
	Foreign     uint64 // prefixes outside the scenario's plan (ignored)
	NoEncap     uint64 // announcing UPDATEs without the Tunnel Encapsulation attribute
	OtherFamily uint64 // UPDATEs with an MP attribute of another family
}

// Progress sums up the run so far. It may be called at any time.
func (c *CPEs) Progress() Progress {
	p := Progress{Established: c.established.Load(), Converged: c.converged.Load(), Up: c.up.Load()}
	for _, sp := range c.speakers {
		p.Delivered += int64(sp.Routes())
		p.UpdatesIn += sp.Stats().UpdatesIn
	}
	for _, cp := range c.counters {
		p.Delivered += cp.routes.Load()
		p.UpdatesIn += cp.updatesIn.Load()
		p.Lost += cp.lost.Load()
		p.EndOfRIB += cp.eor.Load()
		p.Malformed += cp.malformed.Load()
		p.Foreign += cp.foreign.Load()
		p.NoEncap += cp.noEncap.Load()
		p.OtherFamily += cp.otherFamily.Load()
	}
	return p
}

// Stop ends every speaker.
func (c *CPEs) Stop() {
	c.cancel()
	c.wg.Wait()
}
