package cpe

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/mpsa-vpn/mpsa/bgp/speaker"
	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/internal/ops"
	"github.com/mpsa-vpn/mpsa/mpsa"
	"github.com/mpsa-vpn/mpsa/routing"
)

// Status is a snapshot of the CPE for `mpsa-cpe status`, metrics and tests.
// It holds no key material.
type Status struct {
	Identity  string          `json:"identity"`
	Phase     string          `json:"phase"` // idle, connecting, established, waiting
	LastError string          `json:"last_error,omitempty"`
	NextTry   time.Time       `json:"next_try,omitzero"`
	Now       time.Time       `json:"now"`
	Dataplane DataplaneStatus `json:"dataplane"`
	IKE       []IKEStatus     `json:"ike"`
	Tunnel    TunnelStatus    `json:"tunnel"`
	Group     GroupStatus     `json:"group"`
	BGP       BGPStatus       `json:"bgp"`
	FIB       routing.Stats   `json:"fib"`
}

// DataplaneStatus names the backend and carries its counters.
type DataplaneStatus struct {
	Backend string          `json:"backend"`
	Stats   dataplane.Stats `json:"stats"`
}

// IKEStatus is one IKE SA with the hub.
type IKEStatus struct {
	Name        string         `json:"name"`
	SPIi        string         `json:"ike_spi_i"`
	SPIr        string         `json:"ike_spi_r"`
	State       string         `json:"state"`
	Local       netip.AddrPort `json:"local"`
	Remote      netip.AddrPort `json:"remote"`
	LocalID     string         `json:"local_id"`
	RemoteID    string         `json:"remote_id"`
	Suite       string         `json:"suite"`
	NATLocal    bool           `json:"nat_local"`
	NATRemote   bool           `json:"nat_remote"`
	Encap       bool           `json:"encap"`
	MOBIKE      bool           `json:"mobike"`
	VIPs        []netip.Prefix `json:"vips"`
	Established time.Time      `json:"established,omitzero"`
	Children    []ChildStatus  `json:"children"`
}

// ChildStatus is one CHILD_SA with the hub.
type ChildStatus struct {
	InSPI       string         `json:"in_spi"`
	OutSPI      string         `json:"out_spi"`
	Suite       string         `json:"suite"`
	LocalTS     []string       `json:"local_ts"`
	RemoteTS    []string       `json:"remote_ts"`
	Local       netip.AddrPort `json:"local"`
	Remote      netip.AddrPort `json:"remote"`
	Encap       bool           `json:"encap"`
	Established time.Time      `json:"established,omitzero"`
}

// TunnelStatus is the path to the hub's BGP port.
type TunnelStatus struct {
	Up         bool           `json:"up"`
	Overlay    netip.Addr     `json:"overlay"`     // ours
	HubOverlay netip.Addr     `json:"hub_overlay"` // the hub's
	Endpoint   netip.AddrPort `json:"endpoint"`    // our ESP endpoint as advertised
}

// GroupStatus is the group SA (MPSA) as this CPE holds it.
type GroupStatus struct {
	SAs []GroupSAStatus `json:"sas"` // oldest first
	// Phase of the rollover: none (no SA), steady (one SA both ways),
	// roll1 (a new SA accepted inbound, the old one still outbound until
	// ROLL1), roll2 (the new SA outbound, the old one inbound until ROLL2).
	Phase     string    `json:"phase"`
	NextStep  time.Time `json:"next_step,omitzero"`
	Accepted  uint64    `json:"accepted"`
	Refreshed uint64    `json:"refreshed"`
	Refused   uint64    `json:"refused"`
}

// GroupSAStatus is one group SA.
type GroupSAStatus struct {
	SPI          string `json:"spi"`
	Suite        string `json:"suite"`
	Outbound     bool   `json:"outbound"`
	SenderIDBits uint8  `json:"sender_id_bits,omitempty"`
	SenderID     uint32 `json:"sender_id,omitempty"`
}

