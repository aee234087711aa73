//go:build linux

package xfrm

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/routing"
	"github.com/mpsa-vpn/mpsa/tests/vm/vmtest"
	"github.com/mpsa-vpn/mpsa/transform"
)

// The kernel tests move real traffic through ESP states the backend
// installed. They need a kernel with ESP: the guest of the VM harness
// (tests/vm, which sets vmtest.Env), or a host whose kernel passes Probe.
// On other hosts TestVM boots the guest and runs them there.

func inVM() bool { return os.Getenv(vmtest.Env) == "1" }

// requireESP skips unless the kernel has ESP. Such a skip is not a gap in
// coverage: TestVM runs the test in a guest that has it.
func requireESP(t *testing.T) {
	t.Helper()
	if inVM() {
		return
	}
	testenv.Root(t)
	ns := testenv.NewNetns(t, "xfe")
	if err := Probe(ns.Name); err != nil {
		t.Skipf("no ESP in this kernel (%v); TestVM runs this test in a QEMU guest", err)
	}
}

// TestVM runs this package's kernel tests in a QEMU guest that boots
// Debian's kernel, when the host's kernel cannot do ESP itself.
func TestVM(t *testing.T) {
	if inVM() {
		t.Skip("already inside the VM")
	}
	testenv.Root(t)
	if Probe(testenv.NewNetns(t, "xfe").Name) == nil {
		t.Skip("the host kernel has ESP: the kernel tests ran directly")
	}
	testenv.Short(t)
	vmtest.Run(t, vmtest.Options{Packages: []string{"./dataplane/xfrm"}})
}

// cpe is one CPE namespace of the lab.
type cpe struct {
	name       string
	ns         *testenv.Netns
	under4     netip.Addr // underlay addresses
	under6     netip.Addr
	endpoints  []netip.AddrPort
	lan4, lan6 netip.Addr // LAN addresses (on lan0)
	overlay    netip.Addr // the CHILD_SA's address (on lo)
	fib        *routing.FIB
	b          *Backend
	applied    applied
	encap      []*net.UDPConn // port 4500 sockets with UDP_ENCAP_ESPINUDP
}

func (c *cpe) lan4Prefix() netip.Prefix { return netip.PrefixFrom(c.lan4, 24).Masked() }
func (c *cpe) lan6Prefix() netip.Prefix { return netip.PrefixFrom(c.lan6, 64).Masked() }

// lab is three CPEs (a, b, c) on one bridged underlay, each with a LAN.
// The routes exercise every way out: a→b ESP-in-UDP over IPv4 and IPv6,
// a→c raw ESP over IPv4 (IPv6 inside IPv4 too), b→c raw ESP over IPv6,
// c→a IPv6 inside IPv4 UDP. a and b also share a point-to-point SA pair
// (a CHILD_SA) for their overlay addresses.
type lab struct {
	cpes    []*cpe
	capture *capture
}

