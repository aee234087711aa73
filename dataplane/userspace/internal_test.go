package userspace

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/dataplane/tuntest"
	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/routing"
	"github.com/mpsa-vpn/mpsa/transform"
)

// oneRoute is a FIB with a single route and a lookup that cannot allocate,
// so the allocation test measures the backend's own path.
type oneRoute struct {
	p  netip.Prefix
	nh routing.NextHop
}

func (f oneRoute) Lookup(dst netip.Addr) (routing.NextHop, bool) {
	if f.p.Contains(dst) {
		return f.nh, true
	}
	return routing.NextHop{}, false
}

// idleConn is a socket that never receives and swallows what is sent: the
// tests here drive the pipeline stages directly.
type idleConn struct{ closed chan struct{} }

func (c idleConn) WaitRead() error                      { <-c.closed; return net.ErrClosed }
func (c idleConn) ReadBatch([]Message) (int, error)     { <-c.closed; return 0, net.ErrClosed }
func (c idleConn) WriteBatch(ms []Message) (int, error) { return len(ms), nil }
func (c idleConn) Raw() bool                            { return false }
func (c idleConn) LocalAddr() net.Addr                  { return &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4500} }
func (c idleConn) Close() error {
	select {
	case <-c.closed:
	default:
		close(c.closed)
	}
	return nil
}

