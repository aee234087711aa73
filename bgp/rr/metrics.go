package rr

import (
	"sync"
	"sync/atomic"
	"time"
)

// Stats are a group's counters (or their sum over all groups).
type Stats struct {
	CPEs             uint64 // CPEs registered with CPEUp
	Sessions         uint64 // CPE sessions established now
	Routes           uint64 // CPE routes the hub reflects now
	StaleRoutes      uint64 // of those, kept across a CPE session loss
	Accepted         uint64 // CPE route announcements accepted
	ForeignPrefix    uint64 // announcements dropped: prefix not authorised for the CPE (a more specific included, unless the policy accepts those)
	EndpointRewrite  uint64 // announcements whose endpoint the hub replaced
	EndpointReject   uint64 // announcements dropped for a foreign endpoint
	BadRoute         uint64 // announcements dropped as unusable (family, next hop)
	TooManyRoutes    uint64 // announcements dropped beyond the group's RoutePolicy.MaxPrefixes
	RefusedSessions  uint64 // connections refused: source is not a live CPE
	CPEWithdrawnDown uint64 // routes withdrawn because a CPE went down
}

func (s *Stats) add(o Stats) {
	s.CPEs += o.CPEs
	s.Sessions += o.Sessions
	s.Routes += o.Routes
	s.StaleRoutes += o.StaleRoutes
	s.Accepted += o.Accepted
	s.ForeignPrefix += o.ForeignPrefix
	s.EndpointRewrite += o.EndpointRewrite
	s.EndpointReject += o.EndpointReject
	s.BadRoute += o.BadRoute
	s.TooManyRoutes += o.TooManyRoutes
	s.RefusedSessions += o.RefusedSessions
	s.CPEWithdrawnDown += o.CPEWithdrawnDown
}

type counters struct {
	accepted, foreignPrefix, epRewrite, epReject, badRoute, tooMany, refused, withdrawnDown atomic.Uint64
}

// limiter allows n events per second (a token bucket refilled once per
// second), for log lines about hostile input.
type limiter struct {
	mu     sync.Mutex
	n      int
	tokens int
	last   time.Time
}

func (l *limiter) allow() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.last) >= time.Second {
		l.tokens, l.last = l.n, now
	}
	if l.tokens <= 0 {
		return false
	}
	l.tokens--
	return true
}
