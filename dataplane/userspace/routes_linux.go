package userspace

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// routeProto marks our routes in the kernel table (a private protocol
// number, like BIRD's and FRR's own).
const routeProto = netlink.RouteProtocol(252)

// SetRoutes makes the kernel routes through the TUN exactly prefixes
// (routes the backend added before and that are not in prefixes are
// removed). It is idempotent. Feed it the FIB's remote prefixes, or let
// FollowRoutes do it; both change the same set.
//
// The backend only adds routes that do not exist yet (NLM_F_EXCL) and only
// removes its own (routing protocol 252): a prefix the kernel already
// routes elsewhere, such as a connected LAN, is left alone and logged. If
// the kernel flushes the TUN's routes (the device lost its last address,
// or went down) or someone deletes one, the backend notices through
// netlink and adds them again.
func (b *Backend) SetRoutes(prefixes []netip.Prefix) error {
	ops := make([]routeOp, 0, len(prefixes))
	for _, p := range prefixes {
		if p.IsValid() {
			ops = append(ops, routeOp{routeKey: keyOf(p), add: true})
		}
	}
	return b.changeRoutes(ops, true)
}

// changeRoutes changes the prefixes wanted through the TUN by ops (any
// order; the last op of a prefix counts); with replace they become exactly
// ops' additions. Our routes for prefixes no longer wanted are deleted,
// then every wanted prefix the kernel lacks is added (again).
func (b *Backend) changeRoutes(ops []routeOp, replace bool) error {
	ops = sortOps(ops)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.isClosed {
		return fmt.Errorf("dataplane: backend closed")
	}
	if !b.kernelTUN {
		return fmt.Errorf("dataplane: %s is not a kernel TUN; no routes to program", b.tunName)
	}
	var firstErr error
	b.kroutes.apply(ops, replace, func(e kroute) {
		if e.st != routeOurs {
			return
		}
		if err := b.delRouteLocked(e.key().prefix()); err != nil && firstErr == nil {
			firstErr = err
		}
	})
	if err := b.addWantedLocked(); err != nil && firstErr == nil {
		firstErr = err
	}
	return firstErr
}

func (b *Backend) kernelRoute(p netip.Prefix) *netlink.Route {
	return &netlink.Route{LinkIndex: b.tunIndex, Dst: prefixToIPNet(p), Scope: netlink.SCOPE_LINK, Protocol: routeProto}
}

func (b *Backend) delRouteLocked(p netip.Prefix) error {
	if err := b.nl.RouteDel(b.kernelRoute(p)); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("dataplane: route %v: %w", p, err)
	}
	return nil
}

// addWantedLocked adds every prefix the kernel has no route of ours for
// and that is due a try: new ones, those that failed before, and those
// routed by someone else that are up for a recheck (routeRecheck). A
// prefix the kernel already routes (EEXIST) is ours when a route of ours
// from before is there, else left alone; one listing of our routes
// settles all of them, however many (a per-prefix lookup would list the
// whole table each time).
func (b *Backend) addWantedLocked() error {
	var firstErr error
	exists := false
	for i := range b.kroutes.r {
		e := &b.kroutes.r[i]
		if e.st != routeWanted && e.st != routeRecheck {
			continue
		}
		p := e.key().prefix()
		err := b.nl.RouteAdd(b.kernelRoute(p))
		switch {
		case err == nil:
			e.st = routeOurs
		case errors.Is(err, unix.EEXIST):
			e.seen, exists = true, true
		case firstErr == nil:
			firstErr = fmt.Errorf("dataplane: route %v: %w", p, err)
		}
	}
	if !exists {
		return firstErr
	}
	err := b.listOursLocked(func(e *kroute) {
		if e.seen {
			e.st, e.seen = routeOurs, false // ours, from before
		}
	})
	for i := range b.kroutes.r {
		e := &b.kroutes.r[i]
		if !e.seen {
			continue
		}
		e.seen = false
		if err != nil {
			continue // not known whose: tried again with the next change
		}
		if e.st == routeWanted {
			b.log.Warn("prefix already routed by the kernel, not sent into the tunnel", "prefix", e.key().prefix().String())
		}
		e.st = routeForeign
	}
	if err != nil && firstErr == nil {
		firstErr = err
	}
	return firstErr
}

