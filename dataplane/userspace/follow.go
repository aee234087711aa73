package userspace

import (
	"context"
	"errors"

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
// Update of a feed is a snapshot; later ones are changes, applied as they
// come (the backend keeps one sorted table of the prefixes, not a copy of
// the FIB). A failed route change is logged and retried with the next
// update.
func (b *Backend) FollowRoutes(ctx context.Context, feed RouteFeed) error {
	var ops []routeOp
	for {
		u, err := feed.Next(ctx)
		if err != nil {
			if errors.Is(err, routing.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		ops = ops[:0]
		for _, c := range u.Changes {
			if !c.Prefix.IsValid() {
				continue
			}
			tunneled := c.Kind != routing.Removed && len(c.NextHops) > 0 && !c.NextHops[0].Local && c.NextHops[0].Tunnel != 0
			ops = append(ops, routeOp{routeKey: keyOf(c.Prefix), add: tunneled})
		}
		if err := b.changeRoutes(ops, u.Snapshot); err != nil {
			b.log.Warn("kernel routes not in step with the FIB", "err", err)
		}
		if cap(ops) > maxKeptOps {
			ops = nil // a snapshot's worth of ops is not kept between updates
		}
	}
}

// maxKeptOps is the largest op buffer FollowRoutes keeps for the next
// update.
const maxKeptOps = 1024
