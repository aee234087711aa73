package ike

import (
	"io"
	"sync"
	"time"
)

// Clock is the engine's source of time, injected so tests can step it.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d unless stop is
	// called first; stop reports whether it prevented the call.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now implements Clock.
func (SystemClock) Now() time.Time { return time.Now() }

// AfterFunc implements Clock.
func (SystemClock) AfterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }

// lockedReader serialises a randomness source shared by all SAs (a
// deterministic test reader is usually not safe for concurrent use).
type lockedReader struct {
	mu sync.Mutex
	r  io.Reader
}

func (l *lockedReader) Read(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return io.ReadFull(l.r, b)
}
