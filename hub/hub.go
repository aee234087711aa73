package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mpsa-vpn/mpsa/bgp/rr"
	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/ike/keylog"
	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/internal/ops"
	"github.com/mpsa-vpn/mpsa/mpsa"
	"github.com/mpsa-vpn/mpsa/mpsa/store"
	"github.com/mpsa-vpn/mpsa/routing"
)

// Implementation defaults.
const (
	// DefaultDPDInterval is how long a CPE may stay silent before the hub
	// checks that it is alive (RFC 7296 §1.4); a dead CPE's IKE SA, routes
	// and overlay tunnel go once the check fails.
	DefaultDPDInterval = 30 * time.Second
	// DefaultShutdownTimeout bounds how long Close waits for CPEs to
	// answer the deletes of their IKE SAs.
	DefaultShutdownTimeout = 3 * time.Second
	// ChildReplayWindow is the anti-replay window of the CHILD_SAs.
	ChildReplayWindow = 64
	// StoreFile is the MPSA group store in the state directory.
	StoreFile = "groups.db"
)

// Hub is the mpsa-hub daemon as a library: an IKEv2 responder for the CPEs,
// the MPSA group key server, the BGP route reflector and the data plane of
// the CPEs' CHILD_SAs. New builds it, Run runs it, Close stops it.
//
// Lock order: Hub.mu, then the key server's, the FIB's, the pools' and the
// IKE manager's own locks. Nothing blocks on the network with Hub.mu held.
// informMu and notifyMu are leaves: nothing else is locked while they are
// held.
type Hub struct {
	log   *slog.Logger // component=hub
	root  *slog.Logger
	opts  options
	clock ike.Clock

	fib      *routing.FIB
	dp       dataplane.Backend
	ike      *ike.Manager
	ikeConns []ikeConn
	ks       *mpsa.KeyServer
	store    *store.Store
	pools    *pools
	rr       *rr.Hub // nil without BGP
	// rrMaxRoutes is the route reflector's route limit per CPE (set
	// before Run, then read only).
	rrMaxRoutes int
	status      *ops.StatusServer
	metrics     *metrics
	keylog      *keylog.Writer
	tun         tunAddrs // the hub's overlay addresses on the data plane's device

	prov atomic.Pointer[provisioning]

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup // routines and in-flight INFORMATIONAL exchanges
	ksWake    chan struct{}
	applyGen  chan struct{}
	started   atomic.Bool
	closeOnce sync.Once

	// informMu guards informClosed, so that session.Inform (thousands at
	// once in a group rekey) adds to wg without taking mu.
	informMu     sync.RWMutex
	informClosed bool

	// notifyMu guards the following fields: the Changed channel and the
	// acknowledgement counts, which every MPSA_PUT answer updates (apart
	// from mu, so that a rekey's answers do not contend with its sends).
	notifyMu   sync.Mutex
	changed    chan struct{}  // closed at the next change (Changed); nil until asked for
	putAcks    map[uint32]int // acknowledged MPSA_PUTs by group SPI (the last maxPutAckSPIs)
	putAckSPIs []uint32       // the SPIs of putAcks, oldest first

	// mu guards the following fields.
	mu         sync.Mutex
	closed     bool
	conns      map[*ike.SA]*cpeConn  // live IKE SAs of CPEs
	byName     map[string][]*cpeConn // the same, by CPE name, oldest first
	routeOwner map[netip.Prefix]*cpeConn
	nextTunnel routing.Tunnel
	applied    appliedState
	rrGroups   map[string]rr.GroupConfig // the route reflector's groups, by name
}

// maxPutAckSPIs bounds how many group SAs PutAcks remembers.
const maxPutAckSPIs = 256

// ikeConn is one socket given to the IKE engine.
type ikeConn struct {
	c    ike.Conn
	natt bool
}

// appliedState is what the last data plane update did, for status and tests.
type appliedState struct {
	gen  uint64
	err  error
	when time.Time
}

