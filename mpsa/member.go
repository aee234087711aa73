package mpsa

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/routing"
)

// Member defaults.
const (
	// DefaultReplayWindow is the per-Sender-ID anti-replay window of a group
	// SA with Sender-IDs, in packets.
	DefaultReplayWindow = 128
	// DefaultMaxSAs bounds the group SAs a CPE holds at once (the current
	// one and those still rolling over); the oldest goes first.
	DefaultMaxSAs = 4
)

// MemberConfig configures a Member.
type MemberConfig struct {
	// Tunnel is the routing.Tunnel of the group SA: routes learned over
	// BGP point to it. Required.
	Tunnel routing.Tunnel
	// ReplayWindow is the per-sender window of SAs with Sender-IDs;
	// DefaultReplayWindow if 0. SAs without Sender-IDs have none.
	ReplayWindow int
	// MaxSAs is DefaultMaxSAs if 0.
	MaxSAs int
	Logger *slog.Logger // slog.Default() if nil; gets component=mpsa
}

// Member is the CPE side of one group (draft §3.3.2, §3.3.3): it checks and
// derives each MPSA_PUT the hub sends and runs the rollover. It has no
// goroutines or timers: the daemon passes received notifies to Handle, calls
// Tick when NextDeadline is reached, and hands SAs to Backend.Set whenever
// Handle or Tick report a change. Safe for concurrent use.
//
// Rollover (RFC 6407 style, times counted from receipt of the new SA): the
// new SA is installed inbound at once; after ROLL1 it becomes the outbound
// SA; after ROLL2 the SA it replaced is removed. Any SA is removed when its
// LIFE ends. The first SA (no predecessor) is used both ways at once.
type Member struct {
	tunnel       routing.Tunnel
	replayWindow int
	maxSAs       int
	log          *slog.Logger

	accepted, refreshed, refused atomic.Uint64

	// mu guards the following fields.
	mu     sync.Mutex
	sas    []*memberSA // oldest first
	outSPI uint32      // SPI of the outbound SA as last reported; 0 none
	last   time.Time   // time of the last Handle or Tick
}

// memberSA is one group SA held by a CPE.
type memberSA struct {
	keys         esp.Keys
	senderIDBits uint8
	senderID     uint32
	received     time.Time
	outFrom      time.Time // used outbound from then (if no newer SA is)
	expires      time.Time // received + LIFE
	removeAt     time.Time // superseded: removed then (received of successor + ROLL2); zero otherwise
}

func (s *memberSA) until() time.Time {
	if !s.removeAt.IsZero() && s.removeAt.Before(s.expires) {
		return s.removeAt
	}
	return s.expires
}

