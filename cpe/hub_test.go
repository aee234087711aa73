package cpe

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/dataplane/memory"
	"github.com/mpsa-vpn/mpsa/dataplane/userspace"
	"github.com/mpsa-vpn/mpsa/dataplane/xfrm"
	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/internal/ops"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/mpsa"
	"github.com/mpsa-vpn/mpsa/routing"
)

// testHub is the hub side of the tests, built from the same packages the
// hub daemon uses: an IKE responder that assigns overlay addresses and
// narrows TSr to its own overlay address, an MPSA key server, a data plane
// for the CHILD_SAs and a FIB routing each CPE's overlay address to its
// CHILD_SA. The route reflector is a real gobgpd (startGoBGP).
type testHub struct {
	t          testing.TB
	log        *slog.Logger
	ns         *testenv.Netns // nil: the test's own namespace (loopback tests)
	overlay    netip.Addr
	outer      []netip.AddrPort // where the CPEs reach it (IKE)
	natt       uint16
	psk        map[string][]byte // identity -> PSK; under mu
	ks         *mpsa.KeyServer
	fib        *routing.FIB
	dp         dataplane.Backend
	mem        *memory.Backend // dp when it is the in-memory one
	mgr        *ike.Manager
	stopTick   chan struct{}
	stopFollow func()
	wg         sync.WaitGroup

	mu       sync.Mutex // guards the following and psk
	vips     map[string]netip.Addr
	children map[childKey]*hubChild
	tunnels  map[*ike.SA]routing.Tunnel
	nextT    routing.Tunnel
	sessions map[*ike.SA]mpsa.Session
	ups      int
}

type hubChild struct {
	ike.ChildSA
	name string
	vip  netip.Addr
	t    routing.Tunnel
}

// hubOptions say where the hub runs.
type hubOptions struct {
	ns      *testenv.Netns
	outer   []netip.AddrPort // IKE addresses to listen on (port: IKE port)
	natt    uint16           // NAT-T port; 4500 unless set
	overlay netip.Addr
	psk     map[string][]byte
	ks      *mpsa.KeyServer // reuse (hub restart keeps its group state)
	memory  bool            // in-memory data plane (no packets move)
	xfrm    bool            // the kernel's XFRM data plane (needs ESP: the VM)
}

