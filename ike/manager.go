package ike

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/ike/wire"
)

// Manager runs IKE SAs on shared UDP sockets: it reads datagrams from its
// Conns, hands each to the SA it belongs to, accepts new IKE_SA_INIT
// requests as responder, and starts IKE SAs as initiator.
//
// Lock order: Manager.mu, then SA.xmu, then SA.infoMu. SA executors never
// hold Manager.mu while running work.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	clock   Clock
	rand    io.Reader
	events  *eventQueue
	cookies *cookieJar
	limiter *rateLimiter

	stats stats
	conns atomic.Pointer[[]*managedConn]
	// nonceFirst, when not zero, is one more than the first octet of every
	// nonce drawn (tests of rekey collisions set it).
	nonceFirst atomic.Uint32
	wg         sync.WaitGroup // readers and workers

	// Workers run SA queues (SA.drain); idle ones wait on idleWork for the
	// next SA, at most maxIdle of them, until quit is closed.
	idleWork    chan *SA
	idleWorkers atomic.Int32
	maxIdle     int
	quit        chan struct{}

	mu       sync.Mutex        // guards the following
	handleN  uint64            // handles made so far (SA.seq)
	sas      map[uint64]*ikeSA // by our SPI
	halfOpen map[halfOpenKey]*ikeSA
	handles  map[*SA]struct{}
	// childSPIs are the inbound ESP SPIs in use or being negotiated.
	childSPIs map[uint32]struct{}
	// byID indexes handles by the authenticated peer identity, for
	// INITIAL_CONTACT.
	byID   map[string]map[*SA]struct{}
	closed bool
}

type managedConn struct {
	c    Conn
	natt bool
}

type halfOpenKey struct {
	spiI   uint64
	remote netip.AddrPort
}

// New returns a manager; add sockets with AddConn.
func New(cfg Config) (*Manager, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var r io.Reader = rand.Reader
	if cfg.Rand != nil {
		r = &lockedReader{r: cfg.Rand}
	}
	m := &Manager{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "ike"),
		clock:    cfg.Clock,
		rand:     r,
		sas:      make(map[uint64]*ikeSA),
		halfOpen: make(map[halfOpenKey]*ikeSA),
		handles:  make(map[*SA]struct{}),
		idleWork: make(chan *SA),
		maxIdle:  max(4, 2*runtime.GOMAXPROCS(0)),
		quit:     make(chan struct{}),
	}
	m.events = newEventQueue(cfg.Events)
	var err error
	if m.cookies, err = newCookieJar(r, cfg.Clock); err != nil {
		return nil, err
	}
	m.limiter = newRateLimiter(cfg.Clock, cfg.UnauthReplyRate, cfg.UnauthReplyBurst)
	empty := []*managedConn{}
	m.conns.Store(&empty)
	return m, nil
}

// AddConn starts reading IKE datagrams from c. natt marks the NAT-T socket
// (port 4500), whose datagrams carry the non-ESP marker. The manager closes
// c on Close.
func (m *Manager) AddConn(c Conn, natt bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		c.Close()
		return
	}
	old := *m.conns.Load()
	conns := append(append([]*managedConn(nil), old...), &managedConn{c: c, natt: natt})
	m.conns.Store(&conns)
	mc := conns[len(conns)-1]
	m.wg.Add(1)
	go m.routineRead(mc)
}

// routineRead reads datagrams from one socket until it is closed.
func (m *Manager) routineRead(mc *managedConn) {
	defer m.wg.Done()
	m.log.Debug("reader started", "local", mc.c.LocalAddr())
	defer m.log.Debug("reader stopped", "local", mc.c.LocalAddr())
	buf := make([]byte, 65536)
	for {
		n, src, dst, err := mc.c.ReadPacket(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || m.isClosed() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			m.log.Error("read failed", "local", mc.c.LocalAddr(), "err", err)
			return
		}
		m.input(buf[:n], src, dst, mc)
	}
}

