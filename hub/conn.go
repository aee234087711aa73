package hub

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"time"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/ike/wire"
	"github.com/mpsa-vpn/mpsa/internal/ops"
	"github.com/mpsa-vpn/mpsa/mpsa"
	"github.com/mpsa-vpn/mpsa/routing"
)

// cpeConn is one live IKE SA of a CPE and what the hub installed for it.
// Fields are guarded by Hub.mu.
type cpeConn struct {
	name   string
	group  string
	sa     *ike.SA
	sess   *session // the key server's handle on the current IKE SA
	remote netip.AddrPort
	encap  bool // ESP in UDP: a NAT between the CPE and the hub
	vips   []netip.Prefix
	tunnel routing.Tunnel
	up     time.Time
	joined bool // the key server accepted the CPE
	// children are the CHILD_SAs, oldest first.
	children []*childSA
}

// childSA is one CHILD_SA of a CPE: the hub's end of its overlay tunnel.
type childSA struct {
	in, out  esp.Keys
	peer     netip.AddrPort // the CPE's outer address; port 0: raw ESP
	local    netip.Addr
	localTS  []netip.Prefix
	remoteTS []netip.Prefix
	replaced bool // a newer CHILD_SA rekeyed it: inbound only until it goes
	since    time.Time
}

func (c *cpeConn) wipe() {
	for _, ch := range c.children {
		ch.in.Wipe()
		ch.out.Wipe()
	}
	c.children = nil
}

// outbound is the CHILD_SA that carries the hub's packets to the CPE: the
// newest that was not replaced.
func (c *cpeConn) outbound() *childSA {
	for i := len(c.children) - 1; i >= 0; i-- {
		if !c.children[i].replaced {
			return c.children[i]
		}
	}
	return nil
}

// endpoint is where the CPE's ESP goes: its outer address, with the port
// only when ESP is UDP-encapsulated (NAT-T).
func endpoint(remote netip.AddrPort, encap bool) netip.AddrPort {
	if encap {
		return remote
	}
	return netip.AddrPortFrom(remote.Addr(), 0)
}

func prefixesOf(ss []wire.Selector) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, ike.SelectorPrefixes(s)...)
	}
	return out
}

// onEvent handles the IKE engine's events, in order, on the engine's event
// goroutine.
func (h *Hub) onEvent(ev ike.Event) {
	defer h.notifyChanged()
	h.metrics.ikeEvent(ev.Kind)
	switch ev.Kind {
	case ike.EventIKEUp:
		h.ikeUp(ev)
	case ike.EventChildUp, ike.EventChildRekeyed:
		h.childUp(ev)
	case ike.EventChildDown:
		h.childDown(ev)
	case ike.EventIKERekeyed:
		h.ikeRekeyed(ev)
	case ike.EventIKEAddressChanged:
		h.addressChanged(ev)
	case ike.EventIKEDown:
		h.ikeDown(ev)
	}
}

func (h *Hub) ikeUp(ev ike.Event) {
	t, ok := ev.Info.Tag.(*cpeTag)
	if !ok {
		h.closeSA(ev.SA, "no provisioning")
		return
	}
	caps := mpsa.PeerCapabilities(ev.Info.PeerVendorIDs, ops.MPSANotifies(ev.Info.PeerAuthNotifies))
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.nextTunnel++
	c := &cpeConn{name: t.name, group: t.group, sa: ev.SA, remote: ev.Info.Remote, vips: ev.Info.VIPs,
		encap: ev.Info.NATLocal || ev.Info.NATRemote, tunnel: h.nextTunnel, up: ev.Info.Established}
	c.sess = &session{h: h, sa: ev.SA, name: t.name}
	h.conns[ev.SA] = c
	h.byName[c.name] = append(h.byName[c.name], c)
	h.mu.Unlock()

	args := []any{"id", t.name, "group", t.group, "peer", ev.Info.Remote}
	args = append(args, ops.IKESPIs(ev.Info.SPIi, ev.Info.SPIr)...)
	if len(ev.Info.VIPs) > 0 {
		vips := make([]string, len(ev.Info.VIPs))
		for i, v := range ev.Info.VIPs {
			vips[i] = v.String()
		}
		args = append(args, "prefix", strings.Join(vips, ","))
	}
	h.log.Info("CPE connected", append(args, "state", "CONNECTED")...)
	if err := h.ks.Connected(t.name, c.sess, caps); err != nil {
		// The key server logged why (no MPSA Vendor ID, no Sender-ID
		// support for an AEAD group). A CPE that cannot get its group SA
		// is of no use connected.
		h.log.Warn("CPE refused by the key server", "id", t.name, "group", t.group, "reason", "NO_GROUP_SA", "err", err)
		h.closeSA(ev.SA, "no group SA")
		return
	}
	h.mu.Lock()
	c.joined = true
	h.mu.Unlock()
	h.wakeKeyServer()
	h.reflectorUp(t.name)
}