func newLab(t *testing.T) *lab {
	t.Helper()
	u := testenv.NewNetns(t, "xvu")
	u.MustIP("link", "add", "br0", "type", "bridge")
	u.MustIP("link", "set", "br0", "up")
	l := &lab{}
	for i, name := range []string{"a", "b", "c"} {
		n := i + 1
		c := &cpe{
			name:    name,
			ns:      testenv.NewNetns(t, "xv"+name),
			under4:  netip.MustParseAddr(fmt.Sprintf("192.0.2.%d", n)),
			under6:  netip.MustParseAddr(fmt.Sprintf("2001:db8::%d", n)),
			lan4:    netip.MustParseAddr(fmt.Sprintf("10.%d.0.1", n)),
			lan6:    netip.MustParseAddr(fmt.Sprintf("fd00:0:0:%d::1", n)),
			overlay: netip.MustParseAddr(fmt.Sprintf("100.64.0.%d", n)),
			fib:     routing.New(),
			applied: make(applied, 64),
		}
		port := uint16(4500)
		if name == "c" {
			port = 0 // c receives raw ESP
		}
		c.endpoints = []netip.AddrPort{netip.AddrPortFrom(c.under4, port), netip.AddrPortFrom(c.under6, port)}
		testenv.Veth(t, c.ns, "eth0", u, "p"+name)
		u.MustIP("link", "set", "p"+name, "master", "br0")
		c.ns.MustIP("addr", "add", c.under4.String()+"/24", "dev", "eth0")
		c.ns.MustIP("addr", "add", c.under6.String()+"/64", "dev", "eth0", "nodad")
		c.ns.MustIP("link", "add", "lan0", "type", "dummy")
		c.ns.MustIP("link", "set", "lan0", "up")
		c.ns.MustIP("addr", "add", c.lan4.String()+"/24", "dev", "lan0")
		c.ns.MustIP("addr", "add", c.lan6.String()+"/64", "dev", "lan0", "nodad")
		c.ns.MustIP("addr", "add", c.overlay.String()+"/32", "dev", "lo")
		l.cpes = append(l.cpes, c)
	}
	a, b, c := l.cpes[0], l.cpes[1], l.cpes[2]
	ep := func(addr netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(addr, port) }
	routes := map[*cpe][]struct {
		to *cpe
		v6 bool
		ep netip.AddrPort
	}{
		a: {{b, false, ep(b.under4, 4500)}, {b, true, ep(b.under6, 4500)}, {c, false, ep(c.under4, 0)}, {c, true, ep(c.under4, 0)}},
		b: {{a, false, ep(a.under4, 4500)}, {a, true, ep(a.under6, 4500)}, {c, false, ep(c.under4, 0)}, {c, true, ep(c.under6, 0)}},
		c: {{a, false, ep(a.under4, 4500)}, {a, true, ep(a.under4, 4500)}, {b, false, ep(b.under4, 4500)}, {b, true, ep(b.under6, 4500)}},
	}
	for _, x := range l.cpes {
		for _, r := range routes[x] {
			p, src := r.to.lan4Prefix(), x.lan4
			if r.v6 {
				p, src = r.to.lan6Prefix(), x.lan6
			}
			x.ns.MustIP("route", "add", p.String(), "dev", "eth0", "src", src.String())
			if err := x.fib.Upsert(routing.Route{Prefix: p, Endpoint: r.ep, Tunnel: 1, Source: routing.SourceBGP,
				Peer: r.to.under4, LocalPref: 100}); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range []netip.Prefix{x.lan4Prefix(), x.lan6Prefix()} {
			if err := x.fib.Upsert(routing.Route{Prefix: p, Source: routing.SourceConnected}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The CHILD_SA pair between a and b carries their overlay addresses.
	for _, pair := range [][2]*cpe{{a, b}, {b, a}} {
		x, y := pair[0], pair[1]
		x.ns.MustIP("route", "add", y.overlay.String()+"/32", "dev", "eth0", "src", x.overlay.String())
		if err := x.fib.Upsert(routing.Route{Prefix: netip.PrefixFrom(y.overlay, 32), Endpoint: ep(y.under4, 4500),
			Tunnel: 2, Source: routing.SourceStatic}); err != nil {
			t.Fatal(err)
		}
	}
	l.capture = startCapture(t, u)
	for _, x := range l.cpes {
		if x.endpoints[0].Port() != 0 {
			x.encap = listenEncap(t, x.ns)
		}
		var err error
		x.b, err = New(Config{Netns: x.ns.Name, Routes: x.fib, Endpoints: x.endpoints, Applied: x.applied.hook})
		if err != nil {
			t.Fatalf("%s: %v", x.name, err)
		}
		t.Cleanup(func() { x.b.Close() })
	}
	return l
}

// listenEncap opens IKE's two sockets on port 4500, prepared for ESP-in-UDP.
func listenEncap(t *testing.T, ns *testenv.Netns) []*net.UDPConn {
	var conns []*net.UDPConn
	for _, network := range []string{"udp4", "udp6"} {
		var c *net.UDPConn
		if err := ns.Do(func() error {
			var err error
			c, err = net.ListenUDP(network, &net.UDPAddr{Port: 4500})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := PrepareIKESocket(c); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	return conns
}

// keyset is the keys of one run: the group SA and the CHILD_SA pair.
type keyset struct {
	group       esp.Keys
	childAB     esp.Keys // a → b
	childBA     esp.Keys // b → a
	byspi       map[uint32]esp.Keys
	childReplay int
}

func randomKeys(t *testing.T, spi uint32, suite transform.ESP) esp.Keys {
	el, il, err := suite.KeyLens()
	if err != nil {
		t.Fatal(err)
	}
	k := esp.Keys{SPI: spi, Suite: suite, EncKey: make([]byte, el), IntegKey: make([]byte, il)}
	rand.Read(k.EncKey)
	rand.Read(k.IntegKey)
	return k
}

// childSAs returns x's side of the CHILD_SA pair with y (a and b only).
func (l *lab) childSAs(ks *keyset, x *cpe) []dataplane.SA {
	a, b := l.cpes[0], l.cpes[1]
	var in, out esp.Keys
	var peer *cpe
	switch x {
	case a:
		in, out, peer = ks.childBA, ks.childAB, b
	case b:
		in, out, peer = ks.childAB, ks.childBA, a
	default:
		return nil
	}
	p := netip.AddrPortFrom(peer.under4, 4500)
	return []dataplane.SA{
		{Keys: in, Dir: dataplane.In, Tunnel: 2, Peer: p, ReplayWindow: ks.childReplay,
			RemoteSelectors: []netip.Prefix{netip.PrefixFrom(peer.overlay, 32)},
			LocalSelectors:  []netip.Prefix{netip.PrefixFrom(x.overlay, 32)}},
		{Keys: out, Dir: dataplane.Out, Tunnel: 2, Peer: p},
	}
}

// set installs the group SAs given and x's CHILD_SAs on x.
func (l *lab) set(t *testing.T, ks *keyset, x *cpe, group ...dataplane.SA) {
	t.Helper()
	st := &dataplane.State{SAs: append(group, l.childSAs(ks, x)...)}
	if err := x.b.Set(st); err != nil {
		t.Fatalf("%s: Set: %v", x.name, err)
	}
	// What the kernel holds is what the backend meant.
	kt, err := x.b.KernelText()
	if err != nil {
		t.Fatal(err)
	}
	if kt != x.b.Text() {
		t.Fatalf("%s: the kernel holds\n%s\nthe backend meant\n%s", x.name, kt, x.b.Text())
	}
	checkKernelKeys(t, x, ks)
}

// checkKernelKeys compares the key material of every state in x's kernel
// with the keys the test gave for its SPI.
func checkKernelKeys(t *testing.T, x *cpe, ks *keyset) {
	t.Helper()
	h := nsHandle(t, x.ns)
	states, err := h.XfrmStateList(netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for i := range states {
		s := &states[i]
		want, ok := ks.byspi[uint32(s.Spi)]
		var got1, got2 []byte
		if s.Aead != nil {
			got1 = s.Aead.Key
		} else if s.Crypt != nil && s.Auth != nil {
			got1, got2 = s.Crypt.Key, s.Auth.Key
		}
		if !ok || !bytes.Equal(got1, want.EncKey) || !bytes.Equal(got2, want.IntegKey) {
			t.Errorf("%s: the kernel's state SPI %08x does not hold the keys given for it", x.name, uint32(s.Spi))
		}
		wipeNetlinkState(s)
	}
}

// ping sends count echo requests from src to dst inside x and reports
// whether an answer came back within five seconds.
func ping(x *cpe, src, dst netip.Addr, count int) (bool, string) {
	out, err := x.ns.Run("ping", "-c", fmt.Sprint(count), "-i", "0.2", "-w", "5", "-I", src.String(), dst.String())
	return err == nil, out
}

// noPing reports whether one echo request from src to dst went
// unanswered for two seconds: the negative controls, which the drop
// counters then confirm.
func noPing(x *cpe, src, dst netip.Addr) bool {
	_, err := x.ns.Run("ping", "-c", "1", "-w", "2", "-W", "2", "-I", src.String(), dst.String())
	return err != nil
}

func (l *lab) mustPing(t *testing.T, x, y *cpe, v6 bool) {
	t.Helper()
	src, dst := x.lan4, y.lan4
	if v6 {
		src, dst = x.lan6, y.lan6
	}
	if ok, out := ping(x, src, dst, 2); !ok {
		l.diagnose(t)
		t.Fatalf("ping %s (%v) -> %s (%v) failed:\n%s", x.name, src, y.name, dst, out)
	}
}

// diagnose logs what the kernels counted, for a failure's report.
func (l *lab) diagnose(t *testing.T) {
	t.Helper()
	for _, x := range l.cpes {
		stat, _ := x.ns.Run("cat", "/proc/net/xfrm_stat")
		var nonzero []string
		for _, line := range strings.Split(stat, "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[1] != "0" {
				nonzero = append(nonzero, line)
			}
		}
		t.Logf("%s: xfrm_stat %s; state packets %v", x.name, strings.Join(nonzero, ", "), stateCounters(t, x))
		st, _ := x.ns.Run("ip", "xfrm", "state")
		var keep []string
		for _, line := range strings.Split(st, "\n") {
			if !strings.Contains(line, "0x") || strings.Contains(line, "spi") {
				keep = append(keep, line)
			}
		}
		pol, _ := x.ns.Run("ip", "xfrm", "policy")
		t.Logf("%s: states (no keys):\n%s\npolicies:\n%s", x.name, strings.Join(keep, "\n"), pol)
	}
}

// allPairs pings between every two CPEs' LANs, both families: the
// request and the reply take the two directions of a pair.
func (l *lab) allPairs(t *testing.T) {
	t.Helper()
	for i, x := range l.cpes {
		for _, y := range l.cpes[i+1:] {
			l.mustPing(t, x, y, false)
			l.mustPing(t, x, y, true)
		}
	}
}

// tcpTransfer sends n random octets from x's src to y's dst over TCP and
// checks y received exactly them.
func tcpTransfer(t *testing.T, x, y *cpe, src, dst netip.Addr, n int) {
	t.Helper()
	var ln net.Listener
	if err := y.ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(dst, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		sum [32]byte
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		h := sha256.New()
		m, err := io.Copy(h, c)
		var r result
		copy(r.sum[:], h.Sum(nil))
		r.n, r.err = m, err
		done <- r
	}()
	payload := make([]byte, n)
	rand.Read(payload)
	var conn net.Conn
	if err := x.ns.Do(func() error {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: 20 * time.Second}
		var err error
		conn, err = d.Dial("tcp", ln.Addr().String())
		return err
	}); err != nil {
		t.Fatalf("TCP %s -> %s: %v", src, dst, err)
	}
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := conn.Write(payload); err != nil {
		t.Fatalf("TCP %s -> %s: write: %v", src, dst, err)
	}
	conn.Close()
	r := <-done
	if r.err != nil || r.n != int64(n) || r.sum != sha256.Sum256(payload) {
		t.Logf("TCP %s -> %s failed", src, dst)
		t.Fatalf("TCP %s -> %s: received %d of %d octets (%v), checksum match %v", src, dst, r.n, n, r.err, r.sum == sha256.Sum256(payload))
	}
}

// stateCounters returns the packet counters of x's kernel states by
// (SPI, destination).
func stateCounters(t *testing.T, x *cpe) map[stateID]uint64 {
	t.Helper()
	h := nsHandle(t, x.ns)
	m := make(map[stateID]uint64)
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		states, err := h.XfrmStateList(fam)
		if err != nil {
			t.Fatal(err)
		}
		for i := range states {
			s := &states[i]
			m[stateID{addrOf(s.Dst, fam == netlink.FAMILY_V4), uint32(s.Spi)}] = s.Statistics.Packets
			wipeNetlinkState(s)
		}
	}
	return m
}

func TestKernelDatapath(t *testing.T) {
	requireESP(t)
	// The whole scenario runs with the group SA's default suite; the other
	// suites only carry traffic every way once.
	suites := []struct {
		name         string
		group, child transform.ESP
		full         bool
	}{
		{"cbc-sha256+gcm", transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA256128},
			transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 256}, true},
		{"gcm+chacha20", transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128},
			transform.ESP{Encr: transform.EncrChaCha20Poly1305}, false},
		{"cbc-sha512+cbc-sha1", transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA512256},
			transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA196}, false},
	}
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) {
			noRoutines(t)
			kernelDatapath(t, s.group, s.child, s.full)
		})
	}
}

