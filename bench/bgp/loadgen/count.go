package loadgen

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/mpsa-vpn/mpsa/bench/bgp/scenario"
	"github.com/mpsa-vpn/mpsa/bgp/speaker"
	"github.com/mpsa-vpn/mpsa/bgp/tunnelencap"
)

// Counting mode (Config.Count): CPE i is a BGP session of its own to the
// reflector, with the OPEN, announcements and End-of-RIB markers bgp/speaker
// sends (built with the same GoBGP codec calls), but what it receives is
// only counted: a bitset per CPE indexed by (originating CPE, prefix index)
// of the scenario's address plan, set by announcements and cleared by
// withdrawals. N=5,000 K=4 then takes ~16 MB of bitsets instead of the
// ~100 M stored routes of N speakers.

const (
	headerLen = 19
	maxMsgLen = 4096 // RFC 4271; extended messages are not offered
	asTrans   = 23456
)

var errNotification = errors.New("loadgen: NOTIFICATION from the reflector")

// countCPE is one simulated CPE of the counting mode.
type countCPE struct {
	c    *CPEs
	i    int
	open []byte // our serialized OPEN

	advK   atomic.Int32  // prefixes the CPE announces (0 until Advertise in phased mode)
	poke   chan struct{} // advK changed
	mu     sync.Mutex    // bitset: the session's reader, holds (tests)
	bitset []uint64      // (origin, j) -> received
	routes atomic.Int64  // bits set
	done   atomic.Bool
	inc    atomic.Bool

	updatesIn, eor, malformed, foreign, noEncap, otherFamily, lost atomic.Uint64
	everUp                                                         sync.Once
}

func newCountCPE(c *CPEs, i int) (*countCPE, error) {
	cp := &countCPE{c: c, i: i, poke: make(chan struct{}, 1)}
	cp.bitset = make([]uint64, (c.cfg.N*c.stride+63)/64)
	open, err := openMessage(scenario.CPEAddr(i), c.cfg.HoldTime).Serialize()
	if err != nil {
		return nil, err
	}
	cp.open = open
	if !c.cfg.Phased {
		cp.advK.Store(int32(c.cfg.K))
	}
	return cp, nil
}

// openMessage is bgp/speaker's OPEN with its defaults: MP IPv4 and IPv6
// unicast, route refresh, 4-octet AS, graceful restart (restart time 120 s,
// forwarding state preserved for both families).
func openMessage(id netip.Addr, hold time.Duration) *bgp.BGPMessage {
	caps := []bgp.ParameterCapabilityInterface{
		bgp.NewCapMultiProtocol(bgp.RF_IPv4_UC),
		bgp.NewCapMultiProtocol(bgp.RF_IPv6_UC),
		bgp.NewCapRouteRefresh(),
		bgp.NewCapFourOctetASNumber(scenario.ASN),
	}
	var tuples []*bgp.CapGracefulRestartTuple
	for _, f := range []bgp.RouteFamily{bgp.RF_IPv4_UC, bgp.RF_IPv6_UC} {
		tuples = append(tuples, bgp.NewCapGracefulRestartTuple(f, true))
	}
	caps = append(caps, bgp.NewCapGracefulRestart(false, true, uint16(speaker.DefaultRestartTime/time.Second), tuples))
	as := uint16(asTrans)
	if scenario.ASN <= 0xffff {
		as = uint16(scenario.ASN)
	}
	return bgp.NewBGPOpenMessage(as, uint16(hold/time.Second), id.String(),
		[]bgp.OptionParameterInterface{bgp.NewOptionParameterCapability(caps)})
}

