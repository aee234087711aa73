package ike

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/ike/wire"
	"github.com/mpsa-vpn/mpsa/transform"
)

// State is the state of an IKE SA.
//
//	        Initiate / IKE_SA_INIT request
//	                   │
//	                   ▼
//	            ┌─────────────┐  AUTHENTICATION_FAILED, timeout,
//	            │ Connecting  │──────────────────────────────────┐
//	            └─────────────┘                                  │
//	                   │ IKE_AUTH done                           │
//	                   ▼                                         │
//	            ┌─────────────┐  CREATE_CHILD_SA(rekey IKE)      │
//	   ┌───────▶│ Established │───────────────┐                  │
//	   │        └─────────────┘               ▼                  │
//	   │               │ Close, D(IKE)  ┌──────────┐             │
//	new IKE SA         ▼                │ Rekeyed  │ old SA,     │
//	(same handle) ┌──────────┐          └──────────┘ waits for   │
//	   │          │ Deleting │                │      its DELETE   │
//	   │          └──────────┘                │                   │
//	   │               │ response/timeout     │                   │
//	   │               ▼                      ▼                   │
//	   └─────────  ┌──────┐ ◀─────────────────┴───────────────────┘
//	               │ Dead │
//	               └──────┘
//
// Every transition is logged with a reason.
type State uint8

// States of an IKE SA.
const (
	StateConnecting State = iota + 1
	StateEstablished
	StateRekeyed
	StateDeleting
	StateDead
)

// LogValue implements slog.LogValuer: states log by name in every handler
// (docs/LOGGING.md's state field), JSON included.
func (s State) LogValue() slog.Value { return slog.StringValue(s.String()) }

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "CONNECTING"
	case StateEstablished:
		return "ESTABLISHED"
	case StateRekeyed:
		return "REKEYED"
	case StateDeleting:
		return "DELETING"
	case StateDead:
		return "DEAD"
	}
	return fmt.Sprintf("STATE(%d)", uint8(s))
}

// Errors an SA ends with or an API call returns.
var (
	// ErrTimeout: the peer did not answer a request after all retransmissions.
	ErrTimeout = errors.New("ike: peer did not answer")
	// ErrClosed: the manager or SA was closed locally.
	ErrClosed = errors.New("ike: closed")
	// ErrDeleted: the peer deleted the IKE SA.
	ErrDeleted = errors.New("ike: deleted by peer")
	// ErrAuthFailed: the peer's AUTH payload or identity was not accepted.
	ErrAuthFailed = errors.New("ike: peer authentication failed")
	// ErrReplaced: the peer reconnected with INITIAL_CONTACT.
	ErrReplaced = errors.New("ike: replaced by a new IKE SA of the same peer (INITIAL_CONTACT)")
	// ErrNoChild: no CHILD_SA with that SPI.
	ErrNoChild = errors.New("ike: no such CHILD_SA")
	// ErrNotEstablished: the operation needs an established IKE SA.
	ErrNotEstablished = errors.New("ike: IKE SA not established")
	// ErrBusy: an exchange of the same kind is already under way.
	ErrBusy = errors.New("ike: exchange already in progress")
)

// ProtocolError is an error notify the peer sent in a response.
type ProtocolError struct {
	Exchange wire.ExchangeType
	Type     wire.NotifyType
	Data     []byte
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("ike: peer answered %v with %v", e.Exchange, e.Type)
}

// ChildError reports that the IKE SA came up but its CHILD_SA did not.
type ChildError struct{ Err error }

func (e *ChildError) Error() string { return "ike: CHILD_SA not established: " + e.Err.Error() }
func (e *ChildError) Unwrap() error { return e.Err }

// maxQueue bounds the work queued for one SA (mostly received datagrams).
const maxQueue = 64

