package hub

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mpsa-vpn/mpsa/bgp/rr"
	"github.com/mpsa-vpn/mpsa/internal/ops"
	"github.com/mpsa-vpn/mpsa/mpsa"
	"github.com/mpsa-vpn/mpsa/routing"
)

// Views of `mpsa-hub status`: each is JSON data (status -json) with a text
// rendering in the style of `swanctl --list-sas`.

// SAView lists the CPEs' IKE SAs.
type SAView struct {
	Now time.Time `json:"now"`
	SAs []SAEntry `json:"sas"`
}

// SAEntry is one IKE SA with its CHILD_SAs.
type SAEntry struct {
	CPE         string       `json:"cpe"`
	Group       string       `json:"group"`
	State       string       `json:"state"`
	SPIi        string       `json:"spi_i"`
	SPIr        string       `json:"spi_r"`
	Local       string       `json:"local"`
	Remote      string       `json:"remote"`
	LocalID     string       `json:"local_id"`
	RemoteID    string       `json:"remote_id"`
	Suite       string       `json:"suite"`
	NAT         bool         `json:"nat"`
	Established time.Time    `json:"established"`
	Overlay     []string     `json:"overlay"`
	Tunnel      uint32       `json:"tunnel"`
	AckedEpoch  uint64       `json:"acked_epoch"`
	SenderID    uint32       `json:"sender_id,omitempty"`
	Children    []ChildEntry `json:"children"`
}

// ChildEntry is one CHILD_SA.
type ChildEntry struct {
	InSPI       string    `json:"in_spi"`
	OutSPI      string    `json:"out_spi"`
	Suite       string    `json:"suite"`
	Encap       bool      `json:"encap"`
	LocalTS     []string  `json:"local_ts"`
	RemoteTS    []string  `json:"remote_ts"`
	Established time.Time `json:"established"`
}

// RenderText implements ops.TextRenderer.
func (v *SAView) RenderText(t *ops.Text) {
	if len(v.SAs) == 0 {
		t.Line("no IKE SAs")
	}
	for _, s := range v.SAs {
		t.Line("%s: %s, IKEv2, %s_i %s_r*", s.CPE, s.State, s.SPIi, s.SPIr)
		t.Indent(func() {
			t.Line("group %s, overlay %s, tunnel %d", s.Group, strings.Join(s.Overlay, " "), s.Tunnel)
			t.Line("local  '%s' @ %s", s.LocalID, s.Local)
			nat := ""
			if s.NAT {
				nat = " (NAT)"
			}
			t.Line("remote '%s' @ %s%s", s.RemoteID, s.Remote, nat)
			t.Line("%s", s.Suite)
			t.Line("established %s", ops.Ago(v.Now, s.Established))
			mp := fmt.Sprintf("mpsa: acked epoch %d", s.AckedEpoch)
			if s.SenderID != 0 {
				mp += fmt.Sprintf(", Sender-ID %d", s.SenderID)
			}
			t.Line("%s", mp)
			for i, c := range s.Children {
				mode := "TUNNEL"
				if c.Encap {
					mode = "TUNNEL-in-UDP"
				}
				t.Line("child #%d: INSTALLED, %s, ESP:%s", i+1, mode, c.Suite)
				t.Indent(func() {
					t.Line("installed %s", ops.Ago(v.Now, c.Established))
					t.Line("in  %s", c.InSPI)
					t.Line("out %s", c.OutSPI)
					t.Line("local  %s", strings.Join(c.LocalTS, " "))
					t.Line("remote %s", strings.Join(c.RemoteTS, " "))
				})
			}
		})
	}
}

// GroupView lists the MPSA groups.
type GroupView struct {
	Now    time.Time    `json:"now"`
	Groups []GroupEntry `json:"groups"`
}

// GroupEntry is one group and its live epochs.
type GroupEntry struct {
	Name        string       `json:"name"`
	Suite       string       `json:"suite"`
	PRF         string       `json:"prf"`
	Pools       []string     `json:"pools"`
	HubAddrs    []string     `json:"hub_addrs"`
	Provisioned int          `json:"provisioned"`
	Connected   int          `json:"connected"`
	OnCurrent   int          `json:"on_current"`
	Epoch       uint64       `json:"epoch"`
	SPI         string       `json:"spi"`
	Epochs      []EpochEntry `json:"epochs"`
}

