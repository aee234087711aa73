package userspace_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/dataplane/tuntest"
	"github.com/mpsa-vpn/mpsa/dataplane/userspace"
	"github.com/mpsa-vpn/mpsa/dataplane/userspace/conntest"
	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/routing"
	"github.com/mpsa-vpn/mpsa/transform"
)

// newFIB returns a routing FIB holding static routes prefix -> endpoint.
func newFIB(t testing.TB, routes map[string]routing.NextHop) *routing.FIB {
	t.Helper()
	f := routing.New()
	for p, nh := range routes {
		addRoute(t, f, netip.MustParsePrefix(p), nh)
	}
	return f
}

func addRoute(t testing.TB, f *routing.FIB, p netip.Prefix, nh routing.NextHop) {
	t.Helper()
	if err := f.Upsert(routing.Route{Prefix: p, Endpoint: nh.Endpoint, Tunnel: nh.Tunnel, Source: routing.SourceStatic}); err != nil {
		t.Fatal(err)
	}
}

const groupTunnel routing.Tunnel = 7

var quiet = slog.New(slog.DiscardHandler)

func groupKeys(t testing.TB, s transform.ESP, spi uint32) esp.Keys {
	el, il, err := s.KeyLens()
	if err != nil {
		t.Fatal(err)
	}
	k := esp.Keys{SPI: spi, Suite: s, EncKey: make([]byte, el), IntegKey: make([]byte, il)}
	for i := range k.EncKey {
		k.EncKey[i] = byte(i * 7)
	}
	for i := range k.IntegKey {
		k.IntegKey[i] = byte(i * 5)
	}
	return k
}

type node struct {
	b    *userspace.Backend
	tun  *tuntest.ChannelTUN
	fib  *routing.FIB
	addr netip.AddrPort
}

// pair builds two backends joined by an in-memory network, each with a
// route to the other's LAN prefix through the group SA.
func pair(t *testing.T, s transform.ESP, raw bool, outer4 bool) (a, b *node, nw *conntest.Network) {
	t.Helper()
	return pairWith(t, s, raw, outer4, nil)
}

// pairWith is pair with each backend's Config passed through adjust.
func pairWith(t *testing.T, s transform.ESP, raw bool, outer4 bool, adjust func(*userspace.Config)) (a, b *node, nw *conntest.Network) {
	t.Helper()
	nw = conntest.NewNetwork()
	mk := func(ip, lan string) *node {
		addr := netip.MustParseAddr(ip)
		ap := netip.AddrPortFrom(addr, 4500)
		if raw {
			ap = netip.AddrPortFrom(addr, 0)
		}
		n := &node{tun: tuntest.NewChannelTUN(8), fib: routing.New(), addr: ap}
		c := nw.Listen(ap, raw)
		cfg := userspace.Config{FIB: n.fib, TUN: n.tun, Conns: []userspace.Conn{c}, Workers: 2, Logger: quiet}
		if adjust != nil {
			adjust(&cfg)
		}
		var err error
		n.b, err = userspace.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.b.Close() })
		return n
	}
	ipA, ipB := "192.0.2.1", "192.0.2.2"
	if !outer4 {
		ipA, ipB = "2001:db8::1", "2001:db8::2"
	}
	a, b = mk(ipA, "10.1.0.0/24"), mk(ipB, "10.2.0.0/24")
	addRoute(t, a.fib, netip.MustParsePrefix("10.2.0.0/24"), routing.NextHop{Endpoint: b.addr, Tunnel: groupTunnel})
	addRoute(t, a.fib, netip.MustParsePrefix("fd00:2::/64"), routing.NextHop{Endpoint: b.addr, Tunnel: groupTunnel})
	addRoute(t, b.fib, netip.MustParsePrefix("10.1.0.0/24"), routing.NextHop{Endpoint: a.addr, Tunnel: groupTunnel})
	addRoute(t, b.fib, netip.MustParsePrefix("fd00:1::/64"), routing.NextHop{Endpoint: a.addr, Tunnel: groupTunnel})
	var bits uint8
	if s.Encr.IsAEAD() {
		bits = 8
	}
	for i, n := range []*node{a, b} {
		st := &dataplane.State{SAs: []dataplane.SA{{
			Keys: groupKeys(t, s, 0xc0ffee01), Dir: dataplane.Both, Tunnel: groupTunnel,
			ReplayWindow: 128, SenderIDBits: bits, SenderID: uint32(i+1) * uint32(min(1, int(bits))),
		}}}
		if err := n.b.Set(st); err != nil {
			t.Fatal(err)
		}
	}
	return a, b, nw
}