// listOursLocked calls f for each table entry the kernel has a route of
// ours (through the TUN, protocol 252) for.
func (b *Backend) listOursLocked(f func(*kroute)) error {
	filter := &netlink.Route{LinkIndex: b.tunIndex, Protocol: routeProto}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		err := b.nl.RouteListFilteredIter(fam, filter, netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL, func(r netlink.Route) bool {
			if p, ok := ipNetToPrefix(r.Dst); ok {
				if i, ok := b.kroutes.find(keyOf(p)); ok {
					f(&b.kroutes.r[i])
				}
			}
			return true
		})
		if err != nil {
			return fmt.Errorf("dataplane: listing routes: %w", err)
		}
	}
	return nil
}

// verifyRoutesLocked checks which of our routes the kernel still has
// (after a change of the TUN's link or addresses, which can flush them
// silently, or after the watch lost notifications), adds the missing ones
// again and rechecks the prefixes others routed.
func (b *Backend) verifyRoutesLocked() error {
	if err := b.listOursLocked(func(e *kroute) { e.seen = true }); err != nil {
		for i := range b.kroutes.r {
			b.kroutes.r[i].seen = false
		}
		return err
	}
	for i := range b.kroutes.r {
		e := &b.kroutes.r[i]
		switch {
		case e.st == routeOurs && !e.seen:
			e.st = routeWanted // flushed by the kernel: add again
		case e.st == routeForeign:
			e.st = routeRecheck
		}
		e.seen = false
	}
	return b.addWantedLocked()
}

// routeGoneLocked marks what a route the kernel deleted means: ours
// (someone deleted it) is to be added again, and a prefix left alone
// because another route had it is to be tried again. The caller then
// calls addWantedLocked.
func (b *Backend) routeGoneLocked(ev watchEvent) {
	i, ok := b.kroutes.find(keyOf(ev.prefix))
	if !ok {
		return
	}
	e := &b.kroutes.r[i]
	switch {
	case e.st == routeOurs && ev.oif == int32(b.tunIndex) && ev.protocol == uint8(routeProto):
		e.st = routeWanted
	case e.st == routeForeign:
		e.st = routeRecheck
	}
}

// routineWatchRoutes keeps the TUN's routes in place: it re-checks them
// when the kernel reports a change of the TUN's link or a removed address,
// puts back a deleted route of ours, and retries a prefix whose other
// route went away.
func (b *Backend) routineWatchRoutes(w *routeWatch) {
	defer b.wg.Done()
	b.log.Debug("routine started: watch routes")
	defer b.log.Debug("routine stopped: watch routes")
	var verify bool
	var gone []watchEvent
	collect := func(ev watchEvent) {
		if ev.verify {
			verify = true
		} else if len(gone) < maxGoneBatch {
			gone = append(gone, ev)
		} else {
			verify = true // too many at once: look at everything
		}
	}
	for {
		// Wait for one notification, then take what else is queued, so
		// that a burst costs one pass over the routes.
		block := true
		for {
			msg, truncated, err := w.read(block)
			if errors.Is(err, errWatchOverflow) {
				verify, block = true, false // drain what is queued, then look at everything
				continue
			}
			if err != nil {
				if !b.isClosing() {
					b.log.Warn("netlink watch failed; routes the kernel drops stay missing", "err", err)
				}
				return
			}
			if msg == nil {
				break
			}
			if truncated {
				verify = true
			}
			parseWatch(msg, w.index, collect)
			block = false
		}
		if !verify && len(gone) == 0 {
			continue
		}
		b.mu.Lock()
		if !b.isClosed {
			var err error
			if verify {
				err = b.verifyRoutesLocked()
			} else {
				for _, ev := range gone {
					b.routeGoneLocked(ev)
				}
				err = b.addWantedLocked()
			}
			if err != nil {
				b.log.Warn("kernel routes not restored", "err", err)
			}
		}
		b.mu.Unlock()
		verify, gone = false, gone[:0]
	}
}

// maxGoneBatch bounds the deleted routes the watch handles one by one in
// a burst; past it, it verifies all routes instead.
const maxGoneBatch = 256

func (b *Backend) removeRoutesLocked() {
	for i := range b.kroutes.r {
		if b.kroutes.r[i].st == routeOurs {
			_ = b.nl.RouteDel(b.kernelRoute(b.kroutes.r[i].key().prefix()))
		}
	}
	b.kroutes.r = nil
}

// Routes returns the prefixes the backend currently routes into the TUN.
func (b *Backend) Routes() []netip.Prefix {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []netip.Prefix
	for i := range b.kroutes.r {
		if b.kroutes.r[i].st == routeOurs {
			out = append(out, b.kroutes.r[i].key().prefix())
		}
	}
	return out
}
