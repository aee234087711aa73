package cpe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/ike/keylog"
	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/ike/wire"
	"github.com/mpsa-vpn/mpsa/internal/ops"
	"github.com/mpsa-vpn/mpsa/mpsa"
)

// engine is the IKE engine with the credentials it was built with. A new
// identity or new credentials need a new engine.
type engine struct {
	mgr  *ike.Manager
	peer *auth.Peer
	psk  []byte // our copy, wiped in close
}

// close drops every SA at once (no DELETE) and wipes the PSK copy.
func (e *engine) close() {
	e.mgr.Close()
	clear(e.psk)
}

// shutdown deletes the IKE SA with the hub, waiting at most timeout, then
// closes.
func (e *engine) shutdown(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_ = e.mgr.Shutdown(ctx)
	clear(e.psk)
}

// credentials turns the configured credentials into the engine's: our own
// (IDi and a PSK or a certificate and key) and what the hub must prove.
func credentials(cfg *configs.CPE) (auth.Local, *auth.Peer, []byte, error) {
	cr := &cfg.Credentials
	if cr.UsesPSK() {
		if cr.PSK.IsZero() {
			return auth.Local{}, nil, nil, errors.New("cpe: credentials.psk_file was not read (load the configuration with a loader)")
		}
		psk := bytes.Clone(cr.PSK.Bytes())
		return auth.Local{ID: cfg.Identity, PSK: psk}, &auth.Peer{PSK: psk}, psk, nil
	}
	m := cr.Material()
	if m == nil || m.Key == nil || len(m.Chain) == 0 {
		return auth.Local{}, nil, nil, errors.New("cpe: certificate files were not read (load the configuration with a loader)")
	}
	pool, err := auth.NewCAPool(m.CAs...)
	if err != nil {
		return auth.Local{}, nil, nil, fmt.Errorf("cpe: credentials.ca: %w", err)
	}
	return auth.Local{ID: cfg.Identity, Signer: m.Key, Certs: m.Chain}, &auth.Peer{CAs: pool}, nil, nil
}