// NewMember returns a Member holding no SA.
func NewMember(cfg MemberConfig) (*Member, error) {
	if cfg.Tunnel == 0 {
		return nil, fmt.Errorf("mpsa: member needs a tunnel")
	}
	m := &Member{tunnel: cfg.Tunnel, replayWindow: cfg.ReplayWindow, maxSAs: cfg.MaxSAs, log: cfg.Logger}
	if m.replayWindow <= 0 {
		m.replayWindow = DefaultReplayWindow
	}
	if m.maxSAs <= 0 {
		m.maxSAs = DefaultMaxSAs
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	m.log = m.log.With("component", "mpsa")
	return m, nil
}

// Handle processes a notify received from the hub in an INFORMATIONAL
// request at time now. It ignores notifies of other types (nil, false). A bad
// MPSA_PUT is refused with a logged reason naming the field and the error
// returned; the SAs held stay as they are. changed reports that SAs changed
// (call Backend.Set). The daemon answers the request with the empty SK{}
// either way.
func (m *Member) Handle(n Notify, now time.Time) (changed bool, err error) {
	if n.Type != NotifyPut {
		return false, nil
	}
	p, err := DecodePut(n)
	if err != nil {
		m.refuse(n, err)
		return false, err
	}
	defer p.Wipe()
	keys, err := p.Keys()
	if err != nil {
		m.refuse(n, err)
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	changed = m.expireLocked(now)
	c, err := m.installLocked(p, keys, now)
	if err != nil {
		keys.Wipe()
		m.refuse(n, err)
		return changed, err
	}
	return changed || c, nil
}

// MemberStats counts MPSA_PUTs by outcome, for metrics.
type MemberStats struct {
	Accepted  uint64 // new SAs installed
	Refreshed uint64 // an SA already held, received again
	Refused   uint64 // malformed or inconsistent, dropped
}

// Stats returns the counters.
func (m *Member) Stats() MemberStats {
	return MemberStats{Accepted: m.accepted.Load(), Refreshed: m.refreshed.Load(), Refused: m.refused.Load()}
}

func (m *Member) refuse(n Notify, err error) {
	m.refused.Add(1)
	spi := ""
	if len(n.SPI) == 4 {
		spi = fmt.Sprintf("%02x%02x%02x%02x", n.SPI[0], n.SPI[1], n.SPI[2], n.SPI[3])
	}
	reason := Field(err)
	if reason == "" {
		reason = "keys"
	}
	m.log.Warn("MPSA_PUT refused; keeping the current group SA", "esp_spi", spi, "reason", reason, "err", err)
}

// installLocked adds a new SA or refreshes a known one. It takes ownership
// of keys on success.
func (m *Member) installLocked(p *Put, keys esp.Keys, now time.Time) (bool, error) {
	for _, s := range m.sas {
		if s.keys.SPI != p.SPI {
			continue
		}
		// The same SA again: the hub restarted or retransmitted. Take its
		// LIFE and Sender-ID, keep the rollover already under way.
		same := s.keys.Suite == keys.Suite &&
			subtle.ConstantTimeCompare(s.keys.EncKey, keys.EncKey) == 1 &&
			subtle.ConstantTimeCompare(s.keys.IntegKey, keys.IntegKey) == 1
		keys.Wipe()
		if !same {
			return false, fieldErr("SPI", "%08x is held with other keys", p.SPI)
		}
		m.refreshed.Add(1)
		changed := s.senderID != p.SenderID || s.senderIDBits != p.SenderIDBits
		s.senderID, s.senderIDBits = p.SenderID, p.SenderIDBits
		s.expires = now.Add(p.Life)
		m.log.Debug("group SA refreshed", "esp_spi", hex32(p.SPI), "reason", fmt.Sprintf("LIFE %v", p.Life))
		return changed || m.outChangedLocked(now), nil
	}
	s := &memberSA{
		keys: keys, senderIDBits: p.SenderIDBits, senderID: p.SenderID,
		received: now, outFrom: now, expires: now.Add(p.Life),
	}
	if len(m.sas) > 0 {
		// draft §3.3.2: rollover times mean nothing without an old SA.
		s.outFrom = now.Add(p.Roll1)
		for _, old := range m.sas {
			if at := now.Add(p.Roll2); old.removeAt.IsZero() || at.Before(old.removeAt) {
				old.removeAt = at
			}
		}
	}
	m.accepted.Add(1)
	m.sas = append(m.sas, s)
	for len(m.sas) > m.maxSAs {
		m.removeLocked(0, "too many group SAs")
	}
	m.log.Info("group SA accepted", "esp_spi", hex32(p.SPI), "state", "INBOUND",
		"reason", fmt.Sprintf("%v, LIFE %v, ROLL1 %v, ROLL2 %v", keys.Suite, p.Life, p.Roll1, p.Roll2))
	m.outChangedLocked(now)
	return true, nil
}

func (m *Member) removeLocked(i int, reason string) {
	s := m.sas[i]
	s.keys.Wipe()
	m.sas = append(m.sas[:i], m.sas[i+1:]...)
	m.log.Info("group SA removed", "esp_spi", hex32(s.keys.SPI), "state", "DELETED", "reason", reason)
}

// expireLocked removes SAs whose time is up.
func (m *Member) expireLocked(now time.Time) bool {
	if now.After(m.last) {
		m.last = now
	}
	changed := false
	for i := 0; i < len(m.sas); {
		s := m.sas[i]
		if now.Before(s.until()) {
			i++
			continue
		}
		reason := "rollover done (ROLL2)"
		if !now.Before(s.expires) {
			reason = "LIFE expired"
		}
		m.removeLocked(i, reason)
		changed = true
	}
	return m.outChangedLocked(now) || changed
}

// outLocked returns the SA used outbound at now: the newest whose outFrom
// has come.
func (m *Member) outLocked(now time.Time) *memberSA {
	for i := len(m.sas) - 1; i >= 0; i-- {
		if !now.Before(m.sas[i].outFrom) {
			return m.sas[i]
		}
	}
	return nil
}

// outChangedLocked records the outbound SA at now and reports whether it
// changed since last time.
func (m *Member) outChangedLocked(now time.Time) bool {
	var spi uint32
	if s := m.outLocked(now); s != nil {
		spi = s.keys.SPI
	}
	if spi == m.outSPI {
		return false
	}
	m.outSPI = spi
	if spi != 0 {
		m.log.Info("group SA outbound", "esp_spi", hex32(spi), "state", "OUTBOUND")
	}
	return true
}

// Tick applies what is due at now (rollover steps, LIFE) and reports whether
// the SAs changed.
func (m *Member) Tick(now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.expireLocked(now)
}

// NextDeadline returns when Tick has something to do next; zero when nothing.
func (m *Member) NextDeadline() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	var t earliest
	for _, s := range m.sas {
		t.add(s.until())
		if s.outFrom.After(m.last) {
			t.add(s.outFrom)
		}
	}
	return t.t
}

// SAs returns the group SAs to install as of the last Handle or Tick: every
// held SA inbound, the outbound one Both. Keys are copies the caller owns:
// wipe them (WipeSAs) once Backend.Set returned.
func (m *Member) SAs() []dataplane.SA {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]dataplane.SA, 0, len(m.sas))
	for _, s := range m.sas {
		sa := dataplane.SA{
			Keys:         s.keys.Clone(),
			Dir:          dataplane.In,
			Tunnel:       m.tunnel,
			SenderIDBits: s.senderIDBits,
			SenderID:     s.senderID,
		}
		if s.keys.SPI == m.outSPI {
			sa.Dir = dataplane.Both
		}
		if s.senderIDBits > 0 {
			sa.ReplayWindow = m.replayWindow
		}
		out = append(out, sa)
	}
	return out
}

// WipeSAs wipes the keys of SAs returned by SAs.
func WipeSAs(sas []dataplane.SA) {
	for i := range sas {
		sas[i].Keys.Wipe()
	}
}

// Close wipes and drops every SA (the CPE leaves the group for good; losing
// the IKE SA to the hub is not a reason).
func (m *Member) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for len(m.sas) > 0 {
		m.removeLocked(0, "member closed")
	}
	m.outSPI = 0
}
