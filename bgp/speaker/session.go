package speaker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// notifyError is a protocol error that ends the session with a
// NOTIFICATION carrying Code, Subcode and Data (RFC 4271 §6).
type notifyError struct {
	code, sub uint8
	data      []byte
	msg       string
	hard      bool // never graceful (RFC 8538 Hard Reset)
}

func (e *notifyError) Error() string {
	return fmt.Sprintf("speaker: %s (NOTIFICATION %d/%d)", e.msg, e.code, e.sub)
}

func notify(code, sub uint8, data []byte, format string, args ...any) *notifyError {
	return &notifyError{code: code, sub: sub, data: data, msg: fmt.Sprintf(format, args...)}
}

// RFC 4271 §4.5 error codes used here, plus RFC 4486, RFC 6608 and RFC 8538 subcodes.
const (
	errHeader      = bgp.BGP_ERROR_MESSAGE_HEADER_ERROR
	errOpen        = bgp.BGP_ERROR_OPEN_MESSAGE_ERROR
	errUpdate      = bgp.BGP_ERROR_UPDATE_MESSAGE_ERROR
	errHold        = bgp.BGP_ERROR_HOLD_TIMER_EXPIRED
	errFSM         = bgp.BGP_ERROR_FSM_ERROR
	errCease       = bgp.BGP_ERROR_CEASE
	errRouteRefr   = bgp.BGP_ERROR_ROUTE_REFRESH_MESSAGE_ERROR
	subFSMOpenSent = 1 // RFC 6608
	subFSMOpenConf = 2
	subFSMEstab    = 3
	subMaxPrefix   = 1 // RFC 4486
	subAdminShut   = 2
	subHardReset   = 9 // RFC 8538
)

// peerGR is what the hub's Graceful Restart capability told us.
type peerGR struct {
	restart    time.Duration
	forwarding map[bgp.RouteFamily]bool // families listed in the capability, with their F bit
	nBit       bool
}

// endReason describes how a session ended.
type endReason struct {
	err         error
	sent, recv  *bgp.BGPNotification
	hard        bool // we forced a non-graceful end
	local       bool // Run's context was cancelled
	established bool
	peerGR      *peerGR // nil if the hub did not offer GR
	nBit        bool    // both sides set the N bit
}

// graceful reports whether the routes of the session are kept as stale
// (RFC 4724 §4.2; with RFC 8538, NOTIFICATIONs other than Hard Reset too).
func (e endReason) graceful() bool {
	if e.local || e.hard || e.peerGR == nil {
		return false
	}
	n := e.sent
	if n == nil {
		n = e.recv
	}
	if n == nil {
		return true // the transport went away
	}
	if !e.nBit {
		return false
	}
	return !(n.ErrorCode == errCease && n.ErrorSubcode == subHardReset)
}

func (e endReason) reason() string {
	switch {
	case e.recv != nil:
		return fmt.Sprintf("NOTIFICATION received %d/%d", e.recv.ErrorCode, e.recv.ErrorSubcode)
	case e.err != nil:
		return e.err.Error()
	}
	return "closed"
}

// session is one transport connection to the hub. Only the session loop
// (runSession and what it calls) touches its fields; routineRead only
// frames messages.
type session struct {
	sp   *Speaker
	conn net.Conn
	log  *slog.Logger

	in   chan []byte // framed messages from routineRead
	rerr chan error  // routineRead's terminal error, cap 1
	done chan struct{}
	gone chan struct{} // closed when routineRead returns

	// Negotiated in OPEN.
	peerID      netip.Addr
	hold        time.Duration
	families    map[bgp.RouteFamily]bgp.BGPAddPathMode
	peerRefresh bool
	peerGR      *peerGR
	nBit        bool
	localAddr   netip.Addr

	// Advertised to the peer.
	adv        map[netip.Prefix]struct{}
	advEP      netip.AddrPort
	eorPending bool // our End-of-RIB markers are still to be sent

	establishedAt time.Time
}

func (s *Speaker) newSession(conn net.Conn) *session {
	ss := &session{
		sp:   s,
		conn: conn,
		log:  s.log,
		in:   make(chan []byte, 16),
		rerr: make(chan error, 1),
		done: make(chan struct{}),
		gone: make(chan struct{}),
		adv:  make(map[netip.Prefix]struct{}),
	}
	if a, ok := conn.LocalAddr().(*net.TCPAddr); ok {
		ss.localAddr = a.AddrPort().Addr().Unmap()
	}
	if a, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		ss.log = s.log.With("peer", a.AddrPort().String())
	}
	return ss
}

