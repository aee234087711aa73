package ike

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/ike/wire"
)

// packet is one received datagram (non-ESP marker removed).
type packet struct {
	data     []byte
	src, dst netip.AddrPort
	natt     bool // arrived on the NAT-T port
}

// inMsg is a decoded, authenticated message handed to a task or responder.
type inMsg struct {
	hdr      wire.Header
	msg      *wire.Message
	payloads []wire.Payload // inner payloads (IKE_SA_INIT: the message's)
	pkt      *packet
	req      [][]byte // for responses: the request as sent
}

// task is one exchange this side initiates (strongSwan's task_t). build
// returns the request's payloads (errSkip when there is nothing left to do);
// process handles the response and may return errResend to send a new
// request with the same message ID (IKE_SA_INIT after COOKIE or
// INVALID_KE_PAYLOAD); abort is called when the exchange cannot complete.
type task interface {
	exchange() wire.ExchangeType
	build(sa *ikeSA) ([]wire.Payload, error)
	process(sa *ikeSA, in *inMsg) error
	abort(sa *ikeSA, err error)
}

var (
	errSkip   = errors.New("ike: exchange not needed any more")
	errResend = errors.New("ike: resend request")
)

// outstanding is the request this side waits a response for (window 1).
type outstanding struct {
	t     task
	msgID uint32
	pkts  [][]byte
	tries int
	next  time.Time
}

// respCache is the last response sent, for retransmitted requests.
type respCache struct {
	valid bool
	msgID uint32
	hash  [sha256.Size]byte
	pkts  [][]byte
	src   netip.AddrPort
	dst   netip.AddrPort
	natt  bool
}

// initData is what IKE_SA_INIT leaves for IKE_AUTH; dropped once
// authenticated.
type initData struct {
	dh      *suite.DH
	ni, nr  []byte
	reqRaw  []byte // IKE_SA_INIT request as sent/received (RealMessage1)
	respRaw []byte // IKE_SA_INIT response (RealMessage2)
	cookie  []byte
	tries   int // COOKIE / INVALID_KE_PAYLOAD retries
}

func (d *initData) wipe() {
	if d == nil {
		return
	}
	if d.dh != nil {
		d.dh.Wipe()
	}
}

// ikeSA is one IKE SA: SPIs, keys, message ID windows. Several can belong
// to one handle while one replaces another. Executor only.
type ikeSA struct {
	h          *SA
	log        *slog.Logger
	initiator  bool // this side initiated this IKE SA (I flag)
	spiI, spiR uint64
	state      State
	suite      suite.Suite
	keys       *suite.IKEKeys
	out, in    *suite.SKCipher
	init       *initData

	nextReqID uint32 // ID of our next request
	expReqID  uint32 // ID of the peer's next request
	active    *outstanding
	pending   []task
	cache     respCache
	reqFrag   *wire.Reassembly
	respFrag  *wire.Reassembly

	deadline time.Time // CONNECTING: half-open timeout; REKEYED: forget it
	rekeyAt  time.Time
	retryAt  time.Time // do not start pending tasks before

	// halfOpen is the responder's key in Manager.halfOpen while in
	// IKE_SA_INIT.
	halfOpen *halfOpenKey

	// rekey is this side's IKE rekey in flight; peerRekey the IKE SA the
	// peer's colliding rekey created (RFC 7296 §2.8.2).
	rekey     *ikeRekeyTask
	peerRekey *collision
}

func (sa *ikeSA) ourSPI() uint64 {
	if sa.initiator {
		return sa.spiI
	}
	return sa.spiR
}

func (sa *ikeSA) setState(s State, reason string) {
	if sa.state == s {
		return
	}
	sa.state = s
	sa.log.Debug("IKE SA state", "state", s, "reason", reason)
}

// destroy unregisters the SA and wipes its keys.
func (sa *ikeSA) destroy() {
	if sa.state == StateDead {
		return
	}
	if sa.state == StateConnecting && !sa.initiator {
		sa.h.m.stats.halfOpen.Add(-1)
	}
	sa.state = StateDead
	sa.h.m.unregister(sa)
	if sa.active != nil {
		sa.active.t.abort(sa, ErrClosed)
		sa.active = nil
	}
	for _, t := range sa.pending {
		t.abort(sa, ErrClosed)
	}
	sa.pending = nil
	sa.wipeKeys()
	sa.init.wipe()
	sa.init = nil
	if sa.reqFrag != nil {
		sa.reqFrag.Reset()
	}
	if sa.respFrag != nil {
		sa.respFrag.Reset()
	}
	sa.cache = respCache{}
}

