// Package conntest has an in-memory network of userspace.Conn endpoints:
// datagrams written to an address are queued for the Conn bound to it, as
// a UDP or raw ESP socket would receive them. It lets tests run two or
// more backends in one process without sockets.
package conntest

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/mpsa-vpn/mpsa/dataplane/userspace"
)

// Network connects the Conns made by Listen. The zero value is not ready:
// use NewNetwork.
type Network struct {
	mu    sync.Mutex
	conns map[key]*Conn
	// Tap, when set, sees every datagram delivered (a copy), with its
	// source and destination, before it is queued.
	Tap func(src, dst netip.AddrPort, raw bool, payload []byte)
}

type datagram struct {
	p    []byte
	from netip.AddrPort
}

type key struct {
	addr netip.AddrPort
	raw  bool
}

// NewNetwork returns an empty network.
func NewNetwork() *Network { return &Network{conns: make(map[key]*Conn)} }

// Conn is one endpoint of a Network. It implements userspace.Conn.
type Conn struct {
	net     *Network
	local   netip.AddrPort
	raw     bool
	in      chan datagram
	closed  chan struct{}
	once    sync.Once
	Dropped atomic.Uint64 // datagrams lost to a full queue

	mu      sync.Mutex // guards the fields below (the reader's)
	pending datagram   // taken from in by WaitRead, not yet read
	has     bool       // pending holds a datagram
}

var _ userspace.Conn = (*Conn)(nil)

// Listen binds addr (port 0 with raw for an ESP socket). Its queue holds
// 4096 datagrams; more are dropped, as a socket buffer would.
func (n *Network) Listen(addr netip.AddrPort, raw bool) *Conn {
	c := &Conn{net: n, local: addr, raw: raw, in: make(chan datagram, 4096), closed: make(chan struct{})}
	n.mu.Lock()
	n.conns[key{addr, raw}] = c
	n.mu.Unlock()
	return c
}

// Raw reports whether c stands for a raw ESP socket.
func (c *Conn) Raw() bool { return c.raw }

// LocalAddr returns the bound address.
func (c *Conn) LocalAddr() net.Addr {
	if c.raw {
		return &net.IPAddr{IP: c.local.Addr().AsSlice()}
	}
	return net.UDPAddrFromAddrPort(c.local)
}

// Close unbinds c.
func (c *Conn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		c.net.mu.Lock()
		delete(c.net.conns, key{c.local, c.raw})
		c.net.mu.Unlock()
	})
	return nil
}

// WaitRead blocks until a datagram is queued; it stays for ReadBatch.
func (c *Conn) WaitRead() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.has {
		return nil
	}
	select {
	case c.pending = <-c.in:
		c.has = true
		return nil
	case <-c.closed:
		return net.ErrClosed
	}
}

// ReadBatch blocks for one datagram and takes what else is queued. On a
// UDP Conn it sets each Message's Dst to the bound address.
func (c *Conn) ReadBatch(ms []userspace.Message) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for n < len(ms) {
		var d datagram
		if n == 0 && c.has {
			d, c.pending, c.has = c.pending, datagram{}, false
		} else if n == 0 {
			select {
			case d = <-c.in:
			case <-c.closed:
				return 0, net.ErrClosed
			}
		} else {
			select {
			case d = <-c.in:
			default:
				return n, nil
			}
		}
		m := &ms[n]
		m.Off, m.N = 0, copy(m.Buf, d.p)
		m.Addr = d.from
		m.Dst = netip.Addr{}
		if !c.raw {
			m.Dst = c.local.Addr() // as IP_PKTINFO tells a UDP socket
		}
		n++
	}
	return n, nil
}

// WriteBatch delivers each datagram to the Conn bound to its address, if
// any (otherwise it is lost, as on a network).
func (c *Conn) WriteBatch(ms []userspace.Message) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	for i := range ms {
		m := &ms[i]
		dst := m.Addr
		src := c.local
		if m.Src.IsValid() {
			src = netip.AddrPortFrom(m.Src, src.Port())
		}
		if c.raw {
			dst = netip.AddrPortFrom(dst.Addr(), 0)
			src = netip.AddrPortFrom(src.Addr(), 0)
		}
		c.net.mu.Lock()
		peer := c.net.conns[key{dst, c.raw}]
		tap := c.net.Tap
		c.net.mu.Unlock()
		p := append([]byte(nil), m.Buf[m.Off:m.Off+m.N]...)
		if tap != nil {
			tap(src, dst, c.raw, p)
		}
		if peer == nil {
			continue
		}
		peer.enqueue(p, src)
	}
	return len(ms), nil
}

func (c *Conn) enqueue(p []byte, from netip.AddrPort) {
	select {
	case c.in <- datagram{p, from}:
	default:
		c.Dropped.Add(1)
	}
}
