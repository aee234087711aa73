package userspace

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/internal/routesrc"
	"github.com/mpsa-vpn/mpsa/routing"
)

// FIB is what the backend asks for every outbound packet. *routing.FIB
// implements it; Lookup must not allocate.
type FIB interface {
	Lookup(dst netip.Addr) (routing.NextHop, bool)
}

// Defaults.
const (
	DefaultTUNName = "mpsa0"
	DefaultMTU     = 1400
	// tunOff is where inner packets sit in a buffer written to the TUN: it
	// leaves room for the virtio-net header of an offloading TUN.
	tunOff = 16
)

// Config configures a Backend.
type Config struct {
	// FIB answers where each outbound packet goes. Required.
	FIB FIB

	// TUN is the device to use; nil creates a kernel TUN named TUNName
	// with MTU (and brings it up with Addresses).
	TUN       tun.Device
	TUNName   string
	MTU       int
	Addresses []netip.Prefix

	// Conns are the outer sockets to use; nil opens UDP port Port on IPv4
	// and IPv6 and, with RawESP, raw IP protocol 50 sockets.
	Conns  []Conn
	Port   uint16 // 0 means 4500
	RawESP bool

	// Workers is the number of crypto goroutines; 0 means GOMAXPROCS.
	Workers int

	// Packet buffers, all preallocated (BufferBytes tells how much).
	// TxBatches and RxBatches are the batches each way (0 means 8; fewer
	// batches in flight cost latency under load, not correctness: a
	// socket's reader takes an inbound batch only once a datagram is
	// there, so one batch serves any number of sockets). An
	// outbound batch holds the TUN's batch size of MTU-sized buffers (128
	// with offloads, 1 without). RxBatchSize is the datagrams one inbound
	// batch (one recvmmsg) takes (0 means 64, at most 128); its buffers are
	// 16 KiB when the TUN coalesces TCP segments on write (offloads), else
	// MTU-sized.
	TxBatches, RxBatches int
	RxBatchSize          int

	// NoOffloads opens the kernel TUN without the virtio-net header: no
	// TSO/GSO super-packets to read, no coalescing (GRO) on write, one
	// packet per TUN read and MTU-sized inbound buffers. It saves most of
	// the buffer memory (and the TUN's coalescing state) at the cost of
	// throughput, for small routers. It has no effect with Config.TUN.
	NoOffloads bool

	// OnRekeyDue is called once per outbound SA, on its own goroutine, when
	// the SA passes esp.SoftSeqLimit packets.
	OnRekeyDue func(spi uint32)

	Logger *slog.Logger
}

// Backend is the userspace data plane. Create it with New.
type Backend struct {
	log        *slog.Logger
	fib        FIB
	tun        tun.Device
	tunName    string
	kernelTUN  bool
	nl         *netlink.Handle // in the namespace New ran in
	conns      []Conn
	out        [2][2]Conn // [raw][v6]: the socket that sends to an endpoint
	workers    int
	batch      int // outbound batch: the TUN's batch size
	rxBatch    int // inbound batch: datagrams per recvmmsg
	txBatches  int
	rxBatches  int
	bufSize    int
	onRekeyDue func(uint32)
	ikeq       *ikeQueue        // IKE datagrams diverted from port 4500
	ike        *ikeConn         // the view IKEConn returns
	probes     *routesrc.Prober // source address lookups for NATTConn

	state atomic.Pointer[saState]

	txInflight, rxInflight atomic.Int32 // batches between reader and writer

	txPackets, txBytes atomic.Uint64
	rxPackets, rxBytes atomic.Uint64
	drops              esp.Counters

	txPool, rxPool chan *batch
	cryptQ         chan *batch
	txQ, rxQ       chan *batch
	closed         chan struct{}
	wg             sync.WaitGroup

	tunIndex int         // the kernel TUN's interface index
	watch    *routeWatch // the kernel TUN's route watch, or nil

	mu        sync.Mutex // guards the fields below; Set and SetRoutes hold it
	installed []*entry
	kroutes   routeTable // prefixes wanted through the TUN, and the kernel's state of each
	isClosed  bool
}

