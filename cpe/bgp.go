package cpe

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"net"
	"net/netip"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/mpsa-vpn/mpsa/bgp/speaker"
	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/routing"
)

// bgpRun is the running speaker; routineMain starts and replaces it, Run
// stops it.
type bgpRun struct {
	sp       *speaker.Speaker
	routerID netip.Addr
	asn      uint32
	endpoint netip.AddrPort
	prefixes []netip.Prefix
	cancel   context.CancelFunc
	done     chan struct{}
}

// fibSink lets the speaker feed the FIB. It refuses routes inside the
// CPE's own LAN prefixes: another CPE claiming part of our LAN (or our own
// prefix reflected back under another originator, after overlay addresses
// moved) must not take our LAN's traffic into the tunnel.
type fibSink struct {
	*routing.FIB
	c *CPE
}

func (s fibSink) Upsert(r routing.Route) error {
	s.c.mu.Lock()
	own := s.c.cfg.LAN.Prefixes
	s.c.mu.Unlock()
	for _, p := range own {
		if p.Bits() <= r.Prefix.Bits() && p.Contains(r.Prefix.Addr()) {
			s.c.counters.ownRoutes.Add(1)
			s.c.log.Debug("ignoring a route inside our LAN", "prefix", r.Prefix.String(), "reason", "inside "+p.String())
			// Whatever the peer had there before goes too.
			return s.FIB.Withdraw(r.Prefix, r.Peer)
		}
	}
	// An IPv6 prefix over an IPv4 underlay (or the reverse) comes with a
	// NEXT_HOP of the endpoint's family, possibly IPv4-mapped (RFC 4798):
	// the Tunnel Encapsulation endpoint says where it goes, so the FIB
	// needs no next hop.
	if r.Endpoint.IsValid() && r.NextHop.IsValid() && (r.NextHop.Is4In6() || r.NextHop.Is4() != r.Prefix.Addr().Is4()) {
		r.NextHop = netip.Addr{}
	}
	// The speaker has already cleared the route's stale mark; after a hub
	// restart the route is often the one we kept, so the FIB does not
	// change and nothing else would wake Wait on Status.BGP.Stale.
	defer s.c.notify()
	return s.FIB.Upsert(r)
}

func (s fibSink) WithdrawPeer(p netip.Addr) { s.FIB.WithdrawPeer(p) }

// routerID is the configured BGP identifier, else our IPv4 overlay address,
// else one derived from the identity.
func routerID(cfg *configs.CPE, vip4 netip.Addr) netip.Addr {
	if cfg.BGP.RouterID.IsValid() {
		return cfg.BGP.RouterID
	}
	if vip4.Is4() {
		return vip4
	}
	h := fnv.New32a()
	h.Write([]byte(cfg.Identity.String()))
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], h.Sum32())
	if b[0] == 0 {
		b[0] = 1
	}
	return netip.AddrFrom4(b)
}

// ensureBGP starts the speaker once the router ID is known (configured, or
// after the first IKE SA gave us an overlay address), restarts it when the
// router ID or AS number changes, and hands it endpoint and prefix changes.
func (c *CPE) ensureBGP(ctx context.Context, cfg *configs.CPE, endpoint netip.AddrPort) {
	c.mu.Lock()
	reset := c.bgpReset
	c.bgpReset = false
	var vip4 netip.Addr
	if info, ok := c.infos[c.sa]; ok {
		for _, p := range info.VIPs {
			if p.Addr().Is4() {
				vip4 = p.Addr()
				break
			}
		}
	}
	c.mu.Unlock()
	if !vip4.IsValid() && c.installed.vip.Is4() {
		vip4 = c.installed.vip
	}
	if c.bgp == nil && !cfg.BGP.RouterID.IsValid() && !c.installed.vip.IsValid() {
		return // not connected yet: the router ID may be our overlay address
	}
	rid := routerID(cfg, vip4)
	if c.bgp != nil && (reset || c.bgp.routerID != rid || c.bgp.asn != cfg.BGP.ASN) {
		c.log.Info("restarting the BGP speaker", "reason", "router ID or AS changed")
		c.stopBGP()
	}
	if c.bgp == nil {
		if ctx.Err() != nil {
			return
		}
		c.startBGP(ctx, cfg, rid, endpoint)
		return
	}
	if endpoint.IsValid() && endpoint != c.bgp.endpoint {
		c.log.Info("advertising a new ESP endpoint", "endpoint", endpoint.String())
		c.bgp.sp.SetEndpoint(endpoint)
		c.mu.Lock()
		c.bgp.endpoint = endpoint
		c.mu.Unlock()
	}
	if !slices.Equal(cfg.LAN.Prefixes, c.bgp.prefixes) {
		c.log.Info("advertising new LAN prefixes", "reason", prefixesString(cfg.LAN.Prefixes))
		c.bgp.sp.SetPrefixes(cfg.LAN.Prefixes)
		c.mu.Lock()
		c.bgp.prefixes = slices.Clone(cfg.LAN.Prefixes)
		c.mu.Unlock()
	}
}