func kernelDatapath(t *testing.T, groupSuite, childSuite transform.ESP, full bool) {
	l := newLab(t)
	a, b, c := l.cpes[0], l.cpes[1], l.cpes[2]
	ks := &keyset{
		group:       randomKeys(t, 0x6d000001, groupSuite),
		childAB:     randomKeys(t, 0xc000ab01, childSuite),
		childBA:     randomKeys(t, 0xc000ba01, childSuite),
		childReplay: 64,
	}
	ks.byspi = map[uint32]esp.Keys{ks.group.SPI: ks.group, ks.childAB.SPI: ks.childAB, ks.childBA.SPI: ks.childBA}
	group := func(k esp.Keys, dir dataplane.Direction) dataplane.SA {
		return dataplane.SA{Keys: k, Dir: dir, Tunnel: 1}
	}

	// Before any SA, the tunnelled prefixes are blocked: nothing leaks.
	if !noPing(a, a.lan4, b.lan4) {
		t.Fatal("a reached b's LAN before any SA was installed")
	}

	for _, x := range l.cpes {
		l.set(t, ks, x, group(ks.group, dataplane.Both))
	}
	t.Run("ping", l.allPairs)
	if !full {
		tcpTransfer(t, a, b, a.lan4, b.lan4, 64<<10)
		if ok, out := ping(a, a.overlay, b.overlay, 2); !ok {
			t.Fatalf("ping over the CHILD_SA failed:\n%s", out)
		}
		return
	}
	t.Run("tcp", func(t *testing.T) {
		tcpTransfer(t, a, b, a.lan4, b.lan4, 128<<10) // IPv4 in UDP over IPv4
		tcpTransfer(t, a, b, a.lan6, b.lan6, 128<<10) // IPv6 in UDP over IPv6
		tcpTransfer(t, a, c, a.lan4, c.lan4, 128<<10) // IPv4 raw over IPv4
		tcpTransfer(t, b, c, b.lan6, c.lan6, 128<<10) // IPv6 raw over IPv6
		tcpTransfer(t, c, a, c.lan6, a.lan6, 128<<10) // IPv6 in UDP over IPv4
	})
	t.Run("child SA", func(t *testing.T) {
		if ok, out := ping(a, a.overlay, b.overlay, 2); !ok {
			t.Fatalf("ping over the CHILD_SA failed:\n%s", out)
		}
		tcpTransfer(t, b, a, b.overlay, a.overlay, 64<<10)
		counts := stateCounters(t, a)
		if counts[stateID{b.under4, ks.childAB.SPI}] == 0 || counts[stateID{a.under4, ks.childBA.SPI}] == 0 {
			t.Errorf("CHILD_SA states did not count the traffic: %v", counts)
		}
	})
	t.Run("wire", func(t *testing.T) {
		seen := l.capture.snapshot()
		for _, kind := range []string{"esp4", "esp6", "udp-esp4", "udp-esp6"} {
			if seen[kind] == 0 {
				t.Errorf("no %s on the wire: %v", kind, seen)
			}
		}
		if seen["plaintext"] != 0 {
			t.Errorf("%d packets with inner addresses on the wire in clear", seen["plaintext"])
		}
	})
	t.Run("counters", func(t *testing.T) {
		for _, x := range l.cpes {
			st := x.b.Stats()
			if st.TxPackets == 0 || st.RxPackets == 0 || st.TxBytes == 0 || st.RxBytes == 0 {
				t.Errorf("%s: counters did not move: %+v", x.name, st)
			}
		}
		// Every outbound state towards a peer carried traffic.
		counts := stateCounters(t, a)
		for _, id := range []stateID{{b.under4, ks.group.SPI}, {b.under6, ks.group.SPI}, {c.under4, ks.group.SPI}, {a.under4, ks.group.SPI}, {a.under6, ks.group.SPI}} {
			if counts[id] == 0 {
				t.Errorf("a: state SPI %08x to %v counted nothing", id.spi, id.dst)
			}
		}
	})
	t.Run("ike marker", func(t *testing.T) {
		// Non-ESP datagrams on 4500 (IKE's, behind the four-zero-octet
		// marker) reach the socket; ESP ones went to the kernel.
		var s *net.UDPConn
		if err := c.ns.Do(func() error {
			var err error
			s, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.under4, 4500)))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		msg := append([]byte{0, 0, 0, 0}, "IKE_SA_INIT"...)
		if _, err := s.Write(msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		a.encap[0].SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, err := a.encap[0].ReadFromUDPAddrPort(buf)
		if err != nil || !bytes.Equal(buf[:n], msg) {
			t.Fatalf("IKE socket read %q, %v; want the marker datagram", buf[:n], err)
		}
	})
	t.Run("fib change", func(t *testing.T) {
		// a withdraws c's IPv4 LAN: its policies go, the state to c stays
		// (c's IPv6 LAN still uses it), and a's packets to c leave in
		// clear, which c refuses: its policy wants ESP from a's LAN.
		before := c.b.Stats().Drops["selector"]
		if err := a.fib.Withdraw(c.lan4Prefix(), c.under4); err != nil {
			t.Fatal(err)
		}
		a.applied.waitFor(t, "c's IPv4 LAN withdrawn", func() bool {
			kt, err := a.b.KernelText()
			return err == nil && !strings.Contains(kt, c.lan4Prefix().String()) && strings.Contains(kt, "dst "+c.under4.String()+" ")
		})
		if !noPing(a, a.lan4, c.lan4) {
			t.Error("c accepted a clear ping from a tunnelled prefix")
		}
		if after := c.b.Stats().Drops["selector"]; after <= before {
			t.Errorf("c's selector drops did not grow (%d -> %d)", before, after)
		}
		if err := a.fib.Upsert(routing.Route{Prefix: c.lan4Prefix(), Endpoint: netip.AddrPortFrom(c.under4, 0), Tunnel: 1,
			Source: routing.SourceBGP, Peer: c.under4, LocalPref: 100}); err != nil {
			t.Fatal(err)
		}
		a.applied.waitFor(t, "c's IPv4 LAN back", func() bool {
			kt, err := a.b.KernelText()
			return err == nil && strings.Contains(kt, "dst "+c.lan4Prefix().String())
		})
		l.mustPing(t, a, c, false)
	})
	t.Run("rollover", func(t *testing.T) {
		next := randomKeys(t, 0x6d000002, groupSuite)
		ks.byspi[next.SPI] = next
		old := ks.group
		// The new SA inbound everywhere first, then outbound one CPE at a
		// time: packets under either SA are accepted all along.
		for _, x := range l.cpes {
			l.set(t, ks, x, group(old, dataplane.Both), group(next, dataplane.In))
		}
		l.allPairs(t)
		for _, x := range l.cpes {
			l.set(t, ks, x, group(old, dataplane.In), group(next, dataplane.Both))
			l.mustPing(t, x, l.cpes[(indexOf(l.cpes, x)+1)%3], false)
		}
		l.allPairs(t)
		counts := stateCounters(t, a)
		if counts[stateID{b.under4, next.SPI}] == 0 || counts[stateID{a.under4, next.SPI}] == 0 {
			t.Errorf("the new SA carried nothing: %v", counts)
		}
		if _, ok := counts[stateID{b.under4, old.SPI}]; ok {
			t.Error("the old SA's outbound state to b survived ROLL1")
		}
		for _, x := range l.cpes {
			l.set(t, ks, x, group(next, dataplane.Both))
		}
		if _, ok := stateCounters(t, a)[stateID{a.under4, old.SPI}]; ok {
			t.Error("the old SA's inbound state survived ROLL2")
		}
		l.allPairs(t)
		ks.group = next
	})
	t.Run("negative control", func(t *testing.T) {
		// b loses its inbound group SA: a's packets to b's LAN are
		// dropped as unknown SPI, and come back with the SA.
		before := b.b.Stats().Drops["unknown_spi"]
		l.set(t, ks, b, group(ks.group, dataplane.Out))
		if !noPing(a, a.lan4, b.lan4) {
			t.Error("ping reached b without its inbound SA")
		}
		if !noPing(a, a.lan6, b.lan6) {
			t.Error("IPv6 ping reached b without its inbound SA")
		}
		if after := b.b.Stats().Drops["unknown_spi"]; after <= before {
			t.Errorf("b's unknown-SPI drops did not grow (%d -> %d)", before, after)
		}
		l.set(t, ks, b, group(ks.group, dataplane.Both))
		l.mustPing(t, a, b, false)
		l.mustPing(t, a, b, true)
	})
	t.Run("wan change", func(t *testing.T) {
		// b moves to a new IPv4 underlay address (a MOBIKE move, both
		// addresses up for a while): SetEndpoints moves its IPv4 states
		// and policies make-before-break, the IPv6 states stay (their
		// counters go on), and a and c follow b's new endpoint through
		// their FIBs, as BGP would tell them.
		moved := netip.MustParseAddr("192.0.2.12")
		old4 := b.under4
		b.ns.MustIP("addr", "add", moved.String()+"/24", "dev", "eth0")
		l.allPairs(t)
		keep := []stateID{{b.under6, ks.group.SPI}, {a.under6, ks.group.SPI}, {c.under6, ks.group.SPI}}
		before := stateCounters(t, b)
		for _, id := range keep {
			if before[id] == 0 {
				t.Fatalf("b: state SPI %08x to %v counted nothing before the move", id.spi, id.dst)
			}
		}
		// Endpoints the State cannot live with are refused as a whole.
		was := b.b.Endpoints()
		for _, bad := range [][]netip.AddrPort{nil, {netip.MustParseAddrPort("0.0.0.0:4500")}} {
			if err := b.b.SetEndpoints(bad); err == nil {
				t.Fatalf("SetEndpoints(%v) accepted with a group SA installed", bad)
			}
		}
		if now := b.b.Endpoints(); !slices.Equal(now, was) {
			t.Fatalf("a refused SetEndpoints changed the endpoints from %v to %v", was, now)
		}
		if kt, err := b.b.KernelText(); err != nil || kt != b.b.Text() {
			t.Fatalf("after a refused SetEndpoints the kernel holds\n%s\nthe backend meant\n%s", kt, b.b.Text())
		}
		if err := b.b.SetEndpoints([]netip.AddrPort{netip.AddrPortFrom(moved, 4500), netip.AddrPortFrom(b.under6, 4500)}); err != nil {
			t.Fatal(err)
		}
		for _, x := range []*cpe{a, c} {
			for _, r := range []routing.Route{
				{Prefix: b.lan4Prefix(), Endpoint: netip.AddrPortFrom(moved, 4500), Tunnel: 1, Source: routing.SourceBGP, Peer: old4, LocalPref: 100},
				{Prefix: netip.PrefixFrom(b.overlay, 32), Endpoint: netip.AddrPortFrom(moved, 4500), Tunnel: 2, Source: routing.SourceStatic},
			} {
				if r.Tunnel == 2 && x != a {
					continue
				}
				if err := x.fib.Upsert(r); err != nil {
					t.Fatal(err)
				}
			}
			x.applied.waitFor(t, x.name+" following b's new endpoint", func() bool {
				kt, err := x.b.KernelText()
				return err == nil && strings.Contains(kt, "dst "+moved.String()+" ")
			})
		}
		b.under4 = moved
		l.set(t, ks, a, group(ks.group, dataplane.Both)) // a's CHILD_SA follows b (MOBIKE)
		l.set(t, ks, b, group(ks.group, dataplane.Both))
		kt, err := b.b.KernelText()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(kt, "dst "+old4.String()+" ") || strings.Contains(kt, "src "+old4.String()+" ") {
			t.Fatalf("b's kernel still uses its old address %v:\n%s", old4, kt)
		}
		l.allPairs(t)
		if ok, out := ping(a, a.overlay, b.overlay, 2); !ok {
			t.Fatalf("ping over the CHILD_SA after the move failed:\n%s", out)
		}
		after := stateCounters(t, b)
		for _, id := range keep {
			if after[id] < before[id] {
				t.Errorf("b: state SPI %08x to %v was replaced (%d packets, %d before the move)", id.spi, id.dst, after[id], before[id])
			}
		}
		// The old address goes; nothing needed it any more. (The new
		// one is a secondary address of the same subnet: the kernel
		// deletes it with the primary unless told to promote it.)
		if out, err := b.ns.Run("sysctl", "-w", "net.ipv4.conf.all.promote_secondaries=1"); err != nil {
			t.Fatalf("sysctl: %v %s", err, out)
		}
		b.ns.MustIP("addr", "del", old4.String()+"/24", "dev", "eth0")
		l.allPairs(t)
	})
	t.Run("close", func(t *testing.T) {
		for _, x := range l.cpes {
			if err := x.b.Close(); err != nil {
				t.Errorf("%s: Close: %v", x.name, err)
			}
			h := nsHandle(t, x.ns)
			states, _ := h.XfrmStateList(netlink.FAMILY_ALL)
			all, _ := h.XfrmPolicyList(netlink.FAMILY_ALL)
			var pols []netlink.XfrmPolicy
			for _, p := range all {
				if p.Dir <= netlink.XFRM_DIR_FWD { // not IKE's socket policies
					pols = append(pols, p)
				}
			}
			if len(states)+len(pols) != 0 {
				t.Errorf("%s: %d states and %d policies left after Close", x.name, len(states), len(pols))
			}
			for i := range states {
				wipeNetlinkState(&states[i])
			}
		}
	})
}

