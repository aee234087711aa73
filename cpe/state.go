package cpe

import (
	"cmp"
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/ike/wire"
	"github.com/mpsa-vpn/mpsa/mpsa"
	"github.com/mpsa-vpn/mpsa/routing"
)

type childKey struct {
	sa *ike.SA
	in uint32
}

// child is a CHILD_SA with the hub and the keys the engine handed over; the
// CPE wipes them when the CHILD_SA goes.
type child struct {
	ike.ChildSA
	sa *ike.SA
}

func (ch *child) wipe() {
	ch.In.Wipe()
	ch.Out.Wipe()
}

// tunnel is the path to the hub's BGP port once the CHILD_SA, the hub
// route and our overlay address are in place.
type tunnel struct {
	up   bool
	vip  netip.Addr // our overlay address (BGP source)
	hub  netip.Addr // the hub's overlay address (BGP destination)
	bind string     // device the BGP socket is bound to
	gen  uint64     // moves whenever the path changes
}

// installed is what routineMain last installed, to change only what differs.
type installed struct {
	hubRoute   routing.Route
	addrs      map[netip.Prefix]bool
	endpoint   netip.AddrPort
	vip        netip.Addr // last overlay address we had, for the router ID
	setErr     string
	memberDue  chan struct{}
	memberStop func() bool
	memberAt   int64
	tunnelGen  uint64
	exported   map[uint32]bool // group SAs written to key_export.esp
}

// exportGroup writes each group SA once to key_export.esp, for any pair
// of CPEs (both addresses "*").
func (c *CPE) exportGroup(group []dataplane.SA) {
	if c.keys == nil {
		return
	}
	live := map[uint32]bool{}
	for i := range group {
		spi := group[i].Keys.SPI
		live[spi] = true
		if !c.installed.exported[spi] {
			c.exportESP(netip.Addr{}, netip.Addr{}, &group[i].Keys)
		}
	}
	c.installed.exported = live
}

// routineMain applies every change: data plane, hub route, overlay
// addresses, speaker, rollover timer. It also tells waiters when the FIB
// changes.
func (c *CPE) routineMain(ctx context.Context) {
	sub := c.fib.Subscribe()
	defer sub.Close()
	c.installed.addrs = map[netip.Prefix]bool{}
	c.installed.memberDue = make(chan struct{}, 1)
	defer func() {
		if c.installed.memberStop != nil {
			c.installed.memberStop()
		}
	}()
	for {
		c.reconcile(ctx)
		for again := true; again; {
			again = false
			select {
			case <-ctx.Done():
				return
			case <-c.wake:
			case <-c.installed.memberDue:
				c.installed.memberAt = 0
				c.member.Tick(c.clock.Now())
			case <-sub.Ready():
				// Routes changed (BGP): nothing to install, but
				// status and waiters follow.
				for {
					_, ok, err := sub.TryNext()
					if !ok || err != nil {
						break
					}
				}
				c.notify()
				again = true
			}
		}
	}
}

// snapshot is the state reconcile works from, with its own copies of keys.
type snapshot struct {
	cfg  *configs.CPE
	dp   *Dataplane
	info ike.SAInfo
	up   bool
	kids []*child
}

func (c *CPE) snapshot() snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := snapshot{cfg: c.cfg, dp: c.dp}
	s.info, s.up = c.infos[c.sa]
	if !s.up {
		return s
	}
	for k, ch := range c.children {
		if k.sa != c.sa {
			continue
		}
		cp := &child{ChildSA: ch.ChildSA, sa: ch.sa}
		cp.In, cp.Out = ch.In.Clone(), ch.Out.Clone()
		s.kids = append(s.kids, cp)
	}
	slices.SortFunc(s.kids, func(a, b *child) int {
		if d := a.Established.Compare(b.Established); d != 0 {
			return d
		}
		return cmp.Compare(a.InSPI, b.InSPI)
	})
	return s
}