// EpochEntry is one generation of a group SA.
type EpochEntry struct {
	Epoch      uint64        `json:"epoch"`
	SPI        string        `json:"spi"`
	Created    time.Time     `json:"created"`
	Expires    time.Time     `json:"expires"`
	Superseded time.Time     `json:"superseded,omitzero"`
	Dies       time.Time     `json:"dies"`
	Sent       int           `json:"sent"`
	Acked      int           `json:"acked"`
	AckMax     time.Duration `json:"ack_max_ns"`
	AckMean    time.Duration `json:"ack_mean_ns"`
}

// RenderText implements ops.TextRenderer.
func (v *GroupView) RenderText(t *ops.Text) {
	for _, g := range v.Groups {
		t.Line("%s: epoch %d, esp_spi %s, ESP:%s, %s", g.Name, g.Epoch, g.SPI, g.Suite, g.PRF)
		t.Indent(func() {
			t.Line("pools %s, hub %s", strings.Join(g.Pools, " "), strings.Join(g.HubAddrs, " "))
			t.Line("cpes %d provisioned, %d connected, %d/%d on epoch %d", g.Provisioned, g.Connected, g.OnCurrent, g.Connected, g.Epoch)
			for i := len(g.Epochs) - 1; i >= 0; i-- {
				e := g.Epochs[i]
				line := fmt.Sprintf("epoch %d: spi %s, created %s, expires %s", e.Epoch, e.SPI, ops.Ago(v.Now, e.Created), ops.In(v.Now, e.Expires))
				if !e.Superseded.IsZero() {
					line += fmt.Sprintf(", superseded %s, removed %s", ops.Ago(v.Now, e.Superseded), ops.In(v.Now, e.Dies))
				}
				t.Line("%s", line)
				t.Indent(func() {
					t.Line("acked %d/%d, ack mean %v, max %v", e.Acked, e.Sent, e.AckMean.Round(time.Microsecond), e.AckMax.Round(time.Microsecond))
				})
			}
		})
	}
}

// CPEView lists the provisioned CPEs.
type CPEView struct {
	CPEs []CPEEntry `json:"cpes"`
}

// CPEEntry is one provisioned CPE.
type CPEEntry struct {
	Name       string   `json:"name"`
	Group      string   `json:"group"`
	State      string   `json:"state"` // CONNECTED or DOWN
	Overlay    []string `json:"overlay"`
	Endpoint   string   `json:"endpoint,omitempty"`
	AckedEpoch uint64   `json:"acked_epoch"`
	Pending    uint64   `json:"pending_epoch,omitempty"`
	Prefixes   []string `json:"prefixes"`
}

// RenderText implements ops.TextRenderer.
func (v *CPEView) RenderText(t *ops.Text) {
	tab := &ops.Table{Header: []string{"CPE", "GROUP", "STATE", "OVERLAY", "ENDPOINT", "EPOCH", "PREFIXES"}}
	for _, c := range v.CPEs {
		ep := fmt.Sprint(c.AckedEpoch)
		if c.Pending != 0 {
			ep += fmt.Sprintf(" (sending %d)", c.Pending)
		}
		endpoint := c.Endpoint
		if endpoint == "" {
			endpoint = "-"
		}
		tab.Rows = append(tab.Rows, []string{c.Name, c.Group, c.State, strings.Join(c.Overlay, ","), endpoint, ep, strings.Join(c.Prefixes, ",")})
	}
	t.Table(tab)
}

// RouteView lists the hub's overlay routes and what the route reflector
// holds per group: its counters and the CPE routes it reflects.
type RouteView struct {
	Overlay   []RouteEntry     `json:"overlay"`
	BGP       []BGPGroup       `json:"bgp"`
	Reflected []ReflectedRoute `json:"reflected"`
}

// ReflectedRoute is a CPE route the route reflector reflects (rr.Route).
type ReflectedRoute struct {
	Group     string `json:"group"`
	Prefix    string `json:"prefix"`
	Endpoint  string `json:"endpoint"`
	NextHop   string `json:"next_hop"`
	CPE       string `json:"cpe"`
	LocalPref uint32 `json:"local_pref"`
	Stale     bool   `json:"stale"`
}

// RouteEntry is one route of the hub's FIB.
type RouteEntry struct {
	Prefix   string `json:"prefix"`
	Endpoint string `json:"endpoint"`
	Tunnel   uint32 `json:"tunnel"`
	CPE      string `json:"cpe,omitempty"`
	Resolved bool   `json:"resolved"`
}

