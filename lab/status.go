package lab

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/mpsa-vpn/mpsa/internal/ops"
)

// Snapshot is the lab's state as the daemons report it through their status
// sockets at one moment.
type Snapshot struct {
	Time    time.Time
	Groups  *HubGroups
	SAs     *HubSAs
	HubCPEs *HubCPEs
	CPEs    map[string]*CPEState // by CPE name; running CPEs only
	Errors  []string             // daemons that did not answer
}

// CPEState is what one CPE reports.
type CPEState struct {
	Status *CPEStatus
	Routes []Route
}

// Route is one row of a CPE's `status routes`.
type Route struct {
	Prefix   netip.Prefix
	Source   string         // bgp, static, ...
	NextHop  string         // as printed
	Endpoint netip.AddrPort // invalid for local routes
	Tunnel   string         // group, hub, ...
	State    string         // selected, backup, unresolved: ...
}

// Group returns the lab group's view (nil if the hub did not answer).
func (s *Snapshot) Group() *HubGroup {
	if s.Groups == nil {
		return nil
	}
	for i := range s.Groups.Groups {
		if s.Groups.Groups[i].Name == GroupName {
			return &s.Groups.Groups[i]
		}
	}
	return nil
}

// HubSA returns the hub's IKE SAs of the CPE with that identity.
func (s *Snapshot) HubSA(identity string) []HubSA {
	if s.SAs == nil {
		return nil
	}
	var out []HubSA
	for _, e := range s.SAs.SAs {
		if e.CPE == identity || e.RemoteID == identity {
			out = append(out, e)
		}
	}
	return out
}

// BGPRoutes returns a CPE's selected BGP routes by prefix.
func (s *Snapshot) BGPRoutes(name string) map[netip.Prefix]Route {
	st := s.CPEs[name]
	if st == nil {
		return nil
	}
	out := map[netip.Prefix]Route{}
	for _, r := range st.Routes {
		if r.Source == "bgp" && r.State == "selected" {
			out[r.Prefix] = r
		}
	}
	return out
}

// queryTimeout bounds one status query.
const queryTimeout = 5 * time.Second

// Snapshot asks the hub and every running CPE for their views.
func (l *Lab) Snapshot(ctx context.Context) *Snapshot {
	s := &Snapshot{Time: time.Now(), CPEs: map[string]*CPEState{}}
	h := l.Hub()
	q := func(path, cmd string, v any) error {
		qctx, cancel := context.WithTimeout(ctx, queryTimeout)
		defer cancel()
		return ops.QueryJSON(qctx, path, cmd, v)
	}
	if l.Running("hub") {
		var g HubGroups
		var sas HubSAs
		var cpes HubCPEs
		err := q(h.Socket, "groups", &g)
		if err == nil {
			err = q(h.Socket, "sas", &sas)
		}
		if err == nil {
			err = q(h.Socket, "cpes", &cpes)
		}
		if err != nil {
			s.Errors = append(s.Errors, "hub: "+err.Error())
		} else {
			s.Groups, s.SAs, s.HubCPEs = &g, &sas, &cpes
		}
	}
	for _, c := range l.runningCPEs() {
		var st CPEStatus
		var tab ops.Table
		err := q(c.Socket, "overview", &st)
		if err == nil {
			err = q(c.Socket, "routes", &tab)
		}
		if err != nil {
			s.Errors = append(s.Errors, c.Name+": "+err.Error())
			continue
		}
		s.CPEs[c.Name] = &CPEState{Status: &st, Routes: parseRoutes(&tab)}
	}
	return s
}

// parseRoutes reads the CPE's routes table by its column names.
func parseRoutes(tab *ops.Table) []Route {
	col := func(name string) int { return slices.Index(tab.Header, name) }
	iP, iS, iN, iE, iT, iX := col("PREFIX"), col("SOURCE"), col("NEXT HOP"), col("ENDPOINT"), col("TUNNEL"), col("STATE")
	get := func(row []string, i int) string {
		if i < 0 || i >= len(row) {
			return ""
		}
		return row[i]
	}
	var out []Route
	for _, row := range tab.Rows {
		p, err := netip.ParsePrefix(get(row, iP))
		if err != nil {
			continue
		}
		r := Route{Prefix: p, Source: get(row, iS), NextHop: get(row, iN), Tunnel: get(row, iT), State: get(row, iX)}
		r.Endpoint, _ = netip.ParseAddrPort(get(row, iE))
		out = append(out, r)
	}
	return out
}

// Problems lists how the snapshot differs from a converged lab in which
// exactly the CPEs in joining are members: each holds an IKE SA with the
// hub and the hub's current group SA (sending with it), has its BGP session
// up and routes to exactly the other members' LAN prefixes, each resolved
// to the owner's WAN address.
func (s *Snapshot) Problems(joining []CPE) []string {
	var out []string
	out = append(out, s.Errors...)
	g := s.Group()
	if g == nil {
		return append(out, "hub: no group "+GroupName)
	}
	if g.Epoch == 0 || g.SPI == "" {
		out = append(out, "hub: no group SA yet")
	}
	if g.Connected != len(joining) || g.OnCurrent != len(joining) {
		out = append(out, fmt.Sprintf("hub: %d CPEs connected, %d on epoch %d, want %d", g.Connected, g.OnCurrent, g.Epoch, len(joining)))
	}
	for _, c := range joining {
		if sas := s.HubSA(c.Identity); len(sas) == 0 || sas[len(sas)-1].State != "ESTABLISHED" {
			out = append(out, fmt.Sprintf("hub: no established IKE SA of %s", c.Identity))
		}
		st := s.CPEs[c.Name]
		if st == nil {
			out = append(out, c.Name+": no status")
			continue
		}
		out = append(out, cpeProblems(c, st, g.SPI, joining)...)
	}
	return out
}

