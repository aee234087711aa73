package rr

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	gblog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/mpsa-vpn/mpsa/bgp/internal/gobgplog"
)

var families = []*api.Family{
	{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST},
	{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST},
}

// group is one CPE group: a GoBGP instance and what the hub knows about the
// group's CPEs. Watch events from GoBGP and the Hub's API calls both take
// mu, so group state has one writer at a time.
type group struct {
	hub   *Hub
	cfg   GroupConfig
	log   *slog.Logger
	s     *server.BgpServer
	stats counters
	logs  limiter

	// hardMax is the per-CPE route count, per family, beyond which GoBGP
	// closes the session: hardLimitFactor times the larger of
	// Config.MaxRoutesPerCPE and the policy's MaxPrefixes at start.
	hardMax int

	cancelWatch context.CancelFunc
	bg          sync.WaitGroup // goroutines the group started (sync session teardown)
	ops         [pathWorkers]chan pathOp
	opsWG       sync.WaitGroup

	// mu guards the following fields.
	mu        sync.Mutex
	cpes      map[netip.Addr]*cpeState // by overlay address
	byID      map[string]*cpeState
	nextID    uint32 // path identifiers, one per CPE
	pol       policy // the route policy in force
	deferring bool   // restart deferral in progress
	sync      *syncSession
	closing   bool // close has begun: sessions going down keep their routes
	closed    bool
	changed   chan struct{} // closed and replaced whenever the state above changes
}

// cpeState is a registered CPE and the routes the hub re-originated for it.
type cpeState struct {
	CPE
	pathID   uint32
	routerID netip.Addr
	// configured: a configured GoBGP peer (registered during a restart
	// deferral) rather than a dynamic neighbor of its own address.
	configured bool
	routes     map[netip.Prefix]announced

	established bool
	since       time.Time     // when the session was established
	grTime      time.Duration // restart time the CPE offered; 0 = no GR
	grFamilies  []*api.Family // families for which the CPE offered GR
	eor         uint8         // families whose End-of-RIB the CPE sent (bit eorBit)
	synced      bool          // session up and End-of-RIB seen for every GR family
	gen         uint64
	restart     *time.Timer
}

// announced is what the hub put into GoBGP for one CPE prefix, held once
// per route, so kept small (16 octets): the ESP endpoint and NEXT_HOP are
// the CPE's (cpeState.Endpoint, nextHopFor), which every held route
// carries since CPEUp re-originates them all when the endpoint changes.
type announced struct {
	origin    uint8
	hasMED    bool
	stale     bool
	src       [4]byte // the path's source ID in GoBGP (the CPE's BGP Identifier); zero if none
	localPref uint32
	med       uint32
}

func (a announced) same(b announced) bool {
	a.stale, b.stale = false, false
	return a == b
}

// source is the path's source ID as GoBGP knows it (invalid if none).
func (a announced) source() netip.Addr {
	if a.src == [4]byte{} {
		return netip.Addr{}
	}
	return netip.AddrFrom4(a.src)
}

// sourceID packs a CPE's BGP Identifier (always IPv4) for announced.src.
func sourceID(id netip.Addr) [4]byte {
	if !id.Is4() {
		return [4]byte{}
	}
	return id.As4()
}