func indexOf(cs []*cpe, x *cpe) int {
	for i, c := range cs {
		if c == x {
			return i
		}
	}
	return -1
}

// capture counts the underlay's packets by kind, from a packet socket in
// the bridge's namespace: "esp4"/"esp6" (IP protocol 50), "udp-esp4"/
// "udp-esp6" (port 4500, non-zero first word) and "plaintext" (an LAN or
// overlay address in the outer header: an inner packet in clear).
type capture struct {
	mu   sync.Mutex
	seen map[string]int
}

func (c *capture) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]int, len(c.seen))
	for k, v := range c.seen {
		m[k] = v
	}
	return m
}

func startCapture(t *testing.T, u *testenv.Netns) *capture {
	var fd int
	if err := u.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		return err
	}); err != nil {
		t.Fatalf("packet socket: %v", err)
	}
	f := os.NewFile(uintptr(fd), "capture")
	c := &capture{seen: make(map[string]int)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, err := f.Read(buf)
			if err != nil {
				if !errors.Is(err, os.ErrClosed) && !errors.Is(err, syscall.EBADF) {
					t.Errorf("capture: %v", err)
				}
				return
			}
			if kind := classify(buf[:n]); kind != "" {
				c.mu.Lock()
				c.seen[kind]++
				c.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { f.Close(); <-done })
	return c
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

var (
	insideV4 = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("100.64.0.0/10")}
	insideV6 = netip.MustParsePrefix("fd00::/8")
)

