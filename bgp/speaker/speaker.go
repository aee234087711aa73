package speaker

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/mpsa-vpn/mpsa/routing"
)

// Speaker is the CPE's iBGP speaker. Create it with New and run it with Run.
type Speaker struct {
	// Immutable after New.
	cfg  Config
	log  *slog.Logger
	wake chan struct{} // cap 1: advertised prefixes or endpoint changed
	rr   chan struct{} // cap 1: Refresh was called
	eor  chan struct{} // cap 1: SendEndOfRIB was called

	stats       counters
	eorReleased atomic.Bool // SendEndOfRIB was called (Config.DeferEndOfRIB)

	// mu guards the following fields.
	mu       sync.Mutex
	prefixes []netip.Prefix // sorted, masked, unique
	endpoint netip.AddrPort
	state    State
	running  bool

	// ribMu guards rib and is held while the sink is called, so sink calls
	// are serialised. Lock order: ribMu before mu.
	ribMu sync.Mutex
	rib   rib

	timers sync.WaitGroup // graceful-restart timer callbacks scheduled or running
}

// New checks cfg and returns a speaker that is not yet connected.
func New(cfg Config) (*Speaker, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Speaker{
		cfg:  cfg,
		log:  cfg.Logger.With("component", "bgp"),
		wake: make(chan struct{}, 1),
		rr:   make(chan struct{}, 1),
		eor:  make(chan struct{}, 1),
	}
	s.prefixes = normalise(cfg.Prefixes)
	s.endpoint = cfg.Endpoint
	s.rib.routes = make(map[netip.Prefix]uint8)
	return s, nil
}

// normalise masks, sorts and de-duplicates prefixes and drops invalid ones.
func normalise(in []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(in))
	for _, p := range in {
		if p.IsValid() {
			out = append(out, p.Masked())
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}

// SetPrefixes replaces the advertised LAN prefixes. An established session
// sends the difference at once.
func (s *Speaker) SetPrefixes(p []netip.Prefix) {
	n := normalise(p)
	s.mu.Lock()
	s.prefixes = n
	s.mu.Unlock()
	s.poke(s.wake)
}

// SetEndpoint changes the ESP endpoint advertised with the prefixes (for
// example after the NAT mapping of the CPE changed). An established session
// re-advertises every prefix.
func (s *Speaker) SetEndpoint(ep netip.AddrPort) {
	s.mu.Lock()
	s.endpoint = ep
	s.mu.Unlock()
	s.poke(s.wake)
}

// Refresh asks the hub to send all its routes again (ROUTE-REFRESH, RFC
// 2918), for example after the FIB was rebuilt. It does nothing unless a
// session with a peer that supports route refresh is established.
func (s *Speaker) Refresh() { s.poke(s.rr) }

// SendEndOfRIB releases the End-of-RIB markers held back by
// Config.DeferEndOfRIB, now and for every later session.
func (s *Speaker) SendEndOfRIB() {
	s.eorReleased.Store(true)
	s.poke(s.eor)
}

func (s *Speaker) poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// State returns the FSM state.
func (s *Speaker) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Stats returns the counters.
func (s *Speaker) Stats() Stats { return s.stats.snapshot() }

// Routes returns the number of routes learned (Stats().RoutesLearned,
// cheaper). A sink may call it from Upsert: the count already includes the
// route being upserted.
func (s *Speaker) Routes() int { return int(max(s.stats.routes.Load(), 0)) }

func (s *Speaker) setState(st State, reason string) {
	s.mu.Lock()
	old := s.state
	s.state = st
	s.mu.Unlock()
	if old == st {
		return
	}
	lvl := slog.LevelDebug
	if st == StateEstablished || old == StateEstablished {
		lvl = slog.LevelInfo
	}
	if reason != "" {
		s.log.Log(context.Background(), lvl, "bgp session state", "state", st.String(), "reason", reason)
	} else {
		s.log.Log(context.Background(), lvl, "bgp session state", "state", st.String())
	}
	if s.cfg.OnState != nil {
		s.cfg.OnState(st)
	}
}

func (s *Speaker) advertisement() ([]netip.Prefix, netip.AddrPort) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.prefixes, s.endpoint
}

// ErrRunning is returned by Run when the speaker already runs.
var ErrRunning = errors.New("speaker: already running")

// Run connects to the hub and keeps the session up, reconnecting with
// exponential back-off, until ctx is done. When it returns, the routes it
// learned have been withdrawn from the sink and no goroutine or timer of
// the speaker is left.
func (s *Speaker) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return ErrRunning
	}
	s.running = true
	s.mu.Unlock()
	s.log.Debug("routineRun started")
	defer s.log.Debug("routineRun stopped")
	defer func() {
		s.ribMu.Lock()
		s.stopTimersLocked()
		s.flushAllLocked()
		s.ribMu.Unlock()
		s.timers.Wait()
		s.setState(StateIdle, "stopped")
		s.mu.Lock()
		s.running = false
		s.mu.Unlock()
	}()

	backoff := s.cfg.MinBackoff
	for ctx.Err() == nil {
		s.setState(StateConnect, "")
		conn, err := s.cfg.Dial(ctx)
		if err != nil {
			s.setState(StateIdle, "dial: "+err.Error())
		} else {
			end := s.runSession(ctx, conn)
			s.sessionEnded(end)
			s.setState(StateIdle, end.reason())
			if end.established {
				backoff = s.cfg.MinBackoff
			}
		}
		if ctx.Err() != nil {
			break
		}
		// Full jitter over the upper half keeps a hub restart from
		// turning into a synchronised reconnect storm.
		d := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		backoff = min(2*backoff, s.cfg.MaxBackoff)
	}
	return ctx.Err()
}