func (c *CPE) startBGP(ctx context.Context, cfg *configs.CPE, rid netip.Addr, endpoint netip.AddrPort) {
	scfg := speaker.Config{
		ASN:      cfg.BGP.ASN,
		RouterID: rid,
		Dial:     c.dialHub,
		Prefixes: slices.Clone(cfg.LAN.Prefixes),
		Endpoint: endpoint,
		Sink:     fibSink{FIB: c.fib, c: c},
		Tunnel:   GroupTunnel,
		OnState:  func(speaker.State) { c.notify() },
		Logger:   c.base,
	}
	if c.o.bgp != nil {
		c.o.bgp(&scfg)
	}
	sp, err := speaker.New(scfg)
	if err != nil {
		c.log.Error("cannot start the BGP speaker", "err", err)
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &bgpRun{sp: sp, routerID: rid, asn: cfg.BGP.ASN, endpoint: endpoint, prefixes: slices.Clone(cfg.LAN.Prefixes),
		cancel: cancel, done: make(chan struct{})}
	c.mu.Lock()
	c.bgp = r
	c.mu.Unlock()
	c.log.Info("BGP speaker started", "reason", "router ID "+rid.String(), "endpoint", endpoint.String())
	go func() {
		defer close(r.done)
		if err := sp.Run(ctx); err != nil && ctx.Err() == nil {
			c.log.Error("BGP speaker stopped", "err", err)
		}
	}()
}

// stopBGP stops the speaker and waits for it; its routes leave the FIB.
func (c *CPE) stopBGP() {
	r := c.bgp
	if r == nil {
		return
	}
	c.mu.Lock()
	c.bgp = nil
	c.mu.Unlock()
	r.cancel()
	<-r.done
}

// restartBGP asks routineMain to start the speaker again.
func (c *CPE) restartBGP() {
	c.mu.Lock()
	c.bgpReset = true
	c.mu.Unlock()
	c.kick()
}

// dialHub is the speaker's transport: TCP from our overlay address to the
// hub's, port 179, inside the CHILD_SA. It waits until that path exists.
// The connection is closed when the path goes away (see setTunnel).
func (c *CPE) dialHub(ctx context.Context) (net.Conn, error) {
	var t tunnel
	for {
		c.mu.Lock()
		t = c.tunnel
		ch := c.watchLocked()
		c.mu.Unlock()
		if t.up {
			break
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	d := net.Dialer{
		Timeout:   DefaultDialTimeout,
		LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(t.vip, 0)),
	}
	if t.bind != "" {
		// Bound to the tunnel device, the connection can never leave in
		// clear through another interface.
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), t.bind) })
			return errors.Join(err, serr)
		}
	}
	var conn net.Conn
	err := c.inNetns(func() error {
		var err error
		conn, err = d.DialContext(ctx, "tcp", netip.AddrPortFrom(t.hub, configs.DefaultBGPPort).String())
		return err
	})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tunnel.gen != t.gen {
		conn.Close()
		return nil, errors.New("cpe: the path to the hub changed while connecting")
	}
	tc := &trackedConn{Conn: conn, c: c}
	c.bgpConns[tc] = struct{}{}
	return tc, nil
}

// trackedConn leaves the CPE's set of BGP connections when closed.
type trackedConn struct {
	net.Conn
	c *CPE
}

func (t *trackedConn) Close() error {
	t.c.mu.Lock()
	delete(t.c.bgpConns, t)
	t.c.mu.Unlock()
	return t.Conn.Close()
}

func prefixesString(ps []netip.Prefix) string {
	b := make([]byte, 0, 20*len(ps))
	for i, p := range ps {
		if i > 0 {
			b = append(b, ' ')
		}
		b = p.AppendTo(b)
	}
	return string(b)
}
