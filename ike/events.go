package ike

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/ike/wire"
	"github.com/mpsa-vpn/mpsa/transform"
)

// EventKind says what happened to an SA.
type EventKind uint8

// Event kinds.
const (
	// EventIKEUp: an IKE SA is established (after IKE_AUTH).
	EventIKEUp EventKind = iota + 1
	// EventIKERekeyed: the IKE SA was replaced by a rekeyed one; Info has
	// the new SPIs, OldSPIi/OldSPIr the replaced ones. CHILD_SAs stay.
	EventIKERekeyed
	// EventIKEAddressChanged: the IKE SA's addresses or NAT state changed
	// (MOBIKE, NAT mapping, port float); Info.Children lists the CHILD_SAs
	// whose outer addresses follow.
	EventIKEAddressChanged
	// EventIKEDown: the IKE SA is gone (deleted, timed out, replaced by
	// INITIAL_CONTACT); its CHILD_SAs got EventChildDown before.
	EventIKEDown
	// EventChildUp: a CHILD_SA is established; Child carries its keys.
	EventChildUp
	// EventChildRekeyed: a CHILD_SA replaces the one with inbound SPI
	// Child.Replaces; Child carries the new keys. The old SA gets its
	// EventChildDown once deleted.
	EventChildRekeyed
	// EventChildDown: a CHILD_SA is gone.
	EventChildDown
)

// LogValue implements slog.LogValuer: event kinds log by name in every
// handler, JSON included.
func (k EventKind) LogValue() slog.Value { return slog.StringValue(k.String()) }

func (k EventKind) String() string {
	switch k {
	case EventIKEUp:
		return "IKE_UP"
	case EventIKERekeyed:
		return "IKE_REKEYED"
	case EventIKEAddressChanged:
		return "IKE_ADDRESS_CHANGED"
	case EventIKEDown:
		return "IKE_DOWN"
	case EventChildUp:
		return "CHILD_UP"
	case EventChildRekeyed:
		return "CHILD_REKEYED"
	case EventChildDown:
		return "CHILD_DOWN"
	}
	return fmt.Sprintf("EVENT(%d)", uint8(k))
}

// Event reports a change of an IKE SA or one of its CHILD_SAs.
type Event struct {
	Kind EventKind
	SA   *SA
	// Info is the IKE SA as of the event.
	Info SAInfo
	// Child is set for CHILD_SA events.
	Child *ChildSA
	// Err says why an SA went down; nil when it was deleted by request.
	Err error
}

func (e Event) String() string {
	s := fmt.Sprintf("%v %016x_i %016x_r", e.Kind, e.Info.SPIi, e.Info.SPIr)
	if e.Child != nil {
		s += fmt.Sprintf(" child %08x_i %08x_o", e.Child.InSPI, e.Child.OutSPI)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// ChildSA describes one CHILD_SA (a pair of ESP SAs).
type ChildSA struct {
	// InSPI is the SPI this side chose (inbound), OutSPI the peer's.
	InSPI, OutSPI uint32
	Suite         transform.ESP
	// LocalTS and RemoteTS as negotiated, from this side's point of view.
	LocalTS, RemoteTS []wire.Selector
	// Local and Remote are the outer (IKE) addresses ESP travels between.
	Local, Remote netip.AddrPort
	// Encap is true when ESP is encapsulated in UDP (NAT-T, RFC 3948).
	Encap bool
	// Replaces is the inbound SPI of the CHILD_SA this one rekeyed.
	Replaces uint32
	// In and Out are the keys of both ESP SAs, set only in EventChildUp
	// and EventChildRekeyed. The event's receiver owns them and must Wipe
	// them when the SA dies; the engine keeps no copy.
	In, Out esp.Keys
	// Established is when the CHILD_SA came up.
	Established time.Time
}

// SAInfo is a snapshot of an IKE SA, for events and status listings. It holds
// no key material.
type SAInfo struct {
	Name       string // connection name given to Initiate, "" on the responder
	SPIi, SPIr uint64
	// OldSPIi and OldSPIr name the replaced IKE SA in EventIKERekeyed.
	OldSPIi, OldSPIr uint64
	// Initiator: this side initiated the IKE SA (the current one, after
	// rekeying).
	Initiator         bool
	State             State
	Local, Remote     netip.AddrPort
	LocalID, RemoteID auth.ID
	// Tag is what the identity lookup returned for the peer.
	Tag   any
	Suite suite.Suite
	// NATLocal: this side is behind a NAT; NATRemote: the peer is.
	NATLocal, NATRemote bool
	// Encap: IKE (and so ESP) uses the NAT-T port with UDP encapsulation.
	Encap                 bool
	MOBIKE, Fragmentation bool
	// VIPs are the virtual addresses assigned to the peer (responder) or
	// to this side (initiator).
	VIPs []netip.Prefix
	// PeerVendorIDs from IKE_SA_INIT; PeerAuthNotifies are the status
	// notifies of the peer's IKE_AUTH message.
	PeerVendorIDs    [][]byte
	PeerAuthNotifies []*wire.Notify
	Established      time.Time
	Children         []ChildSA
}

// eventQueue delivers events in order from one goroutine, so a slow
// consumer never blocks an SA.
type eventQueue struct {
	deliver func(Event)

	mu     sync.Mutex
	q      []Event
	spare  []Event // the array delivered last, reused for the next batch
	closed bool
	wake   chan struct{}
	done   chan struct{}
}

// maxSpareEvents bounds the array kept for the next batch of events, so a
// burst (a hub's group rekey) does not pin its memory.
const maxSpareEvents = 256

func newEventQueue(deliver func(Event)) *eventQueue {
	e := &eventQueue{deliver: deliver, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go e.routineDeliver()
	return e
}

func (e *eventQueue) push(ev Event) {
	e.mu.Lock()
	if e.closed || e.deliver == nil {
		e.mu.Unlock()
		wipeEvent(&ev)
		return
	}
	e.q = append(e.q, ev)
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func wipeEvent(ev *Event) {
	if ev.Child != nil {
		ev.Child.In.Wipe()
		ev.Child.Out.Wipe()
	}
}

// routineDeliver runs until close; it drains what was queued before.
func (e *eventQueue) routineDeliver() {
	defer close(e.done)
	for {
		e.mu.Lock()
		q := e.q
		e.q, e.spare = e.spare, nil
		closed := e.closed
		e.mu.Unlock()
		for _, ev := range q {
			e.deliver(ev)
		}
		if cap(q) <= maxSpareEvents {
			clear(q)
			e.mu.Lock()
			e.spare = q[:0]
			e.mu.Unlock()
		}
		if closed && len(q) == 0 {
			return
		}
		if len(q) == 0 {
			<-e.wake
		}
	}
}

func (e *eventQueue) close() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
	<-e.done
}