func (h *Hub) childUp(ev ike.Event) {
	ch := ev.Child
	h.mu.Lock()
	c := h.conns[ev.SA]
	if c == nil || h.closed {
		h.mu.Unlock()
		ch.In.Wipe()
		ch.Out.Wipe()
		return
	}
	cs := &childSA{in: ch.In, out: ch.Out, peer: endpoint(ch.Remote, ch.Encap),
		localTS: prefixesOf(ch.LocalTS), remoteTS: prefixesOf(ch.RemoteTS), since: ch.Established}
	if a := ch.Local.Addr(); a.IsValid() && !a.IsUnspecified() {
		cs.local = a
	}
	if ch.Replaces != 0 {
		for _, old := range c.children {
			if old.in.SPI == ch.Replaces {
				old.replaced = true
			}
		}
	}
	c.children = append(c.children, cs)
	h.routesLocked(c)
	h.mu.Unlock()
	if h.keylog != nil && h.Config().KeyExport.ESP != "" {
		// Outer addresses as a capture on the hub sees them; behind a
		// wildcard socket the local one is unknown ("*").
		local := ch.Local.Addr()
		if local.IsUnspecified() {
			local = netip.Addr{}
		}
		for _, err := range []error{h.keylog.ESPSA(ch.Remote.Addr(), local, &cs.in), h.keylog.ESPSA(local, ch.Remote.Addr(), &cs.out)} {
			if err != nil {
				h.log.Debug("ESP keys not exported", "esp_spi", ops.SPI32(cs.in.SPI), "err", err)
			}
		}
	}
	h.applyNow()
}

func (h *Hub) childDown(ev ike.Event) {
	h.mu.Lock()
	c := h.conns[ev.SA]
	if c != nil {
		for i, cs := range c.children {
			if cs.in.SPI == ev.Child.InSPI {
				cs.in.Wipe()
				cs.out.Wipe()
				c.children = append(c.children[:i], c.children[i+1:]...)
				break
			}
		}
		h.routesLocked(c)
	}
	h.mu.Unlock()
	h.applyNow()
}

func (h *Hub) ikeRekeyed(ev ike.Event) {
	h.mu.Lock()
	c := h.conns[ev.SA]
	if c == nil {
		h.mu.Unlock()
		return
	}
	old := c.sess
	c.sess = &session{h: h, sa: ev.SA, name: c.name}
	joined, name, sess := c.joined, c.name, c.sess
	h.mu.Unlock()
	if joined {
		h.ks.SessionRekeyed(name, old, sess)
		h.wakeKeyServer()
	}
}

func (h *Hub) addressChanged(ev ike.Event) {
	h.mu.Lock()
	c := h.conns[ev.SA]
	if c == nil {
		h.mu.Unlock()
		return
	}
	c.remote = ev.Info.Remote
	c.encap = ev.Info.NATLocal || ev.Info.NATRemote
	for _, info := range ev.Info.Children {
		for _, cs := range c.children {
			if cs.in.SPI == info.InSPI {
				cs.peer = endpoint(info.Remote, info.Encap)
				if a := info.Local.Addr(); a.IsValid() && !a.IsUnspecified() {
					cs.local = a
				}
			}
		}
	}
	h.routesLocked(c)
	name := c.name
	h.mu.Unlock()
	h.log.Info("CPE moved", "id", name, "peer", ev.Info.Remote)
	h.applyNow()
	h.reflectorUp(name)
}

func (h *Hub) ikeDown(ev ike.Event) {
	h.mu.Lock()
	c := h.conns[ev.SA]
	if c == nil {
		h.mu.Unlock()
		return
	}
	delete(h.conns, ev.SA)
	list := h.byName[c.name]
	for i, x := range list {
		if x == c {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(h.byName, c.name)
	} else {
		h.byName[c.name] = list
	}
	c.wipe()
	h.routesLocked(c)
	others := h.connsOfLocked(c.name)
	h.mu.Unlock()
	if c.joined {
		h.ks.Disconnected(c.name, c.sess)
		h.wakeKeyServer()
	}
	reason := "deleted"
	if ev.Err != nil {
		reason = ev.Err.Error()
	}
	h.log.Info("CPE disconnected", "id", c.name, "group", c.group, "peer", c.remote, "reason", reason, "state", "DISCONNECTED")
	h.applyNow()
	if len(others) == 0 {
		if c.joined {
			h.reflectorDown(c.name)
		}
	} else {
		h.reflectorUp(c.name)
	}
}

// connsOfLocked returns the live IKE SAs of a CPE, newest first.
func (h *Hub) connsOfLocked(name string) []*cpeConn {
	out := append([]*cpeConn(nil), h.byName[name]...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].up.After(out[j-1].up); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// routesLocked points the FIB's route for each of c's overlay addresses at
// the newest IKE SA of the CPE that has a CHILD_SA (a CPE that reconnects
// holds two for a moment), or withdraws it when none has.
func (h *Hub) routesLocked(c *cpeConn) {
	for _, v := range c.vips {
		var best *cpeConn
		for _, o := range h.connsOfLocked(c.name) {
			if o.outbound() != nil && containsPrefix(o.vips, v) {
				best = o
				break
			}
		}
		if best == nil {
			if h.routeOwner[v] != nil {
				delete(h.routeOwner, v)
				if err := h.fib.Withdraw(v, netip.Addr{}); err != nil {
					h.log.Error("overlay route not withdrawn", "prefix", v, "err", err)
				}
			}
			continue
		}
		h.routeOwner[v] = best
		r := routing.Route{Prefix: v, Endpoint: best.outbound().peer, Tunnel: best.tunnel, Source: routing.SourceStatic}
		if err := h.fib.Upsert(r); err != nil {
			h.log.Error("overlay route refused", "prefix", v, "endpoint", r.Endpoint, "err", err)
		}
	}
}

func containsPrefix(ps []netip.Prefix, p netip.Prefix) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

// closeSA deletes an IKE SA with the peer, without waiting.
func (h *Hub) closeSA(sa *ike.SA, why string) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.wg.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		i := sa.Info()
		h.log.Info("deleting IKE SA", append(ops.IKESPIs(i.SPIi, i.SPIr), "id", i.RemoteID, "reason", why)...)
		ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
		defer cancel()
		if err := sa.Close(ctx); err != nil && !errors.Is(err, context.Canceled) {
			h.log.Debug("IKE SA delete", "id", i.RemoteID, "err", err)
		}
	}()
}