func newTestHub(t testing.TB, o hubOptions) *testHub {
	t.Helper()
	h := &testHub{t: t, log: testLogger(t, "hub"), ns: o.ns, overlay: o.overlay, outer: o.outer, natt: o.natt, psk: o.psk,
		ks: o.ks, fib: routing.New(routing.WithLogger(slog.New(slog.DiscardHandler))),
		stopTick: make(chan struct{}), vips: map[string]netip.Addr{}, children: map[childKey]*hubChild{},
		tunnels: map[*ike.SA]routing.Tunnel{}, nextT: 100, sessions: map[*ike.SA]mpsa.Session{}}
	if h.natt == 0 {
		h.natt = 4500
	}
	if h.ks == nil {
		ks, err := mpsa.NewKeyServer(mpsa.KeyServerConfig{Logger: h.log})
		if err != nil {
			t.Fatal(err)
		}
		if err := ks.AddGroup(mpsa.GroupConfig{Name: "acme"}); err != nil {
			t.Fatal(err)
		}
		for id := range h.psk {
			if err := ks.Provision(id, "acme"); err != nil {
				t.Fatal(err)
			}
		}
		h.ks = ks
	}
	do := func(f func() error) error {
		if h.ns == nil {
			return f()
		}
		return h.ns.Do(f)
	}
	var pc net.PacketConn
	var nattConn ike.Conn
	switch {
	case o.xfrm:
		// The kernel's ESP: overlay address on a dummy device, IKE's own
		// NAT-T socket prepared for the kernel's decapsulation.
		h.ns.MustIP("link", "add", "hub0", "type", "dummy")
		h.ns.MustIP("addr", "add", netip.PrefixFrom(h.overlay, 32).String(), "dev", "hub0")
		h.ns.MustIP("link", "set", "hub0", "up")
		b, err := xfrm.New(xfrm.Config{Netns: h.ns.Name, Routes: h.fib, Logger: h.log,
			Endpoints: []netip.AddrPort{netip.AddrPortFrom(h.outer[0].Addr(), 0)}})
		if err != nil {
			t.Fatal(err)
		}
		h.dp = b
		var u *ike.UDPConn
		err = do(func() error {
			var err error
			if u, err = ike.ListenUDP("udp4", netip.AddrPortFrom(h.outer[0].Addr(), h.natt)); err != nil {
				return err
			}
			return xfrm.PrepareIKESocket(u.UDPConn())
		})
		if err != nil {
			t.Fatal(err)
		}
		nattConn = u
	case o.memory:
		h.mem = memory.New()
		h.dp = h.mem
		err := do(func() error {
			var err error
			pc, err = net.ListenPacket("udp4", netip.AddrPortFrom(h.outer[0].Addr(), h.natt).String())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	default:
		var b *userspace.Backend
		err := do(func() error {
			var err error
			b, err = userspace.New(userspace.Config{FIB: h.fib, TUNName: "hub0", MTU: 1380, RawESP: true,
				Addresses: []netip.Prefix{netip.PrefixFrom(h.overlay, 32)}, Logger: h.log})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		h.dp = b
		// The backend's NAT-T conn: real local addresses (IP_PKTINFO).
		nattConn = b.NATT()
		sub := h.fib.Subscribe()
		ctx, cancel := context.WithCancel(context.Background())
		h.stopFollow = func() { cancel(); sub.Close() }
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			b.FollowRoutes(ctx, sub)
		}()
	}
	cfg := ike.Config{
		Local: auth.Local{ID: auth.MustParseID("fqdn:hub.example.net")},
		Peers: func(_ context.Context, id auth.ID) (*auth.Peer, error) {
			h.mu.Lock()
			psk, ok := h.psk[id.String()]
			h.mu.Unlock()
			if !ok {
				return nil, fmt.Errorf("%w: %v", auth.ErrUnknownPeer, id)
			}
			return &auth.Peer{PSK: psk, Tag: id.String()}, nil
		},
		LocalTS: []netip.Prefix{netip.PrefixFrom(h.overlay, 32)},
		Policy: ike.Policy{
			VendorIDs:        mpsa.VendorIDs(),
			AssignAddresses:  h.assign,
			ReleaseAddresses: func(ike.PeerInfo, []netip.Prefix) {},
		},
		Events:            h.onEvent,
		MOBIKE:            true,
		NATTPort:          h.natt,
		RetransmitTimeout: 500 * time.Millisecond,
		RetransmitTries:   3,
		Logger:            h.log,
	}
	mgr, err := ike.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.mgr = mgr
	for _, ap := range h.outer {
		var u *ike.UDPConn
		err := do(func() error {
			var err error
			u, err = ike.ListenUDP("udp", ap)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		mgr.AddConn(u, false)
	}
	if nattConn == nil {
		nattConn = &fixedDst{PacketConn: ops.NewPacketConn(pc), addrs: h.outer}
	}
	mgr.AddConn(nattConn, true)
	h.wg.Add(1)
	go h.routineTick()
	t.Cleanup(h.stop)
	return h
}

// stop takes the hub away at once, as a crash would: no DELETE is sent.
func (h *testHub) stop() {
	select {
	case <-h.stopTick:
		return
	default:
	}
	close(h.stopTick)
	if h.stopFollow != nil {
		h.stopFollow()
	}
	h.mgr.Close()
	h.dp.Close()
	h.wg.Wait()
}

// fixedDst reports the hub's own address as the destination of datagrams
// on the in-memory hub's stand-in NAT-T socket (a net.PacketConn, which
// cannot tell), so NAT detection sees none.
type fixedDst struct {
	*ops.PacketConn
	addrs []netip.AddrPort
}

func (f *fixedDst) ReadPacket(b []byte) (int, netip.AddrPort, netip.AddrPort, error) {
	n, src, _, err := f.PacketConn.ReadPacket(b)
	var dst netip.AddrPort
	for _, a := range f.addrs {
		if a.Addr().Is4() == src.Addr().Is4() {
			dst = netip.AddrPortFrom(a.Addr(), f.LocalAddr().Port())
			break
		}
	}
	return n, src, dst, err
}

// routineTick drives the key server.
func (h *testHub) routineTick() {
	defer h.wg.Done()
	for {
		d := time.Hour
		if at := h.ks.NextDeadline(); !at.IsZero() {
			d = max(time.Until(at), 0)
		}
		t := time.NewTimer(d)
		select {
		case <-h.stopTick:
			t.Stop()
			return
		case <-t.C:
			h.ks.Tick()
		}
	}
}

func (h *testHub) assign(_ context.Context, peer ike.PeerInfo, requested []netip.Addr) ([]netip.Prefix, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	name := peer.ID.String()
	// Sticky by identity, as a hub keeps them across restarts:
	// cpeN gets overlay .N+1.
	vip, ok := h.vips[name]
	if !ok {
		var n int
		if _, err := fmt.Sscanf(name, "fqdn:cpe%d.", &n); err != nil || n < 1 || n > 200 {
			return nil, fmt.Errorf("no overlay address for %s", name)
		}
		b := h.overlay.As4()
		b[3] += byte(n)
		vip = netip.AddrFrom4(b)
		h.vips[name] = vip
	}
	for _, r := range requested {
		if r.Is4() {
			return []netip.Prefix{netip.PrefixFrom(vip, 32)}, nil
		}
	}
	return nil, fmt.Errorf("no IPv4 address asked for")
}

func (h *testHub) onEvent(ev ike.Event) {
	name, _ := ev.Info.Tag.(string)
	switch ev.Kind {
	case ike.EventIKEUp:
		h.mu.Lock()
		sess := mpsa.BlockingSession(func(ns []mpsa.Notify) error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return ev.SA.SendInformational(ctx, ops.WireNotifies(ns))
		})
		h.sessions[ev.SA] = sess
		h.tunnels[ev.SA] = h.nextT
		h.nextT++
		h.ups++
		h.mu.Unlock()
		caps := mpsa.PeerCapabilities(ev.Info.PeerVendorIDs, ops.MPSANotifies(ev.Info.PeerAuthNotifies))
		if err := h.ks.Connected(name, sess, caps); err != nil {
			h.t.Errorf("hub: key server refused %s: %v", name, err)
		}
	case ike.EventIKEDown:
		h.mu.Lock()
		sess := h.sessions[ev.SA]
		delete(h.sessions, ev.SA)
		for k, ch := range h.children {
			if k.sa == ev.SA {
				ch.In.Wipe()
				ch.Out.Wipe()
				delete(h.children, k)
			}
		}
		h.mu.Unlock()
		if sess != nil {
			h.ks.Disconnected(name, sess)
		}
	case ike.EventChildUp, ike.EventChildRekeyed:
		h.mu.Lock()
		var vip netip.Addr
		if len(ev.Info.VIPs) > 0 {
			vip = ev.Info.VIPs[0].Addr()
		}
		h.children[childKey{ev.SA, ev.Child.InSPI}] = &hubChild{ChildSA: *ev.Child, name: name, vip: vip, t: h.tunnels[ev.SA]}
		h.mu.Unlock()
	case ike.EventChildDown:
		h.mu.Lock()
		if ch := h.children[childKey{ev.SA, ev.Child.InSPI}]; ch != nil {
			ch.In.Wipe()
			ch.Out.Wipe()
			delete(h.children, childKey{ev.SA, ev.Child.InSPI})
		}
		h.mu.Unlock()
	case ike.EventIKEAddressChanged:
		h.mu.Lock()
		for _, ci := range ev.Info.Children {
			if ch := h.children[childKey{ev.SA, ci.InSPI}]; ch != nil {
				ch.Local, ch.Remote, ch.Encap = ci.Local, ci.Remote, ci.Encap
			}
		}
		h.mu.Unlock()
	}
	h.apply()
}

// apply programs the hub's data plane and FIB from its CHILD_SAs.
func (h *testHub) apply() {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := &dataplane.State{}
	var ops []routing.Op
	want := map[netip.Prefix]bool{}
	seenT := map[routing.Tunnel]bool{}
	for _, ch := range h.children {
		peer := ch.Remote
		if !ch.Encap {
			peer = netip.AddrPortFrom(peer.Addr(), 0)
		}
		st.SAs = append(st.SAs, dataplane.SA{Keys: ch.In, Dir: dataplane.In, Tunnel: ch.t, Peer: peer})
		if !seenT[ch.t] {
			seenT[ch.t] = true
			st.SAs = append(st.SAs, dataplane.SA{Keys: ch.Out, Dir: dataplane.Out, Tunnel: ch.t, Peer: peer})
		}
		if ch.vip.IsValid() {
			p := netip.PrefixFrom(ch.vip, 32)
			want[p] = true
			ops = append(ops, routing.Op{Route: routing.Route{Prefix: p, Endpoint: peer, Tunnel: ch.t, Source: routing.SourceStatic}})
		}
	}
	if err := h.dp.Set(st); err != nil {
		h.log.Warn("hub data plane", "err", err)
	}
	for r := range h.fib.Routes() {
		if !want[r.Route.Prefix] {
			ops = append(ops, routing.Op{Route: r.Route, Withdraw: true})
		}
	}
	if err := h.fib.Apply(ops); err != nil {
		h.t.Errorf("hub FIB: %v", err)
	}
}

// gobgpd runs a real GoBGP route reflector in the hub's namespace, listening
// on the hub's overlay address, with every CPE overlay address as a dynamic
// neighbour and graceful restart on.
type gobgpd struct {
	t    testing.TB
	ns   *testenv.Netns
	conf string
	cmd  *exec.Cmd
	done chan struct{}
}

func startGoBGP(t testing.TB, ns *testenv.Netns, overlay netip.Addr, asn uint32) *gobgpd {
	t.Helper()
	testenv.Binary(t, "gobgpd", "apt-get install gobgpd")
	dir := t.TempDir()
	conf := filepath.Join(dir, "gobgpd.toml")
	pfx := netip.PrefixFrom(overlay, 24).Masked()
	text := fmt.Sprintf(`[global.config]
  as = %[1]d
  router-id = "%[2]s"
  local-address-list = ["%[2]s"]
  port = 179

[[peer-groups]]
  [peer-groups.config]
    peer-group-name = "cpe"
    peer-as = %[1]d
  [peer-groups.route-reflector.config]
    route-reflector-client = true
    route-reflector-cluster-id = "%[2]s"
  [peer-groups.timers.config]
    hold-time = 9
    keepalive-interval = 3
  [peer-groups.graceful-restart.config]
    enabled = true
    restart-time = 60
    notification-enabled = true
  [[peer-groups.afi-safis]]
    [peer-groups.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
    [peer-groups.afi-safis.mp-graceful-restart.config]
      enabled = true
  [[peer-groups.afi-safis]]
    [peer-groups.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
    [peer-groups.afi-safis.mp-graceful-restart.config]
      enabled = true

[[dynamic-neighbors]]
  [dynamic-neighbors.config]
    prefix = "%[3]s"
    peer-group = "cpe"
`, asn, overlay, pfx)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &gobgpd{t: t, ns: ns, conf: conf}
	g.start(false)
	t.Cleanup(g.kill)
	return g
}

// startRestarting starts gobgpd again as a restarting speaker (-r: the
// graceful restart capability says its forwarding state was preserved).
func (g *gobgpd) startRestarting() { g.start(true) }

func (g *gobgpd) start(restarting bool) {
	args := []string{"-f", g.conf, "-p", "--api-hosts", "127.0.0.1:50051", "--pprof-disable", "-l", "warn"}
	if restarting {
		args = append(args, "-r")
	}
	g.cmd = g.ns.Command(context.Background(), "gobgpd", args...)
	var out strings.Builder
	g.cmd.Stdout, g.cmd.Stderr = &out, &out
	if err := g.cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	g.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		cmd.Wait()
		close(done)
	}(g.cmd, g.done)
}

// kill ends gobgpd with SIGKILL, as a crashed hub.
func (g *gobgpd) kill() {
	if g.cmd == nil {
		return
	}
	// ip netns exec execs gobgpd in place, so the pid is gobgpd's.
	g.cmd.Process.Kill()
	<-g.done
	g.cmd = nil
}
