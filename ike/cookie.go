package ike

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"
)

// cookieLifetime is how long a cookie secret is used before the next one;
// cookies made with the previous secret stay valid for another period.
const cookieLifetime = 2 * time.Minute

// cookieLen is the length of our COOKIE notify data: version octet and a
// truncated HMAC-SHA-256.
const cookieLen = 1 + 16

// cookieJar makes and checks stateless cookies (RFC 7296 §2.6):
//
//	Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)
//
// with HMAC-SHA-256 keyed by the secret as the hash. The version octet names
// the secret, so secrets rotate without rejecting cookies in flight.
type cookieJar struct {
	rand  io.Reader
	clock Clock

	mu      sync.Mutex // guards the following
	version byte
	secret  [32]byte
	prev    [32]byte
	since   time.Time
}

func newCookieJar(r io.Reader, c Clock) (*cookieJar, error) {
	j := &cookieJar{rand: r, clock: c, since: c.Now()}
	if _, err := io.ReadFull(r, j.secret[:]); err != nil {
		return nil, fmt.Errorf("ike: cookie secret: %w", err)
	}
	return j, nil
}

// rotateLocked replaces the secret when it is too old.
func (j *cookieJar) rotateLocked(now time.Time) {
	if now.Sub(j.since) < cookieLifetime {
		return
	}
	var next [32]byte
	if _, err := io.ReadFull(j.rand, next[:]); err != nil {
		return // keep the old secret rather than fail
	}
	j.prev, j.secret = j.secret, next
	j.version++
	j.since = now
}

func cookieMAC(secret *[32]byte, version byte, ni []byte, ip netip.Addr, spiI uint64) []byte {
	m := hmac.New(sha256.New, secret[:])
	m.Write(ni)
	a := ip.Unmap().AsSlice()
	m.Write(a)
	var spi [8]byte
	binary.BigEndian.PutUint64(spi[:], spiI)
	m.Write(spi[:])
	out := make([]byte, 1, cookieLen+sha256.Size)
	out[0] = version
	return m.Sum(out)[:cookieLen]
}

// make returns the COOKIE data for an initiator.
func (j *cookieJar) make(ni []byte, ip netip.Addr, spiI uint64) []byte {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.rotateLocked(j.clock.Now())
	return cookieMAC(&j.secret, j.version, ni, ip, spiI)
}

// verify checks a COOKIE returned by an initiator, in constant time.
func (j *cookieJar) verify(cookie, ni []byte, ip netip.Addr, spiI uint64) bool {
	if len(cookie) != cookieLen {
		return false
	}
	j.mu.Lock()
	j.rotateLocked(j.clock.Now())
	var secret [32]byte
	switch cookie[0] {
	case j.version:
		secret = j.secret
	case j.version - 1:
		secret = j.prev
	default:
		j.mu.Unlock()
		return false
	}
	j.mu.Unlock()
	return hmac.Equal(cookie, cookieMAC(&secret, cookie[0], ni, ip, spiI))
}
