package rr

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/mpsa-vpn/mpsa/bgp/speaker"
	"github.com/mpsa-vpn/mpsa/routing"
)

// syncSession keeps a restarting group's route selection deferred.
//
// GoBGP, as a restarting speaker (RFC 4724 §4.1), sends no routes until
// every connected neighbor that offered GR has sent End-of-RIB, and it
// sets the Forwarding bit only in OPENs sent before that. A CPE whose IKE SA
// is up but whose BGP session is not (yet) connected does not count, so the
// deferral would end with the first CPEs, and the CPEs connecting later
// would flush the routes they kept. The hub therefore holds the deferral
// open itself: a speaker of ours connects to the group's instance from a
// loopback address and holds back its End-of-RIB (speaker.Config.
// DeferEndOfRIB) until every registered CPE has sent End-of-RIB (the hub has
// re-originated all its routes by then), or DeferralTime has passed. Then
// GoBGP ends the deferral and sends every CPE its whole table in a few
// packed UPDATEs, with End-of-RIB, instead of one UPDATE per route as they
// trickle in. Once GoBGP has processed the End-of-RIB the helper session is
// removed.
type syncSession struct {
	addr   netip.Addr
	sp     *speaker.Speaker
	cancel context.CancelFunc
	done   chan struct{}
	timer  *time.Timer
	eor    map[api.Family_Afi]bool
	once   sync.Once
	up     chan struct{} // closed when the session is first established
	upOnce sync.Once
}

// syncUpTime bounds how long AddGroup waits for the sync session.
const syncUpTime = 10 * time.Second

// discardSink takes the routes the sync session learns and forgets them.
type discardSink struct{}

func (discardSink) Upsert(routing.Route) error              { return nil }
func (discardSink) Withdraw(netip.Prefix, netip.Addr) error { return nil }
func (discardSink) WithdrawPeer(netip.Addr)                 {}

func (g *group) startSync(ctx context.Context) error {
	hc := &g.hub.cfg
	addr := g.cfg.SyncAddress
	p := &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: addr.String(), PeerAsn: hc.ASN},
		AfiSafis:  afiSafis(true),
		Transport: &api.Transport{PassiveMode: true},
		GracefulRestart: &api.GracefulRestart{Enabled: true, RestartTime: uint32(hc.RestartTime / time.Second),
			NotificationEnabled: true, DeferralTime: uint32(g.cfg.DeferralTime / time.Second), LocalRestarting: true},
	}
	if err := g.s.AddPeer(ctx, &api.AddPeerRequest{Peer: p}); err != nil {
		return fmt.Errorf("sync peer: %w", err)
	}
	// A BGP Identifier distinct from the hub's.
	id := netip.MustParseAddr("127.255.255.254")
	if id == hc.RouterID {
		id = netip.MustParseAddr("127.255.255.253")
	}
	target := g.cfg.Listen[0]
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: addr.AsSlice()}, Timeout: 5 * time.Second}
	scfg := speaker.Config{
		ASN: hc.ASN, RouterID: id,
		Dial: func(ctx context.Context) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", target.String())
		},
		Sink:          discardSink{},
		DeferEndOfRIB: true,
		MinBackoff:    50 * time.Millisecond,
		MaxBackoff:    time.Second,
		Logger:        g.log.With("id", "hub-sync"),
	}
	sctx, cancel := context.WithCancel(context.Background())
	sy := &syncSession{addr: addr, cancel: cancel, done: make(chan struct{}), eor: map[api.Family_Afi]bool{}, up: make(chan struct{})}
	scfg.OnState = func(st speaker.State) {
		if st == speaker.StateEstablished {
			sy.upOnce.Do(func() { close(sy.up) })
		}
	}
	sp, err := speaker.New(scfg)
	if err != nil {
		cancel()
		return err
	}
	sy.sp = sp
	go func() {
		defer close(sy.done)
		sp.Run(sctx)
	}()
	sy.timer = time.AfterFunc(g.cfg.DeferralTime, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.sync == sy && g.deferring {
			g.endDeferralLocked("deferral time passed")
		}
	})
	g.mu.Lock()
	g.sync = sy
	g.mu.Unlock()
	// GoBGP ends the deferral when every neighbor that offered GR has sent
	// End-of-RIB, and a neighbor whose OPEN it has not seen yet offered
	// nothing: a CPE established before the sync session would end it at
	// once. So the group takes CPEs only once the sync session is up.
	t := time.NewTimer(syncUpTime)
	defer t.Stop()
	select {
	case <-sy.up:
	case <-t.C:
		g.log.Warn("restart deferral session not established; the deferral may end with the first CPEs", "reason", "timeout "+syncUpTime.String())
	case <-ctx.Done():
		g.log.Warn("restart deferral session not established; the deferral may end with the first CPEs", "err", ctx.Err())
	}
	return nil
}

func (sy *syncSession) stop() {
	sy.once.Do(func() {
		sy.timer.Stop()
		sy.cancel()
		<-sy.done
	})
}

// checkSyncLocked ends the deferral when every registered CPE is synced.
func (g *group) checkSyncLocked() {
	if !g.deferring {
		return
	}
	for _, c := range g.byID {
		if !c.synced {
			return
		}
	}
	g.endDeferralLocked("every CPE sent End-of-RIB")
}

func (g *group) endDeferralLocked(reason string) {
	g.deferring = false
	n := 0
	for _, c := range g.byID {
		if c.synced {
			n++
		}
	}
	g.log.Info("restart deferral ended, sending routes", "reason", fmt.Sprintf("%s (%d of %d CPEs synced)", reason, n, len(g.byID)))
	if sy := g.sync; sy != nil {
		// Once the routes already validated are in GoBGP's RIB.
		g.barrierLocked(sy.sp.SendEndOfRIB)
	}
}

// syncEORLocked sees GoBGP report the sync session's End-of-RIB: GoBGP has
// ended its deferral, the session can go. Deleting the peer at once is
// safe: GoBGP notifies the EOR watcher, marks the End-of-RIB received and
// checks whether every GR neighbor has sent one (then sends every CPE its
// table) in one turn of its Serve loop (v3.37.0 handleFSMMessage), and
// DeletePeer is a management operation on that same loop, so it runs only
// after that check.
func (g *group) syncEORLocked(f *api.Family) {
	sy := g.sync
	if sy == nil || f == nil {
		return
	}
	sy.eor[f.Afi] = true
	if len(sy.eor) < len(families) {
		return
	}
	g.sync = nil
	g.bg.Add(1)
	go func() {
		defer g.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.s.DeletePeer(ctx, &api.DeletePeerRequest{Address: sy.addr.String()})
		sy.stop()
	}()
}