func recv(t *testing.T, tun *tuntest.ChannelTUN) []byte {
	t.Helper()
	select {
	case p := <-tun.Inbound:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no packet delivered within 5s")
		return nil
	}
}

func send(t *testing.T, tun *tuntest.ChannelTUN, p []byte) {
	t.Helper()
	select {
	case tun.Outbound <- p:
	case <-time.After(5 * time.Second):
		t.Fatal("TUN not read within 5s")
	}
}

// waitFor polls cond, driven by the packets the test sends, up to a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

func leakCheck(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Fatalf("goroutines leaked: %d > %d\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
			}
			runtime.Gosched()
		}
	})
}

var allSuites = []transform.ESP{
	{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA196},
	{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA256128},
	{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA384192},
	{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA512256},
	{Encr: transform.EncrAESGCM16, KeyBits: 128},
	{Encr: transform.EncrChaCha20Poly1305},
}

func TestInMemoryPair(t *testing.T) {
	leakCheck(t)
	for _, s := range allSuites {
		for _, raw := range []bool{false, true} {
			for _, outer4 := range []bool{true, false} {
				name := s.String() + map[bool]string{true: "/raw", false: "/udp"}[raw] + map[bool]string{true: "/outer4", false: "/outer6"}[outer4]
				t.Run(name, func(t *testing.T) {
					a, b, nw := pair(t, s, raw, outer4)
					var mu sync.Mutex
					var wire [][]byte
					nw.Tap = func(_, _ netip.AddrPort, _ bool, p []byte) {
						mu.Lock()
						wire = append(wire, p)
						mu.Unlock()
					}
					for _, fam := range [][2]string{{"10.1.0.5", "10.2.0.9"}, {"fd00:1::5", "fd00:2::9"}} {
						src, dst := netip.MustParseAddr(fam[0]), netip.MustParseAddr(fam[1])
						marker := []byte("secret-inner-payload-" + fam[0])
						ping := tuntest.Ping(dst, src, 1, 1, marker)
						send(t, a.tun, ping)
						if got := recv(t, b.tun); !bytes.Equal(got, ping) {
							t.Fatalf("B got %x, want %x", got, ping)
						}
						reply := tuntest.Ping(src, dst, 1, 2, marker)
						send(t, b.tun, reply)
						if got := recv(t, a.tun); !bytes.Equal(got, reply) {
							t.Fatalf("A got %x", got)
						}
						mu.Lock()
						for _, w := range wire {
							if bytes.Contains(w, marker) {
								t.Fatalf("plaintext on the wire: %x", w)
							}
						}
						mu.Unlock()
					}
					waitFor(t, "B's counters", func() bool {
						st := b.b.Stats()
						return st.RxPackets == 2 && st.TxPackets == 2
					})
					if st := b.b.Stats(); len(st.Drops) != 0 || st.RxBytes == 0 || st.TxBytes == 0 {
						t.Fatalf("B stats %+v", st)
					}
				})
			}
		}
	}
}