// runSession runs one connection through OpenSent, OpenConfirm and
// Established and returns why it ended. It closes conn.
func (s *Speaker) runSession(ctx context.Context, conn net.Conn) (end endReason) {
	ss := s.newSession(conn)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ss.gone)
		ss.routineRead()
	}()
	defer func() {
		close(ss.done)
		if end.sent != nil {
			ss.lingerClose()
		}
		conn.Close()
		wg.Wait()
		end.peerGR, end.nBit = ss.peerGR, ss.nBit
	}()

	fail := func(err error) endReason {
		end.err = err
		var ne *notifyError
		if errors.As(err, &ne) {
			n := &bgp.BGPNotification{ErrorCode: ne.code, ErrorSubcode: ne.sub, Data: ne.data}
			if ne.hard && ss.nBit {
				// RFC 8538 §3: a Hard Reset carries the original subcode.
				n = &bgp.BGPNotification{ErrorCode: errCease, ErrorSubcode: subHardReset,
					Data: append([]byte{ne.code, ne.sub}, ne.data...)}
			}
			end.hard = ne.hard
			end.sent = n
			ss.write(bgp.NewBGPNotificationMessage(n.ErrorCode, n.ErrorSubcode, n.Data))
			s.stats.notifySent.Add(1)
		}
		var nr *notificationReceived
		if errors.As(err, &nr) {
			end.recv = nr.n
			s.stats.notifyRecv.Add(1)
		}
		if ctx.Err() != nil {
			end.local = true
		}
		return end
	}

	if err := ss.write(ss.openMessage()); err != nil {
		return fail(err)
	}
	s.setState(StateOpenSent, "")
	raw, err := ss.next(ctx, s.cfg.OpenHoldTime)
	if err != nil {
		return fail(err)
	}
	if err := ss.handleOpen(raw); err != nil {
		return fail(err)
	}
	if err := ss.write(bgp.NewBGPKeepAliveMessage()); err != nil {
		return fail(err)
	}
	s.setState(StateOpenConfirm, "")
	wait := ss.hold
	if wait == 0 {
		wait = s.cfg.OpenHoldTime
	}
	raw, err = ss.next(ctx, wait)
	if err != nil {
		return fail(err)
	}
	switch raw[18] {
	case bgp.BGP_MSG_KEEPALIVE:
	case bgp.BGP_MSG_NOTIFICATION:
		return fail(ss.notification(raw))
	default:
		return fail(notify(errFSM, subFSMOpenConf, []byte{raw[18]}, "message type %d in OpenConfirm", raw[18]))
	}
	end.established = true
	return fail(ss.established(ctx))
}

// lingerTime bounds how long a session that sent a NOTIFICATION waits for
// the peer to close.
const lingerTime = time.Second

// lingerClose half-closes the connection after a NOTIFICATION and reads
// until the peer closes (or lingerTime), so that unread input does not make
// the kernel reset the connection and discard the NOTIFICATION in flight.
func (ss *session) lingerClose() {
	tc, ok := ss.conn.(interface{ CloseWrite() error })
	if !ok {
		return
	}
	tc.CloseWrite()
	ss.conn.SetReadDeadline(time.Now().Add(lingerTime))
	// routineRead may still be reading; it ends at EOF, at the deadline, or
	// at its next message (done is closed). Whatever follows is discarded.
	t := time.NewTimer(lingerTime)
	defer t.Stop()
	for {
		select {
		case <-ss.in:
			continue
		case <-ss.gone:
			io.Copy(io.Discard, ss.conn)
		case <-t.C:
		}
		return
	}
}

// notificationReceived ends a session because the peer sent a NOTIFICATION.
type notificationReceived struct{ n *bgp.BGPNotification }

func (e *notificationReceived) Error() string {
	return fmt.Sprintf("speaker: NOTIFICATION received %d/%d", e.n.ErrorCode, e.n.ErrorSubcode)
}

func (ss *session) notification(raw []byte) error {
	n := &bgp.BGPNotification{}
	if err := n.DecodeFromBytes(raw[headerLen:]); err != nil {
		return fmt.Errorf("speaker: undecodable NOTIFICATION: %w", err)
	}
	n.Data = append([]byte(nil), n.Data...)
	ss.log.Info("hub sent NOTIFICATION", "reason", fmt.Sprintf("%d/%d", n.ErrorCode, n.ErrorSubcode))
	return &notificationReceived{n}
}

