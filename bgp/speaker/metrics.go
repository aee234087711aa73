package speaker

import "sync/atomic"

// State is the speaker's RFC 4271 FSM state. A speaker that only connects
// passes through Connect instead of Active.
//
//	Idle ──dial──► Connect ──TCP up, OPEN sent──► OpenSent
//	  ▲                                             │ OPEN received, KEEPALIVE sent
//	  │                                             ▼
//	  └──error, NOTIFICATION, hold timer──── OpenConfirm ──KEEPALIVE──► Established
//	                                                                    │
//	  Idle ◄─────────────── error, NOTIFICATION, hold timer ────────────┘
type State uint8

// FSM states.
const (
	StateIdle State = iota
	StateConnect
	StateOpenSent
	StateOpenConfirm
	StateEstablished
)

func (s State) String() string {
	switch s {
	case StateIdle:
		return "IDLE"
	case StateConnect:
		return "CONNECT"
	case StateOpenSent:
		return "OPENSENT"
	case StateOpenConfirm:
		return "OPENCONFIRM"
	case StateEstablished:
		return "ESTABLISHED"
	}
	return "UNKNOWN"
}

// Stats are the speaker's counters since New.
type Stats struct {
	Established      uint64 // sessions that reached Established
	UpdatesIn        uint64 // UPDATE messages received
	UpdatesOut       uint64 // UPDATE messages sent (End-of-RIB included)
	RoutesLearned    uint64 // routes currently in the sink from this speaker
	StaleRoutes      uint64 // of those, kept across a hub restart and not yet refreshed
	TreatAsWithdraw  uint64 // UPDATEs whose routes were withdrawn as malformed (RFC 7606)
	AttributeDiscard uint64 // UPDATEs from which a malformed attribute was discarded
	BadTunnelEncap   uint64 // UPDATEs with a malformed Tunnel Encapsulation attribute
	OwnRoutes        uint64 // routes ignored because they carried our ORIGINATOR_ID
	OtherFamily      uint64 // prefixes of families not negotiated, ignored
	NotifySent       uint64 // NOTIFICATIONs sent
	NotifyRecv       uint64 // NOTIFICATIONs received
	SinkErrors       uint64 // routes the sink refused
}

type counters struct {
	established, updatesIn, updatesOut                    atomic.Uint64
	routes, stale                                         atomic.Int64
	treatAsWithdraw, attrDiscard, badEncap, own, otherFam atomic.Uint64
	notifySent, notifyRecv, sinkErrors                    atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Established:      c.established.Load(),
		UpdatesIn:        c.updatesIn.Load(),
		UpdatesOut:       c.updatesOut.Load(),
		RoutesLearned:    uint64(max(c.routes.Load(), 0)),
		StaleRoutes:      uint64(max(c.stale.Load(), 0)),
		TreatAsWithdraw:  c.treatAsWithdraw.Load(),
		AttributeDiscard: c.attrDiscard.Load(),
		BadTunnelEncap:   c.badEncap.Load(),
		OwnRoutes:        c.own.Load(),
		OtherFamily:      c.otherFam.Load(),
		NotifySent:       c.notifySent.Load(),
		NotifyRecv:       c.notifyRecv.Load(),
		SinkErrors:       c.sinkErrors.Load(),
	}
}