// input handles one datagram as read from mc.
func (m *Manager) input(b []byte, src, dst netip.AddrPort, mc *managedConn) {
	m.stats.received.Add(1)
	if mc.natt {
		if len(b) == 1 && b[0] == 0xff {
			m.stats.keepalives.Add(1)
			return
		}
		if len(b) < 4 || binary.BigEndian.Uint32(b) != 0 {
			m.stats.nonIKE.Add(1)
			return
		}
		b = b[4:]
	}
	if !dst.Addr().IsValid() {
		dst = mc.c.LocalAddr()
	}
	dst = netip.AddrPortFrom(dst.Addr(), mc.c.LocalAddr().Port())
	m.dispatch(b, src, dst, mc.natt)
}

// dispatch hands a datagram (b, the reader's buffer) to its SA, or to the
// responder for new IKE_SA_INIT requests. What is dropped on its header
// alone costs no allocation; the rest is copied once for the SA.
func (m *Manager) dispatch(b []byte, src, dst netip.AddrPort, natt bool) {
	hdr, err := wire.DecodeHeader(b)
	if err != nil || int(hdr.Length) != len(b) {
		m.stats.malformed.Add(1)
		return
	}
	if hdr.MajorVersion() != 2 {
		m.stats.malformed.Add(1)
		if hdr.Exchange == wire.IKESAInit && !hdr.IsResponse() && hdr.MajorVersion() > 2 {
			// RFC 7296 §2.5: tell the peer which version we speak.
			m.replyUnauth(&packet{src: src, dst: dst, natt: natt}, hdr, &wire.Notify{NotifyType: wire.NotifyInvalidMajorVersion})
		}
		return
	}
	if hdr.Exchange == wire.IKESAInit && !hdr.IsResponse() {
		if len(b) > maxInitRequest {
			m.stats.malformed.Add(1)
			return
		}
		m.acceptInit(&packet{data: bytes.Clone(b), src: src, dst: dst, natt: natt}, hdr)
		return
	}
	spi := hdr.SPIi
	if hdr.IsInitiator() {
		spi = hdr.SPIr
	}
	m.mu.Lock()
	sa := m.sas[spi]
	m.mu.Unlock()
	if sa == nil {
		m.stats.unknownSPI.Add(1)
		return
	}
	p := &packet{data: bytes.Clone(b), src: src, dst: dst, natt: natt}
	sa.h.runPacket(func() { sa.handlePacket(p, hdr) })
}

// maxInitRequest bounds the IKE_SA_INIT requests a responder accepts. A
// half-open SA keeps its request for AUTH, so this bounds what an
// unauthenticated peer makes the responder hold (with Config.MaxHalfOpen);
// real requests are well under 2 KiB (strongSwan's own limit for any
// message is 10,000 octets).
const maxInitRequest = 8192

// run posts f and then refreshes the SA's timer and published state.
func (h *SA) run(f func()) bool { return h.post(h.wrap(f)) }

// runPacket is run for a received datagram (bounded queue).
func (h *SA) runPacket(f func()) bool { return h.postPacket(h.wrap(f)) }

func (h *SA) wrap(f func()) func() {
	return func() {
		f()
		if !h.isDead() {
			h.reschedule()
			h.publish()
		}
	}
}

// replyUnauth sends an unprotected IKE_SA_INIT response carrying only n, if
// the rate limit allows (RFC 7296 §2.21.1: the only answers before
// authentication).
func (m *Manager) replyUnauth(p *packet, req wire.Header, n *wire.Notify) {
	if !m.limiter.allow() {
		m.stats.rateLimited.Add(1)
		return
	}
	resp := wire.Message{Header: wire.Header{SPIi: req.SPIi, Version: wire.Version, Exchange: wire.IKESAInit,
		Flags: wire.FlagResponse, MessageID: req.MessageID}, Payloads: []wire.Payload{n}}
	b, err := resp.Encode()
	if err != nil {
		return
	}
	m.send(b, p.dst, p.src, p.natt)
}