func startGroup(ctx context.Context, h *Hub, gc GroupConfig) (*group, error) {
	g := &group{
		hub:       h,
		cfg:       gc,
		log:       h.log.With("group", gc.Name),
		cpes:      map[netip.Addr]*cpeState{},
		byID:      map[string]*cpeState{},
		deferring: gc.Restarting,
		changed:   make(chan struct{}),
		pol:       h.cfg.policy(gc.Policy),
	}
	g.hardMax = hardLimitFactor * max(h.cfg.MaxRoutesPerCPE, g.pol.max)
	g.logs.n = h.cfg.LogRate
	adapter := gobgplog.New(g.log, gblog.WarnLevel).WithHook(g.gobgpMessage).WithQuiet(
		// A CPE session that ends drops its Adj-RIB-In; those routes were
		// rejected by the import policy and never were in the RIB.
		"No matching path for withdraw found, may be path was not installed into table")
	opts := []server.ServerOption{server.LoggerOption(adapter)}
	if gc.GRPC != "" {
		if err := checkGRPC(gc.GRPC); err != nil {
			return nil, fmt.Errorf("rr: group %s: gRPC %s: %w", gc.Name, gc.GRPC, err)
		}
		opts = append(opts, server.GrpcListenAddress(gc.GRPC))
	}
	g.s = server.NewBgpServer(opts...)
	go g.s.Serve()
	g.startWorkers()
	if err := g.configure(ctx); err != nil {
		g.stopWorkers()
		g.s.Stop()
		return nil, fmt.Errorf("rr: group %s: %w", gc.Name, err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	g.cancelWatch = cancel
	err := g.s.WatchEvent(wctx, &api.WatchEventRequest{
		Peer: &api.WatchEventRequest_Peer{},
		Table: &api.WatchEventRequest_Table{Filters: []*api.WatchEventRequest_Table_Filter{
			{Type: api.WatchEventRequest_Table_Filter_ADJIN},
			{Type: api.WatchEventRequest_Table_Filter_EOR},
		}},
	}, g.onEvent)
	if err != nil {
		cancel()
		g.stopWorkers()
		g.s.Stop()
		return nil, fmt.Errorf("rr: group %s: watch: %w", gc.Name, err)
	}
	if gc.Restarting {
		if err := g.startSync(ctx); err != nil {
			cancel()
			g.stopWorkers()
			g.s.Stop()
			return nil, fmt.Errorf("rr: group %s: %w", gc.Name, err)
		}
	}
	if gc.Restarting {
		g.log.Info("route reflector started as a restarting speaker", "local", gc.Listen[0].String())
	} else {
		g.log.Info("route reflector started", "local", gc.Listen[0].String())
	}
	return g, nil
}

// checkGRPC fails early where GoBGP would only log a failed gRPC listen.
func checkGRPC(addr string) error {
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(path) // a stale socket of an earlier run
		}
		return nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return l.Close()
}

// configure sets up the instance: global settings, the import policy, the
// CPE peer group and the configured peers.
func (g *group) configure(ctx context.Context) error {
	hc := &g.hub.cfg
	var addrs []string
	for _, l := range g.cfg.Listen {
		addrs = append(addrs, l.Addr().String())
	}
	err := g.s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: hc.ASN, RouterId: hc.RouterID.String(),
		ListenPort: int32(g.cfg.Listen[0].Port()), ListenAddresses: addrs,
	}})
	if err != nil {
		return fmt.Errorf("StartBgp: %w", err)
	}

	// Import policy: CPE routes never enter the RIB as received; the hub
	// re-originates what it validated (local paths). Configured peers'
	// routes are accepted as they are.
	stmts := []*api.Statement{{Name: "local",
		Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
		Actions:    &api.Actions{RouteAction: api.RouteAction_ACCEPT}}}
	if len(g.cfg.Peers) > 0 {
		var list []string
		for _, p := range g.cfg.Peers {
			list = append(list, netip.PrefixFrom(p.Address, p.Address.BitLen()).String())
		}
		if err := g.s.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{
			DefinedType: api.DefinedType_NEIGHBOR, Name: peerGroupOther, List: list}}); err != nil {
			return fmt.Errorf("AddDefinedSet: %w", err)
		}
		stmts = append(stmts, &api.Statement{Name: "peers",
			Conditions: &api.Conditions{NeighborSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: peerGroupOther}},
			Actions:    &api.Actions{RouteAction: api.RouteAction_ACCEPT}})
	}
	if err := g.s.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{Name: "mpsa-import", Statements: stmts}}); err != nil {
		return fmt.Errorf("AddPolicy: %w", err)
	}
	if err := g.s.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name: "global", Direction: api.PolicyDirection_IMPORT,
		Policies: []*api.Policy{{Name: "mpsa-import"}}, DefaultAction: api.RouteAction_REJECT}}); err != nil {
		return fmt.Errorf("AddPolicyAssignment: %w", err)
	}

	hold := uint64(hc.HoldTime / time.Second)
	pg := &api.PeerGroup{
		Conf: &api.PeerGroupConf{PeerGroupName: peerGroupCPE, PeerAsn: hc.ASN},
		RouteReflector: &api.RouteReflector{RouteReflectorClient: true,
			RouteReflectorClusterId: hc.ClusterID.String()},
		AfiSafis:  withPrefixLimit(afiSafis(true), uint32(g.hardMax)),
		Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: hold, KeepaliveInterval: hold / 3}},
		Transport: &api.Transport{PassiveMode: true},
		GracefulRestart: &api.GracefulRestart{Enabled: true, RestartTime: uint32(hc.RestartTime / time.Second),
			NotificationEnabled: true, DeferralTime: uint32(g.cfg.DeferralTime / time.Second)},
	}
	if err := g.s.AddPeerGroup(ctx, &api.AddPeerGroupRequest{PeerGroup: pg}); err != nil {
		return fmt.Errorf("AddPeerGroup: %w", err)
	}
	for _, p := range g.cfg.Peers {
		if err := g.s.AddPeer(ctx, &api.AddPeerRequest{Peer: peerFromConfig(hc, p)}); err != nil {
			return fmt.Errorf("AddPeer %v: %w", p.Address, err)
		}
	}
	return nil
}

