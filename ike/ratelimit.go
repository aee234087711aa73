package ike

import (
	"sync"
	"time"
)

// rateLimiter is a token bucket for replies to unauthenticated peers, so the
// responder cannot be turned into a reflector (RFC 7296 §2.21.1 replies
// and IKE_SA_INIT responses).
type rateLimiter struct {
	clock Clock
	rate  float64 // tokens per second
	burst float64

	mu     sync.Mutex // guards the following
	tokens float64
	last   time.Time
}

func newRateLimiter(c Clock, rate float64, burst int) *rateLimiter {
	return &rateLimiter{clock: c, rate: rate, burst: float64(burst), tokens: float64(burst), last: c.Now()}
}

// allow takes a token if there is one.
func (r *rateLimiter) allow() bool {
	now := r.clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if d := now.Sub(r.last); d > 0 {
		r.tokens = min(r.burst, r.tokens+d.Seconds()*r.rate)
		r.last = now
	}
	if r.tokens < 1 {
		return false
	}
	r.tokens--
	return true
}