// RenderText implements ops.TextRenderer.
func (v *RouteView) RenderText(t *ops.Text) {
	t.Line("overlay routes (CHILD_SAs):")
	t.Indent(func() {
		tab := &ops.Table{Header: []string{"PREFIX", "ENDPOINT", "TUNNEL", "CPE"}}
		for _, r := range v.Overlay {
			tab.Rows = append(tab.Rows, []string{r.Prefix, r.Endpoint, fmt.Sprint(r.Tunnel), r.CPE})
		}
		t.Table(tab)
	})
	t.Line("bgp routes (reflected between CPEs):")
	t.Indent(func() {
		if len(v.BGP) == 0 {
			t.Line("BGP route reflector not running")
		}
		for _, g := range v.BGP {
			hint := ""
			if g.GRPC != "" {
				hint = fmt.Sprintf(" (gobgp -u %s -p %s global rib -a ipv4)", hostOf(g.GRPC), portOf(g.GRPC))
			}
			t.Line("%s: %d routes, %d stale%s", g.Name, g.Routes, g.StaleRoutes, hint)
			tab := &ops.Table{Header: []string{"PREFIX", "ENDPOINT", "NEXT HOP", "CPE", "LOCPRF", "STATE"}}
			for _, r := range v.Reflected {
				if r.Group != g.Name {
					continue
				}
				state := "fresh"
				if r.Stale {
					state = "stale"
				}
				tab.Rows = append(tab.Rows, []string{r.Prefix, r.Endpoint, r.NextHop, r.CPE, fmt.Sprint(r.LocalPref), state})
			}
			if len(tab.Rows) > 0 {
				t.Indent(func() { t.Table(tab) })
			}
		}
	})
}

func hostOf(a string) string {
	if ap, err := netip.ParseAddrPort(a); err == nil {
		return ap.Addr().String()
	}
	return a
}

func portOf(a string) string {
	if ap, err := netip.ParseAddrPort(a); err == nil {
		return fmt.Sprint(ap.Port())
	}
	return ""
}

// BGPView is the route reflector, group by group.
type BGPView struct {
	Enabled bool       `json:"enabled"`
	Groups  []BGPGroup `json:"groups"`
}

// BGPGroup is one group's GoBGP instance and its counters (rr.Stats).
type BGPGroup struct {
	Name            string   `json:"name"`
	Listen          []string `json:"listen"`
	GRPC            string   `json:"grpc,omitempty"`
	Synced          bool     `json:"synced"`
	CPEs            uint64   `json:"cpes"`
	Sessions        uint64   `json:"sessions"`
	Routes          uint64   `json:"routes"`
	StaleRoutes     uint64   `json:"stale_routes"`
	Accepted        uint64   `json:"accepted"`
	ForeignPrefix   uint64   `json:"foreign_prefix"`
	EndpointRewrite uint64   `json:"endpoint_rewrite"`
	EndpointReject  uint64   `json:"endpoint_reject"`
	BadRoute        uint64   `json:"bad_route"`
	TooManyRoutes   uint64   `json:"too_many_routes"`
	RefusedSessions uint64   `json:"refused_sessions"`
	WithdrawnDown   uint64   `json:"withdrawn_down"`
	// Policy is the group's route policy (groups[].bgp) in force.
	Policy BGPPolicy `json:"policy"`
	// Peers are the registered CPEs' sessions (rr.Session).
	Peers []BGPSession `json:"peers"`
}

// BGPPolicy is a group's route policy.
type BGPPolicy struct {
	MaxPrefixes         int    `json:"max_prefixes"`
	AcceptMoreSpecifics bool   `json:"accept_more_specifics"`
	LocalPref           uint32 `json:"local_pref"`
}

// BGPSession is a CPE's BGP session with the route reflector.
type BGPSession struct {
	CPE      string    `json:"cpe"`
	Overlay  string    `json:"overlay"`
	Endpoint string    `json:"endpoint"`
	State    string    `json:"state"`
	Since    time.Time `json:"since,omitzero"`
	Uptime   string    `json:"uptime,omitempty"`
	Received int       `json:"received"`
	Accepted int       `json:"accepted"`
	Stale    int       `json:"stale"`
}

