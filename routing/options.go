package routing

import (
	"log/slog"
	"net/netip"
)

// Implementation constants.
const (
	// DefaultMaxDepth bounds recursive resolution: a route may resolve
	// through at most this many next-hop lookups before it reaches an
	// endpoint, a connected route or an underlay next hop.
	DefaultMaxDepth = 8

	// DefaultMaxPending bounds what one subscription holds for a reader
	// that does not keep up: past this many coalesced prefix changes the
	// backlog is dropped and the reader gets a fresh snapshot instead.
	DefaultMaxPending = 1 << 20

	// maxMaxDepth caps WithMaxDepth.
	maxMaxDepth = 64
)

// Underlay says that next hops inside Prefix are underlay addresses: a route
// whose NEXT_HOP falls there is not looked up again but sent to that address
// itself (RFC 5565 softwire mesh, draft-yamaya-ipsecme-mpsa §4.1 without the
// Tunnel Encapsulation attribute), ESP in UDP to Port or raw ESP if Port is 0.
// The route's own Tunnel is used; Tunnel here is the fallback for routes that
// carry none.
type Underlay struct {
	Prefix netip.Prefix
	Port   uint16
	Tunnel Tunnel
}

type config struct {
	multipath  bool
	maxDepth   int
	maxPending int
	underlay   []Underlay
	log        *slog.Logger
}

// Option configures New.
type Option func(*config)

// WithMultipath turns equal-cost multipath on: the paths of a prefix that
// tie with the best one on Source and LocalPref are all used, and
// LookupFlow spreads flows over them by flow hash. Off by default: one best
// path per prefix.
func WithMultipath(on bool) Option { return func(c *config) { c.multipath = on } }

// WithMaxDepth sets how many recursive next-hop lookups a route may need
// (DefaultMaxDepth; values below 1 mean 1, above 64 mean 64).
func WithMaxDepth(n int) Option {
	return func(c *config) { c.maxDepth = min(max(n, 1), maxMaxDepth) }
}

// WithMaxPending sets the per-subscription backlog bound (DefaultMaxPending).
func WithMaxPending(n int) Option {
	return func(c *config) { c.maxPending = max(n, 1) }
}

// WithUnderlay declares underlay next-hop ranges. Invalid prefixes are
// ignored; the longest matching range wins.
func WithUnderlay(u ...Underlay) Option {
	return func(c *config) {
		for _, x := range u {
			if validPrefix(x.Prefix) {
				c.underlay = append(c.underlay, x)
			}
		}
	}
}

// WithLogger sets the logger (component "routing" is added); nil means
// slog.Default().
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

func newConfig(opts []Option) config {
	c := config{maxDepth: DefaultMaxDepth, maxPending: DefaultMaxPending}
	for _, o := range opts {
		o(&c)
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.log = c.log.With("component", "routing")
	return c
}

// underlayFor returns the longest underlay range holding a, if any.
func (c *config) underlayFor(a netip.Addr) (Underlay, bool) {
	best, ok := Underlay{}, false
	for _, u := range c.underlay {
		if u.Prefix.Contains(a) && (!ok || u.Prefix.Bits() > best.Prefix.Bits()) {
			best, ok = u, true
		}
	}
	return best, ok
}