// New builds the hub from a checked configuration (configs.BuildHub or a
// loader): it opens the state store, the sockets, the data plane and the
// status socket, and adds the groups to the key server. Nothing is received
// until Run. On error everything opened is closed again.
func New(cfg *configs.Hub, logger *slog.Logger, opts ...Option) (_ *Hub, err error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	h := &Hub{
		log: logger.With("component", "hub"), root: logger, opts: o, clock: o.clock,
		ksWake: make(chan struct{}, 1), applyGen: make(chan struct{}, 1),
		conns: map[*ike.SA]*cpeConn{}, byName: map[string][]*cpeConn{}, routeOwner: map[netip.Prefix]*cpeConn{},
		putAcks: map[uint32]int{}, rrGroups: map[string]rr.GroupConfig{},
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			h.Close()
		}
	}()
	prov, err := newProvisioning(cfg)
	if err != nil {
		return nil, err
	}
	h.prov.Store(prov)
	h.metrics = newMetrics(h)

	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("hub: state_dir: %w", err)
	}
	if h.pools, err = openPools(filepath.Join(cfg.StateDir, LeaseFile), h.log); err != nil {
		return nil, err
	}
	h.pools.sync(cfg, prov.cpes)
	if h.store, err = store.Open(filepath.Join(cfg.StateDir, StoreFile)); err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	h.ks, err = mpsa.NewKeyServer(mpsa.KeyServerConfig{Logger: logger, Now: h.clock.Now, Rand: o.rand, Store: h.store,
		RetryMin: o.retryMin, RetryMax: o.retryMax})
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	if err := h.syncKeyServer(cfg, nil); err != nil {
		return nil, err
	}
	h.metrics.groupsAdded(h.ks.Status())
	if cfg.KeyExport.IKE != "" || cfg.KeyExport.ESP != "" {
		if h.keylog, err = keylog.Create(cfg.KeyExport.IKE, cfg.KeyExport.ESP); err != nil {
			return nil, fmt.Errorf("hub: key_export: %w", err)
		}
		h.log.Warn("writing IKE and ESP keys for Wireshark", "reason", "key_export configured")
	}

	h.fib = routing.New(routing.WithLogger(logger))
	if err := h.openDataplane(cfg); err != nil {
		return nil, err
	}
	if err := h.openIKE(cfg, prov); err != nil {
		return nil, err
	}
	if !o.noBGP {
		if err := h.startReflector(cfg); err != nil {
			return nil, err
		}
	}
	if cfg.Status.Socket != "" && !o.noStatus {
		if h.status, err = ops.ListenStatus(cfg.Status.Socket, h.log); err != nil {
			return nil, fmt.Errorf("hub: %w", err)
		}
		h.registerStatus()
	}
	if cfg.Metrics.Listen.IsValid() && !o.noMetrics {
		if err := h.metrics.listen(cfg.Metrics.Listen); err != nil {
			return nil, err
		}
	}
	h.log.Info("hub ready", "id", cfg.Identity, "state", "READY")
	return h, nil
}

// syncKeyServer adds or updates every configured group (and removes those in
// removed), then hands the key server the provisioning: every configured
// CPE, and every one it knows that is no longer configured to revoke.
func (h *Hub) syncKeyServer(cfg *configs.Hub, removed []string) error {
	for i := range cfg.Groups {
		if err := h.ks.AddGroup(groupConfig(&cfg.Groups[i])); err != nil {
			return fmt.Errorf("hub: groups[%d]: %w", i, err)
		}
	}
	provision := make(map[string]string, len(cfg.CPEs))
	for _, c := range cfg.CPEs {
		provision[cpeName(c.Identity)] = c.Group
	}
	var revoke []string
	for name := range h.ks.Provisioned() {
		if _, ok := provision[name]; !ok {
			revoke = append(revoke, name)
		}
	}
	if err := h.ks.Sync(revoke, provision); err != nil {
		return fmt.Errorf("hub: key server: %w", err)
	}
	for _, g := range removed {
		if err := h.ks.RemoveGroup(g); err != nil && !errors.Is(err, mpsa.ErrUnknownGroup) {
			return fmt.Errorf("hub: key server: %w", err)
		}
	}
	h.wakeKeyServer()
	return nil
}

