package userspace

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// ikeQueueLen bounds the IKE datagrams waiting for the IKE engine to read.
const ikeQueueLen = 256

type ikeDatagram struct {
	data     []byte
	src, dst netip.AddrPort
}

// ikeQueue holds the IKE datagrams the readers diverted from port 4500
// until a conn reads them. Every conn of the backend reads from it; a
// datagram goes to whichever reads first.
type ikeQueue struct {
	in      chan ikeDatagram
	closed  chan struct{} // closed when the backend closes
	once    sync.Once
	dropped atomic.Uint64
}

func newIKEQueue() *ikeQueue {
	return &ikeQueue{in: make(chan ikeDatagram, ikeQueueLen), closed: make(chan struct{})}
}

// deliver queues a copy of an IKE datagram that src sent to dst (dst's
// address is zero when the socket did not say); a full queue drops it
// (IKE retransmits).
func (q *ikeQueue) deliver(data []byte, src netip.AddrPort, dst netip.AddrPort) {
	d := ikeDatagram{data: append([]byte(nil), data...), src: src, dst: dst}
	select {
	case q.in <- d:
	default:
		q.dropped.Add(1)
	}
}

func (q *ikeQueue) close() { q.once.Do(func() { close(q.closed) }) }

// ikeView is one conn's access to the backend's port-4500 sockets: reads
// from the queue with a read deadline, writes through the sockets.
// Closing a view ends only its own reads and writes.
type ikeView struct {
	b      *Backend
	closed chan struct{}
	once   sync.Once

	mu       sync.Mutex // guards the fields below
	deadline time.Time
	changed  chan struct{} // closed and replaced when the deadline changes
}

func newIKEView(b *Backend) ikeView {
	return ikeView{b: b, closed: make(chan struct{}), changed: make(chan struct{})}
}