func (sa *ikeSA) wipeKeys() {
	if sa.keys != nil {
		sa.keys.Wipe()
		sa.keys = nil
	}
	if sa.out != nil {
		sa.out.Wipe()
		sa.out = nil
	}
	if sa.in != nil {
		sa.in.Wipe()
		sa.in = nil
	}
}

// setKeys installs the keys of the SA and builds its SK ciphers. authPending says
// whether IKE_AUTH is still to come: then SK_pi and SK_pr are kept until
// establish, else only SK_d is (suite.IKEKeys.Trim).
func (sa *ikeSA) setKeys(k *suite.IKEKeys, authPending bool) error {
	out, in, err := k.SKCiphers(sa.initiator, sa.h.m.rand)
	if err != nil {
		k.Wipe()
		return err
	}
	if f := sa.h.m.cfg.KeyLog; f != nil {
		f(sa.spiI, sa.spiR, k)
	}
	if !authPending {
		k = k.Trim()
	}
	sa.keys, sa.out, sa.in = k, out, in
	return nil
}

func (sa *ikeSA) header(ex wire.ExchangeType, id uint32, response bool) wire.Header {
	h := wire.Header{SPIi: sa.spiI, SPIr: sa.spiR, Version: wire.Version, Exchange: ex, MessageID: id}
	if sa.initiator {
		h.Flags |= wire.FlagInitiator
	}
	if response {
		h.Flags |= wire.FlagResponse
	}
	return h
}

// encode frames payloads as one or more datagrams (SK, or SKF when
// fragmentation was negotiated and the message is too big).
func (sa *ikeSA) encode(h wire.Header, ps []wire.Payload) ([][]byte, error) {
	if h.Exchange == wire.IKESAInit {
		m := wire.Message{Header: h, Payloads: ps}
		b, err := m.Encode()
		if err != nil {
			return nil, err
		}
		return [][]byte{b}, nil
	}
	if sa.out == nil {
		return nil, ErrNotEstablished
	}
	// An SA exchanges a message now and then: keep only the keys between
	// messages (suite.SKCipher.Release), not the expanded cipher state.
	defer sa.out.Release()
	if sa.h.fragmentation {
		max := sa.h.m.cfg.FragmentSize
		if sa.h.natt {
			max -= 4
		}
		return wire.EncodeFragments(&h, ps, sa.out, max)
	}
	b, err := wire.EncodeEncrypted(&h, ps, sa.out)
	if err != nil {
		return nil, err
	}
	return [][]byte{b}, nil
}

// open authenticates and decrypts the SK or SKF payload of m. For SKF it
// returns complete=false until every fragment is in.
func (sa *ikeSA) open(m *wire.Message, frag **wire.Reassembly) (ps []wire.Payload, complete bool, err error) {
	defer sa.in.Release()
	if sk, prefix := m.Encrypted(); sk != nil {
		plain, err := sa.in.OpenInPlace(m.Raw, len(prefix))
		if err != nil {
			return nil, false, err
		}
		ps, err := wire.DecodePayloads(sk.Inner, plain)
		return ps, true, err
	}
	f, prefix := m.Fragment()
	if f == nil || !sa.h.fragmentation {
		return nil, false, suite.ErrIntegrity
	}
	plain, err := sa.in.OpenInPlace(m.Raw, len(prefix))
	if err != nil {
		return nil, false, err
	}
	if *frag == nil {
		*frag = new(wire.Reassembly)
	}
	done, err := (*frag).Add(m.MessageID, f, plain)
	if err != nil || !done {
		return nil, false, err
	}
	ps, err = (*frag).Payloads()
	(*frag).Reset()
	return ps, true, err
}

// decodeOuter decodes a datagram and checks its top-level payloads against
// the exchange rules; a failure is counted as malformed.
func (m *Manager) decodeOuter(b []byte) (*wire.Message, error) {
	msg, err := wire.Decode(b)
	if err == nil {
		err = wire.CheckOuter(msg)
	}
	if err != nil {
		m.stats.malformed.Add(1)
		return nil, err
	}
	return msg, nil
}

