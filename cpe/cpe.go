package cpe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/ike/keylog"
	"github.com/mpsa-vpn/mpsa/mpsa"
	"github.com/mpsa-vpn/mpsa/routing"
)

// Tunnels the CPE gives routing: the group SA carries the routes learned
// over BGP, the CHILD_SA the route to the hub's overlay address.
const (
	GroupTunnel routing.Tunnel = 1
	HubTunnel   routing.Tunnel = 2
)

// Implementation defaults. The IKE timers are shorter than the engine's
// (strongSwan's) defaults: a CPE has one peer, and the sooner it notices a
// dead hub the sooner it tries the next hub address or reconnects.
const (
	DefaultDPDInterval       = 10 * time.Second
	DefaultRetransmitTimeout = 1 * time.Second
	DefaultRetransmitBase    = 1.5
	DefaultRetransmitTries   = 3
	// DefaultShutdownTimeout bounds the IKE DELETE sent to the hub when
	// the CPE stops.
	DefaultShutdownTimeout = 3 * time.Second
	// DefaultChildReplayWindow is the CHILD_SA's anti-replay window.
	DefaultChildReplayWindow = 128
	// DefaultDialTimeout bounds one TCP connect to the hub's BGP port.
	DefaultDialTimeout = 10 * time.Second
	// DefaultMOBIKETimeout bounds one UPDATE_SA_ADDRESSES exchange.
	DefaultMOBIKETimeout = 30 * time.Second
	// DefaultMemoryLimit is the Go runtime's soft memory limit mpsa-cpe
	// sets unless GOMEMLIMIT says otherwise: a CPE has 64–128 MB of RAM,
	// and without it the heap may double before a collection
	// (docs/BENCHMARKS.md, "cpe").
	DefaultMemoryLimit = 12 << 20
)

// ErrRunning is returned by Run when the CPE already runs or ran.
var ErrRunning = errors.New("cpe: Run called twice")

// CPE is one mpsa-cpe instance. Create it with New, start it with Run.
type CPE struct {
	base   *slog.Logger // as given to New; packages add their component
	log    *slog.Logger
	o      options
	clock  ike.Clock
	fib    *routing.FIB
	member *mpsa.Member

	wake     chan struct{} // cap 1: something changed, reconcile
	wanDirty chan struct{} // cap 1: WAN addresses changed, reevaluate
	rebuild  chan struct{} // cap 1: new IKE credentials, rebuild the engine
	redial   chan struct{} // cap 1: new hub addresses, reconnect
	started  atomic.Bool
	stopped  chan struct{} // closed when Run returned
	cancel   atomic.Pointer[context.CancelFunc]
	counters counters

	// mu guards everything below; it is never held while calling the IKE
	// engine, the speaker or the data plane.
	mu       sync.Mutex
	cfg      *configs.CPE
	dp       *Dataplane
	eng      *engine // the IKE engine; routineIKE replaces it
	sa       *ike.SA // the IKE SA to the hub while routineIKE holds one
	infos    map[*ike.SA]ike.SAInfo
	children map[childKey]*child
	phase    string // what routineIKE does, for status
	lastErr  error  // why the last attempt failed
	nextTry  time.Time
	notifyCh chan struct{} // closed and replaced at every change (Wait)
	watched  bool          // someone took notifyCh since it was made (watchLocked)
	tunnel   tunnel        // the way to the hub's BGP port, as routineMain set it up
	bgpConns map[*trackedConn]struct{}
	bgpReset bool // the speaker must be restarted (new BGP settings)
	opsRun   *opsRun

	// Owned by routineMain (reconcile); bgp is also read by Status, so
	// routineMain writes it (and its endpoint and prefixes) under mu.
	installed installed
	bgp       *bgpRun
	nl        *netlink.Handle

	nlWAN *netlink.Handle // routineMOBIKE's
	keys  *keylog.Writer  // key_export files; nil when off
	opsMu sync.Mutex      // serialises opening and closing the listeners
}

// counters are the CPE's own events, for metrics.
type counters struct {
	connects, connectFailures, ikeRekeys, childRekeys atomic.Uint64
	mobike, mobikeFailures, reloads, reloadFailures   atomic.Uint64
	setErrors, ownRoutes                              atomic.Uint64
}