func TestDropsAndIKE(t *testing.T) {
	leakCheck(t)
	s := transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128}
	a, b, nw := pair(t, s, false, true)
	var mu sync.Mutex
	var last []byte
	nw.Tap = func(src, _ netip.AddrPort, _ bool, p []byte) {
		if src == a.addr {
			mu.Lock()
			last = p
			mu.Unlock()
		}
	}
	src, dst := netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.2.0.9")
	send(t, a.tun, tuntest.Ping(dst, src, 1, 1, nil))
	recv(t, b.tun)
	mu.Lock()
	captured := last
	mu.Unlock()

	inject := nw.Listen(netip.MustParseAddrPort("192.0.2.66:4500"), false)
	defer inject.Close()
	put := func(p []byte) {
		if _, err := inject.WriteBatch([]userspace.Message{{Buf: p, N: len(p), Addr: b.addr}}); err != nil {
			t.Fatal(err)
		}
	}
	// Replay of a captured packet.
	put(captured)
	waitFor(t, "replay drop", func() bool { return b.b.Drops(esp.DropReplay) == 1 })
	// Unknown SPI.
	bad := append([]byte(nil), captured...)
	bad[0] ^= 0xff
	put(bad)
	waitFor(t, "unknown SPI drop", func() bool { return b.b.Drops(esp.DropUnknownSPI) == 1 })
	// Bad ICV.
	bad = append([]byte(nil), captured...)
	bad[7] ^= 0x10 // a fresh sequence number, so the replay check passes
	put(bad)
	waitFor(t, "bad ICV drop", func() bool { return b.b.Drops(esp.DropBadICV) == 1 })
	// Malformed (too short to be ESP or IKE).
	put([]byte{1, 2, 3})
	waitFor(t, "malformed drop", func() bool { return b.b.Drops(esp.DropMalformed) == 1 })
	// NAT keepalive: silently ignored, not counted.
	put([]byte{0xff})
	// IKE: handed to the IKE conn, marker included.
	ike := append([]byte{0, 0, 0, 0}, []byte("IKE_SA_INIT...........................")...)
	put(ike)
	conn := b.b.IKEConn()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, from, err := conn.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:n], ike) || from.String() != "192.0.2.66:4500" {
		t.Fatalf("IKE conn: %v %q from %v", err, buf[:n], from)
	}
	// And IKE's answer leaves from the same socket.
	if _, err := conn.WriteTo(ike, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.66:4500"))); err != nil {
		t.Fatal(err)
	}
	got := make([]userspace.Message, 1)
	got[0].Buf = make([]byte, 1500)
	if n, err := inject.ReadBatch(got); err != nil || n != 1 || !bytes.Equal(got[0].Buf[:got[0].N], ike) || got[0].Addr != b.addr {
		t.Fatalf("IKE answer: %v %d", err, n)
	}
	if _, err := conn.WriteTo([]byte("no marker"), net.UDPAddrFromAddrPort(b.addr)); err == nil {
		t.Fatal("IKE datagram without marker sent")
	}
	// An IKE engine that does not read loses datagrams beyond the queue,
	// counted, without holding up ESP.
	for range 300 {
		put(ike)
	}
	waitFor(t, "IKE queue overflow", func() bool { return b.b.Stats().Drops["ike_queue_full"] == 300-256 })
	for range 256 {
		conn.ReadFrom(buf)
	}
	// A deadline set while ReadFrom waits wakes it (net.PacketConn).
	conn.SetReadDeadline(time.Time{})
	woke := make(chan error, 1)
	go func() {
		_, _, err := conn.ReadFrom(buf)
		woke <- err
	}()
	conn.SetReadDeadline(time.Now().Add(-time.Second))
	select {
	case err := <-woke:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("pending ReadFrom: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a past deadline did not wake the pending ReadFrom")
	}
	conn.SetReadDeadline(time.Time{})
	// No route and no SA.
	send(t, a.tun, tuntest.Ping(netip.MustParseAddr("10.9.0.1"), src, 1, 1, nil))
	waitFor(t, "no_route drop", func() bool { return a.b.Drops(esp.DropNoRoute) == 1 })
	addRoute(t, a.fib, netip.MustParsePrefix("10.3.0.0/24"), routing.NextHop{Endpoint: b.addr, Tunnel: 99})
	send(t, a.tun, tuntest.Ping(netip.MustParseAddr("10.3.0.1"), src, 1, 1, nil))
	waitFor(t, "no_sa drop", func() bool { return a.b.Drops(esp.DropNoSA) == 1 })
	st := b.b.Stats()
	if st.Drops["replay"] != 1 || st.Drops["unknown_spi"] != 1 || st.Drops["bad_icv"] != 1 || st.Drops["malformed"] != 1 || len(st.Drops) != 5 {
		t.Fatalf("drops %v", st.Drops)
	}
}

func TestSelectors(t *testing.T) {
	leakCheck(t)
	s := transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA256128}
	a, b, _ := pair(t, s, false, true)
	st := &dataplane.State{SAs: []dataplane.SA{{
		Keys: groupKeys(t, s, 0xc0ffee01), Dir: dataplane.Both, Tunnel: groupTunnel, ReplayWindow: 128,
		RemoteSelectors: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/25")},
		LocalSelectors:  []netip.Prefix{netip.MustParsePrefix("10.2.0.0/24")},
	}}}
	if err := b.b.Set(st); err != nil {
		t.Fatal(err)
	}
	dst := netip.MustParseAddr("10.2.0.9")
	ok := tuntest.Ping(dst, netip.MustParseAddr("10.1.0.5"), 1, 1, nil)
	send(t, a.tun, ok)
	if got := recv(t, b.tun); !bytes.Equal(got, ok) {
		t.Fatal("allowed packet mangled")
	}
	send(t, a.tun, tuntest.Ping(dst, netip.MustParseAddr("10.1.0.200"), 1, 2, nil))
	waitFor(t, "selector drop", func() bool { return b.b.Drops(esp.DropSelector) == 1 })
}