// reconcile installs what the current state calls for.
func (c *CPE) reconcile(ctx context.Context) {
	s := c.snapshot()
	defer func() {
		for _, k := range s.kids {
			k.wipe()
		}
	}()
	if s.dp == nil {
		return
	}
	hub, vip := tunnelAddrs(s.info, s.kids)
	endpoint := endpointFor(s.cfg, s.dp, s.info, s.kids)
	if endpoint.IsValid() && s.dp.SetEndpoints != nil {
		if err := s.dp.SetEndpoints([]netip.AddrPort{endpoint}); err != nil {
			c.log.Error("data plane: cannot set the ESP endpoint", "endpoint", endpoint.String(), "err", err)
		}
	}

	// Data plane: the group SAs and the CHILD_SA as one State.
	group := c.member.SAs()
	c.exportGroup(group)
	st := buildState(s.kids, group)
	err := s.dp.Backend.Set(st)
	mpsa.WipeSAs(group)
	c.noteSetError(err)

	// The route to the hub's overlay address through the CHILD_SA.
	var want routing.Route
	if hub.IsValid() && len(s.kids) > 0 {
		out := s.kids[len(s.kids)-1]
		want = routing.Route{Prefix: netip.PrefixFrom(hub, hub.BitLen()), Endpoint: childPeer(out), Tunnel: HubTunnel, Source: routing.SourceStatic}
	}
	if want != c.installed.hubRoute {
		if c.installed.hubRoute.Prefix.IsValid() && c.installed.hubRoute.Prefix != want.Prefix {
			_ = c.fib.Withdraw(c.installed.hubRoute.Prefix, netip.Addr{})
		}
		c.installed.hubRoute = routing.Route{}
		if want.Prefix.IsValid() {
			if err := c.fib.Upsert(want); err != nil {
				c.log.Error("cannot route the hub's overlay address", "prefix", want.Prefix.String(), "err", err)
			} else {
				c.installed.hubRoute = want
			}
		}
	}

	// Our overlay addresses, on the device the data plane names. While
	// the IKE SA is down they stay: the kernel flushes every route through
	// a device that loses its last IPv4 address, and the next IKE SA
	// usually brings the same ones back.
	addrsOK := true
	if s.up {
		var vips []netip.Prefix
		for _, p := range s.info.VIPs {
			vips = append(vips, netip.PrefixFrom(p.Addr(), p.Addr().BitLen()))
		}
		addrsOK = c.setOverlayAddrs(s.dp.Interface, vips)
	}
	if vip.IsValid() {
		c.installed.vip = vip
	}

	// The path to the hub's BGP port.
	t := tunnel{vip: vip, hub: hub, bind: s.dp.BindDevice}
	t.up = err == nil && c.installed.hubRoute.Prefix.IsValid() && vip.IsValid() && addrsOK &&
		(s.dp.Ready == nil || s.dp.Ready(want.Prefix))
	c.setTunnel(t)

	c.ensureBGP(ctx, s.cfg, endpoint)
	c.armMemberTimer()
	c.notify()
}

// noteSetError logs a refused State once per distinct error.
func (c *CPE) noteSetError(err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
		c.counters.setErrors.Add(1)
	}
	if msg == c.installed.setErr {
		return
	}
	c.installed.setErr = msg
	if err != nil {
		c.log.Error("data plane refused the SAs", "err", err)
	} else {
		c.log.Info("data plane programmed", "state", "INSTALLED")
	}
}

// setTunnel publishes the path to the hub and closes BGP connections that
// no longer have one: without a NOTIFICATION, so the hub's routes stay
// (graceful restart) while the CPE reconnects.
func (c *CPE) setTunnel(t tunnel) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.tunnel
	t.gen = old.gen
	if t.up != old.up || t.vip != old.vip || t.hub != old.hub || t.bind != old.bind {
		t.gen++
	}
	c.tunnel = t
	if t.gen != old.gen {
		for tc := range c.bgpConns {
			tc.Conn.Close()
			delete(c.bgpConns, tc)
		}
		c.notifyLocked()
	}
}

// armMemberTimer schedules the group member's next rollover step.
func (c *CPE) armMemberTimer() {
	at := c.member.NextDeadline()
	if at.IsZero() {
		if c.installed.memberStop != nil {
			c.installed.memberStop()
			c.installed.memberStop = nil
		}
		c.installed.memberAt = 0
		return
	}
	if at.UnixNano() == c.installed.memberAt {
		return
	}
	if c.installed.memberStop != nil {
		c.installed.memberStop()
	}
	c.installed.memberAt = at.UnixNano()
	due := c.installed.memberDue
	c.installed.memberStop = c.clock.AfterFunc(max(at.Sub(c.clock.Now()), 0), func() { signal(due) })
}

// tunnelAddrs returns the hub's overlay address (from the narrowed TSr of
// the newest CHILD_SA: a single address, IPv4 preferred) and our overlay
// address of the same family.
func tunnelAddrs(info ike.SAInfo, kids []*child) (hub, vip netip.Addr) {
	if len(kids) == 0 {
		return netip.Addr{}, netip.Addr{}
	}
	out := kids[len(kids)-1]
	var hubs []netip.Addr
	for _, sel := range out.RemoteTS {
		for _, p := range ike.SelectorPrefixes(sel) {
			if p.IsSingleIP() {
				hubs = append(hubs, p.Addr())
			}
		}
	}
	slices.SortStableFunc(hubs, func(a, b netip.Addr) int { return cmp.Compare(familyIndex(a), familyIndex(b)) })
	for _, h := range hubs {
		for _, p := range info.VIPs {
			if p.Addr().Is4() == h.Is4() && coveredBy(p.Addr(), out.LocalTS) {
				return h, p.Addr()
			}
		}
	}
	if len(hubs) > 0 {
		return hubs[0], netip.Addr{}
	}
	return netip.Addr{}, netip.Addr{}
}