// SA is a handle on one IKE connection with a peer: the current IKE SA,
// IKE SAs that replaced or are being replaced by it, and their CHILD_SAs.
// The handle survives IKE rekeying. Its methods are safe for concurrent use.
//
// Internally one serial executor owns everything below the ruled line: work
// (received datagrams, timer ticks, API calls) is queued with post and run by
// at most one goroutine at a time, a worker of the manager's that takes the
// SA only while it has work, so an idle SA costs no goroutine.
type SA struct {
	m    *Manager
	name string
	log  *slog.Logger
	// origInitiator: this side initiated the first IKE SA (the MOBIKE
	// initiator role, RFC 4555 §3.1).
	origInitiator bool
	// seq orders handles by creation (set once by newHandle).
	seq  uint64
	done chan struct{}

	xmu     sync.Mutex // guards queue, running, dead
	queue   []func()
	running bool
	dead    bool

	infoMu sync.Mutex // guards info, pubChildren, err
	// info is the published snapshot without Children; pubChildren are
	// its CHILD_SAs, expanded into ChildSA values by Info.
	info        SAInfo
	pubChildren []childPub
	err         error

	// ---- owned by the executor ----
	cur    *ikeSA   // the IKE SA in use
	others []*ikeSA // rekeyed ones waiting for DELETE, redundant ones of a collision

	conn          *Connection // initiator's settings; nil on the responder
	local, remote netip.AddrPort
	natt          bool // IKE on the NAT-T port (marker), after floating
	natLocal      bool
	natRemote     bool
	localCred     *auth.Local
	localID       auth.ID
	peerID        auth.ID
	peer          *auth.Peer
	peerHashes    []auth.HashAlg
	mobike        bool // negotiated
	fragmentation bool // negotiated
	vips          []netip.Prefix
	vendorIDs     [][]byte
	authNotifies  []*wire.Notify
	children      []*child
	established   time.Time
	lastRecv      time.Time
	keepaliveAt   time.Time
	timer         func() bool // stops the pending timer
	timerAt       time.Time
	timerGen      uint64
	dying         bool
	reason        error  // why it died (die's argument)
	idKey         string // key in Manager.byID; written under Manager.mu
	gen           uint64
	pubKey        *pubKey
	waiters       []chan error
}

// post queues f on the executor. It returns false if the SA is dead.
// Timer ticks and API calls use post; received datagrams use postPacket.
func (h *SA) post(f func()) bool { return h.enqueueWork(f, false) }

// postPacket is post for received datagrams: it also fails when maxQueue
// datagrams wait already.
func (h *SA) postPacket(f func()) bool { return h.enqueueWork(f, true) }

func (h *SA) enqueueWork(f func(), bounded bool) bool {
	h.xmu.Lock()
	if h.dead {
		h.xmu.Unlock()
		return false
	}
	if bounded && len(h.queue) >= maxQueue {
		h.xmu.Unlock()
		h.m.stats.queueFull.Add(1)
		return false
	}
	h.queue = append(h.queue, f)
	if !h.running {
		h.running = true
		h.m.schedule(h)
	}
	h.xmu.Unlock()
	return true
}

// drain runs the queued work until the queue is empty. Worker only.
func (h *SA) drain() {
	for {
		h.xmu.Lock()
		if len(h.queue) == 0 {
			h.running = false
			h.queue = nil
			h.xmu.Unlock()
			return
		}
		f := h.queue[0]
		h.queue[0] = nil
		h.queue = h.queue[1:]
		h.xmu.Unlock()
		f()
	}
}

// schedule has h's queue drained: by an idle worker if one waits, else by
// a new one, so a hook that blocks (a slow identity lookup) never holds up
// another SA. Workers that found nothing more to do wait for the next SA
// (at most maxIdleWorkers of them, until Close): a worker's stack has
// grown to what the exchanges need, and a fresh goroutine per burst of
// work would grow and copy it every time.
func (m *Manager) schedule(h *SA) {
	select {
	case m.idleWork <- h:
	default:
		m.wg.Add(1)
		go m.routineWork(h)
	}
}

// routineWork drains SA queues handed to it; see schedule.
func (m *Manager) routineWork(h *SA) {
	defer m.wg.Done()
	for {
		h.drain()
		if m.idleWorkers.Add(1) > int32(m.maxIdle) {
			m.idleWorkers.Add(-1)
			return
		}
		select {
		case h = <-m.idleWork:
			m.idleWorkers.Add(-1)
		case <-m.quit:
			m.idleWorkers.Add(-1)
			return
		}
	}
}