// openIKE builds the IKE engine and opens its sockets: port 500 on every
// listen address, and the NAT-T port through the data plane when it owns it.
func (h *Hub) openIKE(cfg *configs.Hub, prov *provisioning) error {
	ic := ike.Config{
		Local:      prov.local(),
		Peers:      h.lookup,
		CertReqCAs: prov.cas,
		Policy: ike.Policy{
			AssignAddresses: h.assignAddresses,
			NarrowTS:        h.narrowTS,
			Authorize:       h.authorize,
			VendorIDs:       mpsa.VendorIDs(),
			Informational:   h.informational,
		},
		Events:        h.onEvent,
		MOBIKE:        true,
		Fragmentation: true,
		NATTPort:      cfg.IKE.NATTPort,
		DPDInterval:   DefaultDPDInterval,
		Logger:        h.root,
		Rand:          h.opts.rand,
	}
	if h.keylog != nil && cfg.KeyExport.IKE != "" {
		ic.KeyLog = func(spiI, spiR uint64, k *suite.IKEKeys) {
			if err := h.keylog.IKESA(spiI, spiR, k); err != nil {
				h.log.Debug("IKE keys not exported", append(ops.IKESPIs(spiI, spiR), "err", err)...)
			}
		}
	}
	if h.opts.ikeClock != nil {
		ic.Clock = h.opts.ikeClock
	}
	if h.opts.ports != nil && h.opts.ports[1] != 0 {
		ic.NATTPort = h.opts.ports[1]
	}
	if h.opts.ikeConfig != nil {
		h.opts.ikeConfig(&ic)
	}
	m, err := ike.New(ic)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	h.ike = m
	port, natt := cfg.IKE.Port, cfg.IKE.NATTPort
	if h.opts.ports != nil {
		port, natt = h.opts.ports[0], h.opts.ports[1]
	}
	for _, a := range cfg.IKE.Listen {
		c, err := listenIKE(a, port)
		if err != nil {
			if a.IsUnspecified() && a.Is6() && len(h.ikeConns) > 0 {
				h.log.Warn("no IPv6 IKE socket", "local", netip.AddrPortFrom(a, port), "err", err)
				continue
			}
			return err
		}
		h.ikeConns = append(h.ikeConns, ikeConn{c: c})
	}
	if pc, ok := h.dp.(interface{ IKEConn() net.PacketConn }); ok {
		h.ikeConns = append(h.ikeConns, ikeConn{c: ops.NewPacketConn(pc.IKEConn()), natt: true})
		return nil
	}
	for _, a := range cfg.IKE.Listen {
		c, err := listenIKE(a, natt)
		if err != nil {
			if a.IsUnspecified() && a.Is6() {
				continue
			}
			return err
		}
		if h.opts.prepareNATT != nil {
			if err := h.opts.prepareNATT(c.UDPConn()); err != nil {
				c.Close()
				return fmt.Errorf("hub: NAT-T socket %v: %w", c.LocalAddr(), err)
			}
		}
		h.ikeConns = append(h.ikeConns, ikeConn{c: c, natt: true})
	}
	return nil
}

// IKESocketBuffer is the receive and send buffer of the hub's IKE sockets:
// a group rekey sends one INFORMATIONAL request to every CPE at once, and
// their answers arrive together.
const IKESocketBuffer = 8 << 20

func listenIKE(a netip.Addr, port uint16) (*ike.UDPConn, error) {
	network := "udp4"
	if a.Is6() {
		network = "udp6"
	}
	c, err := ike.ListenUDP(network, netip.AddrPortFrom(a, port))
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	setBuffers(c.UDPConn(), IKESocketBuffer)
	return c, nil
}

// setBuffers sizes a socket's buffers: beyond net.core.rmem_max when
// privileged (SO_RCVBUFFORCE), else as far as the system allows.
func setBuffers(c *net.UDPConn, size int) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], size) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], size)
			}
		}
	})
}

// IKEAddrs returns the local addresses of the IKE sockets: port 500 (or
// what it was configured to) first, then the NAT-T sockets.
func (h *Hub) IKEAddrs() (ike, natt []netip.AddrPort) {
	for _, c := range h.ikeConns {
		if c.natt {
			natt = append(natt, c.c.LocalAddr())
		} else {
			ike = append(ike, c.c.LocalAddr())
		}
	}
	return ike, natt
}

// Run receives from CPEs and runs the hub's timers until ctx ends or Close
// is called; then it closes the hub.
func (h *Hub) Run(ctx context.Context) error {
	if !h.started.CompareAndSwap(false, true) {
		return errors.New("hub: Run called twice")
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return errors.New("hub: closed")
	}
	h.wg.Add(2)
	h.mu.Unlock()
	go h.routineKeyServer()
	go h.routineApply()
	for _, c := range h.ikeConns {
		h.ike.AddConn(c.c, c.natt)
	}
	h.applyNow()
	select {
	case <-ctx.Done():
	case <-h.ctx.Done():
	}
	return h.Close()
}

// Close stops the hub: the IKE SAs are deleted (CPEs are told, for up to
// DefaultShutdownTimeout), the data plane is taken down, keys are wiped and
// the stores closed. The group SAs stay valid on the CPEs, whose traffic to
// each other keeps flowing; a restarted hub continues with the same epochs.
func (h *Hub) Close() error {
	var err error
	h.closeOnce.Do(func() { err = h.close() })
	return err
}