// openChecked opens the SK or SKF payload of msg and checks the inner
// payloads against the rules of the exchange. ok is false when the
// datagram is done with: it failed the integrity check (counted) or is a
// fragment of a message not complete yet. err reports an authenticated
// message that breaks the rules.
func (sa *ikeSA) openChecked(msg *wire.Message, hdr wire.Header, frag **wire.Reassembly, response bool) (ps []wire.Payload, ok bool, err error) {
	ps, complete, err := sa.open(msg, frag)
	if errors.Is(err, suite.ErrIntegrity) {
		sa.h.m.stats.integrity.Add(1)
		return nil, false, nil
	}
	if err == nil && !complete {
		return nil, false, nil
	}
	if err == nil {
		err = wire.CheckInner(hdr.Exchange, response, ps)
	}
	return ps, true, err
}

// enqueue adds an exchange to run after the ones already queued.
func (sa *ikeSA) enqueue(t task) {
	sa.pending = append(sa.pending, t)
	sa.startNext()
}

// enqueueFirst adds an exchange to run next.
func (sa *ikeSA) enqueueFirst(t task) {
	sa.pending = append([]task{t}, sa.pending...)
	sa.startNext()
}

// startNext sends the next pending request if none is outstanding.
func (sa *ikeSA) startNext() {
	now := sa.h.m.clock.Now()
	for sa.active == nil && len(sa.pending) > 0 && sa.state != StateDead {
		if now.Before(sa.retryAt) {
			return // the timer comes back
		}
		t := sa.pending[0]
		sa.pending = sa.pending[1:]
		ps, err := t.build(sa)
		if err != nil {
			if errors.Is(err, errSkip) {
				err = nil
			}
			t.abort(sa, err)
			continue
		}
		sa.sendRequest(t, ps)
	}
}

// sendRequest encodes and sends a request with the next message ID.
func (sa *ikeSA) sendRequest(t task, ps []wire.Payload) {
	id := sa.nextReqID
	pkts, err := sa.encode(sa.header(t.exchange(), id, false), ps)
	if err != nil {
		sa.log.Error("cannot encode request", "exchange", t.exchange(), "err", err)
		t.abort(sa, err)
		return
	}
	m := sa.h.m
	sa.active = &outstanding{t: t, msgID: id, pkts: pkts, next: m.clock.Now().Add(m.cfg.RetransmitTimeout)}
	sa.debugMsg("sending request", t.exchange(), id, ps)
	sa.h.transmit(pkts)
}

// retransmit resends the outstanding request or gives up.
func (sa *ikeSA) retransmit(now time.Time) {
	a := sa.active
	m := sa.h.m
	if a.tries >= m.cfg.RetransmitTries {
		sa.log.Info("giving up after retransmissions", "exchange", a.t.exchange(), "msgid", a.msgID, "reason", "timeout")
		sa.active = nil
		a.t.abort(sa, ErrTimeout)
		if sa.h.cur == sa || sa.state == StateConnecting {
			sa.h.die(ErrTimeout)
		} else {
			sa.h.dropOther(sa)
		}
		return
	}
	a.tries++
	d := float64(m.cfg.RetransmitTimeout)
	for i := 0; i < a.tries; i++ {
		d *= m.cfg.RetransmitBase
	}
	a.next = now.Add(time.Duration(d))
	m.stats.retransmits.Add(1)
	sa.log.Debug("retransmitting", "exchange", a.t.exchange(), "msgid", a.msgID, "reason", "timeout")
	sa.h.transmit(a.pkts)
}

// handlePacket processes a datagram for this IKE SA.
func (sa *ikeSA) handlePacket(p *packet, hdr wire.Header) {
	if sa.state == StateDead {
		return
	}
	// The I flag names the original initiator of this IKE SA; the peer's
	// messages carry it exactly when we are not the initiator.
	if hdr.IsInitiator() == sa.initiator {
		sa.h.m.stats.unexpected.Add(1)
		return
	}
	if hdr.IsResponse() {
		sa.handleResponse(p, hdr)
	} else {
		sa.handleRequest(p, hdr)
	}
}