func afiSafis(gr bool) []*api.AfiSafi {
	var out []*api.AfiSafi
	for _, f := range families {
		a := &api.AfiSafi{Config: &api.AfiSafiConfig{Family: f, Enabled: true}}
		if gr {
			a.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		}
		out = append(out, a)
	}
	return out
}

func withPrefixLimit(afis []*api.AfiSafi, max uint32) []*api.AfiSafi {
	for _, a := range afis {
		a.PrefixLimits = &api.PrefixLimit{Family: a.Config.Family, MaxPrefixes: max, ShutdownThresholdPct: 80}
	}
	return afis
}

func peerFromConfig(hc *Config, p PeerConfig) *api.Peer {
	port := p.Port
	if port == 0 {
		port = DefaultBGPPort
	}
	ap := &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.ASN},
		AfiSafis:  afiSafis(false),
		Transport: &api.Transport{PassiveMode: p.Passive, RemotePort: uint32(port)},
		Timers: &api.Timers{Config: &api.TimersConfig{HoldTime: uint64(hc.HoldTime / time.Second),
			KeepaliveInterval: uint64(hc.HoldTime/time.Second) / 3, ConnectRetry: 5}},
	}
	if p.RRClient {
		ap.RouteReflector = &api.RouteReflector{RouteReflectorClient: true, RouteReflectorClusterId: hc.ClusterID.String()}
	}
	if p.Multihop > 0 {
		ap.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: p.Multihop}
	}
	return ap
}

// gobgpMessage sees GoBGP's log messages; a refused connection is only
// reported there.
func (g *group) gobgpMessage(msg string, f gblog.Fields) {
	if msg != "Can't find configuration for a new passive connection" {
		return
	}
	g.stats.refused.Add(1)
	if g.logs.allow() {
		g.log.Warn("BGP connection refused: not a live CPE's overlay address", "peer", fmt.Sprint(f["Key"]))
	}
}

func (g *group) snapshot() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := Stats{
		CPEs:             uint64(len(g.byID)),
		Accepted:         g.stats.accepted.Load(),
		ForeignPrefix:    g.stats.foreignPrefix.Load(),
		EndpointRewrite:  g.stats.epRewrite.Load(),
		EndpointReject:   g.stats.epReject.Load(),
		BadRoute:         g.stats.badRoute.Load(),
		TooManyRoutes:    g.stats.tooMany.Load(),
		RefusedSessions:  g.stats.refused.Load(),
		CPEWithdrawnDown: g.stats.withdrawnDown.Load(),
	}
	for _, c := range g.byID {
		if c.established {
			s.Sessions++
		}
		s.Routes += uint64(len(c.routes))
		for _, a := range c.routes {
			if a.stale {
				s.StaleRoutes++
			}
		}
	}
	return s
}