// New checks cfg and returns a CPE that does nothing until Run. cfg must
// be a loaded configuration (defaults set, validated, files resolved); the
// CPE does not modify it. logger nil means slog.Default().
func New(cfg *configs.CPE, logger *slog.Logger, opts ...Option) (*CPE, error) {
	if cfg == nil {
		return nil, errors.New("cpe: no configuration")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cpe: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	c := &CPE{
		base:     logger,
		log:      logger.With("component", "cpe"),
		wake:     make(chan struct{}, 1),
		wanDirty: make(chan struct{}, 1),
		rebuild:  make(chan struct{}, 1),
		redial:   make(chan struct{}, 1),
		stopped:  make(chan struct{}),
		cfg:      cfg,
		infos:    map[*ike.SA]ike.SAInfo{},
		children: map[childKey]*child{},
		bgpConns: map[*trackedConn]struct{}{},
		phase:    "idle",
		notifyCh: make(chan struct{}),
	}
	for _, o := range opts {
		o(&c.o)
	}
	c.clock = c.o.clock
	if c.clock == nil {
		c.clock = ike.SystemClock{}
	}
	c.fib = routing.New(routing.WithLogger(logger))
	m, err := mpsa.NewMember(mpsa.MemberConfig{Tunnel: GroupTunnel, Logger: logger})
	if err != nil {
		return nil, err
	}
	c.member = m
	return c, nil
}

// Config returns the running configuration.
func (c *CPE) Config() *configs.CPE {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg
}

// FIB returns the routing table the data plane and the speaker share.
func (c *CPE) FIB() *routing.FIB { return c.fib }

// Run brings the CPE up and keeps it up until ctx ends or Close is called;
// then it deletes the IKE SA with the hub, stops every goroutine it
// started, removes what it installed and returns nil. It returns an error
// at once when the CPE cannot start (no data plane, no sockets). Run may
// be called only once.
func (c *CPE) Run(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer close(c.stopped)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.cancel.Store(&cancel)

	cfg := c.Config()
	c.log.Info("starting", "id", cfg.Identity.String(), "state", "STARTING")
	if !c.o.noSysctl {
		if err := c.enableForwarding(); err != nil {
			c.log.Warn("cannot turn IP forwarding on", "err", err)
		}
	}
	nl, err := c.netlinkHandle()
	if err != nil {
		return fmt.Errorf("cpe: netlink: %w", err)
	}
	c.nl = nl
	defer nl.Close()
	if c.nlWAN, err = c.netlinkHandle(); err != nil {
		return fmt.Errorf("cpe: netlink: %w", err)
	}
	defer c.nlWAN.Close()

	if cfg.KeyExport.IKE != "" || cfg.KeyExport.ESP != "" {
		if c.keys, err = keylog.Create(cfg.KeyExport.IKE, cfg.KeyExport.ESP); err != nil {
			return fmt.Errorf("cpe: key_export: %w", err)
		}
		defer c.keys.Close()
		c.log.Warn("exporting IKE and ESP keys for Wireshark (key_export): anyone who reads the files can decrypt the traffic")
	}

	dp, err := c.buildDataplane(ctx, cfg)
	if err != nil {
		return fmt.Errorf("cpe: data plane: %w", err)
	}
	c.mu.Lock()
	c.dp = dp
	c.mu.Unlock()
	defer c.closeDataplane(dp)

	eng, err := c.newEngine(cfg, dp)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.eng = eng
	c.mu.Unlock()

	var wg sync.WaitGroup
	goRoutine := func(name string, f func(context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.log.Debug("routine started", "reason", name)
			defer c.log.Debug("routine stopped", "reason", name)
			f(ctx)
		}()
	}
	if dp.Run != nil {
		goRoutine("dataplane", func(ctx context.Context) {
			if err := dp.Run(ctx); err != nil && ctx.Err() == nil {
				c.log.Error("data plane route follower stopped", "err", err)
			}
		})
	}
	if _, err := c.startOps(ctx, cfg); err != nil {
		c.shutdownEngine()
		return err
	}
	defer c.closeOps()
	goRoutine("main", c.routineMain)
	goRoutine("wan", c.routineWAN)
	goRoutine("mobike", c.routineMOBIKE)
	goRoutine("ike", c.routineIKE)
	c.log.Info("started", "state", "RUNNING", "reason", "data plane "+dp.Name)

	<-ctx.Done()
	c.log.Info("stopping", "state", "STOPPING")
	// routineIKE ends with ctx; then tell the hub goodbye.
	wg.Wait()
	c.shutdownEngine()
	c.stopBGP()
	c.removeOverlay()
	c.member.Close()
	c.log.Info("stopped", "state", "STOPPED")
	return nil
}

// Close stops a running CPE and waits for Run to return. It is safe to call
// more than once and before Run (Run then returns at once).
func (c *CPE) Close() error {
	if p := c.cancel.Load(); p != nil {
		(*p)()
	}
	if c.started.CompareAndSwap(false, true) {
		close(c.stopped)
		c.member.Close()
		return nil
	}
	<-c.stopped
	return nil
}

// Done is closed when Run has returned.
func (c *CPE) Done() <-chan struct{} { return c.stopped }

func (c *CPE) netlinkHandle() (*netlink.Handle, error) {
	var h *netlink.Handle
	err := c.inNetns(func() error {
		var err error
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	})
	return h, err
}

func (c *CPE) closeDataplane(dp *Dataplane) {
	if err := dp.Backend.Close(); err != nil {
		c.log.Warn("closing the data plane", "err", err)
	}
	c.mu.Lock()
	c.dp = nil
	c.mu.Unlock()
}

// kick wakes routineMain.
func (c *CPE) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// notifyLocked wakes every Wait; c.mu is held.
func (c *CPE) notifyLocked() {
	// Without a watcher there is nothing to wake: a route feed of
	// thousands of routes makes no garbage channels.
	if !c.watched {
		return
	}
	close(c.notifyCh)
	c.notifyCh = make(chan struct{})
	c.watched = false
}

// watchLocked returns the channel closed at the next change.
func (c *CPE) watchLocked() <-chan struct{} {
	c.watched = true
	return c.notifyCh
}

func (c *CPE) notify() {
	c.mu.Lock()
	c.notifyLocked()
	c.mu.Unlock()
}

// Wait returns the first status, the current one included, for which cond
// is true, re-evaluating at every change of the CPE (SAs, routes, BGP
// state). When ctx ends first it returns the last status with ctx's error.
func (c *CPE) Wait(ctx context.Context, cond func(*Status) bool) (*Status, error) {
	for {
		c.mu.Lock()
		ch := c.watchLocked()
		c.mu.Unlock()
		st := c.Status()
		if cond(st) {
			return st, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return st, ctx.Err()
		case <-c.stopped:
			st = c.Status()
			if cond(st) {
				return st, nil
			}
			return st, errors.New("cpe: stopped")
		}
	}
}

// Reload applies a new configuration (see the package doc for what each
// change does). diff is what configs.CPEReloader.Reload returned. Changes
// that need a restart are logged and otherwise ignored; the returned error
// lists them, while everything else is applied.
func (c *CPE) Reload(cfg *configs.CPE, diff configs.CPEDiff) error {
	if err := cfg.Validate(); err != nil {
		c.counters.reloadFailures.Add(1)
		return fmt.Errorf("cpe: %w", err)
	}
	c.counters.reloads.Add(1)
	c.mu.Lock()
	c.cfg = cfg
	c.notifyLocked()
	c.mu.Unlock()
	c.log.Info("configuration reloaded", "reason", diffString(diff))
	var restart []string
	for _, p := range []string{"dataplane", "wan.encapsulation", "key_export"} {
		if diff.Has(p) {
			restart = append(restart, p)
		}
	}
	switch {
	case diff.Has("identity") || diff.Has("credentials"):
		signal(c.rebuild)
	case diff.Has("hubs") || diff.Has("hub_identity"):
		signal(c.redial)
	}
	if diff.Has("wan.interface") {
		signal(c.wanDirty)
	}
	if diff.Has("bgp") {
		c.restartBGP()
	}
	if diff.Has("metrics") || diff.Has("status") {
		c.reopenOps(cfg)
	}
	c.kick()
	if len(restart) > 0 {
		c.log.Warn("changes take effect after a restart", "reason", fmt.Sprint(restart))
		return fmt.Errorf("cpe: changed settings need a restart: %v", restart)
	}
	return nil
}

// ReloadFrom loads the configuration again through r (SIGHUP): one that
// fails to load or validate is logged with every bad field and the running
// one kept (nil is returned with the error); a good one is applied with
// Reload, the one it replaced is wiped, and it is returned.
func (c *CPE) ReloadFrom(r *configs.CPEReloader) (*configs.CPE, error) {
	old := r.Current()
	diff, warns, err := r.Reload()
	for _, w := range warns {
		c.log.Warn("configuration warning", "reason", w.String())
	}
	if err != nil {
		c.counters.reloadFailures.Add(1)
		c.log.Error("bad configuration, keeping the running one", "err", err)
		return nil, err
	}
	cfg := r.Current()
	err = c.Reload(cfg, diff)
	old.Wipe()
	return cfg, err
}

func diffString(d configs.CPEDiff) string {
	if d.Empty() {
		return "no changes"
	}
	return fmt.Sprint(d.Changed)
}

// localAddrs are addresses for the current WAN lookup, by family.
func familyOf(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}
