package ike

import "sync/atomic"

// Stats counts what the manager did with datagrams. Per-packet events are
// counted, never logged.
type Stats struct {
	Received           uint64 // datagrams read
	Sent               uint64 // datagrams written (including retransmissions)
	Retransmits        uint64 // requests sent again after a timeout
	ResponsesResent    uint64 // cached responses sent for retransmitted requests
	DroppedMalformed   uint64 // undecodable or against the exchange rules
	DroppedUnknownSPI  uint64 // no IKE SA with that SPI
	DroppedIntegrity   uint64 // SK payload failed authentication
	DroppedMessageID   uint64 // outside the message ID window
	DroppedUnexpected  uint64 // valid but not expected in the SA's state
	DroppedQueueFull   uint64 // the SA's input queue was full
	DroppedRateLimited uint64 // replies to unauthenticated peers suppressed
	DroppedHalfOpen    uint64 // IKE_SA_INIT refused: too many half-open SAs
	DroppedNonIKE      uint64 // on the NAT-T port without the non-ESP marker
	Keepalives         uint64 // NAT-T keepalives received
	CookiesSent        uint64
	InvalidKESent      uint64
	NoProposalSent     uint64
	AuthFailures       uint64 // peers that failed authentication
	HalfOpen           int64  // gauge: responder SAs in IKE_SA_INIT
	Established        int64  // gauge: established IKE SAs
}

type stats struct {
	received, sent, retransmits, responsesResent              atomic.Uint64
	malformed, unknownSPI, integrity, messageID, unexpected   atomic.Uint64
	queueFull, rateLimited, halfOpenDrops, nonIKE, keepalives atomic.Uint64
	cookiesSent, invalidKESent, noProposalSent, authFailures  atomic.Uint64
	halfOpen, established                                     atomic.Int64
}

func (s *stats) snapshot() Stats {
	return Stats{
		Received: s.received.Load(), Sent: s.sent.Load(), Retransmits: s.retransmits.Load(),
		ResponsesResent: s.responsesResent.Load(), DroppedMalformed: s.malformed.Load(),
		DroppedUnknownSPI: s.unknownSPI.Load(), DroppedIntegrity: s.integrity.Load(),
		DroppedMessageID: s.messageID.Load(), DroppedUnexpected: s.unexpected.Load(),
		DroppedQueueFull: s.queueFull.Load(), DroppedRateLimited: s.rateLimited.Load(),
		DroppedHalfOpen: s.halfOpenDrops.Load(), DroppedNonIKE: s.nonIKE.Load(),
		Keepalives: s.keepalives.Load(), CookiesSent: s.cookiesSent.Load(),
		InvalidKESent: s.invalidKESent.Load(), NoProposalSent: s.noProposalSent.Load(),
		AuthFailures: s.authFailures.Load(), HalfOpen: s.halfOpen.Load(), Established: s.established.Load(),
	}
}