// next waits up to d for the next message.
func (ss *session) next(ctx context.Context, d time.Duration) ([]byte, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case raw := <-ss.in:
		return raw, nil
	case err := <-ss.rerr:
		return nil, err
	case <-t.C:
		return nil, notify(errHold, 0, nil, "hold timer expired")
	case <-ctx.Done():
		return nil, notify(errCease, subAdminShut, nil, "shutting down")
	}
}

// routineRead frames messages off the connection (RFC 4271 §4.1, §6.1)
// and hands them to the session loop. It never parses beyond the header.
func (ss *session) routineRead() {
	ss.log.Debug("routineRead started")
	defer ss.log.Debug("routineRead stopped")
	var hdr [headerLen]byte
	for {
		if _, err := io.ReadFull(ss.conn, hdr[:]); err != nil {
			ss.readFailed(err)
			return
		}
		msg, err := checkHeader(hdr[:])
		if err == nil {
			_, err = io.ReadFull(ss.conn, msg[headerLen:])
		}
		if err != nil {
			ss.readFailed(err)
			return
		}
		select {
		case ss.in <- msg:
		case <-ss.done:
			return
		}
	}
}

func (ss *session) readFailed(err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("speaker: connection closed by peer: %w", err)
	}
	select {
	case ss.rerr <- err:
	default:
	}
}

// checkHeader validates a message header and returns a buffer of the whole
// message length with the header copied in.
func checkHeader(hdr []byte) ([]byte, error) {
	for _, b := range hdr[:16] {
		if b != 0xff {
			return nil, notify(errHeader, bgp.BGP_ERROR_SUB_CONNECTION_NOT_SYNCHRONIZED, nil, "marker is not all ones")
		}
	}
	n := int(binary.BigEndian.Uint16(hdr[16:18]))
	typ := hdr[18]
	badLen := notify(errHeader, bgp.BGP_ERROR_SUB_BAD_MESSAGE_LENGTH, append([]byte(nil), hdr[16:18]...), "bad message length %d for type %d", n, typ)
	if n < headerLen || n > maxMessageLen {
		return nil, badLen
	}
	switch typ {
	case bgp.BGP_MSG_OPEN:
		if n < 29 {
			return nil, badLen
		}
	case bgp.BGP_MSG_UPDATE:
		if n < 23 {
			return nil, badLen
		}
	case bgp.BGP_MSG_NOTIFICATION:
		if n < 21 {
			return nil, badLen
		}
	case bgp.BGP_MSG_KEEPALIVE:
		if n != headerLen {
			return nil, badLen
		}
	case bgp.BGP_MSG_ROUTE_REFRESH:
		if n != 23 {
			return nil, badLen
		}
	default:
		return nil, notify(errHeader, bgp.BGP_ERROR_SUB_BAD_MESSAGE_TYPE, []byte{typ}, "unknown message type %d", typ)
	}
	msg := make([]byte, n)
	copy(msg, hdr)
	return msg, nil
}

func (ss *session) write(m *bgp.BGPMessage) error {
	b, err := m.Serialize()
	if err != nil {
		return fmt.Errorf("speaker: serialize: %w", err)
	}
	ss.conn.SetWriteDeadline(time.Now().Add(ss.sp.cfg.WriteTimeout))
	if _, err := ss.conn.Write(b); err != nil {
		return fmt.Errorf("speaker: write: %w", err)
	}
	if m.Header.Type == bgp.BGP_MSG_UPDATE {
		ss.sp.stats.updatesOut.Add(1)
	}
	return nil
}

// ourFamilies are the address families we offer.
var ourFamilies = []bgp.RouteFamily{bgp.RF_IPv4_UC, bgp.RF_IPv6_UC}

func (ss *session) openMessage() *bgp.BGPMessage {
	cfg := &ss.sp.cfg
	caps := []bgp.ParameterCapabilityInterface{
		bgp.NewCapMultiProtocol(bgp.RF_IPv4_UC),
		bgp.NewCapMultiProtocol(bgp.RF_IPv6_UC),
		bgp.NewCapRouteRefresh(),
		bgp.NewCapFourOctetASNumber(cfg.ASN),
	}
	var tuples []*bgp.CapGracefulRestartTuple
	for _, f := range ourFamilies {
		tuples = append(tuples, bgp.NewCapGracefulRestartTuple(f, !cfg.NoForwardingPreserved))
	}
	caps = append(caps, bgp.NewCapGracefulRestart(false, true, uint16(cfg.RestartTime/time.Second), tuples))
	as := asTrans
	if cfg.ASN <= 0xffff {
		as = uint16(cfg.ASN)
	}
	return bgp.NewBGPOpenMessage(as, uint16(cfg.HoldTime/time.Second), cfg.RouterID.String(),
		[]bgp.OptionParameterInterface{bgp.NewOptionParameterCapability(caps)})
}