// session is one CPE's IKE SA as the key server uses it (mpsa.Session).
// A new one replaces it when the IKE SA is rekeyed.
type session struct {
	h    *Hub
	sa   *ike.SA
	name string
}

var _ mpsa.Session = (*session)(nil)

// Inform implements mpsa.Session with the engine's asynchronous
// INFORMATIONAL request: no goroutine waits for the answer (a group rekey
// sends thousands at once). The answer is handled on the IKE SA's
// goroutine: done (the key server's bookkeeping), the metrics and Changed,
// all without blocking.
func (s *session) Inform(ns []mpsa.Notify, done func(error)) {
	h := s.h
	h.informMu.RLock()
	if h.informClosed {
		h.informMu.RUnlock()
		done(mpsa.ErrClosed)
		return
	}
	h.wg.Add(1)
	h.informMu.RUnlock()
	var spi uint32
	isPut := false
	for _, n := range ns {
		if n.Type == mpsa.NotifyPut && len(n.SPI) == 4 {
			spi, isPut = binary.BigEndian.Uint32(n.SPI), true
		}
	}
	start := time.Now()
	s.sa.SendInformationalAsync(ops.WireNotifies(ns), func(err error) {
		defer h.wg.Done()
		if err == nil {
			h.metrics.putAcked(time.Since(start))
		} else {
			h.metrics.putFailed()
		}
		done(err)
		if err == nil && isPut {
			h.notePutAck(spi)
		} else {
			h.notifyChanged()
		}
	})
}

// applyNow asks routineApply to bring the data plane to the current state.
func (h *Hub) applyNow() {
	select {
	case h.applyGen <- struct{}{}:
	default:
	}
}

// routineApply programs the data plane: after every change, the whole
// desired State (the backend changes only what differs). Bursts of changes
// (thousands of CPEs connecting) coalesce into one Set.
func (h *Hub) routineApply() {
	defer h.wg.Done()
	h.log.Debug("data plane routine started")
	defer h.log.Debug("data plane routine stopped")
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-h.applyGen:
		}
		st := h.desiredState()
		err := h.dp.Set(st)
		for i := range st.SAs {
			st.SAs[i].Keys.Wipe()
		}
		h.mu.Lock()
		h.applied.gen++
		h.applied.when = time.Now()
		prev := h.applied.err
		h.applied.err = err
		h.mu.Unlock()
		h.notifyChanged()
		if err != nil && (prev == nil || prev.Error() != err.Error()) {
			h.log.Error("data plane refused the CHILD_SAs", "err", err)
		} else if err == nil && prev != nil {
			h.log.Info("data plane programmed again", "state", "OK")
		}
	}
}

// desiredState is every CHILD_SA of every connected CPE: the inbound SAs
// of each, and the outbound SA of the newest per IKE SA, on the IKE SA's
// tunnel. Keys are copies the caller wipes.
func (h *Hub) desiredState() *dataplane.State {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := &dataplane.State{}
	for _, c := range h.conns {
		out := c.outbound()
		for _, cs := range c.children {
			base := dataplane.SA{Tunnel: c.tunnel, Peer: cs.peer, Local: cs.local,
				RemoteSelectors: cs.remoteTS, LocalSelectors: cs.localTS, ReplayWindow: ChildReplayWindow}
			in := base
			in.Keys, in.Dir = cs.in.Clone(), dataplane.In
			st.SAs = append(st.SAs, in)
			if cs == out {
				o := base
				o.Keys, o.Dir = cs.out.Clone(), dataplane.Out
				o.RemoteSelectors, o.LocalSelectors = nil, nil
				st.SAs = append(st.SAs, o)
			}
		}
	}
	return st
}
