// Package memory is an in-memory data plane for tests of the daemons. It
// validates and records the dataplane.State it is given (copying the keys
// and wiping its copies when an SA goes away), renders what is installed as
// stable text for golden comparisons, answers the questions a test asks
// (which SA has this inbound SPI, which SA serves this tunnel outbound,
// which Set calls were made) and tells a test when the installed state
// changes, so tests wait on events instead of sleeping.
//
// It moves no packets; the counters Stats reports are the ones a test put
// there with SetStats.
package memory

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/routing"
)

var _ dataplane.Backend = (*Backend)(nil)

// Call records one Set call.
type Call struct {
	Gen     uint64 // generation of the installed state after the call
	Text    string // the State that was passed, rendered as by Text ("" if it was nil)
	Changed bool   // the call changed what is installed
	Err     error  // what Set returned
}

// Backend is the in-memory data plane. The zero value is not usable; call New.
type Backend struct {
	mu sync.Mutex // guards the fields below

	closed   bool
	gen      uint64
	sas      []dataplane.SA // sorted (see less); key material is our own copy
	calls    []Call
	stats    dataplane.Stats
	failNext error
	changed  chan struct{} // closed and replaced whenever gen moves
}

// New returns an empty backend.
func New() *Backend {
	return &Backend{changed: make(chan struct{})}
}

// Set validates st and, if it differs from what is installed, installs a
// copy of it. SAs that disappear or change have their key copies wiped.
// Calling Set again with an equal State changes nothing (idempotent), and
// the generation does not move.
func (b *Backend) Set(st *dataplane.State) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	call := Call{Gen: b.gen}
	if st != nil {
		call.Text = render(sorted(st.SAs))
	}
	err := b.setLocked(st)
	call.Err = err
	call.Changed = b.gen != call.Gen
	call.Gen = b.gen
	b.calls = append(b.calls, call)
	return err
}

func (b *Backend) setLocked(st *dataplane.State) error {
	if b.closed {
		return net.ErrClosed
	}
	if err := b.failNext; err != nil {
		b.failNext = nil
		return err
	}
	if st == nil {
		return fmt.Errorf("memory: nil State")
	}
	if err := st.Validate(); err != nil {
		return err
	}
	want := sorted(st.SAs)
	if equalSAs(b.sas, want) {
		return nil
	}
	next := make([]dataplane.SA, len(want))
	for i, sa := range want {
		next[i] = cloneSA(&sa)
	}
	for i := range b.sas {
		b.sas[i].Keys.Wipe()
	}
	b.sas = next
	b.bumpLocked()
	return nil
}

func (b *Backend) bumpLocked() {
	b.gen++
	close(b.changed)
	b.changed = make(chan struct{})
}

// Stats returns the counters last given to SetStats.
func (b *Backend) Stats() dataplane.Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.stats
	s.Drops = maps.Clone(b.stats.Drops)
	return s
}

// SetStats sets the counters Stats reports, for tests of metrics export.
func (b *Backend) SetStats(s dataplane.Stats) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stats = s
	b.stats.Drops = maps.Clone(s.Drops)
}

// FailNextSet makes the next Set return err without installing anything,
// for tests of how a daemon handles a data plane that refuses a State.
func (b *Backend) FailNextSet(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failNext = err
}

// Close wipes every key copy and uninstalls everything; later Sets return
// net.ErrClosed. Waiters see the change.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	for i := range b.sas {
		b.sas[i].Keys.Wipe()
	}
	b.sas = nil
	b.closed = true
	b.bumpLocked()
	return nil
}

// Snapshot is a copy of what was installed at one generation. Its SAs carry
// their own copies of the keys, which the test may Wipe.
type Snapshot struct {
	Gen    uint64
	Closed bool
	SAs    []dataplane.SA // sorted by SPI, then direction
}

// Snapshot returns a copy of what is installed now.
func (b *Backend) Snapshot() Snapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.snapshotLocked()
}

func (b *Backend) snapshotLocked() Snapshot {
	s := Snapshot{Gen: b.gen, Closed: b.closed, SAs: make([]dataplane.SA, len(b.sas))}
	for i := range b.sas {
		s.SAs[i] = cloneSA(&b.sas[i])
	}
	return s
}

// Wipe zeroes the snapshot's key copies.
func (s Snapshot) Wipe() {
	for i := range s.SAs {
		s.SAs[i].Keys.Wipe()
	}
}

// Inbound returns the SA installed inbound (In or Both) with this SPI.
func (s Snapshot) Inbound(spi uint32) (dataplane.SA, bool) {
	for _, sa := range s.SAs {
		if sa.Keys.SPI == spi && sa.Dir&dataplane.In != 0 {
			return sa, true
		}
	}
	return dataplane.SA{}, false
}

// Outbound returns the SA that serves tunnel outbound (Out or Both).
func (s Snapshot) Outbound(tunnel routing.Tunnel) (dataplane.SA, bool) {
	for _, sa := range s.SAs {
		if sa.Tunnel == tunnel && sa.Dir&dataplane.Out != 0 {
			return sa, true
		}
	}
	return dataplane.SA{}, false
}

// Text renders the snapshot as Backend.Text does.
func (s Snapshot) Text() string { return render(s.SAs) }

// Gen returns the generation of the installed state: it moves by one each
// time Set changes what is installed, and on Close.
func (b *Backend) Gen() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.gen
}

// Inbound returns a copy of the SA installed inbound with this SPI.
func (b *Backend) Inbound(spi uint32) (dataplane.SA, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range b.sas {
		if sa := &b.sas[i]; sa.Keys.SPI == spi && sa.Dir&dataplane.In != 0 {
			return cloneSA(sa), true
		}
	}
	return dataplane.SA{}, false
}