// handleOpen checks the peer's OPEN (RFC 4271 §6.2) and negotiates hold
// time, families and capabilities.
func (ss *session) handleOpen(raw []byte) error {
	switch raw[18] {
	case bgp.BGP_MSG_OPEN:
	case bgp.BGP_MSG_NOTIFICATION:
		return ss.notification(raw)
	default:
		return notify(errFSM, subFSMOpenSent, []byte{raw[18]}, "message type %d in OpenSent", raw[18])
	}
	m, err := safeParse(raw)
	if err != nil {
		return asNotify(err, errOpen, 0)
	}
	open, ok := m.Body.(*bgp.BGPOpen)
	if !ok {
		return notify(errOpen, 0, nil, "OPEN did not decode")
	}
	cfg := &ss.sp.cfg
	if _, err := bgp.ValidateOpenMsg(open, cfg.ASN, cfg.ASN, cfg.RouterID.AsSlice()); err != nil {
		return asNotify(err, errOpen, 0)
	}
	ss.peerID, _ = netip.AddrFromSlice(open.ID.To4())
	ours := cfg.HoldTime
	theirs := time.Duration(open.HoldTime) * time.Second
	ss.hold = min(ours, theirs)

	offered := map[bgp.RouteFamily]bool{}
	anyMP := false
	for _, p := range open.OptParams {
		pc, ok := p.(*bgp.OptionParameterCapability)
		if !ok {
			return notify(errOpen, bgp.BGP_ERROR_SUB_UNSUPPORTED_OPTIONAL_PARAMETER, nil, "unsupported optional parameter")
		}
		for _, c := range pc.Capability {
			switch c := c.(type) {
			case *bgp.CapMultiProtocol:
				anyMP = true
				offered[c.CapValue] = true
			case *bgp.CapRouteRefresh:
				ss.peerRefresh = true
			case *bgp.CapGracefulRestart:
				gr := &peerGR{
					restart:    time.Duration(c.Time) * time.Second,
					forwarding: map[bgp.RouteFamily]bool{},
					nBit:       c.Flags&0x04 != 0,
				}
				for _, t := range c.Tuples {
					gr.forwarding[bgp.AfiSafiToRouteFamily(t.AFI, t.SAFI)] = t.Flags&0x80 != 0
				}
				ss.peerGR = gr
				ss.nBit = gr.nBit
			}
		}
	}
	if !anyMP {
		offered[bgp.RF_IPv4_UC] = true // RFC 4760 §8: no capability means IPv4 unicast
	}
	ss.families = map[bgp.RouteFamily]bgp.BGPAddPathMode{}
	for _, f := range ourFamilies {
		if offered[f] {
			ss.families[f] = bgp.BGP_ADD_PATH_NONE
		}
	}
	if len(ss.families) == 0 {
		return notify(errOpen, bgp.BGP_ERROR_SUB_UNSUPPORTED_CAPABILITY, nil, "no common address family")
	}
	return nil
}

// asNotify turns a codec error into a notifyError; codes 0 get the
// defaults given.
func asNotify(err error, code, sub uint8) error {
	var me *bgp.MessageError
	if errors.As(err, &me) {
		if me.TypeCode != 0 {
			code, sub = me.TypeCode, me.SubTypeCode
		}
		return &notifyError{code: code, sub: sub, data: me.Data, msg: me.Message}
	}
	var ne *notifyError
	if errors.As(err, &ne) {
		return ne
	}
	return &notifyError{code: code, sub: sub, msg: err.Error()}
}

// errCodecPanic reports a panic inside the GoBGP codec, turned into an error.
var errCodecPanic = errors.New("speaker: message decoder failed")

// safeParse decodes a framed message with GoBGP's codec. A panic in the
// codec is a malformed message, not a crash.
func safeParse(raw []byte) (m *bgp.BGPMessage, err error) {
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("%w: %v", errCodecPanic, r)
		}
	}()
	return bgp.ParseBGPMessage(raw)
}

