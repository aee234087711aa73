package rr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
)

// Errors returned by the Hub.
var (
	ErrClosed       = errors.New("rr: hub closed")
	ErrNoGroup      = errors.New("rr: no such group")
	ErrGroupExists  = errors.New("rr: group exists")
	ErrOverlayInUse = errors.New("rr: overlay address in use by another CPE")
	ErrNoCPE        = errors.New("rr: no such CPE")
	// ErrRestartNeeded: the running group cannot take the change;
	// RemoveGroup and AddGroup it with the new configuration.
	ErrRestartNeeded = errors.New("rr: the change needs a restart of the group")
)

// Hub is the route reflector of the hub daemon: one embedded GoBGP
// instance per CPE group, fed with CPE state from IKE. All methods are safe
// for concurrent use.
type Hub struct {
	cfg Config
	log *slog.Logger

	// mu guards the following fields. Lock order: Hub.mu before group.mu.
	mu      sync.Mutex
	groups  map[string]*group
	overlay map[netip.Addr]string // CPE overlay address -> CPE ID
	cpes    map[string]string     // CPE ID -> group
	closed  bool
}

// New returns a hub without groups.
func New(cfg Config) (*Hub, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Hub{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "bgp"),
		groups:  map[string]*group{},
		overlay: map[netip.Addr]string{},
		cpes:    map[string]string{},
	}, nil
}

// AddGroup starts the route reflector of a group.
func (h *Hub) AddGroup(ctx context.Context, gc GroupConfig) error {
	if err := gc.check(); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	if _, ok := h.groups[gc.Name]; ok {
		return fmt.Errorf("%w: %s", ErrGroupExists, gc.Name)
	}
	for _, g := range h.groups {
		for _, a := range g.cfg.Listen {
			for _, b := range gc.Listen {
				if a.Addr() == b.Addr() {
					return fmt.Errorf("rr: group %s: listen address %v is group %s's", gc.Name, b.Addr(), g.cfg.Name)
				}
			}
		}
	}
	g, err := startGroup(ctx, h, gc)
	if err != nil {
		return err
	}
	h.groups[gc.Name] = g
	return nil
}

// RemoveGroup stops a group's route reflector; its CPEs are forgotten.
func (h *Hub) RemoveGroup(ctx context.Context, name string) error {
	h.mu.Lock()
	g, ok := h.groups[name]
	if ok {
		delete(h.groups, name)
		for id, gn := range h.cpes {
			if gn == name {
				delete(h.cpes, id)
			}
		}
		for a, id := range h.overlay {
			if _, ok := h.cpes[id]; !ok {
				delete(h.overlay, a)
			}
		}
	}
	h.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %s", ErrNoGroup, name)
	}
	g.close()
	return nil
}

// CPEUp tells the hub that a CPE's IKE SA is up: its BGP session is
// accepted from c.Overlay only, it may advertise prefixes within c.Prefixes,
// and its routes carry c.Endpoint. Calling it again for the same ID updates
// the CPE (a new endpoint after a NAT rebinding, new prefixes); routes no
// longer authorised are withdrawn.
func (h *Hub) CPEUp(ctx context.Context, c CPE) error {
	c.Prefixes = append([]netip.Prefix(nil), c.Prefixes...)
	if err := c.check(); err != nil {
		return err
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	g, ok := h.groups[c.Group]
	if !ok {
		h.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNoGroup, c.Group)
	}
	if id, ok := h.overlay[c.Overlay]; ok && id != c.ID {
		h.mu.Unlock()
		return fmt.Errorf("%w: %v belongs to %s", ErrOverlayInUse, c.Overlay, id)
	}
	old, moved := h.cpes[c.ID]
	var oldGroup *group
	if moved && old != c.Group {
		oldGroup = h.groups[old]
	}
	for a, id := range h.overlay {
		if id == c.ID && a != c.Overlay {
			delete(h.overlay, a)
		}
	}
	h.overlay[c.Overlay] = c.ID
	h.cpes[c.ID] = c.Group
	h.mu.Unlock()
	if oldGroup != nil {
		oldGroup.cpeDown(ctx, c.ID, "moved to group "+c.Group)
	}
	return g.cpeUp(ctx, c)
}

// CPEDown tells the hub that a CPE's IKE SA is gone: its session is closed
// and its routes are withdrawn from every other CPE at once.
func (h *Hub) CPEDown(ctx context.Context, id string) error {
	h.mu.Lock()
	gn, ok := h.cpes[id]
	var g *group
	if ok {
		g = h.groups[gn]
		delete(h.cpes, id)
		for a, cid := range h.overlay {
			if cid == id {
				delete(h.overlay, a)
			}
		}
	}
	h.mu.Unlock()
	if !ok || g == nil {
		return fmt.Errorf("%w: %s", ErrNoCPE, id)
	}
	g.cpeDown(ctx, id, "IKE SA down")
	return nil
}

// SetRoutePolicy changes a running group's route policy without
// restarting its GoBGP: the routes its CPEs announced are checked again
// at once (routes dropped before and now allowed are taken from what the
// CPEs sent; routes no longer allowed are withdrawn; LOCAL_PREF follows).
// A MaxPrefixes above the group's start values fails with
// ErrRestartNeeded.
func (h *Hub) SetRoutePolicy(ctx context.Context, name string, p RoutePolicy) error {
	g, err := h.group(name)
	if err != nil {
		return err
	}
	return g.setPolicy(ctx, p)
}

// Stats returns the counters of one group, or of all groups if name is "".
func (h *Hub) Stats(name string) (Stats, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var s Stats
	if name != "" {
		g, ok := h.groups[name]
		if !ok {
			return s, fmt.Errorf("%w: %s", ErrNoGroup, name)
		}
		return g.snapshot(), nil
	}
	for _, g := range h.groups {
		s.add(g.snapshot())
	}
	return s, nil
}

// Synced reports whether a group has ended its restart deferral (always
// true for a group not started as Restarting).
func (h *Hub) Synced(name string) bool {
	h.mu.Lock()
	g, ok := h.groups[name]
	h.mu.Unlock()
	return ok && g.synced()
}

// Close stops every group as a planned restart: sessions end with Cease /
// Administrative Reset, which CPEs that exchanged the N bit (RFC 8538) treat
// as graceful, so they keep forwarding on the hub's routes for its restart
// time. The hub cannot be used afterwards.
func (h *Hub) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	groups := h.groups
	h.groups = map[string]*group{}
	h.mu.Unlock()
	for _, g := range groups {
		g.close()
	}
	return nil
}