// Outbound returns a copy of the SA that serves tunnel outbound.
func (b *Backend) Outbound(tunnel routing.Tunnel) (dataplane.SA, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range b.sas {
		if sa := &b.sas[i]; sa.Tunnel == tunnel && sa.Dir&dataplane.Out != 0 {
			return cloneSA(sa), true
		}
	}
	return dataplane.SA{}, false
}

// Text renders what is installed, one line per SA sorted by SPI and
// direction, without key material (see the package tests for the format).
// An empty backend renders as "".
func (b *Backend) Text() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return render(b.sas)
}

// Calls returns every Set call so far, oldest first.
func (b *Backend) Calls() []Call {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

// Changed returns a channel that is closed at the next change of the
// installed state (a Set that changes something, or Close).
func (b *Backend) Changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

// Wait returns the first snapshot, the current one included, for which
// cond is true. It returns ctx's error with the last snapshot seen if ctx
// ends first; cond must not call the Backend.
func (b *Backend) Wait(ctx context.Context, cond func(Snapshot) bool) (Snapshot, error) {
	for {
		b.mu.Lock()
		snap, changed := b.snapshotLocked(), b.changed
		b.mu.Unlock()
		if cond(snap) {
			return snap, nil
		}
		select {
		case <-changed:
			snap.Wipe()
		case <-ctx.Done():
			return snap, fmt.Errorf("memory: waiting for state (generation %d): %w", snap.Gen, context.Cause(ctx))
		}
	}
}

// WaitText waits until Text equals want and returns ctx's error, with the
// last text seen, if ctx ends first.
func (b *Backend) WaitText(ctx context.Context, want string) error {
	snap, err := b.Wait(ctx, func(s Snapshot) bool { return s.Text() == want })
	defer snap.Wipe()
	if err != nil {
		return fmt.Errorf("%w; installed:\n%s", err, snap.Text())
	}
	return nil
}

func cloneSA(sa *dataplane.SA) dataplane.SA {
	c := *sa
	c.Keys = sa.Keys.Clone()
	c.RemoteSelectors = slices.Clone(sa.RemoteSelectors)
	c.LocalSelectors = slices.Clone(sa.LocalSelectors)
	return c
}

// sorted returns the SAs (not copies of their keys) ordered by SPI, then
// direction, then tunnel and peer, so equal States compare and render equal.
func sorted(sas []dataplane.SA) []dataplane.SA {
	s := slices.Clone(sas)
	slices.SortStableFunc(s, func(a, b dataplane.SA) int {
		if a.Keys.SPI != b.Keys.SPI {
			return cmpUint(a.Keys.SPI, b.Keys.SPI)
		}
		if a.Dir != b.Dir {
			return cmpUint(uint32(a.Dir), uint32(b.Dir))
		}
		if a.Tunnel != b.Tunnel {
			return cmpUint(uint32(a.Tunnel), uint32(b.Tunnel))
		}
		return a.Peer.Compare(b.Peer)
	})
	return s
}

func cmpUint(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func equalSAs(a, b []dataplane.SA) bool {
	return slices.EqualFunc(a, b, func(x, y dataplane.SA) bool {
		return x.Keys.SPI == y.Keys.SPI && x.Keys.Suite == y.Keys.Suite &&
			bytes.Equal(x.Keys.EncKey, y.Keys.EncKey) && bytes.Equal(x.Keys.IntegKey, y.Keys.IntegKey) &&
			x.Dir == y.Dir && x.Tunnel == y.Tunnel && x.Peer == y.Peer && x.Local == y.Local &&
			slices.Equal(x.RemoteSelectors, y.RemoteSelectors) && slices.Equal(x.LocalSelectors, y.LocalSelectors) &&
			x.ReplayWindow == y.ReplayWindow && x.SenderIDBits == y.SenderIDBits && x.SenderID == y.SenderID
	})
}

// render writes one line per SA:
//
//	sa 00001001 both tunnel 1 AES_CBC_128/HMAC_SHA2_256_128 replay 0
//
// followed, when set, by "peer ADDR:PORT", "local ADDR", "remote-ts P,P",
// "local-ts P,P" and "sender-id ID/BITS". Key material is never written.
func render(sas []dataplane.SA) string {
	var sb strings.Builder
	for _, sa := range sas {
		fmt.Fprintf(&sb, "sa %08x %s tunnel %d %v replay %d", sa.Keys.SPI, dirName(sa.Dir), sa.Tunnel, sa.Keys.Suite, sa.ReplayWindow)
		if sa.Peer.IsValid() {
			fmt.Fprintf(&sb, " peer %v", sa.Peer)
		}
		if sa.Local.IsValid() {
			fmt.Fprintf(&sb, " local %v", sa.Local)
		}
		if len(sa.RemoteSelectors) > 0 {
			fmt.Fprintf(&sb, " remote-ts %s", prefixes(sa.RemoteSelectors))
		}
		if len(sa.LocalSelectors) > 0 {
			fmt.Fprintf(&sb, " local-ts %s", prefixes(sa.LocalSelectors))
		}
		if sa.SenderIDBits > 0 {
			fmt.Fprintf(&sb, " sender-id %d/%d", sa.SenderID, sa.SenderIDBits)
		}
		sb.WriteByte('\n')
	}
	return sb.String()
}

func prefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func dirName(d dataplane.Direction) string {
	switch d {
	case dataplane.In:
		return "in"
	case dataplane.Out:
		return "out"
	case dataplane.Both:
		return "both"
	}
	return fmt.Sprintf("dir(%d)", d)
}