// bumpLocked wakes whoever waits for a change of the group's state.
func (g *group) bumpLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// wait blocks until cond holds for the group's stats or ctx ends.
func (g *group) wait(ctx context.Context, cond func(Stats) bool) error {
	for {
		g.mu.Lock()
		ch := g.changed
		g.mu.Unlock()
		if cond(g.snapshot()) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (g *group) synced() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.deferring
}

// closeDrainTime bounds how long close waits for CPE sessions to go down
// after the Administrative Reset.
const closeDrainTime = 3 * time.Second

// close stops the group as a planned restart (see Hub.Close).
func (g *group) close() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closing = true
	g.mu.Unlock()

	// Cease/Administrative Reset first, and wait for the sessions to end:
	// GoBGP's Stop sends Peer De-configured, which it turns into a Hard
	// Reset for N-bit peers, and the CPEs would drop the hub's routes.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// One peer at a time: with Address "" GoBGP queues one NOTIFICATION
	// message to every peer, and their send loops serialize (write) it
	// concurrently, a data race in GoBGP v3.37.0 (server.go
	// sendNotification, bgp.go BGPMessage.Serialize).
	var peers []string
	g.s.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) { peers = append(peers, peerAddress(p)) })
	for _, a := range peers {
		g.s.ResetPeer(ctx, &api.ResetPeerRequest{Address: a, Communication: "hub restart"})
	}
	dctx, dcancel := context.WithTimeout(ctx, closeDrainTime)
	g.wait(dctx, func(s Stats) bool { return s.Sessions == 0 })
	dcancel()

	g.mu.Lock()
	g.closed = true
	for _, c := range g.byID {
		g.stopRestartLocked(c)
	}
	sy := g.sync
	g.sync = nil
	g.mu.Unlock()
	g.cancelWatch()
	if sy != nil {
		sy.stop()
	}
	g.bg.Wait()
	g.stopWorkers()
	g.s.Stop()
	// GoBGP v3's Serve loop has no way to end: its goroutine stays, idle,
	// for the life of the process. Empty the RIB so that is all it keeps.
	g.s.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL})
	g.log.Info("route reflector stopped")
}

// cpeUp registers or updates a CPE.
func (g *group) cpeUp(ctx context.Context, c CPE) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	defer g.bumpLocked()
	if g.closed {
		return ErrClosed
	}
	if old, ok := g.byID[c.ID]; ok && old.Overlay != c.Overlay {
		g.removeLocked(ctx, old, "overlay address changed")
	}
	cs, ok := g.byID[c.ID]
	if ok {
		moved := cs.Endpoint != c.Endpoint
		cs.CPE = c
		g.reapplyLocked(ctx, cs, moved)
		return nil
	}
	g.nextID++
	cs = &cpeState{CPE: c, pathID: g.nextID, routes: map[netip.Prefix]announced{}}
	if g.deferring {
		// A configured peer: GoBGP must know it as restarting (the
		// Restart State bit, RFC 4724), which a dynamic neighbor,
		// configured from the peer group, cannot say only while the
		// deferral lasts.
		p := &api.Peer{Conf: &api.PeerConf{NeighborAddress: c.Overlay.String(), PeerGroup: peerGroupCPE},
			GracefulRestart: &api.GracefulRestart{LocalRestarting: true}}
		if err := g.s.AddPeer(ctx, &api.AddPeerRequest{Peer: p}); err != nil {
			return fmt.Errorf("rr: CPE %s: AddPeer: %w", c.ID, err)
		}
		cs.configured = true
	} else if err := g.s.AddDynamicNeighbor(ctx, &api.AddDynamicNeighborRequest{DynamicNeighbor: &api.DynamicNeighbor{
		Prefix: hostPrefix(c.Overlay), PeerGroup: peerGroupCPE}}); err != nil {
		return fmt.Errorf("rr: CPE %s: AddDynamicNeighbor: %w", c.ID, err)
	}
	g.cpes[c.Overlay] = cs
	g.byID[c.ID] = cs
	g.log.Info("CPE registered", "id", c.ID, "peer", c.Overlay.String(), "endpoint", c.Endpoint.String())
	return nil
}