func TestSetIdempotentAndWipe(t *testing.T) {
	leakCheck(t)
	s := transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA256128}
	a, b, _ := pair(t, s, false, true)
	src, dst := netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.2.0.9")
	k := groupKeys(t, s, 0xc0ffee01)
	st := &dataplane.State{SAs: []dataplane.SA{{Keys: k, Dir: dataplane.Both, Tunnel: groupTunnel, ReplayWindow: 128}}}
	for i := 0; i < 3; i++ {
		// Set again with the same state: sequence numbers and windows
		// survive, so packets keep flowing without replay drops.
		if err := a.b.Set(st); err != nil {
			t.Fatal(err)
		}
		if err := b.b.Set(st); err != nil {
			t.Fatal(err)
		}
		send(t, a.tun, tuntest.Ping(dst, src, 1, uint16(i), nil))
		recv(t, b.tun)
	}
	k.Wipe() // the backend holds its own copies
	send(t, a.tun, tuntest.Ping(dst, src, 1, 9, nil))
	recv(t, b.tun)
	if d := b.b.Stats().Drops; len(d) != 0 {
		t.Fatalf("drops after re-Set: %v", d)
	}
	// Rollover: B accepts a new SA inbound next to the old one, A switches.
	k2 := groupKeys(t, s, 0xc0ffee02)
	k2.EncKey[0] ^= 0xff
	k1 := groupKeys(t, s, 0xc0ffee01)
	if err := b.b.Set(&dataplane.State{SAs: []dataplane.SA{
		{Keys: k1, Dir: dataplane.In, Tunnel: groupTunnel, ReplayWindow: 128},
		{Keys: k2, Dir: dataplane.Both, Tunnel: groupTunnel, ReplayWindow: 128},
	}}); err != nil {
		t.Fatal(err)
	}
	send(t, a.tun, tuntest.Ping(dst, src, 1, 10, nil)) // still old SA
	recv(t, b.tun)
	if err := a.b.Set(&dataplane.State{SAs: []dataplane.SA{{Keys: k2, Dir: dataplane.Both, Tunnel: groupTunnel, ReplayWindow: 128}}}); err != nil {
		t.Fatal(err)
	}
	send(t, a.tun, tuntest.Ping(dst, src, 1, 11, nil)) // new SA
	recv(t, b.tun)
	// Old SA gone at B: its packets are now unknown.
	if err := b.b.Set(&dataplane.State{SAs: []dataplane.SA{{Keys: k2, Dir: dataplane.Both, Tunnel: groupTunnel, ReplayWindow: 128}}}); err != nil {
		t.Fatal(err)
	}
	if err := a.b.Set(&dataplane.State{SAs: []dataplane.SA{{Keys: k1, Dir: dataplane.Both, Tunnel: groupTunnel, ReplayWindow: 128}}}); err != nil {
		t.Fatal(err)
	}
	send(t, a.tun, tuntest.Ping(dst, src, 1, 12, nil))
	waitFor(t, "unknown SPI after removal", func() bool { return b.b.Drops(esp.DropUnknownSPI) == 1 })

	// Group SA with a counter-mode cipher needs Sender-IDs.
	g := groupKeys(t, transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128}, 0xc0ffee09)
	err := a.b.Set(&dataplane.State{SAs: []dataplane.SA{{Keys: g, Dir: dataplane.Both, Tunnel: groupTunnel}}})
	if err == nil || !strings.Contains(err.Error(), "Sender-ID") {
		t.Fatalf("AEAD group SA without Sender-IDs: %v", err)
	}
	if err := a.b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.b.Set(st); err == nil {
		t.Fatal("Set after Close succeeded")
	}
}