// read returns the next IKE datagram. A read deadline set while it waits
// applies at once (net.PacketConn semantics).
func (v *ikeView) read(p []byte) (n int, src, dst netip.AddrPort, err error) {
	q := v.b.ikeq
	for {
		v.mu.Lock()
		deadline, changed := v.deadline, v.changed
		v.mu.Unlock()
		var timeout <-chan time.Time
		var t *time.Timer
		if !deadline.IsZero() {
			wait := time.Until(deadline)
			if wait <= 0 {
				return 0, src, dst, os.ErrDeadlineExceeded
			}
			t = time.NewTimer(wait)
			timeout = t.C
		}
		select {
		case d := <-q.in:
			stopTimer(t)
			return copy(p, d.data), d.src, d.dst, nil
		case <-v.closed:
			stopTimer(t)
			return 0, src, dst, net.ErrClosed
		case <-q.closed:
			stopTimer(t)
			return 0, src, dst, net.ErrClosed
		case <-timeout:
			return 0, src, dst, os.ErrDeadlineExceeded
		case <-changed:
			stopTimer(t) // look at the new deadline
		}
	}
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

// write sends p to dst from the port-4500 socket of dst's family, from
// src when it is a valid address (IP_PKTINFO / IPV6_PKTINFO), else from the
// kernel's choice. p must be an IKE datagram behind the non-ESP marker or
// a NAT keepalive (RFC 3948 §2.2, §2.3): ESP is the backend's own.
func (v *ikeView) write(p []byte, src netip.Addr, dst netip.AddrPort) error {
	select {
	case <-v.closed:
		return net.ErrClosed
	case <-v.b.ikeq.closed:
		return net.ErrClosed
	default:
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if !dst.Addr().IsValid() || dst.Port() == 0 {
		return fmt.Errorf("dataplane: IKE datagram to %v", dst)
	}
	src = src.Unmap()
	if src.IsUnspecified() {
		src = netip.Addr{}
	}
	if src.IsValid() && src.Is4() != dst.Addr().Is4() {
		return fmt.Errorf("dataplane: IKE datagram to %v from %v: families differ", dst, src)
	}
	keepalive := len(p) == 1 && p[0] == 0xff
	if !keepalive && (len(p) < 4 || p[0]|p[1]|p[2]|p[3] != 0) {
		return errors.New("dataplane: IKE datagram on port 4500 without the non-ESP marker")
	}
	v6 := 0
	if dst.Addr().Is6() {
		v6 = 1
	}
	conn := v.b.out[0][v6]
	if conn == nil {
		return errors.New("dataplane: no UDP socket for " + dst.String())
	}
	msg := [1]Message{{Buf: p, N: len(p), Addr: dst, Src: src}}
	_, err := conn.WriteBatch(msg[:])
	return err
}

func (v *ikeView) setReadDeadline(t time.Time) {
	v.mu.Lock()
	v.deadline = t
	close(v.changed)
	v.changed = make(chan struct{})
	v.mu.Unlock()
}

func (v *ikeView) close() { v.once.Do(func() { close(v.closed) }) }

// localAddr is the port-4500 socket's address: the IPv4 one, else the
// IPv6 one.
func (v *ikeView) localAddr() netip.AddrPort {
	for _, c := range []Conn{v.b.out[0][0], v.b.out[0][1]} {
		if c == nil {
			continue
		}
		if ua, ok := c.LocalAddr().(*net.UDPAddr); ok {
			ap := ua.AddrPort()
			return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
	}
	return netip.AddrPort{}
}

// sourceAddr returns the address datagrams to dst leave from: the address
// of the socket of dst's family when it is bound to one, else the kernel's
// choice of source for dst in the backend's namespace.
func (v *ikeView) sourceAddr(dst netip.AddrPort) (netip.Addr, error) {
	a := dst.Addr().Unmap()
	v6 := 0
	if a.Is6() {
		v6 = 1
	}
	if !a.IsValid() {
		return netip.Addr{}, fmt.Errorf("dataplane: source address for %v", dst)
	}
	if c := v.b.out[0][v6]; c != nil {
		if ua, ok := c.LocalAddr().(*net.UDPAddr); ok {
			if la := ua.AddrPort().Addr().Unmap(); la.IsValid() && !la.IsUnspecified() {
				return la, nil
			}
		}
	}
	port := dst.Port()
	if port == 0 {
		port = 4500
	}
	src, err := v.b.probes.Source(netip.AddrPortFrom(a, port))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("dataplane: %w", err)
	}
	return src, nil
}

// NATTConn is the backend's UDP port-4500 sockets as the IKE engine uses
// them: it has the method set of ike.Conn and ike.SourceAddrConn (the
// backend does not import ike). Datagrams carry the 4-octet non-ESP
// marker both ways (RFC 3948 §2.2): ReadPacket returns IKE datagrams with
// it, WritePacket sends what it is given with it, or a NAT keepalive (one
// 0xFF octet, RFC 3948 §2.3). ESP on the same sockets is the backend's.
//
// Every NATTConn of a backend reads from one queue: a datagram goes to
// whichever reads first, so one engine at a time should read. Close ends
// one NATTConn's reads and writes and leaves the sockets to the backend
// and to its other conns, so engines can come and go while the backend
// lives; after the backend's Close every NATTConn returns net.ErrClosed.
type NATTConn struct{ v ikeView }

// NATT returns a new NATTConn on the backend's port-4500 sockets.
func (b *Backend) NATT() *NATTConn { return &NATTConn{v: newIKEView(b)} }

// ReadPacket reads one IKE datagram, non-ESP marker included, into p. src
// is its sender, dst the local address and port it was sent to (from
// IP_PKTINFO / IPV6_PKTINFO); dst is the zero AddrPort only when the
// socket did not tell. It blocks until a datagram arrives, the read
// deadline passes (os.ErrDeadlineExceeded) or the conn or backend is
// closed (net.ErrClosed).
func (c *NATTConn) ReadPacket(p []byte) (n int, src, dst netip.AddrPort, err error) {
	return c.v.read(p)
}

// WritePacket sends p to dst from the port-4500 socket of dst's family:
// from src's address when src holds a valid, specified one (IP_PKTINFO /
// IPV6_PKTINFO), else from the address the kernel chooses. p must start
// with the non-ESP marker or be a NAT keepalive (0xFF). A source address
// the host does not have makes the datagram fail silently, as a lost one.
func (c *NATTConn) WritePacket(p []byte, src, dst netip.AddrPort) error {
	return c.v.write(p, src.Addr(), dst)
}

// LocalAddr returns the address of the IPv4 port-4500 socket (of the IPv6
// one when there is none): the wildcard and port 4500 unless configured
// otherwise. The conn sends and receives both families.
func (c *NATTConn) LocalAddr() netip.AddrPort { return c.v.localAddr() }

// SourceAddr returns the local address datagrams to dst leave from when
// WritePacket is given no source: the socket's own address when it is
// bound to one, else the kernel's choice for dst (ike.SourceAddrConn).
func (c *NATTConn) SourceAddr(dst netip.AddrPort) (netip.Addr, error) {
	return c.v.sourceAddr(dst)
}

// SetReadDeadline sets the deadline for pending and future ReadPacket
// calls; a zero t means none.
func (c *NATTConn) SetReadDeadline(t time.Time) error {
	c.v.setReadDeadline(t)
	return nil
}

// Close makes this conn's ReadPacket and WritePacket return net.ErrClosed,
// at once for a pending read. The sockets stay with the backend.
func (c *NATTConn) Close() error {
	c.v.close()
	return nil
}

// ikeConn is the net.PacketConn view of port 4500 IKEConn returns. Besides
// net.PacketConn it has NATTConn's ReadPacket, WritePacket and SourceAddr,
// so adapters of a net.PacketConn can learn and choose local addresses.
type ikeConn struct{ v ikeView }

var _ net.PacketConn = (*ikeConn)(nil)

// ReadFrom returns the next IKE datagram, non-ESP marker included. A read
// deadline set while it waits applies at once (net.PacketConn semantics).
func (c *ikeConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, src, _, err := c.v.read(p)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(src), nil
}

// WriteTo sends p, which must start with the non-ESP marker or be a NAT
// keepalive, to addr from the backend's port-4500 socket of addr's family.
func (c *ikeConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, errors.New("dataplane: IKE needs a UDP address")
	}
	if err := c.v.write(p, netip.Addr{}, ua.AddrPort()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// ReadPacket is NATTConn.ReadPacket.
func (c *ikeConn) ReadPacket(p []byte) (n int, src, dst netip.AddrPort, err error) {
	return c.v.read(p)
}

// WritePacket is NATTConn.WritePacket.
func (c *ikeConn) WritePacket(p []byte, src, dst netip.AddrPort) error {
	return c.v.write(p, src.Addr(), dst)
}

// SourceAddr is NATTConn.SourceAddr.
func (c *ikeConn) SourceAddr(dst netip.AddrPort) (netip.Addr, error) {
	return c.v.sourceAddr(dst)
}

// Close makes ReadFrom and WriteTo fail; the sockets belong to the backend.
func (c *ikeConn) Close() error {
	c.v.close()
	return nil
}

// LocalAddr returns the address of the port-4500 socket (NATTConn.LocalAddr).
func (c *ikeConn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.v.localAddr()) }

func (c *ikeConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetReadDeadline sets the deadline for future and pending ReadFrom
// calls; a zero t means none.
func (c *ikeConn) SetReadDeadline(t time.Time) error {
	c.v.setReadDeadline(t)
	return nil
}

// SetWriteDeadline is accepted and ignored: writes do not block for long.
func (c *ikeConn) SetWriteDeadline(time.Time) error { return nil }