// BGPStatus is the iBGP session with the hub's route reflector.
type BGPStatus struct {
	Running     bool           `json:"running"`
	Established bool           `json:"established"`
	State       string         `json:"state"`
	RouterID    netip.Addr     `json:"router_id"`
	ASN         uint32         `json:"asn"`
	Hub         netip.Addr     `json:"hub"`
	Endpoint    netip.AddrPort `json:"endpoint"`
	Prefixes    []netip.Prefix `json:"prefixes"`
	Stats       BGPStats       `json:"stats"`
	Routes      int            `json:"routes"`
	Stale       int            `json:"stale"`
}

// BGPStats are the speaker's counters.
type BGPStats struct {
	Established, UpdatesIn, UpdatesOut, TreatAsWithdraw, NotifySent, NotifyRecv, SinkErrors uint64
}

// Status returns a snapshot of the CPE.
func (c *CPE) Status() *Status {
	c.mu.Lock()
	st := &Status{
		Identity: c.cfg.Identity.String(),
		Phase:    c.phase,
		NextTry:  c.nextTry,
		Now:      c.clock.Now(),
		Tunnel:   TunnelStatus{Up: c.tunnel.up, Overlay: c.tunnel.vip, HubOverlay: c.tunnel.hub},
	}
	if c.lastErr != nil {
		st.LastError = c.lastErr.Error()
	}
	eng, dp, r := c.eng, c.dp, c.bgp
	prefixes := c.cfg.LAN.Prefixes
	var bgpRun bgpRun
	if r != nil {
		bgpRun = *r
	}
	c.mu.Unlock()
	if dp != nil {
		st.Dataplane = DataplaneStatus{Backend: dp.Name, Stats: dp.Backend.Stats()}
	}
	if eng != nil {
		for _, i := range eng.mgr.SAs() {
			st.IKE = append(st.IKE, ikeStatus(i))
		}
	}
	st.Group = groupStatus(c.member)
	st.FIB = c.fib.Stats()
	st.BGP = BGPStatus{State: "Idle", Prefixes: prefixes, Hub: st.Tunnel.HubOverlay}
	if r != nil {
		ss := r.sp.Stats()
		st.BGP.Running = true
		st.BGP.State = r.sp.State().String()
		st.BGP.Established = r.sp.State() == speaker.StateEstablished
		st.BGP.RouterID, st.BGP.ASN, st.BGP.Endpoint = bgpRun.routerID, bgpRun.asn, bgpRun.endpoint
		st.BGP.Stats = BGPStats{ss.Established, ss.UpdatesIn, ss.UpdatesOut, ss.TreatAsWithdraw, ss.NotifySent, ss.NotifyRecv, ss.SinkErrors}
		st.BGP.Routes, st.BGP.Stale = int(ss.RoutesLearned), int(ss.StaleRoutes)
		st.Tunnel.Endpoint = bgpRun.endpoint
	}
	return st
}

func ikeStatus(i ike.SAInfo) IKEStatus {
	s := IKEStatus{
		Name: i.Name, SPIi: ops.SPI64(i.SPIi), SPIr: ops.SPI64(i.SPIr), State: i.State.String(),
		Local: i.Local, Remote: i.Remote, LocalID: i.LocalID.String(), RemoteID: i.RemoteID.String(),
		Suite: i.Suite.String(), NATLocal: i.NATLocal, NATRemote: i.NATRemote, Encap: i.Encap, MOBIKE: i.MOBIKE,
		VIPs: i.VIPs, Established: i.Established,
	}
	for _, ch := range i.Children {
		cs := ChildStatus{InSPI: ops.SPI32(ch.InSPI), OutSPI: ops.SPI32(ch.OutSPI), Suite: ch.Suite.String(),
			Local: ch.Local, Remote: ch.Remote, Encap: ch.Encap, Established: ch.Established}
		for _, ts := range ch.LocalTS {
			cs.LocalTS = append(cs.LocalTS, ts.String())
		}
		for _, ts := range ch.RemoteTS {
			cs.RemoteTS = append(cs.RemoteTS, ts.String())
		}
		s.Children = append(s.Children, cs)
	}
	return s
}

