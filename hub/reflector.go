package hub

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/mpsa-vpn/mpsa/bgp/rr"
	"github.com/mpsa-vpn/mpsa/configs"
)

// The BGP route reflector is package bgp/rr: one GoBGP instance per group,
// listening on the hub's overlay addresses of the group (port 179), which
// accepts a session only from a connected CPE's overlay address and
// re-originates the CPE routes it validated (authorised prefix, ESP endpoint
// = the outer address the hub sees on the CPE's IKE SA). The hub tells it
// which CPEs are up.
//
// gRPC: bgp.grpc_listen serves the first group's GoBGP API; at start the
// n-th group (in configuration order) gets the port n-1 above it. A group
// keeps its port while it runs; one added (or restarted) by a reload takes
// the lowest port from bgp.grpc_listen's up that no running group holds, so
// a reload never moves another group's API. `mpsa-hub status bgp` lists
// them, for `gobgp -p PORT neighbor`.

// startReflector builds the route reflector and its groups. Groups that
// had CPEs connected when the hub stopped (the lease store says which)
// start as restarting speakers (RFC 4724) and get those CPEs registered at
// once, so that the CPEs keep the routes they hold and the hub sends its
// table only when all of them are back, or after the deferral time.
func (h *Hub) startReflector(cfg *configs.Hub) error {
	h.rrMaxRoutes = max(maxPrefixes(cfg), rr.DefaultMaxRoutes)
	r, err := rr.New(rr.Config{ASN: cfg.BGP.ASN, RouterID: cfg.BGP.RouterID, ClusterID: cfg.BGP.ClusterID,
		MaxRoutesPerCPE: h.rrMaxRoutes, Logger: h.root})
	if err != nil {
		return fmt.Errorf("hub: route reflector: %w", err)
	}
	h.rr = r
	live := h.pools.live()
	for i := range cfg.Groups {
		g := &cfg.Groups[i]
		restarting := false
		for _, l := range live {
			restarting = restarting || l.group == g.Name
		}
		if err := h.addReflectorGroup(cfg, i, restarting); err != nil {
			return err
		}
	}
	var expected []string
	for name, l := range live {
		c := h.prov.Load().cpes[name]
		if c == nil || c.Group != l.group {
			continue
		}
		rc := rr.CPE{ID: name, Group: l.group, Overlay: overlayOf(l.addrs), Endpoint: l.endpoint, Prefixes: c.Prefixes}
		if err := h.rr.CPEUp(h.ctx, rc); err != nil {
			h.log.Warn("CPE of the last run not registered with the route reflector", "id", name, "group", l.group, "err", err)
			continue
		}
		expected = append(expected, name)
	}
	if len(expected) > 0 {
		h.log.Info("route reflector restarting: waiting for the CPEs of the last run", "reason", fmt.Sprintf("%d CPEs", len(expected)))
		h.mu.Lock()
		h.wg.Add(1)
		h.mu.Unlock()
		go h.routineRestartSweep(expected)
	}
	return nil
}

// maxPrefixes is the largest of the groups' bgp.max_prefixes. Each group
// enforces its own (rr.RoutePolicy); the route reflector's hub-wide bound
// (rr.Config.MaxRoutesPerCPE, at least rr.DefaultMaxRoutes) only sets how
// far a reload can raise a group's limit without restarting the group:
// GoBGP closes a session beyond four times the larger of the two.
func maxPrefixes(cfg *configs.Hub) int {
	m := 0
	for _, g := range cfg.Groups {
		m = max(m, g.BGP.MaxPrefixes)
	}
	if m == 0 {
		m = configs.DefaultMaxPrefixes
	}
	return m
}