func cpeProblems(c CPE, st *CPEState, spi string, joining []CPE) []string {
	var out []string
	p := func(format string, args ...any) { out = append(out, c.Name+": "+fmt.Sprintf(format, args...)) }
	s := st.Status
	if !s.Tunnel.Up || len(s.IKE) == 0 {
		p("tunnel to the hub is not up (phase %s %s)", s.Phase, s.LastError)
	}
	if !strings.EqualFold(s.BGP.State, "established") {
		p("BGP session %s", s.BGP.State)
	}
	out1 := ""
	for _, sa := range s.Group.SAs {
		if sa.Outbound {
			out1 = sa.SPI
		}
	}
	if out1 != spi {
		p("sends with group SA %q, the hub's current one is %q", out1, spi)
	}
	want := map[netip.Prefix]netip.Addr{}
	for _, o := range joining {
		if o.Name != c.Name {
			for _, pf := range o.Prefixes {
				want[pf] = o.WAN
			}
		}
	}
	got := map[netip.Prefix]Route{}
	for _, r := range st.Routes {
		if r.Source == "bgp" {
			got[r.Prefix] = r
		}
	}
	for pf, wan := range want {
		r, ok := got[pf]
		switch {
		case !ok:
			p("no route to %v", pf)
		case r.State != "selected":
			p("route to %v is %s", pf, r.State)
		case r.Endpoint.Addr() != wan:
			p("route to %v goes to %v, want %v", pf, r.Endpoint, wan)
		}
	}
	var extra []string
	for pf := range got {
		if _, ok := want[pf]; !ok {
			extra = append(extra, pf.String())
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		p("routes to prefixes of no member: %s", strings.Join(extra, " "))
	}
	return out
}

// WaitConverged waits until the lab is converged (Snapshot.Problems is
// empty for the CPEs that should be members: running, provisioned, with
// credentials the hub accepts) and returns that snapshot. When ctx ends
// first, the error lists what was still missing.
func (l *Lab) WaitConverged(ctx context.Context) (*Snapshot, error) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	var last *Snapshot
	var lastProbs []string
	for {
		joining := l.joining()
		s := l.Snapshot(ctx)
		probs := s.Problems(joining)
		if len(probs) == 0 {
			l.progress("converged: %d CPEs, group SA epoch %d, SPI %s", len(joining), s.Group().Epoch, s.Group().SPI)
			return s, nil
		}
		if ctx.Err() == nil || last == nil {
			// A snapshot cut short by the deadline says nothing new.
			last, lastProbs = s, probs
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("lab: not converged: %s", strings.Join(lastProbs, "; "))
		case <-t.C:
		}
	}
}

// Wait polls the lab's Snapshot until cond returns true, and returns that
// snapshot; when ctx ends first, the error says what was awaited.
func (l *Lab) Wait(ctx context.Context, what string, cond func(*Snapshot) bool) (*Snapshot, error) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		s := l.Snapshot(ctx)
		if cond(s) {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return s, fmt.Errorf("lab: %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

// Rekey asks the hub to roll the lab's group over to a new SA now (the
// operator's `mpsa-hub rekey`); the CPEs get it as for a lifetime rekey,
// ROLL1 and ROLL2 included.
func (l *Lab) Rekey(ctx context.Context) (*HubRekey, error) {
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	var v HubRekey
	if err := ops.QueryJSON(qctx, l.Hub().Socket, "rekey", &v, GroupName); err != nil {
		return nil, fmt.Errorf("lab: rekey: %w", err)
	}
	return &v, nil
}

// waitSocket waits until the daemon's status socket answers, or it exits.
func waitSocket(ctx context.Context, path string, p *proc) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	t := time.NewTicker(pollInterval / 2)
	defer t.Stop()
	for {
		qctx, qcancel := context.WithTimeout(ctx, queryTimeout)
		_, err := ops.Query(qctx, path, ops.Request{Command: "help"})
		qcancel()
		if err == nil {
			return nil
		}
		if !p.alive() {
			return fmt.Errorf("exited during start-up (%v)", p.err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("status socket %s does not answer: %v", path, err)
		case <-t.C:
		}
	}
}

// addBridge makes an up bridge in a namespace.
func addBridge(ns, name string) error {
	return withHandle(ns, func(h *netlink.Handle) error {
		la := netlink.NewLinkAttrs()
		la.Name = name
		br := &netlink.Bridge{LinkAttrs: la}
		if err := h.LinkAdd(br); err != nil {
			return fmt.Errorf("bridge %s: %w", name, err)
		}
		return h.LinkSetUp(br)
	})
}