// announcements are the UPDATEs announcing CPE i's prefixes [from, to), as
// bgp/speaker builds them: IPv4 in the body with NEXT_HOP = the endpoint,
// IPv6 in MP_REACH_NLRI with the IPv4-mapped endpoint as next hop; both
// with ORIGIN IGP, an empty AS_PATH, LOCAL_PREF and the Tunnel
// Encapsulation attribute carrying the endpoint.
func announcements(i, from, to int) ([][]byte, error) {
	ep := scenario.Endpoint(i)
	tv, err := tunnelencap.AppendValue(nil, ep)
	if err != nil {
		return nil, err
	}
	common := func() []bgp.PathAttributeInterface {
		return []bgp.PathAttributeInterface{
			bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP),
			bgp.NewPathAttributeAsPath(nil),
			bgp.NewPathAttributeLocalPref(speaker.DefaultLocalPref),
			bgp.NewPathAttributeUnknown(tunnelencap.AttrFlags, tunnelencap.AttrType, tv),
		}
	}
	var v4 []*bgp.IPAddrPrefix
	var v6 []bgp.AddrPrefixInterface
	for j := from; j < to; j++ {
		p := scenario.Prefix(i, j)
		if p.Addr().Is4() {
			v4 = append(v4, bgp.NewIPAddrPrefix(uint8(p.Bits()), p.Addr().String()))
		} else {
			v6 = append(v6, bgp.NewIPv6AddrPrefix(uint8(p.Bits()), p.Addr().String()))
		}
	}
	var msgs []*bgp.BGPMessage
	if len(v4) > 0 {
		a := common()
		a = append(a[:2:2], append([]bgp.PathAttributeInterface{bgp.NewPathAttributeNextHop(ep.Addr().String())}, a[2:]...)...)
		msgs = append(msgs, bgp.NewBGPUpdateMessage(nil, a, v4))
	}
	if len(v6) > 0 {
		nh := netip.AddrFrom16(ep.Addr().As16()) // IPv4-mapped, as the speaker sends it
		a := common()
		a = append(a[:3:3], append([]bgp.PathAttributeInterface{bgp.NewPathAttributeMpReachNLRI(nh.String(), v6)}, a[3:]...)...)
		msgs = append(msgs, bgp.NewBGPUpdateMessage(nil, a, nil))
	}
	out := make([][]byte, 0, len(msgs))
	for _, m := range msgs {
		b, err := m.Serialize()
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

var (
	keepaliveMsg = mustSerialize(bgp.NewBGPKeepAliveMessage())
	eorMsgs      = append(mustSerialize(bgp.NewEndOfRib(bgp.RF_IPv4_UC)), mustSerialize(bgp.NewEndOfRib(bgp.RF_IPv6_UC))...)
)

func mustSerialize(m *bgp.BGPMessage) []byte {
	b, err := m.Serialize()
	if err != nil {
		panic(err)
	}
	return b
}

// run keeps the CPE's session up until ctx ends, reconnecting after a loss
// (the received routes are then forgotten, as without graceful restart).
func (cp *countCPE) run(ctx context.Context) {
	c := cp.c
	backoff := 500 * time.Millisecond
	for ctx.Err() == nil {
		conn, err := c.dial(ctx, cp.i)
		if err != nil {
			c.cfg.Logger.Debug("connect failed", "cpe", cp.i, "err", err)
		} else {
			err = cp.session(ctx, conn)
			conn.Close()
			if ctx.Err() == nil {
				cp.forget()
				cp.lost.Add(1)
				c.cfg.Logger.Warn("session lost", "cpe", cp.i, "addr", scenario.CPEAddr(cp.i).String(), "err", err)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// forget clears what the CPE received.
func (cp *countCPE) forget() {
	cp.mu.Lock()
	clear(cp.bitset)
	cp.routes.Store(0)
	cp.mu.Unlock()
}

// holds reports whether the CPE holds prefix j of CPE origin now.
func (cp *countCPE) holds(origin, j int) bool {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	idx := origin*cp.c.stride + j
	return cp.bitset[idx/64]&(1<<(idx%64)) != 0
}

func (cp *countCPE) session(ctx context.Context, conn net.Conn) error {
	c := cp.c
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r := bufio.NewReaderSize(conn, maxMsgLen)
	buf := make([]byte, maxMsgLen)
	conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write(cp.open); err != nil {
		return err
	}
	conn.SetReadDeadline(time.Now().Add(c.cfg.OpenHoldTime))
	msg, err := readMsg(r, buf)
	if err != nil {
		return fmt.Errorf("OpenSent: %w", err)
	}
	hold, err := checkOpen(msg, c.cfg.HoldTime)
	if err != nil {
		return fmt.Errorf("OpenSent: %w", err)
	}
	// The OPEN's write deadline may be long past when a busy reflector's
	// OPEN arrives: each write gets its own.
	conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write(keepaliveMsg); err != nil {
		return err
	}
	for { // OpenConfirm: wait for the reflector's KEEPALIVE
		if msg, err = readMsg(r, buf); err != nil {
			return fmt.Errorf("OpenConfirm: %w", err)
		}
		if msg[18] == bgp.BGP_MSG_KEEPALIVE {
			break
		}
		if msg[18] == bgp.BGP_MSG_NOTIFICATION {
			return errNotification
		}
		return fmt.Errorf("loadgen: message type %d in OpenConfirm", msg[18])
	}
	cp.everUp.Do(c.cpeUp)
	c.up.Add(1)
	defer c.up.Add(-1)

	wdone := make(chan struct{})
	werr := make(chan error, 1)
	go func() { werr <- cp.writer(conn, hold, wdone) }()
	defer func() { close(wdone); <-werr }()
	if hold == 0 {
		conn.SetReadDeadline(time.Time{})
	}
	for {
		// The hold timer runs while the reader waits on the socket: a
		// message already whole in the buffer needs no new deadline (which
		// would cost a runtime timer update per UPDATE).
		if hold > 0 && !msgBuffered(r) {
			conn.SetReadDeadline(time.Now().Add(hold))
		}
		msg, err := readMsg(r, buf)
		if err != nil {
			return fmt.Errorf("Established (hold time %v): %w", hold, err)
		}
		switch msg[18] {
		case bgp.BGP_MSG_UPDATE:
			cp.update(msg[headerLen:])
		case bgp.BGP_MSG_KEEPALIVE, bgp.BGP_MSG_ROUTE_REFRESH:
		case bgp.BGP_MSG_NOTIFICATION:
			return errNotification
		default:
			return fmt.Errorf("loadgen: message type %d in Established", msg[18])
		}
	}
}

// writer sends our announcements and End-of-RIB, then KEEPALIVEs every
// hold/3 and whatever Advertise or Incremental adds.
func (cp *countCPE) writer(conn net.Conn, hold time.Duration, done <-chan struct{}) error {
	sent := 0
	send := func(b []byte) error {
		conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		_, err := conn.Write(b)
		if err != nil {
			conn.Close() // ends the reader too
		}
		return err
	}
	advertise := func() error {
		k := int(cp.advK.Load())
		if k <= sent {
			return nil
		}
		msgs, err := announcements(cp.i, sent, k)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if err := send(m); err != nil {
				return err
			}
		}
		sent = k
		return nil
	}
	if err := advertise(); err != nil {
		return err
	}
	if err := send(eorMsgs); err != nil {
		return err
	}
	var tick <-chan time.Time
	if hold > 0 {
		t := time.NewTicker(hold / 3)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-done:
			return nil
		case <-tick:
			if err := send(keepaliveMsg); err != nil {
				return err
			}
		case <-cp.poke:
			if err := advertise(); err != nil {
				return err
			}
		}
	}
}

// msgBuffered reports whether r's buffer holds the whole next message (or
// a header too bad to read on), so that readMsg will not touch the socket.
func msgBuffered(r *bufio.Reader) bool {
	if r.Buffered() < headerLen {
		return false
	}
	h, _ := r.Peek(headerLen)
	return r.Buffered() >= int(binary.BigEndian.Uint16(h[16:]))
}

// readMsg reads one framed message into buf (RFC 4271 §4.1: all-ones
// marker, length 19..4096).
func readMsg(r *bufio.Reader, buf []byte) ([]byte, error) {
	if _, err := io.ReadFull(r, buf[:headerLen]); err != nil {
		return nil, err
	}
	for _, b := range buf[:16] {
		if b != 0xff {
			return nil, errors.New("loadgen: bad marker")
		}
	}
	n := int(binary.BigEndian.Uint16(buf[16:]))
	if n < headerLen || n > len(buf) {
		return nil, fmt.Errorf("loadgen: bad message length %d", n)
	}
	if _, err := io.ReadFull(r, buf[headerLen:n]); err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// checkOpen checks the reflector's OPEN (iBGP, same AS) and returns the
// negotiated hold time.
func checkOpen(msg []byte, ours time.Duration) (hold time.Duration, err error) {
	if msg[18] == bgp.BGP_MSG_NOTIFICATION {
		return 0, errNotification
	}
	if msg[18] != bgp.BGP_MSG_OPEN {
		return 0, fmt.Errorf("loadgen: message type %d in OpenSent", msg[18])
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("loadgen: OPEN did not decode: %v", r)
		}
	}()
	m, err := bgp.ParseBGPMessage(msg)
	if err != nil {
		return 0, err
	}
	open, ok := m.Body.(*bgp.BGPOpen)
	if !ok {
		return 0, errors.New("loadgen: OPEN did not decode")
	}
	as := uint32(open.MyAS)
	for _, p := range open.OptParams {
		if pc, ok := p.(*bgp.OptionParameterCapability); ok {
			for _, cp := range pc.Capability {
				if c, ok := cp.(*bgp.CapFourOctetASNumber); ok {
					as = c.CapValue
				}
			}
		}
	}
	if as != scenario.ASN {
		return 0, fmt.Errorf("loadgen: reflector AS %d, want %d", as, scenario.ASN)
	}
	theirs := time.Duration(open.HoldTime) * time.Second
	return min(ours, theirs), nil
}

// update counts one received UPDATE.
func (cp *countCPE) update(body []byte) {
	cp.updatesIn.Add(1)
	cp.mu.Lock()
	info, err := WalkUpdate(body, cp)
	cp.mu.Unlock()
	if err != nil {
		cp.malformed.Add(1)
		return
	}
	if info.EndOfRIB {
		cp.eor.Add(1)
	}
	if info.OtherFamily {
		cp.otherFamily.Add(1)
	}
	if info.Announced > 0 && !info.TunnelEncap {
		cp.noEncap.Add(1)
	}
	c := cp.c
	if !cp.done.Load() && int(cp.routes.Load()) >= c.target && cp.done.CompareAndSwap(false, true) {
		c.cpeConverged()
	}
}

// Prefix sets or clears the prefix's bit (PrefixVisitor).
func (cp *countCPE) Prefix(ipv6 bool, nbits int, addr []byte, withdraw bool) {
	c := cp.c
	origin, j, ok := locate(ipv6, nbits, addr)
	if !ok || origin >= c.cfg.N || j >= c.stride {
		cp.foreign.Add(1)
		return
	}
	idx := origin*c.stride + j
	w, m := idx/64, uint64(1)<<(idx%64)
	switch {
	case withdraw && cp.bitset[w]&m != 0:
		cp.bitset[w] &^= m
		cp.routes.Add(-1)
	case !withdraw && cp.bitset[w]&m == 0:
		cp.bitset[w] |= m
		cp.routes.Add(1)
		if origin == 0 && j == c.cfg.K && c.incArmed.Load() && cp.inc.CompareAndSwap(false, true) {
			c.cpeGotIncremental()
		}
	}
}

// locate maps a prefix of the scenario's address plan back to (CPE, j):
// IPv4 10.n.n.n0/28 and IPv6 fd00:nnnn:nnnn::/64 with n = 16·CPE + j,
// even j IPv4, odd j IPv6 (scenario.Prefix).
func locate(ipv6 bool, nbits int, addr []byte) (cpe, j int, ok bool) {
	var n uint32
	if ipv6 {
		if nbits != 64 || len(addr) != 8 || addr[0] != 0xfd || addr[1] != 0 || addr[6] != 0 || addr[7] != 0 {
			return 0, 0, false
		}
		n = binary.BigEndian.Uint32(addr[2:6])
	} else {
		if nbits != 28 || len(addr) != 4 || addr[0] != 10 || addr[3]&0x0f != 0 {
			return 0, 0, false
		}
		n = (uint32(addr[1])<<16 | uint32(addr[2])<<8 | uint32(addr[3])) >> 4
	}
	j = int(n % 16)
	if (j%2 == 1) != ipv6 {
		return 0, 0, false
	}
	return int(n / 16), j, true
}

// countedRoutes recounts the bitset (for tests; the reader keeps routes).
func (cp *countCPE) countedRoutes() int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	n := 0
	for _, w := range cp.bitset {
		n += bits.OnesCount64(w)
	}
	return n
}

// setAdvertised makes the CPE announce its first k prefixes.
func (cp *countCPE) setAdvertised(k int) {
	cp.advK.Store(int32(k))
	select {
	case cp.poke <- struct{}{}:
	default:
	}
}