// RenderText implements ops.TextRenderer.
func (v *BGPView) RenderText(t *ops.Text) {
	if !v.Enabled {
		t.Line("BGP route reflector not running")
		return
	}
	for _, g := range v.Groups {
		state := "synced"
		if !g.Synced {
			state = "restarting, waiting for the CPEs' End-of-RIB"
		}
		grpc := ""
		if g.GRPC != "" {
			grpc = fmt.Sprintf(", gRPC %s (gobgp -u %s -p %s neighbor)", g.GRPC, hostOf(g.GRPC), portOf(g.GRPC))
		}
		t.Line("%s: listening %s%s, %s", g.Name, strings.Join(g.Listen, " "), grpc, state)
		t.Indent(func() {
			t.Line("cpes %d registered, %d sessions established, %d routes (%d stale)", g.CPEs, g.Sessions, g.Routes, g.StaleRoutes)
			t.Line("announcements: %d accepted, %d foreign prefix, %d endpoint rewritten, %d endpoint refused, %d unusable, %d over the route limit",
				g.Accepted, g.ForeignPrefix, g.EndpointRewrite, g.EndpointReject, g.BadRoute, g.TooManyRoutes)
			t.Line("sessions refused %d, routes withdrawn with their CPE %d", g.RefusedSessions, g.WithdrawnDown)
			more := "only the authorised prefixes"
			if g.Policy.AcceptMoreSpecifics {
				more = "more specifics accepted"
			}
			t.Line("policy: max %d prefixes per CPE, %s, local_pref %d", g.Policy.MaxPrefixes, more, g.Policy.LocalPref)
			if len(g.Peers) == 0 {
				return
			}
			tab := &ops.Table{Header: []string{"CPE", "OVERLAY", "ENDPOINT", "STATE", "UPTIME", "RECEIVED", "ACCEPTED", "STALE"}}
			for _, p := range g.Peers {
				up := p.Uptime
				if up == "" {
					up = "-"
				}
				tab.Rows = append(tab.Rows, []string{p.CPE, p.Overlay, p.Endpoint, p.State, up,
					fmt.Sprint(p.Received), fmt.Sprint(p.Accepted), fmt.Sprint(p.Stale)})
			}
			t.Table(tab)
		})
	}
}

// registerStatus puts the views on the status socket.
func (h *Hub) registerStatus() {
	h.status.Handle("sas", "IKE SAs of the CPEs with their CHILD_SAs (optionally of one CPE)",
		func(ctx context.Context, args []string) (any, error) { return h.SAs(args...), nil })
	h.status.Handle("groups", "MPSA groups: epoch and SPI, rollover, acknowledgements",
		func(ctx context.Context, args []string) (any, error) { return h.Groups(), nil })
	h.status.Handle("cpes", "provisioned CPEs with state, overlay address, endpoint and acked epoch",
		func(ctx context.Context, args []string) (any, error) { return h.CPEs(), nil })
	h.status.Handle("bgp", "the route reflector: per group (optionally of some groups), listen and gRPC addresses, policy, filter counters, the CPEs' sessions",
		func(ctx context.Context, args []string) (any, error) { return h.BGP(ctx, args...) })
	h.status.Handle("routes", "overlay routes to the CPEs, and the routes the reflector holds per group (optionally of some groups)",
		func(ctx context.Context, args []string) (any, error) { return h.Routes(ctx, args...) })
	h.status.Handle("rekey", "rekey GROUP: roll the group over to a new group SA now (ROLL1/ROLL2 as for a lifetime rekey)",
		h.rekeyCommand)
}