// classify names an Ethernet frame's kind, or "" for what the test ignores
// (ARP, neighbour discovery, IKE).
func classify(frame []byte) string {
	if len(frame) < 14 {
		return ""
	}
	etype, ip := binary.BigEndian.Uint16(frame[12:14]), frame[14:]
	var proto byte
	var src, dst netip.Addr
	var l4 []byte
	fam := "4"
	switch {
	case etype == 0x0800 && len(ip) >= 20:
		ihl := int(ip[0]&0x0f) * 4
		if ihl < 20 || len(ip) < ihl {
			return ""
		}
		proto, l4 = ip[9], ip[ihl:]
		src, dst = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		for _, p := range insideV4 {
			if p.Contains(src) || p.Contains(dst) {
				return "plaintext"
			}
		}
	case etype == 0x86dd && len(ip) >= 40:
		fam, proto, l4 = "6", ip[6], ip[40:]
		src, dst = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		if insideV6.Contains(src) || insideV6.Contains(dst) {
			return "plaintext"
		}
	default:
		return ""
	}
	switch {
	case proto == 50:
		return "esp" + fam
	case proto == 17 && len(l4) >= 12 && binary.BigEndian.Uint16(l4[2:4]) == 4500 && binary.BigEndian.Uint32(l4[8:12]) != 0:
		return "udp-esp" + fam
	}
	return ""
}