func testBackend(t testing.TB, s transform.ESP) *Backend {
	t.Helper()
	fib := oneRoute{netip.MustParsePrefix("10.2.0.0/16"), routing.NextHop{Endpoint: netip.MustParseAddrPort("192.0.2.2:4500"), Tunnel: 1}}
	b, err := New(Config{FIB: fib, TUN: tuntest.NewChannelTUN(64), Conns: []Conn{idleConn{make(chan struct{})}},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	el, il, _ := s.KeyLens()
	k := esp.Keys{SPI: 0x1001, Suite: s, EncKey: make([]byte, el), IntegKey: make([]byte, il)}
	var bits uint8
	if s.Encr.IsAEAD() {
		bits = 8
	}
	if err := b.Set(&dataplane.State{SAs: []dataplane.SA{{Keys: k, Dir: dataplane.Both, Tunnel: 1, ReplayWindow: 1024, SenderIDBits: bits, SenderID: uint32(bits) / 8}}}); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPacketPathAllocs runs a batch through every stage but the device
// writes, outbound and back inbound, and counts allocations.
func TestPacketPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	for _, s := range []transform.ESP{
		{Encr: transform.EncrAESGCM16, KeyBits: 128},
		{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA256128},
	} {
		b := testBackend(t, s)
		tx, rx := b.newBatch(32, true), b.newBatch(32, false)
		inner := tuntest.UDP(netip.MustParseAddrPort("10.1.0.1:1"), netip.MustParseAddrPort("10.2.0.1:2"), make([]byte, 1200))
		allocs := testing.AllocsPerRun(50, func() {
			tx.n = len(tx.bufs)
			tx.st = b.state.Load()
			for i := 0; i < tx.n; i++ {
				tx.sizes[i] = copy(tx.bufs[i][esp.Headroom:], inner)
				b.classifyOutbound(tx, i)
			}
			b.sealBatch(tx)
			rx.n = tx.n
			rx.st = b.state.Load()
			for i := 0; i < rx.n; i++ {
				m := tx.msgs[i]
				rx.msgs[i] = Message{Buf: rx.bufs[i], N: copy(rx.bufs[i], m.Buf[m.Off:m.Off+m.N])}
				b.classifyInbound(rx, i, false)
			}
			b.openBatch(rx)
			b.prepareDelivery(rx)
			if len(rx.out) != rx.n {
				t.Fatalf("%d of %d delivered: %v", len(rx.out), rx.n, b.Stats().Drops)
			}
		})
		if allocs != 0 {
			t.Errorf("%v: %v allocations per batch of %d", s, allocs, tx.n)
		}
	}
}

// TestSetWipesRemovedKeys checks that an SA that leaves the state has its
// key material zeroed.
func TestSetWipesRemovedKeys(t *testing.T) {
	b := testBackend(t, transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA256128})
	b.mu.Lock()
	keys := b.installed[0].cfg.Keys
	b.mu.Unlock()
	for i := range keys.EncKey {
		keys.EncKey[i] = 0xaa // give the zero test keys something to wipe
	}
	if err := b.Set(&dataplane.State{}); err != nil {
		t.Fatal(err)
	}
	for _, k := range append(keys.EncKey, keys.IntegKey...) {
		if k != 0 {
			t.Fatal("removed SA's keys not wiped")
		}
	}
}

func TestStripIPv4(t *testing.T) {
	pkt := tuntest.Ping(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1, 1, nil)
	if off, n := stripIPv4(pkt); off != 20 || n != len(pkt)-20 {
		t.Fatalf("%d %d", off, n)
	}
	for _, bad := range [][]byte{nil, pkt[:19], {0x44, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, append([]byte{0x4f}, pkt[1:]...)} {
		if _, n := stripIPv4(bad); n != 0 {
			t.Fatalf("accepted %x", bad)
		}
	}
}

// FuzzInbound feeds arbitrary datagrams through the inbound path of a
// backend with one SA installed: classification, decryption, replay and
// selector checks and delivery preparation must never panic, and anything
// delivered must be a well-formed inner packet.
func FuzzInbound(f *testing.F) {
	b := testBackend(f, transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128})
	tx := b.newBatch(1, true)
	inner := tuntest.Ping(netip.MustParseAddr("10.2.0.1"), netip.MustParseAddr("10.1.0.1"), 1, 1, []byte("fuzz"))
	tx.n, tx.st = 1, b.state.Load()
	tx.sizes[0] = copy(tx.bufs[0][esp.Headroom:], inner)
	b.classifyOutbound(tx, 0)
	b.sealBatch(tx)
	m := tx.msgs[0]
	f.Add(append([]byte(nil), m.Buf[m.Off:m.Off+m.N]...), false)
	f.Add([]byte{0xff}, false)
	f.Add([]byte{0, 0, 0, 0, 1, 2, 3, 4}, false)
	f.Add(append([]byte{0x45, 0, 0, 40, 0, 0, 0, 0, 64, 50, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}, m.Buf[m.Off:m.Off+m.N]...), true)
	rx := b.newBatch(1, false)
	f.Fuzz(func(t *testing.T, data []byte, rawV4 bool) {
		if len(data) > len(rx.bufs[0]) {
			return
		}
		n := copy(rx.bufs[0], data)
		rx.msgs[0] = Message{Buf: rx.bufs[0], N: n}
		if rawV4 {
			rx.msgs[0].Off, rx.msgs[0].N = stripIPv4(rx.bufs[0][:n])
		}
		rx.n, rx.st = 1, b.state.Load()
		b.classifyInbound(rx, 0, rawV4)
		b.openBatch(rx)
		b.prepareDelivery(rx)
		for _, p := range rx.out {
			if _, _, ok := tuntest.Addrs(p[tunOff:]); !ok {
				t.Fatalf("delivered a non-IP packet %x", p)
			}
		}
	})
}

// TestDeliverCounts checks the receive counters when the TUN refuses part
// of a batch: the kernel TUN writes the others and joins the errors.
func TestDeliverCounts(t *testing.T) {
	b := testBackend(t, transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128})
	ch := b.tun.(*tuntest.ChannelTUN)
	ch.ReportBytes = true
	refused := netip.MustParseAddr("10.1.0.66")
	ch.RefuseWrite = func(p []byte) error {
		if src, _, _ := tuntest.Addrs(p); src == refused {
			return errors.New("refused")
		}
		return nil
	}
	// Seal four packets from 10.2.0.x (the route's side) and open them.
	tx, rx := b.newBatch(4, true), b.newBatch(4, false)
	tx.n, tx.st = 4, b.state.Load()
	var size int
	for i := range 4 {
		src := netip.MustParseAddr("10.1.0.1")
		if i%2 == 1 {
			src = refused
		}
		p := tuntest.UDP(netip.AddrPortFrom(src, 1), netip.MustParseAddrPort("10.2.0.1:2"), make([]byte, 100))
		size = len(p)
		tx.sizes[i] = copy(tx.bufs[i][esp.Headroom:], p)
		b.classifyOutbound(tx, i)
	}
	b.sealBatch(tx)
	rx.n, rx.st = 4, b.state.Load()
	for i := range 4 {
		m := tx.msgs[i]
		rx.msgs[i] = Message{Buf: rx.bufs[i], N: copy(rx.bufs[i], m.Buf[m.Off:m.Off+m.N])}
		b.classifyInbound(rx, i, false)
	}
	b.openBatch(rx)
	b.deliverBatch(rx)
	for range 2 {
		<-ch.Inbound
	}
	st := b.Stats()
	if st.RxPackets != 2 || st.RxBytes != uint64(2*size) || st.Drops["tun_write"] != 2 || len(st.Drops) != 1 {
		t.Fatalf("stats %+v, want 2 packets of %d octets received and 2 tun_write drops", st, size)
	}
	if got := countErrors(errors.Join(errors.Join(errors.New("a")), errors.New("b"), nil)); got != 2 {
		t.Fatalf("countErrors of nested joins: %d", got)
	}
}