// send writes one datagram, adding the non-ESP marker on the NAT-T socket.
func (m *Manager) send(b []byte, src, dst netip.AddrPort, natt bool) {
	mc := m.pickConn(natt, src, dst)
	if mc == nil {
		m.log.Debug("no socket to send from", "local", src, "peer", dst)
		return
	}
	if natt {
		b = append(make([]byte, 4, 4+len(b)), b...)
	}
	if err := mc.c.WritePacket(b, src, dst); err != nil {
		m.log.Debug("send failed", "local", src, "peer", dst, "err", err)
		return
	}
	m.stats.sent.Add(1)
}

// sendKeepalive sends a NAT-T keepalive (RFC 3948 §2.3): one 0xFF octet.
func (m *Manager) sendKeepalive(src, dst netip.AddrPort) {
	if mc := m.pickConn(true, src, dst); mc != nil {
		if mc.c.WritePacket([]byte{0xff}, src, dst) == nil {
			m.stats.sent.Add(1)
		}
	}
}

// pickConn chooses the socket for a datagram: the right port kind, bound to
// src's address or a wildcard of dst's family.
func (m *Manager) pickConn(natt bool, src, dst netip.AddrPort) *managedConn {
	var fallback *managedConn
	for _, mc := range *m.conns.Load() {
		if mc.natt != natt {
			continue
		}
		la := mc.c.LocalAddr().Addr()
		if la == src.Addr() {
			return mc
		}
		if la.IsUnspecified() && (la.Is6() || la.Is4() == dst.Addr().Is4()) && fallback == nil {
			fallback = mc
		}
		if fallback == nil && la.Is4() == dst.Addr().Is4() && !src.Addr().IsValid() {
			fallback = mc
		}
	}
	if fallback == nil {
		for _, mc := range *m.conns.Load() {
			if mc.natt == natt {
				return mc
			}
		}
	}
	return fallback
}

// transmit sends datagrams on the SA's current path.
func (h *SA) transmit(pkts [][]byte) {
	h.sendTo(pkts, h.local, h.remote, h.natt)
}

func (h *SA) sendTo(pkts [][]byte, src, dst netip.AddrPort, natt bool) {
	for _, b := range pkts {
		h.m.send(b, src, dst, natt)
	}
}

// newSPI draws a fresh non-zero IKE SPI not in use.
func (m *Manager) newSPI() (uint64, error) {
	var b [8]byte
	for {
		if _, err := io.ReadFull(m.rand, b[:]); err != nil {
			return 0, fmt.Errorf("ike: random SPI: %w", err)
		}
		spi := binary.BigEndian.Uint64(b[:])
		if spi == 0 {
			continue
		}
		m.mu.Lock()
		_, used := m.sas[spi]
		m.mu.Unlock()
		if !used {
			return spi, nil
		}
	}
}

// newHandle creates and tracks an SA handle.
func (m *Manager) newHandle(name string, initiator bool) (*SA, error) {
	h := &SA{m: m, name: name, origInitiator: initiator, done: make(chan struct{}), localCred: &m.cfg.Local,
		localID: m.cfg.Local.ID}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	m.handleN++
	h.seq = m.handleN
	m.handles[h] = struct{}{}
	return h, nil
}

func (m *Manager) removeHandle(h *SA) {
	m.mu.Lock()
	delete(m.handles, h)
	if h.idKey != "" {
		if set := m.byID[h.idKey]; set != nil {
			delete(set, h)
			if len(set) == 0 {
				delete(m.byID, h.idKey)
			}
		}
	}
	m.mu.Unlock()
}

// idKey is the index key of an identity: its type and data, FQDNs and
// e-mail addresses in lower case as auth.ID.Equal compares them.
func idKey(id auth.ID) string {
	d := id.Data()
	if id.Type == auth.IDFQDN || id.Type == auth.IDRFC822 {
		d = bytes.ToLower(d)
	}
	return string(rune(id.Type)) + string(d)
}