// call runs f on the executor and waits for it (or ctx).
func (h *SA) call(ctx context.Context, f func() error) error {
	res := make(chan error, 1)
	if !h.run(func() { res <- f() }) {
		return h.deadErr()
	}
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wait runs start on the executor; start returns a channel that reports
// completion of what it began.
func (h *SA) wait(ctx context.Context, start func() (<-chan error, error)) error {
	var ch <-chan error
	if err := h.call(ctx, func() (err error) {
		ch, err = start()
		return err
	}); err != nil {
		return err
	}
	select {
	case err := <-ch:
		// Let the job that answered finish, so Info shows its outcome.
		_ = h.call(ctx, func() error { return nil })
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-h.done:
		select {
		case err := <-ch:
			return err
		default:
		}
		return h.deadErr()
	}
}

// deathErr is what deadErr will return once die is done. Executor only.
func (h *SA) deathErr() error {
	if h.reason != nil {
		return h.reason
	}
	return ErrClosed
}

func (h *SA) deadErr() error {
	h.infoMu.Lock()
	defer h.infoMu.Unlock()
	if h.err != nil {
		return h.err
	}
	return ErrClosed
}

// Info returns a snapshot of the SA.
func (h *SA) Info() SAInfo {
	h.infoMu.Lock()
	defer h.infoMu.Unlock()
	info := h.info
	if len(h.pubChildren) > 0 {
		info.Children = make([]ChildSA, len(h.pubChildren))
		for i := range h.pubChildren {
			info.Children[i] = h.pubChildren[i].expand(&info)
		}
	}
	return info
}

// childPub is what the published snapshot keeps of a CHILD_SA: the fields
// of ChildSA that are not the IKE SA's (outer addresses, encapsulation) and
// not keys, so an idle SA does not hold a whole ChildSA per CHILD_SA twice.
type childPub struct {
	inSPI, outSPI, replaces uint32
	suite                   transform.ESP
	encap                   bool
	localTS, remoteTS       []wire.Selector
	established             time.Time
}

func (c *childPub) expand(info *SAInfo) ChildSA {
	return ChildSA{InSPI: c.inSPI, OutSPI: c.outSPI, Suite: c.suite, LocalTS: c.localTS, RemoteTS: c.remoteTS,
		Local: info.Local, Remote: info.Remote, Encap: c.encap, Replaces: c.replaces, Established: c.established}
}

// Done is closed when the SA is gone; Err then says why.
func (h *SA) Done() <-chan struct{} { return h.done }

// Err returns why the SA went down (nil while it is up or after a local Close).
func (h *SA) Err() error {
	h.infoMu.Lock()
	defer h.infoMu.Unlock()
	if errors.Is(h.err, ErrClosed) {
		return nil
	}
	return h.err
}

// snapshot builds the SAInfo of the current state, with its CHILD_SAs.
// Executor only.
func (h *SA) snapshot() SAInfo {
	info := h.snapshotIKE()
	for _, c := range h.children {
		if c.state != childDeleted {
			info.Children = append(info.Children, h.childInfo(c))
		}
	}
	return info
}

// snapshotIKE is snapshot without the CHILD_SAs.
func (h *SA) snapshotIKE() SAInfo {
	info := SAInfo{
		Name: h.name, Local: h.local, Remote: h.remote, LocalID: h.localID, RemoteID: h.peerID,
		NATLocal: h.natLocal, NATRemote: h.natRemote, Encap: h.natt, MOBIKE: h.mobike,
		Fragmentation: h.fragmentation, VIPs: h.vips, PeerVendorIDs: h.vendorIDs,
		PeerAuthNotifies: h.authNotifies, Established: h.established,
	}
	if h.peer != nil {
		info.Tag = h.peer.Tag
	}
	if sa := h.cur; sa != nil {
		info.SPIi, info.SPIr, info.Initiator, info.State, info.Suite = sa.spiI, sa.spiR, sa.initiator, sa.state, sa.suite
	}
	return info
}

// pubChildrenNow returns the published form of the live CHILD_SAs, reusing
// old's array when it is large enough. Executor only.
func (h *SA) pubChildrenNow(old []childPub) []childPub {
	out := old[:0]
	encap := h.encap()
	for _, c := range h.children {
		if c.state != childDeleted {
			out = append(out, childPub{inSPI: c.inSPI, outSPI: c.outSPI, replaces: c.replaces, suite: c.suite, encap: encap,
				localTS: c.localTS, remoteTS: c.remoteTS, established: c.established})
		}
	}
	clear(out[len(out):cap(out)])
	if len(out) == 0 {
		return nil
	}
	return out
}

// pubKey fingerprints what a snapshot shows, so publish can skip the copy
// when nothing visible changed (it runs after every work item).
type pubKey struct {
	cur                            *ikeSA
	state                          State
	spiR                           uint64
	suite                          suite.Suite
	local, remote                  netip.AddrPort
	natt, natL, natR, mobike, frag bool
	established                    time.Time
	gen                            uint64
}

// changed marks a change publish cannot see in pubKey (CHILD_SAs, peer
// identity, VIPs, vendor IDs, notifies).
func (h *SA) changed() { h.gen++ }

// publish refreshes the snapshot Info returns.
func (h *SA) publish() {
	k := pubKey{cur: h.cur, local: h.local, remote: h.remote, natt: h.natt, natL: h.natLocal, natR: h.natRemote,
		mobike: h.mobike, frag: h.fragmentation, established: h.established, gen: h.gen}
	if h.cur != nil {
		k.state, k.spiR, k.suite = h.cur.state, h.cur.spiR, h.cur.suite
	}
	if h.pubKey != nil && *h.pubKey == k {
		return
	}
	if h.pubKey == nil {
		h.pubKey = new(pubKey)
	}
	*h.pubKey = k
	info := h.snapshotIKE()
	h.infoMu.Lock()
	h.info = info
	// Info copies the array out under infoMu, so it may be reused.
	h.pubChildren = h.pubChildrenNow(h.pubChildren)
	h.infoMu.Unlock()
}

func (h *SA) peerInfo() PeerInfo {
	p := PeerInfo{ID: h.peerID, Remote: h.remote, Local: h.local, VendorIDs: h.vendorIDs}
	if h.peer != nil {
		p.Tag = h.peer.Tag
	}
	return p
}

// emit queues an event with the current snapshot. It publishes first, so
// that Info, called by whoever receives the event, is not older than it.
func (h *SA) emit(kind EventKind, c *ChildSA, err error) {
	if !h.dying {
		h.publish()
	}
	h.m.events.push(Event{Kind: kind, SA: h, Info: h.snapshot(), Child: c, Err: err})
}

// die ends the handle: every IKE SA and CHILD_SA goes, with events for
// what was up, waiters are released and VIPs given back. Executor only.
func (h *SA) die(reason error) {
	if h.dying {
		return
	}
	h.dying = true
	h.reason = reason
	wasUp := !h.established.IsZero()
	for _, c := range h.children {
		if c.state != childDeleted {
			c.state = childDeleted
			h.emit(EventChildDown, h.childInfoPtr(c), reason)
		}
	}
	h.children = nil
	for _, sa := range append(h.others, h.cur) {
		if sa != nil {
			sa.destroy()
		}
	}
	h.others = nil
	if h.timer != nil {
		h.timer()
		h.timer = nil
	}
	if len(h.vips) > 0 && !h.origInitiator && h.m.cfg.Policy.ReleaseAddresses != nil {
		h.m.cfg.Policy.ReleaseAddresses(h.peerInfo(), h.vips)
	}
	if wasUp {
		h.m.stats.established.Add(-1)
		h.log.Info("IKE SA down", "state", StateDead, "reason", errString(reason))
		h.emit(EventIKEDown, nil, reason)
	} else {
		h.log.Debug("IKE SA abandoned", "state", StateDead, "reason", errString(reason))
	}
	for _, w := range h.waiters {
		w <- reason
	}
	h.waiters = nil
	info := h.snapshotIKE()
	info.State = StateDead
	h.cur = nil
	h.infoMu.Lock()
	h.info = info
	h.pubChildren = nil
	h.err = reason
	if h.err == nil {
		h.err = ErrClosed
	}
	h.infoMu.Unlock()
	h.xmu.Lock()
	h.dead = true
	h.xmu.Unlock()
	h.m.removeHandle(h)
	close(h.done)
}

func (h *SA) isDead() bool {
	h.xmu.Lock()
	defer h.xmu.Unlock()
	return h.dead
}

func errString(err error) string {
	if err == nil {
		return "deleted"
	}
	return err.Error()
}

// release reports the end of an Initiate to its waiters.
func (h *SA) release(err error) {
	for _, w := range h.waiters {
		w <- err
	}
	h.waiters = nil
}

// ikeSAs returns the current IKE SA and the others.
func (h *SA) ikeSAs() []*ikeSA {
	out := make([]*ikeSA, 0, 1+len(h.others))
	if h.cur != nil {
		out = append(out, h.cur)
	}
	return append(out, h.others...)
}

// dropOther forgets an IKE SA other than the current one.
func (h *SA) dropOther(sa *ikeSA) {
	for i, o := range h.others {
		if o == sa {
			h.others = append(h.others[:i], h.others[i+1:]...)
			break
		}
	}
	sa.destroy()
}

var timeZero time.Time