func (h *Hub) close() error {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.informMu.Lock()
	h.informClosed = true
	h.informMu.Unlock()
	if h.status != nil {
		h.status.Close()
	}
	if h.ike != nil {
		if h.started.Load() {
			ctx, cancel := context.WithTimeout(context.Background(), h.opts.shutdownTimeout)
			h.ike.Shutdown(ctx)
			cancel()
		} else {
			h.ike.Close()
		}
	} else {
		for _, c := range h.ikeConns {
			c.c.Close()
		}
	}
	h.cancel()
	h.wg.Wait()
	if h.rr != nil {
		h.rr.Close()
	}
	h.metrics.close()
	if h.ks != nil {
		h.ks.Close()
	}
	var errs []error
	if h.store != nil {
		errs = append(errs, h.store.Close())
	}
	if h.pools != nil {
		errs = append(errs, h.pools.close())
	}
	h.mu.Lock()
	for _, c := range h.conns {
		c.wipe()
	}
	clear(h.conns)
	clear(h.byName)
	h.mu.Unlock()
	if h.dp != nil {
		errs = append(errs, h.dp.Close())
	}
	h.tun.close()
	if h.keylog != nil {
		errs = append(errs, h.keylog.Close())
	}
	h.log.Info("hub stopped", "state", "STOPPED")
	return errors.Join(errs...)
}

// wakeKeyServer makes routineKeyServer look at NextDeadline again.
func (h *Hub) wakeKeyServer() {
	select {
	case h.ksWake <- struct{}{}:
	default:
	}
}

// routineKeyServer calls the key server's Tick when its NextDeadline comes.
func (h *Hub) routineKeyServer() {
	defer h.wg.Done()
	h.log.Debug("key server timer started")
	defer h.log.Debug("key server timer stopped")
	for {
		stop := func() bool { return false }
		if d := h.ks.NextDeadline(); !d.IsZero() {
			wait := d.Sub(h.clock.Now())
			if wait <= 0 {
				h.ks.Tick()
				continue
			}
			stop = h.clock.AfterFunc(wait, h.wakeKeyServer)
		}
		select {
		case <-h.ctx.Done():
			stop()
			return
		case <-h.ksWake:
			stop()
		}
		h.ks.Tick()
	}
}

// Changed returns a channel that is closed at the next change of the hub's
// state: an IKE event handled, an MPSA_PUT answered, the data plane
// programmed, a reload applied. Tests and the lab wait on it instead of
// sleeping: take the channel, check the state, wait.
func (h *Hub) Changed() <-chan struct{} {
	h.notifyMu.Lock()
	defer h.notifyMu.Unlock()
	if h.changed == nil {
		h.changed = make(chan struct{})
	}
	return h.changed
}

// PutAcks returns how many MPSA_PUT exchanges carrying the group SA with
// this SPI the CPEs have acknowledged (retries that got no answer not
// counted).
func (h *Hub) PutAcks(spi uint32) int {
	h.notifyMu.Lock()
	defer h.notifyMu.Unlock()
	return h.putAcks[spi]
}

// PutAckCounts returns PutAcks for every group SPI the hub remembers.
func (h *Hub) PutAckCounts() map[uint32]int {
	h.notifyMu.Lock()
	defer h.notifyMu.Unlock()
	out := make(map[uint32]int, len(h.putAcks))
	for k, v := range h.putAcks {
		out[k] = v
	}
	return out
}

// notePutAck counts an acknowledged MPSA_PUT and announces the change.
func (h *Hub) notePutAck(spi uint32) {
	h.notifyMu.Lock()
	if _, ok := h.putAcks[spi]; !ok {
		h.putAckSPIs = append(h.putAckSPIs, spi)
		if len(h.putAckSPIs) > maxPutAckSPIs {
			delete(h.putAcks, h.putAckSPIs[0])
			h.putAckSPIs = h.putAckSPIs[1:]
		}
	}
	h.putAcks[spi]++
	h.notifyChangedLocked()
	h.notifyMu.Unlock()
}

// notifyChanged closes the Changed channel.
func (h *Hub) notifyChanged() {
	h.notifyMu.Lock()
	h.notifyChangedLocked()
	h.notifyMu.Unlock()
}

// notifyChangedLocked closes the channel Changed handed out, if any; the
// next Changed makes a new one (no channel is made for changes nobody
// waits for). notifyMu must be held.
func (h *Hub) notifyChangedLocked() {
	if h.changed != nil {
		close(h.changed)
		h.changed = nil
	}
}

// Logger returns the logger the hub was built with.
func (h *Hub) Logger() *slog.Logger { return h.root }

// Config returns the running configuration. Callers must not modify it.
func (h *Hub) Config() *configs.Hub { return h.prov.Load().cfg }

// IKE returns the hub's IKE engine (for benchmarks and diagnostics).
func (h *Hub) IKE() *ike.Manager { return h.ike }