// SAs returns the status view of the CPEs' IKE SAs; with names, only those
// CPEs'.
func (h *Hub) SAs(names ...string) *SAView {
	v := &SAView{Now: time.Now()}
	acked := h.cpeStatus()
	h.mu.Lock()
	type row struct {
		c    *cpeConn
		vips []netip.Prefix
		tun  uint32
	}
	var rows []row
	for _, c := range h.conns {
		if len(names) > 0 && !slices.Contains(names, c.name) {
			continue
		}
		rows = append(rows, row{c: c, vips: c.vips, tun: uint32(c.tunnel)})
	}
	h.mu.Unlock()
	for _, r := range rows {
		i := r.c.sa.Info()
		e := SAEntry{CPE: r.c.name, Group: r.c.group, State: i.State.String(), SPIi: ops.SPI64(i.SPIi), SPIr: ops.SPI64(i.SPIr),
			Local: i.Local.String(), Remote: i.Remote.String(), LocalID: i.LocalID.String(), RemoteID: i.RemoteID.String(),
			Suite: i.Suite.String(), NAT: i.NATRemote, Established: i.Established, Tunnel: r.tun}
		for _, p := range r.vips {
			e.Overlay = append(e.Overlay, p.String())
		}
		if s, ok := acked[r.c.name]; ok && s.Connected {
			e.AckedEpoch, e.SenderID = s.AckedEpoch, s.SenderID
		}
		for _, ch := range i.Children {
			ce := ChildEntry{InSPI: ops.SPI32(ch.InSPI), OutSPI: ops.SPI32(ch.OutSPI), Suite: ch.Suite.String(), Encap: ch.Encap,
				Established: ch.Established}
			for _, p := range prefixesOf(ch.LocalTS) {
				ce.LocalTS = append(ce.LocalTS, p.String())
			}
			for _, p := range prefixesOf(ch.RemoteTS) {
				ce.RemoteTS = append(ce.RemoteTS, p.String())
			}
			e.Children = append(e.Children, ce)
		}
		v.SAs = append(v.SAs, e)
	}
	sort.Slice(v.SAs, func(i, j int) bool {
		if v.SAs[i].CPE != v.SAs[j].CPE {
			return v.SAs[i].CPE < v.SAs[j].CPE
		}
		return v.SAs[i].Established.Before(v.SAs[j].Established)
	})
	return v
}

// cpeStatus is the key server's view of each CPE, by name.
func (h *Hub) cpeStatus() map[string]mpsa.CPEStatus {
	out := map[string]mpsa.CPEStatus{}
	for _, g := range h.ks.Status() {
		for _, c := range g.CPEs {
			out[c.Name] = c
		}
	}
	return out
}

// Groups returns the status view of the MPSA groups.
func (h *Hub) Groups() *GroupView {
	v := &GroupView{Now: h.clock.Now()}
	cfg := h.Config()
	for _, g := range h.ks.Status() {
		e := GroupEntry{Name: g.Name, Suite: g.Suite.String(), PRF: g.PRF.String(), Provisioned: len(g.CPEs), Connected: g.Connected}
		if cg := cfg.Group(g.Name); cg != nil {
			for _, p := range []netip.Prefix{cg.Pool.IPv4, cg.Pool.IPv6} {
				if p.IsValid() {
					e.Pools = append(e.Pools, p.Masked().String())
				}
			}
			for _, a := range cg.Pool.HubAddrs() {
				e.HubAddrs = append(e.HubAddrs, a.String())
			}
		}
		for _, ep := range g.Epochs {
			e.Epochs = append(e.Epochs, EpochEntry{Epoch: ep.Epoch, SPI: ops.SPI32(ep.SPI), Created: ep.Created, Expires: ep.Expires,
				Superseded: ep.Superseded, Dies: ep.Dies, Sent: ep.Sent, Acked: ep.Acked, AckMax: ep.AckMax, AckMean: ep.AckMean})
		}
		if n := len(g.Epochs); n > 0 {
			e.Epoch, e.SPI = g.Epochs[n-1].Epoch, ops.SPI32(g.Epochs[n-1].SPI)
			for _, c := range g.CPEs {
				if c.Connected && c.AckedEpoch == e.Epoch {
					e.OnCurrent++
				}
			}
		}
		v.Groups = append(v.Groups, e)
	}
	return v
}

// CPEs returns the status view of the provisioned CPEs.
func (h *Hub) CPEs() *CPEView {
	ks := h.cpeStatus()
	cfg := h.Config()
	h.mu.Lock()
	endpoints := map[string]string{}
	for name := range h.byName {
		if newest := h.connsOfLocked(name); len(newest) > 0 {
			endpoints[name] = newest[0].remote.String()
		}
	}
	h.mu.Unlock()
	v := &CPEView{}
	for _, c := range cfg.CPEs {
		name := cpeName(c.Identity)
		e := CPEEntry{Name: name, Group: c.Group, State: "DOWN", Endpoint: endpoints[name]}
		if e.Endpoint != "" {
			e.State = "CONNECTED"
		}
		for _, a := range h.pools.addrs(name) {
			e.Overlay = append(e.Overlay, a.String())
		}
		for _, p := range c.Prefixes {
			e.Prefixes = append(e.Prefixes, p.String())
		}
		if s, ok := ks[name]; ok {
			e.AckedEpoch, e.Pending = s.AckedEpoch, s.Pending
		}
		v.CPEs = append(v.CPEs, e)
	}
	sort.Slice(v.CPEs, func(i, j int) bool { return v.CPEs[i].Name < v.CPEs[j].Name })
	return v
}