// established runs the Established state until the session ends.
func (ss *session) established(ctx context.Context) error {
	sp := ss.sp
	ss.establishedAt = time.Now()
	sp.stats.established.Add(1)
	sp.setState(StateEstablished, "")
	ss.log.Info("bgp session established", "id", ss.peerID.String(), "hold_time", ss.hold.String())
	ss.adoptRIB()

	if err := ss.syncAdvertised(true); err != nil {
		return err
	}

	var keepalive <-chan time.Time
	var holdC <-chan time.Time
	var hold *time.Timer
	if ss.hold > 0 {
		t := time.NewTicker(ss.hold / 3)
		defer t.Stop()
		keepalive = t.C
		hold = time.NewTimer(ss.hold)
		defer hold.Stop()
		holdC = hold.C
	}
	for {
		select {
		case <-ctx.Done():
			return notify(errCease, subAdminShut, nil, "shutting down")
		case err := <-ss.rerr:
			return err
		case raw := <-ss.in:
			if hold != nil {
				hold.Reset(ss.hold)
			}
			if err := ss.handle(raw); err != nil {
				return err
			}
		case <-keepalive:
			if err := ss.write(bgp.NewBGPKeepAliveMessage()); err != nil {
				return err
			}
		case <-holdC:
			return notify(errHold, 0, nil, "hold timer expired")
		case <-sp.wake:
			if err := ss.syncAdvertised(false); err != nil {
				return err
			}
		case <-sp.eor:
			if err := ss.sendEndOfRIB(); err != nil {
				return err
			}
		case <-sp.rr:
			if !ss.peerRefresh {
				continue
			}
			for f := range ss.families {
				afi, safi := bgp.RouteFamilyToAfiSafi(f)
				if err := ss.write(bgp.NewBGPRouteRefreshMessage(afi, 0, safi)); err != nil {
					return err
				}
			}
		}
	}
}

// adoptRIB reconciles what the speaker kept from an earlier session with
// the new peer (RFC 4724 §4.2).
func (ss *session) adoptRIB() {
	sp := ss.sp
	sp.ribMu.Lock()
	defer sp.ribMu.Unlock()
	r := &sp.rib
	sp.stopTimerLocked(&r.restartTimer)
	if r.peer != ss.peerID {
		// A different hub: nothing it sends replaces the old routes.
		sp.stopTimersLocked()
		sp.flushAllLocked()
		r.peer = ss.peerID
		return
	}
	if r.stale == 0 {
		return
	}
	// Families whose F bit the restarted hub did not set lost their
	// forwarding state: their stale routes go now.
	if ss.peerGR == nil {
		sp.flushStaleLocked(nil)
	} else {
		var drop []bgp.RouteFamily
		for _, f := range ourFamilies {
			if !ss.peerGR.forwarding[f] {
				drop = append(drop, f)
			}
		}
		if len(drop) > 0 {
			sp.flushStaleLocked(drop)
		}
	}
	if r.stale == 0 {
		return
	}
	// Stale routes wait for End-of-RIB, but not forever.
	gen := r.gen
	r.staleTimer = sp.afterFunc(sp.cfg.StalePathTime, func() {
		sp.ribMu.Lock()
		defer sp.ribMu.Unlock()
		if sp.rib.gen != gen {
			return
		}
		sp.log.Info("no End-of-RIB from hub within the stale path time, withdrawing stale routes")
		sp.flushStaleLocked(nil)
	})
}

// handle processes one message in Established.
func (ss *session) handle(raw []byte) error {
	switch raw[18] {
	case bgp.BGP_MSG_KEEPALIVE:
		return nil
	case bgp.BGP_MSG_UPDATE:
		ss.sp.stats.updatesIn.Add(1)
		return ss.handleUpdate(raw)
	case bgp.BGP_MSG_NOTIFICATION:
		return ss.notification(raw)
	case bgp.BGP_MSG_ROUTE_REFRESH:
		afi := binary.BigEndian.Uint16(raw[19:21])
		safi := raw[22]
		f := bgp.AfiSafiToRouteFamily(afi, safi)
		if _, ok := ss.families[f]; !ok {
			return nil // RFC 2918 §4: ignore a family we did not negotiate
		}
		return ss.advertiseFamily(f)
	case bgp.BGP_MSG_OPEN:
		return notify(errFSM, subFSMEstab, []byte{raw[18]}, "OPEN in Established")
	}
	return notify(errHeader, bgp.BGP_ERROR_SUB_BAD_MESSAGE_TYPE, []byte{raw[18]}, "unknown message type")
}