// newEngine builds the IKE engine for cfg and opens its sockets: port 500
// (or an ephemeral port when 500 is taken) on IPv4 and IPv6, and the NAT-T
// port, shared with the data plane when it owns that socket.
func (c *CPE) newEngine(cfg *configs.CPE, dp *Dataplane) (*engine, error) {
	local, peer, psk, err := credentials(cfg)
	if err != nil {
		return nil, err
	}
	icfg := ike.Config{
		Local: local,
		// The CPE only initiates: any IKE_SA_INIT sent to it is refused.
		Peers: func(_ context.Context, id auth.ID) (*auth.Peer, error) {
			return nil, fmt.Errorf("%w: the CPE accepts no IKE SAs (%v)", auth.ErrUnknownPeer, id)
		},
		Proposals: ike.DefaultProposals(),
		Policy: ike.Policy{
			VendorIDs: mpsa.VendorIDs(),
			AuthNotifies: func(ike.PeerInfo, []*wire.Notify) []*wire.Notify {
				return ops.WireNotifies(mpsa.CPEAuthNotifies())
			},
			Informational: c.onInformational,
		},
		Events:            c.onEvent,
		KeyLog:            c.exportIKE,
		MOBIKE:            true,
		Fragmentation:     true,
		ForceEncap:        cfg.WAN.Encapsulation == configs.EncapUDP || !dp.RawESP,
		RetransmitTimeout: DefaultRetransmitTimeout,
		RetransmitBase:    DefaultRetransmitBase,
		RetransmitTries:   DefaultRetransmitTries,
		DPDInterval:       DefaultDPDInterval,
		Logger:            c.base,
		Clock:             c.clock,
		Rand:              c.o.rand,
	}
	if pool := peer.CAs; pool != nil {
		icfg.CertReqCAs = pool
	}
	if c.o.ike != nil {
		c.o.ike(&icfg)
	}
	m, err := ike.New(icfg)
	if err != nil {
		clear(psk)
		return nil, err
	}
	e := &engine{mgr: m, peer: peer, psk: psk}
	if err := c.openIKESockets(m, dp); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// openIKESockets adds the engine's sockets.
func (c *CPE) openIKESockets(m *ike.Manager, dp *Dataplane) error {
	families := []struct {
		network string
		any     netip.Addr
	}{{"udp4", netip.IPv4Unspecified()}, {"udp6", netip.IPv6Unspecified()}}
	listen := func(network string, ap netip.AddrPort) (*ike.UDPConn, error) {
		var u *ike.UDPConn
		err := c.inNetns(func() error {
			var err error
			u, err = ike.ListenUDP(network, ap)
			return err
		})
		return u, err
	}
	for _, ap := range c.o.ikeAddrs {
		network := "udp4"
		if ap.Addr().Is6() {
			network = "udp6"
		}
		u, err := listen(network, ap)
		if err != nil {
			return fmt.Errorf("cpe: IKE socket: %w", err)
		}
		m.AddConn(u, false)
	}
	for _, f := range families {
		if len(c.o.ikeAddrs) > 0 {
			break
		}
		u, err := listen(f.network, netip.AddrPortFrom(f.any, configs.DefaultIKEPort))
		if err != nil {
			// Port 500 taken (another IKE daemon) or privileged: an
			// initiator may send from any port (RFC 7296 §2.11).
			u, err = listen(f.network, netip.AddrPortFrom(f.any, 0))
		}
		if err != nil {
			if f.any.Is6() {
				c.log.Warn("no IPv6 IKE socket", "err", err)
				continue
			}
			return fmt.Errorf("cpe: IKE socket: %w", err)
		}
		m.AddConn(u, false)
	}
	if dp.NATT != nil {
		u, err := dp.NATT()
		if err != nil {
			return fmt.Errorf("cpe: NAT-T conn: %w", err)
		}
		m.AddConn(u, true)
		return nil
	}
	for _, f := range families {
		u, err := listen(f.network, netip.AddrPortFrom(f.any, configs.DefaultNATTPort))
		if err == nil && dp.PrepareIKESocket != nil {
			if err = dp.PrepareIKESocket(u.UDPConn()); err != nil {
				u.Close()
			}
		}
		if err != nil {
			if f.any.Is6() {
				c.log.Warn("no IPv6 NAT-T socket", "err", err)
				continue
			}
			return fmt.Errorf("cpe: NAT-T socket: %w", err)
		}
		m.AddConn(u, true)
	}
	return nil
}

// connection is what the CPE initiates: an IKE SA with the hub, asking for
// an overlay address of each family and a CHILD_SA the hub narrows to our
// overlay address and its own.
func connection(cfg *configs.CPE, e *engine) ike.Connection {
	all := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	return ike.Connection{
		Name:       "hub",
		Remote:     cfg.Hubs,
		RemoteID:   cfg.HubIdentity,
		Peer:       e.peer,
		VirtualIPs: []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()},
		LocalTS:    all,
		RemoteTS:   all,
	}
}

// routineIKE connects to the hub and reconnects whenever the IKE SA is lost,
// with exponential backoff and jitter between failed attempts.
func (c *CPE) routineIKE(ctx context.Context) {
	var bo backoff
	for ctx.Err() == nil {
		select {
		case <-c.rebuild:
			c.replaceEngine()
		default:
		}
		select {
		case <-c.redial: // about to dial anyway
		default:
		}
		c.mu.Lock()
		cfg, eng := c.cfg, c.eng
		c.mu.Unlock()
		bo.min, bo.max = cfg.Reconnect.Min, cfg.Reconnect.Max
		if eng == nil {
			c.wait(ctx, &bo, errors.New("cpe: no IKE engine"))
			continue
		}
		c.setPhase("connecting", nil, time.Time{})
		sa, err := eng.mgr.Initiate(ctx, connection(cfg, eng))
		if ctx.Err() != nil {
			return
		}
		var ce *ike.ChildError
		if errors.As(err, &ce) && sa != nil {
			// An IKE SA without its CHILD_SA carries no BGP: give it up.
			go sa.Close(context.Background())
		}
		if err != nil {
			c.counters.connectFailures.Add(1)
			c.wait(ctx, &bo, err)
			continue
		}
		bo.reset()
		c.mu.Lock()
		c.sa = sa
		c.mu.Unlock()
		c.setPhase("established", nil, time.Time{})
		c.kick()
		var reason error
		select {
		case <-sa.Done():
			reason = sa.Err()
			if reason == nil {
				reason = errors.New("deleted")
			}
			c.log.Warn("IKE SA with the hub is gone", "err", reason, "state", "DOWN")
		case <-ctx.Done():
		case <-c.redial:
			reason = errors.New("configuration changed")
			c.closeSA(sa, "reconnecting: hub addresses or identity changed")
		case <-c.rebuild:
			reason = errors.New("credentials changed")
			c.closeSA(sa, "reconnecting: identity or credentials changed")
			signal(c.rebuild)
		}
		c.mu.Lock()
		if c.sa == sa {
			c.sa = nil
		}
		c.mu.Unlock()
		c.kick()
		if ctx.Err() != nil {
			return
		}
		c.wait(ctx, &bo, reason)
	}
}

