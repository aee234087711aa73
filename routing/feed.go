package routing

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
)

// ErrClosed is returned by Subscription.Next after Close.
var ErrClosed = errors.New("routing: subscription closed")

// ChangeKind says what happened to a forwarding entry.
type ChangeKind uint8

// Change kinds.
const (
	Added   ChangeKind = iota + 1 // the prefix became resolved (or is in a snapshot)
	Changed                       // its next hops changed
	Removed                       // it was withdrawn or no longer resolves
)

func (k ChangeKind) String() string {
	switch k {
	case Added:
		return "added"
	case Changed:
		return "changed"
	case Removed:
		return "removed"
	}
	return "kind(?)"
}

// Change is one forwarding entry that changed: packets to Prefix now go to
// NextHops[0] (or spread over all of them by flow hash, with multipath).
// NextHops is nil for Removed. The slice is shared: do not modify it.
type Change struct {
	Kind     ChangeKind
	Prefix   netip.Prefix
	NextHops []NextHop
}

// Update is what Subscription.Next returns. With Snapshot set, Changes is
// the complete set of forwarding entries (all Added) and replaces whatever
// the reader held; otherwise it is the changes since the previous Update,
// at most one per prefix, in prefix order.
type Update struct {
	Snapshot bool
	Changes  []Change
}

// Subscription follows the FIB's forwarding entries (resolved prefixes and
// their next hops). The first Update is a snapshot; later ones carry
// changes. A reader that falls behind never slows the FIB down: pending
// changes are coalesced per prefix, and past the configured bound the
// backlog is replaced by a fresh snapshot.
type Subscription struct {
	f      *FIB
	notify chan struct{} // capacity 1: "something is pending"

	mu sync.Mutex
	// mu guards the following fields. Lock order: FIB.mu before mu.
	closed   bool
	snapshot bool       // next Update is a snapshot built from the FIB
	batches  [][]Change // pending batches, oldest first, shared between subscriptions
	count    int        // changes in batches
	folded   map[netip.Prefix]Change
}

// Subscribe starts following the FIB. Close the subscription when done.
func (f *FIB) Subscribe() *Subscription {
	s := &Subscription{f: f, notify: make(chan struct{}, 1), snapshot: true}
	f.mu.Lock()
	f.subs = append(f.subs, s)
	f.mu.Unlock()
	s.signal()
	return s
}

// Ready is signalled (capacity-1 channel) whenever an Update may be pending;
// Next does not block after it fired unless another reader took the Update.
func (s *Subscription) Ready() <-chan struct{} { return s.notify }

// Next returns the next Update, waiting for one until ctx is done.
func (s *Subscription) Next(ctx context.Context) (Update, error) {
	for {
		if u, ok, err := s.take(); err != nil || ok {
			return u, err
		}
		select {
		case <-ctx.Done():
			return Update{}, ctx.Err()
		case <-s.notify:
		}
	}
}

// TryNext returns the pending Update without waiting; ok is false when none
// is pending.
func (s *Subscription) TryNext() (u Update, ok bool, err error) { return s.take() }

// Close stops the subscription; Next then returns ErrClosed.
func (s *Subscription) Close() {
	s.f.mu.Lock()
	s.f.subs = slices.DeleteFunc(s.f.subs, func(x *Subscription) bool { return x == s })
	s.f.mu.Unlock()
	s.mu.Lock()
	s.closed = true
	s.batches, s.folded, s.count = nil, nil, 0
	s.mu.Unlock()
	s.signal()
}

func (s *Subscription) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *Subscription) take() (Update, bool, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Update{}, false, ErrClosed
	}
	if s.snapshot {
		s.mu.Unlock()
		return s.takeSnapshot()
	}
	defer s.mu.Unlock()
	if s.count == 0 && len(s.folded) == 0 {
		return Update{}, false, nil
	}
	if len(s.batches) == 1 && len(s.folded) == 0 {
		// One batch holds each prefix once: no folding needed.
		out := slices.Clone(s.batches[0])
		s.batches, s.count = nil, 0
		slices.SortFunc(out, func(a, b Change) int { return comparePrefix(a.Prefix, b.Prefix) })
		return Update{Changes: out}, true, nil
	}
	s.foldLocked()
	out := make([]Change, 0, len(s.folded))
	for _, c := range s.folded {
		out = append(out, c)
	}
	s.folded = nil
	slices.SortFunc(out, func(a, b Change) int { return comparePrefix(a.Prefix, b.Prefix) })
	return Update{Changes: out}, true, nil
}

// takeSnapshot builds the snapshot under the FIB's lock, so that it and the
// batches published after it line up exactly.
func (s *Subscription) takeSnapshot() (Update, bool, error) {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Update{}, false, ErrClosed
	}
	s.snapshot = false
	s.batches, s.folded, s.count = nil, nil, 0
	return Update{Snapshot: true, Changes: s.f.snapshotLocked()}, true, nil
}

// publish hands one batch of changes to the subscription. The FIB calls it
// with its lock held; it never blocks on the reader.
func (s *Subscription) publish(batch []Change, maxPending int) {
	if len(batch) == 0 {
		return
	}
	s.mu.Lock()
	switch {
	case s.closed || s.snapshot:
		// Nothing to keep: the next Update is built from the FIB.
	default:
		s.batches = append(s.batches, batch)
		s.count += len(batch)
		if s.count > maxPending || len(s.batches) > maxPendingBatches {
			s.foldLocked()
			if len(s.folded) > maxPending {
				s.snapshot = true
				s.folded = nil
			}
		}
	}
	s.mu.Unlock()
	s.signal()
}

// maxPendingBatches bounds the batch list before it is folded into a map.
const maxPendingBatches = 1024

// foldLocked merges the pending batches into the per-prefix map.
func (s *Subscription) foldLocked() {
	if s.folded == nil {
		s.folded = make(map[netip.Prefix]Change, s.count)
	}
	for _, b := range s.batches {
		for _, c := range b {
			old, ok := s.folded[c.Prefix]
			if !ok {
				s.folded[c.Prefix] = c
				continue
			}
			before := old.Kind != Added // present before the older change
			after := c.Kind != Removed
			switch {
			case before && after:
				c.Kind = Changed
			case before:
				c.Kind = Removed
			case after:
				c.Kind = Added
			default:
				delete(s.folded, c.Prefix)
				continue
			}
			s.folded[c.Prefix] = c
		}
	}
	s.batches, s.count = nil, 0
}

// comparePrefix orders prefixes by address, then length.
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
