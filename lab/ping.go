package lab

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// ICMP echo (RFC 792, RFC 4443).
const (
	icmpEchoRequest4 = 8
	icmpEchoReply4   = 0
	icmpEchoRequest6 = 128
	icmpEchoReply6   = 129
	echoHeaderLen    = 8
	echoTokenLen     = 8
	// MaxPings bounds the requests one Pinger sends (16-bit sequence
	// numbers, never reused).
	MaxPings = 60000
)

// Pinger sends ICMP echo requests from a namespace (a LAN host) to one
// address and accounts for every reply by sequence number. Replies are
// recognised by identifier, sequence number, source and a random token in
// the payload, so several Pingers can share a namespace.
type Pinger struct {
	dst   netip.Addr
	conn  net.PacketConn
	id    uint16
	token [echoTokenLen]byte
	done  chan struct{} // closed when routineRead ends
	// replied is closed by the first reply (PingUntil waits on it).
	replied chan struct{}

	mu   sync.Mutex // guards the following
	next uint16
	sent []time.Time     // by sequence number
	rtt  []time.Duration // by sequence number; 0: no reply (yet)
	dup  int
	// gotReply: replied is closed.
	gotReply bool
}

// NewPinger opens a raw ICMP socket in namespace ns for pinging dst.
func NewPinger(ns string, dst netip.Addr) (*Pinger, error) {
	p := &Pinger{dst: dst, done: make(chan struct{}), replied: make(chan struct{})}
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	if _, err := rand.Read(p.token[:]); err != nil {
		return nil, err
	}
	p.id = binary.BigEndian.Uint16(b[:])
	network, laddr := "ip4:icmp", "0.0.0.0"
	if dst.Is6() {
		network, laddr = "ip6:ipv6-icmp", "::"
	}
	err := doInNS(ns, func() error {
		c, err := net.ListenPacket(network, laddr)
		p.conn = c
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: ICMP socket in %s: %w", ns, err)
	}
	go p.routineRead()
	return p, nil
}

// Close stops the Pinger.
func (p *Pinger) Close() error {
	err := p.conn.Close()
	<-p.done
	return err
}

// Send sends the next echo request and returns its sequence number.
func (p *Pinger) Send() (uint16, error) {
	p.mu.Lock()
	if len(p.sent) >= MaxPings {
		p.mu.Unlock()
		return 0, fmt.Errorf("lab: a Pinger sends at most %d requests", MaxPings)
	}
	seq := p.next
	p.next++
	p.sent = append(p.sent, time.Now())
	p.rtt = append(p.rtt, 0)
	p.mu.Unlock()
	msg := appendEcho(nil, p.dst.Is6(), p.id, seq, p.token[:])
	_, err := p.conn.WriteTo(msg, &net.IPAddr{IP: p.dst.AsSlice()})
	return seq, err
}

// Run sends a request every interval until ctx ends or MaxPings were sent.
func (p *Pinger) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := p.Send(); err != nil && !isTransient(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// isTransient reports whether a send error is the network's (no route for a
// moment), which a ping run counts as a loss rather than an error.
func isTransient(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && !errors.Is(err, net.ErrClosed)
}

func (p *Pinger) routineRead() {
	defer close(p.done)
	buf := make([]byte, 1500)
	for {
		n, from, err := p.conn.ReadFrom(buf)
		if err != nil {
			return // closed (or broken: what was not answered counts as lost)
		}
		now := time.Now()
		ia, ok := from.(*net.IPAddr)
		if !ok {
			continue
		}
		src, ok := netip.AddrFromSlice(ia.IP)
		if !ok || src.Unmap() != p.dst.Unmap() {
			continue
		}
		id, seq, ok := parseEchoReply(p.dst.Is6(), buf[:n], p.token[:])
		if !ok || id != p.id {
			continue
		}
		p.mu.Lock()
		if int(seq) < len(p.sent) {
			if p.rtt[seq] != 0 {
				p.dup++
			} else {
				if p.rtt[seq] = max(now.Sub(p.sent[seq]), time.Nanosecond); !p.gotReply {
					p.gotReply = true
					close(p.replied)
				}
			}
		}
		p.mu.Unlock()
	}
}

// appendEcho appends an ICMP (or ICMPv6) echo request carrying token.
// ICMPv6 checksums are the kernel's business on raw sockets.
func appendEcho(b []byte, v6 bool, id, seq uint16, token []byte) []byte {
	typ := byte(icmpEchoRequest4)
	if v6 {
		typ = icmpEchoRequest6
	}
	start := len(b)
	b = append(b, typ, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, id)
	b = binary.BigEndian.AppendUint16(b, seq)
	b = append(b, token...)
	if !v6 {
		binary.BigEndian.PutUint16(b[start+2:], checksum(b[start:]))
	}
	return b
}

// parseEchoReply checks that b is an echo reply carrying token and returns
// its identifier and sequence number.
func parseEchoReply(v6 bool, b, token []byte) (id, seq uint16, ok bool) {
	want := byte(icmpEchoReply4)
	if v6 {
		want = icmpEchoReply6
	}
	if len(b) < echoHeaderLen+len(token) || b[0] != want || b[1] != 0 {
		return 0, 0, false
	}
	if string(b[echoHeaderLen:echoHeaderLen+len(token)]) != string(token) {
		return 0, 0, false
	}
	if !v6 && checksum(b) != 0 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(b[4:]), binary.BigEndian.Uint16(b[6:]), true
}

// checksum is the Internet checksum (RFC 1071).
func checksum(b []byte) uint16 {
	var s uint32
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// PingStats accounts for a Pinger's requests.
type PingStats struct {
	Sent, Received, Duplicates int
	Lost                       []uint16    // sequence numbers without a reply
	LostAt                     []time.Time // when each lost request was sent
	Pending                    int         // sent less than the timeout ago, no reply yet
	MaxRTT                     time.Duration
}

// String summarises the stats like ping does.
func (s PingStats) String() string {
	out := fmt.Sprintf("%d sent, %d received, %d lost", s.Sent, s.Received, len(s.Lost))
	if s.Received > 0 {
		out += fmt.Sprintf(", max rtt %v", s.MaxRTT.Round(time.Microsecond))
	}
	if len(s.Lost) > 0 {
		out += fmt.Sprintf(" (first lost seq %d sent %s)", s.Lost[0], s.LostAt[0].Format("15:04:05.000"))
	}
	return out
}

// Stats returns the accounting now: a request without a reply counts as
// lost once timeout has passed since it was sent.
func (p *Pinger) Stats(timeout time.Duration) PingStats {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	s := PingStats{Sent: len(p.sent), Duplicates: p.dup}
	for i, at := range p.sent {
		switch {
		case p.rtt[i] != 0:
			s.Received++
			s.MaxRTT = max(s.MaxRTT, p.rtt[i])
		case now.Sub(at) >= timeout:
			s.Lost = append(s.Lost, uint16(i))
			s.LostAt = append(s.LostAt, at)
		default:
			s.Pending++
		}
	}
	return s
}

// Settle waits until no request is pending (each has its reply or is older
// than timeout) and returns the final stats.
func (p *Pinger) Settle(ctx context.Context, timeout time.Duration) PingStats {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		s := p.Stats(timeout)
		if s.Pending == 0 {
			return s
		}
		select {
		case <-ctx.Done():
			return s
		case <-t.C:
		}
	}
}

// PingTimeout is how long a ping waits for its reply.
const PingTimeout = time.Second

// Ping sends count requests from namespace ns to dst, interval apart, after
// a first reply came back (trying for up to firstWithin, so that neighbour
// discovery and routes settle), and returns their stats.
func Ping(ctx context.Context, ns string, dst netip.Addr, count int, interval, firstWithin time.Duration) (PingStats, error) {
	if err := PingUntil(ctx, ns, dst, firstWithin); err != nil {
		return PingStats{}, err
	}
	p, err := NewPinger(ns, dst)
	if err != nil {
		return PingStats{}, err
	}
	defer p.Close()
	t := time.NewTicker(interval)
	defer t.Stop()
	for i := 0; i < count; i++ {
		if _, err := p.Send(); err != nil && !isTransient(err) {
			return PingStats{}, err
		}
		if i < count-1 {
			select {
			case <-ctx.Done():
				return p.Stats(PingTimeout), ctx.Err()
			case <-t.C:
			}
		}
	}
	return p.Settle(ctx, PingTimeout), nil
}

// PingUntil pings dst from ns every 200 ms until a reply comes back, for up
// to within.
func PingUntil(ctx context.Context, ns string, dst netip.Addr, within time.Duration) error {
	p, err := NewPinger(ns, dst)
	if err != nil {
		return err
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	if _, err := p.Send(); err != nil && !isTransient(err) {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: no echo reply from %v to %s within %v (%v)", dst, ns, within, p.Stats(PingTimeout))
		case <-t.C:
			if _, err := p.Send(); err != nil && !isTransient(err) {
				return err
			}
		case <-p.replied:
			return nil
		}
	}
}

// PingResult is one cell of a ping matrix.
type PingResult struct {
	From, To string // CPE names whose LAN hosts pinged
	Dst      netip.Addr
	Stats    PingStats
	Err      error
}

// OK reports whether every request got its reply.
func (r PingResult) OK() bool {
	return r.Err == nil && r.Stats.Sent > 0 && r.Stats.Received == r.Stats.Sent
}

// PingMatrix pings every member CPE's LAN host from every other one's, in
// every LAN family, count requests each, at most 8 pairs at once.
func (l *Lab) PingMatrix(ctx context.Context, count int) []PingResult {
	members := l.joining()
	var cells []PingResult
	for _, a := range members {
		for _, b := range members {
			if a.Name == b.Name {
				continue
			}
			for _, dst := range b.Hosts {
				if a.Host(FamilyOf(dst)).IsValid() {
					cells = append(cells, PingResult{From: a.Name, To: b.Name, Dst: dst})
				}
			}
		}
	}
	hostNS := map[string]string{}
	for _, c := range members {
		hostNS[c.Name] = c.HostNS
	}
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range cells {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c := &cells[i]
			c.Stats, c.Err = Ping(ctx, hostNS[c.From], c.Dst, count, 100*time.Millisecond, 20*time.Second)
		})
	}
	wg.Wait()
	sort.SliceStable(cells, func(i, j int) bool {
		if cells[i].From != cells[j].From {
			return cells[i].From < cells[j].From
		}
		return cells[i].To < cells[j].To
	})
	return cells
}