// cpeDown forgets a CPE: session closed, routes withdrawn.
func (g *group) cpeDown(ctx context.Context, id, reason string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	defer g.bumpLocked()
	if c, ok := g.byID[id]; ok {
		g.removeLocked(ctx, c, reason)
		g.checkSyncLocked()
	}
}

func (g *group) removeLocked(ctx context.Context, c *cpeState, reason string) {
	g.stopRestartLocked(c)
	n := len(c.routes)
	for p := range c.routes {
		g.withdrawLocked(ctx, c, p)
	}
	g.stats.withdrawnDown.Add(uint64(n))
	if !c.configured {
		// No new session from the address from now on; then close the
		// one there is. A dynamic neighbor exists in GoBGP only while it
		// is connected (or restarting), so DeletePeer finding none is
		// normal.
		if err := g.s.DeleteDynamicNeighbor(ctx, &api.DeleteDynamicNeighborRequest{
			Prefix: hostPrefix(c.Overlay), PeerGroup: peerGroupCPE}); err != nil {
			g.log.Warn("DeleteDynamicNeighbor failed", "id", c.ID, "err", err)
		}
	}
	if err := g.s.DeletePeer(ctx, &api.DeletePeerRequest{Address: c.Overlay.String()}); err != nil && c.configured {
		g.log.Warn("DeletePeer failed", "id", c.ID, "err", err)
	}
	delete(g.cpes, c.Overlay)
	delete(g.byID, c.ID)
	g.log.Info("CPE gone, routes withdrawn", "id", c.ID, "peer", c.Overlay.String(), "reason", reason, "routes", n)
}

// reapplyLocked checks a CPE's routes again after its authorisation or the
// group's policy changed. Held routes no longer allowed are withdrawn, and
// the surplus over MaxPrefixes (the highest prefixes); the others get the
// current endpoint and LOCAL_PREF. Routes the CPE announced but the hub
// dropped come back from GoBGP's Adj-RIB-In (which keeps every route a
// session received, before the import policy) and are checked again.
// moved says the CPE's endpoint changed: every held route is re-originated.
func (g *group) reapplyLocked(ctx context.Context, c *cpeState, moved bool) {
	for p := range c.routes {
		if !c.authorised(p, g.pol.moreSpecifics) {
			g.withdrawLocked(ctx, c, p)
		}
	}
	if n := len(c.routes) - g.pol.max; n > 0 {
		ps := slices.SortedFunc(maps.Keys(c.routes), comparePrefixes)
		for _, p := range ps[len(ps)-n:] {
			g.withdrawLocked(ctx, c, p)
		}
	}
	for p, a := range c.routes {
		b := a
		if g.pol.localPref != 0 {
			b.localPref = g.pol.localPref
		}
		if moved || !b.same(a) {
			g.originateLocked(ctx, c, p, b)
		}
	}
	if !c.established {
		return
	}
	for _, f := range families {
		err := g.s.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_ADJ_IN, Name: c.Overlay.String(), Family: f},
			func(d *api.Destination) {
				for _, p := range d.GetPaths() {
					if pfx, ok := prefixOf(p); ok {
						if _, held := c.routes[pfx]; held {
							continue
						}
					}
					g.acceptLocked(ctx, c, p, true)
				}
			})
		if err != nil {
			g.log.Warn("cannot read the CPE's routes again", "id", c.ID, "peer", c.Overlay.String(), "err", err)
		}
	}
}