// saState is what the packet path reads: replaced whole by Set.
type saState struct {
	in  map[uint32]*inSA
	out map[routing.Tunnel]*outSA
}

type inSA struct {
	sa            *esp.SA
	remote, local []netip.Prefix
}

type outSA struct {
	sa       *esp.SA
	peer     netip.AddrPort // fixed outer destination (CHILD_SA), or zero
	local    netip.Addr     // outer source, or zero for the kernel's choice
	signaled *atomic.Bool   // OnRekeyDue called for sa
}

// entry is one installed dataplane.SA with the esp.SA built for it.
type entry struct {
	cfg      dataplane.SA // with our own copy of the keys
	sa       *esp.SA
	signaled *atomic.Bool
}

var _ dataplane.Backend = (*Backend)(nil)

// New starts a backend. It takes ownership of cfg.TUN and cfg.Conns and
// closes them in Close.
func New(cfg Config) (*Backend, error) {
	if cfg.FIB == nil {
		return nil, errors.New("dataplane: userspace backend needs a FIB")
	}
	b := &Backend{
		log:        cfg.Logger,
		fib:        cfg.FIB,
		workers:    cfg.Workers,
		onRekeyDue: cfg.OnRekeyDue,
		closed:     make(chan struct{}),
	}
	if b.log == nil {
		b.log = slog.Default()
	}
	b.log = b.log.With("component", "dataplane")
	if b.workers <= 0 {
		b.workers = runtime.GOMAXPROCS(0)
	}
	mtu := cfg.MTU
	if mtu <= 0 {
		mtu = DefaultMTU
	}
	b.state.Store(&saState{in: map[uint32]*inSA{}, out: map[routing.Tunnel]*outSA{}})

	var err error
	if err = b.openTUN(cfg, mtu); err != nil {
		return nil, err
	}
	if err = b.openConns(cfg); err != nil {
		b.tun.Close()
		b.nl.Close()
		return nil, err
	}
	if m, err := b.tun.MTU(); err == nil && m > mtu {
		mtu = m
	}
	b.batch = max(1, min(b.tun.BatchSize(), maxBatch))
	b.txBatches, b.rxBatches = cfg.TxBatches, cfg.RxBatches
	if b.txBatches <= 0 {
		b.txBatches = defaultBatches
	}
	if b.rxBatches <= 0 {
		b.rxBatches = defaultBatches
	}
	b.rxBatch = cfg.RxBatchSize
	if b.rxBatch <= 0 {
		b.rxBatch = defaultRxBatch
	}
	b.rxBatch = min(b.rxBatch, maxBatch)
	b.bufSize = max(2048, esp.Headroom+mtu+esp.Tailroom+64)
	b.ikeq = newIKEQueue()
	b.ike = &ikeConn{v: newIKEView(b)}
	// In the namespace New runs in: the sockets' (Config.Conns are taken
	// to be there too).
	b.probes = routesrc.New(b.wildcardUDP())
	if b.kernelTUN {
		// The namespace New runs in is the TUN's: watch it for routes the
		// kernel drops.
		if b.watch, err = newRouteWatch(b.tunIndex); err != nil {
			b.log.Warn("cannot watch the TUN's routes; routes the kernel drops stay missing", "err", err)
		}
	}
	b.start()
	if b.watch != nil {
		b.wg.Add(1)
		go b.routineWatchRoutes(b.watch)
	}
	return b, nil
}

func (b *Backend) openConns(cfg Config) error {
	conns := cfg.Conns
	if conns == nil {
		port := cfg.Port
		if port == 0 {
			port = esp.UDPEncapPort
		}
		for _, a := range []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()} {
			c, err := ListenUDP(netip.AddrPortFrom(a, port))
			if err != nil {
				if a.Is6() && len(conns) > 0 {
					b.log.Warn("no IPv6 ESP-in-UDP socket", "err", err)
					continue
				}
				closeAll(conns)
				return err
			}
			conns = append(conns, c)
		}
		if cfg.RawESP {
			for _, a := range []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()} {
				c, err := ListenESP(a)
				if err != nil {
					closeAll(conns)
					return err
				}
				conns = append(conns, c)
			}
		}
	}
	for _, c := range conns {
		raw, v6 := 0, 0
		if c.Raw() {
			raw = 1
		}
		if is6(c.LocalAddr()) {
			v6 = 1
		}
		if b.out[raw][v6] == nil {
			b.out[raw][v6] = c
		}
	}
	b.conns = conns
	return nil
}