// sessionEnded applies graceful restart (RFC 4724 §4.2, RFC 8538) to the
// routes of a session that went down.
func (s *Speaker) sessionEnded(end endReason) {
	s.ribMu.Lock()
	defer s.ribMu.Unlock()
	if !end.established {
		return // routes (stale or not) belong to an earlier session
	}
	if !end.graceful() {
		s.stopTimersLocked()
		s.flushAllLocked()
		return
	}
	// Keep every family the hub listed in its capability; whether its
	// forwarding state survived is what the F bit of its next OPEN says.
	gr := end.peerGR
	var keep []bgp.RouteFamily
	for f := range gr.forwarding {
		keep = append(keep, f)
	}
	n := s.markStaleLocked(keep)
	if n == 0 || gr.restart == 0 {
		s.stopTimersLocked()
		s.flushAllLocked()
		return
	}
	s.log.Info("hub session lost, keeping its routes as stale", "peer", s.rib.peer.String(),
		"reason", end.reason(), "routes", n, "restart_time", gr.restart.String())
	s.stopTimersLocked()
	gen := s.rib.gen
	s.rib.restartTimer = s.afterFunc(gr.restart, func() {
		s.ribMu.Lock()
		defer s.ribMu.Unlock()
		if s.rib.gen != gen {
			return
		}
		s.log.Info("hub did not return within its restart time, withdrawing stale routes", "peer", s.rib.peer.String())
		s.flushStaleLocked(nil)
	})
}

// rib is what the speaker learned from its peer: one flag byte per prefix
// (the routes themselves live in the sink).
type rib struct {
	peer   netip.Addr // BGP Identifier of the peer whose routes these are
	routes map[netip.Prefix]uint8
	stale  int

	gen          uint64 // bumps when timers are replaced; stale callbacks check it
	restartTimer *time.Timer
	staleTimer   *time.Timer
}

const flagStale = 1

// afterFunc is time.AfterFunc whose callback Run waits for.
func (s *Speaker) afterFunc(d time.Duration, f func()) *time.Timer {
	s.timers.Add(1)
	return time.AfterFunc(d, func() {
		defer s.timers.Done()
		f()
	})
}

// stopTimerLocked stops a timer made by afterFunc; it is nil afterwards.
func (s *Speaker) stopTimerLocked(t **time.Timer) {
	if *t != nil && (*t).Stop() {
		s.timers.Done()
	}
	*t = nil
}

// stopTimersLocked stops both GR timers and invalidates callbacks already
// running.
func (s *Speaker) stopTimersLocked() {
	s.rib.gen++
	s.stopTimerLocked(&s.rib.restartTimer)
	s.stopTimerLocked(&s.rib.staleTimer)
}

func familyOf(p netip.Prefix) bgp.RouteFamily {
	if p.Addr().Is4() {
		return bgp.RF_IPv4_UC
	}
	return bgp.RF_IPv6_UC
}

// errTooManyRoutes is returned by upsertLocked when MaxRoutes is reached.
var errTooManyRoutes = errors.New("speaker: maximum number of routes reached")

func (s *Speaker) upsertLocked(r routing.Route) error {
	f, ok := s.rib.routes[r.Prefix]
	if !ok && len(s.rib.routes) >= s.cfg.MaxRoutes {
		return errTooManyRoutes
	}
	if f&flagStale != 0 {
		s.rib.stale--
		s.stats.stale.Add(-1)
	}
	s.rib.routes[r.Prefix] = 0
	if !ok {
		s.stats.routes.Add(1)
	}
	if err := s.cfg.Sink.Upsert(r); err != nil {
		s.stats.sinkErrors.Add(1)
		s.log.Debug("sink refused route", "prefix", r.Prefix.String(), "err", err)
	}
	return nil
}

func (s *Speaker) withdrawLocked(p netip.Prefix) {
	f, ok := s.rib.routes[p]
	if !ok {
		return
	}
	delete(s.rib.routes, p)
	s.stats.routes.Add(-1)
	if f&flagStale != 0 {
		s.rib.stale--
		s.stats.stale.Add(-1)
	}
	if err := s.cfg.Sink.Withdraw(p, s.rib.peer); err != nil {
		s.stats.sinkErrors.Add(1)
	}
}

func (s *Speaker) flushAllLocked() {
	if len(s.rib.routes) == 0 {
		return
	}
	s.cfg.Sink.WithdrawPeer(s.rib.peer)
	s.stats.routes.Add(-int64(len(s.rib.routes)))
	s.stats.stale.Add(-int64(s.rib.stale))
	clear(s.rib.routes)
	s.rib.stale = 0
}

// markStaleLocked marks the routes of the families in keep stale and
// withdraws the others. It returns the number of stale routes.
func (s *Speaker) markStaleLocked(keep []bgp.RouteFamily) int {
	for p, f := range s.rib.routes {
		if !slices.Contains(keep, familyOf(p)) {
			s.withdrawLocked(p)
			continue
		}
		if f&flagStale == 0 {
			s.rib.routes[p] = f | flagStale
			s.rib.stale++
			s.stats.stale.Add(1)
		}
	}
	return s.rib.stale
}

// flushStaleLocked withdraws the stale routes of the families in fams (all
// families when fams is nil).
func (s *Speaker) flushStaleLocked(fams []bgp.RouteFamily) {
	if s.rib.stale == 0 {
		return
	}
	if fams == nil && s.rib.stale == len(s.rib.routes) {
		s.flushAllLocked()
		return
	}
	n := 0
	for p, f := range s.rib.routes {
		if f&flagStale != 0 && (fams == nil || slices.Contains(fams, familyOf(p))) {
			s.withdrawLocked(p)
			n++
		}
	}
	if n > 0 {
		s.log.Debug("withdrew stale routes", "peer", s.rib.peer.String(), "routes", n)
	}
}