// comparePrefixes orders prefixes by family, address, then length.
func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// setPolicy changes the group's route policy and checks every CPE's
// routes against it.
func (g *group) setPolicy(ctx context.Context, p RoutePolicy) error {
	pol := g.hub.cfg.policy(&p)
	if hardLimitFactor*pol.max > g.hardMax {
		return fmt.Errorf("%w: group %s: max prefixes %d above the %d it started with", ErrRestartNeeded,
			g.cfg.Name, pol.max, g.hardMax/hardLimitFactor)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	if pol == g.pol {
		return nil
	}
	defer g.bumpLocked()
	g.pol = pol
	g.log.Info("route policy changed", "reason", fmt.Sprintf("max_prefixes %d, accept_more_specifics %v, local_pref %d",
		pol.max, pol.moreSpecifics, pol.localPref))
	for _, c := range g.byID {
		g.reapplyLocked(ctx, c, false)
	}
	return nil
}

func (g *group) stopRestartLocked(c *cpeState) {
	c.gen++
	if c.restart != nil {
		c.restart.Stop()
		c.restart = nil
	}
}

// onEvent handles GoBGP's watch events in order.
func (g *group) onEvent(r *api.WatchEventResponse) {
	ctx := context.Background()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	defer g.bumpLocked()
	if pe := r.GetPeer(); pe != nil {
		if pe.Type == api.WatchEventResponse_PeerEvent_STATE && pe.Peer != nil && pe.Peer.State != nil {
			g.peerStateLocked(ctx, pe.Peer.State)
		}
		return
	}
	for _, p := range r.GetTable().GetPaths() {
		addr, err := netip.ParseAddr(p.NeighborIp)
		if err != nil {
			continue
		}
		addr = addr.Unmap()
		if g.sync != nil && addr == g.sync.addr {
			if p.Nlri == nil {
				g.syncEORLocked(p.Family)
			}
			continue
		}
		c, ok := g.cpes[addr]
		if !ok {
			continue
		}
		switch {
		case p.Nlri == nil:
			g.endOfRIBLocked(ctx, c, p.Family)
		case p.IsWithdraw:
			if pfx, ok := prefixOf(p); ok {
				g.withdrawLocked(ctx, c, pfx)
			}
		default:
			g.announceLocked(ctx, c, p)
		}
	}
}

func (g *group) peerStateLocked(ctx context.Context, st *api.PeerState) {
	addr, err := netip.ParseAddr(st.NeighborAddress)
	if err != nil {
		return
	}
	c, ok := g.cpes[addr.Unmap()]
	if !ok {
		return
	}
	up := st.SessionState == api.PeerState_ESTABLISHED
	switch {
	case up && !c.established:
		c.established = true
		c.since = time.Now()
		c.synced = false
		c.eor = 0
		if id, err := netip.ParseAddr(st.RouterId); err == nil {
			c.routerID = id
		}
		g.stopRestartLocked(c)
		g.learnGRLocked(ctx, c)
		g.log.Info("CPE BGP session established", "id", c.ID, "peer", c.Overlay.String(), "state", "ESTABLISHED")
		if len(c.grFamilies) == 0 {
			// Without GR there is no End-of-RIB to wait for.
			c.synced = true
			g.sweepStaleLocked(ctx, c)
			g.checkSyncLocked()
		}
	case !up && c.established:
		c.established = false
		c.synced = false
		if g.closing {
			return // the hub is going away; the CPEs keep the routes
		}
		if c.grTime > 0 && len(c.routes) > 0 {
			for p, a := range c.routes {
				a.stale = true
				c.routes[p] = a
			}
			d := min(c.grTime, g.hub.cfg.RestartTime)
			gen := c.gen
			c.restart = time.AfterFunc(d, func() { g.restartExpired(c, gen) })
			g.log.Info("CPE BGP session down, keeping its routes for its restart time", "id", c.ID,
				"peer", c.Overlay.String(), "state", st.SessionState.String(), "routes", len(c.routes), "restart_time", d.String())
			return
		}
		n := len(c.routes)
		for p := range c.routes {
			g.withdrawLocked(ctx, c, p)
		}
		g.log.Info("CPE BGP session down, routes withdrawn", "id", c.ID, "peer", c.Overlay.String(),
			"state", st.SessionState.String(), "routes", n)
	}
}

// learnGRLocked reads the GR capability the CPE sent.
func (g *group) learnGRLocked(ctx context.Context, c *cpeState) {
	c.grTime, c.grFamilies = 0, nil
	err := g.s.ListPeer(ctx, &api.ListPeerRequest{Address: c.Overlay.String()}, func(p *api.Peer) {
		if gr := p.GetGracefulRestart(); gr != nil && gr.PeerRestartTime > 0 {
			c.grTime = time.Duration(gr.PeerRestartTime) * time.Second
		}
		for _, a := range p.AfiSafis {
			if a.GetMpGracefulRestart().GetState().GetReceived() && a.GetState().GetFamily() != nil {
				c.grFamilies = append(c.grFamilies, a.GetState().GetFamily())
			}
		}
	})
	if err != nil {
		g.log.Warn("ListPeer failed", "id", c.ID, "err", err)
	}
	if len(c.grFamilies) == 0 {
		c.grTime = 0
	}
}

func (g *group) restartExpired(c *cpeState, gen uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c.gen != gen || g.closed {
		return
	}
	defer g.bumpLocked()
	g.log.Info("CPE did not return within its restart time, withdrawing its routes", "id", c.ID, "peer", c.Overlay.String())
	ctx := context.Background()
	for p := range c.routes {
		g.withdrawLocked(ctx, c, p)
	}
}

// eorBit is a family's bit in cpeState.eor.
func eorBit(afi api.Family_Afi) uint8 {
	if afi == api.Family_AFI_IP6 {
		return 2
	}
	return 1
}

func (g *group) endOfRIBLocked(ctx context.Context, c *cpeState, f *api.Family) {
	if f == nil || !c.established {
		return
	}
	c.eor |= eorBit(f.Afi)
	for _, gf := range c.grFamilies {
		if c.eor&eorBit(gf.Afi) == 0 {
			return
		}
	}
	c.synced = true
	g.sweepStaleLocked(ctx, c)
	g.checkSyncLocked()
}

// sweepStaleLocked withdraws routes the CPE did not re-advertise after it
// came back (RFC 4724 §4.2, the hub as helper).
func (g *group) sweepStaleLocked(ctx context.Context, c *cpeState) {
	for p, a := range c.routes {
		if a.stale {
			g.withdrawLocked(ctx, c, p)
		}
	}
}

// peerAddress is a GoBGP peer's address: a dynamic neighbor has it only in
// its state, a configured peer in its configuration too.
func peerAddress(p *api.Peer) string {
	if a := p.GetState().GetNeighborAddress(); a != "" {
		return a
	}
	return p.GetConf().GetNeighborAddress()
}

// hostPrefix is the dynamic-neighbor prefix that matches only a.
func hostPrefix(a netip.Addr) string {
	return netip.PrefixFrom(a, a.BitLen()).String()
}

func prefixOf(p *api.Path) (netip.Prefix, bool) {
	n, err := apiutil.GetNativeNlri(p)
	if err != nil {
		return netip.Prefix{}, false
	}
	var ip net.IP
	var bits uint8
	switch n := n.(type) {
	case *bgp.IPAddrPrefix:
		ip, bits = n.Prefix.To4(), n.Length
	case *bgp.IPv6AddrPrefix:
		ip, bits = n.Prefix.To16(), n.Length
	default:
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Prefix{}, false
	}
	pfx, err := a.Prefix(int(bits))
	return pfx, err == nil
}

// nextHopFor picks the NEXT_HOP the hub advertises for a CPE prefix: the
// ESP endpoint when the family allows (so speakers without the Tunnel
// Encapsulation attribute resolve it, RFC 5565), else the CPE's overlay
// address.
func nextHopFor(p netip.Prefix, c *CPE) netip.Addr {
	ep := c.Endpoint.Addr()
	if p.Addr().Is4() {
		if ep.Is4() || !c.Overlay.Is4() {
			return ep
		}
		return c.Overlay
	}
	if ep.Is4() {
		return netip.AddrFrom16(ep.As16())
	}
	return ep
}