// routineRestartSweep withdraws, after the restart deferral (plus the time
// a CPE needs to reconnect), the CPEs of the last run that did not come
// back: their routes, kept by the other CPEs across the restart, go.
func (h *Hub) routineRestartSweep(names []string) {
	defer h.wg.Done()
	wake := make(chan struct{})
	stop := h.clock.AfterFunc(rr.DefaultDeferralTime+rr.DefaultHoldTime/3, func() { close(wake) })
	defer stop()
	select {
	case <-h.ctx.Done():
		return
	case <-wake:
	}
	for _, name := range names {
		h.mu.Lock()
		back := len(h.byName[name]) > 0
		h.mu.Unlock()
		if back {
			continue
		}
		h.log.Info("CPE of the last run did not come back, withdrawing its routes", "id", name, "reason", "restart sweep")
		if err := h.rr.CPEDown(h.ctx, name); err != nil && !errors.Is(err, rr.ErrNoCPE) {
			h.log.Debug("route reflector", "id", name, "err", err)
		}
		h.pools.markLive(name, netip.AddrPort{}, false)
	}
}

// reflectorGroup is a configured group as the route reflector takes it.
func (h *Hub) reflectorGroup(cfg *configs.Hub, i int, restarting bool) rr.GroupConfig {
	g := &cfg.Groups[i]
	gc := rr.GroupConfig{Name: g.Name, Restarting: restarting}
	port := uint16(rr.DefaultBGPPort)
	if h.opts.bgpPort != 0 {
		port = h.opts.bgpPort
	}
	for _, a := range g.Pool.HubAddrs() {
		gc.Listen = append(gc.Listen, netip.AddrPortFrom(a, port))
	}
	grpc := cfg.BGP.GRPCListen
	if h.opts.grpc != nil {
		grpc = *h.opts.grpc
	}
	if grpc.IsValid() {
		if a, ok := h.freeGRPC(grpc); ok {
			gc.GRPC = a.String()
		} else {
			h.log.Warn("no gRPC API for the group's route reflector", "group", g.Name,
				"reason", fmt.Sprintf("no free port from %v to 65535", grpc))
		}
	}
	for _, p := range cfg.BGP.Peers {
		if p.Group == g.Name {
			gc.Peers = append(gc.Peers, rr.PeerConfig{Address: p.Address, ASN: p.ASN, Port: p.Port})
		}
	}
	pol := routePolicy(g)
	gc.Policy = &pol
	return gc
}

// routePolicy is a group's groups[].bgp as the route reflector takes it.
func routePolicy(g *configs.Group) rr.RoutePolicy {
	return rr.RoutePolicy{MaxPrefixes: g.BGP.MaxPrefixes, AcceptMoreSpecifics: g.BGP.AcceptMoreSpecifics, LocalPref: g.BGP.LocalPref}
}

// freeGRPC returns the lowest address from base up (same IP address, port
// counting up) that no running group's gRPC API holds.
func (h *Hub) freeGRPC(base netip.AddrPort) (netip.AddrPort, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	used := make(map[string]bool, len(h.rrGroups))
	for _, g := range h.rrGroups {
		used[g.GRPC] = true
	}
	for p := uint32(base.Port()); p <= 65535; p++ {
		a := netip.AddrPortFrom(base.Addr(), uint16(p))
		if !used[a.String()] {
			return a, true
		}
	}
	return netip.AddrPort{}, false
}

func (h *Hub) addReflectorGroup(cfg *configs.Hub, i int, restarting bool) error {
	gc := h.reflectorGroup(cfg, i, restarting)
	if err := h.rr.AddGroup(h.ctx, gc); err != nil {
		return fmt.Errorf("hub: route reflector, group %s: %w", gc.Name, err)
	}
	h.mu.Lock()
	h.rrGroups[gc.Name] = gc
	h.mu.Unlock()
	return nil
}

