package userspace

import (
	"context"
	"errors"
	"net/netip"
	"slices"

	"github.com/mpsa-vpn/mpsa/routing"
)

// RouteFeed is the routing FIB's change feed as FollowRoutes reads it;
// *routing.Subscription implements it.
type RouteFeed interface {
	Next(ctx context.Context) (routing.Update, error)
}

var _ RouteFeed = (*routing.Subscription)(nil)

// FollowRoutes keeps the kernel routes through the TUN equal to the FIB's
// forwarding entries that go through a tunnel (entries delivered locally
// are left to the kernel), until ctx ends or the feed closes. The first
// Update of a feed is a snapshot; later ones are changes. A failed route
// change is logged and retried with the next update.
func (b *Backend) FollowRoutes(ctx context.Context, feed RouteFeed) error {
	set := make(map[netip.Prefix]bool)
	for {
		u, err := feed.Next(ctx)
		if err != nil {
			if errors.Is(err, routing.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		if u.Snapshot {
			clear(set)
		}
		for _, c := range u.Changes {
			tunneled := c.Kind != routing.Removed && len(c.NextHops) > 0 && !c.NextHops[0].Local && c.NextHops[0].Tunnel != 0
			if tunneled {
				set[c.Prefix] = true
			} else {
				delete(set, c.Prefix)
			}
		}
		prefixes := make([]netip.Prefix, 0, len(set))
		for p := range set {
			prefixes = append(prefixes, p)
		}
		slices.SortFunc(prefixes, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		if err := b.SetRoutes(prefixes); err != nil {
			b.log.Warn("kernel routes not in step with the FIB", "err", err)
		}
	}
}
