// Package iketest provides what exchange tests of package ike (and of the
// daemons built on it) need to run IKE endpoints in one process and step
// them: a manual Clock, and Net, an in-memory UDP network that holds every
// datagram until the test delivers, drops, duplicates or reorders it, with
// optional NAT mappings.
package iketest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// Clock is a clock that moves only when Advance is called.
type Clock struct {
	mu     sync.Mutex // guards the following
	now    time.Time
	seq    uint64
	timers []*timer
}

type timer struct {
	at      time.Time
	seq     uint64
	f       func()
	stopped bool
}

// NewClock returns a clock set to start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc schedules f to run (in its own goroutine, like time.AfterFunc)
// when Advance passes now+d.
func (c *Clock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &timer{at: c.now.Add(d), seq: c.seq, f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped
		t.stopped = true
		c.remove(t)
		return was
	}
}

func (c *Clock) remove(t *timer) {
	for i, x := range c.timers {
		if x == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			return
		}
	}
}

// Advance moves the clock forward by d, running due timers in time order.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	for {
		sort.Slice(c.timers, func(i, j int) bool {
			if c.timers[i].at.Equal(c.timers[j].at) {
				return c.timers[i].seq < c.timers[j].seq
			}
			return c.timers[i].at.Before(c.timers[j].at)
		})
		if len(c.timers) == 0 || c.timers[0].at.After(end) {
			break
		}
		t := c.timers[0]
		c.timers = c.timers[1:]
		t.stopped = true
		if t.at.After(c.now) {
			c.now = t.at
		}
		c.mu.Unlock()
		go t.f()
		c.mu.Lock()
	}
	c.now = end
	c.mu.Unlock()
}

// Pending returns how many timers wait.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// Datagram is one UDP datagram on a Net.
type Datagram struct {
	Src, Dst netip.AddrPort
	Data     []byte
}

func (d Datagram) String() string {
	return fmt.Sprintf("%v -> %v (%d octets)", d.Src, d.Dst, len(d.Data))
}

// Net is an in-memory network. Datagrams written by its Conns wait in a
// queue until the test calls Deliver (or Auto delivers them).
type Net struct {
	mu        sync.Mutex // guards the following
	conns     map[netip.AddrPort]*Conn
	held      []Datagram
	auto      bool
	nat       map[netip.AddrPort]netip.AddrPort // inside -> outside
	rnat      map[netip.AddrPort]netip.AddrPort // outside -> inside
	arrived   chan struct{}
	delivered int
}

// NewNet returns an empty network.
func NewNet() *Net {
	return &Net{conns: make(map[netip.AddrPort]*Conn), nat: make(map[netip.AddrPort]netip.AddrPort),
		rnat: make(map[netip.AddrPort]netip.AddrPort), arrived: make(chan struct{}, 1)}
}

// Listen returns a Conn bound to addr.
func (n *Net) Listen(addr netip.AddrPort) *Conn {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := &Conn{n: n, local: addr, in: make(chan Datagram, 256), closed: make(chan struct{}), changed: make(chan struct{}, 1)}
	n.conns[addr] = c
	return c
}

// Rebind moves a Conn to another address, as when a CPE's WAN address
// changes.
func (n *Net) Rebind(c *Conn, addr netip.AddrPort) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.conns, c.local)
	c.mu.Lock()
	c.local = addr
	c.mu.Unlock()
	n.conns[addr] = c
}

// NAT maps datagrams from inside so they appear to come from outside, and
// replies to outside back to inside.
func (n *Net) NAT(inside, outside netip.AddrPort) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.nat[inside] = outside
	n.rnat[outside] = inside
}

// SetAuto makes the network deliver every datagram at once (and what is
// held now).
func (n *Net) SetAuto(auto bool) {
	n.mu.Lock()
	n.auto = auto
	held := n.held
	if auto {
		n.held = nil
	}
	n.mu.Unlock()
	if auto {
		for _, d := range held {
			n.Deliver(d)
		}
	}
}