func coveredBy(a netip.Addr, sels []wire.Selector) bool {
	for _, s := range sels {
		for _, p := range ike.SelectorPrefixes(s) {
			if p.Contains(a) {
				return true
			}
		}
	}
	return false
}

// childPeer is the CHILD_SA's outer destination as the data plane wants
// it: the hub's address, with the NAT-T port when ESP is in UDP, else 0.
func childPeer(ch *child) netip.AddrPort {
	if ch.Encap {
		return ch.Remote
	}
	return netip.AddrPortFrom(ch.Remote.Addr(), 0)
}

// endpointFor is the ESP endpoint the CPE advertises with its prefixes:
// its WAN address as the IKE SA uses it; with ESP-in-UDP (configured, NAT,
// or a backend without raw ESP) the NAT-T port, else port 0 (raw ESP).
func endpointFor(cfg *configs.CPE, dp *Dataplane, info ike.SAInfo, kids []*child) netip.AddrPort {
	a := info.Local.Addr()
	if !a.IsValid() || a.IsUnspecified() {
		return netip.AddrPort{}
	}
	udp := false
	switch cfg.WAN.Encapsulation {
	case configs.EncapUDP:
		udp = true
	case configs.EncapRaw:
	default:
		udp = !dp.RawESP || info.NATLocal || info.NATRemote
		for _, k := range kids {
			udp = udp || k.Encap
		}
	}
	if !udp {
		return netip.AddrPortFrom(a, 0)
	}
	port := info.Local.Port()
	if !info.Encap || port == 0 {
		port = configs.DefaultNATTPort
	}
	return netip.AddrPortFrom(a, port)
}

// buildState is the data plane State for the group SAs and the CHILD_SAs
// with the hub: every CHILD_SA inbound, the newest also outbound (during
// a CHILD_SA rekey the old one stays inbound until the engine deletes it).
func buildState(kids []*child, group []dataplane.SA) *dataplane.State {
	st := &dataplane.State{SAs: slices.Clone(group)}
	for i, k := range kids {
		peer := childPeer(k)
		var local netip.Addr
		if a := k.Local.Addr(); a.IsValid() && !a.IsUnspecified() {
			local = a
		}
		st.SAs = append(st.SAs, dataplane.SA{
			Keys: k.In, Dir: dataplane.In, Tunnel: HubTunnel, Peer: peer, Local: local,
			RemoteSelectors: selectorPrefixes(k.RemoteTS), LocalSelectors: selectorPrefixes(k.LocalTS),
			ReplayWindow: DefaultChildReplayWindow,
		})
		if i == len(kids)-1 {
			st.SAs = append(st.SAs, dataplane.SA{Keys: k.Out, Dir: dataplane.Out, Tunnel: HubTunnel, Peer: peer, Local: local})
		}
	}
	return st
}

func selectorPrefixes(sels []wire.Selector) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range sels {
		out = append(out, ike.SelectorPrefixes(s)...)
	}
	return out
}

// setOverlayAddrs makes our overlay addresses on dev exactly want and
// reports whether they all are there.
func (c *CPE) setOverlayAddrs(dev string, want []netip.Prefix) bool {
	if dev == "" {
		return true
	}
	ok := true
	wantSet := map[netip.Prefix]bool{}
	for _, p := range want {
		wantSet[p] = true
	}
	link, err := c.nl.LinkByName(dev)
	if err != nil {
		if len(want) > 0 {
			c.log.Error("overlay device missing", "reason", dev, "err", err)
		}
		return len(want) == 0
	}
	// New addresses first: the device never goes without one.
	for _, p := range want {
		if c.installed.addrs[p] {
			continue
		}
		if err := c.nl.AddrReplace(link, nlAddr(p)); err != nil {
			c.log.Error("cannot add the overlay address", "prefix", p.String(), "err", err)
			ok = false
			continue
		}
		c.log.Info("overlay address assigned", "prefix", p.String())
		c.installed.addrs[p] = true
	}
	for p := range c.installed.addrs {
		if !wantSet[p] {
			if err := c.nl.AddrDel(link, nlAddr(p)); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
				c.log.Warn("cannot remove an overlay address", "prefix", p.String(), "err", err)
			}
			delete(c.installed.addrs, p)
		}
	}
	return ok
}

// removeOverlay takes our overlay addresses away again (Run's end).
func (c *CPE) removeOverlay() {
	c.mu.Lock()
	dp := c.dp
	c.mu.Unlock()
	if dp == nil || dp.Interface == "" || len(c.installed.addrs) == 0 {
		return
	}
	c.setOverlayAddrs(dp.Interface, nil)
}

func nlAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}