// groupStatus describes the member's SAs (oldest first, as Member.SAs
// returns them) without keys.
func groupStatus(m *mpsa.Member) GroupStatus {
	sas := m.SAs()
	defer mpsa.WipeSAs(sas)
	ms := m.Stats()
	g := GroupStatus{Phase: "none", NextStep: m.NextDeadline(), Accepted: ms.Accepted, Refreshed: ms.Refreshed, Refused: ms.Refused}
	out := -1
	for i, sa := range sas {
		g.SAs = append(g.SAs, GroupSAStatus{SPI: ops.SPI32(sa.Keys.SPI), Suite: sa.Keys.Suite.String(),
			Outbound: sa.Dir&dataplane.Out != 0, SenderIDBits: sa.SenderIDBits, SenderID: sa.SenderID})
		if sa.Dir&dataplane.Out != 0 {
			out = i
		}
	}
	switch {
	case len(sas) == 0:
	case len(sas) == 1:
		g.Phase = "steady"
	case out < len(sas)-1:
		g.Phase = "roll1"
	default:
		g.Phase = "roll2"
	}
	return g
}

// Routes returns the FIB's paths with their resolution, for `status routes`.
func (c *CPE) Routes() []routing.RouteStatus {
	var out []routing.RouteStatus
	for r := range c.fib.Routes() {
		out = append(out, r)
	}
	return out
}

// Views for the status socket. Each renders itself like swanctl.

type overviewView struct{ *Status }

func (v overviewView) RenderText(t *ops.Text) {
	(&sasView{v.Status}).RenderText(t)
	(&mpsaView{v.Status}).RenderText(t)
	(&bgpView{v.Status}).RenderText(t)
}

type sasView struct{ *Status }

func (v *sasView) RenderText(t *ops.Text) {
	s := v.Status
	if len(s.IKE) == 0 {
		line := "hub: " + strings.ToUpper(s.Phase)
		if s.LastError != "" {
			line += ", " + s.LastError
		}
		if !s.NextTry.IsZero() {
			line += ", next attempt " + ops.In(s.Now, s.NextTry)
		}
		t.Line("%s", line)
		return
	}
	for _, sa := range s.IKE {
		t.Line("%s: %s, IKEv2, %s_i* %s_r", sa.Name, sa.State, sa.SPIi, sa.SPIr)
		t.Indent(func() {
			t.Line("local  '%s' @ %s%s", sa.LocalID, sa.Local, natNote(sa.NATLocal))
			t.Line("remote '%s' @ %s%s", sa.RemoteID, sa.Remote, natNote(sa.NATRemote))
			t.Line("%s", sa.Suite)
			if len(sa.VIPs) > 0 {
				t.Line("overlay %s", joinPrefixes(sa.VIPs))
			}
			flags := []string{}
			if sa.MOBIKE {
				flags = append(flags, "MOBIKE")
			}
			if sa.Encap {
				flags = append(flags, "UDP-encapsulated")
			}
			if len(flags) > 0 {
				t.Line("%s", strings.Join(flags, ", "))
			}
			t.Line("established %s", ops.Ago(s.Now, sa.Established))
			for _, ch := range sa.Children {
				mode := "TUNNEL"
				if ch.Encap {
					mode = "TUNNEL-in-UDP"
				}
				t.Line("%s: INSTALLED, %s, ESP:%s", sa.Name, mode, ch.Suite)
				t.Indent(func() {
					t.Line("installed %s", ops.Ago(s.Now, ch.Established))
					t.Line("in  %s", ch.InSPI)
					t.Line("out %s", ch.OutSPI)
					t.Line("local  %s", strings.Join(ch.LocalTS, " "))
					t.Line("remote %s", strings.Join(ch.RemoteTS, " "))
				})
			}
		})
	}
	tu := "down"
	if s.Tunnel.Up {
		tu = "up"
	}
	t.Line("tunnel to the hub: %s (%v -> %v), data plane %s", tu, s.Tunnel.Overlay, s.Tunnel.HubOverlay, s.Dataplane.Backend)
}

func natNote(nat bool) string {
	if nat {
		return " (behind NAT)"
	}
	return ""
}