func (n *Net) send(d Datagram) {
	n.mu.Lock()
	if out, ok := n.nat[d.Src]; ok {
		d.Src = out
	}
	if n.auto {
		n.mu.Unlock()
		n.Deliver(d)
		return
	}
	n.held = append(n.held, d)
	n.mu.Unlock()
	select {
	case n.arrived <- struct{}{}:
	default:
	}
}

// Next returns the oldest held datagram, waiting for one until ctx ends.
func (n *Net) Next(ctx context.Context) (Datagram, error) {
	for {
		n.mu.Lock()
		if len(n.held) > 0 {
			d := n.held[0]
			n.held = n.held[1:]
			n.mu.Unlock()
			return d, nil
		}
		n.mu.Unlock()
		select {
		case <-n.arrived:
		case <-ctx.Done():
			return Datagram{}, ctx.Err()
		}
	}
}

// Held returns how many datagrams wait.
func (n *Net) Held() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.held)
}

// Deliver hands d to the Conn bound to its destination (after reverse NAT);
// datagrams to nowhere vanish.
func (n *Net) Deliver(d Datagram) {
	n.mu.Lock()
	if in, ok := n.rnat[d.Dst]; ok {
		d.Dst = in
	}
	c := n.conns[d.Dst]
	if c == nil {
		// A wildcard listener on the port.
		for a, x := range n.conns {
			if a.Port() == d.Dst.Port() && a.Addr().IsUnspecified() {
				c = x
			}
		}
	}
	n.delivered++
	n.mu.Unlock()
	if c == nil {
		return
	}
	c.mu.Lock()
	c.pending++
	c.mu.Unlock()
	select {
	case c.in <- Datagram{Src: d.Src, Dst: d.Dst, Data: append([]byte(nil), d.Data...)}:
	case <-c.closed:
	}
}

// Conn is an endpoint on a Net; it implements ike.Conn.
type Conn struct {
	n      *Net
	in     chan Datagram
	once   sync.Once
	closed chan struct{}
	// changed is signalled whenever the reader comes back for more.
	changed chan struct{}

	mu    sync.Mutex // guards the following
	local netip.AddrPort
	// pending counts datagrams delivered and not yet fully handled: the
	// reader has handled one when it asks for the next.
	pending int
	inHand  bool
}

// ReadPacket implements ike.Conn.
func (c *Conn) ReadPacket(b []byte) (int, netip.AddrPort, netip.AddrPort, error) {
	c.mu.Lock()
	if c.inHand {
		c.inHand = false
		c.pending--
	}
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
	select {
	case d := <-c.in:
		c.mu.Lock()
		c.inHand = true
		c.mu.Unlock()
		return copy(b, d.Data), d.Src, d.Dst, nil
	case <-c.closed:
		return 0, netip.AddrPort{}, netip.AddrPort{}, net.ErrClosed
	}
}

// Idle waits until every datagram delivered to c has been read and handed
// on, that is until its reader came back for more after the last one.
func (c *Conn) Idle(ctx context.Context) error {
	for {
		c.mu.Lock()
		idle := c.pending == 0
		c.mu.Unlock()
		if idle {
			return nil
		}
		select {
		case <-c.changed:
		case <-c.closed:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WritePacket implements ike.Conn. The source is the Conn's address (a
// Conn has one address, like a socket bound to it).
func (c *Conn) WritePacket(b []byte, src, dst netip.AddrPort) error {
	select {
	case <-c.closed:
		return net.ErrClosed
	default:
	}
	c.n.send(Datagram{Src: c.LocalAddr(), Dst: dst, Data: append([]byte(nil), b...)})
	return nil
}

// LocalAddr implements ike.Conn.
func (c *Conn) LocalAddr() netip.AddrPort {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.local
}

// Close implements ike.Conn.
func (c *Conn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// ErrNothing is returned by helpers that expected a datagram.
var ErrNothing = errors.New("iketest: no datagram")