// TestBufferConfig checks the pools Config asks for and what BufferBytes
// reports of them.
func TestBufferConfig(t *testing.T) {
	for _, c := range []struct {
		name          string
		tunBatch      int
		cfg           Config
		tx, rx, rxLen int
		rxBuf         int // 0: MTU-sized
	}{
		{"defaults, offloading TUN", 64, Config{}, 8, 8, 64, rxGROBufSize},
		{"defaults, one packet per read", 1, Config{}, 8, 8, 64, 0},
		{"small", 64, Config{TxBatches: 2, RxBatches: 3, RxBatchSize: 16}, 2, 3, 16, rxGROBufSize},
		{"batch capped", 1, Config{RxBatchSize: 1000}, 8, 8, maxBatch, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.FIB = oneRoute{}
			cfg.TUN = tuntest.NewChannelTUN(c.tunBatch)
			cfg.Conns = []Conn{idleConn{make(chan struct{})}}
			cfg.Logger = slog.New(slog.DiscardHandler)
			b, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			rxBuf := c.rxBuf
			if rxBuf == 0 {
				rxBuf = b.bufSize
			}
			// The TUN's reader holds an outbound batch while it waits;
			// a socket's reader takes an inbound one only for a datagram,
			// so all of them are in the pool while nothing arrives.
			if cap(b.txPool) != c.tx || cap(b.rxPool) != c.rx {
				t.Fatalf("pools of %d/%d batches, want %d/%d", cap(b.txPool), cap(b.rxPool), c.tx, c.rx)
			}
			if len(b.rxPool) != c.rx {
				t.Fatalf("%d of %d inbound batches in the pool with nothing received", len(b.rxPool), c.rx)
			}
			var tx, rx *batch
			select {
			case tx = <-b.txPool:
			case <-time.After(5 * time.Second):
				t.Fatal("no outbound batch in the pool")
			}
			select {
			case rx = <-b.rxPool:
			case <-time.After(5 * time.Second):
				t.Fatal("no inbound batch in the pool")
			}
			b.txPool <- tx
			b.rxPool <- rx
			if len(tx.bufs) != c.tunBatch || len(rx.bufs) != c.rxLen || len(rx.bufs[0]) != rxBuf || len(tx.bufs[0]) != b.bufSize {
				t.Fatalf("batches of %d×%d out, %d×%d in", len(tx.bufs), len(tx.bufs[0]), len(rx.bufs), len(rx.bufs[0]))
			}
			if want := c.tx*c.tunBatch*b.bufSize + c.rx*c.rxLen*rxBuf; b.BufferBytes() != want {
				t.Fatalf("BufferBytes %d, want %d", b.BufferBytes(), want)
			}
		})
	}
}