func is6(a net.Addr) bool {
	var ip net.IP
	switch a := a.(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.IPAddr:
		ip = a.IP
	default:
		return false
	}
	return ip.To4() == nil && len(ip) == net.IPv6len
}

func closeAll(cs []Conn) {
	for _, c := range cs {
		c.Close()
	}
}

// Set installs st: SAs that did not change keep their sequence numbers and
// replay windows, new ones are built, and the keys of SAs that went away
// are wiped. It is idempotent.
func (b *Backend) Set(st *dataplane.State) error {
	if st == nil {
		st = &dataplane.State{}
	}
	if err := st.Validate(); err != nil {
		return err
	}
	for i := range st.SAs {
		sa := &st.SAs[i]
		if sa.Dir&dataplane.Out != 0 && !sa.Peer.IsValid() && sa.Keys.Suite.Encr.IsAEAD() && sa.SenderIDBits == 0 {
			return fmt.Errorf("dataplane: SA %08x: a group SA sending with %v needs Sender-IDs: counter-mode nonces would repeat across senders", sa.Keys.SPI, sa.Keys.Suite)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.isClosed {
		return net.ErrClosed
	}
	next := make([]*entry, 0, len(st.SAs))
	reused := make(map[*entry]bool)
	ns := &saState{in: make(map[uint32]*inSA), out: make(map[routing.Tunnel]*outSA)}
	for i := range st.SAs {
		want := &st.SAs[i]
		var e *entry
		for _, old := range b.installed {
			if !reused[old] && sameCrypto(&old.cfg, want) {
				e = old
				break
			}
		}
		if e != nil {
			reused[e] = true
			keys := e.cfg.Keys
			e = &entry{cfg: *want, sa: e.sa, signaled: e.signaled}
			e.cfg.Keys = keys
		} else {
			sa, err := esp.NewSA(esp.Config{
				Keys:         want.Keys,
				ReplayWindow: want.ReplayWindow,
				SenderIDBits: want.SenderIDBits,
				SenderID:     want.SenderID,
			})
			if err != nil {
				for _, n := range next {
					if !reused[n] {
						n.sa.Wipe()
						n.cfg.Keys.Wipe()
					}
				}
				return fmt.Errorf("dataplane: %w", err)
			}
			e = &entry{cfg: *want, sa: sa, signaled: new(atomic.Bool)}
			e.cfg.Keys = want.Keys.Clone()
			b.log.Info("SA installed", "esp_spi", fmt.Sprintf("%08x", want.Keys.SPI), "state", dirName(want.Dir))
		}
		e.cfg.RemoteSelectors = append([]netip.Prefix(nil), want.RemoteSelectors...)
		e.cfg.LocalSelectors = append([]netip.Prefix(nil), want.LocalSelectors...)
		next = append(next, e)
		if want.Dir&dataplane.In != 0 {
			ns.in[want.Keys.SPI] = &inSA{sa: e.sa, remote: e.cfg.RemoteSelectors, local: e.cfg.LocalSelectors}
		}
		if want.Dir&dataplane.Out != 0 {
			ns.out[want.Tunnel] = &outSA{sa: e.sa, peer: want.Peer, local: want.Local, signaled: e.signaled}
		}
	}
	b.state.Store(ns)
	for _, old := range b.installed {
		if !reused[old] {
			b.log.Info("SA removed", "esp_spi", fmt.Sprintf("%08x", old.cfg.Keys.SPI))
			old.sa.Wipe()
			old.cfg.Keys.Wipe()
		}
	}
	b.installed = next
	return nil
}

// sameCrypto reports whether an installed SA can serve want without a new
// esp.SA: same SPI, suite, keys and replay/Sender-ID parameters.
func sameCrypto(have, want *dataplane.SA) bool {
	return have.Keys.SPI == want.Keys.SPI && have.Keys.Suite == want.Keys.Suite &&
		len(have.Keys.EncKey) == len(want.Keys.EncKey) && len(have.Keys.IntegKey) == len(want.Keys.IntegKey) &&
		subtle.ConstantTimeCompare(have.Keys.EncKey, want.Keys.EncKey) == 1 &&
		subtle.ConstantTimeCompare(have.Keys.IntegKey, want.Keys.IntegKey) == 1 &&
		have.ReplayWindow == want.ReplayWindow && have.SenderIDBits == want.SenderIDBits &&
		have.SenderID == want.SenderID
}

func dirName(d dataplane.Direction) string {
	switch d {
	case dataplane.In:
		return "in"
	case dataplane.Out:
		return "out"
	case dataplane.Both:
		return "both"
	}
	return "none"
}

// Stats returns the packet counters. Rx counts inner packets written to
// the TUN, Tx ESP packets handed to the sockets; bytes are inner bytes.
// Packets the TUN refuses count as "tun_write" drops (when it refuses part
// of a batch, RxBytes is prorated over the batch), packets a socket does
// not take as "no_route".
// IKE datagrams dropped because the IKE engine did not read them in time
// count as "ike_queue_full".
func (b *Backend) Stats() dataplane.Stats {
	st := dataplane.Stats{
		TxPackets: b.txPackets.Load(), TxBytes: b.txBytes.Load(),
		RxPackets: b.rxPackets.Load(), RxBytes: b.rxBytes.Load(),
		Drops: b.drops.Map(),
	}
	if n := b.ikeq.dropped.Load(); n > 0 {
		st.Drops["ike_queue_full"] = n
	}
	return st
}

// Drops returns the count for one drop reason.
func (b *Backend) Drops(d esp.Drop) uint64 { return b.drops.Get(d) }

// IKEConn returns the net.PacketConn through which IKE uses UDP port 4500
// (marker-prefixed datagrams both ways). It is one conn for the backend's
// lifetime; its Close ends its own use. Besides net.PacketConn it has
// NATTConn's ReadPacket, WritePacket and SourceAddr, so an adapter can
// learn each datagram's local address and choose the source; NATT gives
// the IKE engine's conn directly.
func (b *Backend) IKEConn() net.PacketConn { return b.ike }

// wildcardUDP reports which families have a UDP socket bound to the
// wildcard address, whose source addresses only a route lookup can tell.
func (b *Backend) wildcardUDP() (v4, v6 bool) {
	for i, c := range b.out[0] {
		if c == nil {
			continue
		}
		if ua, ok := c.LocalAddr().(*net.UDPAddr); ok && ua.IP.IsUnspecified() {
			if i == 0 {
				v4 = true
			} else {
				v6 = true
			}
		}
	}
	return v4, v6
}

// BufferBytes returns the memory the backend's packet buffers take: every
// batch of both pools, allocated when the backend starts.
func (b *Backend) BufferBytes() int {
	return b.txBatches*b.batch*b.bufSize + b.rxBatches*b.rxBatch*b.rxBufSize()
}

// TUNName returns the name of the TUN device.
func (b *Backend) TUNName() string { return b.tunName }

// Close stops the packet path, closes the TUN and the sockets, removes the
// kernel routes it added and wipes every key. Set returns net.ErrClosed
// afterwards.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.isClosed {
		b.mu.Unlock()
		return nil
	}
	b.isClosed = true
	b.mu.Unlock()

	close(b.closed)
	if b.watch != nil {
		b.watch.close()
	}
	b.ikeq.close()
	err := b.tun.Close()
	for _, c := range b.conns {
		c.Close()
	}
	b.wg.Wait()

	b.mu.Lock()
	defer b.mu.Unlock()
	b.state.Store(&saState{in: map[uint32]*inSA{}, out: map[routing.Tunnel]*outSA{}})
	for _, e := range b.installed {
		e.sa.Wipe()
		e.cfg.Keys.Wipe()
	}
	b.installed = nil
	b.removeRoutesLocked()
	b.nl.Close()
	b.probes.Close()
	return err
}