func (sa *ikeSA) handleResponse(p *packet, hdr wire.Header) {
	m := sa.h.m
	a := sa.active
	if a == nil || hdr.MessageID != a.msgID || hdr.Exchange != a.t.exchange() {
		m.stats.unexpected.Add(1)
		return
	}
	msg, err := m.decodeOuter(p.data)
	if err != nil {
		return
	}
	in := &inMsg{hdr: hdr, msg: msg, pkt: p, req: a.pkts}
	if hdr.Exchange == wire.IKESAInit {
		in.payloads = msg.Payloads
	} else {
		ps, ok, err := sa.openChecked(msg, hdr, &sa.respFrag, true)
		if !ok {
			return
		}
		if err != nil {
			// Authenticated but broken: the exchange failed.
			m.stats.malformed.Add(1)
			sa.log.Info("invalid response", "exchange", hdr.Exchange, "msgid", hdr.MessageID, "err", err)
			sa.active = nil
			sa.nextReqID++
			a.t.abort(sa, err)
			sa.startNext()
			return
		}
		in.payloads = ps
		sa.h.lastRecv = m.clock.Now()
		sa.h.notePath(p, false)
	}
	sa.debugMsg("received response", hdr.Exchange, hdr.MessageID, in.payloads)
	sa.active = nil
	sa.nextReqID++
	err = a.t.process(sa, in)
	if errors.Is(err, errResend) {
		sa.nextReqID--
		ps, err := a.t.build(sa)
		if err != nil {
			a.t.abort(sa, err)
			return
		}
		sa.sendRequest(a.t, ps)
		return
	}
	if err != nil {
		a.t.abort(sa, err)
	}
	if sa.state != StateDead {
		sa.startNext()
	}
}

func (sa *ikeSA) handleRequest(p *packet, hdr wire.Header) {
	m := sa.h.m
	if hdr.Exchange == wire.IKESAInit {
		// A retransmitted IKE_SA_INIT request of a half-open SA.
		hash := sha256.Sum256(p.data)
		if sa.cache.valid && sa.cache.msgID == 0 && hash == sa.cache.hash && sa.state == StateConnecting {
			if m.limiter.allow() {
				m.stats.responsesResent.Add(1)
				sa.h.sendTo(sa.cache.pkts, p.dst, p.src, p.natt)
			} else {
				m.stats.rateLimited.Add(1)
			}
			return
		}
		m.stats.unexpected.Add(1)
		return
	}
	if sa.in == nil {
		m.stats.unexpected.Add(1)
		return
	}
	switch {
	case hdr.MessageID == sa.expReqID:
	case sa.cache.valid && hdr.MessageID == sa.cache.msgID:
		switch again, forged := sa.isRetransmit(p, hdr); {
		case forged:
			m.stats.integrity.Add(1)
		case !again:
			m.stats.messageID.Add(1)
		case p.src != sa.cache.dst && !m.limiter.allow():
			// A copy of the request from elsewhere: someone may replay
			// it with a forged source to aim our (larger, maybe
			// fragmented) response at a victim, so such resends share
			// the unauthenticated replies' rate limit.
			m.stats.rateLimited.Add(1)
		default:
			m.stats.responsesResent.Add(1)
			sa.h.sendTo(sa.cache.pkts, p.dst, p.src, p.natt)
		}
		return
	default:
		m.stats.messageID.Add(1)
		return
	}
	hash := sha256.Sum256(p.data)
	msg, err := m.decodeOuter(p.data)
	if err != nil {
		return
	}
	ps, ok, err := sa.openChecked(msg, hdr, &sa.reqFrag, false)
	if !ok {
		return
	}
	in := &inMsg{hdr: hdr, msg: msg, payloads: ps, pkt: p}
	sa.h.lastRecv = m.clock.Now()
	sa.expReqID++
	if err != nil {
		// Authenticated, so we may say what is wrong (RFC 7296 §2.21.2/3).
		m.stats.malformed.Add(1)
		ne, ok := wire.AsNotifyError(err)
		if !ok {
			ne = wire.Errorf(wire.NotifyInvalidSyntax, "%v", err)
		}
		sa.log.Info("invalid request", "exchange", hdr.Exchange, "msgid", hdr.MessageID, "reason", ne.Type)
		sa.respond(in, hash, []wire.Payload{ne.Notify()})
		if hdr.Exchange == wire.IKEAuth {
			sa.h.die(err)
		}
		return
	}
	if hdr.Exchange != wire.IKEAuth {
		sa.h.notePath(p, false)
	}
	sa.debugMsg("received request", hdr.Exchange, hdr.MessageID, ps)
	var resp []wire.Payload
	var after func()
	switch hdr.Exchange {
	case wire.IKEAuth:
		resp, after = sa.respondAuth(in)
	case wire.CreateChildSA:
		resp, after = sa.respondCreateChild(in)
	case wire.Informational:
		resp, after = sa.respondInformational(in)
	}
	sa.respond(in, hash, resp)
	if after != nil {
		after()
	}
}

