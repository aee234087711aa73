package userspace

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// openTUN uses cfg.TUN or creates a kernel TUN, brings it up and assigns
// cfg.Addresses through netlink.
func (b *Backend) openTUN(cfg Config, mtu int) error {
	// A handle opened now stays in the network namespace New runs in, so
	// later route changes from any goroutine land there too.
	nl, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("dataplane: netlink: %w", err)
	}
	b.nl = nl
	if cfg.TUN != nil {
		b.tun = cfg.TUN
		b.tunName, _ = cfg.TUN.Name()
		_, err := nl.LinkByName(b.tunName)
		b.kernelTUN = err == nil && cfg.TUN.File() != nil
		return nil
	}
	name := cfg.TUNName
	if name == "" {
		name = DefaultTUNName
	}
	dev, err := tun.CreateTUN(name, mtu)
	if err != nil {
		nl.Close()
		return fmt.Errorf("dataplane: TUN %s: %w", name, err)
	}
	b.tun = dev
	b.tunName, _ = dev.Name()
	b.kernelTUN = true
	link, err := nl.LinkByName(b.tunName)
	if err == nil {
		for _, p := range cfg.Addresses {
			addr := &netlink.Addr{IPNet: prefixToIPNet(p)}
			if p.Addr().Is6() {
				addr.Flags = unix.IFA_F_NODAD
			}
			if err = nl.AddrReplace(link, addr); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = nl.LinkSetUp(link)
	}
	if err != nil {
		dev.Close()
		nl.Close()
		return fmt.Errorf("dataplane: TUN %s: %w", b.tunName, err)
	}
	return nil
}

// SetRoutes makes the kernel routes through the TUN exactly prefixes
// (routes the backend added before and that are not in prefixes are
// removed). It is idempotent. Feed it the FIB's remote prefixes.
func (b *Backend) SetRoutes(prefixes []netip.Prefix) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.isClosed {
		return fmt.Errorf("dataplane: backend closed")
	}
	if !b.kernelTUN {
		return fmt.Errorf("dataplane: %s is not a kernel TUN; no routes to program", b.tunName)
	}
	link, err := b.nl.LinkByName(b.tunName)
	if err != nil {
		return fmt.Errorf("dataplane: TUN %s: %w", b.tunName, err)
	}
	want := make(map[netip.Prefix]bool, len(prefixes))
	var firstErr error
	for _, p := range prefixes {
		p = p.Masked()
		want[p] = true
		if b.routes[p] {
			continue
		}
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: prefixToIPNet(p), Scope: netlink.SCOPE_LINK, Protocol: routeProto}
		if err := b.nl.RouteReplace(r); err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("dataplane: route %v: %w", p, err)
			}
			continue
		}
		b.routes[p] = true
	}
	for p := range b.routes {
		if !want[p] {
			r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: prefixToIPNet(p), Scope: netlink.SCOPE_LINK, Protocol: routeProto}
			if err := b.nl.RouteDel(r); err != nil && err != unix.ESRCH && firstErr == nil {
				firstErr = fmt.Errorf("dataplane: route %v: %w", p, err)
			}
			delete(b.routes, p)
		}
	}
	return firstErr
}

// routeProto marks our routes in the kernel table (a private protocol
// number, like BIRD's and FRR's own).
const routeProto = netlink.RouteProtocol(252)

func (b *Backend) removeRoutesLocked() {
	if len(b.routes) == 0 {
		return
	}
	link, err := b.nl.LinkByName(b.tunName)
	if err == nil {
		for p := range b.routes {
			_ = b.nl.RouteDel(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: prefixToIPNet(p), Scope: netlink.SCOPE_LINK, Protocol: routeProto})
		}
	}
	clear(b.routes)
}

// Routes returns the prefixes the backend currently routes into the TUN.
func (b *Backend) Routes() []netip.Prefix {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]netip.Prefix, 0, len(b.routes))
	for p := range b.routes {
		out = append(out, p)
	}
	return out
}