type mpsaView struct{ *Status }

func (v *mpsaView) RenderText(t *ops.Text) {
	g := v.Group
	t.Line("group SA: %s, %d accepted, %d refreshed, %d refused", g.Phase, g.Accepted, g.Refreshed, g.Refused)
	t.Indent(func() {
		for _, sa := range g.SAs {
			dir := "in"
			if sa.Outbound {
				dir = "in+out"
			}
			sid := ""
			if sa.SenderIDBits > 0 {
				sid = fmt.Sprintf(", sender-id %d/%d", sa.SenderID, sa.SenderIDBits)
			}
			t.Line("%s %s, %s%s", sa.SPI, dir, sa.Suite, sid)
		}
		if !g.NextStep.IsZero() {
			t.Line("next step %s", ops.In(v.Now, g.NextStep))
		}
	})
}

type bgpView struct{ *Status }

func (v *bgpView) RenderText(t *ops.Text) {
	b := v.BGP
	if !b.Running {
		t.Line("bgp: not started (waiting for the hub)")
		return
	}
	t.Line("bgp: %s with %v, AS %d, router ID %v", b.State, b.Hub, b.ASN, b.RouterID)
	t.Indent(func() {
		t.Line("advertising %s with endpoint %v", joinPrefixes(b.Prefixes), b.Endpoint)
		t.Line("%d routes learned, %d stale", b.Routes, b.Stale)
		t.Line("%d sessions, %d updates in, %d out, %d notifications in, %d out",
			b.Stats.Established, b.Stats.UpdatesIn, b.Stats.UpdatesOut, b.Stats.NotifyRecv, b.Stats.NotifySent)
	})
}

// routesView is the FIB as a table: each path with where it resolves.
func routesView(rs []routing.RouteStatus) *ops.Table {
	tab := &ops.Table{Header: []string{"PREFIX", "SOURCE", "PEER", "NEXT HOP", "ENDPOINT", "TUNNEL", "STATE"}}
	for _, r := range rs {
		state := "selected"
		switch {
		case !r.Resolved:
			state = "unresolved: " + r.Reason.String()
		case !r.Selected:
			state = "backup"
		}
		ep := "-"
		if len(r.NextHops) > 0 {
			if nh := r.NextHops[0]; nh.Local {
				ep = "local"
			} else {
				ep = nh.Endpoint.String()
			}
		}
		peer, nh := "-", "-"
		if r.Route.Peer.IsValid() {
			peer = r.Route.Peer.String()
		}
		if r.Route.NextHop.IsValid() {
			nh = r.Route.NextHop.String()
		}
		tab.Rows = append(tab.Rows, []string{r.Route.Prefix.String(), r.Route.Source.String(), peer, nh, ep,
			tunnelName(r.Route.Tunnel), state})
	}
	return tab
}

func tunnelName(t routing.Tunnel) string {
	switch t {
	case GroupTunnel:
		return "group"
	case HubTunnel:
		return "hub"
	case 0:
		return "-"
	}
	return fmt.Sprint(uint32(t))
}

func joinPrefixes(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "nothing"
	}
	return prefixesString(ps)
}

// registerViews puts the CPE's views on a status server.
func (c *CPE) registerViews(s *ops.StatusServer) {
	s.Handle("overview", "IKE SA, group SA and BGP session", func(context.Context, []string) (any, error) {
		return overviewView{c.Status()}, nil
	})
	s.Handle("sas", "IKE SA and CHILD_SA with the hub", func(context.Context, []string) (any, error) {
		return &sasView{c.Status()}, nil
	})
	s.Handle("mpsa", "group SA: SPIs, Sender-ID, rollover phase", func(context.Context, []string) (any, error) {
		return &mpsaView{c.Status()}, nil
	})
	s.Handle("bgp", "BGP session with the hub", func(context.Context, []string) (any, error) {
		return &bgpView{c.Status()}, nil
	})
	s.Handle("routes", "routes with their resolved ESP endpoints", func(context.Context, []string) (any, error) {
		return routesView(c.Routes()), nil
	})
}