// isRetransmit reports whether a request with the last answered message ID
// is a retransmission: the same octets, or (RFC 7383 §2.6.1) the first
// fragment of a fragmented request, which must pass the integrity check
// (it cannot be compared with what was received: the request was
// reassembled), so that no one without the keys can trigger a resend.
// forged reports a first fragment that failed the check.
func (sa *ikeSA) isRetransmit(p *packet, hdr wire.Header) (again, forged bool) {
	if hdr.NextPayload != wire.PayloadSKF {
		return sha256.Sum256(p.data) == sa.cache.hash, false
	}
	if len(p.data) < wire.HeaderLen+8 || p.data[wire.HeaderLen+4] != 0 || p.data[wire.HeaderLen+5] != 1 {
		return false, false
	}
	msg, err := wire.Decode(p.data)
	if err != nil {
		return false, false
	}
	f, prefix := msg.Fragment()
	if f == nil {
		return false, false
	}
	defer sa.in.Release()
	// The datagram is ours: decrypting it in place costs no copy.
	if _, err := sa.in.OpenInPlace(msg.Raw, len(prefix)); err != nil {
		return false, true
	}
	return true, false
}

// respond sends (and caches) the response to a request.
func (sa *ikeSA) respond(in *inMsg, hash [sha256.Size]byte, ps []wire.Payload) {
	pkts, err := sa.encode(sa.header(in.hdr.Exchange, in.hdr.MessageID, true), ps)
	if err != nil {
		sa.log.Error("cannot encode response", "exchange", in.hdr.Exchange, "err", err)
		return
	}
	p := in.pkt
	sa.cache = respCache{valid: true, msgID: in.hdr.MessageID, hash: hash, pkts: pkts, src: p.dst, dst: p.src, natt: p.natt}
	sa.debugMsg("sending response", in.hdr.Exchange, in.hdr.MessageID, ps)
	sa.h.sendTo(pkts, p.dst, p.src, p.natt)
}

// tick runs the SA's timers.
func (sa *ikeSA) tick(now time.Time) {
	if sa.active != nil && !now.Before(sa.active.next) {
		sa.retransmit(now)
		if sa.state == StateDead {
			return
		}
	}
	if !sa.deadline.IsZero() && !now.Before(sa.deadline) {
		switch sa.state {
		case StateConnecting:
			sa.log.Info("IKE SA not established in time", "reason", "half-open timeout")
			sa.h.die(ErrTimeout)
		default:
			sa.log.Debug("forgetting replaced IKE SA", "reason", "no DELETE received")
			sa.h.dropOther(sa)
		}
		return
	}
	if len(sa.pending) > 0 && sa.active == nil && !now.Before(sa.retryAt) {
		sa.startNext()
	}
}

// nextEvent is the earliest time tick has something to do.
func (sa *ikeSA) nextEvent() time.Time {
	var t time.Time
	if sa.active != nil {
		t = earliest(t, sa.active.next)
	}
	t = earliest(t, sa.deadline)
	if len(sa.pending) > 0 && sa.active == nil {
		t = earliest(t, sa.retryAt)
	}
	return t
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

func sha256Sum(b []byte) [sha256.Size]byte { return sha256.Sum256(b) }

// debugMsg logs one IKE message at debug level; the payload summary is
// only built when debug logging is on.
func (sa *ikeSA) debugMsg(what string, ex wire.ExchangeType, id uint32, ps []wire.Payload) {
	if sa.log.Enabled(context.Background(), slog.LevelDebug) {
		sa.log.Debug(what, "exchange", ex, "msgid", id, "payloads", wire.Summary(ps))
	}
}