func TestRekeyDue(t *testing.T) {
	leakCheck(t)
	s := transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128}
	nw := conntest.NewNetwork()
	tun := tuntest.NewChannelTUN(1)
	fib := newFIB(t, map[string]routing.NextHop{
		"10.2.0.0/24": {Endpoint: netip.MustParseAddrPort("192.0.2.2:4500"), Tunnel: 1},
	})
	due := make(chan uint32, 1)
	b, err := userspace.New(userspace.Config{FIB: fib, TUN: tun, Conns: []userspace.Conn{nw.Listen(netip.MustParseAddrPort("192.0.2.1:4500"), false)},
		OnRekeyDue: func(spi uint32) { due <- spi }, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	peer := netip.MustParseAddrPort("192.0.2.2:4500")
	if err := b.Set(&dataplane.State{SAs: []dataplane.SA{{Keys: groupKeys(t, s, 0x2000), Dir: dataplane.Out, Tunnel: 1, Peer: peer}}}); err != nil {
		t.Fatal(err)
	}
	userspace.SetSeqForTest(b, 0x2000, esp.SoftSeqLimit-1)
	ping := tuntest.Ping(netip.MustParseAddr("10.2.0.1"), netip.MustParseAddr("10.1.0.1"), 1, 1, nil)
	send(t, tun, ping)
	select {
	case spi := <-due:
		if spi != 0x2000 {
			t.Fatalf("rekey due for %x", spi)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnRekeyDue not called")
	}
	userspace.SetSeqForTest(b, 0x2000, esp.MaxSeq)
	send(t, tun, ping)
	waitFor(t, "seq exhausted drop", func() bool { return b.Drops(esp.DropSeqExhausted) == 1 })
}

// TestStatsCounters checks every counter of Stats against the traffic a
// test sent, with TUNs that report octets from Write as wireguard-go's
// kernel TUN does: a backend that took that count for packets would count
// three pings as some 300 packets.
func TestStatsCounters(t *testing.T) {
	leakCheck(t)
	s := transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128}
	a, b, _ := pair(t, s, false, true)
	a.tun.ReportBytes, b.tun.ReportBytes = true, true
	var aToB, bToA uint64 // inner octets
	for i := range 3 {
		for _, fam := range [][2]string{{"10.1.0.5", "10.2.0.9"}, {"fd00:1::5", "fd00:2::9"}} {
			src, dst := netip.MustParseAddr(fam[0]), netip.MustParseAddr(fam[1])
			req := tuntest.Ping(dst, src, 1, uint16(i), make([]byte, 56+100*i))
			send(t, a.tun, req)
			recv(t, b.tun)
			aToB += uint64(len(req))
			rep := tuntest.Ping(src, dst, 1, uint16(i), make([]byte, 56+100*i))
			send(t, b.tun, rep)
			recv(t, a.tun)
			bToA += uint64(len(rep))
		}
	}
	// Packets are counted once the TUN write or the socket write
	// returned, which may be just after the peer saw them.
	want := func(n *node, tx, txBytes, rx, rxBytes uint64) {
		t.Helper()
		waitFor(t, "counters", func() bool { st := n.b.Stats(); return st.RxPackets >= rx && st.TxPackets >= tx })
		st := n.b.Stats()
		if st.TxPackets != tx || st.TxBytes != txBytes || st.RxPackets != rx || st.RxBytes != rxBytes || len(st.Drops) != 0 {
			t.Fatalf("stats %+v, want tx %d/%d octets, rx %d/%d octets, no drops", st, tx, txBytes, rx, rxBytes)
		}
	}
	want(a, 6, aToB, 6, bToA)
	want(b, 6, bToA, 6, aToB)

	// A packet the TUN refuses is a tun_write drop, not a received one.
	b.tun.RefuseWrite = func(p []byte) error {
		if _, dst, _ := tuntest.Addrs(p); dst == netip.MustParseAddr("10.2.0.66") {
			return errors.New("refused")
		}
		return nil
	}
	send(t, a.tun, tuntest.Ping(netip.MustParseAddr("10.2.0.66"), netip.MustParseAddr("10.1.0.5"), 1, 9, nil))
	waitFor(t, "tun_write drop", func() bool { return b.b.Drops(esp.DropTUNWrite) == 1 })
	if st := b.b.Stats(); st.RxPackets != 6 || st.RxBytes != aToB || len(st.Drops) != 1 {
		t.Fatalf("after a refused write: %+v", st)
	}
}

// TestSmallPools runs traffic both ways at once through backends with a
// single batch each way and single-datagram inbound batches: the pipeline
// must neither stall nor lose packets when every buffer is in flight.
func TestSmallPools(t *testing.T) {
	leakCheck(t)
	a, b, _ := pairWith(t, transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128}, false, true, func(c *userspace.Config) {
		c.TxBatches, c.RxBatches, c.RxBatchSize = 1, 1, 1
	})
	const n = 300
	src, dst := netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.2.0.9")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			select {
			case b.tun.Outbound <- tuntest.Ping(src, dst, 2, uint16(i), nil):
			case <-time.After(5 * time.Second):
				return
			}
		}
	}()
	for i := range n {
		send(t, a.tun, tuntest.Ping(dst, src, 1, uint16(i), nil))
	}
	<-done
	for i := range n {
		if got, _, _ := tuntest.Addrs(recv(t, b.tun)); got != src {
			t.Fatalf("packet %d at B from %v", i, got)
		}
		if got, _, _ := tuntest.Addrs(recv(t, a.tun)); got != dst {
			t.Fatalf("packet %d at A from %v", i, got)
		}
	}
	if d := a.b.Stats().Drops; len(d) != 0 {
		t.Fatalf("drops %v", d)
	}
}