// closeSA deletes an IKE SA with the hub, waiting a bounded time.
func (c *CPE) closeSA(sa *ike.SA, why string) {
	c.log.Info("closing the IKE SA with the hub", "reason", why)
	ctx, cancel := context.WithTimeout(context.Background(), DefaultShutdownTimeout)
	defer cancel()
	_ = sa.Close(ctx)
}

// wait sleeps the next backoff step, or until the configuration asks for a
// reconnect or ctx ends.
func (c *CPE) wait(ctx context.Context, bo *backoff, why error) {
	d := bo.next()
	c.setPhase("waiting", why, c.clock.Now().Add(d))
	if why != nil {
		c.log.Warn("cannot reach the hub", "err", why, "reason", "next attempt in "+d.Round(time.Millisecond).String())
	}
	timer := make(chan struct{})
	stop := c.clock.AfterFunc(d, func() { close(timer) })
	defer stop()
	select {
	case <-timer:
	case <-ctx.Done():
	case <-c.redial:
	case <-c.rebuild:
		signal(c.rebuild)
	}
}

// replaceEngine deletes the IKE SA, closes the engine and builds a new one
// with the running configuration's credentials.
func (c *CPE) replaceEngine() {
	c.mu.Lock()
	old, cfg, dp := c.eng, c.cfg, c.dp
	c.eng = nil
	c.mu.Unlock()
	if old != nil {
		old.shutdown(DefaultShutdownTimeout)
	}
	if dp == nil {
		return
	}
	e, err := c.newEngine(cfg, dp)
	if err != nil {
		c.log.Error("cannot build the IKE engine with the new credentials", "err", err)
		return
	}
	c.log.Info("IKE engine rebuilt with new credentials", "id", cfg.Identity.String())
	c.mu.Lock()
	c.eng = e
	c.mu.Unlock()
}

// shutdownEngine deletes the IKE SA with the hub and closes the engine.
func (c *CPE) shutdownEngine() {
	c.mu.Lock()
	e := c.eng
	c.eng = nil
	c.mu.Unlock()
	if e != nil {
		e.shutdown(DefaultShutdownTimeout)
	}
}

func (c *CPE) setPhase(phase string, err error, next time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.phase, c.lastErr, c.nextTry = phase, err, next
	c.notifyLocked()
}

// exportIKE writes an IKE SA's keys to key_export.ike (if configured).
func (c *CPE) exportIKE(spiI, spiR uint64, k *suite.IKEKeys) {
	if c.keys == nil {
		return
	}
	if err := c.keys.IKESA(spiI, spiR, k); err != nil && !errors.Is(err, keylog.ErrNotExportable) {
		c.log.Warn("key export", "err", err)
	}
}

// exportESP writes one direction of an ESP SA to key_export.esp (if
// configured); src and dst invalid mean any address (group SAs).
func (c *CPE) exportESP(src, dst netip.Addr, k *esp.Keys) {
	if c.keys == nil {
		return
	}
	if err := c.keys.ESPSA(src, dst, k); err != nil && !errors.Is(err, keylog.ErrNotExportable) {
		c.log.Warn("key export", "esp_spi", ops.SPI32(k.SPI), "err", err)
	}
}