// syncReflector follows a reload: groups removed, added, or whose BGP
// settings changed (restarted); a group's route policy (groups[].bgp) is
// changed in place, unless it raises max_prefixes beyond what the running
// group can take (then the group restarts); CPEs whose prefixes changed are
// updated.
func (h *Hub) syncReflector(cfg *configs.Hub, diff configs.HubDiff) {
	if h.rr == nil {
		return
	}
	restart := map[string]bool{}
	for _, gc := range diff.GroupsChanged {
		for _, f := range gc.Fields {
			if f == "pool.ipv4" || f == "pool.ipv6" {
				restart[gc.Name] = true
			}
		}
	}
	if slices.Contains(diff.Changed, "bgp.peers") {
		for _, g := range cfg.Groups {
			restart[g.Name] = true
		}
	}
	for i := range cfg.Groups {
		g := &cfg.Groups[i]
		h.mu.Lock()
		running, ok := h.rrGroups[g.Name]
		h.mu.Unlock()
		pol := routePolicy(g)
		if !ok || restart[g.Name] || running.Policy != nil && *running.Policy == pol {
			continue
		}
		err := h.rr.SetRoutePolicy(h.ctx, g.Name, pol)
		switch {
		case errors.Is(err, rr.ErrRestartNeeded):
			h.log.Info("route reflector group restarts for its new route limit", "group", g.Name, "reason", err.Error())
			restart[g.Name] = true
		case err != nil:
			h.log.Error("route policy not changed", "group", g.Name, "err", err)
		default:
			h.mu.Lock()
			running.Policy = &pol
			h.rrGroups[g.Name] = running
			h.mu.Unlock()
		}
	}
	for _, name := range append(append([]string(nil), diff.GroupsRemoved...), keys(restart)...) {
		if err := h.rr.RemoveGroup(h.ctx, name); err != nil && !errors.Is(err, rr.ErrNoGroup) {
			h.log.Error("route reflector group not removed", "group", name, "err", err)
		}
		h.mu.Lock()
		delete(h.rrGroups, name)
		h.mu.Unlock()
	}
	for i, g := range cfg.Groups {
		if slices.Contains(diff.GroupsAdded, g.Name) || restart[g.Name] {
			if err := h.addReflectorGroup(cfg, i, false); err != nil {
				h.log.Error("route reflector group not started", "group", g.Name, "err", err)
				continue
			}
			if restart[g.Name] {
				h.mu.Lock()
				var names []string
				for name, conns := range h.byName {
					if len(conns) > 0 && conns[0].group == g.Name {
						names = append(names, name)
					}
				}
				h.mu.Unlock()
				for _, n := range names {
					h.reflectorUp(n)
				}
			}
		}
	}
	for _, ch := range diff.CPEsChanged {
		if slices.Contains(ch.Fields, "prefixes") {
			h.reflectorUp(cpeName(ch.New.Identity))
		}
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// overlayOf picks the overlay address a CPE's BGP session comes from: its
// IPv4 one if it has one.
func overlayOf(addrs []netip.Addr) netip.Addr {
	for _, a := range addrs {
		if a.Is4() {
			return a
		}
	}
	if len(addrs) > 0 {
		return addrs[0]
	}
	return netip.Addr{}
}

// reflectorUp tells the route reflector about a CPE's newest IKE SA that
// the key server accepted.
func (h *Hub) reflectorUp(name string) {
	if h.rr == nil {
		return
	}
	h.mu.Lock()
	var rc rr.CPE
	ok := false
	for _, c := range h.connsOfLocked(name) {
		if !c.joined {
			continue
		}
		var addrs []netip.Addr
		for _, v := range c.vips {
			addrs = append(addrs, v.Addr())
		}
		rc = rr.CPE{ID: name, Group: c.group, Overlay: overlayOf(addrs), Endpoint: endpoint(c.remote, c.encap)}
		ok = true
		break
	}
	h.mu.Unlock()
	if !ok {
		return
	}
	if c := h.prov.Load().cpes[name]; c != nil {
		rc.Prefixes = c.Prefixes
	}
	h.pools.markLive(name, rc.Endpoint, true)
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()
	if err := h.rr.CPEUp(ctx, rc); err != nil {
		h.log.Error("route reflector refused the CPE", "id", name, "group", rc.Group, "err", err)
	}
}

// reflectorDown tells the route reflector that a CPE has no IKE SA left.
// A hub that is closing keeps the CPE marked live, so that after a restart
// it waits for it (see startReflector).
func (h *Hub) reflectorDown(name string) {
	if h.rr == nil {
		return
	}
	h.mu.Lock()
	closing := h.closed
	h.mu.Unlock()
	if closing {
		return
	}
	h.pools.markLive(name, netip.AddrPort{}, false)
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()
	if err := h.rr.CPEDown(ctx, name); err != nil && !errors.Is(err, rr.ErrNoCPE) && !errors.Is(err, rr.ErrClosed) {
		h.log.Error("route reflector did not take the CPE down", "id", name, "err", err)
	}
}
