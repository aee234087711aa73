package userspace

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// ikeQueue bounds the IKE datagrams waiting for the IKE engine to read.
const ikeQueue = 256

type ikeDatagram struct {
	data []byte
	from netip.AddrPort
}

// ikeConn is the net.PacketConn through which IKE shares UDP port 4500.
// Datagrams carry the 4-octet non-ESP marker both ways (RFC 3948 §2.2).
type ikeConn struct {
	b       *Backend
	in      chan ikeDatagram
	closed  chan struct{}
	once    sync.Once
	dropped atomic.Uint64

	mu       sync.Mutex // guards the fields below
	deadline time.Time
	changed  chan struct{} // closed and replaced when the deadline changes
}

var _ net.PacketConn = (*ikeConn)(nil)

func newIKEConn(b *Backend) *ikeConn {
	return &ikeConn{b: b, in: make(chan ikeDatagram, ikeQueue), closed: make(chan struct{}), changed: make(chan struct{})}
}

// deliver queues a copy of an IKE datagram; a full queue drops it (IKE
// retransmits).
func (c *ikeConn) deliver(data []byte, from netip.AddrPort) {
	d := ikeDatagram{data: append([]byte(nil), data...), from: from}
	select {
	case c.in <- d:
	default:
		c.dropped.Add(1)
	}
}

// ReadFrom returns the next IKE datagram, non-ESP marker included. A read
// deadline set while it waits applies at once (net.PacketConn semantics).
func (c *ikeConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		c.mu.Lock()
		deadline, changed := c.deadline, c.changed
		c.mu.Unlock()
		var timeout <-chan time.Time
		var t *time.Timer
		if !deadline.IsZero() {
			wait := time.Until(deadline)
			if wait <= 0 {
				return 0, nil, os.ErrDeadlineExceeded
			}
			t = time.NewTimer(wait)
			timeout = t.C
		}
		select {
		case d := <-c.in:
			stopTimer(t)
			n := copy(p, d.data)
			return n, net.UDPAddrFromAddrPort(d.from), nil
		case <-c.closed:
			stopTimer(t)
			return 0, nil, net.ErrClosed
		case <-timeout:
			return 0, nil, os.ErrDeadlineExceeded
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

// WriteTo sends p, which must start with the non-ESP marker, to addr from
// the backend's port-4500 socket of addr's family.
func (c *ikeConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, errors.New("dataplane: IKE needs a UDP address")
	}
	ap := ua.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	v6 := 0
	if ap.Addr().Is6() {
		v6 = 1
	}
	conn := c.b.out[0][v6]
	if conn == nil {
		return 0, errors.New("dataplane: no UDP socket for " + ap.String())
	}
	if len(p) < 4 || p[0]|p[1]|p[2]|p[3] != 0 {
		return 0, errors.New("dataplane: IKE datagram on port 4500 without the non-ESP marker")
	}
	msg := []Message{{Buf: p, N: len(p), Addr: ap}}
	if _, err := conn.WriteBatch(msg); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close makes ReadFrom and WriteTo fail; the socket belongs to the backend.
func (c *ikeConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// LocalAddr returns the IPv4 (else IPv6) port-4500 socket's address.
func (c *ikeConn) LocalAddr() net.Addr {
	for _, conn := range []Conn{c.b.out[0][0], c.b.out[0][1]} {
		if conn != nil {
			return conn.LocalAddr()
		}
	}
	return &net.UDPAddr{}
}

func (c *ikeConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetReadDeadline sets the deadline for future and pending ReadFrom
// calls; a zero t means none.
func (c *ikeConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	return nil
}

// SetWriteDeadline is accepted and ignored: writes do not block for long.
func (c *ikeConn) SetWriteDeadline(time.Time) error { return nil }