// setPeerID records the authenticated peer identity of h and indexes it.
// Executor of h only.
func (h *SA) setPeerID(id auth.ID) {
	h.peerID = id
	h.changed()
	key := idKey(id)
	m := h.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, live := m.handles[h]; !live {
		return
	}
	if m.byID == nil {
		m.byID = make(map[string]map[*SA]struct{})
	}
	set := m.byID[key]
	if set == nil {
		set = make(map[*SA]struct{}, 1)
		m.byID[key] = set
	}
	set[h] = struct{}{}
	h.idKey = key
}

// sameIdentity returns the other handles whose peer authenticated as id.
func (m *Manager) sameIdentity(h *SA, id auth.ID) []*SA {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*SA
	for o := range m.byID[idKey(id)] {
		if o != h {
			out = append(out, o)
		}
	}
	return out
}

// newIKESA creates an IKE SA of h with our SPI and registers it.
func (h *SA) newIKESA(initiator bool, spiI, spiR uint64) *ikeSA {
	sa := &ikeSA{h: h, initiator: initiator, spiI: spiI, spiR: spiR, state: StateConnecting}
	sa.log = h.m.log.With("ike_spi_i", hexSPI(spiI), "ike_spi_r", hexSPI(spiR))
	h.log = sa.log
	h.m.mu.Lock()
	h.m.sas[sa.ourSPI()] = sa
	h.m.mu.Unlock()
	return sa
}

// hexSPI logs an IKE SPI as 16 hex digits, formatted only when a record
// is actually written.
type hexSPI uint64

// LogValue implements slog.LogValuer.
func (s hexSPI) LogValue() slog.Value { return slog.StringValue(fmt.Sprintf("%016x", uint64(s))) }

// relog refreshes the SA's logger once both SPIs are known.
func (sa *ikeSA) relog() {
	sa.log = sa.h.m.log.With("ike_spi_i", hexSPI(sa.spiI), "ike_spi_r", hexSPI(sa.spiR))
	if sa.h.cur == sa {
		sa.h.log = sa.log
	}
}

func (m *Manager) unregister(sa *ikeSA) {
	m.mu.Lock()
	if m.sas[sa.ourSPI()] == sa {
		delete(m.sas, sa.ourSPI())
	}
	if k := sa.halfOpen; k != nil && m.halfOpen[*k] == sa {
		delete(m.halfOpen, *k)
	}
	m.mu.Unlock()
}

func (m *Manager) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// SAs lists every IKE connection, for a swanctl --list-sas like view.
func (m *Manager) SAs() []SAInfo {
	m.mu.Lock()
	hs := make([]*SA, 0, len(m.handles))
	for h := range m.handles {
		hs = append(hs, h)
	}
	m.mu.Unlock()
	out := make([]SAInfo, 0, len(hs))
	for _, h := range hs {
		out = append(out, h.Info())
	}
	return out
}

// Handles returns the handles of every IKE connection.
func (m *Manager) Handles() []*SA {
	m.mu.Lock()
	defer m.mu.Unlock()
	hs := make([]*SA, 0, len(m.handles))
	for h := range m.handles {
		hs = append(hs, h)
	}
	return hs
}

// Stats returns the manager's counters.
func (m *Manager) Stats() Stats { return m.stats.snapshot() }

// Shutdown deletes every established IKE SA with the peer (INFORMATIONAL
// DELETE) and waits until they are gone or ctx ends; then it closes.
func (m *Manager) Shutdown(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, h := range m.Handles() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = h.Close(ctx)
		}()
	}
	wg.Wait()
	m.Close()
	return ctx.Err()
}

// Close stops the manager at once: SAs are dropped without telling peers
// (their events are still delivered), sockets are closed, goroutines end.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	hs := make([]*SA, 0, len(m.handles))
	for h := range m.handles {
		hs = append(hs, h)
	}
	m.mu.Unlock()
	for _, h := range hs {
		if !h.post(func() { h.die(ErrClosed) }) {
			continue
		}
		<-h.done
	}
	for _, mc := range *m.conns.Load() {
		mc.c.Close()
	}
	close(m.quit)
	m.wg.Wait()
	m.events.close()
}