// BGP returns the status view of the route reflector: of every group, or
// of the groups named.
func (h *Hub) BGP(ctx context.Context, groups ...string) (*BGPView, error) {
	v := &BGPView{}
	if h.rr == nil {
		return v, nil
	}
	v.Enabled = true
	now := time.Now()
	for _, gc := range h.reflectorGroups(groups) {
		st, err := h.rr.Stats(gc.Name)
		if err != nil {
			continue
		}
		g := BGPGroup{Name: gc.Name, GRPC: gc.GRPC, Synced: h.rr.Synced(gc.Name), CPEs: st.CPEs, Sessions: st.Sessions,
			Routes: st.Routes, StaleRoutes: st.StaleRoutes, Accepted: st.Accepted, ForeignPrefix: st.ForeignPrefix,
			EndpointRewrite: st.EndpointRewrite, EndpointReject: st.EndpointReject, BadRoute: st.BadRoute, TooManyRoutes: st.TooManyRoutes,
			RefusedSessions: st.RefusedSessions, WithdrawnDown: st.CPEWithdrawnDown}
		for _, l := range gc.Listen {
			g.Listen = append(g.Listen, l.String())
		}
		if p := gc.Policy; p != nil {
			g.Policy = BGPPolicy{MaxPrefixes: p.MaxPrefixes, AcceptMoreSpecifics: p.AcceptMoreSpecifics, LocalPref: p.LocalPref}
		}
		ss, err := h.rr.Sessions(ctx, gc.Name)
		if err != nil {
			h.log.Debug("route reflector sessions", "group", gc.Name, "err", err)
		}
		for _, s := range ss {
			b := BGPSession{CPE: s.CPE, Overlay: s.Overlay.String(), Endpoint: s.Endpoint.String(), State: s.State,
				Since: s.Since, Received: s.Received, Accepted: s.Accepted, Stale: s.Stale}
			if !s.Since.IsZero() {
				b.Uptime = s.Uptime(now).Round(time.Second).String()
			}
			g.Peers = append(g.Peers, b)
		}
		v.Groups = append(v.Groups, g)
	}
	return v, nil
}

// reflectorGroups returns the running groups of the route reflector, by
// name; only those named if names are given.
func (h *Hub) reflectorGroups(names []string) []rr.GroupConfig {
	h.mu.Lock()
	groups := make([]rr.GroupConfig, 0, len(h.rrGroups))
	for _, g := range h.rrGroups {
		if len(names) == 0 || slices.Contains(names, g.Name) {
			groups = append(groups, g)
		}
	}
	h.mu.Unlock()
	sort.Slice(groups, func(i, j int) bool { return groups[i].Name < groups[j].Name })
	return groups
}

// Routes returns the status view of the hub's routes: the overlay routes
// to the CPEs, and the route reflector's CPE routes of every group, or of
// the groups named.
func (h *Hub) Routes(ctx context.Context, groups ...string) (*RouteView, error) {
	v := &RouteView{}
	h.mu.Lock()
	owners := map[netip.Prefix]string{}
	for p, c := range h.routeOwner {
		owners[p] = c.name
	}
	h.mu.Unlock()
	for r := range h.fib.Routes() {
		e := RouteEntry{Prefix: r.Route.Prefix.String(), Endpoint: endpointString(r.Route), Tunnel: uint32(r.Route.Tunnel),
			CPE: owners[r.Route.Prefix], Resolved: r.Resolved}
		v.Overlay = append(v.Overlay, e)
	}
	b, err := h.BGP(ctx, groups...)
	if err != nil {
		return nil, err
	}
	v.BGP = b.Groups
	for _, g := range b.Groups {
		rs, err := h.rr.Routes(g.Name)
		if err != nil {
			continue // the group went away meanwhile
		}
		for _, r := range rs {
			v.Reflected = append(v.Reflected, ReflectedRoute{Group: g.Name, Prefix: r.Prefix.String(),
				Endpoint: endpointString(routing.Route{Endpoint: r.Endpoint}), NextHop: r.NextHop.String(),
				CPE: r.CPE, LocalPref: r.LocalPref, Stale: r.Stale})
		}
	}
	return v, nil
}

func endpointString(r routing.Route) string {
	if r.Endpoint.Port() == 0 {
		return r.Endpoint.Addr().String() + " (raw ESP)"
	}
	return r.Endpoint.String()
}