// onEvent follows the engine's SA events. It runs on the engine's event
// goroutine and only updates state; routineMain applies it.
func (c *CPE) onEvent(ev ike.Event) {
	defer c.kick()
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.notifyLocked()
	lg := c.log.With(ops.IKESPIs(ev.Info.SPIi, ev.Info.SPIr)...)
	switch ev.Kind {
	case ike.EventIKEUp:
		c.infos[ev.SA] = ev.Info
		c.counters.connects.Add(1)
		lg.Info("IKE SA with the hub established", "peer", ev.Info.Remote.String(), "local", ev.Info.Local.String(),
			"id", ev.Info.RemoteID.String(), "state", "ESTABLISHED")
		caps := mpsa.PeerCapabilities(ev.Info.PeerVendorIDs, ops.MPSANotifies(ev.Info.PeerAuthNotifies))
		if !caps.MPSA {
			lg.Warn("the hub did not announce multi-point SA: no group SA will come", "reason", "no MPSA Vendor ID")
		}
		if !ev.Info.MOBIKE {
			lg.Warn("the hub does not support MOBIKE: a WAN address change reconnects", "reason", "no MOBIKE_SUPPORTED")
		}
	case ike.EventIKERekeyed:
		c.infos[ev.SA] = ev.Info
		c.counters.ikeRekeys.Add(1)
	case ike.EventIKEAddressChanged:
		c.infos[ev.SA] = ev.Info
		for _, ci := range ev.Info.Children {
			if ch := c.children[childKey{ev.SA, ci.InSPI}]; ch != nil {
				ch.Local, ch.Remote, ch.Encap = ci.Local, ci.Remote, ci.Encap
			}
		}
		lg.Info("IKE SA moved", "local", ev.Info.Local.String(), "peer", ev.Info.Remote.String())
	case ike.EventIKEDown:
		delete(c.infos, ev.SA)
		for k, ch := range c.children {
			if k.sa == ev.SA {
				ch.wipe()
				delete(c.children, k)
			}
		}
		reason := "deleted"
		if ev.Err != nil {
			reason = ev.Err.Error()
		}
		lg.Info("IKE SA with the hub down", "reason", reason, "state", "DOWN")
	case ike.EventChildUp, ike.EventChildRekeyed:
		if ev.Child == nil {
			return
		}
		ch := &child{ChildSA: *ev.Child, sa: ev.SA}
		c.children[childKey{ev.SA, ch.InSPI}] = ch
		c.exportESP(ch.Remote.Addr(), ch.Local.Addr(), &ch.In)
		c.exportESP(ch.Local.Addr(), ch.Remote.Addr(), &ch.Out)
		if ev.Kind == ike.EventChildRekeyed {
			c.counters.childRekeys.Add(1)
		}
		lg.Info("CHILD_SA with the hub installed", "esp_spi", ops.SPI32(ch.InSPI), "state", "INSTALLED")
	case ike.EventChildDown:
		if ev.Child == nil {
			return
		}
		k := childKey{ev.SA, ev.Child.InSPI}
		if ch := c.children[k]; ch != nil {
			ch.wipe()
			delete(c.children, k)
		}
		lg.Info("CHILD_SA with the hub removed", "esp_spi", ops.SPI32(ev.Child.InSPI), "state", "DELETED")
	}
}

// onInformational hands the hub's notifies to the group member. It runs
// on the IKE SA's goroutine; the engine answers with an empty SK{} after.
func (c *CPE) onInformational(_ *ike.SA, ns []*wire.Notify) {
	now := c.clock.Now()
	changed := false
	for _, n := range ops.MPSANotifies(ns) {
		ok, err := c.member.Handle(n, now)
		if err != nil {
			// Member logged which field it refused.
			continue
		}
		changed = changed || ok
	}
	if changed {
		c.kick()
	}
	c.notify() // counters changed either way
}

func familyIndex(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// backoff is an exponential backoff with ±10 % jitter.
type backoff struct {
	min, max time.Duration
	cur      time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	j := time.Duration(rand.Int64N(int64(b.cur)/5+1)) - b.cur/10
	return max(b.cur+j, time.Millisecond)
}

func (b *backoff) reset() { b.cur = 0 }
